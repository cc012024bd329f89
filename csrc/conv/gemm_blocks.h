// The pieces the GEMM paths share (im2col.cpp, image_groups.cpp): the im2col gather and its
// adjoint, and the cut of a GEMM's output into tiles for the threads.
#pragma once
#include <algorithm>
#include <cstring>

#include "../blas.h"
#include "../cpu/ukernels.h"
#include "../hw.h"
#include "../internal.h"

namespace fc {

// The walk im2col_block and col2im_block share: for channels c < nch, taps (i, j) and the
// positions [p0, p1) cut at output-row ends, f(c, tap, rel, ih, ow0, ow1, a, b, off) per stretch
// of output row oh, columns [ow0, ow1): tap = (c*kh + i)*kw + j is the column-matrix row;
// position oh*wo + ow lies at rel + ow in it; ih is the input row (maybe outside the plane);
// columns [a, b) read input column ow*sw + off inside the plane.
template <class F>
inline void for_each_tap_stretch(const ConvShape &s, int64_t nch, int64_t p0, int64_t p1, F f) {
  for (int64_t c = 0; c < nch; ++c) {
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t tap = (c * s.kh + i) * s.kw + j, off = j * s.dil_w - s.pw;
        int64_t lo, hi;
        valid_range(off, s.sw, s.in_w, s.wo, &lo, &hi);
        for (int64_t p = p0; p < p1;) {
          const int64_t oh = p / s.wo, ow0 = p - oh * s.wo;
          const int64_t ow1 = std::min(s.wo, ow0 + (p1 - p));
          const int64_t a = std::clamp(lo, ow0, ow1), b = std::clamp(hi, a, ow1);
          f(c, tap, p - p0 - ow0, oh * s.sh - s.ph + i * s.dil_h, ow0, ow1, a, b, off);
          p += ow1 - ow0;
        }
      }
    }
  }
}

// col[(c*kh + i)*kw + j][p - p0] = x[c, oh*sh - ph + i*dil_h, ow*sw - pw + j*dil_w] (0 outside),
// for channels c < nch of x (one image, first channel of the range) and positions p in [p0, p1).
// An in-place shape's (1x1, unit stride, unpadded) column row is one run of its channel's plane,
// copied whole: by stretches of output rows (8 elements on Inception v3's 8x8 planes) the copy
// had been 12% of its 1x1 2048>320 weight gradient at 8 images (image groups); whole, the
// weight gradients of Inception v3's and ResNet's 1x1 on 7x7 and 8x8 planes at 8-16 images took
// 0.87-0.97x the time (interleaved, best of 9, AVX2 EPYC, 2 threads, session 30; same bits).
template <class T>
void im2col_block(const ConvShape &s, const T *x, int64_t nch, int64_t p0, int64_t p1, T *col,
                  int64_t ld) {
  if (gemm_in_place(s)) {  // (1x1, unit stride, unpadded: each channel's row one run)
    for (int64_t c = 0; c < nch; ++c) {
      const T *__restrict xr = x + c * s.hw + p0;
      T *__restrict d = col + c * ld;
      for (int64_t q = 0; q < p1 - p0; ++q) d[q] = xr[q];
    }
    return;
  }
  for_each_tap_stretch(s, nch, p0, p1,
                       [&](int64_t c, int64_t tap, int64_t rel, int64_t ih, int64_t ow0,
                           int64_t ow1, int64_t a, int64_t b, int64_t off) {
    T *d = col + tap * ld + rel;  // d[ow] for this output row
    // Inline loops, not memcpy/memset calls: on small planes the stretches are a few elements
    // (a 5x5 on 7x7: 3-7), and the calls took a third of Inception v1's 5x5 weight gradients;
    // the loops ran them 1.1-1.4x faster (im2col.cpp and image_groups.cpp are built with
    // -fno-tree-loop-distribute-patterns, so GCC keeps them loops).
    if (ih < 0 || ih >= s.in_h) {
      for (int64_t q = ow0; q < ow1; ++q) d[q] = T(0);
      return;
    }
    const T *xr = x + c * s.hw + ih * s.in_w;
    for (int64_t q = ow0; q < a; ++q) d[q] = T(0);
    if (s.sw == 1) {
      for (int64_t q = a; q < b; ++q) d[q] = xr[q + off];
    } else if (s.sw == 2) {  // (a constant stride: the compiler vectorises the gather)
      const T *src = xr + 2 * a + off;
      for (int64_t q = 0; q < b - a; ++q) d[a + q] = src[2 * q];
    } else {
      for (int64_t ow = a; ow < b; ++ow) d[ow] = xr[ow * s.sw + off];
    }
    for (int64_t q = b; q < ow1; ++q) d[q] = T(0);
  });
}

// The adjoint of im2col_block: dx[c, ih, iw] += col[...] for every in-bounds tap, only input
// rows [ih0, ih1) (a band of them: the terms of an element come in the same order either way).
template <class T>
void col2im_block(const ConvShape &s, const T *col, int64_t ld, int64_t nch, int64_t p0, int64_t p1,
                  T *dx, int64_t ih0 = 0, int64_t ih1 = INT64_MAX) {
  ih0 = std::max<int64_t>(ih0, 0);
  ih1 = std::min(ih1, s.in_h);
  if (gemm_in_place(s) && ih0 == 0 && ih1 == s.in_h) {  // (one term an element, as below)
    for (int64_t c = 0; c < nch; ++c) {
      const T *__restrict d = col + c * ld;
      T *__restrict xr = dx + c * s.hw + p0;
      for (int64_t q = 0; q < p1 - p0; ++q) xr[q] += d[q];
    }
    return;
  }
  for_each_tap_stretch(s, nch, p0, p1,
                       [&](int64_t c, int64_t tap, int64_t rel, int64_t ih, int64_t, int64_t,
                           int64_t a, int64_t b, int64_t off) {
    if (ih < ih0 || ih >= ih1) return;
    const T *d = col + tap * ld + rel;
    T *xr = dx + c * s.hw + ih * s.in_w;  // (+ off per element: dx + off alone can lie far outside)
    if (s.sw == 1) {
      for (int64_t ow = a; ow < b; ++ow) xr[ow + off] += d[ow];
    } else {
      for (int64_t ow = a; ow < b; ++ow) xr[ow * s.sw + off] += d[ow];
    }
  });
}

// A [m, n] product cut into pm x pn tiles: `count` (a power of 2) of them where tiles keep at
// least 16 rows and 64 columns, and among those cuts the one that packs least (each tile's GEMM
// packs its [m/pm, k] and [k, n/pn] operands: k*(pn*m + pm*n) elements in all). Follows the
// shape only.
struct Tiles {
  int64_t pm, pn;
};
Tiles plan_tiles(int64_t m, int64_t n, int64_t count = fixed_items());
// The weight gradient's tiles where its reductions are short (im2col.cpp): as few as the cores
// (hardware().tile_parts; then twice, four times, up to fixed_items()), the first count whose
// cut leaves a tile's [m/pm, n/pn] block of elem-byte values in a quarter of the L2, and among
// its cuts the one that packs least; where none fits, the smallest block. Tiles of at least 16
// rows and 64 columns (plan_tiles where none is). Follows the shape and the machine's facts
// fixed at load (tile parts, L2): OpenBLAS may round a product cut otherwise differently.
Tiles plan_wide_tiles(int64_t m, int64_t n, int64_t elem);

// The weight gradient's product dW [m, n] (+)= dy [m, k] x columns^T [n, k] (accumulate: add
// into dW, else set it). Under 32 columns of dW (a first layer's 3 channels x 3x3 taps are 27)
// OpenBLAS packs both operands for products of a few dozen rows and columns and ran them at
// 47-62 GFLOP/s on one AVX2 core, where the dot-product micro-kernel (vectorized along the
// positions, no packing) ran 72-89 (32x27, 64x27, 128x27 over 3-22k positions); from 48
// columns up OpenBLAS was as fast or faster.
template <class T>
inline void weight_gemm(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda, const T *b,
                        int64_t ldb, bool accumulate, T *c, int64_t ldc) {
  if (n < 32) ukernels<T>().gemm_nt(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  else gemm(false, true, m, n, k, T(1), a, lda, b, ldb, accumulate ? T(1) : T(0), c, ldc);
}

// A linear layer's product over a batch, C [m, n] = A [m, k] x B^T with B [n, k] (x W^T), on
// dot products where rows_dot_pays, else OpenBLAS. With up to 64 rows of float (32 of double)
// and a whole weight larger than the L2, OpenBLAS packed B and streamed it at 8-11 GB/s (2-16
// rows of 9216 x 4096 floats, 2 threads, Zen 4). The dot products (ukernels' NT tile) run over
// B in chunks of rows that stay in the L2 while every row block of A passes over them, so B is
// read from memory once: 0.16-0.78x the time at 2-64 rows, 0.86-0.97x at one row against
// sgemv. A weight that fits the L2 stays with OpenBLAS (1024 x 256: the dot products took
// 1.08-1.20x at 1-8 rows; smaller, up to 2.4x: each of their sums ends in a reduction across
// the lanes). Each element is its own dot product: the bits do not depend on how n is cut.
// `weight_bytes`: the whole weight's, of which B may be a part.
template <class T>
inline bool rows_dot_pays(int64_t m, int64_t weight_bytes) {
  return m * (int64_t)sizeof(T) <= 256 && weight_bytes > hardware().l2;
}
template <class T>
inline void rows_times_nt(bool dot, int64_t m, int64_t n, int64_t k, const T *a, int64_t lda,
                          const T *b, int64_t ldb, T *c, int64_t ldc) {
  if (!dot) {
    gemm(false, true, m, n, k, T(1), a, lda, b, ldb, T(0), c, ldc);
    return;
  }
  // (chunks of a quarter of the L2, in multiples of 12 rows: whole tiles on every table)
  const int64_t row_bytes = std::max<int64_t>(k, 1) * (int64_t)sizeof(T);
  const int64_t rows = std::max<int64_t>(12, hardware().l2 / 4 / row_bytes / 12 * 12);
  for (int64_t j = 0; j < n; j += rows)
    ukernels<T>().gemm_nt(m, std::min(rows, n - j), k, a, lda, b + j * ldb, ldb, c + j, ldc, false);
}

// y[r, :cols] = b[r] for rows r < rows, ld apart: a forward GEMM then adds its product to the
// bias (beta 1) where OpenBLAS would zero the block (beta 0) for a second pass to add it: one
// pass over the output fewer, 1-2% of ResNet-50's batch-1 plan (AVX2 EPYC, 2 threads; with
// alpha 1 and the reduction in one OpenBLAS block, b + product rounds as product + b did, and
// that plan gave the same bits either way). The bits follow the shape, as before.
template <class T>
inline void bias_rows(T *y, const T *b, int64_t rows, int64_t cols, int64_t ld) {
  ukernels<T>().fill_rows(y, b, rows, cols, ld);
}

// Start of part i of `parts` over [0, size), a multiple of `align` (so GEMM tiles start on the
// microkernel's edges); part `parts` starts at size. Parts are non-empty while size/parts >= align.
inline int64_t part_start(int64_t size, int64_t i, int64_t parts, int64_t align) {
  return i >= parts ? size : size * i / parts / align * align;
}

// Tile q of the plan_tiles cut tl of every group's [m, n] product (groups after tiles): group g,
// rows [r0, r1), columns [c0, c1) (empty when r1 == r0 or c1 == c0).
struct TileAt {
  int64_t g, r0, r1, c0, c1;
  TileAt(const Tiles &tl, int64_t q, int64_t m, int64_t n) {
    const int64_t i = q / tl.pn % tl.pm, j = q % tl.pn;
    g = q / (tl.pm * tl.pn);
    r0 = part_start(m, i, tl.pm, 8);
    r1 = part_start(m, i + 1, tl.pm, 8);
    c0 = part_start(n, j, tl.pn, 16);
    c1 = part_start(n, j + 1, tl.pn, 16);
  }
  bool empty() const { return r1 == r0 || c1 == c0; }
};

// --- Small planes (image_groups.cpp) --------------------------------------------------------
// Planes of under 64 outputs (ResNet's 7x7 layers) at 2 or more images: the columns of several
// images side by side in one GEMM, instead of one GEMM of howo columns per image that packs all
// the weights again. use_image_groups: where that pays (the measurements at its definition),
// for the forward, the data gradient or the weight gradient; elem: bytes per value.
enum class GemmDir { forward, data, weight };
bool use_image_groups(const ConvShape &s, bool in_place, GemmDir dir, int64_t elem);
template <class T>
fc_status forward_image_groups(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                               const Epilogue<T> *ep);
template <class T>
fc_status backward_data_image_groups(const ConvShape &s, const T *dy, const T *w, T *dx,
                                     bool accumulate);
template <class T>
fc_status backward_weight_image_groups(const ConvShape &s, const T *dy, const T *x, T *dw);

}  // namespace fc
