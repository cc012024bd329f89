// Inference plans (fastconv.h, "inference plans"): constants, a value table and a list of steps,
// every step validated when added so that a run never reads or writes outside its buffers, then
// run in one call. The Python side (fastconv.inference) captures the graph, folds and fuses it,
// chooses algorithms and assigns arena offsets; this file only checks and executes.
#include <omp.h>

#include <cstring>
#include <memory>
#include <vector>

#include "blas.h"
#include "internal.h"
#include "plan_ops.h"

struct fc_plan {
  struct Value {
    int32_t kind;
    int64_t offset, elems;
  };
  struct Constant {
    std::unique_ptr<char, void (*)(void *)> owned{nullptr, std::free};
    const char *data = nullptr;  // owned.get(), or the caller's (fc_plan_add_constant_view)
    int64_t elems = 0;
  };
  fc_dtype t;
  int64_t in_elems, out_elems, arena_elems;
  std::unique_ptr<char, void (*)(void *)> arena{nullptr, std::free};
  std::vector<Value> values;
  std::vector<Constant> constants;
  std::vector<fc_plan_step> steps;
  struct PreparedDel {
    void operator()(fc_conv2d_prepared *q) const { fc_conv2d_prepared_destroy(q); }
  };
  // per step: a convolution's filters prepared at add_step (fc_conv2d_prepare), else empty
  std::vector<std::unique_ptr<fc_conv2d_prepared, PreparedDel>> prepared;
  // The algorithms' workspaces (internal.h, Scratch): grown after a run that needed more, so
  // that runs in steady state make no heap call.
  fc::Scratch scratch;
  std::unique_ptr<char, void (*)(void *)> scratch_mem{nullptr, std::free};
  int64_t last_allocations = 0;
};

namespace fc {
namespace {

int64_t elem_size(fc_dtype t) { return t == FC_F32 ? 4 : 8; }

// a * b * ... without overflow; false when the product does not fit int64 or a factor is < 0.
bool product(std::initializer_list<int64_t> f, int64_t *out) {
  int64_t p = 1;
  for (int64_t v : f) {
    if (v < 0 || (v && p > INT64_MAX / v)) return false;
    p *= v;
  }
  *out = p;
  return true;
}

// The element counts one step reads and writes: in0, in1, in2, out, weight, bias (-1: unused).
struct Need {
  int64_t in0 = -1, in1 = -1, in2 = -1, out = -1, weight = -1, bias = -1;
  bool in0_in_place = false, in1_in_place = false, in2_in_place = false;  // out may be that input
};

fc_status step_needs(const fc_plan_step &s, Need *nd) {
  const int64_t *d = s.dims;
  switch (s.op) {
    case FC_PLAN_CONV: {
      int64_t ho, wo;
      if (fc_status st = fc_conv2d_output_size(&s.conv, &ho, &wo)) return st;
      if (s.algo <= FC_ALGO_AUTO || s.algo >= FC_ALGO_COUNT_)
        return fail(FC_EINVAL, "plan step: conv algo %d is not a concrete fc_algo", (int)s.algo);
      if (fc_status st = fc_conv2d_supports(&s.conv, (fc_algo)s.algo)) return st;
      const fc_conv2d_desc &c = s.conv;
      nd->in0 = c.n * c.c * c.h * c.w;  // (fc_conv2d_output_size checked these products)
      nd->out = c.n * c.k * ho * wo;
      nd->in1 = s.in1 >= 0 ? nd->out : -1;
      nd->weight = c.k * (c.c / c.groups) * c.kh * c.kw;
      nd->bias = s.bias >= 0 ? c.k : -1;
      return FC_OK;
    }
    case FC_PLAN_MAX_POOL:
    case FC_PLAN_AVG_POOL: {
      int64_t ho, wo;
      if (fc_status st = fc_pool2d_output_size(&s.pool, &ho, &wo)) return st;
      if (s.op == FC_PLAN_AVG_POOL && (s.pool.dil_h != 1 || s.pool.dil_w != 1))
        return fail(FC_EINVAL, "plan step: average pooling needs dilation 1");
      nd->in0 = s.pool.n * s.pool.c * s.pool.h * s.pool.w;
      nd->out = s.pool.n * s.pool.c * ho * wo;
      nd->bias = s.bias >= 0 ? s.pool.c : -1;
      return FC_OK;
    }
    case FC_PLAN_ADAPTIVE_AVG:
      if (d[0] < 0 || d[1] < 0 || d[2] < 1 || d[3] < 1 || s.extra[0] < 1 || s.extra[1] < 1)
        return fail(FC_EINVAL, "plan step: adaptive pool sizes must be >= 1 (planes >= 0)");
      if (!product({d[0], d[1], d[2], d[3]}, &nd->in0) ||
          !product({d[0], d[1], s.extra[0], s.extra[1]}, &nd->out))
        return fail(FC_EOVERFLOW, "plan step: adaptive pool sizes overflow int64");
      return FC_OK;
    case FC_PLAN_LINEAR:
      if (!product({d[0], d[1]}, &nd->in0) || !product({d[0], d[2]}, &nd->out) ||
          !product({d[2], d[1]}, &nd->weight))
        return fail(FC_EOVERFLOW,
                    "plan step: linear sizes m=%lld k=%lld nout=%lld are negative or overflow",
                    (long long)d[0], (long long)d[1], (long long)d[2]);
      if (!gemm_dims_fit(d[0]) || !gemm_dims_fit(d[1]) || !gemm_dims_fit(d[2]))
        return fail(FC_EOVERFLOW, "plan step: linear sizes exceed the GEMM's int32 dimensions");
      nd->bias = s.bias >= 0 ? d[2] : -1;
      return FC_OK;
    case FC_PLAN_ELTWISE:
      if (d[0] < 0) return fail(FC_EINVAL, "plan step: element count %lld < 0", (long long)d[0]);
      nd->in0 = nd->out = d[0];
      nd->in1 = s.in1 >= 0 ? d[0] : -1;
      nd->in0_in_place = nd->in1_in_place = true;
      return FC_OK;
    case FC_PLAN_CHANNEL_MUL:
    case FC_PLAN_CHANNEL_AFFINE:
    case FC_PLAN_LRN:
    case FC_PLAN_COPY_CHANNELS: {
      if (!product({d[0], d[1], d[2]}, &nd->in0))
        return fail(FC_EOVERFLOW, "plan step: sizes are negative or overflow int64");
      nd->out = nd->in0;
      if (s.op == FC_PLAN_CHANNEL_MUL) {
        nd->in1 = d[0] * d[1];
        nd->in2 = s.in2 >= 0 ? nd->out : -1;
        // (not in1: scales are read after outputs are written)
        nd->in0_in_place = nd->in2_in_place = true;
      } else if (s.op == FC_PLAN_CHANNEL_AFFINE) {
        nd->weight = d[1];
        nd->bias = s.bias >= 0 ? d[1] : -1;
        nd->in0_in_place = true;
      } else if (s.op == FC_PLAN_LRN) {
        if (s.extra[0] < 1)
          return fail(FC_EINVAL, "plan step: LRN size %lld < 1", (long long)s.extra[0]);
      } else {
        if (s.extra[0] < 0 || s.extra[1] < 0 || d[1] > s.extra[0] - s.extra[1])
          return fail(
              FC_EINVAL,
              "plan step: %lld channels from channel %lld lie outside the %lld of the output",
              (long long)d[1], (long long)s.extra[1], (long long)s.extra[0]);
        if (!product({d[0], s.extra[0], d[2]}, &nd->out))
          return fail(FC_EOVERFLOW, "plan step: sizes overflow int64");
      }
      return FC_OK;
    }
    default: return fail(FC_EINVAL, "plan step: op %d is not an fc_plan_op", (int)s.op);
  }
}

bool overlap(const fc_plan::Value &a, const fc_plan::Value &b) {
  return a.kind == b.kind && a.offset < b.offset + b.elems && b.offset < a.offset + a.elems;
}

template <class T>
fc_status run_step(const fc_plan &p, size_t index, const T *x, T *y) {
  const fc_plan_step &s = p.steps[index];
  auto val = [&](int64_t id) -> T * {
    if (id < 0) return nullptr;
    const fc_plan::Value &v = p.values[id];
    T *base = v.kind == FC_VALUE_INPUT    ? const_cast<T *>(x)
              : v.kind == FC_VALUE_OUTPUT ? y
                                          : (T *)p.arena.get();
    return base + v.offset;
  };
  auto cst = [&](int64_t id) -> const T * {
    return id < 0 ? nullptr : (const T *)p.constants[id].data;
  };
  const fc_dtype t = p.t;
  T *out = val(s.out);
  const T *a = val(s.in0), *b = val(s.in1), *r = val(s.in2);
  const int64_t *d = s.dims;
  // (a per-channel step over no element does nothing: its loops over n*c must not even start,
  // n*c may be huge when the plane is empty)
  if ((s.op == FC_PLAN_CHANNEL_MUL || s.op == FC_PLAN_CHANNEL_AFFINE || s.op == FC_PLAN_LRN ||
       s.op == FC_PLAN_COPY_CHANNELS) &&
      (d[0] == 0 || d[1] == 0 || d[2] == 0))
    return FC_OK;
  switch (s.op) {
    case FC_PLAN_CONV: {
      return fc_conv2d_forward_prepared(p.prepared[index].get(), a, cst(s.bias), b, s.act, s.alpha,
                                        out);
    }
    case FC_PLAN_MAX_POOL:
    case FC_PLAN_AVG_POOL: {
      fc_status st = s.op == FC_PLAN_MAX_POOL
                         ? fc_max_pool2d_forward(&s.pool, t, a, out, nullptr)
                         : fc_avg_pool2d_forward(&s.pool, t, s.count_include_pad, 0, a, out);
      if (st) return st;
      int64_t ho, wo;
      fc_pool2d_output_size(&s.pool, &ho, &wo);
      if (s.bias < 0) {
        eltwise(out, (const T *)nullptr, out, s.pool.n * s.pool.c * ho * wo, s.act, s.alpha);
        return FC_OK;
      }
      // (a 1x1 convolution's bias: the convolution ran before the pool, commute_avg_pool)
      channel_scale(out, (const T *)nullptr, 0, cst(s.bias), (const T *)nullptr, out, s.pool.n,
                    s.pool.c, ho * wo, s.act, s.alpha);
      return FC_OK;
    }
    case FC_PLAN_ADAPTIVE_AVG: {
      const fc_planes2d_desc pd{d[0], d[1], d[2], d[3], s.extra[0], s.extra[1]};
      if (fc_status st = fc_adaptive_avg_pool2d_forward(&pd, t, a, out)) return st;
      eltwise(out, (const T *)nullptr, out, d[0] * d[1] * s.extra[0] * s.extra[1], s.act, s.alpha);
      return FC_OK;
    }
    case FC_PLAN_LINEAR:
      return linear(a, cst(s.weight), cst(s.bias), out, d[0], d[1], d[2], s.act, s.alpha);
    case FC_PLAN_ELTWISE: eltwise(a, b, out, d[0], s.act, s.alpha); return FC_OK;
    case FC_PLAN_CHANNEL_MUL:
      channel_scale(a, b, d[1], (const T *)nullptr, r, out, d[0], d[1], d[2], s.act, s.alpha);
      return FC_OK;
    case FC_PLAN_CHANNEL_AFFINE:
      channel_scale(a, cst(s.weight), 0, cst(s.bias), (const T *)nullptr, out, d[0], d[1], d[2],
                    s.act, s.alpha);
      return FC_OK;
    case FC_PLAN_LRN:
      lrn(a, out, d[0], d[1], d[2], s.extra[0], s.lrn[0], s.lrn[1], s.lrn[2]);
      return FC_OK;
    case FC_PLAN_COPY_CHANNELS:
      copy_channels(a, out, d[0], d[1], d[2], s.extra[0], s.extra[1]);
      return FC_OK;
    default: return fail(FC_EINVAL, "plan step: op %d", (int)s.op);
  }
}

}  // namespace
}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_plan_create(fc_dtype t, int64_t in_elems, int64_t out_elems, int64_t arena_elems,
                         fc_plan **out) {
  clear_error();
  if (!out) return fail(FC_EINVAL, "out must not be NULL");
  *out = nullptr;
  if (fc_status st = check_dtype(t)) return st;
  if (in_elems < 0 || out_elems < 0 || arena_elems < 0)
    return fail(FC_EINVAL,
                "in_elems, out_elems and arena_elems must be >= 0 (got %lld, %lld, %lld)",
                (long long)in_elems, (long long)out_elems, (long long)arena_elems);
  int64_t bytes;
  if (!product({arena_elems, elem_size(t)}, &bytes) || bytes > INT64_MAX - 64)
    return fail(FC_EOVERFLOW, "arena of %lld elements overflows int64", (long long)arena_elems);
  std::unique_ptr<fc_plan> p(new (std::nothrow) fc_plan{
      t, in_elems, out_elems, arena_elems, {nullptr, std::free}, {}, {}, {}});
  if (!p) return fail(FC_ENOMEM, "cannot allocate a plan");
  p->arena.reset((char *)std::aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64)));
  if (!p->arena)
    return fail(FC_ENOMEM, "cannot allocate the plan's arena of %lld bytes", (long long)bytes);
  *out = p.release();
  return FC_OK;
}

void fc_plan_destroy(fc_plan *p) { delete p; }

int64_t fc_plan_step_count(const fc_plan *p) { return p ? (int64_t)p->steps.size() : 0; }

fc_status fc_plan_add_constant(fc_plan *p, const void *data, int64_t elems, int64_t *id) {
  clear_error();
  if (!p || !id || (elems > 0 && !data))
    return fail(FC_EINVAL, "plan, data and id must not be NULL");
  int64_t bytes;
  if (elems < 0 || !product({elems, elem_size(p->t)}, &bytes) || bytes > INT64_MAX - 64)
    return fail(FC_EINVAL, "constant of %lld elements is negative or overflows", (long long)elems);
  fc_plan::Constant c;
  c.owned.reset((char *)std::aligned_alloc(64, (size_t)((bytes + 63) / 64 * 64 + 64)));
  if (!c.owned)
    return fail(FC_ENOMEM, "cannot allocate a constant of %lld bytes", (long long)bytes);
  if (bytes) std::memcpy(c.owned.get(), data, (size_t)bytes);
  c.data = c.owned.get();
  c.elems = elems;
  p->constants.push_back(std::move(c));
  *id = (int64_t)p->constants.size() - 1;
  return FC_OK;
}

fc_status fc_plan_add_constant_view(fc_plan *p, const void *data, int64_t elems, int64_t *id) {
  clear_error();
  if (!p || !id || !data) return fail(FC_EINVAL, "plan, data and id must not be NULL");
  int64_t bytes;
  if (elems < 0 || !product({elems, elem_size(p->t)}, &bytes))
    return fail(FC_EINVAL, "constant of %lld elements is negative or overflows", (long long)elems);
  fc_plan::Constant c;
  c.data = (const char *)data;
  c.elems = elems;
  p->constants.push_back(std::move(c));
  *id = (int64_t)p->constants.size() - 1;
  return FC_OK;
}

fc_status fc_plan_add_value(fc_plan *p, int32_t kind, int64_t offset, int64_t elems, int64_t *id) {
  clear_error();
  if (!p || !id) return fail(FC_EINVAL, "plan and id must not be NULL");
  if (kind < FC_VALUE_INPUT || kind > FC_VALUE_ARENA)
    return fail(FC_EINVAL, "value kind %d is not an fc_value_kind", (int)kind);
  const int64_t cap = kind == FC_VALUE_INPUT    ? p->in_elems
                      : kind == FC_VALUE_OUTPUT ? p->out_elems
                                                : p->arena_elems;
  if (offset < 0 || elems < 0 || offset > cap || elems > cap - offset)
    return fail(FC_EINVAL, "value [%lld, %lld + %lld) lies outside its buffer of %lld elements",
                (long long)offset, (long long)offset, (long long)elems, (long long)cap);
  p->values.push_back({kind, offset, elems});
  *id = (int64_t)p->values.size() - 1;
  return FC_OK;
}

fc_status fc_plan_add_step(fc_plan *p, const fc_plan_step *s) {
  clear_error();
  if (!p || !s) return fail(FC_EINVAL, "plan and step must not be NULL");
  if (s->act < FC_ACT_NONE || s->act >= FC_ACT_COUNT_)
    return fail(FC_EINVAL, "plan step: act %d is not an fc_act", (int)s->act);
  Need nd;
  if (fc_status st = step_needs(*s, &nd)) return st;
  const int64_t nv = (int64_t)p->values.size(), nc = (int64_t)p->constants.size();
  struct Ref {
    const char *name;
    int64_t id, need, count;
    bool value;
  };
  const Ref refs[] = {
      {"in0", s->in0, nd.in0, nv, true},           {"in1", s->in1, nd.in1, nv, true},
      {"in2", s->in2, nd.in2, nv, true},           {"out", s->out, nd.out, nv, true},
      {"weight", s->weight, nd.weight, nc, false}, {"bias", s->bias, nd.bias, nc, false}};
  for (const Ref &r : refs) {
    if (r.need < 0) {
      if (r.id >= 0)
        return fail(FC_EINVAL, "plan step: %s is given but op %d does not use it", r.name,
                    (int)s->op);
      continue;
    }
    if (r.id < 0 || r.id >= r.count)
      return fail(FC_EINVAL, "plan step: %s id %lld does not exist", r.name, (long long)r.id);
    const int64_t have = r.value ? p->values[r.id].elems : p->constants[r.id].elems;
    if (have < r.need)
      return fail(FC_EINVAL, "plan step: %s holds %lld elements, op %d needs %lld", r.name,
                  (long long)have, (int)s->op, (long long)r.need);
  }
  const fc_plan::Value &o = p->values[s->out];
  if (o.kind == FC_VALUE_INPUT)
    return fail(FC_EINVAL, "plan step: out is the caller's input (inputs are never written)");
  const struct {
    int64_t id;
    bool in_place;
  } ins[] = {{s->in0, nd.in0_in_place}, {s->in1, nd.in1_in_place}, {s->in2, nd.in2_in_place}};
  for (const auto &in : ins) {
    if (in.id < 0) continue;
    const fc_plan::Value &v = p->values[in.id];
    const bool same = v.kind == o.kind && v.offset == o.offset;
    if (overlap(v, o) && !(in.in_place && same))
      return fail(FC_EINVAL, "plan step: op %d's output overlaps an input it reads", (int)s->op);
  }
  if (s->act != FC_ACT_NONE && (s->op == FC_PLAN_LRN || s->op == FC_PLAN_COPY_CHANNELS))
    return fail(FC_EINVAL, "plan step: op %d takes no activation (act %d)", (int)s->op,
                (int)s->act);
  fc_conv2d_prepared *prep = nullptr;
  if (s->op == FC_PLAN_CONV) {
    if (fc_status st = fc_conv2d_prepare(&s->conv, p->t, (fc_algo)s->algo,
                                         p->constants[s->weight].data, 1, &prep))
      return st;
  }
  p->prepared.emplace_back(prep);
  p->steps.push_back(*s);
  return FC_OK;
}

fc_status fc_plan_run(fc_plan *p, const void *x, void *y, double *seconds_or_null) {
  clear_error();
  if (!p) return fail(FC_EINVAL, "plan must not be NULL");
  if ((p->in_elems && !x) || (p->out_elems && !y))
    return fail(FC_EINVAL, "x and y must not be NULL");
  return run_entry([&] {
    Scratch &sc = p->scratch;
    sc.misses = 0;
    sc.blas_threads = 0;
    if (fc_status st = blas_reserve(gemm_threads())) return st;
    sc.blas_threads = gemm_threads();
    struct Install {  // the scratch is this thread's for the run
      Scratch *prev;
      explicit Install(Scratch *s) : prev(current_scratch()) { current_scratch() = s; }
      ~Install() { current_scratch() = prev; }
    } install(&sc);
    fc_status st = FC_OK;
    for (size_t i = 0; i < p->steps.size() && st == FC_OK; ++i) {
      const double t0 = seconds_or_null ? omp_get_wtime() : 0.0;
      sc.used = sc.live = 0;  // (every Buffer of the previous step is freed)
      st = p->t == FC_F32 ? run_step(*p, i, (const float *)x, (float *)y)
                          : run_step(*p, i, (const double *)x, (double *)y);
      if (seconds_or_null) seconds_or_null[i] = omp_get_wtime() - t0;
    }
    p->last_allocations = sc.misses;
    if (sc.peak > sc.cap) {  // grow for the next run (a failure only costs heap calls then)
      const size_t cap = (sc.peak + 4095) / 4096 * 4096;
      if (char *mem = (char *)std::aligned_alloc(64, cap)) {
        p->scratch_mem.reset(mem);
        sc.base = mem;
        sc.cap = cap;
      }
    }
    return st;
  });
}

fc_status fc_plan_workspace(const fc_plan *p, int64_t *scratch_bytes, int64_t *allocations) {
  clear_error();
  if (!p || !scratch_bytes || !allocations)
    return fail(FC_EINVAL, "plan and outputs must not be NULL");
  *scratch_bytes = (int64_t)p->scratch.cap;
  *allocations = p->last_allocations;
  return FC_OK;
}

}  // extern "C"
