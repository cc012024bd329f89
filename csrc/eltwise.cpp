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

template <class T>
void relu_backward(int64_t n, const T *dy, const T *y, T *dx) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < n; lo += kChunk) {
    const int64_t hi = std::min(n, lo + kChunk);
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) {
      const T g = dy[i];  // loaded unconditionally: a vector select, not a branch (3x faster)
      dx[i] = y[i] > T(0) ? g : T(0);
    }
  }
}

template <class T>
void add_inplace(int64_t n, T *acc, const T *x) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t lo = 0; lo < n; lo += kChunk) {
    const int64_t hi = std::min(n, lo + kChunk);
#pragma omp simd
    for (int64_t i = lo; i < hi; ++i) acc[i] += x[i];
  }
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

}  // extern "C"
