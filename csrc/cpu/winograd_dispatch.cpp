// Picks the Winograd transform tables once, at load time: the instruction set the convolution
// table uses (ukernels.h's isa_name(), which honours FASTCONV_ISA), so all tables agree.
#include <cstring>

#include "ukernels.h"
#include "winograd_ukernels.h"

namespace fc {
namespace {

struct WinogradTables {
  WinogradUKernels<float> f[2];
  WinogradUKernels<double> d[2];
  WinogradTables() {
    const char *isa = isa_name();
#if defined(__x86_64__) || defined(__i386__)
    if (!std::strcmp(isa, "avx512")) {
      get_winograd_ukernels__avx512(f, d);
      return;
    }
    if (!std::strcmp(isa, "avx2")) {
      get_winograd_ukernels__avx2(f, d);
      return;
    }
#endif
    (void)isa;
    get_winograd_ukernels__generic(f, d);
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
