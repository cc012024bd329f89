// FFT-convolution micro-kernels for any CPU: 16-byte vectors (SSE2 on x86-64, the baseline;
// default flags, FASTCONV_NATIVE adds -march=native to the whole library).
#define FC_ISA_NS isa_generic
#define FC_FFT_VBYTES 16
#define FC_FFT_MR 4
#include "fft_impl.inc"

namespace fc {

void get_fft_ukernels__generic(FftUKernels *u) { isa_generic::fill(u); }

}  // namespace fc
