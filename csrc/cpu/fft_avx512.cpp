// FFT-convolution micro-kernels for AVX-512 (flags set per file in CMakeLists.txt):
// 16 float / 8 double planes per transform; cmac tiles of 8 rows (16 accumulators of 32 zmm).
#define FC_ISA_NS isa_avx512
#define FC_FFT_VBYTES 64
#define FC_FFT_MR 8
#include "fft_impl.inc"

namespace fc {

void get_fft_ukernels__avx512(FftUKernels<float> *f, FftUKernels<double> *d) {
  isa_avx512::fill(f);
  isa_avx512::fill(d);
}

}  // namespace fc
