// Picks the FFT micro-kernel table once, at load time: the instruction set the convolution
// table uses (ukernels.h's isa_name(), which honours FASTCONV_ISA), so all tables agree.
#include <cstring>

#include "fft_ukernels.h"
#include "ukernels.h"

namespace fc {
namespace {

struct FftTable {
  FftUKernels u;
  FftTable() {
    const char *isa = isa_name();
#if defined(__x86_64__) || defined(__i386__)
    if (!std::strcmp(isa, "avx512")) {
      get_fft_ukernels__avx512(&u);
      return;
    }
    if (!std::strcmp(isa, "avx2")) {
      get_fft_ukernels__avx2(&u);
      return;
    }
#endif
    (void)isa;
    get_fft_ukernels__generic(&u);
  }
};

const FftTable &table() {
  static const FftTable t;
  return t;
}

}  // namespace

const FftUKernels &fft_ukernels() { return table().u; }

}  // namespace fc
