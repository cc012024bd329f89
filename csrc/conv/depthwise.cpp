// Depthwise convolution (groups == c, k = m*c for a channel multiplier m): every output plane
// reads one input plane, so there is no channel reduction to hand to a GEMM. Work items are
// planes; the m outputs of one input channel are register-blocked in the row micro-kernels.
#include <omp.h>

#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

bool depthwise_supports(const ConvShape &s) { return s.g == s.c && s.cg == 1; }

namespace {

// The flat paths. A zero-padded input plane xpad [hp, wp] is split into sh*sw phase planes
//   u[a, b][r, q] = xpad[sh*r + a, sw*q + b],   each [hq, wq] = [ceil(hp/sh), ceil(wp/sw)],
// so tap (i, j) of output (oh, ow) reads u[(i*dh) % sh, (j*dw) % sw][oh + i*dh/sh, ow + j*dw/sw]:
// at flat position p = oh*wq + ow that is phase plane + shift(i, j) + p. Every tap is then ONE
// contiguous run of ho*wq positions, whatever the stride (columns wo..wq-1 of each row are
// computed and dropped), and all taps are summed in registers in one pass (sum_taps/dot_taps).
// Stride 1 has a single phase: the padded plane itself.
struct Flat {
  int64_t hp, wp, hq, wq, run, pstride, xplane, margin;
  explicit Flat(const ConvShape &s)
      : hp(s.h + 2 * s.ph), wp(s.w + 2 * s.pw), hq((hp + s.sh - 1) / s.sh),
        wq((wp + s.sw - 1) / s.sw), run(s.ho * wq), pstride(hq * wq + wq + 16),
        xplane(s.sh * s.sw * pstride),
        margin((s.dh * (s.kh - 1)) / s.sh * wq + (s.dw * (s.kw - 1)) / s.sw) {}
  int64_t phase(const ConvShape &s, int64_t i, int64_t j) const {
    return (i * s.dh) % s.sh * s.sw + (j * s.dw) % s.sw;
  }
  // offset of tap (i, j) inside its phase plane
  int64_t shift(const ConvShape &s, int64_t i, int64_t j) const {
    return (i * s.dh) / s.sh * wq + (j * s.dw) / s.sw;
  }
};

// Flat paths only where the padded plane stays close to the real one.
bool flat_ok(const ConvShape &s) {
  int64_t plane;
  return s.kk <= 4096 && !__builtin_mul_overflow(s.h + 2 * s.ph, s.w + 2 * s.pw, &plane) &&
         plane <= 4 * (s.hw + s.howo) + 4096;
}

// One input plane into its phase planes (zeros in the padding and in each plane's slack).
template <class T>
void to_phases(const ConvShape &s, const Flat &f, const T *src, T *dst) {
  for (int64_t a = 0; a < s.sh; ++a)
    for (int64_t b = 0; b < s.sw; ++b) {
      T *u = dst + (a * s.sw + b) * f.pstride;
      // columns q with iw = sw*q + b - pw inside the input: [q0, q1)
      int64_t q0, q1;
      valid_range(b - s.pw, s.sw, s.w, f.wq, &q0, &q1);
      for (int64_t r = 0; r < f.hq; ++r) {
        T *row = u + r * f.wq;
        const int64_t ih = s.sh * r + a - s.ph;
        if (ih < 0 || ih >= s.h || q0 >= q1) {
          std::fill(row, row + f.wq, T(0));
          continue;
        }
        std::fill(row, row + q0, T(0));
        const T *in = src + ih * s.w + s.sw * q0 + b - s.pw;
        if (s.sw == 1)
          std::memcpy(row + q0, in, (q1 - q0) * sizeof(T));
        else
          for (int64_t q = q0; q < q1; ++q) row[q] = in[(q - q0) * s.sw];
        std::fill(row + q1, row + f.wq, T(0));
      }
      std::fill(u + f.hq * f.wq, u + f.pstride, T(0));
    }
}

// The inverse for the data gradient: each input element is exactly one phase element.
template <class T>
void from_phases(const ConvShape &s, const Flat &f, const T *src, T *dx) {
  for (int64_t ih = 0; ih < s.h; ++ih) {
    const int64_t a = (ih + s.ph) % s.sh, r = (ih + s.ph) / s.sh;
    for (int64_t b = 0; b < s.sw; ++b) {
      const T *u = src + (a * s.sw + b) * f.pstride + r * f.wq;
      int64_t q0, q1;
      valid_range(b - s.pw, s.sw, s.w, f.wq, &q0, &q1);
      T *out = dx + ih * s.w + s.sw * q0 + b - s.pw;
      if (s.sw == 1)
        std::memcpy(out, u + q0, (q1 - q0) * sizeof(T));
      else
        for (int64_t q = q0; q < q1; ++q) out[(q - q0) * s.sw] = u[q];
    }
  }
}

// dy plane [ho, wo] laid out at row stride wq after `lead` zeros, zeros everywhere else.
template <class T>
void widen(const ConvShape &s, const Flat &f, const T *dyk, T *wide, int64_t lead, int64_t len) {
  std::fill(wide, wide + len, T(0));
  for (int64_t oh = 0; oh < s.ho; ++oh)
    std::memcpy(wide + lead + oh * f.wq, dyk + oh * s.wo, s.wo * sizeof(T));
}

template <class T>
fc_status forward_flat(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg;
  const int nt = num_threads();
  const int64_t per = f.xplane + f.run + 16;
  Buffer<T> ws(nt * per);
  Buffer<const T *> taps(nt * s.kk);
  if (!ws.ok() || !taps.ok()) return fail(FC_ENOMEM, "depthwise: cannot allocate the phase planes");
#pragma omp parallel num_threads(nt)
  {
    T *xp = ws.get() + omp_get_thread_num() * per, *wide = xp + f.xplane;
    const T **src = taps.get() + omp_get_thread_num() * s.kk;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        src[i * s.kw + j] = xp + f.phase(s, i, j) * f.pstride + f.shift(s, i, j);
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
      const int64_t n = nc / s.c, c = nc % s.c;
      to_phases(s, f, x + nc * s.hw, xp);
      for (int64_t r = 0; r < m; ++r) {
        const int64_t k = c * m + r;
        uk.sum_taps(wide, src, w + k * s.kk, (int)s.kk, f.run, false);
        T *yk = y + (n * s.k + k) * s.howo;
        const T bias = b ? b[k] : T(0);
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow) yk[oh * s.wo + ow] = wide[oh * f.wq + ow] + bias;
      }
    }
  }
  return FC_OK;
}

// dx phase (a, b) at p = sum over the m outputs and the taps of that phase of
// w[k, i, j] * dy_wide[k][p - shift(i, j)]: a gather, so again one pass per phase plane.
// dy_wide has `margin` leading zeros (the largest shift) and zeros past its rows.
template <class T>
fc_status backward_data_flat(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg, nph = s.sh * s.sw;
  const int64_t wlen = f.margin + f.hq * f.wq + 16;
  const int nt = num_threads();
  const int64_t per = f.xplane + m * wlen;
  const int64_t ntap = m * s.kk;
  Buffer<T> ws(nt * per), wts(nt * ntap);
  Buffer<const T *> taps(nt * ntap);
  if (!ws.ok() || !wts.ok() || !taps.ok())
    return fail(FC_ENOMEM, "depthwise: cannot allocate the phase planes");
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T *dxp = ws.get() + tid * per, *wide = dxp + f.xplane, *wt = wts.get() + tid * ntap;
    const T **src = taps.get() + tid * ntap;
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
      const int64_t n = nc / s.c, c = nc % s.c;
      for (int64_t r = 0; r < m; ++r)
        widen(s, f, dy + (n * s.k + c * m + r) * s.howo, wide + r * wlen, f.margin, wlen);
      for (int64_t ph = 0; ph < nph; ++ph) {
        int cnt = 0;
        for (int64_t r = 0; r < m; ++r)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j)
              if (f.phase(s, i, j) == ph) {
                src[cnt] = wide + r * wlen + f.margin - f.shift(s, i, j);
                wt[cnt++] = w[(c * m + r) * s.kk + i * s.kw + j];
              }
        uk.sum_taps(dxp + ph * f.pstride, src, wt, cnt, f.hq * f.wq, false);
      }
      from_phases(s, f, dxp, dx + nc * s.hw);
    }
  }
  return FC_OK;
}

// dw[k, i, j] = sum over images of dot(dy_wide, phase plane + shift(i, j)) over the flat run.
// One item per output channel k; all taps in one pass (dot_taps).
template <class T>
fc_status backward_weight_flat(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg;
  const int nt = num_threads();
  const int64_t per = f.xplane + f.run + 16;
  Buffer<T> ws(nt * per);
  Buffer<const T *> taps(nt * s.kk);
  Buffer<double> sums(nt * s.kk);
  if (!ws.ok() || !taps.ok() || !sums.ok())
    return fail(FC_ENOMEM, "depthwise: cannot allocate the phase planes");
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T *xp = ws.get() + tid * per, *wide = xp + f.xplane;
    const T **src = taps.get() + tid * s.kk;
    double *acc = sums.get() + tid * s.kk;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        src[i * s.kw + j] = xp + f.phase(s, i, j) * f.pstride + f.shift(s, i, j);
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.k; ++k) {
      std::fill(acc, acc + s.kk, 0.0);
      for (int64_t n = 0; n < s.n; ++n) {
        to_phases(s, f, x + (n * s.c + k / m) * s.hw, xp);
        widen(s, f, dy + (n * s.k + k) * s.howo, wide, 0, f.run);
        uk.dot_taps(wide, src, (int)s.kk, f.run, acc);
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
  if (flat_ok(s)) return backward_data_flat(s, dy, w, dx);
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
  if (flat_ok(s)) return backward_weight_flat(s, dy, x, dw);
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
