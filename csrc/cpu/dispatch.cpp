// Picks the micro-kernel table once, at load time, from the CPU's features.
// FASTCONV_ISA=generic|avx2|avx512 forces a set (never one the CPU lacks).
#include <cstdlib>
#include <cstring>

#include "ukernels.h"

namespace fc {
namespace {

enum Isa { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

Isa detect() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    return kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
#endif
  return kGeneric;
}

Isa choose() {
  Isa best = detect();
  const char *env = std::getenv("FASTCONV_ISA");
  if (env && *env) {
    Isa want = best;
    if (!std::strcmp(env, "generic")) want = kGeneric;
    else if (!std::strcmp(env, "avx2")) want = kAvx2;
    else if (!std::strcmp(env, "avx512")) want = kAvx512;
    if (want < best) best = want;
  }
  return best;
}

struct Tables {
  Isa isa;
  UKernels<float> f;
  UKernels<double> d;
  Tables() : isa(choose()) {
    switch (isa) {
#if defined(__x86_64__) || defined(__i386__)
      case kAvx512: get_ukernels__avx512(&f, &d); break;
      case kAvx2: get_ukernels__avx2(&f, &d); break;
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

const char *isa_name() {
  switch (tables().isa) {
    case kAvx512: return "avx512";
    case kAvx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace fc
