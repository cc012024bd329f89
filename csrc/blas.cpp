#include "blas.h"

namespace fc {

// Checked on every entry, not once: threadpoolctl and other users of the same library may
// raise its thread count at any time, and a multi-threaded OpenBLAS inside our OpenMP loops
// oversubscribes the cores many times over.
void blas_init_single_threaded() {
  if (CBLAS_FUNC(openblas_get_num_threads)() != 1) CBLAS_FUNC(openblas_set_num_threads)(1);
}

}  // namespace fc
