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

/* FASTCONV_VERSION_MAJOR, _MINOR, _PATCH and _STRING, generated from pyproject.toml's version
 * at build time and installed beside this header. */
#include "fastconv/version.h"

#if defined(_WIN32)
#define FC_API __declspec(dllimport)
#elif defined(FASTCONV_BUILDING)
#define FC_API __attribute__((visibility("default")))
#else
#define FC_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

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
  FC_ALGO_DIRECT = 2,    /* direct loops over SIMD register tiles, no column matrix (unit-stride
                            rows work on a padded copy of x); any descriptor */
  FC_ALGO_GEMM1X1 = 3,   /* kh == kw == 1: GEMM on the input as it lies (gather first if
                            strided/padded) */
  FC_ALGO_DEPTHWISE = 4, /* groups == c (k = m*c for any multiplier m) */
  FC_ALGO_REFERENCE = 5, /* naive loops accumulating in double: the twin every fast path is
                            tested against */
  FC_ALGO_WINOGRAD = 6,  /* 3x3, stride 1 (dilated ones on phase planes): Winograd minimal
                            filtering */
  FC_ALGO_FFT = 7,       /* stride 1, dilation 1: FFT convolution (large kernels) */
  FC_ALGO_LINEAR = 8,    /* every output position sees every input element (a 3x3 "same" on a
                            1x1 or 2x2 plane): one GEMM over the batch, as a linear layer */
  FC_ALGO_COUNT_ = 9
} fc_algo;

/* A 2-D convolution. Input x is [n, c, h, w]; weight is [k, c/groups, kh, kw]; bias is [k];
 * output y is [n, k, ho, wo] with ho = (h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h + 1
 * (likewise wo). Padding is symmetric per dimension (pad_h rows above and below). */
typedef struct {
  int64_t n, c, h, w; /* input, NCHW */
  int64_t k, kh, kw;  /* output channels; kernel height and width */
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} fc_conv2d_desc;

/* Validates d and writes the output height and width. */
FC_API fc_status fc_conv2d_output_size(const fc_conv2d_desc *d, int64_t *ho, int64_t *wo);

/* FC_OK when algorithm a can run d (a != FC_ALGO_AUTO), FC_EUNSUPPORTED when it cannot,
 * FC_EINVAL/FC_EOVERFLOW when d itself is invalid. */
FC_API fc_status fc_conv2d_supports(const fc_conv2d_desc *d, fc_algo a);

typedef enum {
  FC_DIR_FORWARD = 0,
  FC_DIR_BACKWARD_DATA = 1,
  FC_DIR_BACKWARD_WEIGHT = 2
} fc_direction;

/* The algorithm FC_ALGO_AUTO picks for d's forward (writes it to *a). */
FC_API fc_status fc_conv2d_choose(const fc_conv2d_desc *d, fc_algo *a);

/* The algorithm FC_ALGO_AUTO picks for one direction of d: each entry chooses for its own
 * direction (the data gradient of a convolution may run best on another algorithm). */
FC_API fc_status fc_conv2d_choose_for(const fc_conv2d_desc *d, fc_direction dir, fc_algo *a);

/* The algorithm for d's forward when its filters are prepared once (fc_conv2d_prepare, as
 * inference plans do): fc_conv2d_choose's, except where an algorithm that repacks the filters
 * on every call pays once it no longer does (direct's 8-channel blocks on narrow planes). */
FC_API fc_status fc_conv2d_choose_prepared(const fc_conv2d_desc *d, fc_algo *a);

/* y = conv(x, w) + bias. bias_or_null may be NULL. */
FC_API fc_status fc_conv2d_forward(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *x,
                                   const void *w, const void *bias_or_null, void *y);

/* dx = gradient of sum(dy * conv(x, w)) with respect to x. dx is overwritten. */
FC_API fc_status fc_conv2d_backward_data(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                         const void *dy, const void *w, void *dx);

/* dx += gradient of sum(dy * conv(x, w)) with respect to x: the data gradient added into what dx
 * holds (a second gradient reaching the same tensor, as a residual block's input gets), without
 * a temporary of dx's size where the algorithm's GEMMs can add into dx themselves (im2col and
 * gemm1x1). dx must not overlap dy or w. */
FC_API fc_status fc_conv2d_backward_data_into(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                              const void *dy, const void *w, void *dx);

/* dw (and dbias, if not NULL) = gradients with respect to the weight and the bias; overwritten.
 * dw may be NULL when only the bias gradient is wanted. */
FC_API fc_status fc_conv2d_backward_weight(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                           const void *dy, const void *x, void *dw,
                                           void *dbias_or_null);

/* A convolution's filters prepared once for many forwards with concrete algorithm a (what
 * inference plans do at compile time): Winograd keeps them in its transform domain, so a call
 * skips the filter transform, FFT keeps their frequency bins where fc_conv2d_prepared_reuse
 * says so, and direct keeps them packed in 8-channel blocks where its blocked forward runs; the
 * other algorithms run fc_conv2d_forward on w. w is copied, or
 * with borrow != 0 used in place (the caller keeps it alive and unchanged while p exists).
 * Results equal fc_conv2d_forward's with the same algorithm, bit for bit. */
typedef struct fc_conv2d_prepared fc_conv2d_prepared;
FC_API fc_status fc_conv2d_prepare(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *w,
                                   int borrow, fc_conv2d_prepared **out);
/* y = act(conv(x, w) + bias + residual) (act an fc_act; residual_or_null laid out as y, or
 * NULL): the epilogue runs on each output tile while it is in cache where the algorithm allows
 * (im2col, gemm1x1), else in one pass after. */
FC_API fc_status fc_conv2d_forward_prepared(const fc_conv2d_prepared *p, const void *x,
                                            const void *bias_or_null, const void *residual_or_null,
                                            int act, double alpha, void *y);
/* dx = (or with accumulate != 0, dx +=) the data gradient of p's convolution, as
 * fc_conv2d_backward_data(_into) with p's algorithm and weights. A training step's forward and
 * data gradient share one filter transform this way: where fc_conv2d_prepared_reuse says so,
 * Winograd's data gradient runs on the forward's prepared filters (dy and dx mirrored, the
 * filters read transposed, none transformed again), and FFT's on the forward's filter bins;
 * elsewhere it runs on p's weights. Winograd's result is within its accuracy of
 * fc_conv2d_backward_data's, not bitwise equal to it (the tiles and the filter transform
 * differ); FFT's is bitwise equal; both are the same on every call. dx must not overlap dy. */
FC_API fc_status fc_conv2d_backward_data_prepared(const fc_conv2d_prepared *p, const void *dy,
                                                  int accumulate, void *dx);
/* *reuses = 1 where a training step should prepare d's filters for algorithm a so that its
 * data gradient (fc_conv2d_backward_data_prepared) reuses them, else 0: Winograd, where the
 * forward and the data gradient both run unfused with one tile size, on few tiles (there the
 * filter transform is a large part of the data gradient), and where the transformed filters,
 * kept from the forward until the backward, stay small (they are 4x the weights); FFT, where
 * the batch fills the products' vector lanes as well as the filters do (4 or 8 images with
 * AVX2) and the filters' bins stay within 16 MiB (complex doubles, 20-170x the weights). */
FC_API fc_status fc_conv2d_prepared_reuse(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                          int *reuses);
FC_API void fc_conv2d_prepared_destroy(fc_conv2d_prepared *p);

/* A short static description of a status ("invalid argument", ...). */
FC_API const char *fc_status_string(fc_status s);

/* The message of the last failing call on this thread (empty string if none). */
FC_API const char *fc_last_error(void);

/* Threads used by every kernel, for the whole process. n < 1 restores the default (OpenMP's:
 * OMP_NUM_THREADS or the core count); n > FC_MAX_THREADS is clamped, as is the default. */
#define FC_MAX_THREADS 1024
FC_API void fc_set_num_threads(int n);
/* Threads for calls made on the calling thread only, overriding fc_set_num_threads there
 * (n < 1 removes the override). Returns the previous override (0 if none), for restoring. */
FC_API int fc_set_local_num_threads(int n);
/* The thread count a call made now on this thread would use. */
FC_API int fc_get_num_threads(void);

/* ---- workspace cache ----
 * Workspaces of 1 MiB and more are kept after a call, up to a limit (256 MiB; the environment
 * variable FASTCONV_WORKSPACE_CACHE_MB at load sets another, 0 turns the cache off), and handed
 * to the next call that needs the same size, which then pays no page faults. The oldest are
 * given back first. */
/* Bytes held now (may be NULL) and the limit (may be NULL). */
FC_API void fc_workspace_cache_info(int64_t *bytes, int64_t *limit);
/* Gives every held workspace back to the system; returns the bytes it gave back. */
FC_API int64_t fc_workspace_cache_release(void);

/* ---- measured algorithm choice (autotuning) ----
 * With autotuning on, FC_ALGO_AUTO times the algorithms that can run a call (pruned by a cost
 * estimate, a bounded number of runs each) the first time it meets the call's key: descriptor,
 * direction, dtype, thread count and ISA. The fastest is remembered for the process and used
 * from then on. The timing runs write the call's own outputs; the winner runs last. Off by
 * default: the heuristic's choice is the same on every run, a measured one may differ between
 * processes (timing noise), and so may the rounding of results. FASTCONV_AUTOTUNE=on|1|persist
 * at load turns it on. The table's text form (one line per key) moves it between processes. */
typedef enum { FC_AUTOTUNE_OFF = 0, FC_AUTOTUNE_ON = 1 } fc_autotune_mode;
FC_API fc_status fc_set_autotune(int mode);
FC_API int fc_get_autotune(void);
/* Forgets every measured choice. */
FC_API void fc_autotune_clear(void);
/* Entries in the table. */
FC_API int64_t fc_autotune_size(void);
/* Writes the table as text (NUL-terminated) into buf; *needed = the bytes it takes. With
 * cap == 0 only *needed is set; a smaller nonzero cap is FC_EINVAL. */
FC_API fc_status fc_autotune_export(char *buf, int64_t cap, int64_t *needed);
/* Adds the entries of text (as written by fc_autotune_export; '#' lines are comments) to the
 * table; all or none: a malformed line is FC_EINVAL naming it. *entries = lines taken. */
FC_API fc_status fc_autotune_import(const char *text, int64_t *entries);
/* The measured choice for a call, FC_EINVAL (and *a untouched) if none is in the table. */
FC_API fc_status fc_conv2d_tuned(const fc_conv2d_desc *d, fc_direction dir, fc_dtype t, fc_algo *a);

/* The machine as the library sees it, described once at load: what its kernel tables and
 * cache blocking follow. Strings are NUL-terminated; isa and best_isa point to static storage. */
typedef struct {
  const char *isa;      /* the micro-kernel set in use, as fc_isa(): "avx512", "avx2", "generic" */
  const char *best_isa; /* the best set the CPU supports, before FASTCONV_ISA lowered it */
  int64_t l1d_bytes;    /* L1 data cache per core */
  int64_t l2_bytes;     /* L2 per core */
  int64_t l3_bytes;     /* L3 as the OS reports it: the chip's total, or one CCX's (AMD) */
  int32_t cores;        /* logical CPUs this process may run on (its affinity mask at load) */
  char model[64];       /* CPU brand string, e.g. "AMD EPYC 7763 64-Core Processor" ("" if none) */
  char vendor[16];      /* "GenuineIntel", "AuthenticAMD", ... ("" off x86) */
  int32_t full_avx512;  /* 1: 512-bit multiply-adds issue as often as 256-bit ones (measured at
                           load on AVX-512 CPUs; FASTCONV_FULL_AVX512=0|1 overrides), else 0 */
  double
      fma512_ratio; /* the measurement: 512-bit over 256-bit multiply-add flop rate (0: none, or pinned) */
} fc_hw_info;
/* Fills *out. Cache sizes come from Linux's sysfs (/sys/devices/system/cpu/cpu0/cache), else
 * from CPUID's cache leaves, else 32 KiB / 1 MiB / 32 MiB. FC_EINVAL if out is NULL. */
FC_API fc_status fc_hardware(fc_hw_info *out);

/* The work items each parallel partition aims at, fixed at load: 8, or on more logical CPUs
 * (fc_hw_info.cores) the power of two that covers them, at most 64; FASTCONV_WORK_ITEMS=8|16|32|64
 * pins it. Partitions follow the shape and this number, never the thread count, so results are
 * bitwise the same at every thread count (README, "Determinism"). */
FC_API int32_t fc_work_items(void);

/* The round trip of one cache line between two CPUs, in ns (*ns), averaged over `seconds`
 * (0 < seconds <= 10): the calling thread, pinned to cpu_a for the call (its affinity is put
 * back), and a thread of the call's own pinned to cpu_b. Two CPUs that share an L3 answer in
 * tens of ns, two that do not in hundreds (on a VM: where the host has put the vCPUs now).
 * FC_EINVAL for a NULL ns, seconds out of range, equal CPUs or a CPU this thread may not run
 * on; FC_EUNSUPPORTED where threads cannot be pinned (not Linux) or cpu_b never answers. */
FC_API fc_status fc_core_round_trip(int32_t cpu_a, int32_t cpu_b, double seconds, double *ns);

/* The micro-kernel instruction set chosen at load time: "avx512", "avx2" or "generic".
 * The environment variable FASTCONV_ISA (generic|avx2|avx512) forces a lower one. */
FC_API const char *fc_isa(void);

/* Name of an algorithm ("im2col", ...; "auto" for FC_ALGO_AUTO), or NULL for an invalid value. */
FC_API const char *fc_algo_name(fc_algo a);

/* ---- the algorithm registry ----
 * The library's own list of algorithms, which may be longer than the fc_algo this header was
 * compiled with: the values 0 .. fc_algo_count()-1 are valid (0 is FC_ALGO_AUTO), and
 * fc_algo_name, fc_algo_flags and fc_algo_description describe each. */

/* The number of fc_algo values this library knows, FC_ALGO_AUTO included. */
FC_API int fc_algo_count(void);

/* What an algorithm is, as bits (0 for FC_ALGO_AUTO and invalid values): */
#define FC_ALGO_FLAG_FORWARD 0x1u         /* has a forward entry point */
#define FC_ALGO_FLAG_BACKWARD_DATA 0x2u   /* has a data-gradient entry point */
#define FC_ALGO_FLAG_BACKWARD_WEIGHT 0x4u /* has a weight-gradient entry point */
/* runs dilated unit-stride convolutions as undilated ones on the input's phase planes */
#define FC_ALGO_FLAG_PHASE_PLANES 0x8u
/* an input holding NaN or infinity makes the call run on im2col (direct where GEMM dimensions
 * do not fit int32), so non-finite values reach the outputs a plain convolution puts them in */
#define FC_ALGO_FLAG_NONFINITE_FALLBACK 0x10u
FC_API unsigned fc_algo_flags(fc_algo a);

/* A one-line description of an algorithm (what it computes, what it can run), or NULL for an
 * invalid value. */
FC_API const char *fc_algo_description(fc_algo a);

/* An estimate of one call of direction dir of d with algorithm a (FC_ALGO_AUTO: the one
 * fc_conv2d_choose_for picks), in units of one multiply-add at a well-shaped float32 GEMM's
 * rate: positive and finite, cheap to compute, meant to rank algorithms roughly (e.g. to prune
 * the candidates a tuner measures), not to predict times. FC_EUNSUPPORTED when a cannot run d
 * (fc_last_error says why), FC_EINVAL/FC_EOVERFLOW for an invalid d, dir or a, or a NULL cost. */
FC_API fc_status fc_conv2d_cost(const fc_conv2d_desc *d, fc_algo a, fc_direction dir, double *cost);

/* ---- pooling ---- (declarations added by csrc/pool/) */

/* A 2-D pooling window over n*c independent planes. Input x is [n, c, h, w]; output y is
 * [n, c, ho, wo] with, per dimension (PyTorch's rule),
 *   ho = floor_or_ceil((h + 2*pad_h - dil_h*(kh-1) - 1) / stride_h) + 1,
 * and in ceil mode one less when the last window would start at or beyond h + pad_h.
 * Valid descriptors (PyTorch's checks): every size >= 1, pad >= 0, pad_h <= kh/2 and
 * pad_h <= (dil_h*(kh-1)+1)/2 (likewise w), ceil_mode 0 or 1, ho >= 1 and wo >= 1.
 * Average pooling requires dil_h == dil_w == 1. */
typedef struct {
  int64_t n, c, h, w; /* input, NCHW */
  int64_t kh, kw;     /* window height and width */
  int64_t stride_h, stride_w, pad_h, pad_w, dil_h, dil_w;
  int64_t ceil_mode; /* 0: floor the output size, 1: ceil it */
} fc_pool2d_desc;

/* n*c planes seen at two resolutions: full planes of h x w and small planes of ho x wo.
 * Adaptive pooling maps full -> small; the switch entries (max-pool backward, unpooling) move
 * values between a small plane and the full plane its switches index (0 <= s < h*w). */
typedef struct {
  int64_t n, c, h, w; /* full-resolution planes */
  int64_t ho, wo;     /* small planes */
} fc_planes2d_desc;

/* Validates d and writes the output height and width (also checks that no buffer size
 * overflows int64). */
FC_API fc_status fc_pool2d_output_size(const fc_pool2d_desc *d, int64_t *ho, int64_t *wo);

/* Max pooling: y[n, c, i, j] = max of x[n, c] over the window of output (i, j), ignoring the
 * padding. switches_or_null, if not NULL, is [n, c, ho, wo] and receives the flat index ih*w + iw
 * of the winner within its plane: the first maximum in row-major scan order; a NaN in the window
 * wins (the last NaN, as PyTorch). A window holding no input element (possible only with
 * dilation) gives -infinity and PyTorch's index of its first in-padding position, which may lie
 * outside the plane. */
FC_API fc_status fc_max_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, const void *x, void *y,
                                       int64_t *switches_or_null);

/* Max-pool backward through switches: dx = 0, then dx[n, c].flat[s] += dy[n, c, i, j] for
 * s = switches[n, c, i, j] (accumulating where windows overlap). dy and switches are
 * [n, c, ho, wo], dx is [n, c, h, w] and overwritten. Every switch is checked (0 <= s < h*w)
 * before anything is written: one outside its plane gives FC_EINVAL and dx is left untouched. */
FC_API fc_status fc_max_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                        const int64_t *switches, void *dx);

/* Max unpooling (the deconvnet's "unpool" on max-pool switches): y = 0, then
 * y[n, c].flat[s] = x[n, c, i, j] for s = switches[n, c, i, j], in row-major order (the last
 * write wins on duplicates, as PyTorch). x and switches are [n, c, ho, wo]; y is [n, c, h, w]
 * and overwritten. Switches are checked as in fc_max_pool2d_backward before any write. */
FC_API fc_status fc_max_unpool2d_forward(const fc_planes2d_desc *d, fc_dtype t, const void *x,
                                         const int64_t *switches, void *y);

/* Gradient of max unpooling with respect to x:
 * dx[n, c, i, j] = dy[n, c].flat[switches[n, c, i, j]].
 * dy is [n, c, h, w]; switches and dx are [n, c, ho, wo]. Switches are checked first. */
FC_API fc_status fc_max_unpool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                          const int64_t *switches, void *dx);

/* Average pooling (d->dil_h == d->dil_w == 1): y = sum of the window's input elements / divisor.
 * The divisor is divisor_override when it is nonzero; else the window's size clipped to the
 * padded input (count_include_pad != 0) or to the input (count_include_pad == 0), as PyTorch.
 * A window with no input element gives 0. Any nonzero divisor_override divides (negative ones
 * too, as PyTorch). */
FC_API fc_status fc_avg_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                       int64_t divisor_override, const void *x, void *y);

/* Gradient of fc_avg_pool2d_forward: dx[window of (i, j)] += dy[i, j] / divisor. dy is
 * [n, c, ho, wo]; dx is [n, c, h, w] and overwritten. */
FC_API fc_status fc_avg_pool2d_backward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                        int64_t divisor_override, const void *dy, void *dx);

/* Adaptive average pooling, full [n, c, h, w] -> small [n, c, ho, wo] (any ho, wo >= 1; 1x1 is
 * global average pooling): output (i, j) averages rows [floor(i*h/ho), ceil((i+1)*h/ho)) and
 * columns [floor(j*w/wo), ceil((j+1)*w/wo)), summed in double. */
FC_API fc_status fc_adaptive_avg_pool2d_forward(const fc_planes2d_desc *d, fc_dtype t,
                                                const void *x, void *y);

/* Gradient of fc_adaptive_avg_pool2d_forward: dy is [n, c, ho, wo]; dx is [n, c, h, w] and
 * overwritten. */
FC_API fc_status fc_adaptive_avg_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t,
                                                 const void *dy, void *dx);

/* ---- element-wise ---- */

/* y[i] = max(x[i], 0) for i < n (NaN stays NaN, as PyTorch); y may be x. */
FC_API fc_status fc_relu_forward(fc_dtype t, int64_t n, const void *x, void *y);

/* Gradient of ReLU from its output: dx[i] = y[i] > 0 ? dy[i] : 0 for i < n; dx may be dy. */
FC_API fc_status fc_relu_backward(fc_dtype t, int64_t n, const void *dy, const void *y, void *dx);

/* acc[i] += x[i] for i < n (one rounding per element, as NumPy's and PyTorch's add); x may be
 * acc. */
FC_API fc_status fc_add_inplace(fc_dtype t, int64_t n, void *acc, const void *x);

/* fc_relu_backward over rows x cols elements where dy's rows start dy_stride elements apart
 * (y and dx contiguous, [rows][cols]): the gradient a concatenation hands each of its inputs is
 * such a slice of its own gradient. dy_stride >= cols. */
FC_API fc_status fc_relu_backward_rows(fc_dtype t, int64_t rows, int64_t cols, const void *dy,
                                       int64_t dy_stride, const void *y, void *dx);

/* ---- batch normalisation (training and eval) ----
 * x is (n, c, hw): channel ch of image i is the plane x + (i*c + ch)*hw. Per channel,
 *   y = (x - mean) * invstd * weight + bias (+ residual), then act (FC_ACT_NONE or FC_ACT_RELU).
 * batch_stats != 0: mean, invstd = 1/sqrt(var + eps) and (if var_or_null) the biased var are
 * the batch's, computed here (double accumulators, one fixed order per channel: deterministic
 * at any thread count) and written to mean, var_or_null, invstd ([c] each). batch_stats == 0:
 * mean and invstd are inputs (the running statistics); var_or_null and eps are unused.
 * Weight, bias and residual (laid out as x) may be NULL. Running statistics are the caller's
 * (fc_batch_norm_update_running). */
FC_API fc_status fc_batch_norm_forward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                                       const void *weight_or_null, const void *bias_or_null,
                                       const void *residual_or_null, int act, int batch_stats,
                                       double eps, void *mean, void *var_or_null, void *invstd,
                                       void *y);

/* The running statistics after a training batch of count values per channel, as PyTorch
 * updates them: per channel ch < c, in double and stored once in the dtype,
 *   running_mean = momentum * mean + (1 - momentum) * running_mean
 *   running_var = momentum * var * count / (count - 1) + (1 - momentum) * running_var
 * with mean and var the batch's (var biased, as fc_batch_norm_forward writes it: the update uses
 * the unbiased one). Either running array may be NULL. count 0 (an empty batch) leaves them as
 * they are; count 1 is an error (the unbiased variance of one value). */
FC_API fc_status fc_batch_norm_update_running(fc_dtype t, int64_t c, int64_t count, double momentum,
                                              const void *mean, const void *var,
                                              void *running_mean_or_null,
                                              void *running_var_or_null);

/* The gradients of fc_batch_norm_forward, given its dy, x, mean and invstd. y_or_null: the
 * forward's output when it fused a ReLU (dy is masked by y > 0), else NULL. batch_stats as in the
 * forward (0: the statistics were constants). Each output may be NULL: dx; dres (the residual's
 * gradient, dy through the ReLU; needs y); dweight and dbias ([c]). */
FC_API fc_status fc_batch_norm_backward(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                        const void *dy, const void *x, const void *y_or_null,
                                        const void *mean, const void *invstd,
                                        const void *weight_or_null, int batch_stats,
                                        void *dx_or_null, void *dres_or_null, void *dweight_or_null,
                                        void *dbias_or_null);

/* The same with the ReLU fused (act FC_ACT_RELU), also writing its mask for the backward:
 * plane (i, ch) of the n x c planes has mb = (hw + 7) / 8 bytes at mask + (i * c + ch) * mb, and
 * bit j % 8 of its byte j / 8 is set where y's element j is > 0 (the bits past hw are 0). The
 * backward reads the mask (1/32 of a float32 y's bytes) instead of y; otherwise the same results,
 * bit for bit. */
FC_API fc_status fc_batch_norm_forward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                              const void *x, const void *weight_or_null,
                                              const void *bias_or_null,
                                              const void *residual_or_null, int batch_stats,
                                              double eps, void *mean, void *var_or_null,
                                              void *invstd, void *y, uint8_t *mask);
FC_API fc_status fc_batch_norm_backward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                               const void *dy, const void *x, const uint8_t *mask,
                                               const void *mean, const void *invstd,
                                               const void *weight_or_null, int batch_stats,
                                               void *dx_or_null, void *dres_or_null,
                                               void *dweight_or_null, void *dbias_or_null);

/* ---- softmax cross-entropy ----
 * x, q: (outer, c, inner), classes on the middle axis; q the target distribution (one-hot for
 * class indices, label smoothing mixed in). Forward: loss[p] = -sum_k q_k log_softmax(x)_k and
 * lse[p] = log sum_k exp(x_k) for each of the outer*inner positions p (double accumulators).
 * Backward: dx = dloss[p] * (sum_k q_k * softmax(x) - q), from x and the forward's lse. */
FC_API fc_status fc_softmax_cross_entropy_forward(fc_dtype t, int64_t outer, int64_t c,
                                                  int64_t inner, const void *x, const void *q,
                                                  void *loss, void *lse);
FC_API fc_status fc_softmax_cross_entropy_backward(fc_dtype t, int64_t outer, int64_t c,
                                                   int64_t inner, const void *x, const void *q,
                                                   const void *lse, const void *dloss, void *dx);

/* ---- optimizer updates: many tensors in one threaded pass ----
 * Each tensor: param (updated in place), grad, up to three state arrays of n elements, and
 * the per-tensor scalars Adam needs. PyTorch's update formulas and rounding (float64 updates
 * are bitwise torch.optim's). */
typedef struct fc_optim_tensor {
  void *param;
  const void *grad;
  void *state[3]; /* SGD: momentum buffer; Adam: exp_avg, exp_avg_sq, max_exp_avg_sq */
  int64_t n;
  double step_size;  /* Adam: lr / (1 - beta1^step) */
  double bias2_sqrt; /* Adam: sqrt(1 - beta2^step) */
  int init;          /* SGD: the momentum buffer is new (set to the step's direction) */
} fc_optim_tensor;

typedef struct fc_sgd_args {
  double lr, momentum, dampening, weight_decay;
  int nesterov, maximize;
} fc_sgd_args;

typedef struct fc_adam_args {
  double lr, beta1, beta2, eps, weight_decay;
  int amsgrad, maximize, decoupled; /* decoupled: AdamW's weight decay */
} fc_adam_args;

FC_API fc_status fc_sgd_step(fc_dtype t, int64_t count, const fc_optim_tensor *tensors,
                             const fc_sgd_args *args);
FC_API fc_status fc_adam_step(fc_dtype t, int64_t count, const fc_optim_tensor *tensors,
                              const fc_adam_args *args);

/* ---- inference plans: a network's forward as a list of steps run in one call ----
 *
 * A plan holds its constants (weights, already in the form its steps use: BatchNorm folded,
 * ...), a table of values (where each intermediate array lives) and its steps. Values live in
 * the caller's input, the caller's output, or the plan's arena at an offset the caller assigned
 * (fastconv.inference plans the offsets by liveness). Every step is validated when added: each
 * value it reads or writes must hold the elements its shapes imply, so a plan never reads or
 * writes outside its buffers. fc_plan_run runs every step in order on the OpenMP pool. */
typedef struct fc_plan fc_plan;

typedef enum { FC_VALUE_INPUT = 0, FC_VALUE_OUTPUT = 1, FC_VALUE_ARENA = 2 } fc_value_kind;

typedef enum {
  FC_PLAN_CONV = 0, /* out = act(conv(in0, weight) + bias + in1) (in1: residual or -1) */
  /* the pools: out[n,c,:] = act(pool(in0)[n,c,:] + bias[c]) over `pool` (bias: -1 for none) */
  FC_PLAN_MAX_POOL = 1,
  FC_PLAN_AVG_POOL = 2, /* count_include_pad as given */
  /* out = act(adaptive_avg_pool(in0)): dims n,c,h,w -> extra[0] x extra[1] */
  FC_PLAN_ADAPTIVE_AVG = 3,
  /* out [m, nout] = act(in0 [m, k] x weight[nout, k]^T + bias): dims m,k,nout */
  FC_PLAN_LINEAR = 4,
  /* out = act(in0 + in1) (or act(in0) when in1 == -1); dims[0] elements */
  FC_PLAN_ELTWISE = 5,
  /* out[n,c,:] = act(in0[n,c,:] * in1[n,c] + in2[n,c,:]) (in2: a residual laid out as out, or
   * -1); dims n,c,h*w: a squeeze-and-excitation scale */
  FC_PLAN_CHANNEL_MUL = 6,
  /* out[n,c,:] = act(in0[n,c,:] * weight[c] + bias[c]); dims n,c,h*w */
  FC_PLAN_CHANNEL_AFFINE = 7,
  /* out = in0 / (k + alpha/size * window sum of in0^2)^beta; dims n,c,h*w */
  FC_PLAN_LRN = 8,
  /* out[n, extra[1] + c, :] = in0[n, c, :]; dims n,c,h*w, extra[0] = out's c */
  FC_PLAN_COPY_CHANNELS = 9,
  FC_PLAN_OP_COUNT_ = 10
} fc_plan_op;

typedef enum {
  FC_ACT_NONE = 0,
  FC_ACT_RELU = 1,
  FC_ACT_SIGMOID = 2,
  FC_ACT_TANH = 3,
  FC_ACT_LEAKY_RELU = 4, /* slope alpha */
  FC_ACT_ELU = 5,        /* alpha */
  FC_ACT_COUNT_ = 6
} fc_act;

typedef struct {
  int32_t op;                /* fc_plan_op */
  int32_t act;               /* fc_act, applied last */
  double alpha;              /* the activation's parameter */
  int64_t in0, in1, out;     /* value ids (in1 = -1: none) */
  int64_t weight, bias;      /* constant ids (-1: none) */
  fc_conv2d_desc conv;       /* FC_PLAN_CONV */
  int32_t algo;              /* FC_PLAN_CONV: an fc_algo other than FC_ALGO_AUTO */
  int32_t count_include_pad; /* FC_PLAN_AVG_POOL */
  fc_pool2d_desc pool;       /* the pools */
  int64_t dims[4];           /* the other ops' sizes (see fc_plan_op) */
  int64_t extra[2];
  double lrn[3]; /* FC_PLAN_LRN: alpha, beta, k; extra[0] = size */
  /* a third value id, FC_PLAN_CHANNEL_MUL's residual (-1: none; set it to -1 for every other
   * op: a zeroed step names value 0 and is refused) */
  int64_t in2;
} fc_plan_step;

/* A plan for dtype t over an input of in_elems and an output of out_elems elements, with an
 * arena of arena_elems (allocated now: FC_ENOMEM if it cannot be). */
FC_API fc_status fc_plan_create(fc_dtype t, int64_t in_elems, int64_t out_elems,
                                int64_t arena_elems, fc_plan **out);
FC_API void fc_plan_destroy(fc_plan *p);
/* Copies elems elements of data into the plan; *id names the constant in steps. The _view
 * form copies nothing: the caller keeps data alive and unchanged while the plan exists. */
FC_API fc_status fc_plan_add_constant(fc_plan *p, const void *data, int64_t elems, int64_t *id);
FC_API fc_status fc_plan_add_constant_view(fc_plan *p, const void *data, int64_t elems,
                                           int64_t *id);
/* A value of elems elements at offset (in elements) into its buffer (fc_value_kind). */
FC_API fc_status fc_plan_add_value(fc_plan *p, int32_t kind, int64_t offset, int64_t elems,
                                   int64_t *id);
/* Validates s against the plan's values and constants and appends it. */
FC_API fc_status fc_plan_add_step(fc_plan *p, const fc_plan_step *s);
/* Runs every step: x holds in_elems elements, y out_elems. seconds_or_null, if not NULL,
 * receives each step's wall time (the profile of fastconv.inference's summary). Not for
 * concurrent calls on one plan (its arena is shared). */
FC_API fc_status fc_plan_run(fc_plan *p, const void *x, void *y, double *seconds_or_null);
FC_API int64_t fc_plan_step_count(const fc_plan *p);
/* The plan's workspace for its algorithms (grown after a run that needed more) and the heap
 * allocations its last run made for workspaces: 0 in steady state. */
FC_API fc_status fc_plan_workspace(const fc_plan *p, int64_t *scratch_bytes, int64_t *allocations);

#ifdef __cplusplus
}
#endif

#endif /* FASTCONV_FASTCONV_H */
