// Pooling micro-kernels, one table per element type, chosen once at load time by
// pool_dispatch.cpp (the same instruction set as the convolution table, see ukernels.h).
// They take raw pointers, sizes and strides; they never allocate and never start threads.
#pragma once
#include <cstdint>

namespace fc {

// One output row's worth of windows whose taps all lie inside the plane ("interior" windows).
// Output o (o < n) reads the taps x[(ih0 + r*dil_h)*xw + iw0 + o*sw + j*dil_w] for r < nr, j < kw.
struct PoolRow {
  int64_t xw;                  // row pitch of the input plane (its width)
  int64_t ih0, dil_h, nr;      // first input row, row step (dilation), number of rows (>= 1)
  int64_t iw0, sw, dil_w, kw;  // first tap's column for o = 0, output stride, dilation, taps (>= 1)
  int64_t n;                   // outputs
  // Where the switches point (max_row's idx), when the taps are read from a padded copy of the
  // plane rather than the plane: tap (r, j) of output o is switch ibase + r*dil_h*ixw + o*sw +
  // j*dil_w. ixw == 0: the plane itself, (ih0 + r*dil_h)*xw + iw0 + o*sw + j*dil_w.
  int64_t ixw = 0, ibase = 0;
  // The caller checked that no tap is NaN: max_row skips its NaN check (a sum of the taps).
  bool no_nan = false;
};

// A whole plane pooled by maxima at dilation 1 (max_plane_sep): the plane in_h x in_w, the
// output ho x wo, window kh x kw, stride, padding.
struct SepPool {
  int64_t in_h, in_w, ho, wo, kh, kw, sh, sw, ph, pw;
  int64_t tw;  // the row buffer's width: (wo - 1)*sw + kw, at least pw + in_w
};

template <class T>
struct PoolUKernels {
  // y[o] = the maximum of output o's taps, scanned row by row (PyTorch's order): a tap replaces
  // the running maximum when it is greater or NaN, so ties keep the first and the last NaN wins.
  // idx (may be NULL) receives the winner's flat index in the plane, (ih0 + r*dil_h)*xw + iw + ...
  // (or in the ixw-wide plane, see PoolRow)
  void (*max_row)(const T *x, const PoolRow &r, T *y, int64_t *idx);
  // y[o] = the sum of output o's taps in scan order, from 0 (PyTorch's order, so the same bits).
  void (*sum_row)(const T *x, const PoolRow &r, T *y);
  // y = the max pool of plane x (dilation 1) by separable maxima: each output row's window
  // rows reduced column by column into tmp (tw + a vector of slack, -inf in the padding; at
  // least in_h*in_w + a vector for the 3x3/1 windows, which reduce the whole plane), then
  // each window's columns. An output row whose window rows hold a NaN or a -0 (only there can
  // the order of the taps change the result: PyTorch's scan keeps the first of equal taps and
  // the last NaN) is not written but listed in redo (ho entries): the number listed is
  // returned, for the caller's scanning kernel.
  int64_t (*max_plane_sep)(const T *x, const SepPool &p, T *y, T *tmp, int64_t *redo);
  // The position of the first switch q[i] (i < n) outside [0, hw), or -1 when all are inside.
  int64_t (*first_bad_switch)(const int64_t *q, int64_t n, int64_t hw);
};

const PoolUKernels<float> &pool_ukernels_f32();
const PoolUKernels<double> &pool_ukernels_f64();
template <class T>
const PoolUKernels<T> &pool_ukernels();
template <>
inline const PoolUKernels<float> &pool_ukernels<float>() {
  return pool_ukernels_f32();
}
template <>
inline const PoolUKernels<double> &pool_ukernels<double>() {
  return pool_ukernels_f64();
}

// Each per-ISA file defines one of these (pool_generic.cpp, pool_avx2.cpp, pool_avx512.cpp).
void get_pool_ukernels__generic(PoolUKernels<float> *f, PoolUKernels<double> *d);
void get_pool_ukernels__avx2(PoolUKernels<float> *f, PoolUKernels<double> *d);
void get_pool_ukernels__avx512(PoolUKernels<float> *f, PoolUKernels<double> *d);

}  // namespace fc
