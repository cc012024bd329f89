// The C ABI's pooling entries: descriptor checks (PyTorch's rules, each message naming the
// field), dtype dispatch. Everything below this file assumes a validated shape.
#include <cstdint>

#include "pool.h"

namespace fc {

// Padded pools with planes to share among the threads, a copy that stays in the L2, and rows
// of at most 64 outputs at unit stride, or 16 at other strides without switches (the edge
// windows' share of a row). Measured (AVX2 EPYC, 1 and 2 threads, in one process alternating
// with the row path, best of 20-30):
//  - 3x3/1: max without switches on GoogLeNet's 7x7-28x28 planes 0.35-0.6x the row path's time,
//    with switches 0.65-1.05x; avg on Inception's 8x8-35x35 planes 0.33-0.7x;
//  - 3x3/2 and 2x2/2 (batch 4-8, 64-256 channels) to rows of 9-16 outputs: max without
//    switches 0.7-0.9x, avg 0.65-0.85x; to 28 (56x56 planes) 1.05-1.25x; max with switches
//    1.0-1.4x at every width tried (9-28);
//  - ResNet's 3x3/2 on 112x112 (one edge window in 56) 1.1-1.5x, GoogLeNet's unpadded
//    ceil-mode pools (only the last window at an edge) no faster: neither takes it.
bool use_padded_plane(const PoolShape &s, bool switches, PaddedPlane *pp) {
  const bool unit = s.sh == 1 && s.sw == 1;
  if (s.wo > (unit ? 64 : switches ? 0 : 16) || s.planes < 2 || (s.ph == 0 && s.pw == 0))
    return false;
  // the extent every window reaches, in bordered coordinates
  const int64_t hp = std::max(s.in_h + s.ph, (s.ho - 1) * s.sh + (s.kh - 1) * s.dil_h + 1);
  const int64_t wp = std::max(s.in_w + s.pw, (s.wo - 1) * s.sw + (s.kw - 1) * s.dil_w + 1);
  int64_t size;
  if (__builtin_mul_overflow(hp, wp, &size) || size > (int64_t(1) << 16)) return false;
  *pp = {hp, wp, size + 64};
  return true;
}

namespace {

// PyTorch's pooling_output_shape for one dimension; checks the padding rules first.
fc_status output_size(const char *dim, int64_t in, int64_t k, int64_t s, int64_t p, int64_t d,
                      bool ceil_mode, int64_t *out) {
  int64_t ext;
  if (!mul_ok(d, k - 1, &ext) || __builtin_add_overflow(ext, 1, &ext))
    return fail(FC_EOVERFLOW, "dilated kernel extent overflows int64 (k%s=%lld, dil_%s=%lld)", dim,
                (long long)k, dim, (long long)d);
  if (p > ext / 2)
    return fail(FC_EINVAL,
                "pad should be at most half of effective kernel size, but got pad_%s=%lld, "
                "k%s=%lld and dil_%s=%lld",
                dim, (long long)p, dim, (long long)k, dim, (long long)d);
  if (p > k / 2)
    return fail(FC_EINVAL,
                "pad should be smaller than or equal to half of kernel size, but got pad_%s=%lld, "
                "k%s=%lld",
                dim, (long long)p, dim, (long long)k);
  // in + 2p - ext (+ s - 1): p <= ext/2, so everything below is bounded by in + s + ext. The
  // kernels' window ends reach at most in + p + s - 1 (ceil mode's last window overhangs the
  // padding by up to s - 1): in + 2p + s must fit too.
  int64_t num, end;
  if (__builtin_add_overflow(in, 2 * p, &num) || __builtin_add_overflow(num, s, &end) ||
      __builtin_sub_overflow(num, ext, &num) ||
      (ceil_mode && __builtin_add_overflow(num, s - 1, &num)))
    return fail(FC_EOVERFLOW, "padded input size overflows int64 (%s=%lld, pad_%s=%lld)", dim,
                (long long)in, dim, (long long)p);
  // floor division; -((-num - 1) / s + 1), not -((-num + s - 1) / s): that overflows for huge s
  int64_t o = (num >= 0 ? num / s : -((-num - 1) / s + 1)) + 1;
  if (ceil_mode && o >= 1 && (o - 1) * s >= in + p) --o;  // the last window must start inside
  *out = o;
  return FC_OK;
}

fc_status make_pool_shape(const fc_pool2d_desc *d, PoolShape *s) {
  clear_error();
  if (!d) return fail(FC_EINVAL, "desc is NULL");
  if (fc_status st = check_fields({{"n", d->n, 1},
                                   {"c", d->c, 1},
                                   {"h", d->h, 1},
                                   {"w", d->w, 1},
                                   {"kh", d->kh, 1},
                                   {"kw", d->kw, 1},
                                   {"stride_h", d->stride_h, 1},
                                   {"stride_w", d->stride_w, 1},
                                   {"pad_h", d->pad_h, 0},
                                   {"pad_w", d->pad_w, 0},
                                   {"dil_h", d->dil_h, 1},
                                   {"dil_w", d->dil_w, 1},
                                   {"ceil_mode", d->ceil_mode, 0}}))
    return st;
  if (d->ceil_mode > 1)
    return fail(FC_EINVAL, "ceil_mode must be 0 or 1, got %lld", (long long)d->ceil_mode);
  if (fc_status st =
          output_size("h", d->h, d->kh, d->stride_h, d->pad_h, d->dil_h, d->ceil_mode, &s->ho))
    return st;
  if (fc_status st =
          output_size("w", d->w, d->kw, d->stride_w, d->pad_w, d->dil_w, d->ceil_mode, &s->wo))
    return st;
  if (s->ho < 1 || s->wo < 1)
    return fail(FC_EINVAL,
                "Given input size: (%lldx%lldx%lld). Calculated output size: (%lldx%lldx%lld). "
                "Output size is too small",
                (long long)d->c, (long long)d->h, (long long)d->w, (long long)d->c,
                (long long)s->ho, (long long)s->wo);
  int64_t xs, ys;
  if (!product_ok({d->n, d->c}, &s->planes) || !product_ok({d->h, d->w}, &s->hw) ||
      !product_ok({s->ho, s->wo}, &s->howo) || !product_ok({s->planes, s->hw, 8}, &xs) ||
      !product_ok({s->planes, s->howo, 8}, &ys))
    return fail(FC_EOVERFLOW, "a buffer size overflows int64 (n=%lld c=%lld h=%lld w=%lld)",
                (long long)d->n, (long long)d->c, (long long)d->h, (long long)d->w);
  s->in_h = d->h;
  s->in_w = d->w;
  s->kh = d->kh;
  s->kw = d->kw;
  s->sh = d->stride_h;
  s->sw = d->stride_w;
  s->ph = d->pad_h;
  s->pw = d->pad_w;
  s->dil_h = d->dil_h;
  s->dil_w = d->dil_w;
  return FC_OK;
}

fc_status make_planes_shape(const fc_planes2d_desc *d, PlanesShape *s) {
  clear_error();
  if (!d) return fail(FC_EINVAL, "desc is NULL");
  if (fc_status st = check_fields({{"n", d->n, 1},
                                   {"c", d->c, 1},
                                   {"h", d->h, 1},
                                   {"w", d->w, 1},
                                   {"ho", d->ho, 1},
                                   {"wo", d->wo, 1}}))
    return st;
  int64_t xs, ys, hh, ww;
  // ho*h and wo*w bound the adaptive window arithmetic.
  if (!product_ok({d->n, d->c}, &s->planes) || !product_ok({d->h, d->w}, &s->hw) ||
      !product_ok({d->ho, d->wo}, &s->howo) || !product_ok({s->planes, s->hw, 8}, &xs) ||
      !product_ok({s->planes, s->howo, 8}, &ys) || !product_ok({d->ho + 1, d->h}, &hh) ||
      !product_ok({d->wo + 1, d->w}, &ww))
    return fail(FC_EOVERFLOW,
                "a buffer size overflows int64 (n=%lld c=%lld h=%lld w=%lld ho=%lld wo=%lld)",
                (long long)d->n, (long long)d->c, (long long)d->h, (long long)d->w,
                (long long)d->ho, (long long)d->wo);
  s->in_h = d->h;
  s->in_w = d->w;
  s->ho = d->ho;
  s->wo = d->wo;
  return FC_OK;
}

fc_status check_avg(const fc_pool2d_desc *d) {
  if (d->dil_h != 1 || d->dil_w != 1)
    return fail(FC_EINVAL,
                "average pooling has no dilation: dil_h and dil_w must be 1, got %lld and %lld",
                (long long)d->dil_h, (long long)d->dil_w);
  return FC_OK;
}

}  // namespace
}  // namespace fc

using namespace fc;

#define FC_POOL_PROLOGUE(d, t)                          \
  PoolShape s;                                          \
  if (fc_status st = make_pool_shape(d, &s)) return st; \
  if (fc_status st = check_dtype(t)) return st;
#define FC_PLANES_PROLOGUE(d, t)                          \
  PlanesShape s;                                          \
  if (fc_status st = make_planes_shape(d, &s)) return st; \
  if (fc_status st = check_dtype(t)) return st;

fc_status fc_pool2d_output_size(const fc_pool2d_desc *d, int64_t *ho, int64_t *wo) {
  PoolShape s;
  if (fc_status st = make_pool_shape(d, &s)) return st;
  if (!ho || !wo) return fail(FC_EINVAL, "ho and wo must not be NULL");
  *ho = s.ho;
  *wo = s.wo;
  return FC_OK;
}

fc_status fc_max_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, const void *x, void *y,
                                int64_t *switches_or_null) {
  FC_POOL_PROLOGUE(d, t)
  if (!x || !y) return fail(FC_EINVAL, "x and y must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32
               ? max_pool2d_forward<float>(s, (const float *)x, (float *)y, switches_or_null)
               : max_pool2d_forward<double>(s, (const double *)x, (double *)y, switches_or_null);
  });
}

fc_status fc_max_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                 const int64_t *switches, void *dx) {
  FC_PLANES_PROLOGUE(d, t)
  if (!dy || !switches || !dx) return fail(FC_EINVAL, "dy, switches and dx must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32 ? max_pool2d_backward<float>(s, (const float *)dy, switches, (float *)dx)
                       : max_pool2d_backward<double>(s, (const double *)dy, switches, (double *)dx);
  });
}

fc_status fc_max_unpool2d_forward(const fc_planes2d_desc *d, fc_dtype t, const void *x,
                                  const int64_t *switches, void *y) {
  FC_PLANES_PROLOGUE(d, t)
  if (!x || !switches || !y) return fail(FC_EINVAL, "x, switches and y must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32 ? max_unpool2d_forward<float>(s, (const float *)x, switches, (float *)y)
                       : max_unpool2d_forward<double>(s, (const double *)x, switches, (double *)y);
  });
}

fc_status fc_max_unpool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                   const int64_t *switches, void *dx) {
  FC_PLANES_PROLOGUE(d, t)
  if (!dy || !switches || !dx) return fail(FC_EINVAL, "dy, switches and dx must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32
               ? max_unpool2d_backward<float>(s, (const float *)dy, switches, (float *)dx)
               : max_unpool2d_backward<double>(s, (const double *)dy, switches, (double *)dx);
  });
}

fc_status fc_avg_pool2d_forward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                int64_t divisor_override, const void *x, void *y) {
  FC_POOL_PROLOGUE(d, t)
  if (fc_status st = check_avg(d)) return st;
  if (!x || !y) return fail(FC_EINVAL, "x and y must not be NULL");
  const bool incl = count_include_pad != 0;
  return run_entry([&, t] {
    return t == FC_F32
               ? avg_pool2d_forward<float>(s, incl, divisor_override, (const float *)x, (float *)y)
               : avg_pool2d_forward<double>(s, incl, divisor_override, (const double *)x,
                                            (double *)y);
  });
}

fc_status fc_avg_pool2d_backward(const fc_pool2d_desc *d, fc_dtype t, int count_include_pad,
                                 int64_t divisor_override, const void *dy, void *dx) {
  FC_POOL_PROLOGUE(d, t)
  if (fc_status st = check_avg(d)) return st;
  if (!dy || !dx) return fail(FC_EINVAL, "dy and dx must not be NULL");
  const bool incl = count_include_pad != 0;
  return run_entry([&, t] {
    return t == FC_F32 ? avg_pool2d_backward<float>(s, incl, divisor_override, (const float *)dy,
                                                    (float *)dx)
                       : avg_pool2d_backward<double>(s, incl, divisor_override, (const double *)dy,
                                                     (double *)dx);
  });
}

fc_status fc_adaptive_avg_pool2d_forward(const fc_planes2d_desc *d, fc_dtype t, const void *x,
                                         void *y) {
  FC_PLANES_PROLOGUE(d, t)
  if (!x || !y) return fail(FC_EINVAL, "x and y must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32 ? adaptive_avg_pool2d_forward<float>(s, (const float *)x, (float *)y)
                       : adaptive_avg_pool2d_forward<double>(s, (const double *)x, (double *)y);
  });
}

fc_status fc_adaptive_avg_pool2d_backward(const fc_planes2d_desc *d, fc_dtype t, const void *dy,
                                          void *dx) {
  FC_PLANES_PROLOGUE(d, t)
  if (!dy || !dx) return fail(FC_EINVAL, "dy and dx must not be NULL");
  return run_entry([&, t] {
    return t == FC_F32 ? adaptive_avg_pool2d_backward<float>(s, (const float *)dy, (float *)dx)
                       : adaptive_avg_pool2d_backward<double>(s, (const double *)dy, (double *)dx);
  });
}
