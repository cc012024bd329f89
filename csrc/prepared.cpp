// Filters prepared once for many forwards of one convolution (inference plans): Winograd keeps
// its filters in the transform domain, so a call skips the transform (for VGG's 512-channel
// layers 36 x 512 x 512 elements written and read again per call), FFT keeps its filters' bins
// where they stay small (fft_reuse_pays), and direct's blocked forward keeps them packed in
// 8-channel blocks; the other algorithms keep the weights as given and run the ordinary
// forward. The forward takes the plan's epilogue (epilogue.h): im2col and gemm1x1 apply it to
// each output tile right after its GEMM, the blocked direct forward to each output row,
// Winograd in its output transform, the others in one pass after the call.
#include <memory>

#include "blas.h"
#include "epilogue.h"
#include "internal.h"
#include "plan_ops.h"

using Owned = std::unique_ptr<char, void (*)(void *)>;  // a std::free'd block

// A block from the workspace cache (fc::cached_alloc), given back to it: Winograd's filters,
// prepared again at every step of a training loop (fastconv.functional's Conv2dPrepared), come
// back without page faults (a 38 MB block mapped afresh per call took 9k faults, 1.3x the
// forward's time).
struct CachedBlock {
  char *p = nullptr;
  size_t bytes = 0;
  CachedBlock() = default;
  CachedBlock(const CachedBlock &) = delete;
  CachedBlock &operator=(const CachedBlock &) = delete;
  ~CachedBlock() { fc::cached_free(p, bytes); }
  bool reset(int64_t count) {  // 64-byte aligned (mapped blocks are page aligned)
    bytes = (size_t)(count + 63) / 64 * 64;
    p = (char *)fc::cached_alloc(bytes);
    return p != nullptr;
  }
  void release() {
    fc::cached_free(p, bytes);
    p = nullptr;
    bytes = 0;
  }
  char *get() const { return p; }
  explicit operator bool() const { return p != nullptr; }
};

struct fc_conv2d_prepared {
  fc_conv2d_desc d;
  fc_dtype t;
  fc_algo a;
  fc::ConvShape s;
  Owned w_owned{nullptr, std::free};
  const void *w = nullptr;  // w_owned.get(), or the caller's (borrowed)
  CachedBlock u;            // Winograd's U, or none
  bool u_finite = true;
  CachedBlock spec;  // FFT's filter bins (complex doubles), or none (also where not finite)
  Owned blocked{nullptr, std::free};  // direct's blocked filters, or none
  bool blocked_finite = true;         // (their every tap finite)
  Owned rows{nullptr, std::free};     // a 1x1's weights packed for the short product's tile
};

namespace {

char *alloc_bytes(int64_t bytes) {
  return (char *)std::aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64));
}

// dst = `count` elements of T (64-byte aligned), or FC_ENOMEM naming `what`.
template <class T>
fc_status alloc_filters(Owned &dst, int64_t count, const char *what) {
  dst.reset(alloc_bytes(count * (int64_t)sizeof(T)));
  if (!dst)
    return fc::fail(FC_ENOMEM, "cannot allocate %lld bytes of %s",
                    (long long)(count * (int64_t)sizeof(T)), what);
  return FC_OK;
}

template <class T>
fc_status prepare_winograd(fc_conv2d_prepared *p) {
  const int64_t n = fc::winograd_filter_size<T>(p->s);
  if (!p->u.reset(n * (int64_t)sizeof(T)))
    return fc::fail(FC_ENOMEM, "cannot allocate %lld bytes of transformed filters",
                    (long long)(n * (int64_t)sizeof(T)));
  p->u_finite = fc::winograd_prepare_filters(p->s, (const T *)p->w, (T *)p->u.get());
  return FC_OK;
}

template <class T>
fc_status prepare_fft(fc_conv2d_prepared *p) {
  const int64_t bytes = fc::fft_spectra_size(p->s) * (int64_t)sizeof(double);
  if (!p->spec.reset(bytes))
    return fc::fail(FC_ENOMEM, "cannot allocate %lld bytes of transformed filters",
                    (long long)bytes);
  if (!fc::fft_prepare_filters(p->s, (const T *)p->w, (double *)p->spec.get()))
    p->spec.release();  // (a filter that is not finite: the calls run on w)
  return FC_OK;
}

template <class T>
fc_status prepare_blocked(fc_conv2d_prepared *p) {
  const int64_t n = fc::direct_blocked_filter_size<T>(p->s);
  if (fc_status st = alloc_filters<T>(p->blocked, n, "blocked filters")) return st;
  fc::direct_blocked_pack_filters(p->s, (const T *)p->w, (T *)p->blocked.get());
  p->blocked_finite = fc::all_finite((const T *)p->w, p->s.k * p->s.ckk);
  return FC_OK;
}

template <class T>
fc_status prepare_rows(fc_conv2d_prepared *p) {
  if (fc_status st = alloc_filters<T>(p->rows, fc::rows_1x1_filter_size<T>(p->s), "packed weights"))
    return st;
  fc::rows_1x1_pack_filters(p->s, (const T *)p->w, (T *)p->rows.get());
  return FC_OK;
}

}  // namespace

using namespace fc;

extern "C" {

fc_status fc_conv2d_prepare(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *w,
                            int borrow, fc_conv2d_prepared **out) {
  if (!out) return fail(FC_EINVAL, "out must not be NULL");
  *out = nullptr;
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (fc_status st = check_dtype(t)) return st;
  if (a == FC_ALGO_AUTO)
    return fail(FC_EINVAL, "prepare needs a concrete algorithm, not FC_ALGO_AUTO");
  if (fc_status st = fc_conv2d_supports(d, a)) return st;
  if (!w) return fail(FC_EINVAL, "w must not be NULL");
  std::unique_ptr<fc_conv2d_prepared> p(new (std::nothrow) fc_conv2d_prepared{*d, t, a, s});
  if (!p) return fail(FC_ENOMEM, "cannot allocate a prepared convolution");
  const int64_t bytes = s.k * s.ckk * (t == FC_F32 ? 4 : 8);  // (make_shape checked the product)
  if (borrow) {
    p->w = w;
  } else {
    p->w_owned.reset(alloc_bytes(bytes));
    if (!p->w_owned)
      return fail(FC_ENOMEM, "cannot allocate %lld bytes of weights", (long long)bytes);
    std::memcpy(p->w_owned.get(), w, (size_t)bytes);
    p->w = p->w_owned.get();
  }
  if (a == FC_ALGO_WINOGRAD && winograd_supports(s)) {  // (dilated: phase planes, unprepared)
    blas_init_single_threaded();
    const fc_status st = run_entry([&, t] {
      return t == FC_F32 ? prepare_winograd<float>(p.get()) : prepare_winograd<double>(p.get());
    });
    if (st) return st;
  }
  if (a == FC_ALGO_FFT && fft_reuse_pays(s)) {
    const fc_status st = run_entry([&, t] {
      return t == FC_F32 ? prepare_fft<float>(p.get()) : prepare_fft<double>(p.get());
    });
    if (st) return st;
  }
  if ((a == FC_ALGO_IM2COL || a == FC_ALGO_GEMM1X1) &&
      (t == FC_F32 ? rows_1x1_pays<float>(s) : rows_1x1_pays<double>(s))) {
    const fc_status st = run_entry([&, t] {
      return t == FC_F32 ? prepare_rows<float>(p.get()) : prepare_rows<double>(p.get());
    });
    if (st) return st;
  }
  if (a == FC_ALGO_DIRECT && direct_blocked_runs(s)) {
    const fc_status st = run_entry([&, t] {
      return t == FC_F32 ? prepare_blocked<float>(p.get()) : prepare_blocked<double>(p.get());
    });
    if (st) return st;
  }
  *out = p.release();
  return FC_OK;
}

fc_status fc_conv2d_forward_prepared(const fc_conv2d_prepared *p, const void *x,
                                     const void *bias_or_null, const void *residual_or_null,
                                     int act, double alpha, void *y) {
  clear_error();
  if (!p) return fail(FC_EINVAL, "prepared must not be NULL");
  if (!x || !y) return fail(FC_EINVAL, "x and y must not be NULL");
  if (act < FC_ACT_NONE || act >= FC_ACT_COUNT_)
    return fail(FC_EINVAL, "act %d is not an fc_act", act);
  const ConvShape &s = p->s;
  const int64_t out = s.n * s.k * s.howo;  // (make_shape checked the product)
  auto run = [&](auto tag) -> fc_status {
    using T = decltype(tag);
    const T *X = (const T *)x, *W = (const T *)p->w, *B = (const T *)bias_or_null;
    T *Y = (T *)y;
    const Epilogue<T> ep{(const T *)residual_or_null, act, T(alpha)};
    if (p->a == FC_ALGO_IM2COL || p->a == FC_ALGO_GEMM1X1) {  // fused: each tile after its GEMM
      int64_t work;
      if (__builtin_mul_overflow(out, s.ckk, &work)) work = INT64_MAX;
      SmallWorkGuard small(work);
      return gemm_conv_forward(s, X, W, B, Y, gemm_in_place(s), &ep, (const T *)p->rows.get());
    }
    if (p->blocked)  // fused per output row
      return direct_blocked_forward(s, X, (const T *)p->blocked.get(), B, Y, &ep, p->blocked_finite,
                                    true);
    if (p->u)  // fused into the output transform
      return conv2d_forward__winograd_prepared(s, X, (const T *)p->u.get(), p->u_finite, W, B, Y,
                                               &ep);
    bool done = false;  // (FFT's bins, where x is finite)
    fc_status st =
        p->spec ? conv2d_forward__fft_prepared(s, X, (const double *)p->spec.get(), B, Y, &done)
                : FC_OK;
    if (st == FC_OK && !done) st = fc_conv2d_forward(&p->d, p->t, p->a, x, W, bias_or_null, y);
    if (st == FC_OK && !ep.none())
      eltwise(Y, ep.res, Y, out, act, alpha);  // one pass after, in place
    return st;
  };
  blas_init_single_threaded();
  return run_entry([&] { return p->t == FC_F32 ? run(float()) : run(double()); });
}

fc_status fc_conv2d_prepared_reuse(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, int *reuses) {
  clear_error();
  if (!reuses) return fail(FC_EINVAL, "reuses must not be NULL");
  *reuses = 0;
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (fc_status st = check_dtype(t)) return st;
  *reuses = (a == FC_ALGO_WINOGRAD && winograd_reuse_pays(s, t == FC_F32 ? 4 : 8)) ||
            (a == FC_ALGO_FFT && fft_reuse_pays(s));
  return FC_OK;
}

fc_status fc_conv2d_backward_data_prepared(const fc_conv2d_prepared *p, const void *dy,
                                           int accumulate, void *dx) {
  clear_error();
  if (!p) return fail(FC_EINVAL, "prepared must not be NULL");
  if (!dy || !dx) return fail(FC_EINVAL, "dy and dx must not be NULL");
  bool finite = false;  // (false: the ordinary data gradient on p's weights)
  // the forward's filter transform where it serves: Winograd's (dy and dx mirrored), FFT's bins
  const bool wino =
      p->a == FC_ALGO_WINOGRAD && p->u && p->u_finite && winograd_data_gradient_reuses(p->s);
  if (wino || p->spec) {
    auto run = [&](auto tag) -> fc_status {
      using T = decltype(tag);
      const T *DY = (const T *)dy;
      return wino ? conv2d_backward_data__winograd_reusing(p->s, DY, (const T *)p->u.get(), (T *)dx,
                                                           accumulate != 0, &finite)
                  : conv2d_backward_data__fft_prepared(p->s, DY, (const double *)p->spec.get(),
                                                       (T *)dx, accumulate != 0, &finite);
    };
    blas_init_single_threaded();
    const fc_status st = run_entry([&] { return p->t == FC_F32 ? run(float()) : run(double()); });
    if (st != FC_OK || finite) return st;
  }
  return accumulate ? fc_conv2d_backward_data_into(&p->d, p->t, p->a, dy, p->w, dx)
                    : fc_conv2d_backward_data(&p->d, p->t, p->a, dy, p->w, dx);
}

void fc_conv2d_prepared_destroy(fc_conv2d_prepared *p) { delete p; }

}  // extern "C"
