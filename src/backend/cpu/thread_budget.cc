// The load-following OpenMP team (thread_budget.h; measurements in docs/threading.md).
#include "backend/cpu/thread_budget.h"

#include <fcntl.h>
#include <omp.h>
#include <dirent.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <vector>

namespace attn::cpu {
namespace {

constexpr int64_t kSampleEveryNs = 100'000'000;  // 100 ms: 10 ticks of /proc/stat per CPU and window
constexpr int64_t kStaleNs = 300'000'000;        // a longer window (the program idled) restarts at the full team
// A smaller team tries the full one again 0.1 s after shrinking, then 0.2, 0.4, 0.4 ... s while the load
// stays, for a window of 30 ms (run_delay is counted in ns, so a short window measures waiting well): a
// wrong shrink costs 0.1 s, a lasting load 30 ms at the full team in 0.43 s, and a load that left
// (which the others' ticks cannot show where idle CPUs are filled by lower-priority work) 0.4 s at most.
constexpr int64_t kProbeMinNs = 100'000'000, kProbeMaxNs = 400'000'000, kProbeWindowNs = 30'000'000;

std::atomic<int> g_partition{0};  // the user's thread count, 0 until the first follow_load
std::atomic<int> g_team{0};       // the team the load asks for, 0: the partition count
std::atomic<int> g_override{0};
thread_local int tl_last_set = 0;  // the team this thread last set (a different value: the user set it)
thread_local int tl_full_team = 0;  // FullTeam guards alive on this thread

bool enabled() {
  static const bool on = [] {
    const char* e = std::getenv("ATTN_FOLLOW_LOAD");
    return !(e && std::string(e) == "0");
  }();
  return on;
}

int64_t now_ns(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The last sample (when, our CPUs' busy ticks, this process's CPU time, its threads' waiting) and the
// state of the tries of the full team.
struct Sampler {
  std::mutex mu;
  std::atomic<int64_t> next_ns{0};
  int64_t wall_ns = 0, busy_ticks = -1, own_ns = 0, wait_ns = -1;
  int64_t probe_ns = 0;  // when a smaller team next tries the full one again
  int64_t probe_every_ns = kProbeMinNs;
  bool probing = false;  // the team grew to try: a shrink now means the load is still there
  uint64_t mask_bits = 0;  // our CPUs among 0..63 (others: not measured)
  bool count_niced = false;  // niced processes' time counts only when we are niced ourselves
  double ticks_per_s = 100;
  bool trace = false;  // ATTN_FOLLOW_LOAD=trace: one line per sample on stderr

  Sampler() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
      for (int c = 0; c < 64; ++c)
        if (CPU_ISSET(c, &set)) mask_bits |= uint64_t(1) << c;
    count_niced = getpriority(PRIO_PROCESS, 0) > 0;
    const char* e = std::getenv("ATTN_FOLLOW_LOAD");
    trace = e && std::string(e) == "trace";
    const long tck = sysconf(_SC_CLK_TCK);
    if (tck > 0) ticks_per_s = double(tck);
  }

  int64_t read_busy_ticks() const {
    static thread_local std::vector<char> buf(size_t(1) << 16);  // the cpu lines come first
    const int fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = 0;
    for (ssize_t got; len + 1 < buf.size() && (got = read(fd, buf.data() + len, buf.size() - 1 - len)) > 0;)
      len += size_t(got);
    close(fd);
    buf[len] = '\0';
    return busy_ticks_of(buf.data(), mask_bits, count_niced);
  }

  // Summed run_delay of this process's threads (ns they were runnable but waited for a CPU;
  // /proc/self/task/*/schedstat, field 2), -1 where the kernel does not report it.
  static int64_t read_wait_ns() {
    DIR* dir = opendir("/proc/self/task");
    if (!dir) return -1;
    int64_t sum = 0;
    bool any = false;
    char path[320], text[128];
    while (const dirent* e = readdir(dir)) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
      std::snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", e->d_name);
      const int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      const ssize_t n = read(fd, text, sizeof(text) - 1);
      close(fd);
      if (n <= 0) continue;
      text[n] = '\0';
      unsigned long long run = 0, wait = 0;
      if (std::sscanf(text, "%llu %llu", &run, &wait) == 2) sum += int64_t(wait), any = true;
    }
    closedir(dir);
    return any ? sum : -1;
  }

  // Called when the sample is due: updates g_team from the window since the last sample.
  void sample(int partition) {
    std::unique_lock lock(mu, std::try_to_lock);
    if (!lock.owns_lock()) return;
    const int64_t wall = now_ns(CLOCK_MONOTONIC), own = now_ns(CLOCK_PROCESS_CPUTIME_ID);
    const int64_t busy = read_busy_ticks(), wait = read_wait_ns();
    next_ns.store(wall + kSampleEveryNs, std::memory_order_relaxed);
    const int64_t dwall = wall - wall_ns;
    const int wanted = g_team.load(std::memory_order_relaxed), team = wanted > 0 ? wanted : partition;
    int next = team;
    if (dwall >= kStaleNs) {
      next = partition;  // we computed nothing for a while: start afresh with the full team
      probing = false;
    } else if (busy >= 0 && busy_ticks >= 0 && dwall > 0) {
      const double window_s = double(dwall) * 1e-9;
      const double other_s = double(busy - busy_ticks) / ticks_per_s - double(own - own_ns) * 1e-9;
      LoadSample ls{.others = std::max(0.0, other_s / window_s), .waited = 0, .probe_due = wall >= probe_ns,
                    .trying = probing};
      ls.waited = wait >= 0 && wait_ns >= 0 ? std::max<double>(0.0, double(wait - wait_ns) * 1e-9 / window_s)
                                           : ls.others;  // no schedstat: the others' share stands in
      next = team_for_load(partition, team, ls);
      if (next < team) {  // shrinking: right after a try, wait twice as long before the next one
        probe_every_ns = probing ? std::min(2 * probe_every_ns, kProbeMaxNs) : kProbeMinNs;
        probe_ns = wall + probe_every_ns;
      }
      probing = next > team && ls.others > 0.3;  // a try, not the others leaving
      if (probing) next_ns.store(wall + kProbeWindowNs, std::memory_order_relaxed);
      if (trace)
        std::fprintf(stderr, "attn follow_load: window %.0f ms, our threads waited %.2f, others %.2f CPUs: "
                     "team %d -> %d\n", window_s * 1e3, ls.waited, ls.others, team, next);
    }
    g_team.store(next, std::memory_order_relaxed);
    wall_ns = wall, busy_ticks = busy, own_ns = own, wait_ns = wait;
  }
};

Sampler& sampler() {
  static Sampler s;
  return s;
}

void set_team(int team) {
  if (omp_get_max_threads() != team) omp_set_num_threads(team);
  tl_last_set = team;
}

}  // namespace

int64_t busy_ticks_of(const char* text, uint64_t mask_bits, bool count_niced) {
  int64_t sum = 0;
  bool any = false;
  for (const char* p = text; p && *p; p = std::strchr(p, '\n'), p = p ? p + 1 : nullptr) {
    if (std::strncmp(p, "cpu", 3) != 0 || !(p[3] >= '0' && p[3] <= '9')) continue;
    char* end = nullptr;
    const long cpu = std::strtol(p + 3, &end, 10);
    if (cpu < 0 || cpu >= 64 || !(mask_bits >> cpu & 1)) continue;
    // user nice system idle iowait irq softirq steal (guest time is already in user / nice)
    int64_t f[8] = {};
    for (int i = 0; i < 8; ++i) f[i] = std::strtoll(end, &end, 10);
    sum += f[0] + (count_niced ? f[1] : 0) + f[2] + f[5] + f[6] + f[7];
    any = true;
  }
  return any ? sum : -1;
}

int team_for_load(int partition, int team, const LoadSample& s) {
  if (partition <= 1) return 1;
  team = std::clamp(team, 1, partition);
  if (s.waited >= (s.trying ? 0.3 : 0.45) && team > 1) {  // our threads waited: one fewer per CPU others take
    const int lost = std::max(1, int(std::floor(s.others + 0.4)));
    return std::clamp(std::min(team - 1, partition - lost), 1, partition);
  }
  if (team < partition && (s.others <= 0.3 || s.probe_due)) return partition;  // freed, or time to try
  return team;
}

int partition_threads() {
  const int p = g_partition.load(std::memory_order_relaxed);
  return p > 0 ? p : omp_get_max_threads();
}

void follow_load() {
  if (omp_in_parallel() || tl_full_team > 0) return;
  const int current = omp_get_max_threads();
  if (current != tl_last_set) g_partition.store(current, std::memory_order_relaxed);  // the user's count
  const int partition = g_partition.load(std::memory_order_relaxed);
  if (const int forced = g_override.load(std::memory_order_relaxed); forced > 0)
    return set_team(std::min(forced, partition));
  if (!enabled() || partition <= 1) return set_team(partition);
  Sampler& s = sampler();
  if (now_ns(CLOCK_MONOTONIC_COARSE) >= s.next_ns.load(std::memory_order_relaxed)) s.sample(partition);
  const int team = g_team.load(std::memory_order_relaxed);
  set_team(team > 0 ? std::min(team, partition) : partition);
}

int set_team_override(int team) { return g_override.exchange(std::max(0, team)); }

FullTeam::FullTeam() : saved_(omp_in_parallel() ? 0 : omp_get_max_threads()) {
  ++tl_full_team;
  if (saved_ > 0 && partition_threads() != saved_) omp_set_num_threads(partition_threads());
}
FullTeam::~FullTeam() {
  --tl_full_team;
  if (saved_ > 0 && omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
}

}  // namespace attn::cpu
