// Winograd transforms for any CPU (default flags; FASTCONV_NATIVE adds -march=native to the
// whole library): the loops of winograd_impl.inc as the compiler vectorises them for the baseline.
#define FC_ISA_NS isa_generic
#define FC_WINO_VB 16  // vector bytes
#define FC_WINO_PW 3   // tile_gemm's columns (12 accumulators)
#include "winograd_impl.inc"

namespace fc {

void get_winograd_ukernels__generic(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]) {
  isa_generic::fill(f);
  isa_generic::fill(d);
}

}  // namespace fc
