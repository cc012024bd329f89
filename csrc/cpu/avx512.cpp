// Micro-kernels compiled for avx512 (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_avx512
#define FC_VEC_BYTES 64  // AVX-512 vectors
#define FC_TILE_KB 6     // direct tile: 6 output channels x 4 vectors (24 accumulators)
#define FC_KTILE_KV 2    // k-tile: 2 vectors of output channels x 14 positions
#define FC_KTILE_P 14
// blocked tile: 2 x 8 output channels x 6 positions (12 ymm), AVX2's asm tile. With 12
// positions (24 ymm, the compiled loop) direct's weight gradient ran 1.16x the AVX2 table's
// time (median over `fastconv bench auto`'s rows, Zen 4, whose 512-bit FMAs run as two 256-bit
// halves), L2's and L3's at one image 2.2-2.5x; its forward came out even (0.995x). With this
// tile L3's weight gradient took 16 ms against 45 (best of 7, separate runs).
#define FC_BLOCKED_P 6
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
