// Micro-kernels compiled for avx2 (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_avx2
#include "ukernels_impl.inc"

namespace fc {
void get_ukernels__avx2(UKernels<float> *f, UKernels<double> *d) {
  FC_ISA_NS::fill(f);
  FC_ISA_NS::fill(d);
}
}  // namespace fc
