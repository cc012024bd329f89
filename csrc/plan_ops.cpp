// The inference executor's element-wise, channel and linear steps (plan.cpp runs them): each is
// one threaded pass over its output, the activation applied while the values are in registers.
// Convolutions and pools are the library's own entries; their epilogue (bias, residual add,
// activation), where the operator does not apply it itself, is eltwise() on the output in place.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "blas.h"
#include "conv/gemm_blocks.h"
#include "epilogue.h"
#include "internal.h"
#include "plan_ops.h"

namespace fc {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per parallel job of the flat loops

}  // namespace

template <class T>
void eltwise(const T *a, const T *b, T *y, int64_t count, int act, double alpha) {
  const T al = T(alpha);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < count; lo += kChunk) {
    const int64_t hi = std::min(count, lo + kChunk);
    if (b) {
#pragma omp simd
      for (int64_t i = lo; i < hi; ++i) y[i] = a[i] + b[i];
    } else if (y != a) {
      std::memcpy(y + lo, a + lo, (hi - lo) * sizeof(T));
    }
    act_run(y + lo, hi - lo, act, al);
  }
}

template <class T>
void channel_scale(const T *x, const T *scale, int64_t scale_n_stride, const T *shift, const T *res,
                   T *y, int64_t n, int64_t c, int64_t hw, int act, double alpha) {
  const T al = T(alpha);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t q = 0; q < n * c; ++q) {
    const int64_t in = q / c, ic = q % c;
    const T s = scale ? scale[in * scale_n_stride + ic] : T(1), b = shift ? shift[ic] : T(0);
    const T *xp = x + q * hw;
    T *yp = y + q * hw;
    if (res) {
      const T *rp = res + q * hw;
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) yp[i] = xp[i] * s + b + rp[i];
    } else {
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) yp[i] = xp[i] * s + b;
    }
    act_run(yp, hw, act, al);
  }
}

template <class T>
void lrn(const T *x, T *y, int64_t n, int64_t c, int64_t hw, int64_t size, double alpha,
         double beta, double k) {
  const int64_t before = size / 2, after = (size - 1) / 2;
  const T a = T(alpha / double(size)), b = T(beta), kk = T(k);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t q = 0; q < n * c; ++q) {
    const int64_t in = q / c, ic = q % c;
    const int64_t c0 = std::max<int64_t>(0, ic - before), c1 = std::min(c, ic + after + 1);
    const T *xp = x + q * hw;
    T *yp = y + q * hw;
    for (int64_t i = 0; i < hw; ++i) {
      T s = T(0);
      for (int64_t j = c0; j < c1; ++j) {
        const T v = x[(in * c + j) * hw + i];
        s += v * v;
      }
      yp[i] = xp[i] * std::pow(kk + a * s, -b);
    }
  }
}

template <class T>
void copy_channels(const T *x, T *y, int64_t n, int64_t c, int64_t hw, int64_t c_total,
                   int64_t c_offset) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t in = 0; in < n; ++in)
    std::memcpy(y + (in * c_total + c_offset) * hw, x + in * c * hw, c * hw * sizeof(T));
}

template <class T>
fc_status linear(const T *x, const T *w, const T *b, T *y, int64_t m, int64_t k, int64_t nout,
                 int act, double alpha) {
  const int nt = gemm_threads();
  if (fc_status st = blas_reserve(nt)) return st;
  // Output features cut into fixed_items() blocks (a multiple of 16 wide): the cut follows the
  // shape, so each GEMM's rounding is the same at every thread count.
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(fixed_items(), nout / 16));
  const T al = T(alpha);
  const bool dot = rows_dot_pays<T>(m, nout * k * (int64_t)sizeof(T));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t q = 0; q < parts; ++q) {
    const int64_t j0 = q == 0 ? 0 : nout * q / parts / 16 * 16;
    const int64_t j1 = q + 1 == parts ? nout : nout * (q + 1) / parts / 16 * 16;
    if (j1 <= j0) continue;
    if (k == 0) {  // an empty sum (BLAS would leave y as it was)
      for (int64_t r = 0; r < m; ++r) std::fill(y + r * nout + j0, y + r * nout + j1, T(0));
    } else {  // x [m, k] x W[j0:j1]^T [k, j1-j0] -> y[:, j0:j1]  (row stride nout)
      rows_times_nt(dot, m, j1 - j0, k, x, k, w + j0 * k, k, y + j0, nout);
    }
    for (int64_t r = 0; r < m; ++r) {
      T *yr = y + r * nout;
      if (b)
        for (int64_t j = j0; j < j1; ++j) yr[j] += b[j];
      act_run(yr + j0, j1 - j0, act, al);
    }
  }
  return FC_OK;
}

#define FC_PLAN_OPS(T)                                                                          \
  template void eltwise<T>(const T *, const T *, T *, int64_t, int, double);                    \
  template void channel_scale<T>(const T *, const T *, int64_t, const T *, const T *, T *,      \
                                 int64_t, int64_t, int64_t, int, double);                       \
  template void lrn<T>(const T *, T *, int64_t, int64_t, int64_t, int64_t, double, double,      \
                       double);                                                                 \
  template void copy_channels<T>(const T *, T *, int64_t, int64_t, int64_t, int64_t, int64_t);  \
  template fc_status linear<T>(const T *, const T *, const T *, T *, int64_t, int64_t, int64_t, \
                               int, double);
FC_PLAN_OPS(float)
FC_PLAN_OPS(double)

}  // namespace fc
