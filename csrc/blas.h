// The one place that names OpenBLAS. scipy-openblas32 prefixes every symbol with "scipy_"
// (BLAS_SYMBOL_PREFIX, set by CMake); CBLAS_FUNC adds it, after NumPy's macro of that name.
#pragma once
#include <cstdint>

#include "fastconv/fastconv.h"

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

// OpenBLAS runs single-threaded: our OpenMP loops partition the work (README, Threads).
void blas_init_single_threaded();

// OpenBLAS maps a 32 MiB buffer (its x86-64 BUFFER_SIZE, plus a page) the first time a GEMM runs
// while every buffer it holds is in use, and when that mmap fails it prints "Memory allocation
// still failed after 10 retries" and calls exit(1) from whichever thread it was on. So before
// GEMMs run on `threads` threads at once, after the caller's own workspaces are allocated:
// FC_ENOMEM unless `threads` such buffers can be mapped now. (Buffers OpenBLAS already holds
// cannot be seen from outside it, so they are not counted: within threads x 32 MiB of the limit
// a call reports FC_ENOMEM that might have fit. It never takes the process down.)
fc_status blas_reserve(int threads);

// The most threads that may run OpenBLAS calls at once: its build's MAX_THREADS (read from
// openblas_get_config(), 64 in scipy-openblas32), which sizes its table of 2 x MAX_THREADS
// buffers; one more concurrent caller makes it exit(1) ("too many memory regions").
int blas_max_threads();

// Threads for an operator whose parallel region calls gemm().
int gemm_threads();

// Row-major GEMM, C = alpha * op(A) * op(B) + beta * C, with op(A) [m, k] and op(B) [k, n].
// Row-major is handed straight to cblas (CblasRowMajor); cblas does the column-major swap.
// Dimensions must fit blasint (int32); callers check with gemm_dims_fit().
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  CBLAS_FUNC(cblas_sgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                          tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
                          a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                 int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
  CBLAS_FUNC(cblas_dgemm)(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                          tb ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha,
                          a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

inline bool gemm_dims_fit(int64_t v) { return v >= 0 && v <= INT32_MAX; }

}  // namespace fc
