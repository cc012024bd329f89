// fastconv._core: ndarray <-> C ABI. Converts, checks buffer sizes against the descriptor,
// releases the GIL, calls. No arithmetic lives here; shapes are computed in functional.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <string>

#include "_core_common.h"
#include "fastconv/fastconv.h"

namespace py = pybind11;

namespace {

using fcpy::check;
using fcpy::check_array;
using fcpy::dtype_of;

using Desc = std::array<int64_t, 14>;  // n c h w k kh kw stride_h stride_w pad_h pad_w dil_h dil_w groups

fc_conv2d_desc to_desc(const Desc &a) {
  return fc_conv2d_desc{a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]};
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
  return {a[0] * a[1] * a[2] * a[3], a[4] * (a[1] / a[13]) * a[5] * a[6], a[0] * a[4] * ho * wo, a[4]};
}

void conv2d_forward(const Desc &a, int algo, const py::array &x, const py::array &w,
                    const py::object &b, py::array &y) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, z.x, false);
  check_array(w, "weight", t, z.w, false);
  check_array(y, "out", t, z.y, true);
  const void *bp = nullptr;
  py::array bias;
  if (!b.is_none()) {
    bias = py::reinterpret_borrow<py::array>(b);
    check_array(bias, "bias", t, z.k, false);
    bp = bias.data();
  }
  check(fcpy::call([&] { return fc_conv2d_forward(&d, t, (fc_algo)algo, x.data(), w.data(), bp, y.mutable_data()); }));
}

void conv2d_backward_data(const Desc &a, int algo, const py::array &dy, const py::array &w, py::array &dx) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, z.y, false);
  check_array(w, "weight", t, z.w, false);
  check_array(dx, "grad_x", t, z.x, true);
  check(fcpy::call([&] { return fc_conv2d_backward_data(&d, t, (fc_algo)algo, dy.data(), w.data(), dx.mutable_data()); }));
}

void conv2d_backward_weight(const Desc &a, int algo, const py::array &dy, const py::array &x,
                            const py::object &dw, const py::object &db) {
  fc_conv2d_desc d = to_desc(a);
  Sizes z = sizes(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, z.y, false);
  check_array(x, "x", t, z.x, false);
  void *dwp = nullptr, *dbp = nullptr;
  py::array dwa, dba;
  if (!dw.is_none()) {
    dwa = py::reinterpret_borrow<py::array>(dw);
    check_array(dwa, "grad_w", t, z.w, true);
    dwp = dwa.mutable_data();
  }
  if (!db.is_none()) {
    dba = py::reinterpret_borrow<py::array>(db);
    check_array(dba, "grad_b", t, z.k, true);
    dbp = dba.mutable_data();
  }
  check(fcpy::call([&] { return fc_conv2d_backward_weight(&d, t, (fc_algo)algo, dy.data(), x.data(), dwp, dbp); }));
}

void relu_forward(const py::array &x, py::array &y) {
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, (int64_t)x.size(), false);
  check_array(y, "out", t, (int64_t)x.size(), true);
  check(fcpy::call([&] { return fc_relu_forward(t, (int64_t)x.size(), x.data(), y.mutable_data()); }));
}

void relu_backward(const py::array &dy, const py::array &y, py::array &dx) {
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, (int64_t)dy.size(), false);
  check_array(y, "y", t, (int64_t)dy.size(), false);
  check_array(dx, "grad_x", t, (int64_t)dy.size(), true);
  check(fcpy::call([&] { return fc_relu_backward(t, (int64_t)dy.size(), dy.data(), y.data(), dx.mutable_data()); }));
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
  m.def("conv2d_forward", &conv2d_forward, py::arg("desc"), py::arg("algo"), py::arg("x"),
        py::arg("weight"), py::arg("bias"), py::arg("out"));
  m.def("conv2d_backward_data", &conv2d_backward_data, py::arg("desc"), py::arg("algo"),
        py::arg("grad_out"), py::arg("weight"), py::arg("grad_x"));
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("desc"), py::arg("algo"),
        py::arg("grad_out"), py::arg("x"), py::arg("grad_w"), py::arg("grad_b"));
  m.attr("MAX_THREADS") = FC_MAX_THREADS;
  m.def("set_num_threads", &fc_set_num_threads, py::arg("n"));
  m.def("set_local_num_threads", &fc_set_local_num_threads, py::arg("n"),
        "This thread's override of the thread count (0 = none); returns the previous one.");
  m.def("get_num_threads", &fc_get_num_threads);
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
    d["model"] = std::string(h.model);
    d["vendor"] = std::string(h.vendor);
    return d;
  }, "fc_hardware as a dict of its fields.");
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
  m.def("conv2d_cost", [](const Desc &a, int algo, int direction) -> py::object {
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
  fc_bind_pool(m);
  fc_bind_memory(m);
  fc_bind_plan(m);
}
