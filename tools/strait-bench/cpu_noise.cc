// Reading /proc for one CPU's and one thread's counters, and the bare TSC
// loop (cpu_noise.h).
#include "tools/strait-bench/cpu_noise.h"

#include <rte_cycles.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace strait::bench {

namespace {

// /proc/interrupts and /proc/softirqs: a header of CPU names, then lines of
// "LABEL: n0 n1 ... [description]". Calls fn(label, count of `cpu`).
template <class F>
void perCpuTable(const char* path, unsigned cpu, F&& fn) {
  std::ifstream in(path);
  std::string line;
  if (!std::getline(in, line)) return;
  std::istringstream header(line);
  std::vector<std::string> cpus;
  for (std::string w; header >> w;) cpus.push_back(w);
  std::size_t col = cpus.size();
  for (std::size_t i = 0; i < cpus.size(); ++i)
    if (cpus[i] == "CPU" + std::to_string(cpu)) col = i;
  if (col == cpus.size()) return;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string label;
    if (!(ls >> label)) continue;
    // Lines such as ERR: and MIS: have one system-wide count: skip them.
    uint64_t v = 0;
    std::size_t i = 0;
    bool found = false;
    for (; i <= col && (ls >> v); ++i)
      if (i == col) found = true;
    if (found) fn(label, v);
  }
}

uint64_t field(const std::string& text, const std::string& key) {
  const auto p = text.find(key);
  if (p == std::string::npos) return 0;
  return std::stoull(text.substr(p + key.size()));
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

pid_t currentTid() { return static_cast<pid_t>(syscall(SYS_gettid)); }

CpuSample sampleCpu(unsigned cpu, pid_t tid) {
  CpuSample s;
  perCpuTable("/proc/interrupts", cpu, [&s](const std::string& label, uint64_t v) {
    s.interrupts += v;
    if (label == "LOC:") s.timerIrqs = v;
  });
  perCpuTable("/proc/softirqs", cpu, [&s](const std::string& label, uint64_t v) {
    s.softirqs += v;
    if (label == "NET_RX:") s.netRxSoftirqs = v;
    if (label == "RCU:") s.rcuSoftirqs = v;
  });
  std::ifstream stat("/proc/stat");
  const std::string name = "cpu" + std::to_string(cpu);
  for (std::string line; std::getline(stat, line);) {
    std::istringstream ls(line);
    std::string label;
    ls >> label;
    if (label != name) continue;
    uint64_t user, nice, system, idle, iowait, irq, softirq, steal;
    if (ls >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal) {
      s.stealTicks = steal;
      s.irqTicks = irq + softirq;
    }
    break;
  }
  if (tid > 0) {
    const std::string task = "/proc/self/task/" + std::to_string(tid);
    std::istringstream sched(slurp(task + "/schedstat"));
    sched >> s.runNs >> s.waitNs;
    s.involuntary = field(slurp(task + "/status"), "nonvoluntary_ctxt_switches:");
  }
  return s;
}

CpuSample operator-(const CpuSample& b, const CpuSample& a) {
  CpuSample d;
  d.interrupts = b.interrupts - a.interrupts;
  d.timerIrqs = b.timerIrqs - a.timerIrqs;
  d.softirqs = b.softirqs - a.softirqs;
  d.netRxSoftirqs = b.netRxSoftirqs - a.netRxSoftirqs;
  d.rcuSoftirqs = b.rcuSoftirqs - a.rcuSoftirqs;
  d.stealTicks = b.stealTicks - a.stealTicks;
  d.irqTicks = b.irqTicks - a.irqTicks;
  d.runNs = b.runNs - a.runNs;
  d.waitNs = b.waitNs - a.waitNs;
  d.involuntary = b.involuntary - a.involuntary;
  return d;
}

std::string describe(const CpuSample& d) {
  const double tickMs = 1000.0 / double(sysconf(_SC_CLK_TCK));
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "irq %llu (timer %llu), softirq %llu (net_rx %llu, rcu %llu), irq+softirq ticks %.0f ms, "
                "steal %.0f ms; thread waited %.2f ms, %llu involuntary switches",
                static_cast<unsigned long long>(d.interrupts), static_cast<unsigned long long>(d.timerIrqs),
                static_cast<unsigned long long>(d.softirqs), static_cast<unsigned long long>(d.netRxSoftirqs),
                static_cast<unsigned long long>(d.rcuSoftirqs), double(d.irqTicks) * tickMs,
                double(d.stealTicks) * tickMs, double(d.waitNs) / 1e6, static_cast<unsigned long long>(d.involuntary));
  return buf;
}

std::size_t slowRange(double us) {
  std::size_t i = 0;
  while (i < kSlowRanges - 1 && us > kSlowRangesUs[i]) ++i;
  return i;
}

std::string rangesCell(const uint64_t (&r)[kSlowRanges]) {
  std::string s;
  for (std::size_t i = 0; i < kSlowRanges; ++i) s += (i ? " / " : "") + std::to_string(r[i]);
  return s;
}

namespace {

// Runs `work` between TSC reads for `cycles` and records the gaps between
// the reads: over 50 us by range, and the times of those up to 1 ms.
template <class Work>
BareLoop gapLoop(uint64_t cycles, Work&& work) {
  BareLoop r;
  r.shortStalls.reserve(65536);
  const double perUs = double(rte_get_tsc_hz()) / 1e6;
  const uint64_t over = static_cast<uint64_t>(50 * perUs);
  uint64_t prev = rte_rdtsc();
  const uint64_t end = prev + cycles;
  while (prev < end) {
    work();
    const uint64_t now = rte_rdtsc();
    const uint64_t gap = now - prev;
    if (gap > r.maxGap) r.maxGap = gap;
    if (gap > over) {
      ++r.over;
      ++r.ranges[slowRange(double(gap) / perUs)];
      if (double(gap) <= 1000 * perUs && r.shortStalls.size() < 65536) r.shortStalls.push_back(now);
    }
    ++r.iterations;
    prev = now;
  }
  return r;
}

}  // namespace

BareLoop bareTscLoop(uint64_t cycles) {
  return gapLoop(cycles, [] {});
}

BareLoop memoryLoop(uint64_t cycles, void* mem, std::size_t bytes, uint32_t lines) {
  auto* words = static_cast<uint64_t*>(mem);
  const uint64_t nLines = bytes / 64;
  uint64_t x = 0x9e3779b97f4a7c15ull;  // xorshift64: the next line
  return gapLoop(cycles, [&] {
    for (uint32_t i = 0; i < lines; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      words[(x % nLines) * 8] += 1;
    }
  });
}

double tickUs() {
  FILE* f = popen("zcat /proc/config.gz 2>/dev/null", "r");
  if (f == nullptr) return 0;
  char line[512];
  long hz = 0;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::strncmp(line, "CONFIG_HZ=", 10) == 0) hz = std::strtol(line + 10, nullptr, 10);
  pclose(f);
  return hz > 0 ? 1e6 / double(hz) : 0;
}

double tickAligned(const std::vector<uint64_t>& at) {
  const double tick = tickUs();
  if (tick <= 0 || at.size() < 11) return -1;
  const double perUs = double(rte_get_tsc_hz()) / 1e6;
  std::size_t aligned = 0;
  for (std::size_t i = 1; i < at.size(); ++i) {
    const double ticks = double(at[i] - at[i - 1]) / perUs / tick;
    if (std::fabs(ticks - std::round(ticks)) <= 0.05) ++aligned;
  }
  return double(aligned) / double(at.size() - 1);
}

}  // namespace strait::bench
