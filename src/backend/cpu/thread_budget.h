// src/backend/cpu/thread_budget.h — a load-following OpenMP team (internal; docs/threading.md).
//
//   cpu::follow_load();                      // at an op's entry, outside parallel regions (CpuBackend::allocate)
//   const int nt = cpu::partition_threads(); // cut a reduction into nt fixed slices: same bits with any team
//   { cpu::FullTeam full; run_onednn_primitive(); }  // code whose result follows its team size
//
// The user's thread count (OMP_NUM_THREADS, --threads, omp_set_num_threads) is the *partition* count:
// every kernel whose result depends on how the work is split cuts it into that many slices. The *team*
// (omp_get_max_threads(), what a parallel region gets) follows the machine's load: when other processes
// keep some of our CPUs busy, a team of one per free CPU avoids waiting at every join for a thread the
// kernel has descheduled. The team changes when threads do, never what they compute.
#pragma once

#include <cstdint>

namespace attn::cpu {

// The thread count partitions that change results are cut for: the user's count, fixed unless the user
// changes it (not the load-following team).
int partition_threads();

// Every >= 100 ms (the clock is read each call, /proc only then; 30 ms while trying the full team):
// measures how long our threads waited for a CPU and the CPU time other processes took on our CPUs
// since the last look, and sets the calling thread's OpenMP team by team_for_load (at least 1, at most
// the partition count). Cheap; a no-op inside parallel regions; with ATTN_FOLLOW_LOAD=0 in the
// environment the team stays at the partition count.
void follow_load();

// Tests: forces the team to `team` threads (0: back to following the load); returns the old override.
int set_team_override(int team);

// What one window (>= 100 ms) of the machine showed, in CPUs' worth of that window.
struct LoadSample {
  double others = 0;       // CPU time other processes took on our CPUs (/proc/stat, less our own)
  double waited = 0;       // time our threads were runnable but waited for a CPU (schedstat run_delay)
  bool probe_due = false;  // a smaller team's next try of the full one is due
  bool trying = false;     // this window was such a try (30 ms)
};

// The policy, pure: the next team from the current one and a window. Our threads waited for a CPU
// (>= 0.45 of one; >= 0.3 in a try, which follows a shrink): one thread fewer per CPU other processes take (at least one). A smaller team goes
// back to the full one when the others leave (<= 0.3 of a CPU) or when a try is due (0.1 s after
// shrinking, then 0.2 and every 0.4 s while the load stays): the next (30 ms) window's waiting decides.
// Waiting, not the others' time, is the signal to shrink: processes of lower priority fill every CPU
// we leave idle without slowing us.
int team_for_load(int partition, int team, const LoadSample& sample);

// One /proc/stat sample: summed busy ticks (all but idle and iowait, and niced time only when
// count_niced: a background job at a positive nice value yields its CPU to us) of the CPUs in
// `mask_bits` (bit i = cpu i; CPUs 0..63). Returns -1 if no such CPU line is found.
int64_t busy_ticks_of(const char* proc_stat_text, uint64_t mask_bits, bool count_niced);

// Holds the team at the partition count for its lifetime (oneDNN primitives whose internal split
// follows the thread count they are created or run with: convolution, pooling).
class FullTeam {
 public:
  FullTeam();
  ~FullTeam();
  FullTeam(const FullTeam&) = delete;
  FullTeam& operator=(const FullTeam&) = delete;

 private:
  int saved_;
};

}  // namespace attn::cpu
