// Shared by the sanitizer driver's parts (conv_check.cpp, pool_check.cpp, fuzz.cpp, main.cpp):
// a portable seeded generator, failure reporting, and exact-size buffers.
//
// Every buffer handed to the library is a std::vector of exactly the element count the
// descriptor implies, so AddressSanitizer reports any read or write one element past either end.
#pragma once
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "fastconv/fastconv.h"

namespace drv {

// splitmix64: the same sequence on every platform and standard library.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  int64_t range(int64_t lo, int64_t hi) {  // inclusive
    return lo + (int64_t)(next() % (uint64_t)(hi - lo + 1));
  }
  double uniform() { return (double)(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  bool chance(double p) { return uniform() < p; }
  template <class V>
  const typename V::value_type &pick(const V &v) {
    return v[(size_t)range(0, (int64_t)v.size() - 1)];
  }
};

struct Stats {
  int64_t checks = 0;    // comparisons / expectations that held
  int64_t failures = 0;  // that did not
};
extern Stats g_stats;

// Records one failed expectation; the first 40 are printed to stderr.
void failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

inline bool expect(bool ok, const std::string &what) {
  if (ok) ++g_stats.checks;
  else failure("%s", what.c_str());
  return ok;
}

inline bool is_status(int s) { return s >= FC_OK && s <= FC_EOVERFLOW; }

std::string str(const fc_conv2d_desc &d);
std::string str(const fc_pool2d_desc &d);
std::string str(const fc_planes2d_desc &d);

template <class T>
constexpr fc_dtype dtype_of() {
  return std::is_same<T, float>::value ? FC_F32 : FC_F64;
}
template <class T>
const char *dtype_name() {
  return std::is_same<T, float>::value ? "f32" : "f64";
}

// README, "Algorithms and accuracy": relative to the magnitude of the summed terms.
template <class T>
constexpr double tolerance() {
  return std::is_same<T, float>::value ? 1e-4 : 1e-10;
}

template <class T>
std::vector<T> random_vector(Rng &rng, int64_t n) {
  std::vector<T> v((size_t)n);
  for (auto &e : v) e = (T)(2 * rng.uniform() - 1);
  return v;
}

template <class T>
std::vector<T> abs_of(const std::vector<T> &v) {
  std::vector<T> a(v.size());
  for (size_t i = 0; i < v.size(); ++i) a[i] = std::fabs(v[i]);
  return a;
}

template <class T>
void fill_nan(std::vector<T> &v) {
  for (auto &e : v) e = std::numeric_limits<T>::quiet_NaN();
}

// Bitwise: NaN sentinels compare equal to themselves.
template <class T>
bool same_bits(const std::vector<T> &a, const std::vector<T> &b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

// |got - want| <= tol * (scale + tiny) elementwise, got finite. Reports the first bad element.
template <class T>
bool expect_close(const std::vector<T> &got, const std::vector<double> &want,
                  const std::vector<double> &scale, double tol, const std::string &what) {
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = (double)got[i];
    const double bound = tol * (scale[i] + 1e-300);
    if (!std::isfinite(g) || !(std::fabs(g - want[i]) <= bound)) {
      failure("%s: element %zu of %zu is %.17g, expected %.17g (scale %.3g, tol %.1e)",
              what.c_str(), i, got.size(), g, want[i], scale[i], tol);
      return false;
    }
  }
  ++g_stats.checks;
  return true;
}

// The parts. Each returns the number of configurations (or descriptors) it ran.
int64_t run_conv_edges(Rng &rng, int64_t random_configs);
int64_t run_pool_edges(Rng &rng, int64_t random_configs);
int64_t run_fuzz(Rng &rng, int64_t descriptors);
int64_t run_plan_fuzz(Rng &rng, int64_t plans);     // plan_fuzz.cpp
int64_t run_train_checks(Rng &rng, int64_t cases);  // train_check.cpp

}  // namespace drv
