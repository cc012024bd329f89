// Element-wise ops the autograd's layers spend memory bandwidth on: ReLU and its gradient, and
// summing two gradients that reach one tensor (a residual block's input), one pass over the
// arrays on the OpenMP pool (NumPy's take a pass per temporary, on one core).
#include "internal.h"

namespace fc {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per parallel job

template <class T>
void relu_forward(int64_t n, const T *x, T *y) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < n; lo += kChunk) {
    const int64_t hi = std::min(n, lo + kChunk);
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i)
      y[i] = (x[i] > T(0) || x[i] != x[i]) ? x[i] : T(0);  // NaN stays
  }
}

// A rows x cols matrix: f(r, c0, c1) over [c0, c1) of row r, in jobs of kChunk elements taken
// in row order (a job may span rows: a concatenation's slices at batch 1 are one row, at batch
// 32 many short ones).
template <class F>
void for_rows(int64_t rows, int64_t cols, F f) {
  const int64_t total = rows * cols;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < total; lo += kChunk) {
    const int64_t hi = std::min(total, lo + kChunk);
    for (int64_t i = lo; i < hi;) {
      const int64_t r = i / cols, c0 = i % cols, c1 = std::min(cols, c0 + (hi - i));
      f(r, c0, c1);
      i += c1 - c0;
    }
  }
}

// dx = dy where y > 0, else 0, over rows x cols (dy's rows ld apart; y and dx contiguous).
template <class T>
void relu_backward_rows(int64_t rows, int64_t cols, const T *dy, int64_t ld, const T *y, T *dx) {
  for_rows(rows, cols, [=](int64_t r, int64_t c0, int64_t c1) {
    const T *g = dy + r * ld;
    const T *yr = y + r * cols;
    T *d = dx + r * cols;
#pragma omp simd
    for (int64_t c = c0; c < c1; ++c) {
      const T v = g[c];  // loaded unconditionally: a vector select, not a branch (3x faster)
      d[c] = yr[c] > T(0) ? v : T(0);
    }
  });
}

// The contiguous gradient: one row.
template <class T>
void relu_backward(int64_t n, const T *dy, const T *y, T *dx) {
  relu_backward_rows<T>(1, n, dy, n, y, dx);
}

// rows x cols elements of `elem` bytes whose rows lie ld apart: the extent must fit int64 bytes,
// and rows may not overlap (ld below cols).
fc_status check_rows(int64_t elem, int64_t rows, int64_t cols, int64_t ld) {
  if (rows < 0 || cols < 0)
    return fail(FC_EINVAL, "rows and cols must be >= 0, got %lld and %lld", (long long)rows,
                (long long)cols);
  if (ld < cols)
    return fail(FC_EINVAL, "the row stride must be >= cols (%lld), got %lld", (long long)cols,
                (long long)ld);
  int64_t span;
  if (rows && cols &&
      (__builtin_mul_overflow(rows - 1, ld, &span) || __builtin_add_overflow(span, cols, &span) ||
       __builtin_mul_overflow(span, elem, &span)))
    return fail(FC_EOVERFLOW, "%lld rows %lld elements apart overflow int64 bytes", (long long)rows,
                (long long)ld);
  return FC_OK;
}

fc_status check(int64_t n, fc_dtype t) {
  clear_error();
  if (n < 0) return fail(FC_EINVAL, "n must be >= 0, got %lld", (long long)n);
  if (fc_status st = check_dtype(t)) return st;
  // n elements of the dtype must be addressable: n*8 of n = 2^61 wraps around
  const int64_t elem = t == FC_F32 ? 4 : 8;
  if (n > INT64_MAX / elem)
    return fail(FC_EOVERFLOW, "n = %lld elements of %lld bytes overflow int64", (long long)n,
                (long long)elem);
  return FC_OK;
}

}  // namespace

template <class T>
void add_inplace(int64_t n, T *acc, const T *x) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < n; lo += kChunk) {
    const int64_t hi = std::min(n, lo + kChunk);
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) acc[i] += x[i];
  }
}
template void add_inplace<float>(int64_t, float *, const float *);
template void add_inplace<double>(int64_t, double *, const double *);

}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_relu_forward(fc_dtype t, int64_t n, const void *x, void *y) {
  if (fc_status st = check(n, t)) return st;
  if (n && (!x || !y)) return fail(FC_EINVAL, "x and y must not be NULL");
  SmallWorkGuard small(n * 4);
  return run_entry([&, t] {
    if (t == FC_F32) relu_forward(n, (const float *)x, (float *)y);
    else relu_forward(n, (const double *)x, (double *)y);
    return FC_OK;
  });
}

fc_status fc_relu_backward(fc_dtype t, int64_t n, const void *dy, const void *y, void *dx) {
  if (fc_status st = check(n, t)) return st;
  if (n && (!dy || !y || !dx)) return fail(FC_EINVAL, "dy, y and dx must not be NULL");
  SmallWorkGuard small(n * 4);
  return run_entry([&, t] {
    if (t == FC_F32) relu_backward(n, (const float *)dy, (const float *)y, (float *)dx);
    else relu_backward(n, (const double *)dy, (const double *)y, (double *)dx);
    return FC_OK;
  });
}

fc_status fc_add_inplace(fc_dtype t, int64_t n, void *acc, const void *x) {
  if (fc_status st = check(n, t)) return st;
  if (n && (!acc || !x)) return fail(FC_EINVAL, "acc and x must not be NULL");
  SmallWorkGuard small(n * 2);
  return run_entry([&, t] {
    if (t == FC_F32) add_inplace(n, (float *)acc, (const float *)x);
    else add_inplace(n, (double *)acc, (const double *)x);
    return FC_OK;
  });
}

fc_status fc_relu_backward_rows(fc_dtype t, int64_t rows, int64_t cols, const void *dy,
                                int64_t dy_stride, const void *y, void *dx) {
  clear_error();
  if (fc_status st = check_dtype(t)) return st;
  if (fc_status st = check_rows(t == FC_F32 ? 4 : 8, rows, cols, dy_stride)) return st;
  if (rows && cols && (!dy || !y || !dx)) return fail(FC_EINVAL, "dy, y and dx must not be NULL");
  SmallWorkGuard small(rows * cols * 4);
  return run_entry([&, t] {
    if (t == FC_F32)
      relu_backward_rows(rows, cols, (const float *)dy, dy_stride, (const float *)y, (float *)dx);
    else
      relu_backward_rows(rows, cols, (const double *)dy, dy_stride, (const double *)y,
                         (double *)dx);
    return FC_OK;
  });
}

}  // extern "C"
