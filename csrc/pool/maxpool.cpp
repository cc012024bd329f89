// Max pooling with switches, its backward, and unpooling (the deconvnet's use of the switches).
//
// Forward without switches, at dilation 1: separable maxima (max_pool2d_forward_separable).
// Otherwise one job per output row (planes * ho of them, split statically over the threads).
// The windows of a row whose taps all lie inside the plane go to the ISA's max_row micro-kernel
// (vectorised over the row's outputs, y and switches written in the same pass); the few at the
// left/right edges take PyTorch's scalar loop, which defines every case (padding, dilation, a
// window with no input element). Small padded planes take bordered copies instead (pool.h).
// Each plane is checked for NaNs once (special_values); where it has none, the micro-kernel
// drops its NaN test (a sum of the taps, one dependent add per tap) and runs two blocks of
// outputs side by side. AVX2 EPYC, 2 threads, in one process alternating with the old kernel,
// best of 60: GoogLeNet's 3x3/1 pools on 7x7-28x28 planes 0.6-0.8x the time without switches,
// 0.75-0.85x with them; ResNet's 3x3/2 on 112x112 0.83-0.87x.
//
// Switch entries (backward, unpool, unpool backward): every switch is checked against its plane
// before anything is written; then each plane is zeroed and scattered (or gathered) in one pass,
// the zeroing running just ahead of the scatter. Planes are independent: threads split planes
// and never collide.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "cpu/pool_ukernels.h"
#include "pool.h"

namespace fc {
namespace {

// The first position >= 0 of a window starting at `start` with step `step` (PyTorch's
// "while (i0 < 0) i0 += step", without the loop).
inline int64_t first_in_range(int64_t start, int64_t step) {
  if (start >= 0) return start;
  return step == 1 ? 0 : start + (-start + step - 1) / step * step;
}

// PyTorch's cpu_max_pool loop for output column ow of a row whose window rows are
// [ih0, ih1) step dil_h (ih0 already moved past the padding): -inf and the first in-range position
// to start, then "greater or NaN" replaces.
template <class T>
void max_window(const PoolShape &s, const T *plane, int64_t ih0, int64_t ih1, int64_t ow, T *y,
                int64_t *idx) {
  const int64_t start = ow * s.sw - s.pw;
  const int64_t iw1 = std::min(start + (s.kw - 1) * s.dil_w + 1, s.in_w);
  const int64_t iw0 = first_in_range(start, s.dil_w);
  T best = -std::numeric_limits<T>::infinity(), sum = 0;
  int64_t at = ih0 * s.in_w + iw0;
  // Branch-free "greater" scan (random data mispredicts a branch half the time), summing the
  // taps; a NaN makes the sum NaN, and then the window is scanned again with "greater or NaN".
  for (int64_t ih = ih0; ih < ih1; ih += s.dil_h)
    for (int64_t iw = iw0; iw < iw1; iw += s.dil_w) {
      const T v = plane[ih * s.in_w + iw];
      const bool gt = v > best;
      at = gt ? ih * s.in_w + iw : at;
      best = gt ? v : best;
      sum += v;
    }
  if (sum != sum) {
    best = -std::numeric_limits<T>::infinity();
    at = ih0 * s.in_w + iw0;
    for (int64_t ih = ih0; ih < ih1; ih += s.dil_h)
      for (int64_t iw = iw0; iw < iw1; iw += s.dil_w) {
        const T v = plane[ih * s.in_w + iw];
        if (v > best || v != v) {
          best = v;
          at = ih * s.in_w + iw;
        }
      }
  }
  *y = best;
  if (idx) *idx = at;
}

// Bit 0: some element of p[0, n) is NaN; bit 1: some element is -inf. Branch-free, one OR over
// the whole run (the compiler vectorises it), so a plane costs a fraction of its taps' loads.
template <class T>
int special_values(const T *__restrict p, int64_t n) {
  int nan = 0, neg_inf = 0;
  for (int64_t i = 0; i < n; ++i) {
    nan |= p[i] != p[i];
    neg_inf |= p[i] == -std::numeric_limits<T>::infinity();
  }
  return nan | neg_inf << 1;
}

// Checks all switches, then (only if all lie in their planes) runs body(p) for every plane p.
template <class Body>
fc_status through_switches(const PlanesShape &s, const int64_t *idx, Body body) {
  const auto first_bad = pool_ukernels<float>().first_bad_switch;  // the same for every T
  int64_t bad = std::numeric_limits<int64_t>::max();
  const int nt = pool_threads(s.planes * (s.howo + s.hw));
#pragma omp parallel num_threads(nt)
  {
    // The same static schedule in both loops: a thread scatters the planes it checked, while
    // their switches are still in its cache.
#pragma omp for schedule(static) reduction(min : bad)
    for (int64_t p = 0; p < s.planes; ++p) {
      const int64_t i = first_bad(idx + p * s.howo, s.howo, s.hw);
      if (i >= 0) bad = std::min(bad, p * s.howo + i);
    }
    // The loop's barrier has published `bad`: every thread takes the same branch.
    if (bad == std::numeric_limits<int64_t>::max()) {
#pragma omp for schedule(static)
      for (int64_t p = 0; p < s.planes; ++p) body(p);
    }
  }
  if (bad != std::numeric_limits<int64_t>::max())
    return fail(
        FC_EINVAL,
        "switches[%lld] = %lld (plane %lld, element %lld) lies outside its %lldx%lld plane: "
        "every switch must be in [0, %lld)",
        (long long)bad, (long long)idx[bad], (long long)(bad / s.howo), (long long)(bad % s.howo),
        (long long)s.in_h, (long long)s.in_w, (long long)s.hw);
  return FC_OK;
}

// Zeroes the plane d[0, hw) and applies d[q[i]] = op(d[q[i]], v[i]) for i < n, in order, in
// one pass: the plane is zeroed just ahead of the switches (in 1024-element steps), so for
// max-pool switches, which move through the plane row by row, it stays in L1 between the
// zeroing and the scatter. Any order of switches is still correct: an element is zeroed before
// its first update. Switches are already checked (0 <= q[i] < hw).
template <class T, class Op>
void zero_and_scatter(T *d, int64_t hw, const int64_t *q, const T *v, int64_t n, Op op) {
  int64_t zeroed = 0;  // d[0, zeroed) is zero or updated
  for (int64_t i = 0; i < n; ++i) {
    const int64_t at = q[i];
    if (at >= zeroed) {
      const int64_t upto = std::min(hw, (at | 1023) + 1);
      std::memset(d + zeroed, 0, sizeof(T) * (upto - zeroed));
      zeroed = upto;
    }
    d[at] = op(d[at], v[i]);
  }
  if (zeroed < hw) std::memset(d + zeroed, 0, sizeof(T) * (hw - zeroed));
}

// The bordered-plane path (pool.h): planes split over the threads. At unit stride one
// micro-kernel call covers the flat run of ho rows of the copy (the columns past wo computed
// and dropped): one call and no tail per plane instead of one and a masked tail per row
// (pool_api.cpp has the measurements). Other strides, without switches only: one call per
// output row of the copy. Switches are mapped back to the plane (PoolRow::ixw); in a flat run
// output (oh, ow) sits at oh*wp + ow, so its switch is off by oh*(wp - in_w), put right when it
// is copied out. A
// window of -inf only, or of border only (a dilated window can miss the plane), would point its
// switch into the border: those windows take the scalar loop.
template <class T>
fc_status max_pool2d_forward_bordered(const PoolShape &s, const PaddedPlane &pp, const T *x, T *y,
                                      int64_t *idx) {
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  const int nt = pool_threads(s.planes * s.ho * s.wo * s.kh * s.kw);
  const bool flat = s.sw == 1 && s.sh == 1;
  const int64_t wlen = flat ? s.ho * pp.wp : 0, per = pp.size + wlen;
  Buffer<T> bufs(nt * per);
  Buffer<int64_t> ibufs(idx ? nt * wlen : 0);
  if (!bufs.ok() || !ibufs.ok())
    return fail(FC_ENOMEM, "max_pool2d: cannot allocate the bordered planes");
  constexpr T lowest = -std::numeric_limits<T>::infinity();
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T *buf = bufs.get() + tid * per, *wide = buf + pp.size;
    int64_t *iwide = idx ? ibufs.get() + tid * wlen : nullptr;
    std::fill(buf, buf + pp.size, lowest);
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s.planes; ++p) {
      const T *plane = x + p * s.hw;
      T *yp = y + p * s.howo;
      int64_t *ip = idx ? idx + p * s.howo : nullptr;
      copy_into_border(s, pp, plane, buf);
      const int special = special_values(plane, s.hw);
      if (flat) {
        PoolRow run{pp.wp, 0, s.dil_h, s.kh, 0, 1, s.dil_w, s.kw, (s.ho - 1) * pp.wp + s.wo};
        run.ixw = s.in_w;
        run.ibase = -s.ph * s.in_w - s.pw;
        run.no_nan = !(special & 1);
        uk.max_row(buf, run, wide, iwide);
        for (int64_t oh = 0; oh < s.ho; ++oh) {
          std::memcpy(yp + oh * s.wo, wide + oh * pp.wp, sizeof(T) * s.wo);
          if (!ip) continue;
          const int64_t fix = oh * (s.in_w - pp.wp);
          const int64_t *__restrict from = iwide + oh * pp.wp;
          int64_t *__restrict to = ip + oh * s.wo;
#pragma omp simd
          for (int64_t ow = 0; ow < s.wo; ++ow) to[ow] = from[ow] + fix;
        }
      } else {  // (no switches here: use_padded_plane)
        for (int64_t oh = 0; oh < s.ho; ++oh) {
          PoolRow row{pp.wp, oh * s.sh, s.dil_h, s.kh, 0, s.sw, s.dil_w, s.kw, s.wo};
          row.no_nan = !(special & 1);
          uk.max_row(buf, row, yp + oh * s.wo, nullptr);
        }
      }
      // A window that found -inf only points its switch at its first tap, maybe in the border:
      // it takes the scalar loop. Undilated, every window holds a plane element (the padding is
      // at most half the kernel, and the last window starts inside), so that needs -inf in the
      // plane; a dilated window can miss the plane.
      if (!ip || !((special & 2) || s.dil_h > 1 || s.dil_w > 1)) continue;
      for (int64_t oh = 0; oh < s.ho; ++oh)
        for (int64_t ow = 0; ow < s.wo; ++ow)
          if (yp[oh * s.wo + ow] == lowest) {
            const int64_t ih = oh * s.sh - s.ph;
            max_window(s, plane, first_in_range(ih, s.dil_h),
                       std::min(ih + (s.kh - 1) * s.dil_h + 1, s.in_h), ow, yp + oh * s.wo + ow,
                       ip + oh * s.wo + ow);
          }
    }
  }
  return FC_OK;
}

// Output row oh of plane p, by the scanning kernel: the interior windows [lo, hi) (the range
// valid_range gives) vectorised (no_nan: the caller checked the window rows), the edges scalar.
template <class T>
void max_out_row(const PoolShape &s, const PoolUKernels<T> &uk, int64_t lo, int64_t hi,
                 const T *plane, int64_t oh, T *yr, int64_t *ir, bool no_nan) {
  const int64_t ih = oh * s.sh - s.ph;
  const int64_t ih0 = first_in_range(ih, s.dil_h),
                ih1 = std::min(ih + (s.kh - 1) * s.dil_h + 1, s.in_h);
  const int64_t span = std::max<int64_t>(ih1 - ih0, 0);
  const int64_t nr = s.dil_h == 1 ? span : (span + s.dil_h - 1) / s.dil_h;  // rows in the plane
  const bool vec = nr > 0 && hi > lo;
  const int64_t a = vec ? lo : s.wo, b = vec ? hi : s.wo;
  for (int64_t ow = 0; ow < a; ++ow)
    max_window(s, plane, ih0, ih1, ow, yr + ow, ir ? ir + ow : nullptr);
  if (vec) {
    PoolRow row{s.in_w, ih0, s.dil_h, nr, lo * s.sw - s.pw, s.sw, s.dil_w, s.kw, hi - lo};
    row.no_nan = no_nan;
    uk.max_row(plane, row, yr + lo, ir ? ir + lo : nullptr);
  }
  for (int64_t ow = b; ow < s.wo; ++ow)
    max_window(s, plane, ih0, ih1, ow, yr + ow, ir ? ir + ow : nullptr);
}

// Without switches, at dilation 1 (inference plans, no_grad): plane by plane, separable maxima
// (max_plane_sep: each output row's window rows reduced column by column, then each window's
// columns; a 3x3 window 4 comparisons an output instead of 8, and a 3x3/1 window on a small
// plane a few flat passes over the whole plane instead of a short run per row). Rows whose
// window holds a NaN or a -0 take the scanning kernel, so the bits stay PyTorch's. Against the
// scanning kernel, interleaved in one process, best of 21-31 (AVX2 EPYC, 2 threads, session
// 30): ResNet's 3x3/2 on 64 planes of 112x112 0.67-0.74x the time, GoogLeNet's 3x3/2 on
// 56x56-14x14 0.49-0.95x and its 3x3/1 on 28x28-7x7 0.55-0.73x, Inception v3's and AlexNet's
// 3x3/2 unpadded 0.71-0.88x, VGG's 2x2/2 on 112x112-14x14 0.56-0.79x. Only the 2x2/2 on planes
// 192-224 wide lost (1.02-1.2x: windows that do not overlap leave the rows nothing to share),
// so non-overlapping windows on planes 160 wide or more keep the scanning kernel.
template <class T>
fc_status max_pool2d_forward_separable(const PoolShape &s, const T *x, T *y) {
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  const SepPool sp{s.in_h,
                   s.in_w,
                   s.ho,
                   s.wo,
                   s.kh,
                   s.kw,
                   s.sh,
                   s.sw,
                   s.ph,
                   s.pw,
                   std::max((s.wo - 1) * s.sw + s.kw, s.pw + s.in_w)};
  int64_t lo, hi;
  valid_range(-s.pw, s.sw, s.in_w - (s.kw - 1) * s.dil_w, s.wo, &lo, &hi);
  const int nt = pool_threads(s.planes * (s.hw + s.howo));
  const int64_t per = std::max(sp.tw, s.hw) + 16;  // (a row, or a plane for max_plane_3x3s1)
  Buffer<T> bufs(nt * per);
  Buffer<int64_t> redos(nt * s.ho);
  if (!bufs.ok() || !redos.ok())
    return fail(FC_ENOMEM, "max_pool2d: cannot allocate the row buffers");
#pragma omp parallel num_threads(nt)
  {
    T *tmp = bufs.get() + omp_get_thread_num() * per;
    int64_t *redo = redos.get() + omp_get_thread_num() * s.ho;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s.planes; ++p) {
      const T *plane = x + p * s.hw;
      T *yp = y + p * s.howo;
      const int64_t left = uk.max_plane_sep(plane, sp, yp, tmp, redo);
      for (int64_t i = 0; i < left; ++i)
        max_out_row(s, uk, lo, hi, plane, redo[i], yp + redo[i] * s.wo, nullptr, false);
    }
  }
  return FC_OK;
}

}  // namespace

template <class T>
fc_status max_pool2d_forward(const PoolShape &s, const T *x, T *y, int64_t *idx) {
  if (!idx && s.dil_h == 1 && s.dil_w == 1 && (s.kh > s.sh || s.kw > s.sw || s.in_w < 160))
    return max_pool2d_forward_separable(s, x, y);
  PaddedPlane pp;
  if (use_padded_plane(s, idx != nullptr, &pp))
    return max_pool2d_forward_bordered(s, pp, x, y, idx);
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  // Interior columns [lo, hi): ow*sw - pw >= 0 and ow*sw - pw + (kw-1)*dil_w <= in_w - 1.
  int64_t lo, hi;
  valid_range(-s.pw, s.sw, s.in_w - (s.kw - 1) * s.dil_w, s.wo, &lo, &hi);
  const int nt = pool_threads(s.planes * s.ho * s.wo * s.kh * s.kw);
#pragma omp parallel num_threads(nt)
  {
    // A thread's jobs move down each plane: the input rows [lo_row, hi_row) of plane `seen` are the
    // ones it has checked for NaNs so far, and `nan` says whether they held one (each row is
    // checked once per thread; a NaN in a row this window skips only costs it the fast path).
    int64_t seen = -1, lo_row = 0, hi_row = 0;
    bool nan = false;
#pragma omp for schedule(static)
    for (int64_t t = 0; t < s.planes * s.ho; ++t) {  // one job per output row
      const int64_t p = t / s.ho, oh = t % s.ho;
      const T *plane = x + p * s.hw;
      const int64_t ih = oh * s.sh - s.ph;
      const int64_t ih0 = first_in_range(ih, s.dil_h),
                    ih1 = std::min(ih + (s.kh - 1) * s.dil_h + 1, s.in_h);
      if (p != seen) {
        seen = p;
        lo_row = hi_row = ih0;
        nan = false;
      }
      if (ih0 < lo_row) {  // (dilated windows at the top edge start lower, then higher)
        nan = nan || (special_values(plane + ih0 * s.in_w, (lo_row - ih0) * s.in_w) & 1);
        lo_row = ih0;
      }
      if (ih1 > hi_row) {
        const int64_t from = std::max(hi_row, ih0);
        nan = nan || (special_values(plane + from * s.in_w, (ih1 - from) * s.in_w) & 1);
        hi_row = ih1;
      }
      max_out_row(s, uk, lo, hi, plane, oh, y + t * s.wo, idx ? idx + t * s.wo : nullptr, !nan);
    }
  }
  return FC_OK;
}

template <class T>
fc_status max_pool2d_backward(const PlanesShape &s, const T *dy, const int64_t *idx, T *dx) {
  return through_switches(s, idx, [&](int64_t p) {
    zero_and_scatter(dx + p * s.hw, s.hw, idx + p * s.howo, dy + p * s.howo, s.howo,
                     [](T a, T b) { return a + b; });
  });
}

template <class T>
fc_status max_unpool2d_forward(const PlanesShape &s, const T *x, const int64_t *idx, T *y) {
  return through_switches(s, idx, [&](int64_t p) {
    // in order: the last write wins on duplicates
    zero_and_scatter(y + p * s.hw, s.hw, idx + p * s.howo, x + p * s.howo, s.howo,
                     [](T, T b) { return b; });
  });
}

template <class T>
fc_status max_unpool2d_backward(const PlanesShape &s, const T *dy, const int64_t *idx, T *dx) {
  return through_switches(s, idx, [&](int64_t p) {
    const T *g = dy + p * s.hw;
    T *d = dx + p * s.howo;
    const int64_t *q = idx + p * s.howo;
    for (int64_t i = 0; i < s.howo; ++i) d[i] = g[q[i]];
  });
}

#define FC_INSTANTIATE_MAXPOOL(T)                                                                  \
  template fc_status max_pool2d_forward<T>(const PoolShape &, const T *, T *, int64_t *);          \
  template fc_status max_pool2d_backward<T>(const PlanesShape &, const T *, const int64_t *, T *); \
  template fc_status max_unpool2d_forward<T>(const PlanesShape &, const T *, const int64_t *,      \
                                             T *);                                                 \
  template fc_status max_unpool2d_backward<T>(const PlanesShape &, const T *, const int64_t *, T *);
FC_INSTANTIATE_MAXPOOL(float)
FC_INSTANTIATE_MAXPOOL(double)

}  // namespace fc
