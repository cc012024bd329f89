// Picks the FFT micro-kernel table once, at load time: the instruction set the convolution
// table uses (ukernels.h's isa_name(), which honours FASTCONV_ISA), so all tables agree.
#include <cstring>

#include "fft_ukernels.h"
#include "ukernels.h"

namespace fc {
namespace {

struct FftTables {
  FftUKernels<float> f;
  FftUKernels<double> d;
  FftTables() {
    const char *isa = isa_name();
#if defined(__x86_64__) || defined(__i386__)
    if (!std::strcmp(isa, "avx512")) {
      get_fft_ukernels__avx512(&f, &d);
      return;
    }
    if (!std::strcmp(isa, "avx2")) {
      get_fft_ukernels__avx2(&f, &d);
      return;
    }
#endif
    (void)isa;
    get_fft_ukernels__generic(&f, &d);
  }
};

const FftTables &tables() {
  static const FftTables t;
  return t;
}

}  // namespace

const FftUKernels<float> &fft_ukernels_f32() { return tables().f; }
const FftUKernels<double> &fft_ukernels_f64() { return tables().d; }

}  // namespace fc
