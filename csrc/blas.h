// The one place that names OpenBLAS. scipy-openblas32 prefixes every symbol with "scipy_"
// (BLAS_SYMBOL_PREFIX, set by CMake); CBLAS_FUNC adds it, after NumPy's macro of that name.
#pragma once
#include <cstdint>

#ifndef BLAS_SYMBOL_PREFIX
#define BLAS_SYMBOL_PREFIX
#endif
#define FC_BLAS_CAT2_(a, b) a##b
#define FC_BLAS_CAT_(a, b) FC_BLAS_CAT2_(a, b)
#define CBLAS_FUNC(name) FC_BLAS_CAT_(BLAS_SYMBOL_PREFIX, name)

extern "C" {
#include <cblas.h>
}

namespace fc {

// OpenBLAS runs single-threaded: our OpenMP loops partition the work (DESIGN.md, Threads).
void blas_init_single_threaded();

// Row-major GEMM, C = alpha * op(A) * op(B) + beta * C, with op(A) [m, k] and op(B) [k, n].
// Row-major is handed straight to cblas (CblasRowMajor); cblas does the column-major swap.
// Dimensions must fit blasint (int32); callers check with gemm_dims_fit().
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  CBLAS_FUNC(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                          (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb,
                          beta, c, (blasint)ldc);
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                 int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
  CBLAS_FUNC(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                          (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb,
                          beta, c, (blasint)ldc);
}

inline bool gemm_dims_fit(int64_t v) { return v >= 0 && v <= INT32_MAX; }

}  // namespace fc
