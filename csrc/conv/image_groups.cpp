// Small planes at two or more images: the GEMM paths with several images per GEMM.
//
// Per image, a 7x7 plane is a GEMM [kg, ckk] x [ckk, 49]: every image packs all the weights
// again (9.4 MB for ResNet's 3x3 512 layers), and 49 columns leave OpenBLAS's kernels mostly
// edges. Here the columns of a group of images lie side by side, [g][ckk][images*howo], built
// once into a buffer every thread shares, and one GEMM per group is cut into tiles for the
// threads (plan_tiles). The output and dy are laid out image-major (NCHW), so a tile's output
// is copied into y image by image (with the bias and the epilogue) and dy is gathered into the
// same side-by-side layout. Images per group follow the shape and the L3, never the thread
// count (README, "Determinism").
#include <omp.h>

#include "../blas.h"
#include "../epilogue.h"
#include "../hw.h"
#include "gemm_blocks.h"

namespace fc {

namespace {

// Images per GEMM: as many as have their columns (every group) in a quarter of the L3, the
// buffer every thread reads right after it is built (as the few-image runs).
int64_t image_groups(const ConvShape &s, int64_t elem) {
  const int64_t per_image = s.g * s.ckk * s.howo * elem;  // (validated sizes)
  return std::clamp<int64_t>(hardware().l3 / 4 / std::max<int64_t>(1, per_image), 1, s.n);
}

// Gathers dy's planes of images [n0, n0 + nn) into dys [g][kg][nn*howo] (image j at j*howo).
// Called by every thread of the team (an omp for with its barrier).
template <class T>
void gather_dy(const ConvShape &s, const T *dy, int64_t n0, int64_t nn, T *dys) {
  const int64_t ncol = nn * s.howo;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < nn * s.k; ++q) {
    const int64_t j = q / s.k, k = q % s.k, g = k / s.kg, r = k % s.kg;
    std::memcpy(dys + (g * s.kg + r) * ncol + j * s.howo, dy + ((n0 + j) * s.k + k) * s.howo,
                (size_t)s.howo * sizeof(T));
  }
}

// Builds the columns of images [n0, n0 + nn), every group, into cols [g][ckk][nn*howo].
// Called by every thread of the team.
template <class T>
void build_columns(const ConvShape &s, const T *x, int64_t n0, int64_t nn, T *cols) {
  const int64_t ncol = nn * s.howo;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < nn * s.g; ++q) {
    const int64_t j = q / s.g, g = q % s.g;
    im2col_block(s, x + ((n0 + j) * s.c + g * s.cg) * s.hw, s.cg, 0, s.howo,
                 cols + g * s.ckk * ncol + j * s.howo, ncol);
  }
}

// The two buffers of a group of images, [g][ckk][images*howo] and [k][images*howo] (output or
// gathered dy), the images per group, and the GEMM team's OpenBLAS reservation.
template <class T>
struct GroupBuffers {
  int64_t ni, most;
  int nt;
  Buffer<T> cols, rows;
  fc_status status = FC_OK;
  explicit GroupBuffers(const ConvShape &s)
      : ni(image_groups(s, sizeof(T))), most(ni * s.howo),
        nt(gemm_threads()),  // (the parallel regions call gemm)
        cols(s.g * s.ckk * most), rows(s.k * most) {
    if (!cols.ok() || !rows.ok())
      status = fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of columns",
                    (long long)((s.g * s.ckk + s.k) * most * (int64_t)sizeof(T)));
    else status = blas_reserve(nt);
  }
};

}  // namespace

// Where it pays, measured in-process against the per-image paths (interleaved, best of 5, AVX2
// EPYC, 2 threads): only on planes under 64 outputs. There, at 32 images, ResNet's 3x3 512 at
// 7x7 ran 1.05-1.15x faster in every direction and its 1x1 512>2048 1.02-1.09x; at 8 images
// the two were even or mixed (the 1x1's weight gradient 1.25x slower grouped), and on 14x14
// planes grouping lost up to 1.6x. A gathered (strided) 1x1 gains at any batch, whose columns
// are a plain copy: ResNet's 1x1/2 1024>2048 to 7x7 at 8 images ran 1.27x faster forward, 1.12x
// for the data gradient and 1.6x for the weight gradient (the per-image path adds a GEMM of 49
// terms into the whole dW per image; 1.8x for ResNet-18's 256>512), never slower. So does the
// weight gradient of a larger kernel at 2-15 images (alternating processes, best of 2 x 2):
// Inception v1's 5x5 48>128 at 7x7 1.25x faster at 2 and 4 images, 1.05x at 8; ResNet's 3x3
// 512 at 7x7 1.13x at 2 images, even at 8; a 3x3 160>320 at 4 images 1.0-1.14x. (Its forward
// and data gradient lost 0.6-0.9x grouped at 4 images, and a 1x1 in place 0.6-0.9x.)
// The weight gradient of 2-7 images also on planes under 512 outputs, where the per-image path
// sums each image's short reduction into the whole dW in turn (interleaved in one process,
// best of 14): L4's 7x7 on 10x10 outputs 0.77x the time at 2 images and 0.61x at 4, ResNet's
// 3x3 256 at 14x14 0.85x and 0.91x, 512 at 14x14 0.89x at 2, GoogLeNet's 5x5 32>128 and 24>64
// at 14x14 and 4 images 0.75x and 0.85x, Inception v3's 1x7/7x1 at 17x17 0.79-0.93x at 2-4
// images, a 7x7 on 18x18 at 6 images 0.77x, OverFeat's 5x5 to 20x20 at 4 images 0.95x. From 8
// images the slots are better (L4 1.3x slower grouped, the 5x5 32>128 1.1x); 28x28 planes were
// mixed (0.85-1.35x).
//
// The data gradient also at 4-15 images where the weights are 8 L2s or more, at most 8 MiB (4
// MiB on the AVX2 EPYC measured below, 8 on Zen 4's 1 MiB L2 and on the 2-vCPU Xeon's 2 MiB,
// where 16 had kept ResNet's 3x3/2 512 (9.4 MB) per image: grouped 8.7-8.9 ms at 8 images
// against 10.3-10.4, 4.3-4.4 against 5.0-5.3 at 4; interleaved, best of 5, 2 threads, session
// 45). Per image, its GEMM re-packs all of W^T from the L3 or, inside a training step where the forward
// and the other layers have since passed through the caches, from memory. Interleaved in one
// process, best of 30, per image -> grouped, "cold" with a 64 MB pass over memory before each
// call (as in a step), "warm" without: ResNet-50's 3x3/2 512 to 7x7 at 8 images cold 23.3 ->
// 19.2 ms, warm 19.4 -> 18.1, at 4 images cold 14.5 -> 11.7, warm 11.9 -> 11.6; ResNet-18's
// 3x3/2 256>512 at 8 images cold 12.4 -> 8.5, warm 9.9 -> 8.6; the 1x1 2048>512 at 7x7 (in
// place) at 8 images cold 12.9 -> 8.4, warm even, at 4 images cold 6.0 -> 5.1, warm 4.5 -> 4.2.
// Smaller weights lose grouped (the gather and the copy into dx cost more than the packing
// saved): GoogLeNet's 1x1 832>48 to 832>384 at 7x7 and 4 images 1.05-2.5x slower, its 3x3
// 160>320 even to 1.09x; at 2 images the 3x3/2 512 ran 1.13x slower warm.
//
// The weight gradient of a 1x1 in place (no column matrix per image) from 8 images on planes
// of 64 outputs or fewer, against its per-image GEMMs of 49-64 terms (interleaved in one
// process, best of 9, warm and after a 64 MB pass over memory, session 27): Inception v3's
// 2048>192 to 2048>384 and 1280>320 at 8x8 and 8 images 0.82-0.99x the time, GoogLeNet's
// 832>256 at 7x7 0.84-0.89x, ResNet-50's 512>2048 and 2048>512 at 7x7 0.97-1.03x; at 2 and 4
// images grouping lost (1.0-1.5x), and on 14x14 planes at 8 it came out even (0.97-1.02x).
bool use_image_groups(const ConvShape &s, bool in_place, GemmDir dir, int64_t elem) {
  const bool weight_grad = dir == GemmDir::weight;
  if (weight_grad && in_place && s.n >= 8 && s.howo <= 64) return true;
  if (weight_grad && !in_place && s.n >= 2 && s.n < fixed_items() && s.howo < 512) return true;
  if (s.n < 2 || s.howo >= 64) return false;
  if (dir == GemmDir::data && s.n >= 4 &&
      s.g * s.kg * s.ckk * elem >= std::min<int64_t>(8 * hardware().l2, 8 << 20))
    return true;
  return s.n >= 16 || (!in_place && (s.kk == 1 || weight_grad));
}

// y[n, g*kg + r, :] = W_g [kg, ckk] x columns [ckk, images*howo] (+ bias), then the epilogue,
// tile by tile.
template <class T>
fc_status forward_image_groups(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                               const Epilogue<T> *ep) {
  GroupBuffers<T> gb(s);
  if (gb.status != FC_OK) return gb.status;
#pragma omp parallel num_threads(gb.nt)
  for (int64_t n0 = 0; n0 < s.n; n0 += gb.ni) {  // every thread walks the same groups of images
    const int64_t nn = std::min(gb.ni, s.n - n0), ncol = nn * s.howo;
    build_columns(s, x, n0, nn, gb.cols.get());  // (ends on a barrier)
    const Tiles tl = plan_tiles(s.kg, ncol);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
      const TileAt t(tl, q, s.kg, ncol);
      if (t.empty()) continue;
      T *o = gb.rows.get() + t.g * s.kg * ncol;
      gemm(false, false, t.r1 - t.r0, t.c1 - t.c0, s.ckk, T(1), w + (t.g * s.kg + t.r0) * s.ckk,
           s.ckk, gb.cols.get() + t.g * s.ckk * ncol + t.c0, ncol, T(0), o + t.r0 * ncol + t.c0,
           ncol);
      for (int64_t c = t.c0; c < t.c1;) {  // into y, one image's stretch of the tile at a time
        const int64_t j = c / s.howo, p0 = c % s.howo, np = std::min(t.c1 - c, s.howo - p0);
        T *yt = y + ((n0 + j) * s.k + t.g * s.kg + t.r0) * s.howo + p0;
        for (int64_t r = 0; r < t.r1 - t.r0; ++r) {
          const T *src = o + (t.r0 + r) * ncol + c;
          T *dst = yt + r * s.howo;
          const T bias = b ? b[t.g * s.kg + t.r0 + r] : T(0);
          if (b)
            for (int64_t p = 0; p < np; ++p) dst[p] = src[p] + bias;
          else std::memcpy(dst, src, (size_t)np * sizeof(T));
        }
        if (ep) epilogue_block(*ep, y, yt - y, t.r1 - t.r0, np, s.howo);
        c += np;
      }
    }
  }
  return FC_OK;
}

// Columns [ckk, images*howo] = W_g^T [ckk, kg] x dy [kg, images*howo], tile by tile; then each
// image's columns are scattered into its dx (col2im).
template <class T>
fc_status backward_data_image_groups(const ConvShape &s, const T *dy, const T *w, T *dx,
                                     bool accumulate) {
  GroupBuffers<T> gb(s);
  if (gb.status != FC_OK) return gb.status;
#pragma omp parallel num_threads(gb.nt)
  for (int64_t n0 = 0; n0 < s.n; n0 += gb.ni) {
    const int64_t nn = std::min(gb.ni, s.n - n0), ncol = nn * s.howo;
    gather_dy(s, dy, n0, nn, gb.rows.get());  // (ends on a barrier)
    const Tiles tl = plan_tiles(s.ckk, ncol);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
      const TileAt t(tl, q, s.ckk, ncol);
      if (t.empty()) continue;
      gemm(true, false, t.r1 - t.r0, t.c1 - t.c0, s.kg, T(1), w + t.g * s.kg * s.ckk + t.r0, s.ckk,
           gb.rows.get() + t.g * s.kg * ncol + t.c0, ncol, T(0),
           gb.cols.get() + (t.g * s.ckk + t.r0) * ncol + t.c0, ncol);
    }
#pragma omp for schedule(static)
    for (int64_t q = 0; q < nn * s.g; ++q) {
      const int64_t j = q / s.g, g = q % s.g;
      T *dxg = dx + ((n0 + j) * s.c + g * s.cg) * s.hw;
      if (!accumulate) std::fill(dxg, dxg + s.cg * s.hw, T(0));
      col2im_block(s, gb.cols.get() + g * s.ckk * ncol + j * s.howo, ncol, s.cg, 0, s.howo, dxg);
    }
  }
  return FC_OK;
}

// dW_g [kg, ckk] = the sum over groups of images, in order, of dy [kg, images*howo] x
// columns^T [images*howo, ckk]; dW cut into tiles, each summing the groups into its range.
template <class T>
fc_status backward_weight_image_groups(const ConvShape &s, const T *dy, const T *x, T *dw) {
  GroupBuffers<T> gb(s);
  if (gb.status != FC_OK) return gb.status;
  const Tiles tl = plan_tiles(s.kg, s.ckk);
#pragma omp parallel num_threads(gb.nt)
  for (int64_t n0 = 0; n0 < s.n; n0 += gb.ni) {
    const int64_t nn = std::min(gb.ni, s.n - n0), ncol = nn * s.howo;
    build_columns(s, x, n0, nn, gb.cols.get());
    gather_dy(s, dy, n0, nn, gb.rows.get());
#pragma omp for schedule(static)
    for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
      const TileAt t(tl, q, s.kg, s.ckk);
      if (t.empty()) continue;
      // dy [rows, ncol] x columns[c0:c1]^T [ncol, nc] -> dW_g[rows, c0:c1] (the first group sets)
      weight_gemm(t.r1 - t.r0, t.c1 - t.c0, ncol, gb.rows.get() + (t.g * s.kg + t.r0) * ncol, ncol,
                  gb.cols.get() + (t.g * s.ckk + t.c0) * ncol, ncol, n0 != 0,
                  dw + (t.g * s.kg + t.r0) * s.ckk + t.c0, s.ckk);
    }
  }
  return FC_OK;
}

#define FC_INSTANTIATE_IMAGE_GROUPS(T)                                                           \
  template fc_status forward_image_groups<T>(const ConvShape &, const T *, const T *, const T *, \
                                             T *, const Epilogue<T> *);                          \
  template fc_status backward_data_image_groups<T>(const ConvShape &, const T *, const T *, T *, \
                                                   bool);                                        \
  template fc_status backward_weight_image_groups<T>(const ConvShape &, const T *, const T *, T *);
FC_INSTANTIATE_IMAGE_GROUPS(float)
FC_INSTANTIATE_IMAGE_GROUPS(double)

}  // namespace fc
