// What an inference plan fuses into an operator's output stage: after the bias, y += a residual
// (laid out as y) and an activation (fc_act), applied to a block of the output while it is
// still in cache (the GEMM paths: each tile right after its GEMM), else in one pass after.
#pragma once
#include <cmath>
#include <cstdint>

#include "fastconv/fastconv.h"

namespace fc {

template <class T>
struct Epilogue {
  const T *res = nullptr;  // added to y (same layout), or none
  int act = FC_ACT_NONE;
  T alpha = T(0);  // leaky ReLU's slope, ELU's alpha
  bool none() const { return !res && act == FC_ACT_NONE; }
};

template <class T>
inline T act1(T v, int act, T alpha) {
  switch (act) {
    case FC_ACT_RELU: return (v > T(0) || v != v) ? v : T(0);  // NaN stays NaN, as PyTorch
    case FC_ACT_SIGMOID: return T(1) / (T(1) + std::exp(-v));
    case FC_ACT_TANH: return std::tanh(v);
    case FC_ACT_LEAKY_RELU: return v > T(0) ? v : v * alpha;
    case FC_ACT_ELU: return v > T(0) ? v : alpha * std::expm1(v);
    default: return v;
  }
}

// p[i] = act(p[i]) for i < n; the switch outside the loop so that ReLU vectorises.
template <class T>
inline void act_run(T *p, int64_t n, int act, T alpha) {
  if (act == FC_ACT_NONE) return;
  if (act == FC_ACT_RELU) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) p[i] = (p[i] > T(0) || p[i] != p[i]) ? p[i] : T(0);
    return;
  }
  for (int64_t i = 0; i < n; ++i) p[i] = act1(p[i], act, alpha);
}

// The epilogue on rows x cols of y starting at element off, rows ld apart (the residual at
// the same offsets).
template <class T>
inline void epilogue_block(const Epilogue<T> &ep, T *y, int64_t off, int64_t rows, int64_t cols,
                           int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    T *yr = y + off + r * ld;
    if (ep.res) {
      const T *rr = ep.res + off + r * ld;
#pragma omp simd
      for (int64_t i = 0; i < cols; ++i) yr[i] += rr[i];
    }
    act_run(yr, cols, ep.act, ep.alpha);
  }
}

}  // namespace fc
