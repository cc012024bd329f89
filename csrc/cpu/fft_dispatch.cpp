// Picks the FFT micro-kernel table once, at load time, for the instruction set of the hardware
// description (hw.h), the one every other table uses.
#include "../hw.h"
#include "fft_ukernels.h"

namespace fc {
namespace {

struct FftTable {
  FftUKernels u;
  FftTable() {
    switch (hardware().isa) {
#if defined(__x86_64__) || defined(__i386__)
      case Isa::kAvx512: get_fft_ukernels__avx512(&u); break;
      case Isa::kAvx2: get_fft_ukernels__avx2(&u); break;
#endif
      default: get_fft_ukernels__generic(&u); break;
    }
  }
};

const FftTable &table() {
  static const FftTable t;
  return t;
}

}  // namespace

const FftUKernels &fft_ukernels() { return table().u; }

}  // namespace fc
