// Pooling micro-kernels for any CPU: the scalar max-pool scan and compiler-vectorised sums
// (default flags; FASTCONV_NATIVE adds -march=native to the whole library).
#define FC_ISA_NS isa_generic
#include "pool_ukernels_impl.inc"

namespace fc {
namespace {
namespace isa_generic {

template <class T>
void fill(PoolUKernels<T> *u) {
  u->max_row = &max_row_scalar<T>;
  u->sum_row = &sum_row<T>;
  u->max_plane_sep = &max_plane_sep<T>;
  u->first_bad_switch = &first_bad_switch;
}

}  // namespace isa_generic
}  // namespace

void get_pool_ukernels__generic(PoolUKernels<float> *f, PoolUKernels<double> *d) {
  isa_generic::fill(f);
  isa_generic::fill(d);
}

}  // namespace fc
