// Picks the micro-kernel table once, at load time, for the instruction set the hardware
// description chose (hw.h: the CPU's best, lowered by FASTCONV_ISA).
#include "../hw.h"
#include "ukernels.h"

namespace fc {
namespace {

struct Tables {
  UKernels<float> f;
  UKernels<double> d;
  Tables() {
    switch (hardware().isa) {
#if defined(__x86_64__) || defined(__i386__)
      case Isa::kAvx512: get_ukernels__avx512(&f, &d); break;
      case Isa::kAvx2: get_ukernels__avx2(&f, &d); break;
#endif
      default: get_ukernels__generic(&f, &d); break;
    }
  }
};

const Tables &tables() {
  static const Tables t;
  return t;
}

}  // namespace

const UKernels<float> &ukernels_f32() { return tables().f; }
const UKernels<double> &ukernels_f64() { return tables().d; }

}  // namespace fc
