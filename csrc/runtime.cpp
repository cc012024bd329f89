// The state every entry point shares: the per-thread error message, the thread count (a
// process default plus a per-thread override, as grad mode is per thread), and fork safety.
#include <omp.h>
#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#include "internal.h"

namespace fc {

namespace {
thread_local char t_error[512] = "";
thread_local bool t_single = false;  // set by SmallWorkGuard
thread_local int t_threads = 0;      // fc_set_local_num_threads; 0 = the process default
std::atomic<int> g_threads{0};       // fc_set_num_threads; 0 = OpenMP's default
constexpr int64_t kSmallWork = int64_t(1) << 18;

int clamp_threads(int n) { return std::min(std::max(n, 1), FC_MAX_THREADS); }
}  // namespace

fc_status fail(fc_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(t_error, sizeof t_error, fmt, ap);
  va_end(ap);
  return s;
}

void clear_error() { t_error[0] = '\0'; }

int num_threads() {
  if (t_single) return 1;
  if (t_threads > 0) return t_threads;
  const int n = g_threads.load(std::memory_order_relaxed);
  // (OMP_NUM_THREADS=100000 is OpenMP's default as given: clamped like fc_set_num_threads)
  return n > 0 ? n : clamp_threads(omp_get_max_threads());
}

SmallWorkGuard::SmallWorkGuard(int64_t work) : prev_(t_single) {
  if (work < kSmallWork) t_single = true;
}
SmallWorkGuard::~SmallWorkGuard() { t_single = prev_; }

// ---- fork safety ----
// libgomp keeps a pool of worker threads per thread that has started a parallel region.
// fork() copies the pool's bookkeeping into the child but none of its threads, so the next
// parallel region started by the thread that forked waits forever for workers that do not
// exist (PyTorch hangs the same way). A thread that never started a region has no pool and
// builds a full one on its first. So in a child, entry points called on the thread that
// forked run on a relay thread of our own, at the full thread count; every other thread runs
// as usual.
namespace {

std::atomic<bool> g_forked{false};
pthread_t g_fork_thread;

// One job at a time from the forking thread (the only caller) to the relay thread.
struct Relay {
  std::mutex mu;
  std::condition_variable cv;
  EntryFn fn = nullptr;
  void *arg = nullptr;
  int threads = 0;
  bool single = false;
  bool has_job = false, has_result = false, started = false;
  fc_status result = FC_OK;
  char error[sizeof t_error] = "";

  void serve() {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait(lock, [this] { return has_job; });
      has_job = false;
      t_threads = threads;
      t_single = single;
      lock.unlock();
      clear_error();
      const fc_status st = fn(arg);
      lock.lock();
      result = st;
      std::snprintf(error, sizeof error, "%s", t_error);
      has_result = true;
      cv.notify_all();
    }
  }
};

alignas(Relay) unsigned char g_relay_storage[sizeof(Relay)];
Relay *g_relay = nullptr;

void after_fork_in_child() {
  // The parent's relay thread (if any) is gone and its mutex may have been held: start anew.
  // (The old object is abandoned, not destroyed: destroying a copied std::thread would abort.)
  g_relay = new (g_relay_storage) Relay;
  g_fork_thread = pthread_self();
  g_forked.store(true, std::memory_order_release);
}

[[maybe_unused]] const int g_atfork_registered =
    pthread_atfork(nullptr, nullptr, after_fork_in_child);

}  // namespace

bool on_stale_pool() {
  return g_forked.load(std::memory_order_acquire) && pthread_equal(pthread_self(), g_fork_thread);
}

fc_status run_on_relay(EntryFn fn, void *arg) {
  Relay &r = *g_relay;
  std::unique_lock<std::mutex> lock(r.mu);
  if (!r.started) {
    try {
      std::thread([&r] { r.serve(); }).detach();
    } catch (const std::exception &) {
      return fail(FC_ENOMEM, "cannot start a thread to run OpenMP in this forked process");
    }
    r.started = true;
  }
  r.fn = fn;
  r.arg = arg;
  r.threads = num_threads();
  r.single = false;
  r.has_result = false;
  r.has_job = true;
  r.cv.notify_all();
  r.cv.wait(lock, [&r] { return r.has_result; });
  std::snprintf(t_error, sizeof t_error, "%s", r.error);
  return r.result;
}

}  // namespace fc

using namespace fc;

extern "C" {

const char *fc_last_error(void) { return t_error; }

void fc_set_num_threads(int n) {
  // Beyond FC_MAX_THREADS libgomp itself fails to start a team (seen at 100000): clamp.
  g_threads.store(n > 0 ? clamp_threads(n) : 0, std::memory_order_relaxed);
}

int fc_set_local_num_threads(int n) {
  const int prev = t_threads;
  t_threads = n > 0 ? clamp_threads(n) : 0;
  return prev;
}

int fc_get_num_threads(void) { return num_threads(); }

}  // extern "C"

namespace fc {

Scratch *&current_scratch() {
  thread_local Scratch *s = nullptr;
  return s;
}

// ---- the workspace cache ----
// Workspaces of 1 MiB and more are kept after a call (exact sizes, up to a limit, the oldest
// given back first) for the next call that asks for the same size: a training loop repeats its
// shapes every step. Freshly mapped memory costs a page fault and a page of zeroes per 4 KiB on
// every call (glibc maps blocks above its threshold, at most 32 MiB, straight from the kernel):
// Winograd's 512-channel 3x3 forward at 14x14, batch 8, ran 36-44 ms against 27-36 ms with its
// buffers reused (AVX2 EPYC, 2 threads). FASTCONV_WORKSPACE_CACHE_MB (at load) sets the limit;
// fc_workspace_cache_release gives everything back.
namespace {

constexpr size_t kCachedMin = size_t(1) << 20;

struct WorkspaceCache {
  std::mutex mu;
  std::vector<std::pair<void *, size_t>> blocks;  // oldest first
  size_t bytes = 0;
  size_t limit = size_t(256) << 20;
  WorkspaceCache() {
    if (const char *e = std::getenv("FASTCONV_WORKSPACE_CACHE_MB")) {
      char *end = nullptr;
      const long long mb = std::strtoll(e, &end, 10);
      if (end != e && *end == '\0' && mb >= 0 && mb <= (1LL << 30)) limit = size_t(mb) << 20;
    }
  }
};

// Never destroyed: workspaces may be freed by static destructors at exit.
WorkspaceCache &workspace_cache() {
  static WorkspaceCache *c = new WorkspaceCache;
  return *c;
}

// In a forked child the cache's mutex may have been held by a thread that is gone: a new one.
// (Its blocks are the parent's copies, still valid memory of the child.)
void workspace_cache_after_fork() { new (&workspace_cache().mu) std::mutex; }
[[maybe_unused]] const int g_cache_atfork =
    pthread_atfork(nullptr, nullptr, workspace_cache_after_fork);

}  // namespace

// Blocks of kCachedMin and more are mapped, not malloc'd (as the NumPy array cache's, in
// python/_core_memory.cpp): giving one back returns its address space at once, where glibc
// keeps blocks under its adaptive threshold in a heap whose middle never shrinks.
void *cached_alloc(size_t bytes) {
  if (bytes < kCachedMin) return std::aligned_alloc(64, bytes);
  WorkspaceCache &c = workspace_cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    for (size_t i = c.blocks.size(); i-- > 0;)  // the newest of that size
      if (c.blocks[i].second == bytes) {
        void *p = c.blocks[i].first;
        c.blocks.erase(c.blocks.begin() + (std::ptrdiff_t)i);
        c.bytes -= bytes;
        return p;
      }
  }
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED && fc_workspace_cache_release() > 0)  // out of memory: try once more
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void cached_free(void *p, size_t bytes) {
  if (!p) return;
  if (bytes < kCachedMin) return std::free(p);
  WorkspaceCache &c = workspace_cache();
  std::vector<std::pair<void *, size_t>> evicted;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (bytes <= c.limit) {
      c.blocks.emplace_back(p, bytes);
      c.bytes += bytes;
      p = nullptr;
      while (c.bytes > c.limit) {
        evicted.push_back(c.blocks.front());
        c.bytes -= c.blocks.front().second;
        c.blocks.erase(c.blocks.begin());
      }
    }
  }
  if (p) munmap(p, bytes);
  for (auto &e : evicted) munmap(e.first, e.second);
}

void *workspace_alloc(size_t bytes) {
  Scratch *s = current_scratch();
  if (!s) return cached_alloc(bytes);
  s->live += bytes;
  s->peak = std::max(s->peak, s->live);
  if (s->base && bytes <= s->cap - s->used) {
    void *p = s->base + s->used;
    s->used += bytes;
    return p;
  }
  ++s->misses;
  return std::aligned_alloc(64, bytes);
}

void workspace_free(void *p, size_t bytes) {
  Scratch *s = current_scratch();
  if (!s) return cached_free(p, bytes);
  s->live -= std::min(s->live, bytes);
  if (s->base && (char *)p >= s->base && (char *)p < s->base + s->cap) {
    if ((char *)p + bytes == s->base + s->used) s->used -= bytes;  // the top of the stack
    return;
  }
  std::free(p);
}

}  // namespace fc

extern "C" {

void fc_workspace_cache_info(int64_t *bytes, int64_t *limit) {
  WorkspaceCache &c = workspace_cache();
  std::lock_guard<std::mutex> lock(c.mu);
  if (bytes) *bytes = (int64_t)c.bytes;
  if (limit) *limit = (int64_t)c.limit;
}

int64_t fc_workspace_cache_release(void) {
  WorkspaceCache &c = workspace_cache();
  std::vector<std::pair<void *, size_t>> blocks;
  size_t released;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    blocks.swap(c.blocks);
    released = c.bytes;
    c.bytes = 0;
  }
  for (auto &b : blocks) munmap(b.first, b.second);
  return (int64_t)released;
}

}  // extern "C"
