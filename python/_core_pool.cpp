// fastconv._core: the pooling entries. Converts, checks every buffer (dtype, C-contiguity,
// writability, element count against the descriptor), releases the GIL, calls the C ABI.
// Shapes and PyTorch's argument rules live in fastconv/pooling.py.
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
using fcpy::check_switches;
using fcpy::dtype_of;
using fcpy::product;

// n c h w kh kw stride_h stride_w pad_h pad_w dil_h dil_w ceil_mode
using PoolDesc = std::array<int64_t, 13>;
// n c h w ho wo
using PlanesDesc = std::array<int64_t, 6>;

fc_pool2d_desc to_pool(const PoolDesc &a) {
  return fc_pool2d_desc{a[0], a[1], a[2], a[3],  a[4],  a[5], a[6],
                        a[7], a[8], a[9], a[10], a[11], a[12]};
}

fc_planes2d_desc to_planes(const PlanesDesc &a) {
  return fc_planes2d_desc{a[0], a[1], a[2], a[3], a[4], a[5]};
}

// n*c*h*w (full planes) and n*c*ho*wo (small planes) of a planes descriptor.
std::pair<int64_t, int64_t> planes_counts(const PlanesDesc &a) {
  return {product({a[0], a[1], a[2], a[3]}, "desc", 1),
          product({a[0], a[1], a[4], a[5]}, "desc", 1)};
}

std::pair<int64_t, int64_t> pool2d_output_size(const PoolDesc &a) {
  fc_pool2d_desc d = to_pool(a);
  int64_t ho = 0, wo = 0;
  check(fc_pool2d_output_size(&d, &ho, &wo));
  return {ho, wo};
}

// n*c*h*w and n*c*ho*wo of a pooling descriptor, validated by the C ABI first (every size and
// their products).
std::pair<int64_t, int64_t> pool_counts(const PoolDesc &a) {
  auto [ho, wo] = pool2d_output_size(a);
  return {a[0] * a[1] * a[2] * a[3], a[0] * a[1] * ho * wo};
}

void max_pool2d_forward(const PoolDesc &a, const py::array &x, py::array &y,
                        const py::object &idx) {
  fc_pool2d_desc d = to_pool(a);
  auto [nx, ny] = pool_counts(a);
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, nx, false);
  check_array(y, "out", t, ny, true);
  int64_t *ip = nullptr;
  py::array ia;
  if (!idx.is_none()) {
    ia = py::reinterpret_borrow<py::array>(idx);
    check_switches(ia, "indices", ny, true);
    ip = static_cast<int64_t *>(ia.mutable_data());
  }
  check(fcpy::call([&] { return fc_max_pool2d_forward(&d, t, x.data(), y.mutable_data(), ip); }));
}

// The three switch entries share one shape: `small` and the switches are [n, c, ho, wo], `full`
// is [n, c, h, w]; `out_is_full` says which one is written.
using SwitchFn = fc_status (*)(const fc_planes2d_desc *, fc_dtype, const void *, const int64_t *,
                               void *);
void through_switches(SwitchFn fn, bool out_is_full, const PlanesDesc &a, const py::array &in,
                      const char *in_name, const py::array &idx, py::array &out,
                      const char *out_name) {
  fc_planes2d_desc d = to_planes(a);
  auto [full, small] = planes_counts(a);
  fc_dtype t = dtype_of(in, in_name);
  check_array(in, in_name, t, out_is_full ? small : full, false);
  check_switches(idx, "indices", small, false);
  check_array(out, out_name, t, out_is_full ? full : small, true);
  check(fcpy::call([&] {
    return fn(&d, t, in.data(), static_cast<const int64_t *>(idx.data()), out.mutable_data());
  }));
}

void avg_pool2d_forward(const PoolDesc &a, bool count_include_pad, int64_t divisor_override,
                        const py::array &x, py::array &y) {
  fc_pool2d_desc d = to_pool(a);
  auto [nx, ny] = pool_counts(a);
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, nx, false);
  check_array(y, "out", t, ny, true);
  check(fcpy::call([&] {
    return fc_avg_pool2d_forward(&d, t, count_include_pad, divisor_override, x.data(),
                                 y.mutable_data());
  }));
}

void avg_pool2d_backward(const PoolDesc &a, bool count_include_pad, int64_t divisor_override,
                         const py::array &dy, py::array &dx) {
  fc_pool2d_desc d = to_pool(a);
  auto [nx, ny] = pool_counts(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, ny, false);
  check_array(dx, "grad_x", t, nx, true);
  check(fcpy::call([&] {
    return fc_avg_pool2d_backward(&d, t, count_include_pad, divisor_override, dy.data(),
                                  dx.mutable_data());
  }));
}

void adaptive_avg_pool2d_forward(const PlanesDesc &a, const py::array &x, py::array &y) {
  fc_planes2d_desc d = to_planes(a);
  auto [full, small] = planes_counts(a);
  fc_dtype t = dtype_of(x, "x");
  check_array(x, "x", t, full, false);
  check_array(y, "out", t, small, true);
  check(fcpy::call(
      [&] { return fc_adaptive_avg_pool2d_forward(&d, t, x.data(), y.mutable_data()); }));
}

void adaptive_avg_pool2d_backward(const PlanesDesc &a, const py::array &dy, py::array &dx) {
  fc_planes2d_desc d = to_planes(a);
  auto [full, small] = planes_counts(a);
  fc_dtype t = dtype_of(dy, "grad_out");
  check_array(dy, "grad_out", t, small, false);
  check_array(dx, "grad_x", t, full, true);
  check(fcpy::call(
      [&] { return fc_adaptive_avg_pool2d_backward(&d, t, dy.data(), dx.mutable_data()); }));
}

}  // namespace

void fc_bind_pool(py::module_ &m) {
  m.def("pool2d_output_size", &pool2d_output_size, py::arg("desc"));
  m.def("max_pool2d_forward", &max_pool2d_forward, py::arg("desc"), py::arg("x"), py::arg("out"),
        py::arg("indices"));
  m.def("max_pool2d_backward",
        [](const PlanesDesc &a, const py::array &dy, const py::array &idx, py::array &dx) {
    through_switches(&fc_max_pool2d_backward, true, a, dy, "grad_out", idx, dx, "grad_x");
  }, py::arg("desc"), py::arg("grad_out"), py::arg("indices"), py::arg("grad_x"));
  m.def("max_unpool2d_forward",
        [](const PlanesDesc &a, const py::array &x, const py::array &idx, py::array &y) {
    through_switches(&fc_max_unpool2d_forward, true, a, x, "x", idx, y, "out");
  }, py::arg("desc"), py::arg("x"), py::arg("indices"), py::arg("out"));
  m.def("max_unpool2d_backward",
        [](const PlanesDesc &a, const py::array &dy, const py::array &idx, py::array &dx) {
    through_switches(&fc_max_unpool2d_backward, false, a, dy, "grad_out", idx, dx, "grad_x");
  }, py::arg("desc"), py::arg("grad_out"), py::arg("indices"), py::arg("grad_x"));
  m.def("avg_pool2d_forward", &avg_pool2d_forward, py::arg("desc"), py::arg("count_include_pad"),
        py::arg("divisor_override"), py::arg("x"), py::arg("out"));
  m.def("avg_pool2d_backward", &avg_pool2d_backward, py::arg("desc"), py::arg("count_include_pad"),
        py::arg("divisor_override"), py::arg("grad_out"), py::arg("grad_x"));
  m.def("adaptive_avg_pool2d_forward", &adaptive_avg_pool2d_forward, py::arg("desc"), py::arg("x"),
        py::arg("out"));
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("desc"),
        py::arg("grad_out"), py::arg("grad_x"));
}
