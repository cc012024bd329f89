// Picks the Winograd transform tables once, at load time, for the instruction set of the
// hardware description (hw.h), the one every other table uses.
#include "../hw.h"
#include "winograd_ukernels.h"

namespace fc {
namespace {

struct WinogradTables {
  WinogradUKernels<float> f[2];
  WinogradUKernels<double> d[2];
  WinogradTables() {
    switch (hardware().isa) {
#if defined(__x86_64__) || defined(__i386__)
      case Isa::kAvx512: get_winograd_ukernels__avx512(f, d); break;
      case Isa::kAvx2: get_winograd_ukernels__avx2(f, d); break;
#endif
      default: get_winograd_ukernels__generic(f, d); break;
    }
  }
};

const WinogradTables &tables() {
  static const WinogradTables t;
  return t;
}

}  // namespace

template <>
const WinogradUKernels<float> &winograd_ukernels<float>(int m) {
  return tables().f[m == 2 ? 0 : 1];
}
template <>
const WinogradUKernels<double> &winograd_ukernels<double>(int m) {
  return tables().d[m == 2 ? 0 : 1];
}

}  // namespace fc
