// fastconv's sanitizer driver: built with every csrc/ source under
// -fsanitize=address,undefined -fno-sanitize-recover=all (tests/sanitize/build.py), run once per
// forced instruction set (FASTCONV_ISA) by tests/test_sanitizers.py.
//
//   driver [--isa NAME] [--conv N] [--pool N] [--fuzz N] [--plans N] [--train N] [--seed S]
//
// --isa: the instruction set fc_isa() must report (the run fails if the library chose another).
// --conv/--pool: random configurations on top of the hand-picked edge shapes; --fuzz: hostile
// descriptors; --plans: random inference plans (plan_fuzz.cpp); --train: random cases of the
// training kernels (train_check.cpp). Exits 0 only when every
// expectation held; a sanitizer report aborts the process.
#include <cstdlib>
#include <string>

#include "common.h"

namespace drv {

Stats g_stats;

void failure(const char *fmt, ...) {
  if (g_stats.failures++ < 40) {
    std::fprintf(stderr, "FAIL: ");
    va_list ap;
    va_start(ap, fmt);
    std::vfprintf(stderr, fmt, ap);
    va_end(ap);
    std::fprintf(stderr, "\n");
  }
}

std::string str(const fc_conv2d_desc &d) {
  char b[400];
  std::snprintf(
      b, sizeof b,
      "{n=%lld c=%lld h=%lld w=%lld k=%lld kh=%lld kw=%lld stride=%lld,%lld pad=%lld,%lld "
      "dil=%lld,%lld groups=%lld}",
      (long long)d.n, (long long)d.c, (long long)d.h, (long long)d.w, (long long)d.k,
      (long long)d.kh, (long long)d.kw, (long long)d.stride_h, (long long)d.stride_w,
      (long long)d.pad_h, (long long)d.pad_w, (long long)d.dil_h, (long long)d.dil_w,
      (long long)d.groups);
  return b;
}

std::string str(const fc_pool2d_desc &d) {
  char b[400];
  std::snprintf(b, sizeof b,
                "{n=%lld c=%lld h=%lld w=%lld kh=%lld kw=%lld stride=%lld,%lld pad=%lld,%lld "
                "dil=%lld,%lld ceil=%lld}",
                (long long)d.n, (long long)d.c, (long long)d.h, (long long)d.w, (long long)d.kh,
                (long long)d.kw, (long long)d.stride_h, (long long)d.stride_w, (long long)d.pad_h,
                (long long)d.pad_w, (long long)d.dil_h, (long long)d.dil_w, (long long)d.ceil_mode);
  return b;
}

std::string str(const fc_planes2d_desc &d) {
  char b[300];
  std::snprintf(b, sizeof b, "{n=%lld c=%lld h=%lld w=%lld ho=%lld wo=%lld}", (long long)d.n,
                (long long)d.c, (long long)d.h, (long long)d.w, (long long)d.ho, (long long)d.wo);
  return b;
}

}  // namespace drv

int main(int argc, char **argv) {
  std::string isa;
  long long conv = 300, pool = 200, fuzz = 100000, plans = 2000, train = 200;
  unsigned long long seed = 20240607;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--isa") isa = argv[i + 1];
    else if (a == "--conv") conv = std::atoll(argv[i + 1]);
    else if (a == "--pool") pool = std::atoll(argv[i + 1]);
    else if (a == "--fuzz") fuzz = std::atoll(argv[i + 1]);
    else if (a == "--plans") plans = std::atoll(argv[i + 1]);
    else if (a == "--train") train = std::atoll(argv[i + 1]);
    else if (a == "--seed") seed = std::strtoull(argv[i + 1], nullptr, 10);
    else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  if (!isa.empty() && isa != fc_isa()) {
    std::fprintf(stderr, "FAIL: asked for isa %s, the library chose %s\n", isa.c_str(), fc_isa());
    return 1;
  }
  drv::Rng rng(seed);
  const long long nc = drv::run_conv_edges(rng, conv);
  const long long np = drv::run_pool_edges(rng, pool);
  const long long nf = drv::run_fuzz(rng, fuzz);
  const long long npl = drv::run_plan_fuzz(rng, plans);
  const long long ntr = drv::run_train_checks(rng, train);
  std::printf(
      "isa=%s conv_configs=%lld pool_configs=%lld fuzz_descriptors=%lld plans=%lld "
      "train_cases=%lld "
      "checks=%lld failures=%lld\n",
      fc_isa(), nc, np, nf, npl, ntr, (long long)drv::g_stats.checks,
      (long long)drv::g_stats.failures);
  return drv::g_stats.failures ? 1 : 0;
}
