// Depthwise convolution (groups == c, k = m*c for a channel multiplier m): every output plane
// reads one input plane, so there is no channel reduction to hand to a GEMM. Work items are
// planes; the m outputs of one input channel are register-blocked in the row micro-kernels.
#include <omp.h>

#include <vector>

#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

bool depthwise_supports(const ConvShape &s) { return s.g == s.c && s.cg == 1; }

namespace {

// The flat paths. A zero-padded input plane xpad [hp, wp] is split into sh*sw phase planes
//   u[a, b][r, q] = xpad[sh*r + a, sw*q + b],   each [hq, wq] = [ceil(hp/sh), ceil(wp/sw)],
// so tap (i, j) of output (oh, ow) reads
//   u[(i*dil_h) % sh, (j*dil_w) % sw][oh + i*dil_h/sh, ow + j*dil_w/sw]:
// at flat position p = oh*wq + ow that is phase plane + shift(i, j) + p. Every tap is then ONE
// contiguous run of ho*wq positions, whatever the stride (columns wo..wq-1 of each row are
// computed and dropped), and all taps are summed in registers in one pass (sum_taps/dot_taps).
// Stride 1 has a single phase: the padded plane itself.
struct Flat {
  int64_t hp, wp, hq, wq, run, pstride, xplane, margin;
  explicit Flat(const ConvShape &s)
      : hp(s.in_h + 2 * s.ph), wp(s.in_w + 2 * s.pw), hq(hp / s.sh + (hp % s.sh != 0)),
        wq(wp / s.sw + (wp % s.sw != 0)), run(s.ho * wq), pstride(hq * wq + wq + 16),
        xplane(s.sh * s.sw * pstride),
        margin((s.dil_h * (s.kh - 1)) / s.sh * wq + (s.dil_w * (s.kw - 1)) / s.sw) {}
  int64_t phase(const ConvShape &s, int64_t i, int64_t j) const {
    return (i * s.dil_h) % s.sh * s.sw + (j * s.dil_w) % s.sw;
  }
  // offset of tap (i, j) inside its phase plane
  int64_t shift(const ConvShape &s, int64_t i, int64_t j) const {
    return (i * s.dil_h) / s.sh * wq + (j * s.dil_w) / s.sw;
  }
};

// Flat paths only where the padded plane stays close to the real one, and strides are no
// larger than it (so the sh*sw phase planes hold at most 4x its elements: no overflow below).
bool flat_ok(const ConvShape &s) {
  const int64_t hp = s.in_h + 2 * s.ph, wp = s.in_w + 2 * s.pw;  // fit: checked by the descriptor
  int64_t plane;
  return s.kk <= 4096 && s.sh <= hp && s.sw <= wp && !__builtin_mul_overflow(hp, wp, &plane) &&
         plane <= 4 * (s.hw + s.howo) + 4096;
}

// Copies without a library call: the rows here are often a dozen elements (this file is built
// with -fno-tree-loop-distribute-patterns, or GCC turns the loop back into memmove).
template <class T>
inline void copy_n(T *__restrict dst, const T *__restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
}

// One input plane into its phase planes. Only the elements that come from the input are
// written: the padding and each plane's slack are zeroed once, when a thread's buffer is made
// (the whole per-thread region), and stay zero because every plane writes the same positions.
template <class T>
void to_phases(const ConvShape &s, const Flat &f, const T *src, T *dst) {
  for (int64_t a = 0; a < s.sh; ++a) {
    // rows r with ih = sh*r + a - ph inside the input: [r0, r1)
    int64_t r0, r1;
    valid_range(a - s.ph, s.sh, s.in_h, f.hq, &r0, &r1);
    if (s.sw == 2) {  // both column phases of a row in one pass (a de-interleave)
      T *u0 = dst + (a * 2) * f.pstride, *u1 = u0 + f.pstride;
      // padded column t = iw + pw goes to phase t % 2, column t / 2
      const int64_t first = s.pw % 2;  // odd padding: input column 0 starts phase 1
      const int64_t pairs = (s.in_w - first) / 2, base = (first + s.pw) / 2;
      for (int64_t r = r0; r < r1; ++r) {
        const T *__restrict in = src + (s.sh * r + a - s.ph) * s.in_w;
        T *__restrict e = u0 + r * f.wq, *__restrict o = u1 + r * f.wq;
        if (first) o[s.pw / 2] = in[0];
        const T *__restrict ii = in + first;
        T *__restrict ee = e + base, *__restrict oo = o + base;
        for (int64_t q = 0; q < pairs; ++q) {
          ee[q] = ii[2 * q];
          oo[q] = ii[2 * q + 1];
        }
        if (first + 2 * pairs < s.in_w) ee[pairs] = ii[2 * pairs];
      }
      continue;
    }
    for (int64_t b = 0; b < s.sw; ++b) {
      T *u = dst + (a * s.sw + b) * f.pstride;
      int64_t q0, q1;  // columns q with iw = sw*q + b - pw inside the input
      valid_range(b - s.pw, s.sw, s.in_w, f.wq, &q0, &q1);
      if (q0 >= q1) continue;
      for (int64_t r = r0; r < r1; ++r) {
        const T *in = src + (s.sh * r + a - s.ph) * s.in_w + s.sw * q0 + b - s.pw;
        T *row = u + r * f.wq + q0;
        if (s.sw == 1) copy_n(row, in, q1 - q0);
        else
          for (int64_t q = 0; q < q1 - q0; ++q) row[q] = in[q * s.sw];
      }
    }
  }
}

// The inverse for the data gradient: each input element is exactly one phase element.
template <class T>
void from_phases(const ConvShape &s, const Flat &f, const T *src, T *dx) {
  int64_t c0 = 0, c1 = 0;  // unit stride: the columns of the one phase that are input columns
  if (s.sw == 1) valid_range(-s.pw, 1, s.in_w, f.wq, &c0, &c1);
  for (int64_t ih = 0; ih < s.in_h; ++ih) {
    const int64_t a = s.sh == 1 ? 0 : (ih + s.ph) % s.sh;
    const int64_t r = s.sh == 1 ? ih + s.ph : (ih + s.ph) / s.sh;
    if (s.sw == 2) {  // interleave the two column phases in one pass
      const T *__restrict u0 = src + (a * 2) * f.pstride + r * f.wq;
      const T *__restrict u1 = u0 + f.pstride;
      T *__restrict out = dx + ih * s.in_w;
      // input column iw is padded column iw + pw: phase (iw + pw) % 2, column (iw + pw) / 2
      int64_t iw = 0;
      if (s.pw % 2) out[iw++] = u1[s.pw / 2];
      const int64_t base = (iw + s.pw) / 2, pairs = (s.in_w - iw) / 2;
      T *__restrict o = out + iw;
      for (int64_t q = 0; q < pairs; ++q) {
        o[2 * q] = u0[base + q];
        o[2 * q + 1] = u1[base + q];
      }
      if (iw + 2 * pairs < s.in_w) o[2 * pairs] = u0[base + pairs];
      continue;
    }
    if (s.sw == 1) {
      copy_n(dx + ih * s.in_w + c0 - s.pw, src + a * f.pstride + r * f.wq + c0, c1 - c0);
      continue;
    }
    for (int64_t b = 0; b < s.sw; ++b) {
      const T *u = src + (a * s.sw + b) * f.pstride + r * f.wq;
      int64_t q0, q1;
      valid_range(b - s.pw, s.sw, s.in_w, f.wq, &q0, &q1);
      T *out = dx + ih * s.in_w + s.sw * q0 + b - s.pw;
      for (int64_t q = q0; q < q1; ++q) out[(q - q0) * s.sw] = u[q];
    }
  }
}

// dy plane [ho, wo] laid out at row stride wq after `lead` elements; everything else in the
// buffer is zeroed once, when it is made, and never written.
template <class T>
void widen(const ConvShape &s, const Flat &f, const T *dyk, T *wide, int64_t lead) {
  for (int64_t oh = 0; oh < s.ho; ++oh) copy_n(wide + lead + oh * f.wq, dyk + oh * s.wo, s.wo);
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
    std::fill(xp, xp + per, T(0));  // padding and slack: zero from here on
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
  // The taps grouped by phase, fixed for the call: phase ph owns entries [start[ph],
  // start[ph+1]) of the tap lists (which weight, and where in the thread's dy buffers it reads).
  std::vector<int64_t> start(nph + 1, 0), widx(ntap), off(ntap);
  for (int64_t ph = 0, cnt = 0; ph < nph; ++ph) {
    start[ph] = cnt;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j)
          if (f.phase(s, i, j) == ph) {
            widx[cnt] = r * s.kk + i * s.kw + j;
            off[cnt++] = r * wlen + f.margin - f.shift(s, i, j);
          }
    start[ph + 1] = cnt;
  }
  Buffer<T> ws(nt * per), wts(nt * ntap);
  Buffer<const T *> taps(nt * ntap);
  if (!ws.ok() || !wts.ok() || !taps.ok())
    return fail(FC_ENOMEM, "depthwise: cannot allocate the phase planes");
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T *dxp = ws.get() + tid * per, *wide = dxp + f.xplane, *wt = wts.get() + tid * ntap;
    std::fill(dxp, dxp + per, T(0));  // padding and slack: zero from here on
    const T **src = taps.get() + tid * ntap;
    for (int64_t t = 0; t < ntap; ++t) src[t] = wide + off[t];
#pragma omp for schedule(static)
    for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
      const int64_t n = nc / s.c, c = nc % s.c;
      for (int64_t r = 0; r < m; ++r)
        widen(s, f, dy + (n * s.k + c * m + r) * s.howo, wide + r * wlen, f.margin);
      const T *wc = w + c * m * s.kk;
      for (int64_t t = 0; t < ntap; ++t) wt[t] = wc[widx[t]];
      for (int64_t ph = 0; ph < nph; ++ph)
        uk.sum_taps(dxp + ph * f.pstride, src + start[ph], wt + start[ph],
                    (int)(start[ph + 1] - start[ph]), f.hq * f.wq, false);
      from_phases(s, f, dxp, dx + nc * s.hw);
    }
  }
  return FC_OK;
}

// dw[k, i, j] = sum over images of dot(dy_wide, phase plane + shift(i, j)) over the flat run.
// Items are blocks of up to kb output channels, walked image by image: the block's planes of
// one image are one contiguous stretch of x and dy, which the prefetchers follow (one channel
// across all images jumps a whole image between planes of a few hundred bytes). All taps in
// one pass (dot_taps), their partial sums kept in vectors across images and added into double
// at most every kFlush terms per lane (a 14x14 plane is too short to pay for reducing every tap
// after every image).
template <class T>
fc_status backward_weight_flat(const ConvShape &s, const T *dy, const T *x, T *dw) {
  constexpr int64_t kFlush = 4096;
  const UKernels<T> &uk = ukernels<T>();
  const Flat f(s);
  const int64_t m = s.kg, v = uk.vlen;
  // up to 16 channels, their vector partial sums within 64 KiB in float (16 KiB elements)
  const int64_t kb = std::max<int64_t>(1, std::min<int64_t>(16, 16384 / (s.kk * v)));
  const int64_t nblocks = (s.k + kb - 1) / kb;
  const int nt = num_threads();
  const int64_t per = f.xplane + f.run + 16;
  Buffer<T> ws(nt * per), parts(nt * kb * s.kk * v);
  Buffer<const T *> taps(nt * s.kk);
  Buffer<double> sums(nt * kb * s.kk);
  if (!ws.ok() || !parts.ok() || !taps.ok() || !sums.ok())
    return fail(FC_ENOMEM, "depthwise: cannot allocate the phase planes");
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T *xp = ws.get() + tid * per, *wide = xp + f.xplane;
    T *part = parts.get() + tid * kb * s.kk * v;
    std::fill(xp, xp + per, T(0));  // padding and slack: zero from here on
    const T **src = taps.get() + tid * s.kk;
    double *acc = sums.get() + tid * kb * s.kk;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        src[i * s.kw + j] = xp + f.phase(s, i, j) * f.pstride + f.shift(s, i, j);
    // Each tap's lanes summed in lane order, eight taps side by side: eight independent chains
    // of adds where one tap at a time had been one chain (16 dependent adds a tap on AVX-512:
    // 9k cycles for a block of 16 channels of a 3x3, more than its products over a 14x14 image;
    // its weight gradient at one image took 1.4x AVX2's time). The same sums: the same bits
    // (hashes of the weight gradients, three ISAs, float32 and float64). 512 channels at 14x14,
    // Zen 4, AVX-512: one image 0.10-0.11 -> 0.092-0.094 ms, eight 0.50-0.62 -> 0.37-0.51
    // (separate processes, best of 15; session 36).
    auto flush = [&](int64_t nk) {
      int64_t t = 0;
      for (; t + 8 <= nk * s.kk; t += 8) {
        double sum[8] = {};
        for (int64_t l = 0; l < v; ++l)
          for (int u = 0; u < 8; ++u) sum[u] += part[(t + u) * v + l];
        for (int u = 0; u < 8; ++u) acc[t + u] += sum[u];
      }
      for (; t < nk * s.kk; ++t) {
        double sum = 0;
        for (int64_t l = 0; l < v; ++l) sum += part[t * v + l];
        acc[t] += sum;
      }
      std::fill(part, part + nk * s.kk * v, T(0));
    };
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t k0 = blk * kb, nk = std::min(kb, s.k - k0);
      std::fill(acc, acc + nk * s.kk, 0.0);
      std::fill(part, part + nk * s.kk * v, T(0));
      int64_t pending = 0;  // terms per lane in part
      for (int64_t n = 0; n < s.n; ++n) {
        if (pending + f.run / v + 1 > kFlush) {
          flush(nk);
          pending = 0;
        }
        for (int64_t k = k0; k < k0 + nk; ++k) {
          to_phases(s, f, x + (n * s.c + k / m) * s.hw, xp);
          widen(s, f, dy + (n * s.k + k) * s.howo, wide, 0);
          uk.dot_taps(wide, src, (int)s.kk, f.run, part + (k - k0) * s.kk * v);
        }
        pending += f.run / v + 1;
      }
      flush(nk);
      for (int64_t t = 0; t < nk * s.kk; ++t) dw[k0 * s.kk + t] = (T)acc[t];
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
      for_each_tap(s, oh,
                   [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
        // y[c*m : c*m+m, oh, lo:hi] += w[c*m : c*m+m, 0, i, j] * x[c, ih, lo*sw+off : : sw]
        uk.conv_rows(yc + oh * s.wo + lo, s.howo, m, wc + i * s.kw + j, s.kk,
                     xc + ih * s.in_w + lo * s.sw + off, s.sw, hi - lo);
      });
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_data__depthwise(const ConvShape &s, const T *dy, const T *w, T *dx) {
  // At unit stride, one output per input channel, no dilation: dx is the forward of dy with each
  // plane's filter turned 180 degrees, padded kh-1-ph, kw-1-pw (its sum_taps over the taps in
  // order, no phase planes to gather from). Against the phase-plane gather below (Zen 4, 2
  // threads, interleaved, best of 9, session 33): 3x3 512 at 14x14 0.80x the time at 8 images,
  // 0.86x at 1, 256 at 28x28 0.91x, 128 at 56x56 0.94x, 5x5 0.85x, 32 at 112x112 0.98x.
  if (s.kg == 1 && s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 && s.ph < s.kh &&
      s.pw < s.kw) {
    ConvShape t = s;
    t.in_h = s.ho, t.in_w = s.wo, t.ho = s.in_h, t.wo = s.in_w;
    t.ph = s.kh - 1 - s.ph, t.pw = s.kw - 1 - s.pw;
    t.hw = s.howo, t.howo = s.hw;
    if (flat_ok(t)) {
      Buffer<T> wf(s.c * s.kk);
      if (!wf.ok()) return fail(FC_ENOMEM, "depthwise: cannot allocate the turned filters");
      for (int64_t c = 0; c < s.c; ++c)
        for (int64_t q = 0; q < s.kk; ++q) wf.get()[c * s.kk + q] = w[c * s.kk + s.kk - 1 - q];
      return forward_flat(t, dy, wf.get(), (const T *)nullptr, dx);
    }
  }
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
        for_each_tap(s, oh,
                     [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
          uk.scatter_rows(dxc + ih * s.in_w + lo * s.sw + off, 0, s.sw, 1, wk + i * s.kw + j, 0,
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
    const int64_t off = j * s.dil_w - s.pw;
    int64_t lo, hi;
    valid_range(off, s.sw, s.in_w, s.wo, &lo, &hi);
    double acc = 0;
    for (int64_t n = 0; n < s.n && lo < hi; ++n) {
      const T *dyk = dy + (n * s.k + k) * s.howo;
      const T *xc = x + (n * s.c + c) * s.hw;
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        const int64_t ih = oh * s.sh - s.ph + i * s.dil_h;
        if (ih < 0 || ih >= s.in_h) continue;
        acc += uk.dot(dyk + oh * s.wo + lo, xc + ih * s.in_w + lo * s.sw + off, s.sw, hi - lo);
      }
    }
    dw[it] = (T)acc;
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(depthwise, float)
FC_INSTANTIATE_CONV_ALGO(depthwise, double)

}  // namespace fc
