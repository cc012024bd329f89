// Filters prepared once for many forwards of one convolution (inference plans): Winograd keeps
// its filters in the transform domain, so a call skips the transform (for VGG's 512-channel
// layers 36 x 512 x 512 elements written and read again per call); the other algorithms keep
// the weights as given and run the ordinary forward.
#include <memory>

#include "blas.h"
#include "internal.h"

struct fc_conv2d_prepared {
  fc_conv2d_desc d;
  fc_dtype t;
  fc_algo a;
  fc::ConvShape s;
  std::unique_ptr<char, void (*)(void *)> w{nullptr, std::free};
  std::unique_ptr<char, void (*)(void *)> u{nullptr, std::free};  // Winograd's U, or none
  bool u_finite = true;
};

namespace {

char *alloc_bytes(int64_t bytes) { return (char *)std::aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64)); }

template <class T>
fc_status prepare_winograd(fc_conv2d_prepared *p) {
  const int64_t n = fc::winograd_filter_size<T>(p->s);
  p->u.reset(alloc_bytes(n * (int64_t)sizeof(T)));
  if (!p->u) return fc::fail(FC_ENOMEM, "cannot allocate %lld bytes of transformed filters",
                             (long long)(n * (int64_t)sizeof(T)));
  p->u_finite = fc::winograd_prepare_filters(p->s, (const T *)p->w.get(), (T *)p->u.get());
  return FC_OK;
}

}  // namespace

using namespace fc;

extern "C" {

fc_status fc_conv2d_prepare(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *w,
                            fc_conv2d_prepared **out) {
  if (!out) return fail(FC_EINVAL, "out must not be NULL");
  *out = nullptr;
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (t != FC_F32 && t != FC_F64) return fail(FC_EINVAL, "dtype %d is not an fc_dtype", (int)t);
  if (a == FC_ALGO_AUTO) return fail(FC_EINVAL, "prepare needs a concrete algorithm, not FC_ALGO_AUTO");
  if (fc_status st = fc_conv2d_supports(d, a)) return st;
  if (!w) return fail(FC_EINVAL, "w must not be NULL");
  std::unique_ptr<fc_conv2d_prepared> p(new (std::nothrow) fc_conv2d_prepared{*d, t, a, s});
  if (!p) return fail(FC_ENOMEM, "cannot allocate a prepared convolution");
  const int64_t bytes = s.k * s.ckk * (t == FC_F32 ? 4 : 8);  // (make_shape checked the product)
  p->w.reset(alloc_bytes(bytes));
  if (!p->w) return fail(FC_ENOMEM, "cannot allocate %lld bytes of weights", (long long)bytes);
  std::memcpy(p->w.get(), w, (size_t)bytes);
  if (a == FC_ALGO_WINOGRAD && winograd_supports(s)) {  // (dilated: phase planes, unprepared)
    blas_init_single_threaded();
    const fc_status st = run_entry([&, t] { return t == FC_F32 ? prepare_winograd<float>(p.get())
                                                                : prepare_winograd<double>(p.get()); });
    if (st) return st;
  }
  *out = p.release();
  return FC_OK;
}

fc_status fc_conv2d_forward_prepared(const fc_conv2d_prepared *p, const void *x,
                                     const void *bias_or_null, void *y) {
  if (!p) return fail(FC_EINVAL, "prepared must not be NULL");
  if (!p->u) return fc_conv2d_forward(&p->d, p->t, p->a, x, p->w.get(), bias_or_null, y);
  clear_error();
  if (!x || !y) return fail(FC_EINVAL, "x and y must not be NULL");
  blas_init_single_threaded();
  return run_entry([&] {
    if (p->t == FC_F32)
      return conv2d_forward__winograd_prepared(p->s, (const float *)x, (const float *)p->u.get(), p->u_finite,
                                               (const float *)p->w.get(), (const float *)bias_or_null, (float *)y);
    return conv2d_forward__winograd_prepared(p->s, (const double *)x, (const double *)p->u.get(), p->u_finite,
                                             (const double *)p->w.get(), (const double *)bias_or_null, (double *)y);
  });
}

void fc_conv2d_prepared_destroy(fc_conv2d_prepared *p) { delete p; }

}  // extern "C"
