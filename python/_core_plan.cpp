// fastconv._core.Plan: the C ABI's inference plans (fc_plan_*). fastconv.inference builds the
// steps; this file converts them, checks the run's buffers and releases the GIL once per run.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "_core_common.h"
#include "fastconv/fastconv.h"

namespace py = pybind11;

namespace {

using fcpy::check;

class Plan {
 public:
  Plan(bool f64, int64_t in_elems, int64_t out_elems, int64_t arena_elems)
      : t_(f64 ? FC_F64 : FC_F32), in_(in_elems), out_(out_elems) {
    fc_plan *p = nullptr;
    check(fcpy::call([&] { return fc_plan_create(t_, in_elems, out_elems, arena_elems, &p); }));
    p_.reset(p);
  }

  // copy=False: the plan reads the array in place, and this object keeps it alive (the
  // array must not be changed while the plan exists).
  int64_t add_constant(const py::array &a, bool copy) {
    fcpy::check_array(a, "constant", t_, (int64_t)a.size(), false);
    int64_t id = -1;
    if (copy) {
      check(fc_plan_add_constant(p_.get(), a.data(), (int64_t)a.size(), &id));
    } else {
      check(fc_plan_add_constant_view(p_.get(), a.data(), (int64_t)a.size(), &id));
      kept_.push_back(a);
    }
    return id;
  }

  int64_t add_value(int kind, int64_t offset, int64_t elems) {
    int64_t id = -1;
    check(fc_plan_add_value(p_.get(), kind, offset, elems, &id));
    return id;
  }

  // A step from a dict of fc_plan_step's fields (absent ones are zero, ids -1).
  void add_step(const py::dict &d) {
    fc_plan_step s{};
    s.in0 = s.in1 = s.in2 = s.out = s.weight = s.bias = -1;
    auto geti = [&](const char *k, auto &dst) {
      if (d.contains(k)) dst = d[k].cast<std::remove_reference_t<decltype(dst)>>();
    };
    geti("op", s.op);
    geti("act", s.act);
    geti("alpha", s.alpha);
    geti("in0", s.in0);
    geti("in1", s.in1);
    geti("in2", s.in2);
    geti("out", s.out);
    geti("weight", s.weight);
    geti("bias", s.bias);
    geti("algo", s.algo);
    geti("count_include_pad", s.count_include_pad);
    auto arr = [&](const char *k, int64_t *dst, size_t n) {
      if (!d.contains(k)) return;
      auto v = d[k].cast<std::vector<int64_t>>();
      if (v.size() != n)
        throw py::value_error(std::string("plan step: ") + k + " needs " + std::to_string(n) +
                              " entries");
      std::copy(v.begin(), v.end(), dst);
    };
    arr("conv", &s.conv.n, 14);  // n c h w k kh kw stride_h stride_w pad_h pad_w dil_h dil_w groups
    arr("pool", &s.pool.n, 13);  // n c h w kh kw stride_h stride_w pad_h pad_w dil_h dil_w ceil
    arr("dims", s.dims, 4);
    arr("extra", s.extra, 2);
    if (d.contains("lrn")) {
      auto v = d["lrn"].cast<std::vector<double>>();
      if (v.size() != 3) throw py::value_error("plan step: lrn needs (alpha, beta, k)");
      std::copy(v.begin(), v.end(), s.lrn);
    }
    check(fc_plan_add_step(p_.get(), &s));
  }

  // Runs the plan on x into y; with profile, returns each step's seconds.
  py::object run(const py::array &x, py::array &y, bool profile) {
    fcpy::check_array(x, "x", t_, in_, false);
    fcpy::check_array(y, "out", t_, out_, true);
    std::vector<double> secs(profile ? fc_plan_step_count(p_.get()) : 0);
    check(fcpy::call([&] {
      return fc_plan_run(p_.get(), x.data(), y.mutable_data(), profile ? secs.data() : nullptr);
    }));
    if (!profile) return py::none();
    return py::cast(secs);
  }

  int64_t steps() const { return fc_plan_step_count(p_.get()); }

  // (scratch bytes, heap allocations of the last run's workspaces)
  std::pair<int64_t, int64_t> workspace() const {
    int64_t bytes = 0, allocs = 0;
    check(fc_plan_workspace(p_.get(), &bytes, &allocs));
    return {bytes, allocs};
  }

 private:
  struct Del {
    void operator()(fc_plan *p) const { fc_plan_destroy(p); }
  };
  fc_dtype t_;
  int64_t in_, out_;
  std::vector<py::array> kept_;  // the arrays constants view
  std::unique_ptr<fc_plan, Del> p_;
};

}  // namespace

void fc_bind_plan(py::module_ &m) {
  py::class_<Plan>(m, "Plan", "A native inference plan (fastconv.inference builds and runs it)")
      .def(py::init<bool, int64_t, int64_t, int64_t>(), py::arg("f64"), py::arg("in_elems"),
           py::arg("out_elems"), py::arg("arena_elems"))
      .def("add_constant", &Plan::add_constant, py::arg("array"), py::arg("copy") = true)
      .def("add_value", &Plan::add_value, py::arg("kind"), py::arg("offset"), py::arg("elems"))
      .def("add_step", &Plan::add_step, py::arg("step"))
      .def("run", &Plan::run, py::arg("x"), py::arg("out"), py::arg("profile") = false)
      .def_property_readonly("steps", &Plan::steps)
      .def("workspace", &Plan::workspace,
           "(scratch bytes, heap allocations the last run made for workspaces: 0 in steady state)");
}
