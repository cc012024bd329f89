// Convolutions whose one output position sees the whole input: a 3x3 "same" convolution on a
// 1x1 plane (ResNet's last stage on 8x8 or 32x32 images), a 3x3/2 on a 2x2 plane, a 7x7 on a
// 7x7 plane (VGG's first classifier layer through nn.utils.fc_to_conv). Each input element
// meets exactly one tap, the others only ever meet padding, so the convolution is a linear
// layer over the batch: per group, Y[n, kg] = X[n, q] W'[kg, q]^T with q = cg*in_h*in_w and W'
// the taps that meet the input. One GEMM of every image per direction, where the per-image
// paths run GEMMs of a single column (a 1x1 output plane) or transform tiles that are almost
// all padding (Winograd on 1x1 and 2x2 planes).
//
// The terms summed are the reference's own (it skips the taps that meet padding): the weight
// gradient of a tap that never meets the input is exactly 0, whatever dy holds.
#include <omp.h>

#include <cstring>

#include "../blas.h"
#include "../internal.h"

namespace fc {

namespace {

// The first kernel row (column) that meets the input: input row ih meets tap first + ih.
// -1 when some input row meets no tap (or meets one only through a dilation gap).
int64_t window_start(int64_t in, int64_t k, int64_t pad, int64_t dil) {
  if (in == 1) return pad % dil == 0 && pad / dil < k ? pad / dil : -1;
  return dil == 1 && pad + in <= k ? pad : -1;
}

// Whether the taps that meet the input are the whole kernel (W' is w as it lies).
bool whole_kernel(const ConvShape &s) {
  return s.in_h == s.kh && s.in_w == s.kw && s.ph == 0 && s.pw == 0;
}

// The kernel taps that meet the input as a contiguous [k, cg, in_h, in_w] matrix W' (its
// [k, q] rows): w itself for a whole kernel, else copied into buf (k*cg*hw elements).
template <class T>
const T *window_weights(const ConvShape &s, const T *w, T *buf) {
  if (whole_kernel(s)) return w;
  const int64_t i0 = window_start(s.in_h, s.kh, s.ph, s.dil_h);
  const int64_t j0 = window_start(s.in_w, s.kw, s.pw, s.dil_w);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t kc = 0; kc < s.k * s.cg; ++kc)
    for (int64_t a = 0; a < s.in_h; ++a)
      std::memcpy(buf + (kc * s.in_h + a) * s.in_w, w + (kc * s.kh + i0 + a) * s.kw + j0,
                  (size_t)s.in_w * sizeof(T));
  return buf;
}

// An [m, n] GEMM output cut into tiles for the threads: up to kFixedItems of them, each at
// least 16 rows and 64 columns, the cut following the shape only (README, "Determinism").
struct Cut {
  int64_t pm, pn;
};
Cut cut(int64_t m, int64_t n) {
  const int64_t pn = std::clamp<int64_t>(n / 64, 1, kFixedItems);
  const int64_t pm = std::clamp<int64_t>(m / 16, 1, kFixedItems / pn);
  return {pm, pn};
}

// Runs f(g, r0, r1, c0, c1) for every group and tile of the [m, n] outputs on the GEMM team.
template <class F>
fc_status for_each_tile(const ConvShape &s, int64_t m, int64_t n, F &&f) {
  const Cut c = cut(m, n);
  const int nt = gemm_threads();  // (its parallel region calls gemm)
  if (fc_status st = blas_reserve(nt)) return st;
  const int64_t items = s.g * c.pm * c.pn;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t g = it / (c.pm * c.pn), t = it % (c.pm * c.pn), a = t / c.pn, b = t % c.pn;
    f(g, m * a / c.pm, m * (a + 1) / c.pm, n * b / c.pn, n * (b + 1) / c.pn);
  }
  return FC_OK;
}

}  // namespace

bool linear_supports(const ConvShape &s) {
  const int64_t q = s.cg * s.hw;  // (validated sizes: no overflow)
  return s.ho == 1 && s.wo == 1 && window_start(s.in_h, s.kh, s.ph, s.dil_h) >= 0 &&
         window_start(s.in_w, s.kw, s.pw, s.dil_w) >= 0 && gemm_dims_fit(s.n) &&
         gemm_dims_fit(s.k) && gemm_dims_fit(s.c * s.hw) && gemm_dims_fit(s.k * q);
}

// Per group: Y[n, kg] = X[n, q] W'[kg, q]^T (+ bias), Y's row stride k, X's c*hw.
template <class T>
fc_status conv2d_forward__linear(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw;
  Buffer<T> buf(whole_kernel(s) ? 0 : s.k * q);
  if (!buf.ok()) return fail(FC_ENOMEM, "linear: cannot allocate the window's weights");
  const T *wq = window_weights(s, w, buf.get());
  return for_each_tile(s, s.n, s.kg,
                       [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    T *yt = y + r0 * s.k + g * s.kg + c0;
    gemm(false, true, r1 - r0, c1 - c0, q, T(1), x + r0 * ldx + g * q, ldx,
         wq + (g * s.kg + c0) * q, q, T(0), yt, s.k);
    if (b)
      for (int64_t r = 0; r < r1 - r0; ++r)
        for (int64_t c = 0; c < c1 - c0; ++c) yt[r * s.k + c] += b[g * s.kg + c0 + c];
  });
}

// Per group: dX[n, q] = dY[n, kg] W'[kg, q].
template <class T>
fc_status conv2d_backward_data__linear(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw;
  Buffer<T> buf(whole_kernel(s) ? 0 : s.k * q);
  if (!buf.ok()) return fail(FC_ENOMEM, "linear: cannot allocate the window's weights");
  const T *wq = window_weights(s, w, buf.get());
  return for_each_tile(s, s.n, q, [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    gemm(false, false, r1 - r0, c1 - c0, s.kg, T(1), dy + r0 * s.k + g * s.kg, s.k,
         wq + g * s.kg * q + c0, q, T(0), dx + r0 * ldx + g * q + c0, ldx);
  });
}

// Per group: dW'[kg, q] = dY[n, kg]^T X[n, q], written into the window's taps of dw; every
// other tap is 0 (it never meets the input).
template <class T>
fc_status conv2d_backward_weight__linear(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const int64_t q = s.cg * s.hw, ldx = s.c * s.hw;
  const int64_t i0 = window_start(s.in_h, s.kh, s.ph, s.dil_h);
  const int64_t j0 = window_start(s.in_w, s.kw, s.pw, s.dil_w);
  const bool whole = whole_kernel(s);
  Buffer<T> buf(whole ? 0 : s.k * q);
  if (!buf.ok()) return fail(FC_ENOMEM, "linear: cannot allocate the window's gradient");
  T *dq = whole ? dw : buf.get();
  fc_status st =
      for_each_tile(s, s.kg, q, [&](int64_t g, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    gemm(true, false, r1 - r0, c1 - c0, s.n, T(1), dy + g * s.kg + r0, s.k, x + g * q + c0, ldx,
         T(0), dq + (g * s.kg + r0) * q + c0, q);
  });
  if (st != FC_OK || whole) return st;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t kc = 0; kc < s.k * s.cg; ++kc) {
    T *d = dw + kc * s.kk;
    std::fill(d, d + s.kk, T(0));
    for (int64_t a = 0; a < s.in_h; ++a)
      std::memcpy(d + (i0 + a) * s.kw + j0, dq + (kc * s.in_h + a) * s.in_w,
                  (size_t)s.in_w * sizeof(T));
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(linear, float)
FC_INSTANTIATE_CONV_ALGO(linear, double)

}  // namespace fc
