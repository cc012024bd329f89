// Batch normalisation for training and eval, forward and backward, on the OpenMP pool.
//
// Layout (n, c, hw): channel ch of image i is the plane x[(i*c + ch)*hw ...]. Work is split
// by groups of channels (bn_group): one thread reads a group's planes, image by image, for their
// statistics (or gradient sums) and then again to write the output while they are still in its
// L2, so the data comes from memory once. Where planes are small the group's planes of an image
// are one long run, not a plane's few hundred bytes: against one channel at a time (AVX2 EPYC,
// 2 threads, cold caches, interleaved in one process, best of 15) ResNet-50's batch-8 7x7 and
// 14x14 layers took 0.6-0.9x the time, 28x28 0.9-1.0x; in a ResNet-50 batch-8 training step all
// its batch norms 0.92x (best) and 0.83x (median). Each channel's sums run in one fixed order
// (its planes of images 0, 1, ...) whatever the grouping and the thread count, in double
// (the shifted one-pass form: sums of x - x0 and its square, x0 the channel's first element, so
// the variance does not cancel away when the mean is large), so results are deterministic.
// A ReLU after the normalisation (and a residual added before it) is fused into the same pass,
// forward and backward. Its backward needs to know where the output was positive: from the
// output itself (fc_batch_norm_backward), or from a mask of one bit per output that the forward
// wrote as it went (the _masked entries), 1/32 of a float32 output's bytes. Against reading y
// (AVX2 EPYC, 2 threads, interleaved in one process, best of 12, two runs), the backward took
// 0.81-0.89x the time on ResNet-50's 8x256x56x56, 8x64x112x112 and 8x512x28x28, 0.88-0.96x on
// 8x1024x14x14 and 8x2048x7x7; the forward, which writes the mask in its output loop,
// 0.86-0.92x on the first three (its one SSE2 loop beat the compiler's two) and 1.1x on 7x7.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "epilogue.h"
#include "hw.h"
#include "internal.h"

namespace fc {
namespace {

template <class T>
struct BnArgs {
  int64_t n, c, hw;
  const T *x, *w, *b, *res;
  int act;
};

// ---- ReLU masks --------------------------------------------------------------------------
// Plane (i, ch) of n x c planes of hw outputs has (hw + 7) / 8 bytes at (i * c + ch) * that;
// bit j % 8 of its byte j / 8 is set where output j is > 0 (so never for a NaN), the bits past
// hw are 0.
int64_t mask_bytes(int64_t hw) { return (hw + 7) / 8; }

template <class T>
void write_mask(const T *q, int64_t hw, uint8_t *m) {
  int64_t j = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    const __m128 z = _mm_setzero_ps();
    for (; j + 8 <= hw; j += 8)
      m[j / 8] = uint8_t(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(q + j), z)) |
                         _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(q + j + 4), z)) << 4);
  } else {
    const __m128d z = _mm_setzero_pd();
    for (; j + 8 <= hw; j += 8)
      m[j / 8] = uint8_t(_mm_movemask_pd(_mm_cmpgt_pd(_mm_loadu_pd(q + j), z)) |
                         _mm_movemask_pd(_mm_cmpgt_pd(_mm_loadu_pd(q + j + 2), z)) << 2 |
                         _mm_movemask_pd(_mm_cmpgt_pd(_mm_loadu_pd(q + j + 4), z)) << 4 |
                         _mm_movemask_pd(_mm_cmpgt_pd(_mm_loadu_pd(q + j + 6), z)) << 6);
  }
#endif
  for (; j < hw; j += 8) {  // (the last byte of a plane, or every byte without SSE2)
    int bits = 0;
    for (int64_t e = j; e < std::min(hw, j + 8); ++e) bits |= int(q[e] > T(0)) << (e - j);
    m[j / 8] = uint8_t(bits);
  }
}

#if defined(__SSE2__)
// Lane masks for 4 floats from 4 bits, for 2 doubles from 2 bits: all ones where the bit is set.
template <int L, class U>
struct LaneMasks {
  alignas(16) U v[1 << L][L];
  constexpr LaneMasks() : v() {
    for (int b = 0; b < (1 << L); ++b)
      for (int l = 0; l < L; ++l) v[b][l] = (b >> l) & 1 ? ~U(0) : U(0);
  }
};
constexpr LaneMasks<4, uint32_t> kFloatLanes;
constexpr LaneMasks<2, uint64_t> kDoubleLanes;
#endif

// q = g where the mask's bit is set, else +0: the ReLU's gradient (a bitwise and, so g's value
// passes unchanged, NaN included, as the select on y > 0 does).
template <class T>
void masked_grad(const T *g, const uint8_t *m, int64_t hw, T *q) {
  int64_t j = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    for (; j + 8 <= hw; j += 8) {
      const int b = m[j / 8];
      const __m128 lo = _mm_load_ps((const float *)kFloatLanes.v[b & 15]),
                   hi = _mm_load_ps((const float *)kFloatLanes.v[b >> 4]);
      _mm_storeu_ps(q + j, _mm_and_ps(_mm_loadu_ps(g + j), lo));
      _mm_storeu_ps(q + j + 4, _mm_and_ps(_mm_loadu_ps(g + j + 4), hi));
    }
  } else {
    for (; j + 8 <= hw; j += 8) {
      const int b = m[j / 8];
      for (int k = 0; k < 4; ++k) {
        const __m128d lanes = _mm_load_pd((const double *)kDoubleLanes.v[(b >> (2 * k)) & 3]);
        _mm_storeu_pd(q + j + 2 * k, _mm_and_pd(_mm_loadu_pd(g + j + 2 * k), lanes));
      }
    }
  }
#endif
  for (; j < hw; ++j) q[j] = (m[j / 8] >> (j % 8)) & 1 ? g[j] : T(0);
}

// Adds the sums over one plane of (x - shift) and its square to *s and *ss.
template <class T>
void plane_sums(const T *p, int64_t hw, double shift, double *s_io, double *ss_io) {
  double s = *s_io, ss = *ss_io;
#pragma omp simd reduction(+ : s, ss)
  for (int64_t j = 0; j < hw; ++j) {
    const double d = double(p[j]) - shift;
    s += d;
    ss += d * d;
  }
  *s_io = s;
  *ss_io = ss;
}

// One plane of float y = relu(x * scale + shift (+ r)) with its mask bits, in one pass: the
// mask written in a second pass over the plane cost as much time as it saved the backward.
// The same operations, in the same order, as plane_apply's loops and act_run (a NaN stays).
#if defined(__SSE2__)
void apply_relu_masked(const float *p, const float *r, int64_t hw, float scale, float shift,
                       float *q, uint8_t *m) {
  const __m128 s = _mm_set1_ps(scale), b = _mm_set1_ps(shift), z = _mm_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= hw; j += 8) {
    int bits = 0;
    for (int h = 0; h < 2; ++h) {
      __m128 v = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p + j + 4 * h), s), b);
      if (r) v = _mm_add_ps(v, _mm_loadu_ps(r + j + 4 * h));
      const __m128 pos = _mm_cmpgt_ps(v, z);
      _mm_storeu_ps(q + j + 4 * h, _mm_and_ps(v, _mm_or_ps(pos, _mm_cmpunord_ps(v, v))));
      bits |= _mm_movemask_ps(pos) << (4 * h);
    }
    m[j / 8] = uint8_t(bits);
  }
  if (j < hw) {  // the plane's last byte
    for (int64_t e = j; e < hw; ++e) q[e] = r ? p[e] * scale + shift + r[e] : p[e] * scale + shift;
    act_run(q + j, hw - j, FC_ACT_RELU, 0.0f);
    write_mask(q + j, hw - j, m + j / 8);
  }
}
#endif

// y = x * scale + shift (+ residual), then the activation, over plane (i, ch).
template <class T>
void plane_apply(const BnArgs<T> &a, int64_t i, int64_t ch, T scale, T shift, T *y, uint8_t *mask) {
  const int64_t off = (i * a.c + ch) * a.hw;
  const T *p = a.x + off;
  T *q = y + off;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    if (mask && a.act == FC_ACT_RELU) {
      apply_relu_masked(p, a.res ? a.res + off : nullptr, a.hw, scale, shift, q,
                        mask + (i * a.c + ch) * mask_bytes(a.hw));
      return;
    }
  }
#endif
  if (a.res) {
    const T *r = a.res + off;
#pragma omp simd
    for (int64_t j = 0; j < a.hw; ++j) q[j] = p[j] * scale + shift + r[j];
  } else {
#pragma omp simd
    for (int64_t j = 0; j < a.hw; ++j) q[j] = p[j] * scale + shift;
  }
  act_run(q, a.hw, a.act, T(0));
  if (mask) write_mask(q, a.hw, mask + (i * a.c + ch) * mask_bytes(a.hw));
}

// Channels per group: the threads take groups of channels, and pass over a group image by image
// (each image's planes of a group are one contiguous run) once for the statistics and again for
// the output while the group is still in the L2. A group's planes of one array fill about half
// the L2 (an eighth to all of it measured the same within noise); the groups are a multiple of
// the threads in number.
int64_t bn_group(int64_t n, int64_t c, int64_t hw, int64_t elem, int nt) {
  const int64_t per_channel = std::max<int64_t>(1, n * hw * elem);
  const int64_t fit = std::max<int64_t>(1, hardware().l2 / 2 / per_channel);
  int64_t groups = (c + fit - 1) / fit;
  groups = (groups + nt - 1) / nt * nt;
  return std::max<int64_t>(1, (c + groups - 1) / groups);
}

// The masked gradient of plane (i, ch) into q: dy where the ReLU's output was positive (from
// the forward's mask, or from y itself), else +0.
template <class T>
void relu_grad_plane(const BnArgs<T> &a, const T *dy, const T *y, const uint8_t *mask, int64_t i,
                     int64_t ch, T *q) {
  const int64_t off = (i * a.c + ch) * a.hw;
  const T *g = dy + off;
  if (mask) {
    masked_grad(g, mask + (i * a.c + ch) * mask_bytes(a.hw), a.hw, q);
    return;
  }
  const T *o = y + off;
#pragma omp simd
  for (int64_t j = 0; j < a.hw; ++j) {
    const T gj = g[j];  // (loaded unconditionally: a select, not a branch per element)
    q[j] = o[j] > T(0) ? gj : T(0);
  }
}

// Adds one plane's sum of g and of g * (x - mean) to *sg and *sgx.
template <class T>
void plane_grad_sums(const T *g, const T *p, int64_t hw, T mu, double *sg_io, double *sgx_io) {
  double sg = *sg_io, sgx = *sgx_io;
#pragma omp simd reduction(+ : sg, sgx)
  for (int64_t j = 0; j < hw; ++j) {
    sg += double(g[j]);
    sgx += double(g[j]) * double(p[j] - mu);
  }
  *sg_io = sg;
  *sgx_io = sgx;
}

// Each channel's statistics, and then its output, in a fixed order of its own whatever the
// grouping (bn_group) and the thread count: the sums run over the planes of images 0, 1, ...
template <class T>
void forward(const BnArgs<T> &a, bool batch_stats, double eps, T *mean, T *var, T *invstd, T *y,
             uint8_t *mask) {
  const int64_t m = a.n * a.hw;
  const int nt = num_threads();
  const int64_t g = bn_group(a.n, a.c, a.hw, sizeof(T), nt), groups = (a.c + g - 1) / g;
#pragma omp parallel num_threads(nt)
  {
    std::vector<double> sums(2 * g);  // (s, ss) per channel of the group
    std::vector<T> coef(2 * g);       // (scale, shift) per channel of the group
#pragma omp for schedule(static)
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t c0 = grp * g, c1 = std::min(a.c, c0 + g);
      if (batch_stats) {
        std::fill(sums.begin(), sums.end(), 0.0);
        for (int64_t i = 0; i < a.n; ++i)
          for (int64_t ch = c0; ch < c1; ++ch)  // (shift: the channel's first element)
            plane_sums(a.x + (i * a.c + ch) * a.hw, a.hw, double(a.x[ch * a.hw]),
                       &sums[2 * (ch - c0)], &sums[2 * (ch - c0) + 1]);
      }
      for (int64_t ch = c0; ch < c1; ++ch) {
        double mu, is;
        if (batch_stats) {
          const double x0 = m ? double(a.x[ch * a.hw]) : 0.0;
          const double s = sums[2 * (ch - c0)], ss = sums[2 * (ch - c0) + 1];
          const double d = m ? s / double(m) : 0.0;
          const double v = m ? std::max(0.0, ss / double(m) - d * d) : 0.0;  // biased
          mu = x0 + d;
          is = 1.0 / std::sqrt(v + eps);
          mean[ch] = T(mu);
          if (var) var[ch] = T(v);
          invstd[ch] = T(is);
        } else {
          mu = double(mean[ch]);
          is = double(invstd[ch]);
        }
        const double k = a.w ? is * double(a.w[ch]) : is;
        coef[2 * (ch - c0)] = T(k);
        coef[2 * (ch - c0) + 1] = T((a.b ? double(a.b[ch]) : 0.0) - mu * k);
      }
      for (int64_t i = 0; i < a.n; ++i)
        for (int64_t ch = c0; ch < c1; ++ch)
          plane_apply(a, i, ch, coef[2 * (ch - c0)], coef[2 * (ch - c0) + 1], y, mask);
    }
  }
}

template <class T>
void backward(const BnArgs<T> &a, const T *dy, const T *y, const uint8_t *mask, const T *mean,
              const T *invstd, bool batch_stats, T *dx, T *dres, T *dw, T *db) {
  const int64_t m = a.n * a.hw;
  const int nt = num_threads();
  // (two arrays read per pass, g and x: groups half the forward's)
  const int64_t gsz = bn_group(a.n, a.c, a.hw, 2 * sizeof(T), nt), groups = (a.c + gsz - 1) / gsz;
  // With a fused ReLU, g = dy masked by y > 0 (or by the forward's mask) is written once (into
  // dx, else dres, else this thread's scratch) and read from there: a select inside the
  // reductions below does not vectorise (it ran 15x slower).
  const bool relu = y || mask;
  T *const gbuf = relu ? (dx ? dx : dres) : nullptr;
  const bool own = relu && !gbuf;  // (the masked gradient goes to this thread's scratch)
#pragma omp parallel num_threads(nt)
  {
    std::vector<T> scratch;
    std::vector<double> sums(2 * gsz);  // (sum of g, sum of g * (x - mean)) per channel
    std::vector<T> coef(3 * gsz);
#pragma omp for schedule(static)
    for (int64_t grp = 0; grp < groups; ++grp) {
      const int64_t c0 = grp * gsz, c1 = std::min(a.c, c0 + gsz), gc = c1 - c0;
      // plane (i, ch) of g: in dy; with the ReLU, the masked copy in dx or dres (laid out as
      // dy), or in the scratch
      if (own) scratch.resize((size_t)(a.n * gc * a.hw));
      auto masked_plane = [&](int64_t i, int64_t ch) -> T * {
        return own ? scratch.data() + (i * gc + ch - c0) * a.hw : gbuf + (i * a.c + ch) * a.hw;
      };
      auto gplane = [&](int64_t i, int64_t ch) -> const T * {
        return relu ? masked_plane(i, ch) : dy + (i * a.c + ch) * a.hw;
      };
      if (relu)
        for (int64_t i = 0; i < a.n; ++i)
          for (int64_t ch = c0; ch < c1; ++ch) {
            T *q = masked_plane(i, ch);
            relu_grad_plane(a, dy, y, mask, i, ch, q);
            if (dres && dx) std::copy(q, q + a.hw, dres + (i * a.c + ch) * a.hw);
          }
      std::fill(sums.begin(), sums.end(), 0.0);
      for (int64_t i = 0; i < a.n; ++i)
        for (int64_t ch = c0; ch < c1; ++ch)
          plane_grad_sums(gplane(i, ch), a.x + (i * a.c + ch) * a.hw, a.hw, mean[ch],
                          &sums[2 * (ch - c0)], &sums[2 * (ch - c0) + 1]);
      for (int64_t ch = c0; ch < c1; ++ch) {
        const double sg = sums[2 * (ch - c0)], sgx = sums[2 * (ch - c0) + 1];
        const double is = double(invstd[ch]);
        if (dw) dw[ch] = T(sgx * is);
        if (db) db[ch] = T(sg);
        // dx = k * (g - sg/m - (x - mean) * is^2 * sgx/m) in batch mode, k * g with fixed
        // statistics
        const double k = a.w ? is * double(a.w[ch]) : is;
        const bool batch = batch_stats && m;
        coef[3 * (ch - c0)] = T(k);
        coef[3 * (ch - c0) + 1] = batch ? T(-k * sg / double(m)) : T(0);
        coef[3 * (ch - c0) + 2] = batch ? T(-k * is * is * sgx / double(m)) : T(0);
      }
      if (!dx) continue;
      for (int64_t i = 0; i < a.n; ++i)
        for (int64_t ch = c0; ch < c1; ++ch) {
          const int64_t off = (i * a.c + ch) * a.hw;
          const T *g = gplane(i, ch), *p = a.x + off;
          const T ka = coef[3 * (ch - c0)], kb = coef[3 * (ch - c0) + 1],
                  kc = coef[3 * (ch - c0) + 2], mu = mean[ch];
          T *q = dx + off;  // (g may be q itself: each element is read before it is written)
#pragma omp simd
          for (int64_t j = 0; j < a.hw; ++j) q[j] = g[j] * ka + kb + kc * (p[j] - mu);
        }
    }
  }
}

int64_t elements(int64_t n, int64_t c, int64_t hw) { return n * c * hw; }

}  // namespace
}  // namespace fc

namespace fc {
namespace {

fc_status forward_entry(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                        const void *weight_or_null, const void *bias_or_null,
                        const void *residual_or_null, int act, int batch_stats, double eps,
                        void *mean, void *var_or_null, void *invstd, void *y, bool masked,
                        uint8_t *mask) {
  if (fc_status st = check_sizes3(t, n, c, hw, "n, c and hw")) return st;
  if (act != FC_ACT_NONE && act != FC_ACT_RELU)
    return fail(FC_EINVAL, "act must be FC_ACT_NONE or FC_ACT_RELU, got %d", act);
  if (!(eps >= 0)) return fail(FC_EINVAL, "eps must be >= 0, got %g", eps);
  if (c && (!mean || !invstd)) return fail(FC_EINVAL, "mean and invstd must not be NULL");
  if (elements(n, c, hw) && (!x || !y)) return fail(FC_EINVAL, "x and y must not be NULL");
  if (masked && elements(n, c, hw) && !mask) return fail(FC_EINVAL, "mask must not be NULL");
  SmallWorkGuard small(elements(n, c, hw) * 4);
  return run_entry([&, t] {
    auto go = [&](auto tag) {
      using T = decltype(tag);
      using In = const T *;
      const BnArgs<T> a{
          n, c, hw, In(x), In(weight_or_null), In(bias_or_null), In(residual_or_null), act};
      forward(a, batch_stats != 0, eps, (T *)mean, (T *)var_or_null, (T *)invstd, (T *)y, mask);
    };
    if (t == FC_F32) go(float());
    else go(double());
    return FC_OK;
  });
}

fc_status backward_entry(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *dy,
                         const void *x, const void *y_or_null, bool masked,
                         const uint8_t *mask_or_null, const void *mean, const void *invstd,
                         const void *weight_or_null, int batch_stats, void *dx_or_null,
                         void *dres_or_null, void *dweight_or_null, void *dbias_or_null) {
  if (fc_status st = check_sizes3(t, n, c, hw, "n, c and hw")) return st;
  if (c && (!mean || !invstd)) return fail(FC_EINVAL, "mean and invstd must not be NULL");
  if (elements(n, c, hw) && (!dy || !x)) return fail(FC_EINVAL, "dy and x must not be NULL");
  if (masked && elements(n, c, hw) && !mask_or_null)
    return fail(FC_EINVAL, "mask must not be NULL");
  if (!masked && dres_or_null && !y_or_null)
    return fail(FC_EINVAL, "dres needs y (without a fused ReLU the residual's gradient is dy)");
  SmallWorkGuard small(elements(n, c, hw) * 4);
  return run_entry([&, t] {
    auto go = [&](auto tag) {
      using T = decltype(tag);
      using In = const T *;
      const BnArgs<T> a{n, c, hw, In(x), In(weight_or_null), nullptr, nullptr, FC_ACT_NONE};
      backward(a, (const T *)dy, (const T *)y_or_null, mask_or_null, (const T *)mean,
               (const T *)invstd, batch_stats != 0, (T *)dx_or_null, (T *)dres_or_null,
               (T *)dweight_or_null, (T *)dbias_or_null);
    };
    if (t == FC_F32) go(float());
    else go(double());
    return FC_OK;
  });
}

template <class T>
void update_running(int64_t c, int64_t count, double momentum, const T *mean, const T *var,
                    T *rmean, T *rvar) {
  const double unbias = double(count) / double(count - 1);
  for (int64_t ch = 0; ch < c; ++ch) {
    if (rmean) rmean[ch] = T(momentum * double(mean[ch]) + (1 - momentum) * double(rmean[ch]));
    if (rvar)
      rvar[ch] = T(momentum * (double(var[ch]) * unbias) + (1 - momentum) * double(rvar[ch]));
  }
}

}  // namespace
}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_batch_norm_update_running(fc_dtype t, int64_t c, int64_t count, double momentum,
                                       const void *mean, const void *var,
                                       void *running_mean_or_null, void *running_var_or_null) {
  clear_error();
  if (t != FC_F32 && t != FC_F64) return fail(FC_EINVAL, "dtype must be FC_F32 or FC_F64");
  if (c < 0 || count < 0)
    return fail(FC_EINVAL, "c and count must be >= 0, got %lld and %lld", (long long)c,
                (long long)count);
  if (count == 1)
    return fail(FC_EINVAL, "count must not be 1: the unbiased variance of one value per channel");
  if (!c || !count || (!running_mean_or_null && !running_var_or_null)) return FC_OK;
  if ((running_mean_or_null && !mean) || (running_var_or_null && !var))
    return fail(FC_EINVAL, "mean (and var, for running_var) must not be NULL");
  if (t == FC_F32)
    update_running(c, count, momentum, (const float *)mean, (const float *)var,
                   (float *)running_mean_or_null, (float *)running_var_or_null);
  else
    update_running(c, count, momentum, (const double *)mean, (const double *)var,
                   (double *)running_mean_or_null, (double *)running_var_or_null);
  return FC_OK;
}

fc_status fc_batch_norm_forward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                                const void *weight_or_null, const void *bias_or_null,
                                const void *residual_or_null, int act, int batch_stats, double eps,
                                void *mean, void *var_or_null, void *invstd, void *y) {
  return forward_entry(t, n, c, hw, x, weight_or_null, bias_or_null, residual_or_null, act,
                       batch_stats, eps, mean, var_or_null, invstd, y, false, nullptr);
}

fc_status fc_batch_norm_forward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *x,
                                       const void *weight_or_null, const void *bias_or_null,
                                       const void *residual_or_null, int batch_stats, double eps,
                                       void *mean, void *var_or_null, void *invstd, void *y,
                                       uint8_t *mask) {
  return forward_entry(t, n, c, hw, x, weight_or_null, bias_or_null, residual_or_null, FC_ACT_RELU,
                       batch_stats, eps, mean, var_or_null, invstd, y, true, mask);
}

fc_status fc_batch_norm_backward(fc_dtype t, int64_t n, int64_t c, int64_t hw, const void *dy,
                                 const void *x, const void *y_or_null, const void *mean,
                                 const void *invstd, const void *weight_or_null, int batch_stats,
                                 void *dx_or_null, void *dres_or_null, void *dweight_or_null,
                                 void *dbias_or_null) {
  return backward_entry(t, n, c, hw, dy, x, y_or_null, false, nullptr, mean, invstd, weight_or_null,
                        batch_stats, dx_or_null, dres_or_null, dweight_or_null, dbias_or_null);
}

fc_status fc_batch_norm_backward_masked(fc_dtype t, int64_t n, int64_t c, int64_t hw,
                                        const void *dy, const void *x, const uint8_t *mask,
                                        const void *mean, const void *invstd,
                                        const void *weight_or_null, int batch_stats,
                                        void *dx_or_null, void *dres_or_null, void *dweight_or_null,
                                        void *dbias_or_null) {
  return backward_entry(t, n, c, hw, dy, x, nullptr, true, mask, mean, invstd, weight_or_null,
                        batch_stats, dx_or_null, dres_or_null, dweight_or_null, dbias_or_null);
}

}  // extern "C"
