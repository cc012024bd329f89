// Softmax cross-entropy, forward and backward, each one pass over the logits: the log-softmax
// is never stored (only each position's log-sum-exp), and the gradient softmax - target is
// made from the logits and that sum directly.
//
// Layout (outer, c, inner): the classes of position (o, i) are x[(o*c + k)*inner + i], k < c
// (an (N, C) batch has inner 1; an (N, C, H, W) map inner = H*W). The target is a distribution
// q of the same shape (one-hot for class indices; label smoothing already mixed in).
#include <cmath>

#include "internal.h"

namespace fc {
namespace {

// loss[p] = -sum_k q_k (x_k - lse), lse = log sum_k exp(x_k) (from the max: no overflow).
template <class T>
void forward(int64_t outer, int64_t c, int64_t inner, const T *x, const T *q, T *loss, T *lse) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t p = 0; p < outer * inner; ++p) {
    const int64_t o = p / inner, i = p % inner;
    const T *xp = x + o * c * inner + i, *qp = q + o * c * inner + i;
    double mx = -INFINITY;
    for (int64_t k = 0; k < c; ++k) mx = std::max(mx, double(xp[k * inner]));
    double s = 0;
    for (int64_t k = 0; k < c; ++k) s += std::exp(double(xp[k * inner]) - mx);
    const double l = (std::isinf(mx) ? mx : mx + std::log(s));  // all -inf: lse -inf (as torch)
    double acc = 0;
    for (int64_t k = 0; k < c; ++k)
      if (qp[k * inner] != T(0)) acc -= double(qp[k * inner]) * (double(xp[k * inner]) - l);
    loss[p] = T(acc);
    lse[p] = T(l);
  }
}

// dx_k = dloss[p] * (sum(q) * softmax_k - q_k).
template <class T>
void backward(int64_t outer, int64_t c, int64_t inner, const T *x, const T *q, const T *lse,
              const T *dloss, T *dx) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t p = 0; p < outer * inner; ++p) {
    const int64_t o = p / inner, i = p % inner, base = o * c * inner + i;
    double sq = 0;
    for (int64_t k = 0; k < c; ++k) sq += double(q[base + k * inner]);
    const double l = double(lse[p]), g = double(dloss[p]);
    for (int64_t k = 0; k < c; ++k) {
      const int64_t at = base + k * inner;
      dx[at] = T(g * (sq * std::exp(double(x[at]) - l) - double(q[at])));
    }
  }
}

}  // namespace
}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_softmax_cross_entropy_forward(fc_dtype t, int64_t outer, int64_t c, int64_t inner,
                                           const void *x, const void *q, void *loss, void *lse) {
  if (fc_status st = check_sizes3(t, outer, c, inner, "outer, c and inner")) return st;
  if (outer * inner != 0 && (!x || !q || !loss || !lse))
    return fail(FC_EINVAL, "x, q, loss and lse must not be NULL");
  SmallWorkGuard small(outer * c * inner * 16);
  return run_entry([&, t] {
    if (t == FC_F32)
      forward(outer, c, inner, (const float *)x, (const float *)q, (float *)loss, (float *)lse);
    else
      forward(outer, c, inner, (const double *)x, (const double *)q, (double *)loss, (double *)lse);
    return FC_OK;
  });
}

fc_status fc_softmax_cross_entropy_backward(fc_dtype t, int64_t outer, int64_t c, int64_t inner,
                                            const void *x, const void *q, const void *lse,
                                            const void *dloss, void *dx) {
  if (fc_status st = check_sizes3(t, outer, c, inner, "outer, c and inner")) return st;
  if (outer * inner * c != 0 && (!x || !q || !lse || !dloss || !dx))
    return fail(FC_EINVAL, "x, q, lse, dloss and dx must not be NULL");
  SmallWorkGuard small(outer * c * inner * 16);
  return run_entry([&, t] {
    if (t == FC_F32)
      backward(outer, c, inner, (const float *)x, (const float *)q, (const float *)lse,
               (const float *)dloss, (float *)dx);
    else
      backward(outer, c, inner, (const double *)x, (const double *)q, (const double *)lse,
               (const double *)dloss, (double *)dx);
    return FC_OK;
  });
}

}  // extern "C"
