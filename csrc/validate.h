// The C ABI's argument checks, shared by every entry file (api.cpp, pool/pool_api.cpp,
// eltwise.cpp, ...): the per-thread error message, and the checks whose messages must read the
// same wherever they are made. Each check returns FC_OK or the status of its fail().
#pragma once
#include <cstdint>
#include <initializer_list>

#include "fastconv/fastconv.h"

namespace fc {

// Sets the per-thread message returned by fc_last_error(); returns s for `return fail(...)`.
// (runtime.cpp)
fc_status fail(fc_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void clear_error();

// *out = a * b; false when it overflows int64.
inline bool mul_ok(int64_t a, int64_t b, int64_t *out) {
  return !__builtin_mul_overflow(a, b, out);
}

// *out = the product of v; false when a partial product overflows int64.
inline bool product_ok(std::initializer_list<int64_t> v, int64_t *out) {
  int64_t p = 1;
  for (int64_t f : v)
    if (!mul_ok(p, f, &p)) return false;
  *out = p;
  return true;
}

// FC_EINVAL unless t is FC_F32 or FC_F64.
inline fc_status check_dtype(fc_dtype t) {
  if (t != FC_F32 && t != FC_F64) return fail(FC_EINVAL, "dtype %d is not an fc_dtype", (int)t);
  return FC_OK;
}

// A descriptor field, its value and the least value it may take.
struct DescField {
  const char *name;
  int64_t v, min;
};

// FC_EINVAL naming the first field below its minimum ("pad_h must be >= 0, got -1").
inline fc_status check_fields(std::initializer_list<DescField> fields) {
  for (const DescField &f : fields)
    if (f.v < f.min)
      return fail(FC_EINVAL, "%s must be >= %lld, got %lld", f.name, (long long)f.min,
                  (long long)f.v);
  return FC_OK;
}

// The entry checks of the (a, b, c)-shaped element-wise kernels (batch norm, cross-entropy):
// clears the error, then FC_EINVAL unless t is f32/f64 and a, b, c >= 0, FC_EOVERFLOW unless
// a*b*c elements of 8 bytes fit int64; `names` names the three sizes in the messages.
inline fc_status check_sizes3(fc_dtype t, int64_t a, int64_t b, int64_t c, const char *names) {
  clear_error();
  if (fc_status st = check_dtype(t)) return st;
  if (a < 0 || b < 0 || c < 0)
    return fail(FC_EINVAL, "%s must be >= 0, got %lld, %lld, %lld", names, (long long)a,
                (long long)b, (long long)c);
  int64_t e;
  if (!product_ok({a, b, c, 8}, &e))
    return fail(FC_EOVERFLOW, "the elements of sizes %s = %lld, %lld, %lld overflow int64", names,
                (long long)a, (long long)b, (long long)c);
  return FC_OK;
}

}  // namespace fc
