// Winograd transforms for AVX2 + FMA (flags set per file in CMakeLists.txt): the loops of
// winograd_impl.inc vectorised 8 floats / 4 doubles wide.
#define FC_ISA_NS isa_avx2
#define FC_WINO_VB 32  // vector bytes
#define FC_WINO_PW 6   // tile_gemm's columns (12 accumulators)
#include "winograd_impl.inc"

namespace fc {

void get_winograd_ukernels__avx2(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]) {
  isa_avx2::fill(f);
  isa_avx2::fill(d);
}

}  // namespace fc
