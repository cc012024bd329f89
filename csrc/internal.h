// Shared between the operator files: the validated shape, workspaces, thread count,
// the per-algorithm entry points the registry (registry.cpp) lists, and small helpers.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <type_traits>

#include "fastconv/fastconv.h"
#include "hw.h"
#include "validate.h"

namespace fc {

// A validated fc_conv2d_desc with the derived sizes every algorithm needs.
// Field names are the descriptor's but for the input size (in_h, in_w: never w, the weights),
// the stride (sh, sw), padding (ph, pw), dilation (dil_h, dil_w: never dw, the weight gradient)
// and groups (g).
struct ConvShape {
  int64_t n, c, in_h, in_w;  // input [n, c, in_h, in_w]
  int64_t k, kh, kw;         // output channels, kernel size
  int64_t sh, sw, ph, pw;    // stride, padding
  int64_t dil_h, dil_w, g;   // dilation, groups
  int64_t ho, wo;            // output spatial size
  int64_t cg, kg;            // input / output channels per group
  int64_t hw, howo;          // plane sizes
  int64_t kk;                // kh * kw
  int64_t ckk;               // cg * kh * kw: GEMM inner dimension per group
};

// Validates d (sizes, overflow of every buffer size) and fills s (api.cpp).
fc_status make_shape(const fc_conv2d_desc *d, ConvShape *s);

// Threads for this call: 1 under a SmallWorkGuard, else this thread's fc_set_local_num_threads,
// else the process's fc_set_num_threads, else OpenMP's default (clamped to FC_MAX_THREADS).
int num_threads();

// Fork safety (runtime.cpp): in a forked child, the thread that forked holds a dead OpenMP
// pool; run_entry runs an entry point's body on a relay thread there, directly elsewhere.
// Entries call it after validating their arguments and capture the enums by value ([&, t, a]):
// a by-reference capture puts the unchecked enum in memory, and UBSan flags loading it there.
using EntryFn = fc_status (*)(void *);
bool on_stale_pool();
fc_status run_on_relay(EntryFn fn, void *arg);
template <class F>
fc_status run_entry(F &&body) {
  if (!on_stale_pool()) return body();
  using B = std::remove_reference_t<F>;
  return run_on_relay([](void *p) -> fc_status { return (*static_cast<B *>(p))(); }, &body);
}

// Determinism (README, "Determinism"): results are bitwise the same run to run and at every
// thread count. So no partition that decides which terms are summed together, or how a GEMM is
// cut (OpenBLAS's rounding depends on the m, n and k of a call), may follow num_threads():
// partitions follow the shape, aiming at fixed_items() work items (enough for that many
// threads), and threads take the items in any order. Reductions over items add fixed partial
// sums in a fixed order. fixed_items() is a fact of the machine, fixed at load like the cache
// sizes (hw.cpp, work_items): 8, or on more than 8 CPUs the power of two that covers them, up
// to 64; FASTCONV_WORK_ITEMS pins it.
inline int64_t fixed_items() { return hardware().work_items; }

// Caps num_threads() at 1 on this thread while alive when `work` (multiply-adds or bytes) is
// too small to pay for waking a team: tiny calls on a busy machine otherwise wait milliseconds
// on OpenMP barriers.
class SmallWorkGuard {
 public:
  explicit SmallWorkGuard(int64_t work);
  ~SmallWorkGuard();
  SmallWorkGuard(const SmallWorkGuard &) = delete;
  SmallWorkGuard &operator=(const SmallWorkGuard &) = delete;

 private:
  bool prev_;
};

// Output positions o in [0, out) for which o*stride + off lies in [0, size): [*lo, *hi).
inline void valid_range(int64_t off, int64_t stride, int64_t size, int64_t out, int64_t *lo,
                        int64_t *hi) {
  // o*stride + off >= 0  <=>  o >= ceil(-off / stride)
  // (written (-off - 1) / stride + 1: -off + stride - 1 overflows for strides near INT64_MAX)
  int64_t l = off >= 0 ? 0 : (-off - 1) / stride + 1;
  // o*stride + off <= size - 1  <=>  o <= floor((size - 1 - off) / stride)
  int64_t top = size - 1 - off;
  int64_t h = top < 0 ? 0 : top / stride + 1;
  *lo = std::min(l, out);
  *hi = std::max(*lo, std::min(h, out));
}

// Calls f(i, ih, j, off, lo, hi) for every kernel tap (i, j) of output row oh that reads the
// input: input row ih = oh*sh - ph + i*dil_h is in bounds, and output columns [lo, hi) (non-empty)
// are those whose input column ow*sw + off is. The row loops of the direct and depthwise paths.
template <class F>
inline void for_each_tap(const ConvShape &s, int64_t oh, F &&f) {
  for (int64_t i = 0; i < s.kh; ++i) {
    const int64_t ih = oh * s.sh - s.ph + i * s.dil_h;
    if (ih < 0 || ih >= s.in_h) continue;
    for (int64_t j = 0; j < s.kw; ++j) {
      const int64_t off = j * s.dil_w - s.pw;
      int64_t lo, hi;
      valid_range(off, s.sw, s.in_w, s.wo, &lo, &hi);
      if (lo < hi) f(i, ih, j, off, lo, hi);
    }
  }
}

// No NaN or infinity among p[0..n): for the paths that would spread one to outputs it has no
// term in (FFT's transforms, the direct forward's zero taps on column phases).
template <class T>
bool all_finite(const T *p, int64_t n) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) bad |= !(std::fabs(p[i]) <= std::numeric_limits<T>::max());
  return !bad;
}

// The workspace of an inference plan's run (plan.cpp), installed on the thread that runs the
// steps: while it is, Buffers are carved from it as a stack (they are created before and freed
// after each operator's parallel regions, in reverse order), so a plan in steady state makes no
// heap call. A Buffer that does not fit is allocated as usual and counted; the plan then grows
// its scratch to the run's peak for the next run.
struct Scratch {
  char *base = nullptr;
  size_t cap = 0, used = 0;
  size_t live = 0, peak = 0;  // bytes of Buffers alive (in the scratch or not), their maximum
  int64_t misses = 0;         // Buffers that did not fit (heap allocations) in this run
  int blas_threads = 0;       // blas_reserve(n) already checked for n <= this in this run
};
Scratch *&current_scratch();  // this thread's, or nullptr
void *workspace_alloc(size_t bytes);
void workspace_free(void *p, size_t bytes);
// The workspace cache itself (what workspace_alloc uses outside a plan's run): blocks of one
// size come back without page faults, for buffers that outlive a call (prepared filters).
void *cached_alloc(size_t bytes);
void cached_free(void *p, size_t bytes);

// A 64-byte aligned workspace that frees itself; check ok() (allocation failure -> FC_ENOMEM).
template <class T>
class Buffer {
 public:
  explicit Buffer(int64_t count) {
    if (count <= 0) count = 1;
    bytes_ = ((size_t)count * sizeof(T) + 63) / 64 * 64;
    p_ = static_cast<T *>(workspace_alloc(bytes_));
  }
  ~Buffer() { workspace_free(p_, bytes_); }
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  bool ok() const { return p_ != nullptr; }
  T *get() const { return p_; }

 private:
  T *p_ = nullptr;
  size_t bytes_ = 0;
};

// y[n, k, :, :] = bias[k] (or 0): the starting value of every forward output plane.
template <class T>
void fill_bias_plane(T *plane, int64_t count, const T *bias, int64_t k) {
  T v = bias ? bias[k] : T(0);
  for (int64_t i = 0; i < count; ++i) plane[i] = v;
}

// db[k] = sum over n, ho, wo of dy[n, k]; accumulated in double.
template <class T>
void bias_grad(const ConvShape &s, const T *dy, T *db);

// y[n, k] += bias[k] over each plane.
template <class T>
void add_bias(const ConvShape &s, const T *bias, T *y);

// One declaration per algorithm and direction; each file in conv/ defines its three for
// float and double. They assume a validated shape; they return FC_ENOMEM/FC_EUNSUPPORTED.
// The bias gradient is shared (bias_grad), so backward_weight computes dw only.
#define FC_DECLARE_CONV_ALGO(name)                                                                \
  template <class T>                                                                              \
  fc_status conv2d_forward__##name(const ConvShape &s, const T *x, const T *w, const T *b, T *y); \
  template <class T>                                                                              \
  fc_status conv2d_backward_data__##name(const ConvShape &s, const T *dy, const T *w, T *dx);     \
  template <class T>                                                                              \
  fc_status conv2d_backward_weight__##name(const ConvShape &s, const T *dy, const T *x, T *dw);

FC_DECLARE_CONV_ALGO(im2col)
FC_DECLARE_CONV_ALGO(direct)
FC_DECLARE_CONV_ALGO(gemm1x1)
FC_DECLARE_CONV_ALGO(depthwise)
FC_DECLARE_CONV_ALGO(reference)
FC_DECLARE_CONV_ALGO(winograd)
FC_DECLARE_CONV_ALGO(fft)
FC_DECLARE_CONV_ALGO(linear)

#define FC_INSTANTIATE_CONV_ALGO(name, T)                                                          \
  template fc_status conv2d_forward__##name<T>(const ConvShape &, const T *, const T *, const T *, \
                                               T *);                                               \
  template fc_status conv2d_backward_data__##name<T>(const ConvShape &, const T *, const T *,      \
                                                     T *);                                         \
  template fc_status conv2d_backward_weight__##name<T>(const ConvShape &, const T *, const T *,    \
                                                       T *);

// The GEMM drivers of im2col.cpp, shared with gemm1x1.cpp. in_place: the input plane is the
// column matrix (1x1 kernel, stride 1, no padding), so no im2col/col2im copy is made.
inline bool gemm_in_place(const ConvShape &s) {
  return s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0;
}
// Whether im2col's forward runs s on implicit columns (im2col.cpp: no column matrix, for
// reductions over up to 16 input channels): where it applies and beat the GEMM on built columns.
bool implicit_columns_pay(const ConvShape &s);
// ep (or nullptr): the epilogue (epilogue.h) applied to each output tile right after its GEMM.
template <class T>
struct Epilogue;
// packed (or nullptr): a unit-stride 1x1's weights as rows_1x1_pack_filters left them, for the
// forward on the short product's tile (im2col.cpp, rows_product), which then runs whatever
// rows_1x1_pays says.
template <class T>
fc_status gemm_conv_forward(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                            bool in_place, const Epilogue<T> *ep = nullptr,
                            const T *packed = nullptr);
// Whether a unit-stride 1x1 forward runs on the short product's tile (rows_product), and
// its weights packed for it once (rows_1x1_filter_size elements), as a prepared forward keeps
// them.
template <class T>
bool rows_1x1_pays(const ConvShape &s);
template <class T>
int64_t rows_1x1_filter_size(const ConvShape &s);
template <class T>
void rows_1x1_pack_filters(const ConvShape &s, const T *w, T *wp);
// accumulate: dx += the gradient (the GEMMs' beta 1, col2im into dx as it is) instead of dx =.
template <class T>
fc_status gemm_conv_backward_data(const ConvShape &s, const T *dy, const T *w, T *dx, bool in_place,
                                  bool accumulate = false);
template <class T>
fc_status gemm_conv_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw,
                                    bool in_place);
// dx += the data gradient on the GEMM paths (im2col's and gemm1x1's, in place where s allows).
template <class T>
fc_status gemm_backward_data_into(const ConvShape &s, const T *dy, const T *w, T *dx);
// acc[i] += x[i] for i < n, threaded (eltwise.cpp).
template <class T>
void add_inplace(int64_t n, T *acc, const T *x);

// Dilated, unit-stride convolutions as undilated ones over the input's phase planes stacked as
// extra images (conv/phases.cpp): for algorithms that only know dense kernels. phases_apply:
// s is such a convolution; phases_fit: the phase planes' sizes fit int64; phase_shape: the
// undilated convolution the inner algorithm runs.
bool phases_apply(const ConvShape &s);
bool phases_fit(const ConvShape &s);
ConvShape phase_shape(const ConvShape &s);
template <class T>
using PhaseForward = fc_status (*)(const ConvShape &, const T *, const T *, const T *, T *);
template <class T>
using PhaseBackwardData = fc_status (*)(const ConvShape &, const T *, const T *, T *);
template <class T>
using PhaseBackwardWeight = fc_status (*)(const ConvShape &, const T *, const T *, T *);
template <class T>
fc_status phases_forward(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                         PhaseForward<T> inner);
template <class T>
fc_status phases_backward_data(const ConvShape &s, const T *dy, const T *w, T *dx,
                               PhaseBackwardData<T> inner);
template <class T>
fc_status phases_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw,
                                 PhaseBackwardWeight<T> inner);

// Which shapes an algorithm can run (im2col's GEMM dimensions must fit int32).
bool im2col_supports(const ConvShape &s);
bool gemm1x1_supports(const ConvShape &s);
bool depthwise_supports(const ConvShape &s);
bool winograd_supports(const ConvShape &s);
// Whether Winograd's forward (or data gradient) of `tiles` output tiles and kc = k*c filters
// (one group) runs fused, transforming its filters panel by panel instead of all at once
// (conv/winograd.cpp, forward_fused; FASTCONV_WINOGRAD_FUSED=0|1|2 overrides it there), and
// whether it does so by elements (forward_fused_elements: 41-256 tiles under large filters).
bool winograd_fused(int64_t tiles, int64_t kc);
bool winograd_fused_elements(int64_t tiles, int64_t kc);
// The weight gradient's output tile, 2 or 4 (conv/winograd.cpp): F(2x2) on few tiles.
int winograd_weight_tile(const ConvShape &s);
// The Winograd forward with its filters transformed once (inference plans): the elements of
// the transformed filters, the transform (false when a filter is not finite), and the forward
// on them (w is still needed: a non-finite operand redoes the call on the GEMM path).
template <class T>
int64_t winograd_filter_size(const ConvShape &s);
template <class T>
bool winograd_prepare_filters(const ConvShape &s, const T *w, T *u);
// ep (or nullptr): the epilogue, fused into the output transform.
template <class T>
fc_status conv2d_forward__winograd_prepared(const ConvShape &s, const T *x, const T *u,
                                            bool u_finite, const T *w, const T *b, T *y,
                                            const Epilogue<T> *ep);
// The data gradient from the forward's prepared filters (a training step's forward and data
// gradient share one filter transform): where it applies (the forward and the data gradient
// both unfused, with one tile size), and dx (+)= the data gradient from u (FC_EUNSUPPORTED
// where it does not apply; *finite false, dx untouched, for a non-finite operand).
bool winograd_data_gradient_reuses(const ConvShape &s);
// Whether a training step should keep the forward's transformed filters for it (few tiles,
// small filters; elem_bytes: 4 or 8).
bool winograd_reuse_pays(const ConvShape &s, int64_t elem_bytes);
template <class T>
fc_status conv2d_backward_data__winograd_reusing(const ConvShape &s, const T *dy, const T *u, T *dx,
                                                 bool accumulate, bool *finite);
// The blocked direct forward (conv/direct_blocked.cpp), the direct algorithm's forward where it
// runs (direct_blocked_runs): whether it can run s (one group, no dilation, a padded copy near
// the input's size), its packed filters (elements, packing; inference plans pack once), and the
// forward on packed filters wb; ep (or nullptr): the epilogue, applied per run of output rows.
bool direct_blocked_applies(const ConvShape &s);
// Whether it beats im2col on s with its filters packed per call, or with prepared filters packed
// once (the measurements at its definition). The direct forward takes it wherever it runs
// (direct_blocked_runs), so a prepared forward gives the same bits as the plain one.
bool direct_blocked_pays(const ConvShape &s, bool prepared = false);
// A 1x1 on direct's blocked forward, plain or with its filters packed once (a plan).
bool direct_blocked_1x1_pays(const ConvShape &s, bool prepared);
// Whether direct's blocked forward of a 1x1 from c channels to k (unit stride, unpadded, howo
// positions a plane) reads the input's own planes instead of a blocked copy (plane_tile32):
// 32-channel items only (wide_avx512), whole blocks of 8 input channels, planes up to 28x28.
bool direct_blocked_reads_planes(int64_t c, int64_t k, int64_t howo);
// Whether the direct forward runs s in blocks: it applies, 7+ wide rows, and 24+ input channels
// or under 8 in rows (direct_blocked_in_rows: the input's rows with the channels interleaved,
// where a window row has enough taps).
bool direct_blocked_runs(const ConvShape &s);
bool direct_blocked_in_rows(const ConvShape &s);
template <class T>
int64_t direct_blocked_filter_size(const ConvShape &s);
// Returns whether every packed value is finite. flipped: w holds the weights of the layer whose
// data gradient s is ([c][k][kh][kw], one group), packed transposed and flipped.
template <class T>
bool direct_blocked_pack_filters(const ConvShape &s, const T *w, T *wb, bool flipped = false);
// finite: every tap of the filters wb was packed from is finite, so window rows in the padding
// may be left out of the sums (their products all 0). cold: wb was packed long before (a
// plan's prepared filters, likely out of the caches), not just now.
template <class T>
fc_status direct_blocked_forward(const ConvShape &s, const T *x, const T *wb, const T *b, T *y,
                                 const Epilogue<T> *ep, bool finite, bool cold);
// The same forward from the filters as given (w [k][c][kh][kw]), each pair of output blocks
// packed by the thread that runs it (a plain forward: no packed copy of all the filters).
// flipped as for direct_blocked_pack_filters; finite (if given): whether every filter was.
template <class T>
fc_status direct_blocked_forward_packing(const ConvShape &s, const T *x, const T *w, const T *b,
                                         T *y, bool flipped = false, bool *finite = nullptr);
// x [n*c][in_h][in_w] -> u [n*c][sw][in_h + 2ph][wq]: each zero-padded plane split into its sw
// column phases, u[..][b][r][q] = xpad[r][q*sw + b] (conv/direct.cpp; its strided forward's
// input and the blocked weight gradient's). Every thread of a team calls it (an omp for
// without its barrier).
template <class T>
void copy_width_phases(const ConvShape &s, const T *x, int64_t wq, T *u);
// One row of it: dst[q] = xpad[ih + ph][q*sw + bq] for q < wq, from the plane at x (input row ih,
// zeros outside the plane), its zero ends around the run of input columns.
template <class T>
inline void copy_phase_row(const ConvShape &s, const T *x, int64_t bq, int64_t ih, int64_t wq,
                           T *dst) {
  int64_t qa, qb;  // q in [qa, qb): 0 <= q*sw + bq - pw < in_w
  valid_range(bq - s.pw, s.sw, s.in_w, wq, &qa, &qb);
  if (ih < 0 || ih >= s.in_h || qa == qb) {
    for (int64_t q = 0; q < wq; ++q) dst[q] = T(0);
    return;
  }
  const T *src = x + ih * s.in_w + qa * s.sw + bq - s.pw;
  for (int64_t q = 0; q < qa; ++q) dst[q] = T(0);
  if (s.sw == 1) {
    for (int64_t q = 0; q < qb - qa; ++q) dst[qa + q] = src[q];
  } else if (s.sw == 2) {  // (a constant stride: the compiler vectorises the gather)
    for (int64_t q = 0; q < qb - qa; ++q) dst[qa + q] = src[2 * q];
  } else {
    for (int64_t q = 0; q < qb - qa; ++q) dst[qa + q] = src[q * s.sw];
  }
  for (int64_t q = qb; q < wq; ++q) dst[q] = T(0);
}
// The data gradient of a strided convolution (one group, no dilation) as its sh*sw phases'
// unit-stride forwards over dy on the blocked tiles (conv/direct_blocked.cpp): whether every
// phase runs there, and the gradient; finite: whether every weight was (where not, dx is left
// unwritten for the caller's other path).
bool direct_blocked_data_grad_phases_apply(const ConvShape &s);
template <class T>
fc_status direct_blocked_backward_data_phases(const ConvShape &s, const T *dy, const T *w, T *dx,
                                              bool *finite);
// The direct weight gradient on the blocked tiles (one group, no dilation; conv/direct_blocked.cpp)
bool direct_blocked_weight_grad_applies(const ConvShape &s);
// Whether that weight gradient (float) takes its tiles over (channel, tap column) pairs: under
// the table's tile of channels, where the table has blocked_tile_rows_at (AVX-512's).
bool direct_blocked_weight_grad_by_columns(const ConvShape &s);
// Whether direct's weight gradient sums along dy's rows where they lie (a few input channels;
// conv/direct_blocked.cpp, weight_grad_rows).
bool direct_weight_grad_rows_applies(const ConvShape &s);
template <class T>
fc_status direct_blocked_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw);
bool fft_supports(const ConvShape &s);
// Every output position sees every input element (conv/linear.cpp: a plane no larger than the
// kernel's reach), with its GEMM dimensions within int32.
bool linear_supports(const ConvShape &s);
// Why the FFT path cannot run s (a message valid until this thread's next call), or nullptr.
const char *fft_why_not(const ConvShape &s);
// Frequency bins of the FFT path's transform of one plane (power-of-two sizes, real input);
// for shapes fft_supports.
int64_t fft_bins(const ConvShape &s);
// The FFT forward and data gradient on filters transformed once (a training step's forward and
// data gradient share the transform; inference plans keep it): whether a step should keep them
// (fft_reuse_pays), their size in doubles, the transform (false, spec untouched, for a filter
// that is not finite), and the two products on them; *finite false, the output untouched, for
// a non-finite x or dy (the caller then runs the ordinary call, which takes the GEMM path).
bool fft_reuse_pays(const ConvShape &s);
int64_t fft_spectra_size(const ConvShape &s);
template <class T>
bool fft_prepare_filters(const ConvShape &s, const T *w, double *spec);
template <class T>
fc_status conv2d_forward__fft_prepared(const ConvShape &s, const T *x, const double *spec,
                                       const T *b, T *y, bool *finite);
template <class T>
fc_status conv2d_backward_data__fft_prepared(const ConvShape &s, const T *dy, const double *spec,
                                             T *dx, bool accumulate, bool *finite);

}  // namespace fc
