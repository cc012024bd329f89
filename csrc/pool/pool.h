// Shared by the pooling operator files: validated shapes, the operator entry points that
// pool_api.cpp dispatches to, and the thread count for a job size.
#pragma once
#include <cstdint>

#include "internal.h"

namespace fc {

// A validated fc_pool2d_desc: planes = n*c, each in_h x in_w in and ho x wo out.
struct PoolShape {
  int64_t planes, in_h, in_w, ho, wo;
  int64_t kh, kw, sh, sw, ph, pw, dil_h, dil_w;
  int64_t hw, howo;  // plane sizes
};

// A validated fc_planes2d_desc: planes = n*c, full planes in_h x in_w, small planes ho x wo.
struct PlanesShape {
  int64_t planes, in_h, in_w, ho, wo;
  int64_t hw, howo;
};

// Small jobs run on the calling thread: starting the team costs more than they take.
inline int pool_threads(int64_t work) { return work < (int64_t(1) << 15) ? 1 : num_threads(); }

// The range [lo, hi) of rows i < k of a window starting at `start` with step `step` whose
// positions start + i*step lie in [0, size).
inline void window_rows(int64_t start, int64_t step, int64_t k, int64_t size, int64_t *lo,
                        int64_t *hi) {
  *lo = start >= 0 ? 0 : (-start + step - 1) / step;
  *hi = start > size - 1 ? 0 : std::min(k, (size - 1 - start) / step + 1);
}

// Small padded planes: a row of GoogLeNet's 3x3/1 pools on 14x14 planes is two scalar edge
// windows, one micro-kernel call and a masked vector tail for a dozen outputs. Those pools copy
// each plane into a bordered one first (-inf for max, 0 for avg: a border tap changes no
// window's result or its bits) that holds every window, so every window is interior, and at
// unit stride all rows of a plane are one flat run of the micro-kernel (use_padded_plane in
// pool_api.cpp has the measurements).
struct PaddedPlane {
  int64_t hp, wp;  // the bordered plane, input element (ih, iw) at (ih + ph, iw + pw)
  int64_t size;    // elements per thread's copy (with slack for the vector tails)
};
bool use_padded_plane(const PoolShape &s, bool switches, PaddedPlane *pp);

// One plane into its bordered copy; the border itself is written once per buffer (it never
// changes: every plane writes the same interior positions).
template <class T>
inline void copy_into_border(const PoolShape &s, const PaddedPlane &pp, const T *plane, T *buf) {
  for (int64_t ih = 0; ih < s.in_h; ++ih) {
    const T *__restrict src = plane + ih * s.in_w;
    T *__restrict dst = buf + (ih + s.ph) * pp.wp + s.pw;
    for (int64_t iw = 0; iw < s.in_w; ++iw) dst[iw] = src[iw];
  }
}

// maxpool.cpp. The switch entries check every switch first; they return FC_EINVAL (with the
// first bad switch in the message) before writing anything.
template <class T>
fc_status max_pool2d_forward(const PoolShape &s, const T *x, T *y, int64_t *idx);
template <class T>
fc_status max_pool2d_backward(const PlanesShape &s, const T *dy, const int64_t *idx, T *dx);
template <class T>
fc_status max_unpool2d_forward(const PlanesShape &s, const T *x, const int64_t *idx, T *y);
template <class T>
fc_status max_unpool2d_backward(const PlanesShape &s, const T *dy, const int64_t *idx, T *dx);

// avgpool.cpp. divisor: 0 = none (use the window size), else the override.
template <class T>
fc_status avg_pool2d_forward(const PoolShape &s, bool count_include_pad, int64_t divisor,
                             const T *x, T *y);
template <class T>
fc_status avg_pool2d_backward(const PoolShape &s, bool count_include_pad, int64_t divisor,
                              const T *dy, T *dx);
template <class T>
fc_status adaptive_avg_pool2d_forward(const PlanesShape &s, const T *x, T *y);
template <class T>
fc_status adaptive_avg_pool2d_backward(const PlanesShape &s, const T *dy, T *dx);

}  // namespace fc
