// Max pooling with switches, its backward, and unpooling (the deconvnet's use of the switches).
//
// Forward: one job per output row (planes * ho of them, split statically over the threads).
// The windows of a row whose taps all lie inside the plane go to the ISA's max_row micro-kernel
// (vectorised over the row's outputs, y and switches written in the same pass); the few at the
// left/right edges take PyTorch's scalar loop, which defines every case (padding, dilation, a
// window with no input element). Small padded planes take bordered copies instead (pool.h).
//
// Switch entries (backward, unpool, unpool backward): every switch is checked against its plane
// before anything is written; then each plane is zeroed and scattered (or gathered) in one pass,
// the zeroing running just ahead of the scatter. Planes are independent: threads split planes
// and never collide.
#include <omp.h>

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
      int lows = 0;  // whether a window found -inf only (then its switch needs the scalar loop)
      if (flat) {
        PoolRow run{pp.wp, 0, s.dil_h, s.kh, 0, 1, s.dil_w, s.kw, (s.ho - 1) * pp.wp + s.wo};
        run.ixw = s.in_w;
        run.ibase = -s.ph * s.in_w - s.pw;
        uk.max_row(buf, run, wide, iwide);
        for (int64_t oh = 0; oh < s.ho; ++oh) {
          const T *__restrict row = wide + oh * pp.wp;
          T *__restrict out = yp + oh * s.wo;
#pragma omp simd reduction(| : lows)
          for (int64_t ow = 0; ow < s.wo; ++ow) {
            out[ow] = row[ow];
            lows |= row[ow] == lowest;
          }
          if (!ip) continue;
          const int64_t fix = oh * (s.in_w - pp.wp);
          const int64_t *__restrict from = iwide + oh * pp.wp;
          int64_t *__restrict to = ip + oh * s.wo;
#pragma omp simd
          for (int64_t ow = 0; ow < s.wo; ++ow) to[ow] = from[ow] + fix;
        }
      } else {  // (no switches here: use_padded_plane)
        for (int64_t oh = 0; oh < s.ho; ++oh)
          uk.max_row(buf, PoolRow{pp.wp, oh * s.sh, s.dil_h, s.kh, 0, s.sw, s.dil_w, s.kw, s.wo},
                     yp + oh * s.wo, nullptr);
      }
      // (a vectorised test per row above; the scan below is scalar and rarely needed)
      if (!ip || !lows) continue;
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

}  // namespace

template <class T>
fc_status max_pool2d_forward(const PoolShape &s, const T *x, T *y, int64_t *idx) {
  PaddedPlane pp;
  if (use_padded_plane(s, idx != nullptr, &pp))
    return max_pool2d_forward_bordered(s, pp, x, y, idx);
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  // Interior columns [lo, hi): ow*sw - pw >= 0 and ow*sw - pw + (kw-1)*dil_w <= in_w - 1.
  int64_t lo, hi;
  valid_range(-s.pw, s.sw, s.in_w - (s.kw - 1) * s.dil_w, s.wo, &lo, &hi);
  const int nt = pool_threads(s.planes * s.ho * s.wo * s.kh * s.kw);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < s.planes * s.ho; ++t) {  // one job per output row
    const int64_t p = t / s.ho, oh = t % s.ho;
    const T *plane = x + p * s.hw;
    T *yr = y + t * s.wo;
    int64_t *ir = idx ? idx + t * s.wo : nullptr;
    const int64_t ih = oh * s.sh - s.ph;
    const int64_t ih0 = first_in_range(ih, s.dil_h),
                  ih1 = std::min(ih + (s.kh - 1) * s.dil_h + 1, s.in_h);
    const int64_t span = std::max<int64_t>(ih1 - ih0, 0);
    // window rows in the plane
    const int64_t nr = s.dil_h == 1 ? span : (span + s.dil_h - 1) / s.dil_h;
    const bool vec = nr > 0 && hi > lo;
    const int64_t a = vec ? lo : s.wo, b = vec ? hi : s.wo;
    for (int64_t ow = 0; ow < a; ++ow)
      max_window(s, plane, ih0, ih1, ow, yr + ow, ir ? ir + ow : nullptr);
    if (vec) {
      const PoolRow row{s.in_w, ih0, s.dil_h, nr, lo * s.sw - s.pw, s.sw, s.dil_w, s.kw, hi - lo};
      uk.max_row(plane, row, yr + lo, ir ? ir + lo : nullptr);
    }
    for (int64_t ow = b; ow < s.wo; ++ow)
      max_window(s, plane, ih0, ih1, ow, yr + ow, ir ? ir + ow : nullptr);
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
