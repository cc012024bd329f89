// FFT-convolution micro-kernels for AVX-512 (flags set per file in CMakeLists.txt):
// 8 double planes per transform; cmac tiles of 8 rows (16 accumulators of 32 zmm).
#define FC_ISA_NS isa_avx512
#define FC_FFT_VBYTES 64
#define FC_FFT_MR 8
#include "fft_impl.inc"

namespace fc {

void get_fft_ukernels__avx512(FftUKernels *u) { isa_avx512::fill(u); }

}  // namespace fc
