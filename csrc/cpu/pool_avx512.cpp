// Pooling micro-kernels for AVX-512 (F, VL, BW, DQ; flags set per file in CMakeLists.txt).
// The max-pool row kernel works on 16 floats / 8 doubles of output per vector: stride-2 taps
// are de-interleaved with one vpermt2 from two loads, tails use masked loads and stores (which
// never touch memory outside the mask), other strides use masked gathers.
// GCC 12 warns inside its own _mm512_undefined_* helpers (GCC bug 105593); not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#define FC_ISA_NS isa_avx512
#include "pool_ukernels_impl.inc"

namespace fc {
namespace {
namespace isa_avx512 {

inline __mmask16 mask16(int m) { return (__mmask16)((1u << std::min(std::max(m, 0), 16)) - 1u); }
inline __mmask8 mask8(int m) { return (__mmask8)((1u << std::min(std::max(m, 0), 8)) - 1u); }

struct V512f {
  using T = float;
  static constexpr int L = 16;
  struct Ctx {
    __m512i gather;            // lane * sw (int32), for any stride
    __m512i lane_lo, lane_hi;  // lane * sw (int64), lanes 0-7 and 8-15
  };
  static Ctx ctx(int64_t sw) {
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i l8 = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i s64 = _mm512_set1_epi64(sw);
    return {_mm512_mullo_epi32(lanes, _mm512_set1_epi32((int)sw)), _mm512_mullo_epi64(l8, s64),
            _mm512_mullo_epi64(_mm512_add_epi64(l8, _mm512_set1_epi64(8)), s64)};
  }
  // Output lanes o < m read p[o * S] (S = 0: p[o * sw]); nothing past the last needed element.
  template <int S, bool Full>
  static __m512 load(const float *p, const Ctx &c, int m) {
    if (S == 1) return Full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask16(m), p);
    if (S == 2) {
      const __m512i even =
          _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
      const int need = 2 * m - 1;  // elements p[0 .. 2m-2]
      __m512 a = Full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mask16(need), p);
      __m512 b = _mm512_maskz_loadu_ps(Full ? (__mmask16)0x7fff : mask16(need - 16), p + 16);
      return _mm512_permutex2var_ps(a, even, b);
    }
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), Full ? (__mmask16)0xffff : mask16(m),
                                    c.gather, p, 4);
  }
  static __mmask16 greater(__m512 v, __m512 best) {
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ);
  }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static __m512 zero() { return _mm512_setzero_ps(); }
  // v > best ? v : best
  static __m512 max(__m512 v, __m512 best) { return _mm512_max_ps(v, best); }
  static bool any_nan(__m512 a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) != 0; }
  static int nan_or_negzero(__m512 a) {
    return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q) |
           _mm512_cmpeq_epi32_mask(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MIN));
  }
  static __mmask16 better(__m512 v, __m512 best) {
    return _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  }
  static __m512 sel(__mmask16 k, __m512 v, __m512 best) { return _mm512_mask_mov_ps(best, k, v); }
  static __m512i off_zero() { return _mm512_setzero_si512(); }
  static __m512i sel_off(__mmask16 k, int32_t t, __m512i off) {
    return _mm512_mask_mov_epi32(off, k, _mm512_set1_epi32(t));
  }
  template <bool Full>
  static void store(float *y, __m512 v, int m) {
    if (Full) _mm512_storeu_ps(y, v);
    else _mm512_mask_storeu_ps(y, mask16(m), v);
  }
  template <bool Full>
  static void store_idx(int64_t *d, __m512i off, int64_t origin, const Ctx &c, int m) {
    const __m512i b = _mm512_set1_epi64(origin);
    __m512i lo = _mm512_add_epi64(_mm512_add_epi64(b, c.lane_lo),
                                  _mm512_cvtepi32_epi64(_mm512_castsi512_si256(off)));
    __m512i hi = _mm512_add_epi64(_mm512_add_epi64(b, c.lane_hi),
                                  _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(off, 1)));
    if (Full) {
      _mm512_storeu_si512(d, lo);
      _mm512_storeu_si512(d + 8, hi);
    } else {
      _mm512_mask_storeu_epi64(d, mask8(m), lo);
      _mm512_mask_storeu_epi64(d + 8, mask8(m - 8), hi);
    }
  }
};

struct V512d {
  using T = double;
  static constexpr int L = 8;
  struct Ctx {
    __m256i gather;  // lane * sw (int32)
    __m512i lane;    // lane * sw (int64)
  };
  static Ctx ctx(int64_t sw) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return {_mm256_mullo_epi32(lanes, _mm256_set1_epi32((int)sw)),
            _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(sw))};
  }
  template <int S, bool Full>
  static __m512d load(const double *p, const Ctx &c, int m) {
    if (S == 1) return Full ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(mask8(m), p);
    if (S == 2) {
      const __m512i even = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
      const int need = 2 * m - 1;
      __m512d a = Full ? _mm512_loadu_pd(p) : _mm512_maskz_loadu_pd(mask8(need), p);
      __m512d b = _mm512_maskz_loadu_pd(Full ? (__mmask8)0x7f : mask8(need - 8), p + 8);
      return _mm512_permutex2var_pd(a, even, b);
    }
    return _mm512_mask_i32gather_pd(_mm512_setzero_pd(), Full ? (__mmask8)0xff : mask8(m), c.gather,
                                    p, 8);
  }
  static __mmask8 greater(__m512d v, __m512d best) {
    return _mm512_cmp_pd_mask(v, best, _CMP_GT_OQ);
  }
  static __m512d add(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
  static __m512d zero() { return _mm512_setzero_pd(); }
  // v > best ? v : best
  static __m512d max(__m512d v, __m512d best) { return _mm512_max_pd(v, best); }
  static bool any_nan(__m512d a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q) != 0; }
  static int nan_or_negzero(__m512d a) {
    return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q) |
           _mm512_cmpeq_epi64_mask(_mm512_castpd_si512(a), _mm512_set1_epi64(INT64_MIN));
  }
  static __mmask8 better(__m512d v, __m512d best) {
    return _mm512_cmp_pd_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_pd_mask(v, v, _CMP_UNORD_Q);
  }
  static __m512d sel(__mmask8 k, __m512d v, __m512d best) { return _mm512_mask_mov_pd(best, k, v); }
  static __m256i off_zero() { return _mm256_setzero_si256(); }
  static __m256i sel_off(__mmask8 k, int32_t t, __m256i off) {
    return _mm256_mask_mov_epi32(off, k, _mm256_set1_epi32(t));
  }
  template <bool Full>
  static void store(double *y, __m512d v, int m) {
    if (Full) _mm512_storeu_pd(y, v);
    else _mm512_mask_storeu_pd(y, mask8(m), v);
  }
  template <bool Full>
  static void store_idx(int64_t *d, __m256i off, int64_t origin, const Ctx &c, int m) {
    __m512i v = _mm512_add_epi64(_mm512_add_epi64(_mm512_set1_epi64(origin), c.lane),
                                 _mm512_cvtepi32_epi64(off));
    if (Full) _mm512_storeu_si512(d, v);
    else _mm512_mask_storeu_epi64(d, mask8(m), v);
  }
};

template <class T, class V>
void fill(PoolUKernels<T> *u) {
  u->max_row = &max_row_simd<V>;
  u->sum_row = &sum_row_simd<V>;
  u->max_plane_sep = &max_plane_sep_simd<V>;
  u->first_bad_switch = &first_bad_switch;
}

}  // namespace isa_avx512
}  // namespace

void get_pool_ukernels__avx512(PoolUKernels<float> *f, PoolUKernels<double> *d) {
  isa_avx512::fill<float, isa_avx512::V512f>(f);
  isa_avx512::fill<double, isa_avx512::V512d>(d);
}

}  // namespace fc
