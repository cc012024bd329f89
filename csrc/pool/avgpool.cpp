// Average pooling (count_include_pad, divisor_override, ceil_mode) and adaptive average pooling,
// forward and backward.
//
// avg forward: one job per output row, as max pooling: interior windows go to the ISA's sum_row
// micro-kernel (each output sums its taps in PyTorch's order, then divides), edge windows take
// PyTorch's scalar loop. The backwards accumulate into a zeroed plane per job (threads split
// planes). Adaptive pooling sums in double (its windows can be whole planes).
#include <omp.h>

#include <cstring>

#include "cpu/pool_ukernels.h"
#include "pool.h"

namespace fc {
namespace {

// PyTorch's cpu_avg_pool window for output (oh, ow): the clipped window [ih0, ih1) x [iw0, iw1)
// and its divisor; false when the window holds no input element (the output is then 0).
struct AvgWindow {
  int64_t ih0, ih1, iw0, iw1, div;
};
bool avg_window(const PoolShape &s, bool incl, int64_t divisor, int64_t oh, int64_t ow,
                AvgWindow *win) {
  int64_t ih0 = oh * s.sh - s.ph, iw0 = ow * s.sw - s.pw;
  int64_t ih1 = std::min(ih0 + s.kh, s.in_h + s.ph), iw1 = std::min(iw0 + s.kw, s.in_w + s.pw);
  const int64_t pool_size = (ih1 - ih0) * (iw1 - iw0);
  ih0 = std::max<int64_t>(ih0, 0);
  iw0 = std::max<int64_t>(iw0, 0);
  ih1 = std::min(ih1, s.in_h);
  iw1 = std::min(iw1, s.in_w);
  if (ih0 >= ih1 || iw0 >= iw1) return false;
  *win = {ih0, ih1, iw0, iw1, divisor ? divisor : incl ? pool_size : (ih1 - ih0) * (iw1 - iw0)};
  return true;
}

template <class T>
T avg_window_forward(const PoolShape &s, bool incl, int64_t divisor, const T *plane, int64_t oh,
                     int64_t ow) {
  AvgWindow a;
  if (!avg_window(s, incl, divisor, oh, ow, &a)) return T(0);
  T sum = 0;
  for (int64_t ih = a.ih0; ih < a.ih1; ++ih)
    for (int64_t iw = a.iw0; iw < a.iw1; ++iw) sum += plane[ih * s.in_w + iw];
  return sum / (T)a.div;
}

// The interior of output row oh: columns [lo, hi) and the micro-kernel row, or false when the
// whole row is edge windows. The interior divisor is the same for the whole row.
struct AvgRow {
  PoolRow row;
  int64_t div;
};
bool avg_interior(const PoolShape &s, bool incl, int64_t divisor, int64_t lo, int64_t hi,
                  int64_t oh, AvgRow *out) {
  const int64_t ih = oh * s.sh - s.ph;
  int64_t r0, r1;
  window_rows(ih, 1, s.kh, s.in_h, &r0, &r1);
  if (r1 <= r0 || hi <= lo) return false;
  const int64_t rows_in_pad = std::min(ih + s.kh, s.in_h + s.ph) - ih;
  out->row = PoolRow{s.in_w, ih + r0, 1, r1 - r0, lo * s.sw - s.pw, s.sw, 1, s.kw, hi - lo};
  out->div = divisor ? divisor : (incl ? rows_in_pad : r1 - r0) * s.kw;
  return true;
}

// Adaptive windows: [floor(o*in/out), ceil((o+1)*in/out)).
inline int64_t start_index(int64_t o, int64_t out, int64_t in) { return o * in / out; }
inline int64_t end_index(int64_t o, int64_t out, int64_t in) {
  return ((o + 1) * in + out - 1) / out;
}

// The bordered-plane path (pool.h): a zero border adds +0.0 to sums that start from +0.0, which
// changes no bit, so every window is one sum_row tap scan. Divisors are avg_window's; a window
// with no input element is 0 (its sum, 0, over 1).
template <class T>
fc_status avg_pool2d_forward_bordered(const PoolShape &s, const PaddedPlane &pp, bool incl,
                                      int64_t divisor, const T *x, T *y) {
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  const int nt = pool_threads(s.planes * s.ho * s.wo * s.kh * s.kw);
  // The sums go to `wide`, rows pp.wp apart: at unit stride one sum_row call over the flat run
  // of ho rows of the bordered plane (the columns past wo of each row are computed and dropped).
  const int64_t wlen = s.ho * pp.wp, per = pp.size + wlen;
  Buffer<T> bufs(nt * per);
  Buffer<T> divs(wlen);  // every output's divisor, as `wide` (1 where a window holds no input)
  if (!bufs.ok() || !divs.ok())
    return fail(FC_ENOMEM, "avg_pool2d: cannot allocate the bordered planes");
  std::fill(divs.get(), divs.get() + wlen, T(1));
  for (int64_t oh = 0; oh < s.ho; ++oh)
    for (int64_t ow = 0; ow < s.wo; ++ow) {
      AvgWindow a;
      if (avg_window(s, incl, divisor, oh, ow, &a)) divs.get()[oh * pp.wp + ow] = (T)a.div;
    }
  const bool flat = s.sh == 1 && s.sw == 1;
#pragma omp parallel num_threads(nt)
  {
    T *buf = bufs.get() + omp_get_thread_num() * per, *wide = buf + pp.size;
    std::fill(buf, buf + per, T(0));
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s.planes; ++p) {
      copy_into_border(s, pp, x + p * s.hw, buf);
      if (flat)
        uk.sum_row(buf, PoolRow{pp.wp, 0, 1, s.kh, 0, 1, 1, s.kw, (s.ho - 1) * pp.wp + s.wo}, wide);
      else
        for (int64_t oh = 0; oh < s.ho; ++oh)
          uk.sum_row(buf, PoolRow{pp.wp, oh * s.sh, 1, s.kh, 0, s.sw, 1, s.kw, s.wo},
                     wide + oh * pp.wp);
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        const T *__restrict w = wide + oh * pp.wp, *__restrict d = divs.get() + oh * pp.wp;
        T *__restrict yr = y + (p * s.ho + oh) * s.wo;
#pragma omp simd
        for (int64_t ow = 0; ow < s.wo; ++ow) yr[ow] = w[ow] / d[ow];
      }
    }
  }
  return FC_OK;
}

}  // namespace

template <class T>
fc_status avg_pool2d_forward(const PoolShape &s, bool incl, int64_t divisor, const T *x, T *y) {
  PaddedPlane pp;
  if (use_padded_plane(s, false, &pp))
    return avg_pool2d_forward_bordered(s, pp, incl, divisor, x, y);
  const PoolUKernels<T> &uk = pool_ukernels<T>();
  int64_t lo, hi;  // interior columns: the whole window inside the plane
  valid_range(-s.pw, s.sw, s.in_w - (s.kw - 1), s.wo, &lo, &hi);
  const int nt = pool_threads(s.planes * s.ho * s.wo * s.kh * s.kw);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < s.planes * s.ho; ++t) {  // one job per output row
    const int64_t p = t / s.ho, oh = t % s.ho;
    const T *plane = x + p * s.hw;
    T *yr = y + t * s.wo;
    AvgRow in;
    const bool vec = avg_interior(s, incl, divisor, lo, hi, oh, &in);
    const int64_t a = vec ? lo : s.wo, b = vec ? hi : s.wo;
    for (int64_t ow = 0; ow < a; ++ow) yr[ow] = avg_window_forward(s, incl, divisor, plane, oh, ow);
    if (vec) {
      uk.sum_row(plane, in.row, yr + lo);
      const T div = (T)in.div;
      for (int64_t ow = lo; ow < hi; ++ow) yr[ow] /= div;
    }
    for (int64_t ow = b; ow < s.wo; ++ow)
      yr[ow] = avg_window_forward(s, incl, divisor, plane, oh, ow);
  }
  return FC_OK;
}

// Per output row: its windows' gradients dy / divisor (PyTorch's grad_delta) summed into one row
// of horizontal contributions h, which is then added to each input row the windows cover: kw
// adds per output and nr vectorised row additions instead of kh*kw scattered ones. Interior
// windows share the row's divisor (one vectorised division); edge windows take avg_window.
template <class T>
fc_status avg_pool2d_backward(const PoolShape &s, bool incl, int64_t divisor, const T *dy, T *dx) {
  int64_t lo, hi;  // interior columns: the whole window inside the plane
  valid_range(-s.pw, s.sw, s.in_w - (s.kw - 1), s.wo, &lo, &hi);
  const int nt = pool_threads(s.planes * (s.hw + s.howo * s.kh * s.kw));
  const int64_t per_thread = s.in_w + s.wo;  // h, then the interior gradients
  Buffer<T> scratch(nt * per_thread);
  if (!scratch.ok())
    return fail(FC_ENOMEM, "avg_pool2d backward: cannot allocate %lld bytes",
                (long long)(nt * per_thread * (int64_t)sizeof(T)));
#pragma omp parallel num_threads(nt)
  {
    T *h = scratch.get() + (int64_t)omp_get_thread_num() * per_thread;
    T *g = h + s.in_w;
#pragma omp for schedule(static)
    for (int64_t p = 0; p < s.planes; ++p) {
      T *plane = dx + p * s.hw;
      std::memset(plane, 0, sizeof(T) * s.hw);
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        const T *dr = dy + (p * s.ho + oh) * s.wo;
        AvgRow in;
        const bool vec = avg_interior(s, incl, divisor, lo, hi, oh, &in);
        const int64_t a = vec ? lo : s.wo, b = vec ? hi : s.wo;
        std::memset(h, 0, sizeof(T) * s.in_w);
        int64_t r0 = vec ? in.row.ih0 : 0, r1 = vec ? in.row.ih0 + in.row.nr : 0;
        auto edge = [&](int64_t ow) {
          AvgWindow w;
          if (!avg_window(s, incl, divisor, oh, ow, &w)) return;
          r0 = w.ih0;  // the same rows for every window of the row
          r1 = w.ih1;
          const T gw = dr[ow] / (T)w.div;
          for (int64_t iw = w.iw0; iw < w.iw1; ++iw) h[iw] += gw;
        };
        for (int64_t ow = 0; ow < a; ++ow) edge(ow);
        if (vec) {
          const T div = (T)in.div;
#pragma omp simd
          for (int64_t ow = lo; ow < hi; ++ow) g[ow - lo] = dr[ow] / div;
          for (int64_t j = 0; j < s.kw; ++j) {
            T *__restrict hj = h + in.row.iw0 + j;  // output lo's tap j
            for (int64_t o = 0; o < hi - lo; ++o) hj[o * s.sw] += g[o];
          }
        }
        for (int64_t ow = b; ow < s.wo; ++ow) edge(ow);
        for (int64_t ih = r0; ih < r1; ++ih) {
          T *__restrict d = plane + ih * s.in_w;
#pragma omp simd
          for (int64_t iw = 0; iw < s.in_w; ++iw) d[iw] += h[iw];
        }
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status adaptive_avg_pool2d_forward(const PlanesShape &s, const T *x, T *y) {
  const int nt = pool_threads(s.planes * (s.hw + s.howo));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t t = 0; t < s.planes * s.ho; ++t) {  // one job per output row
    const int64_t p = t / s.ho, oh = t % s.ho;
    const T *plane = x + p * s.hw;
    const int64_t ih0 = start_index(oh, s.ho, s.in_h), ih1 = end_index(oh, s.ho, s.in_h);
    for (int64_t ow = 0; ow < s.wo; ++ow) {
      const int64_t iw0 = start_index(ow, s.wo, s.in_w), iw1 = end_index(ow, s.wo, s.in_w);
      double acc = 0;
      if (iw1 - iw0 == s.in_w) {  // whole rows (global pooling): one contiguous run
        const T *r = plane + ih0 * s.in_w;
        const int64_t count = (ih1 - ih0) * s.in_w;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < count; ++i) acc += (double)r[i];
      } else {
        for (int64_t ih = ih0; ih < ih1; ++ih) {
          const T *r = plane + ih * s.in_w;
#pragma omp simd reduction(+ : acc)
          for (int64_t iw = iw0; iw < iw1; ++iw) acc += (double)r[iw];
        }
      }
      y[t * s.wo + ow] = (T)(acc / (double)((ih1 - ih0) * (iw1 - iw0)));
    }
  }
  return FC_OK;
}

template <class T>
fc_status adaptive_avg_pool2d_backward(const PlanesShape &s, const T *dy, T *dx) {
  const int nt = pool_threads(s.planes * (s.hw + s.howo));
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t p = 0; p < s.planes; ++p) {
    T *plane = dx + p * s.hw;
    std::memset(plane, 0, sizeof(T) * s.hw);
    for (int64_t oh = 0; oh < s.ho; ++oh) {
      const int64_t ih0 = start_index(oh, s.ho, s.in_h), ih1 = end_index(oh, s.ho, s.in_h);
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        const int64_t iw0 = start_index(ow, s.wo, s.in_w), iw1 = end_index(ow, s.wo, s.in_w);
        const T g =
            (T)((double)dy[(p * s.ho + oh) * s.wo + ow] / (double)((ih1 - ih0) * (iw1 - iw0)));
        if (iw1 - iw0 == s.in_w) {  // whole rows (global pooling): one contiguous run
          T *r = plane + ih0 * s.in_w;
          const int64_t count = (ih1 - ih0) * s.in_w;
#pragma omp simd
          for (int64_t i = 0; i < count; ++i) r[i] += g;
        } else {
          for (int64_t ih = ih0; ih < ih1; ++ih) {
            T *r = plane + ih * s.in_w;
#pragma omp simd
            for (int64_t iw = iw0; iw < iw1; ++iw) r[iw] += g;
          }
        }
      }
    }
  }
  return FC_OK;
}

#define FC_INSTANTIATE_AVGPOOL(T)                                                              \
  template fc_status avg_pool2d_forward<T>(const PoolShape &, bool, int64_t, const T *, T *);  \
  template fc_status avg_pool2d_backward<T>(const PoolShape &, bool, int64_t, const T *, T *); \
  template fc_status adaptive_avg_pool2d_forward<T>(const PlanesShape &, const T *, T *);      \
  template fc_status adaptive_avg_pool2d_backward<T>(const PlanesShape &, const T *, T *);
FC_INSTANTIATE_AVGPOOL(float)
FC_INSTANTIATE_AVGPOOL(double)

}  // namespace fc
