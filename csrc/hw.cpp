// The hardware description (hw.h), made once: the instruction set from the CPU's feature bits
// (lowered by FASTCONV_ISA), cache sizes from Linux's sysfs, else CPUID's cache leaves, else
// defaults; cores from the affinity mask; vendor and model from CPUID. And fc_hardware(), its
// C view.
#include "hw.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#endif
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define FC_X86 1
#endif

#include "internal.h"

namespace fc {

namespace {

// When neither sysfs nor CPUID answers: a common x86 server core of today, and the sizes the
// blocking constants had before they derived from the caches.
constexpr int64_t kDefaultL1d = int64_t(32) << 10;
constexpr int64_t kDefaultL2 = int64_t(1) << 20;
constexpr int64_t kDefaultL3 = int64_t(32) << 20;

Isa detect_isa() {
#if FC_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kGeneric;
}

// FASTCONV_ISA=generic|avx2|avx512 forces a set, never one above the CPU's; others are ignored.
Isa forced_isa(Isa best) {
  const char *env = std::getenv("FASTCONV_ISA");
  if (!env || !*env) return best;
  Isa want = best;
  if (!std::strcmp(env, "generic")) want = Isa::kGeneric;
  else if (!std::strcmp(env, "avx2")) want = Isa::kAvx2;
  else if (!std::strcmp(env, "avx512")) want = Isa::kAvx512;
  return want < best ? want : best;
}

// Cache sizes found so far, in bytes; 0 where no source has answered yet.
struct Caches {
  int64_t l1d = 0, l2 = 0, l3 = 0;
};

// Records a data or unified cache of `level` unless one is recorded already (the first of a
// level is the one nearest the core) or the size is implausible (under 1 KiB, over 4 GiB).
void keep(Caches *c, int level, bool data, int64_t bytes) {
  if (!data || bytes < 1024 || bytes > (int64_t(4) << 30)) return;
  int64_t *slot = level == 1 ? &c->l1d : level == 2 ? &c->l2 : level == 3 ? &c->l3 : nullptr;
  if (slot && !*slot) *slot = bytes;
}

bool read_line(const char *path, char *buf, int n) {
  std::FILE *f = std::fopen(path, "r");
  if (!f) return false;
  const bool ok = std::fgets(buf, n, f) != nullptr;
  std::fclose(f);
  if (ok) buf[std::strcspn(buf, "\r\n")] = '\0';
  return ok;
}

// "32K" -> 32768: sysfs writes KiB with a K; M, G and bare bytes are read too. 0 if unreadable.
int64_t parse_size(const char *s) {
  char *end;
  const long long v = std::strtoll(s, &end, 10);
  if (end == s || v <= 0 || v > (1LL << 40)) return 0;
  switch (std::toupper((unsigned char)*end)) {
    case 'K': return int64_t(v) << 10;
    case 'M': return int64_t(v) << 20;
    case 'G': return int64_t(v) << 30;
    default: return v;
  }
}

// /sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}; FASTCONV_SYSFS_CACHE names
// another directory of index* entries (tests use it to check the parsing and the fallbacks).
void from_sysfs(Caches *c) {
  const char *root = std::getenv("FASTCONV_SYSFS_CACHE");
  if (!root || !*root) root = "/sys/devices/system/cpu/cpu0/cache";
  for (int i = 0; i < 16; ++i) {
    char path[512], level[32], type[32], size[32];
    const auto field = [&](const char *name, char *buf) {
      std::snprintf(path, sizeof path, "%s/index%d/%s", root, i, name);
      return read_line(path, buf, 32);
    };
    if (!field("level", level) || !field("type", type) || !field("size", size)) continue;
    const bool data = !std::strcmp(type, "Data") || !std::strcmp(type, "Unified");
    keep(c, std::atoi(level), data, parse_size(size));
  }
}

#if FC_X86
// Deterministic cache parameters: Intel's leaf 4 and AMD's 0x8000001D share the layout, one
// subleaf per cache, until a subleaf of type 0.
void from_cpuid_leaf(unsigned leaf, Caches *c) {
  for (unsigned sub = 0; sub < 16; ++sub) {
    unsigned a, b, cc, d;
    __cpuid_count(leaf, sub, a, b, cc, d);
    const unsigned type = a & 0x1f;  // 1 data, 2 instruction, 3 unified
    if (type == 0) break;
    const int level = (a >> 5) & 7;
    const int64_t ways = (b >> 22) + 1, partitions = ((b >> 12) & 0x3ff) + 1,
                  line = (b & 0xfff) + 1, sets = int64_t(cc) + 1;
    keep(c, level, type == 1 || type == 3, ways * partitions * line * sets);
  }
}
#endif

void from_cpuid(const char *vendor, Caches *c) {
#if FC_X86
  const bool amd = !std::strcmp(vendor, "AuthenticAMD") || !std::strcmp(vendor, "HygonGenuine");
  if (amd && __get_cpuid_max(0x80000000u, nullptr) >= 0x8000001Du) from_cpuid_leaf(0x8000001Du, c);
  else if (!amd && __get_cpuid_max(0, nullptr) >= 4) from_cpuid_leaf(4, c);
#else
  (void)vendor;
  (void)c;
#endif
}

// Vendor (leaf 0) and brand string (0x80000002-4), trimmed of the padding spaces.
void identify(Hardware *h) {
#if FC_X86
  unsigned r[4];
  if (__get_cpuid(0, &r[0], &r[1], &r[2], &r[3])) {
    std::memcpy(h->vendor, &r[1], 4);
    std::memcpy(h->vendor + 4, &r[3], 4);
    std::memcpy(h->vendor + 8, &r[2], 4);
    h->vendor[12] = '\0';
  }
  if (__get_cpuid_max(0x80000000u, nullptr) >= 0x80000004u) {
    char brand[49] = {0};
    for (unsigned i = 0; i < 3; ++i) {
      __get_cpuid(0x80000002u + i, &r[0], &r[1], &r[2], &r[3]);
      std::memcpy(brand + 16 * i, r, 16);
    }
    const char *b = brand;
    while (*b == ' ') ++b;
    size_t n = std::strlen(b);
    while (n && std::isspace((unsigned char)b[n - 1])) --n;
    n = std::min(n, sizeof h->model - 1);
    std::memcpy(h->model, b, n);
    h->model[n] = '\0';
  }
#else
  (void)h;
#endif
}

int count_cores() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  const long n = sysconf(_SC_NPROCESSORS_ONLN);  // (over 1024 CPUs the fixed mask fails)
  return n > 0 ? (int)n : 1;
}

// The work items every partition aims at (internal.h, fixed_items): 8, enough for up to 8
// threads, or on more CPUs than that the power of two that covers them, at most 64. It is fixed
// at load, so the bits never follow the thread count, and it follows the machine, so a machine
// of 16 CPUs cuts its GEMMs into 16 parts where 8 had left half its threads idle: at 16 threads
// (a 16-core Xeon, session 39) ResNet-50's 1x1 GEMM steps ran 5.2x faster than at one thread,
// only 1.1x faster than at 8. FASTCONV_WORK_ITEMS=8|16|32|64 pins it (the same bits on machines
// that differ only in their CPU count; tests); any other value is ignored.
int pinned_work_items() {  // FASTCONV_WORK_ITEMS's value, or 0
  if (const char *env = std::getenv("FASTCONV_WORK_ITEMS"); env && *env) {
    char *end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (*end == '\0' && (v == 8 || v == 16 || v == 32 || v == 64)) return (int)v;
  }
  return 0;
}
int work_items(int cores) {
  if (const int v = pinned_work_items()) return v;
  int v = 8;
  while (v < cores && v < 64) v *= 2;
  return v;
}

// The fewest tiles a short weight gradient's dW is cut into (conv/im2col.cpp, plan_wide_tiles):
// the power of two that covers the cores, at most the work items; where FASTCONV_WORK_ITEMS
// pins those, a quarter of them, so that the pin keeps the bits on machines that differ only in
// their CPU count here too.
int tile_parts(int cores, int items) {
  if (pinned_work_items()) return std::max(1, items / 4);
  int v = 1;
  while (v < cores && v < items) v *= 2;
  return v;
}

#if FC_X86
// The seconds of `rounds` rounds of 12 independent multiply-add chains on 512-bit and on 256-bit
// vectors (12 chains cover the latency of two pipes). Each chain's result is summed into what
// the caller keeps, so none can be left out.
__attribute__((target("avx512f"))) double fma_seconds_512(int64_t rounds, float *sink) {
  __m512 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm512_set1_ps(1.0f + 0.001f * (float)i);
  const __m512 m = _mm512_set1_ps(0.9999f), c = _mm512_set1_ps(0.0001f);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < 12; ++i) a[i] = _mm512_fmadd_ps(a[i], m, c);
  const auto t1 = std::chrono::steady_clock::now();
  __m512 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm512_add_ps(s, a[i]);
  *sink += _mm512_reduce_add_ps(s);
  return std::chrono::duration<double>(t1 - t0).count();
}

__attribute__((target("avx2,fma"))) double fma_seconds_256(int64_t rounds, float *sink) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(1.0f + 0.001f * (float)i);
  const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t r = 0; r < rounds; ++r)
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  const auto t1 = std::chrono::steady_clock::now();
  __m256 s = a[0];
  for (int i = 1; i < 12; ++i) s = _mm256_add_ps(s, a[i]);
  float v[8];
  _mm256_storeu_ps(v, s);
  for (float x : v) *sink += x;
  return std::chrono::duration<double>(t1 - t0).count();
}

// The 512-bit multiply-add rate in flops over the 256-bit one: each timed over 240,000
// multiply-adds (about 40 us), interleaved, best of 5, after a first 512-bit run that lets the
// core power up its upper lanes (Intel runs them slowly for some microseconds after a pause).
double fma512_ratio() {
  constexpr int64_t kRounds = 20000;
  float sink = 0;
  fma_seconds_512(kRounds, &sink);
  double t512 = 1e30, t256 = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    t512 = std::min(t512, fma_seconds_512(kRounds, &sink));
    t256 = std::min(t256, fma_seconds_256(kRounds, &sink));
  }
  static volatile float keep;
  keep = sink;
  return t512 > 0 ? 2.0 * t256 / t512 : 0.0;
}
#endif

// full_avx512 (hw.h): FASTCONV_FULL_AVX512=0|1 pins it (nothing measured then), else measured
// on a CPU with AVX-512.
void describe_fma(Hardware *h) {
  const char *env = std::getenv("FASTCONV_FULL_AVX512");
  if (env && (!std::strcmp(env, "0") || !std::strcmp(env, "1"))) {
    h->full_avx512 = h->best_isa == Isa::kAvx512 && env[0] == '1';
    return;
  }
#if FC_X86
  if (h->best_isa == Isa::kAvx512) {
    h->fma512_ratio = fma512_ratio();
    h->full_avx512 = h->fma512_ratio >= 1.5;
  }
#endif
}

Hardware detect() {
  Hardware h{};
  h.best_isa = detect_isa();
  h.isa = forced_isa(h.best_isa);
  identify(&h);
  Caches c;
  from_sysfs(&c);
  if (!c.l1d || !c.l2 || !c.l3) from_cpuid(h.vendor, &c);  // fills only what sysfs left out
  h.l1d = c.l1d ? c.l1d : kDefaultL1d;
  h.l2 = c.l2 ? c.l2 : kDefaultL2;
  h.l3 = c.l3 ? c.l3 : kDefaultL3;
  h.cores = count_cores();
  h.work_items = work_items(h.cores);
  h.tile_parts = tile_parts(h.cores, h.work_items);
  describe_fma(&h);
  return h;
}

}  // namespace

const Hardware &hardware() {
  static const Hardware h = detect();
  return h;
}

const char *isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "generic";
  }
}

const char *isa_name() { return isa_name(hardware().isa); }

bool full_avx512_core() { return hardware().full_avx512 && hardware().isa != Isa::kGeneric; }

bool wide_avx512() { return hardware().isa == Isa::kAvx512 && hardware().full_avx512; }

}  // namespace fc

extern "C" {

fc_status fc_hardware(fc_hw_info *out) {
  fc::clear_error();
  if (!out) return fc::fail(FC_EINVAL, "fc_hardware: out is NULL");
  const fc::Hardware &h = fc::hardware();
  fc_hw_info r{};
  r.isa = fc::isa_name(h.isa);
  r.best_isa = fc::isa_name(h.best_isa);
  r.l1d_bytes = h.l1d;
  r.l2_bytes = h.l2;
  r.l3_bytes = h.l3;
  r.cores = h.cores;
  static_assert(sizeof r.model == sizeof h.model && sizeof r.vendor == sizeof h.vendor, "");
  std::memcpy(r.model, h.model, sizeof r.model);
  std::memcpy(r.vendor, h.vendor, sizeof r.vendor);
  r.full_avx512 = h.full_avx512 ? 1 : 0;
  r.fma512_ratio = h.fma512_ratio;
  *out = r;
  return FC_OK;
}

int32_t fc_work_items(void) { return fc::hardware().work_items; }

// A cache line's round trip between the calling thread, pinned to cpu_a for the call, and a
// thread of its own pinned to cpu_b: one writes an odd value, the other answers with the next
// even one. Every wait checks a deadline (the other thread may not get its CPU), and the
// caller's affinity is put back. On the 2-vCPU VMs this project measures on the host moves the
// vCPUs between cores that share an L3 and cores that do not (ARCHITECTURE.md, "How the
// benchmarks measure"); the benchmarks record this figure per round (bench/core_latency.c is
// the same probe as a program).
fc_status fc_core_round_trip(int32_t cpu_a, int32_t cpu_b, double seconds, double *ns) {
  fc::clear_error();
  if (!ns) return fc::fail(FC_EINVAL, "fc_core_round_trip: ns is NULL");
  if (!(seconds > 0 && seconds <= 10))
    return fc::fail(FC_EINVAL, "fc_core_round_trip: seconds must be in (0, 10], got %g", seconds);
#if defined(__linux__)
  cpu_set_t mine;
  if (pthread_getaffinity_np(pthread_self(), sizeof mine, &mine) != 0)
    return fc::fail(FC_EUNSUPPORTED, "fc_core_round_trip: cannot read this thread's CPUs");
  for (int32_t cpu : {cpu_a, cpu_b})
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &mine))
      return fc::fail(FC_EINVAL, "fc_core_round_trip: CPU %d is not one this thread may run on",
                      (int)cpu);
  if (cpu_a == cpu_b) return fc::fail(FC_EINVAL, "fc_core_round_trip: cpu_a == cpu_b (%d)", cpu_a);
  auto pin = [](int32_t cpu) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
  };
  using Clock = std::chrono::steady_clock;
  struct alignas(64) Line {
    std::atomic<long> v{0};
  };
  Line flag;
  alignas(64) std::atomic<int> state{0};  // 1: the other thread runs on cpu_b; 2: stop; -1: no
  const auto span = [](double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  // (a second for the other thread to start; later, a second past the measuring time)
  auto give_up = Clock::now() + span(1.0);
  if (!pin(cpu_a)) return fc::fail(FC_EUNSUPPORTED, "fc_core_round_trip: cannot pin to %d", cpu_a);
  std::thread other;
  try {
    other = std::thread([&] {
      int expected = 0;  // (from 0 only: the caller may have stopped waiting, state 2)
      if (!state.compare_exchange_strong(expected, pin(cpu_b) ? 1 : -1)) return;
      while (state.load(std::memory_order_relaxed) == 1) {
        const long v = flag.v.load(std::memory_order_acquire);
        if (v & 1) flag.v.store(v + 1, std::memory_order_release);
      }
    });
  } catch (...) {  // (std::system_error: no thread to be had)
    pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
    return fc::fail(FC_ENOMEM, "fc_core_round_trip: cannot start a thread");
  }
  while (state.load() == 0 && Clock::now() < give_up) {
  }
  int64_t trips = 0;
  double elapsed = 0;
  bool late = state.load() != 1;
  if (!late) {
    const auto t0 = Clock::now(), end = t0 + span(seconds);
    give_up = end + span(1.0);
    long v = 0;
    while (!late && Clock::now() < end) {
      for (int i = 0; i < 64 && !late; ++i, ++trips) {
        flag.v.store(++v, std::memory_order_release);  // odd: the other thread's turn
        for (int64_t spins = 1; !late && flag.v.load(std::memory_order_acquire) == v; ++spins)
          if (spins % 4096 == 0 && Clock::now() > give_up) late = true;
        ++v;
      }
    }
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  const int got = state.exchange(2);
  other.join();
  pthread_setaffinity_np(pthread_self(), sizeof mine, &mine);
  if (got == -1) return fc::fail(FC_EUNSUPPORTED, "fc_core_round_trip: cannot pin to %d", cpu_b);
  if (late || trips == 0)
    return fc::fail(FC_EUNSUPPORTED, "fc_core_round_trip: CPU %d did not answer in time", cpu_b);
  *ns = elapsed / (double)trips * 1e9;
  return FC_OK;
#else
  (void)cpu_a;
  (void)cpu_b;
  return fc::fail(FC_EUNSUPPORTED, "fc_core_round_trip: needs Linux's thread affinity");
#endif
}

}  // extern "C"
