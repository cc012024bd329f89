// The training kernels under the sanitizers: batch norm forward/backward (plain and with the
// fused residual + ReLU), softmax cross-entropy both ways, and the SGD/Adam multi-tensor
// updates, on random shapes with exact-size buffers (any read or write past an end is
// reported), each result checked against a double-precision reference computed here.
#include <algorithm>

#include "common.h"

namespace drv {
namespace {

template <class T>
void batch_norm_case(Rng &rng) {
  const int64_t n = rng.range(1, 4), c = rng.range(1, 6), hw = rng.range(1, 40);
  const int64_t count = n * c * hw, m = n * hw;
  const bool fuse = rng.chance(0.5), affine = rng.chance(0.5);
  const std::string what = std::string("batch_norm ") + dtype_name<T>() +
                           " n=" + std::to_string(n) + " c=" + std::to_string(c) +
                           " hw=" + std::to_string(hw);
  std::vector<T> x = random_vector<T>(rng, count), res = random_vector<T>(rng, count);
  std::vector<T> w = random_vector<T>(rng, c), b = random_vector<T>(rng, c);
  std::vector<T> mean(c), var(c), inv(c), y(count);
  const int st = fc_batch_norm_forward(
      dtype_of<T>(), n, c, hw, x.data(), affine ? w.data() : nullptr, affine ? b.data() : nullptr,
      fuse ? res.data() : nullptr, fuse ? FC_ACT_RELU : FC_ACT_NONE, 1, 1e-3, mean.data(),
      var.data(), inv.data(), y.data());
  if (!expect(st == FC_OK, what + ": forward status")) return;
  std::vector<double> want(count), scale(count);
  for (int64_t ch = 0; ch < c; ++ch) {
    double mu = 0, v = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) mu += (double)x[(i * c + ch) * hw + j];
    mu /= (double)m;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j)
        v += ((double)x[(i * c + ch) * hw + j] - mu) * ((double)x[(i * c + ch) * hw + j] - mu);
    v /= (double)m;
    const double is = 1 / std::sqrt(v + 1e-3);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        const int64_t at = (i * c + ch) * hw + j;
        double o = ((double)x[at] - mu) * is * (affine ? (double)w[ch] : 1.0) +
                   (affine ? (double)b[ch] : 0.0);
        if (fuse) o = std::max(0.0, o + (double)res[at]);
        want[at] = o;
        scale[at] = 1 + std::fabs(o) + (fuse ? std::fabs((double)res[at]) : 0.0) +
                    std::fabs((double)x[at] - mu) * is * 4;
      }
  }
  expect_close(y, want, scale, tolerance<T>() * 10, what + ": forward");
  std::vector<T> dy = random_vector<T>(rng, count), dx(count), dres(count), dw(c), db(c);
  const int sb = fc_batch_norm_backward(dtype_of<T>(), n, c, hw, dy.data(), x.data(),
                                        fuse ? y.data() : nullptr, mean.data(), inv.data(),
                                        affine ? w.data() : nullptr, 1, dx.data(),
                                        fuse ? dres.data() : nullptr, dw.data(), db.data());
  if (!expect(sb == FC_OK, what + ": backward status")) return;
  for (int64_t ch = 0; ch < c; ++ch) {  // the bias gradient: the (masked) sum of dy
    double s = 0, sabs = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < hw; ++j) {
        const int64_t at = (i * c + ch) * hw + j;
        const double g = (!fuse || y[at] > 0) ? (double)dy[at] : 0.0;
        s += g;
        sabs += std::fabs(g);
        if (fuse) expect(dres[at] == (T)g, what + ": dres is dy through the ReLU");
      }
    expect(std::fabs((double)db[ch] - s) <= tolerance<T>() * (sabs + 1e-300), what + ": dbias");
  }
}

template <class T>
void cross_entropy_case(Rng &rng) {
  const int64_t outer = rng.range(1, 5), c = rng.range(1, 9), inner = rng.range(1, 4);
  const int64_t count = outer * c * inner, pos = outer * inner;
  std::vector<T> x = random_vector<T>(rng, count), q(count, T(0));
  for (int64_t p = 0; p < pos; ++p)
    q[(p / inner) * c * inner + rng.range(0, c - 1) * inner + p % inner] = T(1);
  std::vector<T> loss(pos), lse(pos), dl = random_vector<T>(rng, pos), dx(count);
  const std::string what = std::string("cross_entropy ") + dtype_name<T>();
  if (!expect(fc_softmax_cross_entropy_forward(dtype_of<T>(), outer, c, inner, x.data(), q.data(),
                                               loss.data(), lse.data()) == FC_OK,
              what + ": forward"))
    return;
  if (!expect(fc_softmax_cross_entropy_backward(dtype_of<T>(), outer, c, inner, x.data(), q.data(),
                                                lse.data(), dl.data(), dx.data()) == FC_OK,
              what + ": backward"))
    return;
  std::vector<double> want(pos), scale(pos, 10.0), gwant(count), gscale(count, 2.0);
  for (int64_t p = 0; p < pos; ++p) {
    const int64_t base = (p / inner) * c * inner + p % inner;
    double s = 0;
    for (int64_t k = 0; k < c; ++k) s += std::exp((double)x[base + k * inner]);
    double l = 0;
    for (int64_t k = 0; k < c; ++k) {
      const double lp = (double)x[base + k * inner] - std::log(s);
      l -= (double)q[base + k * inner] * lp;
      gwant[base + k * inner] = (double)dl[p] * (std::exp(lp) - (double)q[base + k * inner]);
    }
    want[p] = l;
  }
  expect_close(loss, want, scale, tolerance<T>(), what + ": loss");
  expect_close(dx, gwant, gscale, tolerance<T>(), what + ": dx");
}

template <class T>
void optim_case(Rng &rng) {
  const int count = (int)rng.range(1, 4);
  std::vector<std::vector<T>> p(count), g(count), s0(count), s1(count), s2(count);
  std::vector<fc_optim_tensor> ts(count);
  for (int i = 0; i < count; ++i) {
    const int64_t n = rng.range(0, 40000);  // across the 16384-element chunks
    p[i] = random_vector<T>(rng, n), g[i] = random_vector<T>(rng, n);
    s0[i].assign(n, T(0)), s1[i].assign(n, T(0)), s2[i].assign(n, T(0));
    ts[i] = fc_optim_tensor{
        p[i].data(), g[i].data(), {s0[i].data(), s1[i].data(), s2[i].data()}, n, 0.01, 0.5, 1};
  }
  const auto p0 = p;
  const fc_sgd_args sgd{0.1, 0.9, 0.0, 1e-3, 1, 0};
  if (!expect(fc_sgd_step(dtype_of<T>(), count, ts.data(), &sgd) == FC_OK, "sgd status")) return;
  for (int i = 0; i < count; ++i)
    for (size_t j = 0; j < p[i].size(); ++j) {
      // first step, nesterov: d = g + wd p; p -= lr (d + m d)
      const double d = (double)g[i][j] + 1e-3 * (double)p0[i][j];
      const double want = (double)p0[i][j] - 0.1 * (d + 0.9 * d);
      if (!(std::fabs((double)p[i][j] - want) <= tolerance<T>() * 4)) {
        failure("sgd %s: element %zu of tensor %d is %.17g, expected %.17g", dtype_name<T>(), j, i,
                (double)p[i][j], want);
        return;
      }
    }
  ++g_stats.checks;
  const fc_adam_args adam{1e-3, 0.9, 0.999, 1e-8, 1e-2, 1, 0, 1};
  expect(fc_adam_step(dtype_of<T>(), count, ts.data(), &adam) == FC_OK, "adam status");
}

}  // namespace

int64_t run_train_checks(Rng &rng, int64_t cases) {
  for (int64_t i = 0; i < cases; ++i) {
    if (i % 2) {
      batch_norm_case<float>(rng), cross_entropy_case<float>(rng), optim_case<float>(rng);
    } else {
      batch_norm_case<double>(rng), cross_entropy_case<double>(rng), optim_case<double>(rng);
    }
  }
  return cases;
}

}  // namespace drv
