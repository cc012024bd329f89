// fastconv._core: a caching NumPy memory handler (NEP 49) for large arrays.
//
// A training step allocates the same large arrays every step: activations, gradients and
// column buffers of tens of MB each. glibc serves blocks above its mmap threshold (32 MiB at
// most) with fresh mmaps, so every step page-faults and zero-fills all of them again: VGG-A at
// batch 4 spent about 45% of its forward+backward time in the kernel doing that. PyTorch keeps
// freed blocks in its allocator; this handler does the same for NumPy arrays created while it
// is active (fastconv.memory_cache): freed blocks of at least kMinCached bytes are kept, by
// exact (page-rounded) size, up to a byte limit (the least recently cached go first), and
// reused for the next request of that size.
//
// This lives beside the bindings rather than in csrc/: it is NumPy's allocator interface, not
// a kernel. Every block carries a 64-byte header (its size, and whether it is cacheable), so
// realloc and free need nothing else; data is 64-byte aligned for cacheable blocks.
#define NPY_NO_DEPRECATED_API NPY_1_23_API_VERSION
#define NPY_TARGET_VERSION NPY_1_23_API_VERSION
#include <numpy/arrayobject.h>
#include <pybind11/pybind11.h>

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "_core_common.h"

namespace py = pybind11;

namespace {

constexpr size_t kHeader = 64;
constexpr size_t kPage = 4096;
constexpr size_t kMinCached = size_t(1) << 20;  // smaller blocks go straight to malloc
constexpr uint64_t kMagicPlain = 0x66636d656d706c6eULL, kMagicCached = 0x66636d656d63616eULL;

struct Header {
  uint64_t magic;
  size_t bytes;  // usable bytes (page-rounded for cached blocks)
};

// Cacheable blocks are mapped, not malloc'd: freeing one gives its address space back at once
// (glibc keeps blocks under its adaptive mmap threshold, up to 32 MiB, in a heap whose middle
// never shrinks; under an address-space limit the memory the cache freed stayed unusable, for
// OpenBLAS's mapped buffers too). The header's page holds the size, the data is page-aligned + 64.
void *map_block(size_t bytes) {
  void *p =
      mmap(nullptr, bytes + kHeader, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
void unmap_block(void *base, size_t bytes) { munmap(base, bytes + kHeader); }

class Cache {
 public:
  void *take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(bytes);
    if (it == free_.end() || it->second.empty()) {
      ++misses_;
      return nullptr;
    }
    void *p = it->second.back().second;
    it->second.pop_back();
    held_ -= bytes + kHeader;
    ++hits_;
    return p;
  }
  // Keeps the block for reuse, first freeing the least recently cached blocks if it would pass
  // the limit (a working set that changed, say from one network to the next, must not be
  // locked out by the old one's blocks); false when the block alone is over the limit.
  bool give(void *base, size_t bytes) {
    std::vector<std::pair<void *, size_t>> evicted;  // (block, bytes)
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (bytes + kHeader > limit_) return false;
      while (held_ + bytes + kHeader > limit_) {
        auto oldest = free_.end();
        for (auto it = free_.begin(); it != free_.end(); ++it)
          if (!it->second.empty() &&
              (oldest == free_.end() || it->second.front().first < oldest->second.front().first))
            oldest = it;
        evicted.emplace_back(oldest->second.front().second, oldest->first);
        oldest->second.erase(oldest->second.begin());
        held_ -= oldest->first + kHeader;
      }
      free_[bytes].emplace_back(++stamp_, base);
      held_ += bytes + kHeader;
    }
    for (auto &e : evicted) unmap_block(e.first, e.second);
    return true;
  }
  // Unmaps every unused block; true if there were any.
  bool release() {
    std::lock_guard<std::mutex> lock(mu_);
    const bool any = held_ > 0;
    for (auto &kv : free_)
      for (auto &e : kv.second) unmap_block(e.second, kv.first);
    free_.clear();
    held_ = 0;
    return any;
  }
  void set_limit(size_t limit) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      limit_ = limit;
      if (held_ <= limit_) return;
    }
    release();
  }
  py::dict stats() {
    std::lock_guard<std::mutex> lock(mu_);
    py::dict d;
    d["held_bytes"] = held_;
    d["limit_bytes"] = limit_;
    d["hits"] = hits_;
    d["misses"] = misses_;
    return d;
  }

 private:
  std::mutex mu_;
  // size -> (stamp, block), oldest first
  std::map<size_t, std::vector<std::pair<uint64_t, void *>>> free_;
  size_t held_ = 0;
  size_t limit_ = size_t(2) << 30;
  uint64_t hits_ = 0, misses_ = 0, stamp_ = 0;
};

Cache &cache() {
  static Cache *c = new Cache;  // never destroyed: arrays may be freed during interpreter exit
  return *c;
}

void *with_header(void *base, uint64_t magic, size_t bytes) {
  if (!base) return nullptr;
  auto *h = static_cast<Header *>(base);
  h->magic = magic;
  h->bytes = bytes;
  return static_cast<char *>(base) + kHeader;
}

Header *header_of(void *p) { return reinterpret_cast<Header *>(static_cast<char *>(p) - kHeader); }

// malloc-like: on failure the cache's unused blocks are freed and the allocation is tried once
// more (memory the cache holds for later must not make this allocation fail).
template <class F>
void *retrying(F &&allocate) {
  void *p = allocate();
  if (!p && fcpy::release_cached_blocks()) p = allocate();
  return p;
}

void *alloc(void *, size_t size) {
  if (size > SIZE_MAX - kHeader - kPage) return nullptr;
  if (size < kMinCached)
    return with_header(retrying([&] { return std::malloc(size + kHeader); }), kMagicPlain, size);
  size_t bytes = (size + kPage - 1) / kPage * kPage;
  if (void *base = cache().take(bytes)) return with_header(base, kMagicCached, bytes);
  return with_header(retrying([&] { return map_block(bytes); }), kMagicCached, bytes);
}

void *alloc_zeroed(void *ctx, size_t nelem, size_t elsize) {
  size_t size;
  if (__builtin_mul_overflow(nelem, elsize, &size)) return nullptr;
  void *p = alloc(ctx, size);
  if (p) std::memset(p, 0, size);
  return p;
}

void release(void *, void *p, size_t) {
  if (!p) return;
  Header *h = header_of(p);
  if (h->magic == kMagicCached) {
    if (!cache().give(h, h->bytes)) unmap_block(h, h->bytes);
    return;
  }
  h->magic = 0;
  std::free(h);
}

void *resize(void *ctx, void *p, size_t size) {
  if (!p) return alloc(ctx, size);
  Header *h = header_of(p);
  if (h->magic == kMagicPlain && size < kMinCached) {
    void *base = retrying([&] { return std::realloc(h, size + kHeader); });
    return base ? with_header(base, kMagicPlain, size) : nullptr;
  }
  void *q = alloc(ctx, size);
  if (!q) return nullptr;
  std::memcpy(q, p, std::min(size, h->bytes));
  release(ctx, p, 0);
  return q;
}

PyDataMem_Handler g_handler = {
    "fastconv_cache",
    1,
    {nullptr, alloc, alloc_zeroed, resize, release},
};

}  // namespace

// Both caches: the arrays' (here) and the kernels' workspaces (the C library's).
bool fcpy::release_cached_blocks() {
  const bool workspaces = fc_workspace_cache_release() > 0;
  return cache().release() || workspaces;
}

void fc_bind_memory(py::module_ &m) {
  if (_import_array() < 0) throw py::error_already_set();
  // One capsule for the life of the process: arrays keep a reference to their handler.
  static PyObject *capsule = PyCapsule_New(&g_handler, "mem_handler", nullptr);
  if (!capsule) throw py::error_already_set();
  m.def("memory_handler_set",
        [](bool on) {
    // PyDataMem_SetHandler(NULL) restores NumPy's default for the current context.
    PyObject *old = PyDataMem_SetHandler(on ? capsule : nullptr);
    if (!old) throw py::error_already_set();
    bool was = old == capsule;
    Py_DECREF(old);
    return was;
  }, py::arg("on"),
        "Use (or stop using) the caching handler for new arrays in this context; "
        "returns whether it was in use.");
  m.def("memory_cache_limit", [](size_t limit) { cache().set_limit(limit); },
        py::arg("limit_bytes"));
  m.def("memory_cache_release", [] { cache().release(); });
  m.def("memory_cache_stats", [] { return cache().stats(); });
}
