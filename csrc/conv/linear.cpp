// Convolutions in which every output position sees every input element: a 3x3 "same"
// convolution on a 1x1 or 2x2 plane (ResNet's last stages on 8x8 or 32x32 images), a 3x3/2 on a
// 2x2 plane, a 7x7 on a 7x7 plane (VGG's first classifier layer through nn.utils.fc_to_conv).
// Such a convolution is a linear layer over the batch: per group,
//   Y[n, (kg, o)] = sum over (cg, p) of X[n, (cg, p)] * Wx[(kg, o), (cg, p)]
// for output positions o and input positions p, with Wx the kernel expanded to a dense
// [kg*ho*wo, cg*h*w] matrix: Wx[(k, o), (c, p)] = w[k, c, the tap that joins o and p]. There is
// always exactly one such tap, so the expanded matrix has no zero (no arithmetic is wasted, and
// the terms summed are the reference's own); with a 1x1 output Wx is the taps that meet the
// input. One GEMM of every image per direction, where the per-image paths run GEMMs of one to
// four columns, or Winograd transforms of tiles that are almost all padding.
#include <omp.h>

#include <cstring>

#include "../blas.h"
#include "../internal.h"
#include "gemm_blocks.h"

namespace fc {

namespace {

// The kernel index that joins output o and input position p along one axis, -1 when none.
inline int64_t tap(int64_t o, int64_t p, int64_t stride, int64_t pad, int64_t dil, int64_t k) {
  const int64_t t = p + pad - o * stride;  // = i * dil
  if (t < 0 || t % dil) return -1;
  return t / dil < k ? t / dil : -1;
}

// Whether every output along one axis sees every input position along it: the taps
// t(o, p) = (p + pad - o*stride) / dil lie in [0, k) for every o < out and p < in. Unit dilation:
// the extremes are p = in - 1 at o = 0 and p = 0 at o = out - 1. Dilated, two neighbouring
// inputs cannot both land on taps, so the input is one wide and every pad - o*stride a
// multiple of dil.
bool covers(int64_t in, int64_t out, int64_t stride, int64_t pad, int64_t dil, int64_t k) {
  int64_t reach;  // (out - 1) * stride, the first output's lead over the last
  if (__builtin_mul_overflow(out - 1, stride, &reach) || reach > pad) return false;
  if (dil == 1) return in <= k - pad;
  return in == 1 && pad % dil == 0 && (out == 1 || stride % dil == 0) && pad / dil < k;
}

// Wx is w as it lies: a 1x1 output of a kernel exactly the size of the unpadded input.
bool whole_kernel(const ConvShape &s) {
  return s.howo == 1 && s.in_h == s.kh && s.in_w == s.kw && s.ph == 0 && s.pw == 0;
}

// Elements of the expanded kernel Wx, [k*ho*wo, cg*h*w] (validated sizes: see linear_supports).
int64_t expanded_size(const ConvShape &s) { return s.k * s.howo * s.cg * s.hw; }

// The tap that joins output o and input position p, as i*kw + j: tp[o*hw + p].
void tap_table(const ConvShape &s, int64_t *tp) {
  for (int64_t oh = 0; oh < s.ho; ++oh)
    for (int64_t ow = 0; ow < s.wo; ++ow)
      for (int64_t ih = 0; ih < s.in_h; ++ih)
        for (int64_t iw = 0; iw < s.in_w; ++iw)
          *tp++ = tap(oh, ih, s.sh, s.ph, s.dil_h, s.kh) * s.kw +
                  tap(ow, iw, s.sw, s.pw, s.dil_w, s.kw);
}

// The expanded kernel, written into wx: row (k, o) holds w[k, c, tp[o*hw + p]] at c*hw + p.
template <class T>
void expand(const ConvShape &s, const T *w, const int64_t *tp, T *wx) {
  const int64_t q = s.cg * s.hw;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t ko = 0; ko < s.k * s.howo; ++ko) {
    const int64_t k = ko / s.howo, o = ko % s.howo;
    const int64_t *t = tp + o * s.hw;
    T *row = wx + ko * q;
    for (int64_t c = 0; c < s.cg; ++c, row += s.hw) {
      const T *wk = w + (k * s.cg + c) * s.kk;
      for (int64_t p = 0; p < s.hw; ++p) row[p] = wk[t[p]];
    }
  }
}

// The expanded kernel of w for the forward and the data gradient: w itself for a whole kernel,
// else built (expand) into buffers of its own.
template <class T>
class Expanded {
 public:
  Expanded(const ConvShape &s, const T *w)
      : whole_(whole_kernel(s)), buf_(whole_ ? 0 : expanded_size(s)),
        tp_(whole_ ? 0 : s.howo * s.hw), wx_(whole_ ? w : buf_.get()) {
    if (whole_ || !ok()) return;
    tap_table(s, tp_.get());
    expand(s, w, tp_.get(), buf_.get());
  }
  bool ok() const { return buf_.ok() && tp_.ok(); }
  const T *get() const { return wx_; }

 private:
  bool whole_;
  Buffer<T> buf_;
  Buffer<int64_t> tp_;
  const T *wx_;
};

// Runs f(g, r0, r1, c0, c1) for every group and tile of the [m, n] outputs on the GEMM team.
template <class F>
fc_status for_each_tile(const ConvShape &s, int64_t m, int64_t n, F &&f) {
  const Tiles tl = plan_tiles(m, n);
  const int nt = gemm_threads();  // (its parallel region calls gemm)
  if (fc_status st = blas_reserve(nt)) return st;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
    const TileAt t(tl, q, m, n);
    if (!t.empty()) f(t.g, t.r0, t.r1, t.c0, t.c1);
  }
  return FC_OK;
}

fc_status no_memory() { return fail(FC_ENOMEM, "linear: cannot allocate the expanded kernel"); }

}  // namespace

// The expanded kernel is kept to 16x the kernel's own size (a plane far larger than the kernel
// cannot be covered anyway; this bounds the odd dilated and strided cases).
bool linear_supports(const ConvShape &s) {
  if (!covers(s.in_h, s.ho, s.sh, s.ph, s.dil_h, s.kh) ||
      !covers(s.in_w, s.wo, s.sw, s.pw, s.dil_w, s.kw))
    return false;
  // (covering: in_h <= kh and ho <= kh, so none of these products can overflow)
  const int64_t rows = s.k * s.howo, q = s.cg * s.hw;
  return gemm_dims_fit(s.n) && gemm_dims_fit(rows) && gemm_dims_fit(s.c * s.hw) &&
         rows * q <= 16 * s.k * s.ckk;
}

// Per group: Y[n, (kg, o)] = X[n, (cg, p)] Wx^T (+ bias), Y's row stride k*howo, X's c*hw.
template <class T>
fc_status conv2d_forward__linear(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw, ldy = s.k * s.howo, m = s.kg * s.howo;
  const Expanded<T> ex(s, w);
  if (!ex.ok()) return no_memory();
  const T *wx = ex.get();
  const bool dot = rows_dot_pays<T>(s.n, m * q * (int64_t)sizeof(T));  // (one group's kernel)
  return for_each_tile(s, s.n, m, [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    T *yt = y + r0 * ldy + g * m + c0;
    rows_times_nt(dot, r1 - r0, c1 - c0, q, x + r0 * ldx + g * q, ldx, wx + (g * m + c0) * q, q, yt,
                  ldy);
    if (b)
      for (int64_t r = 0; r < r1 - r0; ++r)
        for (int64_t c = 0; c < c1 - c0; ++c) yt[r * ldy + c] += b[(g * m + c0 + c) / s.howo];
  });
}

// Per group: dX[n, (cg, p)] = dY[n, (kg, o)] Wx.
template <class T>
fc_status conv2d_backward_data__linear(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw, ldy = s.k * s.howo, m = s.kg * s.howo;
  const Expanded<T> ex(s, w);
  if (!ex.ok()) return no_memory();
  const T *wx = ex.get();
  return for_each_tile(s, s.n, q, [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    gemm(false, false, r1 - r0, c1 - c0, m, T(1), dy + r0 * ldy + g * m, ldy, wx + g * m * q + c0,
         q, T(0), dx + r0 * ldx + g * q + c0, ldx);
  });
}

// The weight gradient tap by tap: dw[k, c, t] = the sum over the (o, p) that tap t joins and
// over n of dy[n, k, o] * x[n, c, p]. The pairs of each tap (in the order of o) are gathered
// pair-major, dY as A[pair][n][kg] and X as B[pair][n][cg], so each tap is one GEMM
// [kg, N*m] x [N*m, cg] over its m pairs, written tap-major into D[t][kg][cg], then laid into
// dw. A tap no pair joins gets 0 (the reference skips those terms, whatever dy holds). One
// output: one GEMM [k, N] x [N, cg*hw], each column its own tap (straight into dw for a whole
// kernel).
template <class T>
fc_status conv2d_backward_weight__linear(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw, ldy = s.k * s.howo;
  if (s.howo == 1) {                     // one output: each input element meets its own tap
    const bool whole = whole_kernel(s);  // (then the taps are dw's own columns)
    Buffer<T> dq(whole ? 0 : s.k * q);
    Buffer<int64_t> tp(whole ? 0 : s.hw);
    if (!dq.ok() || !tp.ok()) return no_memory();
    T *dst = whole ? dw : dq.get();
    fc_status st =
        for_each_tile(s, s.kg, q, [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
      gemm(true, false, r1 - r0, c1 - c0, s.n, T(1), dy + g * s.kg + r0, ldy, x + g * q + c0, ldx,
           T(0), dst + (g * s.kg + r0) * q + c0, q);
    });
    if (st != FC_OK || whole) return st;
    tap_table(s, tp.get());
#pragma omp parallel for num_threads(num_threads()) schedule(static)
    for (int64_t kc = 0; kc < s.k * s.cg; ++kc) {
      T *dk = dw + kc * s.kk;
      const T *src = dq.get() + kc * s.hw;
      std::fill(dk, dk + s.kk, T(0));
      for (int64_t p = 0; p < s.hw; ++p) dk[tp.get()[p]] = src[p];
    }
    return FC_OK;
  }
  const int64_t pairs = s.howo * s.hw;
  Buffer<int64_t> tp(pairs), order(pairs), first(s.kk + 1);
  Buffer<T> a(s.n * pairs * s.k), b(s.n * pairs * s.c), d(s.kk * s.k * s.cg);
  if (!tp.ok() || !order.ok() || !first.ok() || !a.ok() || !b.ok() || !d.ok()) return no_memory();
  tap_table(s, tp.get());
  // order: the pairs (o*hw + p) sorted by tap, then o (a counting sort); first[t]: tap t's start
  std::fill(first.get(), first.get() + s.kk + 1, int64_t(0));
  for (int64_t i = 0; i < pairs; ++i) ++first.get()[tp.get()[i] + 1];
  for (int64_t t = 0; t < s.kk; ++t) first.get()[t + 1] += first.get()[t];
  {
    Buffer<int64_t> next(s.kk);
    if (!next.ok()) return no_memory();
    std::copy(first.get(), first.get() + s.kk, next.get());
    for (int64_t i = 0; i < pairs; ++i) order.get()[next.get()[tp.get()[i]]++] = i;
  }
  // A[g][r][n][kg] = dy[n, g*kg + kk, o_r]; B[g][r][n][cg] = x[n, g*cg + cc, p_r]
  const int64_t an = s.n * pairs * s.kg, bn = s.n * pairs * s.cg;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t gr = 0; gr < s.g * pairs; ++gr) {
    const int64_t g = gr / pairs, r = gr % pairs, o = order.get()[r] / s.hw,
                  p = order.get()[r] % s.hw;
    T *ar = a.get() + g * an + r * s.n * s.kg, *br = b.get() + g * bn + r * s.n * s.cg;
    for (int64_t n = 0; n < s.n; ++n) {
      const T *dyn = dy + (n * s.k + g * s.kg) * s.howo + o;
      for (int64_t kk = 0; kk < s.kg; ++kk) ar[n * s.kg + kk] = dyn[kk * s.howo];
      const T *xn = x + (n * s.c + g * s.cg) * s.hw + p;
      for (int64_t cc = 0; cc < s.cg; ++cc) br[n * s.cg + cc] = xn[cc * s.hw];
    }
  }
  // D[t][k][cg] per group and tap, cut into tiles for the threads
  const Tiles tl = plan_tiles(s.kg, s.cg);
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  if (fc_status st = blas_reserve(nt)) return st;
  const int64_t tiles = tl.pm * tl.pn;
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < s.g * s.kk * tiles; ++it) {
      const int64_t g = it / (s.kk * tiles), t = it / tiles % s.kk;
      const TileAt u(tl, it % tiles, s.kg, s.cg);  // (never empty: plan_tiles keeps 16+ rows)
      const int64_t r0 = u.r0, r1 = u.r1, c0 = u.c0, c1 = u.c1;
      const int64_t m = first.get()[t + 1] - first.get()[t], f = first.get()[t];
      T *dt = d.get() + (t * s.k + g * s.kg + r0) * s.cg + c0;
      if (m == 0) {
        for (int64_t r = r0; r < r1; ++r, dt += s.cg) std::fill(dt, dt + (c1 - c0), T(0));
        continue;
      }
      gemm(true, false, r1 - r0, c1 - c0, s.n * m, T(1), a.get() + g * an + f * s.n * s.kg + r0,
           s.kg, b.get() + g * bn + f * s.n * s.cg + c0, s.cg, T(0), dt, s.cg);
    }
    // dw[k, c, t] = D[t][k][c]
#pragma omp for schedule(static)
    for (int64_t kc = 0; kc < s.k * s.cg; ++kc)
      for (int64_t t = 0; t < s.kk; ++t) dw[kc * s.kk + t] = d.get()[t * s.k * s.cg + kc];
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(linear, float)
FC_INSTANTIATE_CONV_ALGO(linear, double)

}  // namespace fc
