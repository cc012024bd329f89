#include "blas.h"

#include <mutex>

extern "C" void CBLAS_FUNC(openblas_set_num_threads)(int);

namespace fc {

void blas_init_single_threaded() {
  static std::once_flag once;
  std::call_once(once, [] { CBLAS_FUNC(openblas_set_num_threads)(1); });
}

}  // namespace fc
