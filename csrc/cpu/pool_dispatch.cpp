// Picks the pooling micro-kernel table once, at load time, for the instruction set of the
// hardware description (hw.h), the one every other table uses.
#include "../hw.h"
#include "pool_ukernels.h"

namespace fc {
namespace {

struct PoolTables {
  PoolUKernels<float> f;
  PoolUKernels<double> d;
  PoolTables() {
    switch (hardware().isa) {
#if defined(__x86_64__) || defined(__i386__)
      case Isa::kAvx512: get_pool_ukernels__avx512(&f, &d); break;
      case Isa::kAvx2: get_pool_ukernels__avx2(&f, &d); break;
#endif
      default: get_pool_ukernels__generic(&f, &d); break;
    }
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
