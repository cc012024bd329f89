// Micro-kernels compiled for generic (flags set per file in CMakeLists.txt).
#define FC_ISA_NS isa_generic
#include "ukernels_impl.inc"

namespace fc {
void get_ukernels__generic(UKernels<float> *f, UKernels<double> *d) {
  FC_ISA_NS::fill(f);
  FC_ISA_NS::fill(d);
}
}  // namespace fc
