// 1x1 convolutions as GEMM. With stride 1 and no padding the input plane [cg, h*w] of each
// image and group is the column matrix as it lies: one GEMM per (image, column block), no copy.
// Strided or padded 1x1 convolutions gather first (im2col with a 1x1 kernel is that gather).
#include <omp.h>

#include <vector>

#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

bool gemm1x1_supports(const ConvShape &s) { return s.kh == 1 && s.kw == 1 && im2col_supports(s); }

template <class T>
fc_status conv2d_forward__gemm1x1(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  return gemm_conv_forward(s, x, w, b, y, gemm_in_place(s));
}
template <class T>
fc_status conv2d_backward_data__gemm1x1(const ConvShape &s, const T *dy, const T *w, T *dx) {
  return gemm_conv_backward_data(s, dy, w, dx, gemm_in_place(s));
}

// ---- The weight gradient as dot products along the planes ------------------------------------
//
// dW[o][c] = sum over images and positions of dy[n][o][p] * x[n][c][p]: both operands lie with
// the positions along their rows, so each value of dW is a dot product of two rows, image by
// image. The register tile (dots_tile, float: 3x8 rows on AVX-512, 3x4 on AVX2) takes 3 rows of
// the larger operand (a), read where they lie, and 8 (or 4) rows of the smaller (b), copied
// first into 64-byte aligned rows, each image's plane padded to whole vectors (a strided 1x1's x
// gathered into them at the same time): against rows read where NumPy put them (any 16 bytes),
// the aligned copy took 0.78x the time of ResNet-50's 128>512 at 28x28, one image. No matrix is
// packed or transposed and no thread keeps a copy of dW: the threads split a's rows, and each
// value is one tile's sum. The positions go in chunks of up to 1024 (whole images where they
// fit, else an image in equal pieces): b's rows of a chunk stay in the L1 (32 KB) and a block of
// 48 rows of a in the L2 while the tiles pass over them; each chunk's sums are added to dW in
// order (the first sets). So the bits follow the shape (and the table).
namespace {

constexpr int64_t kDotsChunk = 1024;  // positions a chunk
constexpr int64_t kDotsBlock = 16;    // tiles of a's rows a block (48 rows)

template <class T>
fc_status weight_grad_dots(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t hw = s.howo, p16 = (hw + 15) / 16 * 16;
  const bool strided = s.sh != 1 || s.sw != 1;
  // a: the operand with more rows (dy unless strided: x is gathered, so it is b)
  const bool a_dy = strided || s.k >= s.c;
  const int64_t ra = a_dy ? s.k : s.c, rb = a_dy ? s.c : s.k;
  const T *a = a_dy ? dy : x;
  const int64_t arow = a_dy ? hw : s.hw, a_img = ra * arow;  // (a is x at unit stride only)
  // b's rows padded to whole tiles of the table's nr rows
  const int64_t nr = uk.dots_nr, rbp = (rb + nr - 1) / nr * nr, b_row = s.n * p16;
  Buffer<T> bb(rbp * b_row);
  if (!bb.ok())
    return fail(FC_ENOMEM, "gemm1x1: cannot allocate %lld bytes for the weight gradient",
                (long long)(rbp * b_row * (int64_t)sizeof(T)));
  // chunks of whole images (or of an image's positions), as segments (a offset, b offset, len)
  std::vector<int64_t> seg, first;  // first[c]: chunk c's first segment
  const int64_t per = p16 <= kDotsChunk ? std::max<int64_t>(1, kDotsChunk / p16) : 1;
  // (an image over a chunk: in equal pieces of whole vectors)
  const int64_t pieces = (p16 + kDotsChunk - 1) / kDotsChunk;
  const int64_t piece = pieces == 1 ? hw : ((hw + pieces - 1) / pieces + 15) / 16 * 16;
  for (int64_t n0 = 0; n0 < s.n; n0 += per)
    for (int64_t q0 = 0; q0 < hw; q0 += piece) {
      first.push_back((int64_t)seg.size() / 3);
      for (int64_t n = n0; n < std::min(s.n, n0 + per); ++n) {
        seg.push_back(n * a_img + q0);
        seg.push_back(n * p16 + q0);
        seg.push_back(std::min(piece, hw - q0));
      }
    }
  first.push_back((int64_t)seg.size() / 3);
  const int64_t chunks = (int64_t)first.size() - 1;
  const int64_t at = (ra + 2) / 3, bt = rbp / nr;
  const int nt = (int)std::min<int64_t>(num_threads(), at);
#pragma omp parallel num_threads(nt)
  {
    // b's rows, aligned and padded: x's (gathered where strided) or dy's
#pragma omp for schedule(static)
    for (int64_t q = 0; q < rbp * s.n; ++q) {
      const int64_t r = q / s.n, n = q % s.n;
      T *d = bb.get() + r * b_row + n * p16;
      if (r >= rb) {  // (padding rows)
        std::fill(d, d + p16, T(0));
        continue;
      }
      const T *src = a_dy ? x + (n * s.c + r) * s.hw : dy + (n * s.k + r) * hw;
      if (strided) {  // (b is x)
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow)
            d[oh * s.wo + ow] = src[oh * s.sh * s.in_w + ow * s.sw];
      } else {
        std::memcpy(d, src, hw * sizeof(T));
      }
      std::fill(d + hw, d + p16, T(0));
    }
    // (the barrier: b is complete) each thread a run of a's tiles
    const int tid = omp_get_thread_num();
    const int64_t t0 = at * tid / nt, t1 = at * (tid + 1) / nt;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t *sg = seg.data() + 3 * first[ch], ns = first[ch + 1] - first[ch];
      for (int64_t blk = t0; blk < t1; blk += kDotsBlock)
        for (int64_t j = 0; j < bt; ++j)
          for (int64_t i = blk; i < std::min(t1, blk + kDotsBlock); ++i) {
            const int64_t r0 = 3 * i, b0 = nr * j;
            const int ni = (int)std::min<int64_t>(3, ra - r0),
                      nj = (int)std::min<int64_t>(nr, rb - b0);
            T *o = a_dy ? dw + r0 * s.c + b0 : dw + b0 * s.c + r0;
            uk.dots_tile(a + r0 * arow, arow, bb.get() + b0 * b_row, b_row, sg, ns, o,
                         a_dy ? s.c : 1, a_dy ? 1 : s.c, ni, nj, ch > 0);
          }
    }
  }
  return FC_OK;
}

}  // namespace

// Where the dot products run, against the GEMM (OpenBLAS; im2col.cpp's weight-gradient drivers)
// on full-rate AVX-512 cores (interleaved in one process, best of 10-12, the 2-vCPU Xeon, 2
// threads, session 48): one or two images onto output planes of 28x28 to 35x35, 64+ channels
// each way. With the AVX-512 tables (wide_avx512) 0.57-0.90x its time (ResNet-50's 128>512 at
// 28x28 0.86-0.90x, 0.45 against 0.50 ms, PyTorch 0.51; 512>256 and 512>128 0.89x; its
// downsampling 1x1/2 256>512 on 56x56 0.80x at one image, 0.87x at two; 128>256 0.72x;
// GoogLeNet's 192>64 and 256>128 at 28x28 0.57x and 0.77x; Inception v3's 288>64 and 192>64 at
// 35x35 0.73x and 0.59x). On 56x56 planes 0.85-1.08x (ResNet's 64>64 and 256>128 slower), at
// 4-8 images 0.93-1.18x, on 14x14 and 7x7 planes 1.2-3.4x (OpenBLAS's longer runs; a 14x14
// plane's 13 vectors a row are too few for the tile's final sums): the GEMM. With the AVX2
// tables on that core (FASTCONV_ISA=avx2; OpenBLAS on its Haswell kernels) 0.67-0.93x over the
// same planes (the 1x1/2 256>512 0.81x and 0.93x at two images, 192>64 0.67-0.70x, 288>64
// 0.83x, 256>128 0.92x), even for 512>256 (0.99x), and 1.04x for 128>512 (0.61 against 0.59
// ms, taken with the rest); at 8 images 1.05-1.52x. AVX2-only CPUs were not measured: the GEMM.
template <class T>
static bool weight_grad_dots_pay(const ConvShape &s) {
  if (!std::is_same<T, float>::value || !ukernels<T>().dots_tile) return false;
  if (!wide_avx512() && !(full_avx512_core() && ukernels<T>().dots_nr == 4)) return false;
  if (s.g != 1 || s.ph != 0 || s.pw != 0 || s.dil_h != 1 || s.dil_w != 1) return false;
  return s.n <= 2 && s.howo >= 28 * 28 && s.howo <= 35 * 35 && std::min(s.c, s.k) >= 64;
}

template <class T>
fc_status conv2d_backward_weight__gemm1x1(const ConvShape &s, const T *dy, const T *x, T *dw) {
  if (weight_grad_dots_pay<T>(s)) return weight_grad_dots(s, dy, x, dw);
  return gemm_conv_backward_weight(s, dy, x, dw, gemm_in_place(s));
}

FC_INSTANTIATE_CONV_ALGO(gemm1x1, float)
FC_INSTANTIATE_CONV_ALGO(gemm1x1, double)

}  // namespace fc
