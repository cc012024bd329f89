// FFT-convolution micro-kernels for AVX2 + FMA (flags set per file in CMakeLists.txt):
// 4 double planes per transform; cmac tiles of 4 rows (8 accumulators of 16 ymm).
#define FC_ISA_NS isa_avx2
#define FC_FFT_VBYTES 32
#define FC_FFT_MR 4
#include "fft_impl.inc"

namespace fc {

void get_fft_ukernels__avx2(FftUKernels *u) { isa_avx2::fill(u); }

}  // namespace fc
