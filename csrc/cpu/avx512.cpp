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
// forward tile on channel blocks at stride 1 or 2: 16 output channels (one zmm) x 14 positions,
// each input value broadcast into its multiply-add (blocked_tile_zmm). Against the ymm tile
// above (Zen 4, 2 threads, interleaved in one process, best of 7, the same bits): ResNet's
// 3x3/2 onto 7x7 at 8 images 0.77x the time, 3x3 512 at 7x7 0.82x forward and data gradient,
// Inception v3's 3x3 384 at 8x8 0.89x, 1x1 512>2048 at 7x7 0.88x, 3x3/2 256 at 28x28, 3x3 256
// at 14x14 and 5x5 48>64 at 35x35 0.90-0.92x, 1x7/7x1 0.96-0.99x. 8-16 positions came out
// within 3% of one another; the zmm tile at 6 positions 0.86-0.97x; positions across rows (a
// 7x7 plane in tiles of 10) 1.04-1.10x slower than a tile a row.
#define FC_FORWARD_P 14
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
