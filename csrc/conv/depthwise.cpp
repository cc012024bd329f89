// Depthwise convolution (groups == c, k = m*c for a channel multiplier m): every output plane
// reads one input plane, so there is no channel reduction to hand to a GEMM. Work items are
// planes; the m outputs of one input channel are register-blocked in the row micro-kernels.
#include <omp.h>

#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

bool depthwise_supports(const ConvShape &s) { return s.g == s.c && s.cg == 1; }

namespace {

// Unit stride: a plane is copied into a zero-padded [hp, wp] buffer (with slack), after which
// every tap (i, j) is ONE long vector loop over the flat run of ho*wp positions:
//   wide[q] += w[i, j] * xpad[q + i*dh*wp + j*dw]
// (columns wo..wp-1 of each output row are computed and dropped), instead of ho short rows.
struct Flat {
  int64_t hp, wp, run, xplane;
  explicit Flat(const ConvShape &s)
      : hp(s.h + 2 * s.ph), wp(s.w + 2 * s.pw), run(s.ho * (s.w + 2 * s.pw)),
        xplane((s.h + 2 * s.ph) * (s.w + 2 * s.pw) + s.dw * (s.kw - 1) + 16) {}
};

// Flat paths only where the padded plane stays close to the real one.
bool flat_ok(const ConvShape &s) {
  int64_t plane;
  return s.sh == 1 && s.sw == 1 &&
         !__builtin_mul_overflow(s.h + 2 * s.ph, s.w + 2 * s.pw, &plane) &&
         plane <= 4 * (s.hw + s.howo) + 4096;
}

template <class T>
void pad_plane(const ConvShape &s, const Flat &f, const T *src, T *dst) {
  std::fill(dst, dst + f.xplane, T(0));
  for (int64_t r = 0; r < s.h; ++r)
    std::memcpy(dst + (r + s.ph) * f.wp + s.pw, src + r * s.w, s.w * sizeof(T));
}

template <class T>
fc_status forward_flat(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg;
  const int nt = num_threads();
  Buffer<T> ws(nt * (f.xplane + f.run));
  if (!ws.ok()) return fail(FC_ENOMEM, "depthwise: cannot allocate the padded planes");
#pragma omp parallel num_threads(nt)
  {
    T *xp = ws.get() + omp_get_thread_num() * (f.xplane + f.run), *wide = xp + f.xplane;
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
      const int64_t n = nc / s.c, c = nc % s.c;
      pad_plane(s, f, x + nc * s.hw, xp);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t k = c * m + r;
        std::fill(wide, wide + f.run, T(0));
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j)
            uk.conv_rows(wide, 0, 1, w + k * s.kk + i * s.kw + j, 0,
                         xp + i * s.dh * f.wp + j * s.dw, 1, f.run);
        T *yk = y + (n * s.k + k) * s.howo;
        const T bias = b ? b[k] : T(0);
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow) yk[oh * s.wo + ow] = wide[oh * f.wp + ow] + bias;
      }
    }
  }
  return FC_OK;
}

// dw[k, i, j] = sum over images and the flat run of dy_wide[q] * xpad[q + i*dh*wp + j*dw],
// with dy laid out at row stride wp (zeros in the dropped columns). One item per channel k.
template <class T>
fc_status backward_weight_flat(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg;
  const int nt = num_threads();
  Buffer<T> ws(nt * (f.xplane + f.run));
  if (!ws.ok()) return fail(FC_ENOMEM, "depthwise: cannot allocate the padded planes");
#pragma omp parallel num_threads(nt)
  {
    T *xp = ws.get() + omp_get_thread_num() * (f.xplane + f.run), *wide = xp + f.xplane;
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.k; ++k) {
      double acc[64] = {0};  // kh*kw <= 64 on this path (checked by the caller)
      std::fill(wide, wide + f.run, T(0));
      for (int64_t n = 0; n < s.n; ++n) {
        pad_plane(s, f, x + (n * s.c + k / m) * s.hw, xp);
        const T *dyk = dy + (n * s.k + k) * s.howo;
        for (int64_t oh = 0; oh < s.ho; ++oh)
          std::memcpy(wide + oh * f.wp, dyk + oh * s.wo, s.wo * sizeof(T));
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j)
            acc[i * s.kw + j] += uk.dot(wide, xp + i * s.dh * f.wp + j * s.dw, 1, f.run);
      }
      for (int64_t t = 0; t < s.kk; ++t) dw[k * s.kk + t] = (T)acc[t];
    }
  }
  return FC_OK;
}

}  // namespace

template <class T>
fc_status conv2d_forward__depthwise(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  if (flat_ok(s)) return forward_flat(s, x, w, b, y);
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
  // Unit stride, multiplier 1: the data gradient is the depthwise convolution of dy with the
  // flipped kernels, padded dil*(k-1) - pad, and runs on the flat forward.
  const int64_t tph = s.dh * (s.kh - 1) - s.ph, tpw = s.dw * (s.kw - 1) - s.pw;
  if (s.kg == 1 && s.sh == 1 && s.sw == 1 && tph >= 0 && tpw >= 0) {
    ConvShape t = s;
    t.h = s.ho; t.w = s.wo; t.ho = s.h; t.wo = s.w; t.ph = tph; t.pw = tpw;
    t.hw = s.howo; t.howo = s.hw;
    if (flat_ok(t)) {
      Buffer<T> wf(s.k * s.kk);
      if (!wf.ok()) return fail(FC_ENOMEM, "depthwise: cannot allocate the flipped kernels");
      for (int64_t k = 0; k < s.k; ++k)
        for (int64_t e = 0; e < s.kk; ++e) wf.get()[k * s.kk + e] = w[k * s.kk + s.kk - 1 - e];
      return forward_flat(t, dy, wf.get(), (const T *)nullptr, dx);
    }
  }
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
  if (flat_ok(s) && s.kk <= 64) return backward_weight_flat(s, dy, x, dw);
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
