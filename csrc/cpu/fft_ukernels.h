// FFT-convolution micro-kernels, one table, chosen once at load time by
// fft_dispatch.cpp (the instruction set of the convolution table, see ukernels.h).
// They take raw pointers, sizes and strides; they never allocate and never start threads.
//
// Every transform works on `lanes` planes at once, one plane per SIMD lane: each butterfly is
// plain vector arithmetic with the same twiddle in every lane. A "complex vector" is 2*lanes
// values, the real parts of the lanes and then their imaginary parts.
//
// A 2-D transform of size nh x nw (powers of two) has nh * (nw/2 + 1) bins: the real-input
// half along the width, in natural order, times every frequency along the height in
// bit-reversed order (the forward transform decimates in frequency, the inverse in time, so
// neither reorders; products are taken bin by bin, so the order never matters). Bin
// (fy, fx) is number fy * (nw/2 + 1) + fx.
#pragma once
#include <cstdint>

namespace fc {

// Every transform computes in double, whatever the planes' type (see conv/fft.cpp): the
// tables, bins and products are double; the _f32 transforms read and write float planes.

// One transform size and its precomputed tables (see conv/fft.cpp).
struct FftSize {
  int64_t nh, nw;
  // exp(-2 pi i j / m) for j < m/2, as (re, im) pairs, for block sizes m = 2, 4, ...:
  // the table of block size m starts at pair m/2 - 1.
  const double *tw;
  // Bit reversal of [0, n) for n = 1, 2, 4, ...: the table of size n starts at entry n - 1.
  const int32_t *rev;
};

// `count` (<= lanes) real planes of hh x ww values, plane l at base + l*plane_stride, rows
// row_stride apart, lying at rows [oy, oy + hh) and columns [ox, ox + ww) of the nh x nw grid
// (the rest of the grid is zero on input and dropped on output).
struct FftPlanes {
  int64_t plane_stride, row_stride, hh, ww, oy, ox;
  int count;
};

// Where a forward transform writes bin b of lane l: the real part at
// out[b*bin_stride + l*lane_stride], the imaginary part im_offset further. lane_stride 1 and
// im_offset lanes is a complex vector per bin (all lanes written, unused ones zero); otherwise
// complex scalars (lanes < count written).
struct FftBins {
  int64_t bin_stride, lane_stride, im_offset;
};

// Products per bin (cmac): which operand is conjugated.
enum FftConj { kConjNone = 0, kConjA = 1, kConjB = 2 };

struct FftUKernels {
  int lanes;  // planes per transform (SIMD lanes of doubles)
  // Forward real 2-D transform of p.count planes of src into bins (see FftBins).
  // scratch: fft_scratch_size(z, lanes) values.
  void (*rfft2)(const FftSize &z, const double *src, const FftPlanes &p, double *out,
                const FftBins &o, double *scratch);
  void (*rfft2_f32)(const FftSize &z, const float *src, const FftPlanes &p, double *out,
                    const FftBins &o, double *scratch);
  // Inverse: bins are complex vectors at in + b*bin_stride; writes scale * (the real planes)
  // + bias[l*bias_stride] (bias may be NULL) into the window p of p.count planes of dst.
  // The transforms are unnormalised: scale = 1/(nh*nw) inverts.
  void (*irfft2)(const FftSize &z, const double *in, int64_t bin_stride, double *dst,
                 const FftPlanes &p, double scale, const double *bias, int64_t bias_stride,
                 double *scratch);
  void (*irfft2_f32)(const FftSize &z, const double *in, int64_t bin_stride, float *dst,
                     const FftPlanes &p, double scale, const float *bias, int64_t bias_stride,
                     double *scratch);
  // For bins b < nbins and rows m < mcount, one complex vector each:
  //   out[b*o_bs + m*o_ms] (+)= sum over r < rcount of opA(A[b*a_bs + r*a_rs]) * opB(B(b, m, r))
  // where A is a complex vector and B a complex scalar (re at b*b_bs + m*b_ms + r*b_rs, im
  // right after), broadcast to every lane; conj picks which side is conjugated (FftConj).
  // The complex GEMM of each frequency, vectorised over the lanes of A.
  void (*cmac)(int conj, int64_t nbins, int64_t rcount, int64_t mcount, const double *a,
               int64_t a_bs, int64_t a_rs, const double *b, int64_t b_bs, int64_t b_ms,
               int64_t b_rs, double *out, int64_t o_bs, int64_t o_ms, bool accumulate);
};

// Values of scratch rfft2/irfft2 need: the nh x (nw/2 + 1) grid and one row of nw.
inline int64_t fft_scratch_size(const FftSize &z, int lanes) {
  return (z.nh * (z.nw / 2 + 1) + z.nw) * 2 * lanes;
}

const FftUKernels &fft_ukernels();

// Each per-ISA file defines one of these (fft_generic.cpp, fft_avx2.cpp, fft_avx512.cpp).
void get_fft_ukernels__generic(FftUKernels *u);
void get_fft_ukernels__avx2(FftUKernels *u);
void get_fft_ukernels__avx512(FftUKernels *u);

}  // namespace fc
