// EAL core-list parsing and the placement checks; see cpu_placement.h.
#include "dataplane/cpu_placement.h"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <stdexcept>

namespace strait::dataplane {

namespace {

unsigned number(const std::string& s, const std::string& whole) {
  if (s.empty() || s.size() > 5 || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    throw std::invalid_argument("cannot read core list \"" + whole + "\" (\"" + s + "\" is not a number)");
  return static_cast<unsigned>(std::stoul(s));
}

// "1", "1-3", "(1,3-4)" -> ids.
std::vector<unsigned> idSet(std::string s, const std::string& whole) {
  if (!s.empty() && s.front() == '(') {
    if (s.back() != ')') throw std::invalid_argument("cannot read core list \"" + whole + "\" (unbalanced parenthesis)");
    s = s.substr(1, s.size() - 2);
  }
  std::vector<unsigned> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const std::size_t comma = s.find(',', start);
    const std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const std::size_t dash = part.find('-');
    if (dash == std::string::npos) {
      out.push_back(number(part, whole));
    } else {
      const unsigned a = number(part.substr(0, dash), whole), b = number(part.substr(dash + 1), whole);
      if (a > b) throw std::invalid_argument("cannot read core list \"" + whole + "\" (range " + part + ")");
      for (unsigned i = a; i <= b; ++i) out.push_back(i);
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// Splits at commas outside parentheses.
std::vector<std::string> topLevel(const std::string& s) {
  std::vector<std::string> out;
  int depth = 0;
  std::string cur;
  for (char c : s) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == ',' && depth == 0) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string cpuList(const std::set<int>& cpus) {
  std::string s;
  for (int c : cpus) s += (s.empty() ? "" : ",") + std::to_string(c);
  return s;
}

std::set<int> siblingsOf(int cpu, const std::string& sysfsRoot) {
  std::ifstream in(sysfsRoot + "/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/thread_siblings_list");
  std::string line;
  std::set<int> out{cpu};
  if (!in || !std::getline(in, line)) return out;
  try {
    for (unsigned c : idSet(line, line)) out.insert(static_cast<int>(c));
  } catch (const std::invalid_argument&) {
  }
  return out;
}

}  // namespace

bool hasLcoreArg(const std::vector<std::string>& eal) {
  for (const auto& a : eal)
    if (a == "-l" || a == "-c" || a.rfind("--lcores", 0) == 0 ||
        (a.size() > 2 && (a.rfind("-l", 0) == 0 || a.rfind("-c", 0) == 0) && a[1] != '-'))
      return true;
  return false;
}

std::string defaultLcores(uint32_t workers, const std::vector<int>& allowed) {
  std::vector<int> cpus = allowed;
  if (cpus.empty()) cpus.push_back(0);
  std::string s = "--lcores=";
  for (uint32_t i = 0; i <= workers; ++i) {
    if (i) s += ",";
    s += std::to_string(i) + "@" + std::to_string(cpus[i % cpus.size()]);
  }
  return s;
}

std::vector<int> allowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

LcoreMap parseLcores(const std::vector<std::string>& eal) {
  LcoreMap m;
  bool haveMain = false;
  for (std::size_t i = 0; i < eal.size(); ++i) {
    const std::string& a = eal[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (a == flag) {
        if (i + 1 >= eal.size()) throw std::invalid_argument(flag + " without a value");
        return eal[++i];
      }
      if (a.rfind(flag + "=", 0) == 0) return a.substr(flag.size() + 1);
      return a.substr(flag.size());  // -l0-3
    };
    if (a.rfind("--main-lcore", 0) == 0) {
      const std::string v = value("--main-lcore");
      m.mainLcore = number(v, v);
      haveMain = true;
    } else if (a.rfind("--lcores", 0) == 0) {
      const std::string v = value("--lcores");
      m.cpus.clear();
      m.source = "--lcores=" + v;
      for (const std::string& el : topLevel(v)) {
        const std::size_t at = el.find('@');
        const std::vector<unsigned> lcores = idSet(el.substr(0, at), v);
        std::set<int> cpus;
        if (at != std::string::npos) {
          for (unsigned c : idSet(el.substr(at + 1), v)) cpus.insert(static_cast<int>(c));
        }
        for (unsigned l : lcores) m.cpus[l] = at == std::string::npos ? std::set<int>{static_cast<int>(l)} : cpus;
      }
    } else if (a.rfind("-l", 0) == 0 && a.rfind("--", 0) != 0) {
      const std::string v = value("-l");
      m.cpus.clear();
      m.source = "-l " + v;
      for (const std::string& el : topLevel(v))
        for (unsigned l : idSet(el, v)) m.cpus[l] = {static_cast<int>(l)};
    } else if (a.rfind("-c", 0) == 0 && a.rfind("--", 0) != 0) {
      std::string v = value("-c");
      m.cpus.clear();
      m.source = "-c " + v;
      std::string hex = v.rfind("0x", 0) == 0 || v.rfind("0X", 0) == 0 ? v.substr(2) : v;
      if (hex.empty() || hex.size() > 64) throw std::invalid_argument("cannot read core mask \"" + v + "\"");
      for (std::size_t d = 0; d < hex.size(); ++d) {
        const char ch = static_cast<char>(std::tolower(static_cast<unsigned char>(hex[hex.size() - 1 - d])));
        int nib = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (nib < 0) throw std::invalid_argument("cannot read core mask \"" + v + "\"");
        for (int b = 0; b < 4; ++b)
          if (nib & (1 << b)) {
            const unsigned l = static_cast<unsigned>(d * 4 + static_cast<std::size_t>(b));
            m.cpus[l] = {static_cast<int>(l)};
          }
      }
    }
  }
  if (!haveMain && !m.cpus.empty()) m.mainLcore = m.cpus.begin()->first;
  return m;
}

std::vector<int> onlineCpus(const std::string& sysfsRoot) {
  std::ifstream in(sysfsRoot + "/devices/system/cpu/online");
  std::string line;
  std::vector<int> out;
  if (!in || !std::getline(in, line)) return out;
  try {
    for (unsigned c : idSet(line, line)) out.push_back(static_cast<int>(c));
  } catch (const std::invalid_argument&) {
    out.clear();
  }
  return out;
}

std::vector<std::string> placementProblems(const std::vector<std::string>& eal, uint32_t workers,
                                           const std::string& sysfsRoot) {
  std::vector<std::string> out;
  const std::vector<int> allowed = onlineCpus(sysfsRoot);
  const LcoreMap m = parseLcores(eal);
  if (!m.cpus.contains(m.mainLcore)) {
    out.push_back("the main lcore " + std::to_string(m.mainLcore) + " is not in the EAL core list (" + m.source + ")");
    return out;
  }
  // Workers take the lcores after the main one in id order, as
  // rte_get_next_lcore(skip main) hands them out.
  std::vector<unsigned> workerLcores;
  for (const auto& [l, cpus] : m.cpus)
    if (l != m.mainLcore && workerLcores.size() < workers) workerLcores.push_back(l);
  if (workerLcores.size() < workers)
    out.push_back("dataplane.workers = " + std::to_string(workers) + " needs " + std::to_string(workers + 1) +
                  " lcores (one main + one per worker); the EAL core list (" + m.source + ") has " +
                  std::to_string(m.cpus.size()) + ": worker " + std::to_string(workerLcores.size()) +
                  " would have no lcore");
  const std::set<int> allowedSet(allowed.begin(), allowed.end());
  const std::set<int>& mainCpus = m.cpus.at(m.mainLcore);
  std::set<int> mainCore;
  for (int c : mainCpus)
    for (int s : siblingsOf(c, sysfsRoot)) mainCore.insert(s);
  auto name = [&](std::size_t w) {
    return "worker " + std::to_string(w) + " (lcore " + std::to_string(workerLcores[w]) + ", CPU " +
           cpuList(m.cpus.at(workerLcores[w])) + ")";
  };
  for (std::size_t w = 0; w < workerLcores.size(); ++w) {
    const std::set<int>& cpus = m.cpus.at(workerLcores[w]);
    for (int c : cpus) {
      if (!allowedSet.empty() && !allowedSet.contains(c)) {
        out.push_back(name(w) + ": CPU " + std::to_string(c) + " is not an online CPU of this machine (online: " +
                      cpuList(allowedSet) + ")");
        break;
      }
    }
    for (int c : cpus) {
      if (mainCpus.contains(c)) {
        out.push_back(name(w) + " shares CPU " + std::to_string(c) + " with the main lcore " +
                      std::to_string(m.mainLcore));
        break;
      }
      if (mainCore.contains(c)) {
        out.push_back(name(w) + " is a hyperthread sibling of the main lcore " + std::to_string(m.mainLcore) +
                      " (CPU " + cpuList(mainCpus) + "; core siblings " + cpuList(mainCore) + ")");
        break;
      }
    }
    for (std::size_t v = 0; v < w; ++v) {
      const std::set<int>& other = m.cpus.at(workerLcores[v]);
      bool reported = false;
      for (int c : cpus) {
        if (other.contains(c)) {
          out.push_back(name(v) + " and " + name(w) + " share CPU " + std::to_string(c));
          reported = true;
          break;
        }
        const std::set<int> sib = siblingsOf(c, sysfsRoot);
        for (int o : other)
          if (sib.contains(o)) {
            out.push_back(name(v) + " and " + name(w) + " are the two hyperthreads of one core (siblings " +
                          cpuList(sib) + ")");
            reported = true;
            break;
          }
        if (reported) break;
      }
    }
  }
  return out;
}

}  // namespace strait::dataplane
