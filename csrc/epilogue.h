// What an inference plan fuses into an operator's output stage: after the bias, y += a residual
// (laid out as y) and an activation (fc_act), applied to a block of the output while it is
// still in cache (the GEMM paths: each tile right after its GEMM), else in one pass after.
// The passes run in the ISA's vectors (cpu/ukernels.h, epilogue_rows).
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/ukernels.h"
#include "fastconv/fastconv.h"

namespace fc {

template <class T>
struct Epilogue {
  const T *res = nullptr;  // added to y (same layout), or none
  int act = FC_ACT_NONE;
  T alpha = T(0);  // leaky ReLU's slope, ELU's alpha
  bool none() const { return !res && act == FC_ACT_NONE; }
};

// (internal linkage: each per-ISA file, cpu/ukernels_impl.inc, compiles its own copy, so that
// the linker never hands a baseline caller one compiled for AVX-512)
namespace {
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
}  // namespace

// p[i] = act(p[i]) for i < n.
template <class T>
inline void act_run(T *p, int64_t n, int act, T alpha) {
  if (act != FC_ACT_NONE) ukernels<T>().epilogue_rows(p, n, 1, n, nullptr, nullptr, act, alpha);
}

// The epilogue on rows x cols of y starting at element off, rows ld apart (the residual at
// the same offsets), after the bias where given (bias[r] for row r).
template <class T>
inline void epilogue_block(const Epilogue<T> &ep, T *y, int64_t off, int64_t rows, int64_t cols,
                           int64_t ld, const T *bias = nullptr) {
  ukernels<T>().epilogue_rows(y + off, ld, rows, cols, bias, ep.res ? ep.res + off : nullptr,
                              ep.act, ep.alpha);
}

}  // namespace fc
