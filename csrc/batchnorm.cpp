// Batch normalisation for training and eval, forward and backward, on the OpenMP pool.
//
// Layout (n, c, hw): channel ch of image i is the plane x[(i*c + ch)*hw ...]. Work is split
// by channel: one thread reads a channel's n planes for its statistics (or its gradient sums)
// and then again to write the output while they are still in its L2, so the data comes from
// memory once. Each channel's sums run in one fixed order whatever the thread count, in double
// (the shifted one-pass form: sums of x - x0 and its square, x0 the channel's first element, so
// the variance does not cancel away when the mean is large), so results are deterministic.
// A ReLU after the normalisation (and a residual added before it) is fused into the same pass,
// forward and backward.
#include <algorithm>
#include <cmath>
#include <vector>

#include "epilogue.h"
#include "internal.h"

namespace fc {
namespace {

template <class T>
struct BnArgs {
  int64_t n, c, hw;
  const T *x, *w, *b, *res;
  int act;
};

// Sums over channel ch of (x - shift) and its square.
template <class T>
void channel_sums(const BnArgs<T> &a, int64_t ch, double shift, double *s_out, double *ss_out) {
  double s = 0, ss = 0;
  for (int64_t i = 0; i < a.n; ++i) {
    const T *p = a.x + (i * a.c + ch) * a.hw;
#pragma omp simd reduction(+ : s, ss)
    for (int64_t j = 0; j < a.hw; ++j) {
      const double d = double(p[j]) - shift;
      s += d;
      ss += d * d;
    }
  }
  *s_out = s;
  *ss_out = ss;
}

// y = x * scale + shift (+ residual), then the activation, over channel ch.
template <class T>
void channel_apply(const BnArgs<T> &a, int64_t ch, T scale, T shift, T *y) {
  for (int64_t i = 0; i < a.n; ++i) {
    const int64_t off = (i * a.c + ch) * a.hw;
    const T *p = a.x + off;
    T *q = y + off;
    if (a.res) {
      const T *r = a.res + off;
#pragma omp simd
      for (int64_t j = 0; j < a.hw; ++j) q[j] = p[j] * scale + shift + r[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < a.hw; ++j) q[j] = p[j] * scale + shift;
    }
    act_run(q, a.hw, a.act, T(0));
  }
}

template <class T>
void forward(const BnArgs<T> &a, bool batch_stats, double eps, T *mean, T *var, T *invstd, T *y) {
  const int64_t m = a.n * a.hw;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t ch = 0; ch < a.c; ++ch) {
    double mu, is;
    if (batch_stats) {
      const double x0 = m ? double(a.x[ch * a.hw]) : 0.0;
      double s, ss;
      channel_sums(a, ch, x0, &s, &ss);
      const double d = m ? s / double(m) : 0.0;
      const double v = m ? std::max(0.0, ss / double(m) - d * d) : 0.0;  // biased
      mu = x0 + d;
      is = 1.0 / std::sqrt(v + eps);
      mean[ch] = T(mu);
      if (var) var[ch] = T(v);
      invstd[ch] = T(is);
    } else {
      mu = double(mean[ch]);
      is = double(invstd[ch]);
    }
    const double k = a.w ? is * double(a.w[ch]) : is;
    const double b = (a.b ? double(a.b[ch]) : 0.0) - mu * k;
    channel_apply(a, ch, T(k), T(b), y);
  }
}

template <class T>
void backward(const BnArgs<T> &a, const T *dy, const T *y, const T *mean, const T *invstd,
              bool batch_stats, T *dx, T *dres, T *dw, T *db) {
  const int64_t m = a.n * a.hw;
#pragma omp parallel num_threads(num_threads())
  {
    // With a fused ReLU, g = dy masked by y > 0 is written once (into dx, else dres, else this
    // thread's scratch) and read from there: a select inside the reductions below does not
    // vectorise (it ran 15x slower).
    std::vector<T> scratch;
#pragma omp for schedule(static)
    for (int64_t ch = 0; ch < a.c; ++ch) {
      const T mu = mean[ch];
      T *gbuf = nullptr;
      int64_t gstride = a.c * a.hw;  // from one image's plane to the next in gbuf
      if (y) {
        if (dx || dres) {
          gbuf = (dx ? dx : dres) + ch * a.hw;
        } else {
          scratch.resize((size_t)m);
          gbuf = scratch.data();
          gstride = a.hw;
        }
        for (int64_t i = 0; i < a.n; ++i) {
          const int64_t off = (i * a.c + ch) * a.hw;
          const T *g = dy + off, *o = y + off;
          T *q = gbuf + i * gstride;
#pragma omp simd
          for (int64_t j = 0; j < a.hw; ++j) {
            const T gj = g[j];  // (loaded unconditionally: a select, not a branch per element)
            q[j] = o[j] > T(0) ? gj : T(0);
          }
          if (dres && dx) std::copy(q, q + a.hw, dres + off);
        }
      }
      double sg = 0, sgx = 0;  // sum of g, sum of g * (x - mean)
      for (int64_t i = 0; i < a.n; ++i) {
        const int64_t off = (i * a.c + ch) * a.hw;
        const T *g = y ? gbuf + i * gstride : dy + off, *p = a.x + off;
#pragma omp simd reduction(+ : sg, sgx)
        for (int64_t j = 0; j < a.hw; ++j) {
          sg += double(g[j]);
          sgx += double(g[j]) * double(p[j] - mu);
        }
      }
      const double is = double(invstd[ch]);
      if (dw) dw[ch] = T(sgx * is);
      if (db) db[ch] = T(sg);
      if (!dx) continue;
      // dx = k * (g - sg/m - (x - mean) * is^2 * sgx/m) in batch mode, k * g with fixed statistics
      const double k = a.w ? is * double(a.w[ch]) : is;
      const bool batch = batch_stats && m;
      const T ka = T(k), kb = batch ? T(-k * sg / double(m)) : T(0),
              kc = batch ? T(-k * is * is * sgx / double(m)) : T(0);
      for (int64_t i = 0; i < a.n; ++i) {
        const int64_t off = (i * a.c + ch) * a.hw;
        const T *g = y ? gbuf + i * gstride : dy + off, *p = a.x + off;
        T *q = dx + off;  // (g may be q itself: each element is read before it is written)
#pragma omp simd
        for (int64_t j = 0; j < a.hw; ++j) q[j] = g[j] * ka + kb + kc * (p[j] - mu);
      }
    }
  }
}

int64_t elements(int64_t n, int64_t c, int64_t hw) { return n * c * hw; }

}  // namespace
}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_batch_norm_forward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                                const void *weight_or_null, const void *bias_or_null,
                                const void *residual_or_null, int act, int batch_stats, double eps,
                                void *mean, void *var_or_null, void *invstd, void *y) {
  if (fc_status st = check_sizes3(t, n, c, hw, "n, c and hw")) return st;
  if (act != FC_ACT_NONE && act != FC_ACT_RELU)
    return fail(FC_EINVAL, "act must be FC_ACT_NONE or FC_ACT_RELU, got %d", act);
  if (!(eps >= 0)) return fail(FC_EINVAL, "eps must be >= 0, got %g", eps);
  if (c && (!mean || !invstd)) return fail(FC_EINVAL, "mean and invstd must not be NULL");
  if (elements(n, c, hw) && (!x || !y)) return fail(FC_EINVAL, "x and y must not be NULL");
  SmallWorkGuard small(elements(n, c, hw) * 4);
  return run_entry([&, t] {
    auto go = [&](auto tag) {
      using T = decltype(tag);
      using In = const T *;
      const BnArgs<T> a{
          n, c, hw, In(x), In(weight_or_null), In(bias_or_null), In(residual_or_null), act};
      forward(a, batch_stats != 0, eps, (T *)mean, (T *)var_or_null, (T *)invstd, (T *)y);
    };
    if (t == FC_F32) go(float());
    else go(double());
    return FC_OK;
  });
}

fc_status fc_batch_norm_backward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *dy,
                                 const void *x, const void *y_or_null, const void *mean,
                                 const void *invstd, const void *weight_or_null, int batch_stats,
                                 void *dx_or_null, void *dres_or_null, void *dweight_or_null,
                                 void *dbias_or_null) {
  if (fc_status st = check_sizes3(t, n, c, hw, "n, c and hw")) return st;
  if (c && (!mean || !invstd)) return fail(FC_EINVAL, "mean and invstd must not be NULL");
  if (elements(n, c, hw) && (!dy || !x)) return fail(FC_EINVAL, "dy and x must not be NULL");
  if (dres_or_null && !y_or_null)
    return fail(FC_EINVAL, "dres needs y (without a fused ReLU the residual's gradient is dy)");
  SmallWorkGuard small(elements(n, c, hw) * 4);
  return run_entry([&, t] {
    auto go = [&](auto tag) {
      using T = decltype(tag);
      using In = const T *;
      const BnArgs<T> a{n, c, hw, In(x), In(weight_or_null), nullptr, nullptr, FC_ACT_NONE};
      backward(a, (const T *)dy, (const T *)y_or_null, (const T *)mean, (const T *)invstd,
               batch_stats != 0, (T *)dx_or_null, (T *)dres_or_null, (T *)dweight_or_null,
               (T *)dbias_or_null);
    };
    if (t == FC_F32) go(float());
    else go(double());
    return FC_OK;
  });
}

}  // extern "C"
