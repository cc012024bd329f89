#include "blas.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "internal.h"

namespace fc {

// Checked on every entry, not once: threadpoolctl and other users of the same library may
// raise its thread count at any time, and a multi-threaded OpenBLAS inside our OpenMP loops
// oversubscribes the cores many times over.
void blas_init_single_threaded() {
  if (CBLAS_FUNC(openblas_get_num_threads)() != 1) CBLAS_FUNC(openblas_set_num_threads)(1);
}

int blas_max_threads() {
  static const int n = [] {
    const char *config = CBLAS_FUNC(openblas_get_config)();
    const char *at = config ? std::strstr(config, "MAX_THREADS=") : nullptr;
    const int v = at ? std::atoi(at + std::strlen("MAX_THREADS=")) : 0;
    return v > 0 ? v : 64;
  }();
  return n;
}

int gemm_threads() { return std::min(num_threads(), blas_max_threads()); }

fc_status blas_reserve(int threads) {
  // (an inference plan's run checks once for all its steps: plan.cpp)
  if (const Scratch *s = current_scratch(); s && threads <= s->blas_threads) return FC_OK;
  constexpr int64_t kBuffer = (int64_t(32) << 20) + 4096;  // measured: 32,980 KiB mapped per buffer
  const int64_t bytes = kBuffer * std::max(threads, 1);
  // Mapped as OpenBLAS maps it (readable and writable, private): the same address-space and
  // commit accounting; never touched, so no page is populated.
  void *p =
      mmap(nullptr, (size_t)bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    return fail(FC_ENOMEM, "not enough memory for OpenBLAS's GEMM buffers (%d x 32 MiB)", threads);
  munmap(p, (size_t)bytes);
  return FC_OK;
}

}  // namespace fc
