// Micro-kernels compiled for avx512 (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_avx512
#define FC_VEC_BYTES 64  // AVX-512 vectors
#define FC_TILE_KB 6     // direct tile: 6 output channels x 4 vectors (24 accumulators)
#define FC_KTILE_KV 2    // k-tile: 2 vectors of output channels x 14 positions
#define FC_KTILE_P 14
#define FC_BLOCKED_P 12  // blocked tile: 2 x 8 output channels x 12 positions (24 ymm)
#define FC_TILE_NV 4
#define FC_DOT_MR 4  // NT dot-product tile: 4 x 6 (24 accumulators + 4 rows of a + 1 of b)
#define FC_DOT_NR 6
#include "ukernels_impl.inc"

namespace fc {
void get_ukernels__avx512(UKernels<float> *f, UKernels<double> *d) {
  FC_ISA_NS::fill(f);
  FC_ISA_NS::fill(d);
}
}  // namespace fc
