// Depthwise convolution (groups == c, k = m*c for a channel multiplier m): every output plane
// reads one input plane, so there is no channel reduction to hand to a GEMM. Work items are
// planes; the m outputs of one input channel are register-blocked in the row micro-kernels.
#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

bool depthwise_supports(const ConvShape &s) { return s.g == s.c && s.cg == 1; }

template <class T>
fc_status conv2d_forward__depthwise(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t m = s.kg;  // outputs per input channel
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
    const int64_t n = nc / s.c, c = nc % s.c;
    const T *xc = x + nc * s.hw;
    T *yc = y + (n * s.k + c * m) * s.howo;  // planes c*m .. c*m+m-1
    for (int64_t r = 0; r < m; ++r) fill_bias_plane(yc + r * s.howo, s.howo, b, c * m + r);
    const T *wc = w + c * m * s.kk;
    for (int64_t oh = 0; oh < s.ho; ++oh) {
      for_each_tap(s, oh, [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
        // y[c*m : c*m+m, oh, lo:hi] += w[c*m : c*m+m, 0, i, j] * x[c, ih, lo*sw+off : : sw]
        uk.conv_rows(yc + oh * s.wo + lo, s.howo, m, wc + i * s.kw + j, s.kk,
                     xc + ih * s.w + lo * s.sw + off, s.sw, hi - lo);
      });
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_data__depthwise(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t m = s.kg;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
    const int64_t n = nc / s.c, c = nc % s.c;
    T *dxc = dx + nc * s.hw;
    std::fill(dxc, dxc + s.hw, T(0));
    for (int64_t r = 0; r < m; ++r) {
      const T *dyk = dy + (n * s.k + c * m + r) * s.howo;
      const T *wk = w + (c * m + r) * s.kk;
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        for_each_tap(s, oh, [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
          uk.scatter_rows(dxc + ih * s.w + lo * s.sw + off, 0, s.sw, 1, wk + i * s.kw + j, 0,
                          dyk + oh * s.wo + lo, hi - lo);
        });
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_weight__depthwise(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t m = s.kg;
  // One item per (output channel, tap): dw[k, 0, i, j] sums over images and output rows.
  const int64_t items = s.k * s.kk;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t k = it / s.kk, i = (it % s.kk) / s.kw, j = it % s.kw, c = k / m;
    const int64_t off = j * s.dw - s.pw;
    int64_t lo, hi;
    valid_range(off, s.sw, s.w, s.wo, &lo, &hi);
    double acc = 0;
    for (int64_t n = 0; n < s.n && lo < hi; ++n) {
      const T *dyk = dy + (n * s.k + k) * s.howo;
      const T *xc = x + (n * s.c + c) * s.hw;
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        const int64_t ih = oh * s.sh - s.ph + i * s.dh;
        if (ih < 0 || ih >= s.h) continue;
        acc += uk.dot(dyk + oh * s.wo + lo, xc + ih * s.w + lo * s.sw + off, s.sw, hi - lo);
      }
    }
    dw[it] = (T)acc;
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(depthwise, float)
FC_INSTANTIATE_CONV_ALGO(depthwise, double)

}  // namespace fc
