// Micro-kernels compiled for avx512 (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_avx512
#define FC_VEC_BYTES 64  // AVX-512 vectors
#define FC_TILE_KB 6     // direct tile: 6 output channels x 4 vectors (24 accumulators)
#define FC_KTILE_KV 2    // k-tile: 2 vectors of output channels x 14 positions
#define FC_KTILE_P 14
// Blocked tiles (float): 16 output channels in one zmm register (the two blocks of 8 joined),
// each input value broadcast into its multiply-add (blocked_tile_zmm, blocked_tile_rows_zmm):
// P accumulators and P + 3 instructions a step, where the ymm tiles (2 x 8 channels x 6
// positions, 12 ymm, AVX2's) take 3P + 2. The same products in the same order: the same bits.
// Measured against the ymm tiles (Zen 4, whose 512-bit FMAs run as two 256-bit halves; 2
// threads, interleaved in one process, best of 5-7, session 33):
// - FC_FORWARD_P, the forward on channel blocks at stride 1 or 2, 14 positions: ResNet's 3x3/2
//   onto 7x7 at 8 images 0.77x the time, 3x3 512 at 7x7 0.82x forward and data gradient,
//   Inception v3's 3x3 384 at 8x8 0.89x, 1x1 512>2048 at 7x7 0.88x, 3x3/2 256 at 28x28, 3x3
//   256 at 14x14 and 5x5 48>64 at 35x35 0.90-0.92x, 1x7/7x1 0.96-0.99x. 8-16 positions came
//   out within 3% of one another, 6 at 0.86-0.97x; tiles of positions across rows (a 7x7 plane
//   in tiles of 10) 1.04-1.10x slower than a tile a row.
// - FC_BLOCKED_P, the weight gradient's tiles (8 input channels at a tap) and the forward's
//   rows layout (under 8 input channels), 8 positions: weight gradients 0.85-0.99x (3x3 512 at
//   7x7 0.87x, 256 at 14x14 0.88-0.94x, 1x7 160 at 17x17 0.85x, L3 0.99x), the stem's 7x7/2
//   0.84x at 8 images and 0.98x at 1, AlexNet's 11x11/4 0.85x, Inception v3's first 3x3/2
//   1.03x. At 12 positions: 0.78-0.95x on most, but L2's and L3's 9x9 1.28x slower.
#define FC_BLOCKED_P 8
#define FC_BLOCKED_P_F64 3  // (double: the compiled tiles, 2 x 3 zmm of 8 values)
#define FC_FORWARD_P 14
#define FC_WGRAD32_P 14  // the weight gradient's 32-channel tile: up to 28 accumulators
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
