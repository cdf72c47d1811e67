// Where the EAL puts the main (control) lcore and the workers, and what is
// wrong with it. straitd refuses, before EAL starts, a placement that
// would quietly cost forwarding capacity: a worker on the main lcore's CPU
// or on that CPU's hyperthread sibling, two workers on one CPU or on the
// two hyperthreads of one core, a worker on a CPU this process may not run
// on (not online), or fewer lcores in the EAL core list than workers need (`--force`
// turns the refusal into warnings). Hyperthread siblings come from
// <sysfs>/devices/system/cpu/cpuN/topology/thread_siblings_list; the sysfs
// root is a parameter so tests can give a fake one.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace strait::dataplane {

// lcore id -> the CPUs it may run on, from the EAL's -l, -c or --lcores
// argument (the last one given wins, as in the EAL), and the main lcore
// (--main-lcore, else the lowest lcore). Throws std::invalid_argument on a
// list it cannot read.
struct LcoreMap {
  std::map<unsigned, std::set<int>> cpus;
  unsigned mainLcore = 0;
  std::string source;  // the argument it came from, for messages
};
LcoreMap parseLcores(const std::vector<std::string>& eal);

// True when `eal` names the lcores itself (-l, -c, --lcores).
bool hasLcoreArg(const std::vector<std::string>& eal);
// The --lcores argument straitd adds when the config has none: lcore i on
// the i-th CPU of `allowedCpus` (wrapping when there are fewer CPUs than
// lcores, which placementProblems then reports).
std::string defaultLcores(uint32_t workers, const std::vector<int>& allowedCpus);
// The CPUs this process may run on (sched_getaffinity).
std::vector<int> allowedCpus();

// The online CPUs (<sysfsRoot>/devices/system/cpu/online); empty when
// unreadable. Not the process's affinity: CPUs isolated with isolcpus are
// outside the default affinity, and are exactly where workers belong.
std::vector<int> onlineCpus(const std::string& sysfsRoot = "/sys");

// Every problem with running `workers` workers on the lcores of `eal`
// (which must name them), one sentence each naming the lcores and CPUs.
std::vector<std::string> placementProblems(const std::vector<std::string>& eal, uint32_t workers,
                                           const std::string& sysfsRoot = "/sys");

}  // namespace strait::dataplane
