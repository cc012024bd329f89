// Winograd transforms for AVX-512 (F, VL, BW, DQ; flags set per file in CMakeLists.txt): the
// loops of winograd_impl.inc vectorised 16 floats / 8 doubles wide.
#define FC_ISA_NS isa_avx512
#define FC_WINO_VB 64  // vector bytes
#define FC_WINO_PW 12  // tile_gemm's columns (12 accumulators)
#include "winograd_impl.inc"

namespace fc {

void get_winograd_ukernels__avx512(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]) {
  isa_avx512::fill(f);
  isa_avx512::fill(d);
}

}  // namespace fc
