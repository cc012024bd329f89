// Pooling micro-kernels for AVX2 + FMA (flags set per file in CMakeLists.txt). The max-pool row
// kernel works on 8 floats / 4 doubles of output per vector: stride-2 taps are de-interleaved
// with a shuffle and a lane permute of two loads, tails use vmaskmov loads and stores (which
// never touch memory outside the mask), other strides use masked gathers.
#include <immintrin.h>

#define FC_ISA_NS isa_avx2
#include "pool_ukernels_impl.inc"

namespace fc {
namespace {
namespace isa_avx2 {

// All-ones in the first m (clamped to [0, 8]) 32-bit lanes.
inline __m256i mask32(int m) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// All-ones in the first m (clamped to [0, 4]) 64-bit lanes.
inline __m256i mask64(int m) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(m), _mm256_setr_epi64x(0, 1, 2, 3));
}

struct V256f {
  using T = float;
  static constexpr int L = 8;
  struct Ctx {
    __m256i gather;            // lane * sw (int32)
    __m256i lane_lo, lane_hi;  // lane * sw (int64), lanes 0-3 and 4-7
  };
  static Ctx ctx(int64_t sw) {
    return {
        _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sw)),
        _mm256_setr_epi64x(0, sw, 2 * sw, 3 * sw),
        _mm256_setr_epi64x(4 * sw, 5 * sw, 6 * sw, 7 * sw)};
  }
  template <int S, bool Full>
  static __m256 load(const float *p, const Ctx &c, int m) {
    if (S == 1) return Full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask32(m));
    if (S == 2) {
      const int need = 2 * m - 1;  // elements p[0 .. 2m-2]
      __m256 a = Full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask32(need));
      __m256 b = _mm256_maskload_ps(p + 8, mask32(Full ? 7 : need - 8));
      __m256 t = _mm256_shuffle_ps(a, b, 0x88);  // a0 a2 b0 b2 | a4 a6 b4 b6
      return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(t), 0xd8));
    }
    const __m256i k = Full ? _mm256_set1_epi32(-1) : mask32(m);
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, c.gather, _mm256_castsi256_ps(k), 4);
  }
  static __m256 greater(__m256 v, __m256 best) { return _mm256_cmp_ps(v, best, _CMP_GT_OQ); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static __m256 zero() { return _mm256_setzero_ps(); }
  // v > best ? v : best
  static __m256 max(__m256 v, __m256 best) { return _mm256_max_ps(v, best); }
  static bool any_nan(__m256 a) {
    return _mm256_movemask_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)) != 0;
  }
  static int nan_or_negzero(__m256 a) {
    const __m256i neg0 = _mm256_cmpeq_epi32(_mm256_castps_si256(a), _mm256_set1_epi32(INT32_MIN));
    return _mm256_movemask_ps(
        _mm256_or_ps(_mm256_cmp_ps(a, a, _CMP_UNORD_Q), _mm256_castsi256_ps(neg0)));
  }
  static __m256 better(__m256 v, __m256 best) {
    return _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  static __m256 sel(__m256 k, __m256 v, __m256 best) { return _mm256_blendv_ps(best, v, k); }
  static __m256i off_zero() { return _mm256_setzero_si256(); }
  static __m256i sel_off(__m256 k, int32_t t, __m256i off) {
    return _mm256_castps_si256(
        _mm256_blendv_ps(_mm256_castsi256_ps(off), _mm256_castsi256_ps(_mm256_set1_epi32(t)), k));
  }
  template <bool Full>
  static void store(float *y, __m256 v, int m) {
    if (Full) _mm256_storeu_ps(y, v);
    else _mm256_maskstore_ps(y, mask32(m), v);
  }
  template <bool Full>
  static void store_idx(int64_t *d, __m256i off, int64_t origin, const Ctx &c, int m) {
    const __m256i b = _mm256_set1_epi64x(origin);
    __m256i lo = _mm256_add_epi64(_mm256_add_epi64(b, c.lane_lo),
                                  _mm256_cvtepi32_epi64(_mm256_castsi256_si128(off)));
    __m256i hi = _mm256_add_epi64(_mm256_add_epi64(b, c.lane_hi),
                                  _mm256_cvtepi32_epi64(_mm256_extracti128_si256(off, 1)));
    if (Full) {
      _mm256_storeu_si256((__m256i *)d, lo);
      _mm256_storeu_si256((__m256i *)(d + 4), hi);
    } else {
      _mm256_maskstore_epi64((long long *)d, mask64(m), lo);
      _mm256_maskstore_epi64((long long *)(d + 4), mask64(m - 4), hi);
    }
  }
};

struct V256d {
  using T = double;
  static constexpr int L = 4;
  struct Ctx {
    __m128i gather;  // lane * sw (int32)
    __m256i lane;    // lane * sw (int64)
  };
  static Ctx ctx(int64_t sw) {
    return {_mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32((int)sw)),
            _mm256_setr_epi64x(0, sw, 2 * sw, 3 * sw)};
  }
  template <int S, bool Full>
  static __m256d load(const double *p, const Ctx &c, int m) {
    if (S == 1) return Full ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, mask64(m));
    if (S == 2) {
      const int need = 2 * m - 1;
      __m256d a = Full ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, mask64(need));
      __m256d b = _mm256_maskload_pd(p + 4, mask64(Full ? 3 : need - 4));
      __m256d t = _mm256_unpacklo_pd(a, b);   // a0 b0 a2 b2
      return _mm256_permute4x64_pd(t, 0xd8);  // a0 a2 b0 b2
    }
    const __m256i k = Full ? _mm256_set1_epi64x(-1) : mask64(m);
    return _mm256_mask_i32gather_pd(_mm256_setzero_pd(), p, c.gather, _mm256_castsi256_pd(k), 8);
  }
  static __m256d greater(__m256d v, __m256d best) { return _mm256_cmp_pd(v, best, _CMP_GT_OQ); }
  static __m256d add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
  static __m256d zero() { return _mm256_setzero_pd(); }
  // v > best ? v : best
  static __m256d max(__m256d v, __m256d best) { return _mm256_max_pd(v, best); }
  static bool any_nan(__m256d a) {
    return _mm256_movemask_pd(_mm256_cmp_pd(a, a, _CMP_UNORD_Q)) != 0;
  }
  static int nan_or_negzero(__m256d a) {
    const __m256i neg0 = _mm256_cmpeq_epi64(_mm256_castpd_si256(a), _mm256_set1_epi64x(INT64_MIN));
    return _mm256_movemask_pd(
        _mm256_or_pd(_mm256_cmp_pd(a, a, _CMP_UNORD_Q), _mm256_castsi256_pd(neg0)));
  }
  static __m256d better(__m256d v, __m256d best) {
    return _mm256_or_pd(_mm256_cmp_pd(v, best, _CMP_GT_OQ), _mm256_cmp_pd(v, v, _CMP_UNORD_Q));
  }
  static __m256d sel(__m256d k, __m256d v, __m256d best) { return _mm256_blendv_pd(best, v, k); }
  static __m256i off_zero() { return _mm256_setzero_si256(); }
  static __m256i sel_off(__m256d k, int32_t t, __m256i off) {
    return _mm256_castpd_si256(
        _mm256_blendv_pd(_mm256_castsi256_pd(off), _mm256_castsi256_pd(_mm256_set1_epi64x(t)), k));
  }
  template <bool Full>
  static void store(double *y, __m256d v, int m) {
    if (Full) _mm256_storeu_pd(y, v);
    else _mm256_maskstore_pd(y, mask64(m), v);
  }
  template <bool Full>
  static void store_idx(int64_t *d, __m256i off, int64_t origin, const Ctx &c, int m) {
    __m256i v = _mm256_add_epi64(_mm256_add_epi64(_mm256_set1_epi64x(origin), c.lane), off);
    if (Full) _mm256_storeu_si256((__m256i *)d, v);
    else _mm256_maskstore_epi64((long long *)d, mask64(m), v);
  }
};

template <class T, class V>
void fill(PoolUKernels<T> *u) {
  u->max_row = &max_row_simd<V>;
  u->sum_row = &sum_row_simd<V>;
  u->max_plane_sep = &max_plane_sep_simd<V>;
  u->first_bad_switch = &first_bad_switch;
}

}  // namespace isa_avx2
}  // namespace

void get_pool_ukernels__avx2(PoolUKernels<float> *f, PoolUKernels<double> *d) {
  isa_avx2::fill<float, isa_avx2::V256f>(f);
  isa_avx2::fill<double, isa_avx2::V256d>(d);
}

}  // namespace fc
