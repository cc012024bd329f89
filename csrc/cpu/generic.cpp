// Micro-kernels compiled for generic (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_generic
#define FC_VEC_BYTES 16  // SSE2 vectors
#define FC_TILE_KB 4     // direct tile: 4 output channels x 2 vectors (8 accumulators)
#define FC_KTILE_KV 2    // k-tile: 2 vectors of output channels x 6 positions
#define FC_KTILE_P 6
#define FC_BLOCKED_P 3  // blocked tile: 2 x 8 output channels x 3 positions (12 xmm)
#define FC_TILE_NV 2
#define FC_DOT_MR 3  // NT dot-product tile: 3 x 4 (12 accumulators + 3 rows of a + 1 of b)
#define FC_DOT_NR 4
#include "ukernels_impl.inc"

namespace fc {
void get_ukernels__generic(UKernels<float> *f, UKernels<double> *d) {
  FC_ISA_NS::fill(f);
  FC_ISA_NS::fill(d);
}
}  // namespace fc
