/*
 * fastconv — the public C ABI.
 *
 * Plain C: every entry takes a descriptor, a dtype, raw NCHW C-contiguous buffers and returns an
 * fc_status. Entries validate their arguments (sizes, strides, overflow of any buffer size) and
 * never crash or write outside the buffers the descriptor implies. Inputs are never modified.
 * On failure, fc_last_error() returns a message (per thread) naming the argument and the sizes.
 *
 * Threads: kernels run on one OpenMP pool of fc_get_num_threads() threads (default: OpenMP's
 * default, which honours OMP_NUM_THREADS). OpenBLAS is kept single-threaded inside it.
 * Entries are safe to call from several threads at once.
 */
#ifndef FASTCONV_FASTCONV_H
#define FASTCONV_FASTCONV_H

#include <stdint.h>

#if defined(_WIN32)
#  define FC_API __declspec(dllimport)
#elif defined(FASTCONV_BUILDING)
#  define FC_API __attribute__((visibility("default")))
#else
#  define FC_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FASTCONV_VERSION_MAJOR 0
#define FASTCONV_VERSION_MINOR 1
#define FASTCONV_VERSION_PATCH 0

typedef enum {
  FC_OK = 0,
  FC_EINVAL = 1,       /* an argument is invalid (bad size, null pointer, bad enum value) */
  FC_ENOMEM = 2,       /* a workspace could not be allocated */
  FC_EUNSUPPORTED = 3, /* the requested algorithm cannot handle this descriptor */
  FC_EOVERFLOW = 4     /* a buffer size does not fit in int64 (or a GEMM dimension in int32) */
} fc_status;

typedef enum { FC_F32 = 0, FC_F64 = 1 } fc_dtype;

typedef enum {
  FC_ALGO_AUTO = 0,      /* pick by shape (see fc_conv2d_choose) */
  FC_ALGO_IM2COL = 1,    /* im2col/col2im + OpenBLAS GEMM; any descriptor */
  FC_ALGO_DIRECT = 2,    /* direct loops over SIMD row micro-kernels, no workspace; any descriptor */
  FC_ALGO_GEMM1X1 = 3,   /* kh == kw == 1: GEMM on the input as it lies (gather first if strided/padded) */
  FC_ALGO_DEPTHWISE = 4, /* groups == c (k = m*c for any multiplier m) */
  FC_ALGO_REFERENCE = 5, /* naive loops accumulating in double: the twin every fast path is tested against */
  FC_ALGO_COUNT_ = 6
} fc_algo;

/* A 2-D convolution. Input x is [n, c, h, w]; weight is [k, c/groups, kh, kw]; bias is [k];
 * output y is [n, k, ho, wo] with ho = (h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h + 1 (likewise wo).
 * Padding is symmetric per dimension (pad_h rows above and below). */
typedef struct {
  int64_t n, c, h, w;   /* input, NCHW */
  int64_t k, kh, kw;    /* output channels; kernel height and width */
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} fc_conv2d_desc;

/* Validates d and writes the output height and width. */
FC_API fc_status fc_conv2d_output_size(const fc_conv2d_desc *d, int64_t *ho, int64_t *wo);

/* FC_OK when algorithm a can run d (a != FC_ALGO_AUTO), FC_EUNSUPPORTED when it cannot,
 * FC_EINVAL/FC_EOVERFLOW when d itself is invalid. */
FC_API fc_status fc_conv2d_supports(const fc_conv2d_desc *d, fc_algo a);

/* The algorithm FC_ALGO_AUTO picks for d (writes it to *a). */
FC_API fc_status fc_conv2d_choose(const fc_conv2d_desc *d, fc_algo *a);

/* y = conv(x, w) + bias. bias_or_null may be NULL. */
FC_API fc_status fc_conv2d_forward(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                   const void *x, const void *w, const void *bias_or_null, void *y);

/* dx = gradient of sum(dy * conv(x, w)) with respect to x. dx is overwritten. */
FC_API fc_status fc_conv2d_backward_data(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                         const void *dy, const void *w, void *dx);

/* dw (and dbias, if not NULL) = gradients with respect to the weight and the bias; overwritten.
 * dw may be NULL when only the bias gradient is wanted. */
FC_API fc_status fc_conv2d_backward_weight(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                           const void *dy, const void *x, void *dw,
                                           void *dbias_or_null);

/* A short static description of a status ("invalid argument", ...). */
FC_API const char *fc_status_string(fc_status s);

/* The message of the last failing call on this thread (empty string if none). */
FC_API const char *fc_last_error(void);

/* Threads used by every kernel. n < 1 restores the default. */
FC_API void fc_set_num_threads(int n);
FC_API int fc_get_num_threads(void);

/* The micro-kernel instruction set chosen at load time: "avx512", "avx2" or "generic".
 * The environment variable FASTCONV_ISA (generic|avx2|avx512) forces a lower one. */
FC_API const char *fc_isa(void);

/* Name of an algorithm ("im2col", ...), or NULL for an invalid value. */
FC_API const char *fc_algo_name(fc_algo a);

/* ---- pooling ---- (declarations added by csrc/pool/) */

#ifdef __cplusplus
}
#endif

#endif /* FASTCONV_FASTCONV_H */
