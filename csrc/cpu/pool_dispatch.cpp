// Picks the pooling micro-kernel table once, at load time: the instruction set the convolution
// table uses (ukernels.h's isa_name(), which honours FASTCONV_ISA), so both always agree.
#include <cstring>

#include "pool_ukernels.h"
#include "ukernels.h"

namespace fc {
namespace {

struct PoolTables {
  PoolUKernels<float> f;
  PoolUKernels<double> d;
  PoolTables() {
    const char *isa = isa_name();
#if defined(__x86_64__) || defined(__i386__)
    if (!std::strcmp(isa, "avx512")) {
      get_pool_ukernels__avx512(&f, &d);
      return;
    }
    if (!std::strcmp(isa, "avx2")) {
      get_pool_ukernels__avx2(&f, &d);
      return;
    }
#endif
    (void)isa;
    get_pool_ukernels__generic(&f, &d);
  }
};

const PoolTables &tables() {
  static const PoolTables t;
  return t;
}

}  // namespace

const PoolUKernels<float> &pool_ukernels_f32() { return tables().f; }
const PoolUKernels<double> &pool_ukernels_f64() { return tables().d; }

}  // namespace fc
