// Dilated convolutions as undilated ones on phase planes, for Winograd (which only knows dense
// 3x3 kernels).
//
// With stride 1 and dilation d, output row oh = d*r + a reads padded input rows d*(r+i) + a:
// only rows of the same phase a. So the d_h*d_w output phases are independent undilated
// convolutions of the same kernel over the input's phase planes
//   u[a, b][s, q] = x[d_h*s + a - pad_h, d_w*q + b - pad_w]   (0 outside x),
// which are stacked as extra images: [n, c, h, w] -> [n*d_h*d_w, c, R+kh-1, Q+kw-1] with
// R = ceil(ho/d_h), Q = ceil(wo/d_w) and no padding. The weight gradient is the sum over all of
// those images, which the inner algorithm computes anyway.
#include <omp.h>

#include "../internal.h"

namespace fc {

bool phases_apply(const ConvShape &s) {
  return s.sh == 1 && s.sw == 1 && (s.dil_h > 1 || s.dil_w > 1);
}

namespace {
// The phase images' output size: R = ceil(ho/d_h) rows, Q = ceil(wo/d_w) columns.
void phase_out(const ConvShape &s, int64_t *r, int64_t *q) {
  *r = s.ho / s.dil_h + (s.ho % s.dil_h != 0);
  *q = s.wo / s.dil_w + (s.wo % s.dil_w != 0);
}
}  // namespace

bool phases_fit(const ConvShape &s) {
  int64_t r, q, v;
  phase_out(s, &r, &q);
  return !__builtin_mul_overflow(s.n, s.dil_h, &v) && !__builtin_mul_overflow(v, s.dil_w, &v) &&
         !__builtin_mul_overflow(v, s.c, &v) && !__builtin_mul_overflow(v, s.k + 1, &v) &&
         !__builtin_mul_overflow(v, r + s.kh - 1, &v) &&
         !__builtin_mul_overflow(v, q + s.kw - 1, &v) && !__builtin_mul_overflow(v, 8, &v);
}

ConvShape phase_shape(const ConvShape &s) {
  ConvShape t = s;
  int64_t r, q;
  phase_out(s, &r, &q);
  t.n = s.n * s.dil_h * s.dil_w;
  t.in_h = r + s.kh - 1;
  t.in_w = q + s.kw - 1;
  t.ph = t.pw = 0;
  t.dil_h = t.dil_w = 1;
  t.ho = r;
  t.wo = q;
  t.hw = t.in_h * t.in_w;
  t.howo = r * q;
  return t;
}

namespace {

// x [n, c, in_h, in_w] -> phase images [n, dil_h, dil_w, c, t.in_h, t.in_w] (zeros where the
// input is padding).
template <class T>
void gather_input(const ConvShape &s, const ConvShape &t, const T *x, T *u) {
#pragma omp parallel for num_threads(num_threads()) schedule(static) collapse(2)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c)
      for (int64_t a = 0; a < s.dil_h; ++a)
        for (int64_t b = 0; b < s.dil_w; ++b) {
          T *dst = u + (((n * s.dil_h + a) * s.dil_w + b) * s.c + c) * t.hw;
          const T *src = x + (n * s.c + c) * s.hw;
          for (int64_t r = 0; r < t.in_h; ++r) {
            const int64_t ih = s.dil_h * r + a - s.ph;
            T *row = dst + r * t.in_w;
            if (ih < 0 || ih >= s.in_h) {
              std::fill(row, row + t.in_w, T(0));
              continue;
            }
            for (int64_t q = 0; q < t.in_w; ++q) {
              const int64_t iw = s.dil_w * q + b - s.pw;
              row[q] = iw >= 0 && iw < s.in_w ? src[ih * s.in_w + iw] : T(0);
            }
          }
        }
}

// y [n, k, ho, wo] <-> phase outputs [n, dil_h, dil_w, k, t.ho, t.wo]. to_phases: gather
// (zeros where a phase row or column lies past the output); else scatter back.
template <class T>
void move_output(const ConvShape &s, const ConvShape &t, T *y, T *v, bool to_phases) {
#pragma omp parallel for num_threads(num_threads()) schedule(static) collapse(2)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t a = 0; a < s.dil_h; ++a)
        for (int64_t b = 0; b < s.dil_w; ++b) {
          T *ph = v + (((n * s.dil_h + a) * s.dil_w + b) * s.k + k) * t.howo;
          T *yk = y + (n * s.k + k) * s.howo;
          for (int64_t r = 0; r < t.ho; ++r)
            for (int64_t q = 0; q < t.wo; ++q) {
              const int64_t oh = s.dil_h * r + a, ow = s.dil_w * q + b;
              const bool in = oh < s.ho && ow < s.wo;
              if (to_phases) ph[r * t.wo + q] = in ? yk[oh * s.wo + ow] : T(0);
              else if (in) yk[oh * s.wo + ow] = ph[r * t.wo + q];
            }
        }
}

// The phase images' input gradient back onto dx [n, c, in_h, in_w]: every input element is one
// phase image's (a = (ih + ph) % dil_h, row (ih + ph) / dil_h; likewise columns), or was never
// read.
template <class T>
void scatter_input(const ConvShape &s, const ConvShape &t, const T *u, T *dx) {
#pragma omp parallel for num_threads(num_threads()) schedule(static) collapse(2)
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t c = 0; c < s.c; ++c) {
      T *dst = dx + (n * s.c + c) * s.hw;
      for (int64_t ih = 0; ih < s.in_h; ++ih) {
        const int64_t a = (ih + s.ph) % s.dil_h, r = (ih + s.ph) / s.dil_h;
        for (int64_t iw = 0; iw < s.in_w; ++iw) {
          const int64_t b = (iw + s.pw) % s.dil_w, q = (iw + s.pw) / s.dil_w;
          dst[ih * s.in_w + iw] =
              r < t.in_h && q < t.in_w
                  ? u[(((n * s.dil_h + a) * s.dil_w + b) * s.c + c) * t.hw + r * t.in_w + q]
                  : T(0);
        }
      }
    }
}

// Rows (or columns) of a 1-D convolution at stride 1 that have no term: output o with no tap
// i inside the input (o - pad + i*dil outside [0, size) for every i), an input position that no
// output reads, a tap that never meets the input. The inner algorithm sees the phase planes'
// zeros as data, so its rounding can leave noise there; these are set exactly (bias or 0), as
// every algorithm's result is, so no element without terms ever differs from the reference.
bool out_has_terms(int64_t o, int64_t pad, int64_t dil, int64_t k, int64_t size) {
  for (int64_t i = 0; i < k; ++i) {
    const int64_t p = o - pad + i * dil;
    if (p >= 0 && p < size) return true;
  }
  return false;
}
bool in_has_terms(int64_t p, int64_t pad, int64_t dil, int64_t k, int64_t out) {
  for (int64_t i = 0; i < k; ++i) {
    const int64_t o = p + pad - i * dil;
    if (o >= 0 && o < out) return true;
  }
  return false;
}
bool tap_has_terms(int64_t i, int64_t pad, int64_t dil, int64_t size, int64_t out) {
  int64_t lo, hi;
  valid_range(i * dil - pad, 1, size, out, &lo, &hi);
  return lo < hi;
}

// Sets plane elements [rows, cols] (row-major, `planes` of them) whose row or column fails
// `keep` to v(plane).
template <class T, class KeepRow, class KeepCol, class Value>
void set_termless(T *p, int64_t planes, int64_t rows, int64_t cols, KeepRow keep_row,
                  KeepCol keep_col, Value v) {
  bool any = false;
  for (int64_t r = 0; r < rows && !any; ++r) any = !keep_row(r);
  for (int64_t c = 0; c < cols && !any; ++c) any = !keep_col(c);
  if (!any) return;
  for (int64_t q = 0; q < planes; ++q) {
    T *pl = p + q * rows * cols;
    const T val = v(q);
    for (int64_t r = 0; r < rows; ++r) {
      const bool row = keep_row(r);
      for (int64_t c = 0; c < cols; ++c)
        if (!row || !keep_col(c)) pl[r * cols + c] = val;
    }
  }
}

}  // namespace

template <class T>
fc_status phases_forward(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                         PhaseForward<T> inner) {
  const ConvShape t = phase_shape(s);
  Buffer<T> u(t.n * t.c * t.hw), v(t.n * t.k * t.howo);
  if (!u.ok() || !v.ok())
    return fail(FC_ENOMEM, "dilated phases: cannot allocate the phase planes");
  gather_input(s, t, x, u.get());
  if (fc_status st = inner(t, u.get(), w, b, v.get())) return st;
  move_output(s, t, y, v.get(), false);
  set_termless(y, s.n * s.k, s.ho, s.wo,
               [&](int64_t o) { return out_has_terms(o, s.ph, s.dil_h, s.kh, s.in_h); },
               [&](int64_t o) { return out_has_terms(o, s.pw, s.dil_w, s.kw, s.in_w); },
               [&](int64_t q) { return b ? b[q % s.k] : T(0); });
  return FC_OK;
}

template <class T>
fc_status phases_backward_data(const ConvShape &s, const T *dy, const T *w, T *dx,
                               PhaseBackwardData<T> inner) {
  const ConvShape t = phase_shape(s);
  Buffer<T> u(t.n * t.c * t.hw), v(t.n * t.k * t.howo);
  if (!u.ok() || !v.ok())
    return fail(FC_ENOMEM, "dilated phases: cannot allocate the phase planes");
  move_output(s, t, const_cast<T *>(dy), v.get(), true);  // reads dy only
  if (fc_status st = inner(t, v.get(), w, u.get())) return st;
  scatter_input(s, t, u.get(), dx);
  set_termless(dx, s.n * s.c, s.in_h, s.in_w,
               [&](int64_t p) { return in_has_terms(p, s.ph, s.dil_h, s.kh, s.ho); },
               [&](int64_t p) { return in_has_terms(p, s.pw, s.dil_w, s.kw, s.wo); },
               [](int64_t) { return T(0); });
  return FC_OK;
}

template <class T>
fc_status phases_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw,
                                 PhaseBackwardWeight<T> inner) {
  const ConvShape t = phase_shape(s);
  Buffer<T> u(t.n * t.c * t.hw), v(t.n * t.k * t.howo);
  if (!u.ok() || !v.ok())
    return fail(FC_ENOMEM, "dilated phases: cannot allocate the phase planes");
  gather_input(s, t, x, u.get());
  move_output(s, t, const_cast<T *>(dy), v.get(), true);  // reads dy only
  if (fc_status st = inner(t, v.get(), u.get(), dw)) return st;
  set_termless(dw, s.k * s.cg, s.kh, s.kw,
               [&](int64_t i) { return tap_has_terms(i, s.ph, s.dil_h, s.in_h, s.ho); },
               [&](int64_t j) { return tap_has_terms(j, s.pw, s.dil_w, s.in_w, s.wo); },
               [](int64_t) { return T(0); });
  return FC_OK;
}

#define FC_INSTANTIATE_PHASES(T)                                                                \
  template fc_status phases_forward<T>(const ConvShape &, const T *, const T *, const T *, T *, \
                                       PhaseForward<T>);                                        \
  template fc_status phases_backward_data<T>(const ConvShape &, const T *, const T *, T *,      \
                                             PhaseBackwardData<T>);                             \
  template fc_status phases_backward_weight<T>(const ConvShape &, const T *, const T *, T *,    \
                                               PhaseBackwardWeight<T>);
FC_INSTANTIATE_PHASES(float)
FC_INSTANTIATE_PHASES(double)

}  // namespace fc
