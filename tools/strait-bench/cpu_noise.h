// The noise floor of a CPU, for strait-bench's control-stall figures: what
// the kernel did on a CPU during a phase (hardware interrupts, softirqs,
// steal time, from /proc) and how one thread was scheduled meanwhile (time
// it waited runnable, involuntary switches), and a bare loop that only
// reads the TSC, whose longest gap is the longest time a thread on that CPU
// lost to something other than its own work. A worker-loop iteration over
// 50 us says something about Strait only when the bare loop on the same
// CPU, over the same span of time, has no such gap.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace strait::bench {

// Counters of one CPU (cumulative; subtract two samples).
struct CpuSample {
  uint64_t interrupts = 0;   // /proc/interrupts, the CPU's column, every source
  uint64_t timerIrqs = 0;    // LOC: local timer interrupts
  uint64_t softirqs = 0;     // /proc/softirqs, the CPU's column, every type
  uint64_t netRxSoftirqs = 0;
  uint64_t rcuSoftirqs = 0;
  uint64_t stealTicks = 0;   // /proc/stat, USER_HZ ticks
  uint64_t irqTicks = 0;     // time in hard and soft interrupts, sampled by the tick
  // The thread's /proc/self/task/TID/schedstat and status.
  uint64_t runNs = 0;        // on the CPU
  uint64_t waitNs = 0;       // runnable, waiting for the CPU
  uint64_t involuntary = 0;  // nonvoluntary_ctxt_switches
};

// Samples CPU `cpu` and thread `tid` (0: no thread figures).
CpuSample sampleCpu(unsigned cpu, pid_t tid);

// b - a, field by field.
CpuSample operator-(const CpuSample& b, const CpuSample& a);

// "irq N (timer N), softirq N (net_rx N, rcu N), steal N ms, thread waited
// N ms / N involuntary switches": a table cell.
std::string describe(const CpuSample& d);

// Upper bounds (us) of the ranges gaps and iterations over 50 us are
// counted in: (50, 100], (100, 250], (250, 1000], the rest. The same
// bounds as the worker loop's histogram (kLoopBucketsUs), so the two
// compare range by range: an interrupt costs tens to hundreds of
// microseconds, a preemption by another thread milliseconds.
inline constexpr uint32_t kSlowRangesUs[] = {100, 250, 1000};
inline constexpr std::size_t kSlowRanges = 4;

// A loop that only reads the TSC for `cycles`: the number of reads, gaps
// between consecutive reads over 50 us (in total and by range), and the
// longest gap.
struct BareLoop {
  uint64_t iterations = 0;
  uint64_t over = 0;
  uint64_t maxGap = 0;
  uint64_t ranges[kSlowRanges] = {};
  std::vector<uint64_t> shortStalls;  // TSC at the end of each gap of 50-1000 us (the first 65,536)
};
BareLoop bareTscLoop(uint64_t cycles);

// The same with memory traffic: each iteration writes `lines` random cache
// lines of `mem` (`bytes`, already written once, so that no page is
// touched for the first time), as a flush step's removals do. Against the
// bare TSC loop it tells whether the machine stalls memory accesses (on a
// guest: the host faulting, migrating or merging pages, invisible to the
// guest's fault counters). "Iterations" and gaps are per batch of lines.
BareLoop memoryLoop(uint64_t cycles, void* mem, std::size_t bytes, uint32_t lines);

// The kernel's timer tick in microseconds (CONFIG_HZ from /proc/config.gz),
// or 0 when the kernel does not say.
double tickUs();

// Are the stalls at TSC times `at` the timer tick? The share of intervals
// between consecutive ones that lie within 5% of the tick of a whole
// number of ticks: about 10% for events unrelated to the tick, near 100%
// when every stall is a tick. -1 with fewer than 10 intervals or no tick.
double tickAligned(const std::vector<uint64_t>& at);

// Index of the range of a time over 50 us.
std::size_t slowRange(double us);
// "a / b / c / d": a table cell.
std::string rangesCell(const uint64_t (&r)[kSlowRanges]);

// The calling thread's id (for sampleCpu).
pid_t currentTid();

}  // namespace strait::bench
