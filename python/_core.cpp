// fastconv._core: ndarray <-> C ABI. Converts, checks buffer sizes against the descriptor,
// releases the GIL, calls. No arithmetic lives here; shapes are computed in functional.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "_core_common.h"
#include "fastconv/fastconv.h"

namespace py = pybind11;

namespace {

using fcpy::check;
using fcpy::check_array;
using fcpy::dtype_of;
using fcpy::opt_in;
using fcpy::opt_out;
using fcpy::product;

// n c h w k kh kw stride_h stride_w pad_h pad_w dil_h dil_w groups
using Desc = std::array<int64_t, 14>;

fc_conv2d_desc to_desc(const Desc &a) {
  return fc_conv2d_desc{a[0], a[1], a[2], a[3],  a[4],  a[5],  a[6],
                        a[7], a[8], a[9], a[10], a[11], a[12], a[13]};
}

std::pair<int64_t, int64_t> output_size(const Desc &a) {
  fc_conv2d_desc d = to_desc(a);
  int64_t ho = 0, wo = 0;
  check(fc_conv2d_output_size(&d, &ho, &wo));
  return {ho, wo};
}

struct Sizes {
  int64_t x, w, y, k;
};
Sizes sizes(const Desc &a) {
  auto [ho, wo] = output_size(a);  // validates the descriptor, overflow included
  return {a[0] * a[1] * a[2] * a[3], a[4] * (a[1] / a[13]) * a[5] * a[6], a[0] * a[4] * ho * wo,
          a[4]};
}

void conv2d_forward(const Desc &a, int algo, const py::array &x, const py::array &w,
                    const py::object &b, py::array &y) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, z.x, false);
  check_array(w, "weight", t, z.w, false);
  check_array(y, "out", t, z.y, true);
  py::array bias;
  const void *bp = opt_in(b, "bias", t, z.k, &bias);
  check(fcpy::call([&] {
    return fc_conv2d_forward(&d, t, (fc_algo)algo, x.data(), w.data(), bp, y.mutable_data());
  }));
}

// Whether two arrays' bytes overlap.
bool overlap(const py::array &a, const py::array &b) {
  const char *a0 = (const char *)a.data(), *b0 = (const char *)b.data();
  return a.nbytes() && b.nbytes() && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

// accumulate: grad_x += the data gradient (fc_conv2d_backward_data_into), else grad_x =.
void conv2d_backward_data(const Desc &a, int algo, const py::array &dy, const py::array &w,
                          py::array &dx, bool accumulate) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, z.y, false);
  check_array(w, "weight", t, z.w, false);
  check_array(dx, "grad_x", t, z.x, true);
  if (accumulate && (overlap(dx, dy) || overlap(dx, w)))
    throw py::value_error("grad_x: must not overlap grad_out or weight when accumulating");
  check(fcpy::call([&] {
    return accumulate ? fc_conv2d_backward_data_into(&d, t, (fc_algo)algo, dy.data(), w.data(),
                                                     dx.mutable_data())
                      : fc_conv2d_backward_data(&d, t, (fc_algo)algo, dy.data(), w.data(),
                                                dx.mutable_data());
  }));
}

void conv2d_backward_weight(const Desc &a, int algo, const py::array &dy, const py::array &x,
                            const py::object &dw, const py::object &db) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, z.y, false);
  check_array(x, "x", t, z.x, false);
  py::array dwa, dba;
  void *dwp = opt_out(dw, "grad_w", t, z.w, &dwa), *dbp = opt_out(db, "grad_b", t, z.k, &dba);
  check(fcpy::call([&] {
    return fc_conv2d_backward_weight(&d, t, (fc_algo)algo, dy.data(), x.data(), dwp, dbp);
  }));
}

// A convolution's filters prepared once (fc_conv2d_prepare, borrowing the weights: this object
// keeps the array alive, and the caller keeps it unchanged) for a training step's forward and
// data gradient: Winograd's data gradient then reuses the forward's filter transform.
class Prepared {
 public:
  Prepared(const Desc &a, int algo, const py::array &w) : z_(sizes(a)), w_(w) {
    t_ = dtype_of(w, "weight");
    check_array(w, "weight", t_, z_.w, false);
    const fc_conv2d_desc d = to_desc(a);
    fc_conv2d_prepared *p = nullptr;
    check(fcpy::call([&] { return fc_conv2d_prepare(&d, t_, (fc_algo)algo, w.data(), 1, &p); }));
    p_.reset(p);
  }

  // act: an fc_act applied in the output stage (nn.Sequential's Conv2d, ReLU pairs).
  void forward(const py::array &x, const py::object &b, py::array &y, int act) {
    check_array(x, "x", t_, z_.x, false);
    check_array(y, "out", t_, z_.y, true);
    py::array bias;
    const void *bp = opt_in(b, "bias", t_, z_.k, &bias);
    check(fcpy::call([&] {
      return fc_conv2d_forward_prepared(p_.get(), x.data(), bp, nullptr, act, 0.0,
                                        y.mutable_data());
    }));
  }

  void backward_data(const py::array &dy, py::array &dx, bool accumulate) {
    check_array(dy, "grad_out", t_, z_.y, false);
    check_array(dx, "grad_x", t_, z_.x, true);
    if (overlap(dx, dy) || overlap(dx, w_))
      throw py::value_error("grad_x: must not overlap grad_out or weight");
    check(fcpy::call([&] {
      return fc_conv2d_backward_data_prepared(p_.get(), dy.data(), accumulate ? 1 : 0,
                                              dx.mutable_data());
    }));
  }

 private:
  struct Destroy {
    void operator()(fc_conv2d_prepared *p) const { fc_conv2d_prepared_destroy(p); }
  };
  Sizes z_;
  py::array w_;  // (borrowed by the prepared filters)
  fc_dtype t_ = FC_F32;
  std::unique_ptr<fc_conv2d_prepared, Destroy> p_;
};

void relu_forward(const py::array &x, py::array &y) {
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, (int64_t)x.size(), false);
  check_array(y, "out", t, (int64_t)x.size(), true);
  check(fcpy::call(
      [&] { return fc_relu_forward(t, (int64_t)x.size(), x.data(), y.mutable_data()); }));
}

void add_inplace(py::array &acc, const py::array &x) {
  fc_dtype t = dtype_of(acc, "acc");
  check_array(acc, "acc", t, (int64_t)acc.size(), true);
  check_array(x, "x", t, (int64_t)acc.size(), false);
  check(fcpy::call(
      [&] { return fc_add_inplace(t, (int64_t)acc.size(), acc.mutable_data(), x.data()); }));
}

void relu_backward(const py::array &dy, const py::array &y, py::array &dx) {
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, (int64_t)dy.size(), false);
  check_array(y, "y", t, (int64_t)dy.size(), false);
  check_array(dx, "grad_x", t, (int64_t)dy.size(), true);
  check(fcpy::call([&] {
    return fc_relu_backward(t, (int64_t)dy.size(), dy.data(), y.data(), dx.mutable_data());
  }));
}

// An array as rows of contiguous elements whose starts lie a uniform stride apart (in
// elements): the trailing axes that lie contiguous make a row, and the leading ones must step
// uniformly over rows (a slice of a C-contiguous array along one axis is such an array). Axes
// of length 1 are ignored. False when the layout has no such split.
bool as_rows(const py::array &a, int64_t *rows, int64_t *cols, int64_t *stride) {
  if (a.size() == 0) {
    *rows = *cols = *stride = 0;
    return true;
  }
  const int64_t item = a.itemsize();
  std::vector<std::pair<int64_t, int64_t>> dims;  // (length, byte stride), no length-1 axes
  for (py::ssize_t i = 0; i < a.ndim(); ++i)
    if (a.shape(i) != 1) dims.push_back({a.shape(i), a.strides(i)});
  int64_t c = 1;
  auto k = (int64_t)dims.size();
  while (k > 0 && dims[k - 1].second == c * item) c *= dims[--k].first;
  if (k == 0) {
    *rows = 1;
    *cols = *stride = c;
    return true;
  }
  const int64_t ld = dims[k - 1].second;
  if (ld <= 0 || ld % item) return false;
  int64_t r = dims[k - 1].first;
  for (int64_t i = k - 2; i >= 0; --i) {
    if (dims[i].second != dims[i + 1].second * dims[i + 1].first) return false;
    r *= dims[i].first;
  }
  *rows = r;
  *cols = c;
  *stride = ld / item;
  return *stride >= c;
}

void check_same_shape(const py::array &a, const char *name, const py::array &ref,
                      const char *ref_name) {
  bool same = a.ndim() == ref.ndim();
  for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == ref.shape(i);
  if (!same) throw py::value_error(std::string(name) + ": shape differs from " + ref_name + "'s");
}

// relu_backward for a grad_out laid out as rows (as_rows), e.g. the slice of a concatenation's
// gradient that is one input's. False, with nothing written, when it has no such layout.
bool relu_backward_rows(const py::array &dy, const py::array &y, py::array &dx) {
  fc_dtype t = dtype_of(y, "y");
  check_array(y, "y", t, (int64_t)y.size(), false);
  check_array(dx, "grad_x", t, (int64_t)y.size(), true);
  if (dtype_of(dy, "grad_out") != t) throw py::type_error("grad_out: dtype differs from y's");
  check_same_shape(dy, "grad_out", y, "y");
  int64_t rows, cols, ld;
  if (!as_rows(dy, &rows, &cols, &ld)) return false;
  check(fcpy::call([&] {
    return fc_relu_backward_rows(t, rows, cols, dy.data(), ld, y.data(), dx.mutable_data());
  }));
  return true;
}

// A fused ReLU's mask (fc_batch_norm_forward_masked): None, or uint8, C-contiguous, of
// n * c * ((hw + 7) / 8) bytes.
uint8_t *relu_mask(const py::object &o, int64_t n, int64_t c, int64_t hw, bool writable,
                   py::array *keep) {
  if (o.is_none()) return nullptr;
  if (!py::isinstance<py::array>(o)) throw py::type_error("mask: must be a numpy array");
  *keep = py::reinterpret_borrow<py::array>(o);
  if (!fcpy::dtype_is(*keep, py::dtype::of<uint8_t>()))
    throw py::type_error("mask: dtype must be uint8, got " +
                         std::string(py::str(py::repr(keep->dtype()))));
  fcpy::check_layout(*keep, "mask", fcpy::product({n, c, (hw + 7) / 8}, "batch_norm", 0), writable);
  return (uint8_t *)(writable ? keep->mutable_data() : keep->data());
}

// x (n, c, hw) as three sizes; the arrays are checked against them. With running_mean and
// running_var (batch statistics only; var given), they are updated in the same call
// (fc_batch_norm_update_running, count = n * hw).
void batch_norm_forward(const py::array &x, int64_t n, int64_t c, int64_t hw, const py::object &w,
                        const py::object &b, const py::object &res, int act, bool batch_stats,
                        double eps, py::array &mean, const py::object &var, py::array &invstd,
                        py::array &y, const py::object &mask, const py::object &running_mean,
                        const py::object &running_var, double momentum) {
  fc_dtype t = dtype_of(x, "x");
  const int64_t count = product({n, c, hw}, "batch_norm", 0);
  check_array(x, "x", t, count, false);
  check_array(mean, "mean", t, c, batch_stats);
  check_array(invstd, "invstd", t, c, batch_stats);
  check_array(y, "out", t, count, true);
  py::array kw, kb, kr, kv;
  const void *wp = opt_in(w, "weight", t, c, &kw), *bp = opt_in(b, "bias", t, c, &kb),
             *rp = opt_in(res, "residual", t, count, &kr);
  void *vp = opt_out(var, "var", t, c, &kv);
  void *mp = batch_stats ? mean.mutable_data() : const_cast<void *>(mean.data());
  void *ip = batch_stats ? invstd.mutable_data() : const_cast<void *>(invstd.data());
  py::array km, krm, krv;
  uint8_t *maskp = relu_mask(mask, n, c, hw, true, &km);
  if (maskp && act != FC_ACT_RELU) throw py::value_error("mask: needs act == 1 (the fused ReLU)");
  void *rmp = opt_out(running_mean, "running_mean", t, c, &krm),
       *rvp = opt_out(running_var, "running_var", t, c, &krv);
  if ((rmp || rvp) && !(batch_stats && vp))
    throw py::value_error("running_mean, running_var: need batch statistics and var");
  check(fcpy::call([&] {
    fc_status st =
        maskp ? fc_batch_norm_forward_masked(t, n, c, hw, x.data(), wp, bp, rp, batch_stats, eps,
                                             mp, vp, ip, y.mutable_data(), maskp)
              : fc_batch_norm_forward(t, n, c, hw, x.data(), wp, bp, rp, act, batch_stats, eps, mp,
                                      vp, ip, y.mutable_data());
    if (st == FC_OK && (rmp || rvp))
      st = fc_batch_norm_update_running(t, c, n * hw, momentum, mp, vp, rmp, rvp);
    return st;
  }));
}

void batch_norm_backward(const py::array &dy, const py::array &x, int64_t n, int64_t c, int64_t hw,
                         const py::object &y, const py::array &mean, const py::array &invstd,
                         const py::object &w, bool batch_stats, const py::object &dx,
                         const py::object &dres, const py::object &dw, const py::object &db,
                         const py::object &mask) {
  fc_dtype t = dtype_of(dy, "grad_out");
  const int64_t count = product({n, c, hw}, "batch_norm", 0);
  check_array(dy, "grad_out", t, count, false);
  check_array(x, "x", t, count, false);
  check_array(mean, "mean", t, c, false);
  check_array(invstd, "invstd", t, c, false);
  py::array ky, kw, kdx, kdr, kdw, kdb;
  const void *yp = opt_in(y, "y", t, count, &ky), *wp = opt_in(w, "weight", t, c, &kw);
  void *dxp = opt_out(dx, "grad_x", t, count, &kdx),
       *drp = opt_out(dres, "grad_residual", t, count, &kdr),
       *dwp = opt_out(dw, "grad_weight", t, c, &kdw), *dbp = opt_out(db, "grad_bias", t, c, &kdb);
  py::array km;
  const uint8_t *maskp = relu_mask(mask, n, c, hw, false, &km);
  if (maskp && yp) throw py::value_error("y and mask: pass one of them, not both");
  check(fcpy::call([&] {
    return maskp
               ? fc_batch_norm_backward_masked(t, n, c, hw, dy.data(), x.data(), maskp, mean.data(),
                                               invstd.data(), wp, batch_stats, dxp, drp, dwp, dbp)
               : fc_batch_norm_backward(t, n, c, hw, dy.data(), x.data(), yp, mean.data(),
                                        invstd.data(), wp, batch_stats, dxp, drp, dwp, dbp);
  }));
}

// The optimizer's tensors: per parameter, param, grad and `states` state arrays (a list of
// lists), all of param's dtype and size, C-contiguous; params and states writable.
std::vector<fc_optim_tensor> optim_tensors(const py::list &params, const py::list &grads,
                                           const py::list &states, int nstates, fc_dtype *t,
                                           std::vector<py::array> *keep) {
  const size_t n = params.size();
  if (grads.size() != n || states.size() != n)
    throw py::value_error("params, grads and states must have the same length");
  std::vector<fc_optim_tensor> ts(n);
  *t = FC_F64;
  for (size_t i = 0; i < n; ++i) {
    auto p = py::reinterpret_borrow<py::array>(params[i]),
         g = py::reinterpret_borrow<py::array>(grads[i]);
    const std::string at = " " + std::to_string(i);
    if (i == 0) *t = dtype_of(p, "param");
    check_array(p, ("param" + at).c_str(), *t, (int64_t)p.size(), true);
    check_array(g, ("grad" + at).c_str(), *t, (int64_t)p.size(), false);
    ts[i] = fc_optim_tensor{
        p.mutable_data(), g.data(), {nullptr, nullptr, nullptr}, (int64_t)p.size(), 0, 0, 0};
    auto st = py::reinterpret_borrow<py::list>(states[i]);
    if ((int)st.size() < nstates) throw py::value_error("state" + at + ": too few arrays");
    for (int k = 0; k < nstates; ++k) {
      auto a = py::reinterpret_borrow<py::array>(st[k]);
      check_array(a, ("state" + at).c_str(), *t, (int64_t)p.size(), true);
      ts[i].state[k] = a.mutable_data();
      keep->push_back(a);
    }
    keep->push_back(p);
    keep->push_back(g);
  }
  return ts;
}

void sgd_step(const py::list &params, const py::list &grads, const py::list &bufs,
              const std::vector<int> &init, double lr, double momentum, double dampening,
              double weight_decay, bool nesterov, bool maximize) {
  std::vector<py::array> keep;
  fc_dtype t;
  auto ts = optim_tensors(params, grads, bufs, momentum != 0 ? 1 : 0, &t, &keep);
  if (init.size() != ts.size()) throw py::value_error("init must have one flag per parameter");
  for (size_t i = 0; i < ts.size(); ++i) ts[i].init = init[i];
  const fc_sgd_args a{lr, momentum, dampening, weight_decay, nesterov, maximize};
  check(fcpy::call([&] { return fc_sgd_step(t, (int64_t)ts.size(), ts.data(), &a); }));
}

void adam_step(const py::list &params, const py::list &grads, const py::list &states,
               const std::vector<double> &step_size, const std::vector<double> &bias2_sqrt,
               double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
               bool maximize, bool decoupled) {
  std::vector<py::array> keep;
  fc_dtype t;
  auto ts = optim_tensors(params, grads, states, amsgrad ? 3 : 2, &t, &keep);
  if (step_size.size() != ts.size() || bias2_sqrt.size() != ts.size())
    throw py::value_error("step_size and bias2_sqrt must have one value per parameter");
  for (size_t i = 0; i < ts.size(); ++i) {
    ts[i].step_size = step_size[i];
    ts[i].bias2_sqrt = bias2_sqrt[i];
  }
  const fc_adam_args a{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled};
  check(fcpy::call([&] { return fc_adam_step(t, (int64_t)ts.size(), ts.data(), &a); }));
}

// Softmax cross-entropy over (outer, c, inner) arrays.
void xent_forward(const py::array &x, const py::array &q, int64_t outer, int64_t c, int64_t inner,
                  py::array &loss, py::array &lse) {
  fc_dtype t = dtype_of(x, "x");
  const int64_t count = product({outer, c, inner}, "cross_entropy", 0),
                rows = product({outer, inner}, "cross_entropy", 0);
  check_array(x, "x", t, count, false);
  check_array(q, "target", t, count, false);
  check_array(loss, "loss", t, rows, true);
  check_array(lse, "lse", t, rows, true);
  check(fcpy::call([&] {
    return fc_softmax_cross_entropy_forward(t, outer, c, inner, x.data(), q.data(),
                                            loss.mutable_data(), lse.mutable_data());
  }));
}

void xent_backward(const py::array &x, const py::array &q, int64_t outer, int64_t c, int64_t inner,
                   const py::array &lse, const py::array &dloss, py::array &dx) {
  fc_dtype t = dtype_of(x, "x");
  const int64_t count = product({outer, c, inner}, "cross_entropy", 0),
                rows = product({outer, inner}, "cross_entropy", 0);
  check_array(x, "x", t, count, false);
  check_array(q, "target", t, count, false);
  check_array(lse, "lse", t, rows, false);
  check_array(dloss, "grad_out", t, rows, false);
  check_array(dx, "grad_x", t, count, true);
  check(fcpy::call([&] {
    return fc_softmax_cross_entropy_backward(t, outer, c, inner, x.data(), q.data(), lse.data(),
                                             dloss.data(), dx.mutable_data());
  }));
}

}  // namespace

void fc_bind_pool(py::module_ &m);    // _core_pool.cpp
void fc_bind_memory(py::module_ &m);  // _core_memory.cpp
void fc_bind_plan(py::module_ &m);    // _core_plan.cpp

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastconv's binding of the libfastconv C ABI (see fastconv.functional for the API)";
  m.def("conv2d_output_size", &output_size, py::arg("desc"));
  m.def("conv2d_supports", [](const Desc &a, int algo) {
    fc_conv2d_desc d = to_desc(a);
    fc_status s = fc_conv2d_supports(&d, (fc_algo)algo);
    if (s == FC_EUNSUPPORTED) return false;
    check(s);
    return true;
  }, py::arg("desc"), py::arg("algo"));
  m.def("conv2d_why_not", [](const Desc &a, int algo) {
    fc_conv2d_desc d = to_desc(a);
    fc_status s = fc_conv2d_supports(&d, (fc_algo)algo);
    if (s == FC_EUNSUPPORTED) return std::string(fc_last_error());
    check(s);
    return std::string();
  }, py::arg("desc"), py::arg("algo"), "Why algo cannot run desc ('' when it can).");
  m.def("conv2d_choose", [](const Desc &a, int direction) {
    fc_conv2d_desc d = to_desc(a);
    fc_algo algo;
    check(fc_conv2d_choose_for(&d, (fc_direction)direction, &algo));
    return (int)algo;
  }, py::arg("desc"), py::arg("direction") = 0);
  m.def("conv2d_choose_prepared",
        [](const Desc &a) {
    fc_conv2d_desc d = to_desc(a);
    fc_algo algo;
    check(fc_conv2d_choose_prepared(&d, &algo));
    return (int)algo;
  }, py::arg("desc"),
        "The forward's algorithm with filters prepared once (fc_conv2d_choose_prepared).");
  m.def("conv2d_prepared_reuse",
        [](const Desc &a, int algo, bool f64) {
    fc_conv2d_desc d = to_desc(a);
    int reuses = 0;
    check(fc_conv2d_prepared_reuse(&d, f64 ? FC_F64 : FC_F32, (fc_algo)algo, &reuses));
    return reuses != 0;
  }, py::arg("desc"), py::arg("algo"), py::arg("f64") = false,
        "Whether Conv2dPrepared's data gradient reuses the forward's filter transform.");
  py::class_<Prepared>(m, "Conv2dPrepared")
      .def(py::init<const Desc &, int, const py::array &>(), py::arg("desc"), py::arg("algo"),
           py::arg("weight"))
      .def("forward", &Prepared::forward, py::arg("x"), py::arg("bias"), py::arg("out"),
           py::arg("act") = 0)
      .def("backward_data", &Prepared::backward_data, py::arg("grad_out"), py::arg("grad_x"),
           py::arg("accumulate") = false);
  m.def("conv2d_forward", &conv2d_forward, py::arg("desc"), py::arg("algo"), py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("out"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("desc"), py::arg("algo"),
        py::arg("grad_out"), py::arg("weight"), py::arg("grad_x"), py::arg("accumulate") = false);
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("desc"), py::arg("algo"),
        py::arg("grad_out"), py::arg("x"), py::arg("grad_w"), py::arg("grad_b"));
  m.attr("MAX_THREADS") = FC_MAX_THREADS;
  m.def("set_num_threads", &fc_set_num_threads, py::arg("n"));
  m.def("set_local_num_threads", &fc_set_local_num_threads, py::arg("n"),
        "This thread's override of the thread count (0 = none); returns the previous one.");
  m.def("get_num_threads", &fc_get_num_threads);
  m.def("workspace_cache_info", [] {
    int64_t bytes = 0, limit = 0;
    fc_workspace_cache_info(&bytes, &limit);
    return py::make_tuple(bytes, limit);
  }, "fc_workspace_cache_info: (bytes held, limit).");
  m.def("workspace_cache_release", &fc_workspace_cache_release,
        "fc_workspace_cache_release: the bytes given back.");
  m.def("hardware", [] {
    fc_hw_info h;
    check(fc_hardware(&h));
    py::dict d;
    d["isa"] = h.isa;
    d["best_isa"] = h.best_isa;
    d["l1d_bytes"] = h.l1d_bytes;
    d["l2_bytes"] = h.l2_bytes;
    d["l3_bytes"] = h.l3_bytes;
    d["cores"] = h.cores;
    d["work_items"] = fc_work_items();
    d["model"] = std::string(h.model);
    d["vendor"] = std::string(h.vendor);
    d["full_avx512"] = h.full_avx512 != 0;
    d["fma512_ratio"] = h.fma512_ratio;
    return d;
  }, "fc_hardware as a dict of its fields, and fc_work_items as work_items.");
  m.def("core_round_trip",
        [](int cpu_a, int cpu_b, double seconds) {
    double ns = 0;
    fc_status st;
    {
      py::gil_scoped_release nogil;
      st = fc_core_round_trip(cpu_a, cpu_b, seconds, &ns);
    }
    check(st);
    return ns;
  }, py::arg("cpu_a"), py::arg("cpu_b"), py::arg("seconds"),
        "fc_core_round_trip: a cache line's round trip between two CPUs, in ns.");
  m.def("isa", &fc_isa);
  m.def("set_autotune", [](int mode) { check(fc_set_autotune(mode)); }, py::arg("mode"));
  m.def("get_autotune", &fc_get_autotune);
  m.def("autotune_clear", &fc_autotune_clear);
  m.def("autotune_size", &fc_autotune_size);
  m.def("autotune_export", [] {
    int64_t needed = 0;
    check(fc_autotune_export(nullptr, 0, &needed));
    std::string text((size_t)needed, '\0');
    check(fc_autotune_export(text.data(), needed, &needed));
    text.resize((size_t)needed - 1);
    return text;
  });
  m.def("autotune_import", [](const std::string &text) {
    int64_t n = 0;
    check(fc_autotune_import(text.c_str(), &n));
    return n;
  }, py::arg("text"));
  m.def("conv2d_tuned", [](const Desc &a, int direction, bool f64) -> py::object {
    fc_conv2d_desc d = to_desc(a);
    fc_algo algo;
    if (fc_conv2d_tuned(&d, (fc_direction)direction, f64 ? FC_F64 : FC_F32, &algo) != FC_OK)
      return py::none();
    return py::str(fc_algo_name(algo));
  }, py::arg("desc"), py::arg("direction"), py::arg("f64"));
  py::list names;
  for (int i = 0; i < fc_algo_count(); ++i) names.append(fc_algo_name((fc_algo)i));
  m.attr("ALGO_NAMES") = names;
  m.def("algo_flags", [](int algo) { return fc_algo_flags((fc_algo)algo); }, py::arg("algo"),
        "fc_algo_flags: FC_ALGO_FLAG_* bits (0 for auto and invalid values).");
  m.def("algo_description", [](int algo) {
    const char *d = fc_algo_description((fc_algo)algo);
    return d ? std::string(d) : std::string();
  }, py::arg("algo"));
  m.attr("ALGO_FLAG_FORWARD") = FC_ALGO_FLAG_FORWARD;
  m.attr("ALGO_FLAG_BACKWARD_DATA") = FC_ALGO_FLAG_BACKWARD_DATA;
  m.attr("ALGO_FLAG_BACKWARD_WEIGHT") = FC_ALGO_FLAG_BACKWARD_WEIGHT;
  m.attr("ALGO_FLAG_PHASE_PLANES") = FC_ALGO_FLAG_PHASE_PLANES;
  m.attr("ALGO_FLAG_NONFINITE_FALLBACK") = FC_ALGO_FLAG_NONFINITE_FALLBACK;
  m.def("conv2d_cost",
        [](const Desc &a, int algo, int direction) -> py::object {
    fc_conv2d_desc d = to_desc(a);
    double cost = 0;
    fc_status s = fc_conv2d_cost(&d, (fc_algo)algo, (fc_direction)direction, &cost);
    if (s == FC_EUNSUPPORTED) return py::none();
    check(s);
    return py::float_(cost);
  }, py::arg("desc"), py::arg("algo"), py::arg("direction") = 0,
        "fc_conv2d_cost: the cost estimate, None when algo cannot run desc.");
  m.def("relu_forward", &relu_forward, py::arg("x"), py::arg("out"));
  m.def("relu_backward", &relu_backward, py::arg("grad_out"), py::arg("y"), py::arg("grad_x"));
  m.def("add_inplace", &add_inplace, py::arg("acc"), py::arg("x"));
  m.def("relu_backward_rows", &relu_backward_rows, py::arg("grad_out"), py::arg("y"),
        py::arg("grad_x"));
  m.def("softmax_cross_entropy_forward", &xent_forward, py::arg("x"), py::arg("target"),
        py::arg("outer"), py::arg("c"), py::arg("inner"), py::arg("loss"), py::arg("lse"));
  m.def("softmax_cross_entropy_backward", &xent_backward, py::arg("x"), py::arg("target"),
        py::arg("outer"), py::arg("c"), py::arg("inner"), py::arg("lse"), py::arg("grad_out"),
        py::arg("grad_x"));
  m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grads"), py::arg("bufs"),
        py::arg("init"), py::arg("lr"), py::arg("momentum"), py::arg("dampening"),
        py::arg("weight_decay"), py::arg("nesterov"), py::arg("maximize"));
  m.def("adam_step", &adam_step, py::arg("params"), py::arg("grads"), py::arg("states"),
        py::arg("step_size"), py::arg("bias2_sqrt"), py::arg("lr"), py::arg("beta1"),
        py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("amsgrad"),
        py::arg("maximize"), py::arg("decoupled"));
  m.def("batch_norm_forward", &batch_norm_forward, py::arg("x"), py::arg("n"), py::arg("c"),
        py::arg("hw"), py::arg("weight"), py::arg("bias"), py::arg("residual"), py::arg("act"),
        py::arg("batch_stats"), py::arg("eps"), py::arg("mean"), py::arg("var"), py::arg("invstd"),
        py::arg("out"), py::arg("mask") = py::none(), py::arg("running_mean") = py::none(),
        py::arg("running_var") = py::none(), py::arg("momentum") = 0.0);
  m.def("batch_norm_backward", &batch_norm_backward, py::arg("grad_out"), py::arg("x"),
        py::arg("n"), py::arg("c"), py::arg("hw"), py::arg("y"), py::arg("mean"), py::arg("invstd"),
        py::arg("weight"), py::arg("batch_stats"), py::arg("grad_x"), py::arg("grad_residual"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("mask") = py::none());
  fc_bind_pool(m);
  fc_bind_memory(m);
  fc_bind_plan(m);
}
