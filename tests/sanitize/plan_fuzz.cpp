// The inference-plan fuzz target: plans with random (often hostile) sizes, values, constants
// and steps. fc_plan_add_step must only ever return a status; every step it accepts must run
// on buffers of exactly the plan's sizes (std::vectors: AddressSanitizer reports any element
// past either end), and fc_conv2d_prepare / fc_conv2d_forward_prepared reject bad arguments.
#include <cstdlib>
#include <memory>

#include "common.h"

namespace drv {
namespace {

constexpr int64_t kCap = 4096;        // elements: the largest plan buffer
int64_t g_steps = 0, g_accepted = 0;  // steps offered, and accepted (then run)

int64_t small_or_hostile(Rng &rng, int64_t lo, int64_t hi) {
  static const std::vector<int64_t> bad = {
      std::numeric_limits<int64_t>::min(), -1, 0, 1, INT32_MAX, int64_t(1) << 40,
      std::numeric_limits<int64_t>::max()};
  return rng.chance(0.85) ? rng.range(lo, hi) : rng.pick(bad);
}

struct PlanDel {
  void operator()(fc_plan *p) const { fc_plan_destroy(p); }
};

void fuzz_one_plan(Rng &rng) {
  const fc_dtype t = rng.chance(0.5) ? FC_F32 : FC_F64;
  // mostly buffers large enough for the small steps below, so that many are accepted and run
  auto size = [&](int64_t lo) {
    return rng.chance(0.8) ? rng.range(kCap / 2, kCap) : rng.range(lo, kCap);
  };
  const int64_t in = size(1), out = size(1), arena = size(0);
  fc_plan *raw = nullptr;
  if (!expect(fc_plan_create(t, in, out, arena, &raw) == FC_OK && raw, "plan_create(valid)"))
    return;
  std::unique_ptr<fc_plan, PlanDel> p(raw);
  // constants (kept alive here: the views borrow them)
  std::vector<std::vector<double>> keep;
  for (int i = 0, n = (int)rng.range(1, 4); i < n; ++i) {
    const int64_t elems = rng.range(1, 1024);
    keep.emplace_back((size_t)elems, 0.25);
    int64_t id;
    const int s = rng.chance(0.5) ? fc_plan_add_constant(p.get(), keep.back().data(),
                                                         elems / (t == FC_F32 ? 1 : 2), &id)
                                  : fc_plan_add_constant_view(p.get(), keep.back().data(),
                                                              elems / (t == FC_F32 ? 1 : 2), &id);
    expect(is_status(s), "plan_add_constant status");
  }
  int64_t nvalues = 0;
  for (int i = 0, n = (int)rng.range(1, 6); i < n; ++i) {
    const int32_t kind =
        (int32_t)(rng.chance(0.9) ? rng.range(0, 2) : small_or_hostile(rng, -3, 5));
    const int64_t cap = kind == 0 ? in : kind == 1 ? out : arena;
    const bool whole = rng.chance(0.6);  // the whole buffer, or a random (often bad) part
    const int64_t off = whole ? 0 : small_or_hostile(rng, 0, std::max<int64_t>(0, cap / 2));
    const int64_t elems =
        whole ? cap
              : small_or_hostile(rng, 0, std::max<int64_t>(1, cap - std::max<int64_t>(0, off)));
    int64_t id;
    const int s = fc_plan_add_value(p.get(), kind, off, elems, &id);
    expect(is_status(s), "plan_add_value status");
    if (s == FC_OK) {
      expect(kind >= 0 && kind <= 2 && off >= 0 && elems >= 0 && off + elems <= cap,
             "plan_add_value accepted a value outside its buffer");
      ++nvalues;
    }
  }
  int accepted = 0;
  for (int i = 0, n = (int)rng.range(1, 6); i < n; ++i) {
    fc_plan_step s{};
    s.op = (int32_t)(rng.chance(0.9) ? rng.range(0, FC_PLAN_OP_COUNT_ - 1)
                                     : small_or_hostile(rng, -2, 20));
    s.act =
        (int32_t)(rng.chance(0.8) ? rng.range(0, FC_ACT_COUNT_ - 1) : small_or_hostile(rng, -2, 9));
    s.alpha = 0.1;
    s.in0 = small_or_hostile(rng, 0, std::max<int64_t>(0, nvalues - 1));
    s.out = small_or_hostile(rng, 0, std::max<int64_t>(0, nvalues - 1));
    // mostly the operands the op takes (a second input, a weight, a bias), sometimes any
    const bool takes_in1 =
        s.op == FC_PLAN_CONV || s.op == FC_PLAN_ELTWISE || s.op == FC_PLAN_CHANNEL_MUL;
    const bool takes_w =
        s.op == FC_PLAN_CONV || s.op == FC_PLAN_LINEAR || s.op == FC_PLAN_CHANNEL_AFFINE;
    const bool fit = rng.chance(0.9);
    s.in1 = (fit ? takes_in1 && rng.chance(0.7) : rng.chance(0.5))
                ? small_or_hostile(rng, 0, std::max<int64_t>(0, nvalues - 1))
                : -1;
    s.in2 = (fit ? s.op == FC_PLAN_CHANNEL_MUL && rng.chance(0.5) : rng.chance(0.3))
                ? small_or_hostile(rng, 0, std::max<int64_t>(0, nvalues - 1))
                : -1;
    s.weight = (fit ? takes_w : rng.chance(0.5)) ? small_or_hostile(rng, 0, 3) : -1;
    s.bias =
        (fit ? takes_w && rng.chance(0.5) : rng.chance(0.5)) ? small_or_hostile(rng, 0, 3) : -1;
    if (fit && (s.op == FC_PLAN_LRN || s.op == FC_PLAN_COPY_CHANNELS)) s.act = FC_ACT_NONE;
    s.conv = {small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 4), small_or_hostile(rng, 1, 8),
              small_or_hostile(rng, 1, 8), small_or_hostile(rng, 1, 4), small_or_hostile(rng, 1, 3),
              small_or_hostile(rng, 1, 3), small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 2),
              small_or_hostile(rng, 0, 1), small_or_hostile(rng, 0, 1), small_or_hostile(rng, 1, 2),
              small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 2)};
    s.algo = (int32_t)small_or_hostile(rng, 0, FC_ALGO_COUNT_);
    s.count_include_pad = (int32_t)rng.range(0, 1);
    s.pool = {
        small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 4), small_or_hostile(rng, 1, 8),
        small_or_hostile(rng, 1, 8), small_or_hostile(rng, 1, 3), small_or_hostile(rng, 1, 3),
        small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 2), small_or_hostile(rng, 0, 1),
        small_or_hostile(rng, 0, 1), small_or_hostile(rng, 1, 2), small_or_hostile(rng, 1, 2)};
    s.pool.ceil_mode = rng.range(0, 1);
    for (auto &d : s.dims) d = small_or_hostile(rng, 0, 12);
    for (auto &e : s.extra) e = small_or_hostile(rng, 0, 8);
    s.lrn[0] = 1e-4, s.lrn[1] = 0.75, s.lrn[2] = 1.0;
    const int st = fc_plan_add_step(p.get(), &s);
    if (st == FC_OK && std::getenv("FASTCONV_DRIVER_TRACE"))
      std::fprintf(stderr,
                   "plan step op=%d act=%d in0=%lld in1=%lld out=%lld w=%lld b=%lld algo=%d "
                   "conv=%s dims=%lld,%lld,%lld,%lld extra=%lld,%lld\n",
                   (int)s.op, (int)s.act, (long long)s.in0, (long long)s.in1, (long long)s.out,
                   (long long)s.weight, (long long)s.bias, (int)s.algo, str(s.conv).c_str(),
                   (long long)s.dims[0], (long long)s.dims[1], (long long)s.dims[2],
                   (long long)s.dims[3], (long long)s.extra[0], (long long)s.extra[1]);
    expect(is_status(st), "plan_add_step status");
    accepted += st == FC_OK;
    ++g_steps;
    g_accepted += st == FC_OK;
  }
  if (t == FC_F32) {
    std::vector<float> x((size_t)in, 0.5f), y((size_t)out, 0.0f);
    expect(is_status(fc_plan_run(p.get(), x.data(), y.data(), nullptr)), "plan_run status");
  } else {
    std::vector<double> x((size_t)in, 0.5), y((size_t)out, 0.0);
    std::vector<double> secs((size_t)fc_plan_step_count(p.get()) + 1);
    expect(is_status(fc_plan_run(p.get(), x.data(), y.data(), secs.data())), "plan_run status");
  }
  int64_t bytes, allocs;
  expect(fc_plan_workspace(p.get(), &bytes, &allocs) == FC_OK && bytes >= 0 && allocs >= 0,
         "plan_workspace");
  (void)accepted;
}

}  // namespace

int64_t run_plan_fuzz(Rng &rng, int64_t plans) {
  for (int64_t i = 0; i < plans; ++i) fuzz_one_plan(rng);
  // NULLs and hostile arguments on every plan and prepared entry
  fc_plan *p = nullptr;
  expect(fc_plan_create(FC_F32, -1, 1, 1, &p) == FC_EINVAL && !p, "plan_create(negative)");
  expect(fc_plan_create((fc_dtype)7, 1, 1, 1, &p) == FC_EINVAL, "plan_create(bad dtype)");
  expect(fc_plan_create(FC_F64, 1, 1, std::numeric_limits<int64_t>::max(), &p) != FC_OK,
         "plan_create(huge arena)");
  expect(fc_plan_create(FC_F32, 1, 1, 1, nullptr) == FC_EINVAL, "plan_create(NULL)");
  int64_t id, a, b;
  expect(fc_plan_add_constant(nullptr, nullptr, 1, &id) == FC_EINVAL, "add_constant(NULL)");
  expect(fc_plan_add_value(nullptr, 0, 0, 1, &id) == FC_EINVAL, "add_value(NULL)");
  expect(fc_plan_add_step(nullptr, nullptr) == FC_EINVAL, "add_step(NULL)");
  expect(fc_plan_run(nullptr, nullptr, nullptr, nullptr) == FC_EINVAL, "plan_run(NULL)");
  expect(fc_plan_workspace(nullptr, &a, &b) == FC_EINVAL, "plan_workspace(NULL)");
  expect(fc_plan_step_count(nullptr) == 0, "plan_step_count(NULL)");
  fc_plan_destroy(nullptr);
  const fc_conv2d_desc d{1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};
  std::vector<float> w(54, 0.5f), x(50, 0.5f), y(75, 0.0f);
  fc_conv2d_prepared *q = nullptr;
  expect(fc_conv2d_prepare(&d, FC_F32, FC_ALGO_AUTO, w.data(), 0, &q) == FC_EINVAL && !q,
         "prepare(AUTO)");
  expect(fc_conv2d_prepare(nullptr, FC_F32, FC_ALGO_IM2COL, w.data(), 0, &q) == FC_EINVAL,
         "prepare(NULL desc)");
  expect(fc_conv2d_prepare(&d, FC_F32, FC_ALGO_DEPTHWISE, w.data(), 0, &q) == FC_EUNSUPPORTED,
         "prepare(unsupported)");
  for (fc_algo alg : {FC_ALGO_WINOGRAD, FC_ALGO_IM2COL, FC_ALGO_DIRECT}) {
    expect(fc_conv2d_prepare(&d, FC_F32, alg, w.data(), 0, &q) == FC_OK && q, "prepare(valid)");
    expect(fc_conv2d_forward_prepared(q, x.data(), nullptr, nullptr, 99, 0, y.data()) == FC_EINVAL,
           "forward_prepared(bad act)");
    expect(fc_conv2d_forward_prepared(q, nullptr, nullptr, nullptr, 0, 0, y.data()) == FC_EINVAL,
           "forward_prepared(NULL x)");
    expect(fc_conv2d_forward_prepared(q, x.data(), nullptr, y.data(), FC_ACT_RELU, 0, y.data()) ==
               FC_OK,
           "forward_prepared(valid)");
    fc_conv2d_prepared_destroy(q);
    q = nullptr;
  }
  expect(
      fc_conv2d_forward_prepared(nullptr, x.data(), nullptr, nullptr, 0, 0, y.data()) == FC_EINVAL,
      "forward_prepared(NULL)");
  std::fprintf(stderr, "plan steps: %lld offered, %lld accepted and run\n", (long long)g_steps,
               (long long)g_accepted);
  return plans;
}

}  // namespace drv
