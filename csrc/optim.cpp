// Optimizer updates over many tensors in one threaded pass (PyTorch's multi-tensor idea): every
// parameter of a step is cut into chunks, and the chunks of all of them are shared out to the
// threads at once, so a network's hundreds of small tensors cost one parallel region, not one
// each. Element-wise, so any split gives the same bits.
//
// The formulas are PyTorch's (torch/optim/sgd.py, adam.py) with its rounding: where its CPU
// kernels fuse a multiply and an add (`add(x, alpha=a)`, `lerp` with a small weight) this uses
// std::fma, and the rest rounds after each operation in the same order, so float64 updates are
// bitwise PyTorch's (tests/test_optim_native.py).
#include <cmath>
#include <vector>

#include "internal.h"

namespace fc {
namespace {

constexpr int64_t kChunk = 1 << 14;  // elements per work item

struct Item {
  int64_t tensor, lo, hi;
};

// (tensor, [lo, hi)) chunks of every tensor.
std::vector<Item> chunks(const fc_optim_tensor *ts, int64_t count) {
  std::vector<Item> items;
  for (int64_t i = 0; i < count; ++i)
    for (int64_t lo = 0; lo < ts[i].n; lo += kChunk)
      items.push_back({i, lo, std::min(ts[i].n, lo + kChunk)});
  return items;
}

template <class F>
void for_chunks(const fc_optim_tensor *ts, int64_t count, int64_t total, F body) {
  const std::vector<Item> items = chunks(ts, count);
  const int64_t ni = (int64_t)items.size();
  SmallWorkGuard small(total * 4);
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t k = 0; k < ni; ++k) body(ts[items[k].tensor], items[k].lo, items[k].hi);
}

// SGD: d = g (+ wd*p); buf = d at the first step, else momentum*buf + (1-dampening)*d;
// d = d + momentum*buf (nesterov) or buf; p -= lr*d.
template <class T>
[[gnu::always_inline]] inline void sgd(const fc_optim_tensor &t, int64_t lo, int64_t hi,
                                       const fc_sgd_args &a) {
  T *p = (T *)t.param, *buf = (T *)t.state[0];
  const T *g = (const T *)t.grad;
  const T wd = T(a.weight_decay), m = T(a.momentum), damp1 = T(1 - a.dampening), nlr = T(-a.lr);
  for (int64_t i = lo; i < hi; ++i) {
    T d = a.maximize ? -g[i] : g[i];
    if (a.weight_decay != 0) d = std::fma(p[i], wd, d);
    if (a.momentum != 0) {
      const T b = t.init ? d : std::fma(d, damp1, buf[i] * m);
      buf[i] = b;
      d = a.nesterov ? std::fma(b, m, d) : b;
    }
    p[i] = std::fma(d, nlr, p[i]);
  }
}

// Adam / AdamW: (AdamW: p *= 1 - lr*wd; Adam: g += wd*p); m = lerp(m, g, 1-beta1);
// v = v*beta2 + (1-beta2)*g*g; (amsgrad: vmax = max(vmax, v), used for v);
// p += -step_size * m / (sqrt(v) / bias2_sqrt + eps).
template <class T>
[[gnu::always_inline]] inline void adam(const fc_optim_tensor &t, int64_t lo, int64_t hi,
                                        const fc_adam_args &a) {
  T *p = (T *)t.param, *m = (T *)t.state[0], *v = (T *)t.state[1], *vmax = (T *)t.state[2];
  const T *g = (const T *)t.grad;
  const T wd = T(a.weight_decay), decay = T(1 - a.lr * a.weight_decay);
  const T w1 = T(1 - a.beta1), b2 = T(a.beta2), w2 = T(1 - a.beta2), eps = T(a.eps);
  const T nstep = T(-t.step_size), bc2 = T(t.bias2_sqrt);
  const bool small = std::abs(1 - a.beta1) < 0.5;  // lerp's two forms, as PyTorch picks them
  for (int64_t i = lo; i < hi; ++i) {
    T gi = a.maximize ? -g[i] : g[i];
    if (a.weight_decay != 0) {
      if (a.decoupled) p[i] = p[i] * decay;
      else gi = std::fma(p[i], wd, gi);
    }
    m[i] = small ? std::fma(w1, gi - m[i], m[i]) : std::fma(w1 - T(1), gi - m[i], gi);
    v[i] = std::fma(w2 * gi, gi, v[i] * b2);  // addcmul: its product and sum fused
    T vi = v[i];
    if (vmax)  // (NaN wins, as torch.maximum)
      vi = vmax[i] = (vmax[i] != vmax[i] || vi != vi) ? vmax[i] + vi : std::max(vmax[i], vi);
    const T denom = std::sqrt(vi) / bc2 + eps;
    p[i] = p[i] + nstep * m[i] / denom;
  }
}

// Each update twice: for CPUs with FMA (std::fma one instruction, the loop vectorised) and
// without (std::fma in software). The same bits either way: fma is exactly rounded, and this
// file is built with -ffp-contract=off so that no other product is fused.
template <class T>
__attribute__((target("avx2,fma"))) void sgd_fma(const fc_optim_tensor &t, int64_t lo, int64_t hi,
                                                 const fc_sgd_args &a) {
  sgd<T>(t, lo, hi, a);
}
template <class T>
void sgd_plain(const fc_optim_tensor &t, int64_t lo, int64_t hi, const fc_sgd_args &a) {
  sgd<T>(t, lo, hi, a);
}
template <class T>
__attribute__((target("avx2,fma"))) void adam_fma(const fc_optim_tensor &t, int64_t lo, int64_t hi,
                                                  const fc_adam_args &a) {
  adam<T>(t, lo, hi, a);
}
template <class T>
void adam_plain(const fc_optim_tensor &t, int64_t lo, int64_t hi, const fc_adam_args &a) {
  adam<T>(t, lo, hi, a);
}

bool has_fma() {
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return v;
}

fc_status check(fc_dtype t, int64_t count, const fc_optim_tensor *ts, int states, int64_t *total) {
  clear_error();
  if (fc_status st = check_dtype(t)) return st;
  if (count < 0) return fail(FC_EINVAL, "count must be >= 0, got %lld", (long long)count);
  if (count && !ts) return fail(FC_EINVAL, "tensors must not be NULL");
  *total = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (ts[i].n < 0) return fail(FC_EINVAL, "tensor %lld: n must be >= 0", (long long)i);
    if (ts[i].n && (!ts[i].param || !ts[i].grad))
      return fail(FC_EINVAL, "tensor %lld: param and grad must not be NULL", (long long)i);
    for (int s = 0; s < states; ++s)
      if (ts[i].n && !ts[i].state[s])
        return fail(FC_EINVAL, "tensor %lld: state %d must not be NULL", (long long)i, s);
    if (__builtin_add_overflow(*total, ts[i].n, total))
      return fail(FC_EOVERFLOW, "sizes overflow int64");
  }
  return FC_OK;
}

}  // namespace
}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_sgd_step(fc_dtype t, int64_t count, const fc_optim_tensor *ts, const fc_sgd_args *a) {
  int64_t total;
  if (!a) return fail(FC_EINVAL, "args must not be NULL");
  if (fc_status st = check(t, count, ts, a->momentum != 0 ? 1 : 0, &total)) return st;
  return run_entry([&, t] {
    const bool f = has_fma();
    if (t == FC_F32)
      for_chunks(ts, count, total, [&](const fc_optim_tensor &x, int64_t lo, int64_t hi) {
        f ? sgd_fma<float>(x, lo, hi, *a) : sgd_plain<float>(x, lo, hi, *a);
      });
    else
      for_chunks(ts, count, total, [&](const fc_optim_tensor &x, int64_t lo, int64_t hi) {
        f ? sgd_fma<double>(x, lo, hi, *a) : sgd_plain<double>(x, lo, hi, *a);
      });
    return FC_OK;
  });
}

fc_status fc_adam_step(fc_dtype t, int64_t count, const fc_optim_tensor *ts,
                       const fc_adam_args *a) {
  int64_t total;
  if (!a) return fail(FC_EINVAL, "args must not be NULL");
  if (fc_status st = check(t, count, ts, a->amsgrad ? 3 : 2, &total)) return st;
  return run_entry([&, t] {
    const bool f = has_fma();
    if (t == FC_F32)
      for_chunks(ts, count, total, [&](const fc_optim_tensor &x, int64_t lo, int64_t hi) {
        f ? adam_fma<float>(x, lo, hi, *a) : adam_plain<float>(x, lo, hi, *a);
      });
    else
      for_chunks(ts, count, total, [&](const fc_optim_tensor &x, int64_t lo, int64_t hi) {
        f ? adam_fma<double>(x, lo, hi, *a) : adam_plain<double>(x, lo, hi, *a);
      });
    return FC_OK;
  });
}

}  // extern "C"
