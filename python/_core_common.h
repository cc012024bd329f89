// fastconv._core: the checks every binding file shares (status -> exception, dtype, layout).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <string>

#include "fastconv/fastconv.h"

namespace fcpy {

namespace py = pybind11;

// Frees the unused blocks of the array cache (_core_memory.cpp) and of the kernels' workspace
// cache; true if they held any.
bool release_cached_blocks();

// Runs a C ABI call without the GIL. On FC_ENOMEM the caches' unused blocks are freed and the
// call is made once more (every entry overwrites its outputs, so a retry is safe).
template <class F>
fc_status call(F &&f) {
  fc_status s;
  {
    py::gil_scoped_release nogil;
    s = f();
  }
  if (s == FC_ENOMEM && release_cached_blocks()) {
    py::gil_scoped_release nogil;
    s = f();
  }
  return s;
}

// A C status as a Python exception: FC_ENOMEM -> MemoryError, the rest -> ValueError.
inline void check(fc_status s) {
  if (s == FC_OK) return;
  std::string msg = std::string(fc_status_string(s)) + ": " + fc_last_error();
  if (s == FC_ENOMEM) {
    PyErr_SetString(PyExc_MemoryError, msg.c_str());
    throw py::error_already_set();
  }
  if (s == FC_EOVERFLOW) throw py::value_error("output too large: " + msg);
  throw py::value_error(msg);
}

// Dtypes are compared by value (PyArray_EquivTypes), never by identity: an unpickled array, one
// from another process or np.longlong indices carry equal dtypes that are other objects.
// A byte-swapped dtype is not equivalent and is refused.
inline bool dtype_is(const py::array &a, const py::dtype &want) { return a.dtype().equal(want); }

inline fc_dtype dtype_of(const py::array &a, const char *name) {
  if (dtype_is(a, py::dtype::of<float>())) return FC_F32;
  if (dtype_is(a, py::dtype::of<double>())) return FC_F64;
  throw py::type_error(std::string(name) +
                       ": dtype must be float32 or float64 (native byte order), got " +
                       std::string(py::str(py::repr(a.dtype()))));
}

// C-contiguity, writability and element count.
inline void check_layout(const py::array &a, const char *name, int64_t count, bool writable) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (writable && !a.writeable()) throw py::value_error(std::string(name) + ": must be writeable");
  if ((int64_t)a.size() != count)
    throw py::value_error(std::string(name) + ": has " + std::to_string(a.size()) +
                          " elements, the descriptor needs " + std::to_string(count));
}

// One buffer of the call's dtype t.
inline void check_array(const py::array &a, const char *name, fc_dtype t, int64_t count,
                        bool writable) {
  if (dtype_of(a, name) != t) throw py::type_error(std::string(name) + ": dtype differs from x's");
  check_layout(a, name, count, writable);
}

// Pooling switches: int64 (np.longlong is the same type by value).
inline void check_switches(const py::array &a, const char *name, int64_t count, bool writable) {
  if (!dtype_is(a, py::dtype::of<int64_t>()))
    throw py::type_error(std::string(name) + ": dtype must be int64 (native byte order), got " +
                         std::string(py::str(py::repr(a.dtype()))));
  check_layout(a, name, count, writable);
}

// Optional buffers: None (nullptr), or an array checked as check_array does; *keep holds it for
// the call.
inline const void *opt_in(const py::object &o, const char *name, fc_dtype t, int64_t count,
                          py::array *keep) {
  if (o.is_none()) return nullptr;
  *keep = py::reinterpret_borrow<py::array>(o);
  check_array(*keep, name, t, count, false);
  return keep->data();
}
inline void *opt_out(const py::object &o, const char *name, fc_dtype t, int64_t count,
                     py::array *keep) {
  if (o.is_none()) return nullptr;
  *keep = py::reinterpret_borrow<py::array>(o);
  check_array(*keep, name, t, count, true);
  return keep->mutable_data();
}

// The product of sizes (an element count); ValueError naming `what` unless every size is >= min
// and the product fits int64.
inline int64_t product(std::initializer_list<int64_t> sizes, const char *what, int64_t min) {
  int64_t p = 1;
  for (int64_t f : sizes)
    if (f < min || __builtin_mul_overflow(p, f, &p))
      throw py::value_error(std::string(what) + ": sizes must be >= " + std::to_string(min) +
                            " and their products must fit in int64");
  return p;
}

}  // namespace fcpy
