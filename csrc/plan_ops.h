// The inference executor's own steps (plan_ops.cpp); plan.cpp validates sizes before calling.
#pragma once
#include <cstdint>

#include "fastconv/fastconv.h"

namespace fc {

// y[i] = act(a[i] + b[i]) (b may be null: y = act(a)); y may be a or b. With y == a it is an
// operator's epilogue (a residual add and an activation) in place.
template <class T>
void eltwise(const T *a, const T *b, T *y, int64_t count, int act, double alpha);

// y[n, c, i] = act(x[n, c, i] * scale[n*scale_n_stride + c] + shift[c] + res[n, c, i]) (scale,
// shift and res may be null: a scale of 1 adds the shift alone; res laid out as y; y may be x);
// scale_n_stride is c for a per-image scale (squeeze-excitation) and 0 for a constant one.
template <class T>
void channel_scale(const T *x, const T *scale, int64_t scale_n_stride, const T *shift, const T *res,
                   T *y, int64_t n, int64_t c, int64_t hw, int act, double alpha);

// Local response normalisation across channels, PyTorch's window (size/2 before, (size-1)/2 after).
template <class T>
void lrn(const T *x, T *y, int64_t n, int64_t c, int64_t hw, int64_t size, double alpha,
         double beta, double k);

// y[n, c_offset + c, :] = x[n, c, :]: one branch into its channel slice of a concatenation.
template <class T>
void copy_channels(const T *x, T *y, int64_t n, int64_t c, int64_t hw, int64_t c_total,
                   int64_t c_offset);

// y [m, nout] = act(x [m, k] x w[nout, k]^T + b) (b may be null).
template <class T>
fc_status linear(const T *x, const T *w, const T *b, T *y, int64_t m, int64_t k, int64_t nout,
                 int act, double alpha);

}  // namespace fc
