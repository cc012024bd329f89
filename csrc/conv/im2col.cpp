// im2col / col2im + OpenBLAS GEMM: the general path (any stride, padding, dilation, groups).
//
// The output positions of one image are cut into column blocks of `cbw` positions, so the
// column buffer of one block, [cg*kh*kw, cbw], stays around 4 L2s (column_budget) instead of
// the whole N*C*kh*kw*Ho*Wo matrix. Work items are (image, column block); every thread owns one
// column buffer. GEMMs are row-major (cblas does the swap to column-major internally).
// With fewer images than that feeds (batch 1 inference, small batches), the forward and the
// large weight gradients take the shared-run, tiled path below ("Few images").
//
// gemm1x1.cpp reuses the same drivers with `in_place`: a 1x1 stride-1 unpadded convolution
// needs no column matrix, the input plane [cg, h*w] already is one. im2col itself runs such a
// convolution in place too, so on 1x1 kernels the two are the same code.
#include <omp.h>

#include "../blas.h"
#include "../epilogue.h"
#include "../hw.h"
#include "../internal.h"
#include "gemm_blocks.h"

namespace fc {

namespace {

struct ColPlan {
  int64_t cbw;      // columns (output positions) per block
  int64_t nblocks;  // blocks per image
};

// Bytes of columns per thread: 4 x the L2 (2 MiB on the 512 KiB-L2 EPYC it was measured on).
// im2col writes the block and the GEMM reads it right after, so it should stay near the core
// (the L2 and this core's share of the L3), and be wide enough that each GEMM amortises packing
// the weights. A hardware fact, the same at every thread count (README, "Determinism").
int64_t column_budget() { return 4 * hardware().l2; }

// rows: rows of the column buffer. outer: independent items besides the blocks (images...).
// in_place: no column buffer is written, so blocks are only cut to feed every thread (a
// wider GEMM repacks its weight operand less often). The cut follows the shape, never the
// thread count (fixed_items()): each block is a GEMM whose rounding depends on its n.
ColPlan plan_columns(const ConvShape &s, int64_t rows, int64_t elem, int64_t outer, bool in_place) {
  const int64_t budget = column_budget();
  int64_t cbw =
      in_place ? s.howo : std::max<int64_t>(256, budget / std::max<int64_t>(1, rows * elem));
  const int64_t items = fixed_items();
  if (outer < items) {  // too few images to feed the threads: split each image more finely
    int64_t want = (items + outer - 1) / outer;
    cbw = std::min(cbw, std::max<int64_t>(64, (s.howo + want - 1) / want));
  }
  cbw = std::max<int64_t>(1, std::min(cbw, s.howo));
  // Blocks of even width, not full blocks and a runt: ResNet/VGG's 14x14 planes at batch 1 were
  // cut 64+64+64+4, so of 2 threads one ran 128 columns and the other 68 (VGG 3x3 512@14 forward:
  // 11.7 -> 9.8 ms as 4 x 49, interleaved best of 6).
  const int64_t even = (s.howo + (s.howo + cbw - 1) / cbw - 1) / ((s.howo + cbw - 1) / cbw);
  return {even, (s.howo + even - 1) / even};
}

}  // namespace

bool im2col_supports(const ConvShape &s) {
  return gemm_dims_fit(s.kg) && gemm_dims_fit(s.ckk) && gemm_dims_fit(s.howo) &&
         gemm_dims_fit(s.hw) && gemm_dims_fit(s.kg * s.ckk);
}

// The column operand of item `it` (image n, column block at p0, np wide) for group g: the input
// plane itself in place, else built into col; ldb is its row stride.
template <class T>
struct ItemColumns {
  int64_t n, p0, np, ldb;
  const T *cols;
};
template <class T>
ItemColumns<T> item_columns(const ConvShape &s, const ColPlan &pl, const T *x, int64_t it,
                            int64_t g, bool in_place, T *col) {
  const int64_t n = it / pl.nblocks, p0 = (it % pl.nblocks) * pl.cbw;
  const int64_t np = std::min(s.howo, p0 + pl.cbw) - p0;
  const T *xg = x + (n * s.c + g * s.cg) * s.hw;
  if (in_place) return {n, p0, np, s.hw, xg + p0};
  im2col_block(s, xg, s.cg, p0, p0 + np, col, np);
  return {n, p0, np, np, col};
}

// --- Few images (n < fixed_items(): inference at batch 1, small training batches) ---------------
//
// Cutting one image's positions into fixed_items() column blocks gives each thread a GEMM of every
// output channel over a few positions: the weights are packed once per block, and a 7x7 plane
// (49 positions) is one block, so one thread ran ResNet-50's last 3x3 layers alone. Here a run
// of an image's positions has its columns (every group) built once into a shared buffer, by
// every thread, and the product is cut into tiles of rows x columns for the threads.

Tiles plan_tiles(int64_t m, int64_t n, int64_t count) {
  const int64_t max_pm = std::max<int64_t>(1, m / 16), max_pn = std::max<int64_t>(1, n / 64);
  Tiles best{1, 1};
  int64_t best_count = 0;
  double best_cost = 0;
  for (int64_t pm = 1; pm <= count; pm *= 2) {
    const int64_t a = std::min(pm, max_pm), b = std::min(count / pm, max_pn);
    const int64_t got = a * b;
    const double cost = double(b) * double(m) + double(a) * double(n);
    if (got > best_count || (got == best_count && cost < best_cost)) {
      best = {a, b};
      best_count = got;
      best_cost = cost;
    }
  }
  return best;
}

Tiles plan_wide_tiles(int64_t m, int64_t n, int64_t elem) {
  const int64_t parts = hardware().tile_parts, cap = hardware().l2 / 4;
  const int64_t max_pm = std::max<int64_t>(1, m / 16), max_pn = std::max<int64_t>(1, n / 64);
  Tiles best{0, 0};
  int64_t best_bytes = 0;
  double best_cost = 0;
  for (int64_t count = parts; count <= std::max<int64_t>(parts, fixed_items()); count *= 2) {
    for (int64_t pm = 1; pm <= count; ++pm) {
      const int64_t pn = count / pm;
      if (pm * pn != count || pm > max_pm || pn > max_pn) continue;
      const int64_t bytes = (m + pm - 1) / pm * ((n + pn - 1) / pn) * elem;
      const double cost = double(pn) * double(m) + double(pm) * double(n);
      const bool fits = bytes <= cap, best_fits = best.pm > 0 && best_bytes <= cap;
      if (best.pm == 0 || (fits && !best_fits) || (fits && cost < best_cost) ||
          (!fits && !best_fits && bytes < best_bytes)) {
        best = {pm, pn};
        best_bytes = bytes;
        best_cost = cost;
      }
    }
    if (best.pm > 0 && best_bytes <= cap) break;
  }
  return best.pm > 0 ? best : plan_tiles(m, n);
}

// Positions per run: the columns of every group for the run in a quarter of the L3 (shared by
// every thread, read by all of them right after they are written), a multiple of 64, or the
// whole plane. In place (a 1x1 convolution's input plane is its column matrix) nothing is built.
int64_t run_width(const ConvShape &s, int64_t elem, bool in_place) {
  if (in_place) return s.howo;
  const int64_t fit = hardware().l3 / 4 / std::max<int64_t>(1, s.g * s.ckk * elem);
  return fit >= s.howo ? s.howo : std::max<int64_t>(64, fit / 64 * 64);
}

// Builds the columns of positions [p0, p0 + np) of image n, every group, into cols
// ([g][ckk][np]), cut into fixed_items() parts per group for the threads: runs of channels where a
// group has that many, else runs of positions. Cutting a small plane's positions split its
// rows into short stretches, each with its own bookkeeping: by channels, L4's weight gradient
// at batch 1 (7x7 on 16x16, 100 positions) took 0.83x the time, L2's (9x9 on 64x64) 0.71x,
// Inception v3's 7x1 on 17x17 0.76x (AVX2 EPYC, 2 threads, interleaved in one process); forwards
// stayed even. A copy: the cut never changes a value. Must be called by every thread of the
// team (an omp for with its barrier).
template <class T>
void build_run(const ConvShape &s, const T *x, int64_t n, int64_t p0, int64_t np, T *cols) {
  const int64_t items = fixed_items();
  if (s.cg >= items) {
#pragma omp for schedule(static)
    for (int64_t q = 0; q < s.g * items; ++q) {
      const int64_t g = q / items, part = q % items;
      const int64_t ca = part_start(s.cg, part, items, 1),
                    cb = part_start(s.cg, part + 1, items, 1);
      if (cb > ca)
        im2col_block(s, x + (n * s.c + g * s.cg + ca) * s.hw, cb - ca, p0, p0 + np,
                     cols + (g * s.ckk + ca * s.kk) * np, np);
    }
    return;
  }
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(items, np / 16));
#pragma omp for schedule(static)
  for (int64_t q = 0; q < s.g * parts; ++q) {
    const int64_t g = q / parts, part = q % parts;
    const int64_t pa = p0 + part_start(np, part, parts, 1),
                  pb = p0 + part_start(np, part + 1, parts, 1);
    if (pb > pa)
      im2col_block(s, x + (n * s.c + g * s.cg) * s.hw, s.cg, pa, pb,
                   cols + g * s.ckk * np + (pa - p0), np);
  }
}

// The skeleton both few-image paths share: per image, per run of positions, the run's columns
// built (unless in place), then the tiles of plan_tiles(kg, ncols(np)) handed to the threads as
// tile(n, g, p0, np, r0, r1, c0, c1, cols): rows [r0, r1) of the group's kg, columns [c0, c1).
template <class T, class Cols, class Plan, class Tile>
fc_status for_each_run_tile(const ConvShape &s, const T *x, bool in_place, Cols ncols, Plan plan,
                            Tile tile) {
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t run = run_width(s, sizeof(T), in_place);
  Buffer<T> cols(in_place ? 0 : s.g * s.ckk * run);
  if (!cols.ok())
    return fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of columns",
                (long long)(s.g * s.ckk * run * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
#pragma omp parallel num_threads(nt)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t p0 = 0; p0 < s.howo; p0 += run) {  // every thread walks the same runs
      const int64_t np = std::min(s.howo, p0 + run) - p0, nc = ncols(np);
      if (!in_place) build_run(s, x, n, p0, np, cols.get());  // (ends on a barrier)
      const Tiles tl = plan(nc);
#pragma omp for schedule(static)
      for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
        const TileAt t(tl, q, s.kg, nc);
        tile(n, t.g, p0, np, t.r0, t.r1, t.c0, t.c1, cols.get());
      }
    }
  }
  return FC_OK;
}

// y[n, g, r0:r1, run c0:c1] = W_g[r0:r1] x columns [ckk, c0:c1] (+ bias): tiles of output
// channels x positions.
template <class T>
fc_status forward_few_images(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                             bool in_place, const Epilogue<T> *ep) {
  const auto plan = [&](int64_t nc) { return plan_tiles(s.kg, nc); };
  return for_each_run_tile(s, x, in_place, [](int64_t np) { return np; }, plan,
                           [&](int64_t n, int64_t g, int64_t p0, int64_t np, int64_t r0, int64_t r1,
                               int64_t c0, int64_t c1, const T *cols) {
    const T *bm = in_place ? x + (n * s.c + g * s.cg) * s.hw + p0 + c0 : cols + g * s.ckk * np + c0;
    T *yt = y + (n * s.k + g * s.kg + r0) * s.howo + p0 + c0;
    if (b) bias_rows(yt, b + g * s.kg + r0, r1 - r0, c1 - c0, s.howo);
    gemm(false, false, r1 - r0, c1 - c0, s.ckk, T(1), w + (g * s.kg + r0) * s.ckk, s.ckk, bm,
         in_place ? s.hw : np, b ? T(1) : T(0), yt, s.howo);
    if (ep) epilogue_block(*ep, y, yt - y, r1 - r0, c1 - c0, s.howo);
  });
}

// Few images, both ways possible: dW's tiles pack their operands k*(pn*m + pm*n) elements in
// all (plan_tiles), where the slots pack k*(m + n) and add `slots` copies of dW [m, n]. With a
// small dW (ResNet's stem: 64 x 147, over 12544 positions) the slots measured 1.7x faster; with
// a large one (3x3/2 256 at 28x28, 1x1 1024>512 at 14x14) the tiles 1.6-2x. Where columns are
// built, the tiles' run is built into the L3 while a slot's block stays in its core's L2, so
// the tiles must pack a quarter less: Inception's 5x5 48>64 at 35x35 (0.97 of the slots' count)
// ran 1.45x faster in slots, its 7x1 (0.6) 1.25x faster tiled; in place, 1x1 512>256 at 28x28
// (0.97) ran 1.35x faster tiled.
bool tiles_pack_less(const ConvShape &s, int64_t slots, bool in_place) {
  const Tiles tl = plan_tiles(s.kg, s.ckk);
  const double k = double(s.n) * double(s.howo), m = double(s.kg), n = double(s.ckk);
  return k * (double(tl.pn) * m + double(tl.pm) * n) <
         (in_place ? 1.0 : 0.75) * (k * (m + n) + double(slots) * m * n);
}

// dW_g [kg, ckk] = sum over runs of dy[n, g, :, run] x columns(run)^T, dW cut into tiles for
// the threads (plan_tiles), each tile summing the runs in order: no private copies, no reduction.
template <class T>
fc_status weight_grad_few_images(const ConvShape &s, const T *dy, const T *x, T *dw, bool in_place,
                                 bool wide = false) {
  const auto plan = [&](int64_t nc) {
    return wide ? plan_wide_tiles(s.kg, nc, sizeof(T)) : plan_tiles(s.kg, nc);
  };
  return for_each_run_tile(s, x, in_place, [&](int64_t) { return s.ckk; }, plan,
                           [&](int64_t n, int64_t g, int64_t p0, int64_t np, int64_t r0, int64_t r1,
                               int64_t c0, int64_t c1, const T *cols) {
    const int64_t ldb = in_place ? s.hw : np;
    const T *bm =
        (in_place ? x + (n * s.c + g * s.cg) * s.hw + p0 : cols + g * s.ckk * np) + c0 * ldb;
    // dy[n, g*kg + r0 : r1, run] [nr, np] x columns[c0:c1]^T [np, nc] -> dW_g[r0:r1, c0:c1]
    // (the first run sets)
    weight_gemm(r1 - r0, c1 - c0, np, dy + (n * s.k + g * s.kg + r0) * s.howo + p0, s.howo, bm, ldb,
                n != 0 || p0 != 0, dw + (g * s.kg + r0) * s.ckk + c0, s.ckk);
  });
}

// --- Short reductions: implicit columns (forward_implicit) ------------------------------------
//
// A reduction of a few dozen rows (a first layer's 3 channels x 3x3 taps: 27) leaves OpenBLAS
// little to amortise: it packs the column block once more and zeroes the output for a second
// pass, and the column block itself is written and read back through the L2. Here no column
// matrix is built: the input rows a band of output rows reads are copied into their zero-padded
// column phases (copy_phase_row: u[c][b][r][q] = xpad[c][r0 + r][q*sw + b]), in which the
// column-matrix row of tap (c, i, j) for output row oh is a run of wo consecutive elements, at
// (oh - oh0)*sh*wq + off[tap], off = ((c*sw + j%sw)*rows + i*dil_h)*wq + j/sw. One output row
// at a time, every block of output channels is multiplied on the direct forward's register tile
// (cpu/ukernels.h short_gemm), the row's taps staying in the L1, each output element stored
// once: its bias (or 0) plus one sum in registers over the whole reduction, in order, so the
// bits follow the shape only.
// Applies with unit dilation along rows and buffers near the size of the input.
//
// Against the GEMM on built columns, interleaved, best of 5-7 (AVX2 EPYC, 2 threads, session
// 29; each image copied whole, then its rows multiplied): Inception v3's 3x3/2 3>32 at 299x299
// 0.72x the time at 8 images (PyTorch 1.05-1.13x ours) and 0.87x at 1, VGG-16's 3x3 3>64
// 0.79-0.90x, ResNet's 7x7/2 stem 0.76-0.78x, a 3x3 3>16 at 32x32 (64 images) 0.70x, 8>32 and
// 16>32 at 112x112 0.74-0.75x, 16>32 at 14x14 0.72x, 5x5 16>48 at 28x28 0.92x, 11x11 (L1,
// AlexNet's /4) 0.81-0.82x; 24 channels 0.88x. With 32-64 input channels it came out even or
// lost (3x3 32>64 at 147x147 0.99x, 3x3/2 64 at 56x56 1.24x), on 12-wide rows too (1.06x: their
// vectors half filled). The copy by bands, without a barrier per image, then took 0.90-0.92x
// that time for Inception v3's first layer and VGG's at 8 images (best of 9), the same
// elsewhere.
bool implicit_columns_pay(const ConvShape &s) {
  if (s.cg > 16 || s.ckk > 400 || s.wo < 14 || s.dil_w != 1) return false;
  const int64_t wq = s.wo + (s.kw - 1) / s.sw, hp = s.in_h + 2 * s.ph;
  int64_t plane, phases, image;  // (a plane's phases near the size of its input and output)
  return !__builtin_mul_overflow(hp, wq, &plane) && !__builtin_mul_overflow(plane, s.sw, &phases) &&
         phases <= 4 * (s.hw + s.howo) + 4096 && !__builtin_mul_overflow(phases, s.c, &image);
}

template <class T>
fc_status forward_implicit(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                           const Epilogue<T> *ep) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t kb = uk.kb, kblocks = (s.kg + kb - 1) / kb;
  const int nt = num_threads();
  // Bands of output rows, about 16 a thread over the batch (at most 16 rows: the copy stays in
  // the L2): each band's input rows, copied into a thread's own buffer right before its
  // products, with no barrier between images. The bands only say where the taps are copied
  // from, never what is summed: any cut gives the same bits.
  const int64_t band = std::clamp<int64_t>((s.n * s.ho + 16 * nt - 1) / (16 * nt), 1, 16);
  const int64_t bands = (s.ho + band - 1) / band;
  const int64_t wq = s.wo + (s.kw - 1) / s.sw;
  const int64_t rows = (band - 1) * s.sh + (s.kh - 1) * s.dil_h + 1;  // padded rows a band reads
  const int64_t mine = s.cg * s.sw * rows * wq + uk.vlen;             // + a vector of slack
  Buffer<T> u(mine * nt), wp(s.g * kblocks * s.ckk * kb);
  Buffer<int64_t> off(s.ckk);
  if (!u.ok() || !wp.ok() || !off.ok())
    return fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of column phases and weights",
                (long long)((mine * nt + s.g * kblocks * s.ckk * kb) * (int64_t)sizeof(T)));
  for (int64_t c = 0; c < s.cg; ++c)
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j)
        off.get()[(c * s.kh + i) * s.kw + j] =
            ((c * s.sw + j % s.sw) * rows + i * s.dil_h) * wq + j / s.sw;
#pragma omp parallel num_threads(nt)
  {
    // wp[g][block][t][r] = w[g*kg + block*kb + r][t], 0 past kg
#pragma omp for schedule(static)
    for (int64_t q = 0; q < s.g * kblocks; ++q) {
      const int64_t g = q / kblocks, k0 = (q % kblocks) * kb;
      T *d = wp.get() + q * s.ckk * kb;
      for (int64_t t = 0; t < s.ckk; ++t)
        for (int64_t r = 0; r < kb; ++r)
          d[t * kb + r] = k0 + r < s.kg ? w[(g * s.kg + k0 + r) * s.ckk + t] : T(0);
    }
    T *ub = u.get() + mine * omp_get_thread_num();
    std::fill(ub + mine - uk.vlen, ub + mine, T(0));
#pragma omp for schedule(static)
    for (int64_t it = 0; it < s.n * s.g * bands; ++it) {
      const int64_t n = it / (s.g * bands), g = it / bands % s.g;
      const int64_t oh0 = it % bands * band, oh1 = std::min(s.ho, oh0 + band);
      const int64_t used = (oh1 - oh0 - 1) * s.sh + (s.kh - 1) * s.dil_h + 1;
      const T *xg = x + (n * s.c + g * s.cg) * s.hw;
      for (int64_t c = 0; c < s.cg; ++c)
        for (int64_t bq = 0; bq < s.sw; ++bq)
          for (int64_t r = 0; r < used; ++r)
            copy_phase_row(s, xg + c * s.hw, bq, oh0 * s.sh + r - s.ph, wq,
                           ub + ((c * s.sw + bq) * rows + r) * wq);
      for (int64_t oh = oh0; oh < oh1; ++oh) {
        const T *xr = ub + (oh - oh0) * s.sh * wq;
        T *yr = y + (n * s.k + g * s.kg) * s.howo + oh * s.wo;
        for (int64_t q = 0; q < kblocks; ++q)
          uk.short_gemm(s.ckk, wp.get() + (g * kblocks + q) * s.ckk * kb, xr, off.get(),
                        b ? b + g * s.kg + q * kb : nullptr, yr + q * kb * s.howo, s.howo,
                        std::min(kb, s.kg - q * kb), s.wo);
        if (ep) epilogue_block(*ep, y, yr - y, s.kg, s.wo, s.howo);
      }
    }
  }
  return FC_OK;
}

// --- 1x1 products on the short product's tile (rows_product) -----------------------------------
//
// A unit-stride 1x1 is a GEMM whose columns are the input planes as they lie. OpenBLAS packs
// both operands per call and keeps 60-70% of its rate there on one image's 28x28-56x56 planes
// (ResNet-50's 64>256 at 56x56: 0.43 ms, 240 GFLOP/s). Here the weights are packed once per call
// into short_gemm's blocks ([kb outputs] per input channel, as forward_implicit packs them) and
// the positions go in blocks of one tile row (vlen x max_nvec: 64 floats on AVX-512): each
// block's columns, all input channels, are copied into the thread's own contiguous buffer (in
// the L1 for up to 128 channels, the L2 beyond), then every block of outputs is multiplied on
// the register tile, each sum in registers from its first term to its one store (the bias added
// after), and the plan's epilogue runs on the rows while they are in the L2. Read in place, the
// rows lie a plane apart (3-12 KB), past the L1 prefetcher's stride: 1.1-1.4x slower than the
// copy for 256-512 input channels. With many positions an item covers up to 8 blocks, so that
// the epilogue's residual is read in runs of up to 2 KB; the runs are cut at whole vectors as
// evenly as they come (a 28x28 plane's 49 vectors as 13 runs of 3-4, not 12 of 4 and one: one
// image's 1x1s onto 28x28 0.93-0.97x the time, ResNet-50's 512>128 in its batch-1 plan 0.94x;
// interleaved in one process, best of 20-25, the 2-vCPU Xeon, session 52; the same bits).
// Items: (image, group, run of blocks),
// and where they are fewer than fixed_items(), the output blocks cut in parts as well; each
// output is one chain of multiply-adds in channel order, so no cut changes a bit. A 1x1's data
// gradient, dx = W^T dy, is the same product with the weights packed transposed.
//
// The product's dimensions: y[n][g*outs + r][p] = sum over t < red of W_g[r][t] x[n][g*red + t][p]
// for p < plane; the forward's W_g is the group's weights [kg][cg], the data gradient's (x: dy,
// y: dx) their transpose (tw).
struct RowsDims {
  int64_t n, g, red, outs, plane;
  bool tw;
};
inline RowsDims rows_forward_dims(const ConvShape &s) {
  return {s.n, s.g, s.cg, s.kg, s.hw, false};
}
inline RowsDims rows_data_dims(const ConvShape &s) { return {s.n, s.g, s.kg, s.cg, s.hw, true}; }

// Elements of the weights packed for the product: whole blocks of kb outputs, each group's.
template <class T>
static int64_t rows_filter_size(const RowsDims &d) {
  const int64_t kb = ukernels<T>().kb;
  return d.g * ((d.outs + kb - 1) / kb) * kb * d.red;
}

template <class T>
static void rows_pack_blocks(const RowsDims &d, const T *w, T *wp) {
  const int64_t kb = ukernels<T>().kb, kblocks = (d.outs + kb - 1) / kb;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < d.g * kblocks; ++q) {  // wp[g][block][t][r] = W_g[block*kb + r][t]
    const int64_t g = q / kblocks, k0 = (q % kblocks) * kb;
    const T *wg = w + g * d.outs * d.red;
    T *o = wp + q * d.red * kb;
    for (int64_t t = 0; t < d.red; ++t)
      for (int64_t r = 0; r < kb; ++r)
        o[t * kb + r] = k0 + r >= d.outs ? T(0)
                        : d.tw           ? wg[t * d.outs + k0 + r]
                                         : wg[(k0 + r) * d.red + t];
  }
}

template <class T>
int64_t rows_1x1_filter_size(const ConvShape &s) {
  return rows_filter_size<T>(rows_forward_dims(s));
}

template <class T>
void rows_1x1_pack_filters(const ConvShape &s, const T *w, T *wp) {
#pragma omp parallel num_threads(num_threads())
  rows_pack_blocks(rows_forward_dims(s), w, wp);
}

// y = W x (+ b, then the epilogue) over d; packed: the weights as rows_pack_blocks leaves them
// (a prepared forward's), or null
template <class T>
fc_status rows_product(const RowsDims &d, const T *x, const T *w, const T *b, T *y,
                       const Epilogue<T> *ep, const T *packed) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t kb = uk.kb, kblocks = (d.outs + kb - 1) / kb, pb = (int64_t)uk.max_nvec * uk.vlen;
  int64_t span = pb;  // positions an item: up to 8 blocks while 4 x fixed_items() items remain
  while (span < 8 * pb && d.n * d.g * ((d.plane + 2 * span - 1) / (2 * span)) >= 4 * fixed_items())
    span *= 2;
  const int64_t runs = (d.plane + span - 1) / span, base = d.n * d.g * runs;
  const int64_t nvec = (d.plane + uk.vlen - 1) / uk.vlen;  // (runs <= nvec: span >= a vector)
  const int64_t kparts = std::clamp<int64_t>((fixed_items() + base - 1) / base, 1, kblocks);
  const int nt = num_threads();
  const int64_t wsize = packed ? 0 : rows_filter_size<T>(d);
  Buffer<T> wp(wsize), xb(d.red * pb * nt);
  Buffer<int64_t> off(d.red);
  if (!wp.ok() || !xb.ok() || !off.ok())
    return fail(FC_ENOMEM, "gemm1x1: cannot allocate %lld bytes of packed weights and columns",
                (long long)((wsize + pb * nt * d.red) * (int64_t)sizeof(T)));
  const T *wk = packed ? packed : wp.get();
  for (int64_t t = 0; t < d.red; ++t) off.get()[t] = t * pb;
#pragma omp parallel num_threads(nt)
  {
    if (!packed) rows_pack_blocks(d, w, wp.get());  // (ends on a barrier)
    T *xp = xb.get() + omp_get_thread_num() * d.red * pb;
    std::fill(xp, xp + d.red * pb, T(0));  // (a part block's tail lanes: read, never stored)
#pragma omp for schedule(static)
    for (int64_t it = 0; it < base * kparts; ++it) {
      const int64_t pi = it / kparts, kp = it % kparts;
      const int64_t n = pi / (d.g * runs), g = pi / runs % d.g, r = pi % runs;
      // (the run's positions: whole vectors, the runs as even as they come)
      const int64_t s0 = std::min(d.plane, nvec * r / runs * uk.vlen);
      const int64_t s1 = std::min(d.plane, nvec * (r + 1) / runs * uk.vlen);
      const int64_t q0 = kblocks * kp / kparts, q1 = kblocks * (kp + 1) / kparts;
      const T *xg = x + (n * d.g + g) * d.red * d.plane;
      T *yg = y + (n * d.g + g) * d.outs * d.plane;
      for (int64_t p0 = s0; p0 < s1; p0 += pb) {
        const int64_t np = std::min(pb, s1 - p0);
        for (int64_t t = 0; t < d.red; ++t)
          std::memcpy(xp + t * pb, xg + t * d.plane + p0, np * sizeof(T));
        for (int64_t q = q0; q < q1; ++q)
          uk.short_gemm(d.red, wk + (g * kblocks + q) * d.red * kb, xp, off.get(),
                        b ? b + g * d.outs + q * kb : nullptr, yg + q * kb * d.plane + p0, d.plane,
                        std::min(kb, d.outs - q * kb), np);
      }
      if (ep) {
        const int64_t r0 = q0 * kb, r1 = std::min(d.outs, q1 * kb);
        epilogue_block(*ep, y, yg - y + r0 * d.plane + s0, r1 - r0, s1 - s0, d.plane);
      }
    }
  }
  return FC_OK;
}

// Where a 1x1's forward runs on rows_product: float on the full-rate AVX-512 tables (its 6x4-vector
// tile), unit-stride unpadded 1x1s onto planes of 28x28 or more with up to 512 input channels, at
// one or two images or where the layer has no more outputs than inputs. Measured against the GEMM
// (OpenBLAS) and direct, interleaved in one process, best of 8-30 (the 2-vCPU Xeon, 2 threads,
// session 49), ms rows / GEMM / direct: ResNet-50's 64>64 at 56x56 0.105 / 0.129 / 0.125, 64>256
// 0.378 / 0.451 / 0.376, 256>64 0.391 / 0.480 / 0.502, 256>128 0.701 / 0.829 / 0.842, 128>512 at
// 28x28 0.383 / 0.454 / 0.348, 512>128 0.397 / 0.433 / 0.416, 512>256 0.725 / 0.804 / 0.715;
// GoogLeNet's 256>128 at 28x28 0.87x the GEMM, 64>192 at 56x56 0.78x; Inception v3's 288>64 at
// 35x35 0.85x. At 8 images 256>64 at 56x56 0.83x, 128>512 at 28x28 0.91x, 512>128 0.99x; in an
// inference plan at 8 images ResNet-50's 64>256 with its residual lost (5.3 -> 5.9 ms: the output
// written at 4x the input's size, where the GEMM's long tiles stream it better), so a widening 1x1
// takes it at one or two images only. On 14x14 and 7x7 planes 1.2-1.7x (a 196-wide plane fills 3 of
// 4 blocks' vectors) and strided (positions gathered) 1.2x: the GEMM or direct. With the AVX2
// tables (4x3 vectors) 0.89-1.12x the GEMM: not taken.
template <class T>
bool rows_1x1_pays(const ConvShape &s) {
  if (!std::is_same<T, float>::value || !wide_avx512() || !gemm_in_place(s)) return false;
  return s.howo >= 28 * 28 && s.ckk <= 512 && (s.n <= 2 || s.kg <= s.cg);
}

// Where a unit-stride 1x1's data gradient (dx = W^T dy, not added into dx) runs on the same
// product (rows_product with the weights packed transposed): float on the full-rate AVX-512
// tables, planes of 35x35 or more, up to 512 channels of dy. Measured against the GEMM
// (backward_data_few_in_place at 1-7 images, OpenBLAS) and direct, interleaved in one process,
// best of 12 (the 2-vCPU Xeon, 2 threads, session 49), ms rows / GEMM / direct, layer c>k: ResNet's
// 1x1 64>64 at 56x56 0.110 / 0.133 / 0.136, 64>256 0.446 / 0.508 / 0.551, 256>64 0.368 / 0.472
// / 0.413, 256>128 0.697 / 0.846 / 0.793; Inception v3's 288>64 at 35x35 0.178 / 0.215 / 0.195;
// at 8 images 64>256 3.72 / 4.39 / 5.55, 256>64 2.93 / 3.29 / 3.49, 256>128 5.89 / 6.50 / 6.41,
// but in a whole `bench auto` run 256>128 at 8 images took 9.12 ms against direct's 7.11 (all
// three rounds; 6.8 against 6.6 run alone): as with the forward, a product whose output has
// more rows than its input, at 3+ images, is left to the GEMM. On 28x28 planes 1.04-1.14x the
// faster of the two at one image (ResNet-50's 512>128 0.407 / 0.387 / 0.366; the GEMM there
// packs dy's tiles once for every row of W^T) and 0.93-1.03x at 8: not taken.
template <class T>
static bool rows_1x1_data_pays(const ConvShape &s) {
  if (!std::is_same<T, float>::value || !wide_avx512() || !gemm_in_place(s)) return false;
  return s.howo >= 35 * 35 && s.kg <= 512 && (s.n <= 2 || s.cg <= s.kg);
}

template <class T>
fc_status gemm_conv_forward(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                            bool in_place, const Epilogue<T> *ep, const T *packed) {
  if (ep && ep->none()) ep = nullptr;
  if (in_place && (packed || rows_1x1_pays<T>(s)))
    return rows_product(rows_forward_dims(s), x, w, b, y, ep, packed);
  if (!in_place && implicit_columns_pay(s)) return forward_implicit(s, x, w, b, y, ep);
  if (use_image_groups(s, in_place, GemmDir::forward, sizeof(T)))
    return forward_image_groups(s, x, w, b, y, ep);
  const ColPlan pl = plan_columns(s, s.ckk, sizeof(T), s.n, in_place);
  // One column block (a 7x7 plane), or in place (no columns to build, and each block's GEMM
  // packs all the weights): the shared-run tiles. With 2-7 blocks to build they measured no
  // faster (3x3 256@14, 3x3/2 256@28) or 1.5x slower (L4: 2 blocks, 16-row tiles packing
  // the 2.5 MB column matrix 8 times).
  if (s.n * pl.nblocks < fixed_items() && (in_place || s.n * pl.nblocks == 1))
    return forward_few_images(s, x, w, b, y, in_place, ep);
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t per_thread = in_place ? 0 : s.ckk * pl.cbw;
  Buffer<T> ws(per_thread * nt);
  if (!ws.ok())
    return fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of columns",
                (long long)(per_thread * nt * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  const int64_t items = s.n * pl.nblocks;
#pragma omp parallel num_threads(nt)
  {
    T *col = ws.get() + per_thread * omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      for (int64_t g = 0; g < s.g; ++g) {
        const ItemColumns<T> c = item_columns(s, pl, x, it, g, in_place, col);
        T *yg = y + (c.n * s.k + g * s.kg) * s.howo + c.p0;
        // (+ bias) W_g [kg, ckk] x [ckk, np] -> y[n, g*kg : +kg, p0 : p0+np]  (row stride howo)
        if (b) bias_rows(yg, b + g * s.kg, s.kg, c.np, s.howo);
        gemm(false, false, s.kg, c.np, s.ckk, T(1), w + g * s.kg * s.ckk, s.ckk, c.cols, c.ldb,
             b ? T(1) : T(0), yg, s.howo);
        if (ep) epilogue_block(*ep, y, yg - y, s.kg, c.np, s.howo);
      }
    }
  }
  return FC_OK;
}

// In place (1x1) with few (image, group) pairs: dx_g [cg, hw] = W_g^T [cg, kg] x dy_g [kg, hw],
// the forward's product with the weights transposed, cut the same way into tiles of channels x
// positions (plan_tiles). Chunks of 4-8 channels over the whole plane (below) had each thread
// pack all of dy once per chunk: ResNet-50's 1x1 64>256 at 56x56, batch 1, ran 0.68x PyTorch.
template <class T>
fc_status backward_data_few_in_place(const ConvShape &s, const T *dy, const T *w, T *dx,
                                     bool accumulate) {
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  if (fc_status st = blas_reserve(nt)) return st;
  int64_t per_pair = 1;  // tiles per (image, group): a power of 2, fixed_items() in all or more
  while (per_pair * s.n * s.g < fixed_items()) per_pair *= 2;
  const Tiles tl = plan_tiles(s.cg, s.hw, per_pair);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t q = 0; q < s.n * s.g * tl.pm * tl.pn; ++q) {
    const int64_t n = q / (s.g * tl.pm * tl.pn);
    const TileAt t(tl, q % (s.g * tl.pm * tl.pn), s.cg, s.hw);
    if (t.empty()) continue;
    // W_g[:, r0:r1]^T [r1-r0, kg] x dy[n, g][:, c0:c1] -> dx[n, g*cg + r0 : r1, c0:c1]
    gemm(true, false, t.r1 - t.r0, t.c1 - t.c0, s.kg, T(1), w + t.g * s.kg * s.ckk + t.r0, s.ckk,
         dy + (n * s.k + t.g * s.kg) * s.howo + t.c0, s.howo, accumulate ? T(1) : T(0),
         dx + (n * s.c + t.g * s.cg + t.r0) * s.hw + t.c0, s.hw);
  }
  return FC_OK;
}

// With columns, where the (image, group, channel chunk) items below would be one (an image of up to
// 4 channels, one group: a first layer at batch 1, which one thread ran): per image, per run of
// positions (run_width), the threads share the run's column matrix, its product W_g^T [ckk, kg] x
// dy [kg, run] cut into tiles (plan_tiles), then scatter it into dx in bands of input rows, each
// (channel, band) an item that writes only its own rows. A band walks the run's taps in
// col2im_block's order, so every dx element adds its terms in the same order whatever the bands:
// the cut never changes a bit. Against the one item, interleaved, best of 9 (AVX2 EPYC, 2 threads,
// session 28): L1 (11x11 on 3 channels at 128x128) 0.55x the time, the 7x7/2 stem 0.61x, VGG's
// first 3x3 0.53x, AlexNet's 11x11/4 0.60x. Where the items are 2-7 it came out 0.89-1.2x (2-4
// images of 3 channels 1.05-1.17x, 16-24 channels at one image 0.98-1.02x), so they stay.
template <class T>
fc_status backward_data_few_images(const ConvShape &s, const T *dy, const T *w, T *dx,
                                   bool accumulate) {
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t run = run_width(s, sizeof(T), false);
  Buffer<T> cols(s.g * s.ckk * run);
  if (!cols.ok())
    return fail(FC_ENOMEM, "col2im: cannot allocate %lld bytes of columns",
                (long long)(s.g * s.ckk * run * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  const int64_t bands = std::min<int64_t>(s.in_h, (fixed_items() + s.c - 1) / s.c);
#pragma omp parallel num_threads(nt)
  for (int64_t n = 0; n < s.n; ++n) {
    T *dxn = dx + n * s.c * s.hw;
    if (!accumulate) {
#pragma omp for schedule(static)
      for (int64_t c = 0; c < s.c; ++c) std::fill(dxn + c * s.hw, dxn + (c + 1) * s.hw, T(0));
    }
    for (int64_t p0 = 0; p0 < s.howo; p0 += run) {  // every thread walks the same runs
      const int64_t np = std::min(s.howo, p0 + run) - p0;
      const Tiles tl = plan_tiles(s.ckk, np);
#pragma omp for schedule(static)
      for (int64_t q = 0; q < s.g * tl.pm * tl.pn; ++q) {
        const TileAt t(tl, q, s.ckk, np);
        if (t.empty()) continue;
        // W_g[:, r0:r1]^T [r1-r0, kg] x dy[n, g][:, run c0:c1] -> cols_g [r0:r1, c0:c1]
        gemm(true, false, t.r1 - t.r0, t.c1 - t.c0, s.kg, T(1), w + t.g * s.kg * s.ckk + t.r0,
             s.ckk, dy + (n * s.k + t.g * s.kg) * s.howo + p0 + t.c0, s.howo, T(0),
             cols.get() + (t.g * s.ckk + t.r0) * np + t.c0, np);
      }  // (a barrier: the scatter reads every tile)
#pragma omp for schedule(static)
      for (int64_t q = 0; q < s.c * bands; ++q) {
        const int64_t c = q / bands, band = q % bands, g = c / s.cg;
        const int64_t ih0 = s.in_h * band / bands, ih1 = s.in_h * (band + 1) / bands;
        col2im_block(s, cols.get() + (g * s.ckk + (c % s.cg) * s.kk) * np, np, 1, p0, p0 + np,
                     dxn + c * s.hw, ih0, ih1);
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status gemm_conv_backward_data(const ConvShape &s, const T *dy, const T *w, T *dx, bool in_place,
                                  bool accumulate) {
  if (use_image_groups(s, in_place, GemmDir::data, sizeof(T)))
    return backward_data_image_groups(s, dy, w, dx, accumulate);
  if (in_place && !accumulate && rows_1x1_data_pays<T>(s))
    return rows_product(rows_data_dims(s), dy, w, (const T *)nullptr, dx,
                        (const Epilogue<T> *)nullptr, (const T *)nullptr);
  const int64_t ng = s.n * s.g, fixed = fixed_items();
  if (in_place && ng < fixed) return backward_data_few_in_place(s, dy, w, dx, accumulate);
  // Items own disjoint slices of dx: (image, group, channel chunk). Chunks split a group's
  // channels (at least 4 each) only when there are few (image, group) pairs (batch 1); the
  // split follows the shape, never the thread count (fixed_items()).
  const int64_t chunks =
      ng >= fixed ? 1
                  : std::max<int64_t>(1, std::min<int64_t>((s.cg + 3) / 4, (fixed + ng - 1) / ng));
  if (!in_place && ng * chunks == 1) return backward_data_few_images(s, dy, w, dx, accumulate);
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t max_ch = (s.cg + chunks - 1) / chunks;
  const ColPlan pl = plan_columns(s, max_ch * s.kk, sizeof(T), ng * chunks, in_place);
  const int64_t per_thread = in_place ? 0 : max_ch * s.kk * pl.cbw;
  Buffer<T> ws(per_thread * nt);
  if (!ws.ok())
    return fail(FC_ENOMEM, "col2im: cannot allocate %lld bytes of columns",
                (long long)(per_thread * nt * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  const int64_t items = ng * chunks;
#pragma omp parallel num_threads(nt)
  {
    T *col = ws.get() + per_thread * omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t n = it / (s.g * chunks), g = (it / chunks) % s.g, ch = it % chunks;
      const int64_t c0 = s.cg * ch / chunks, c1 = s.cg * (ch + 1) / chunks, nch = c1 - c0;
      if (nch == 0) continue;
      T *dxc = dx + (n * s.c + g * s.cg + c0) * s.hw;
      const T *dyg = dy + (n * s.k + g * s.kg) * s.howo;
      const T *wg = w + g * s.kg * s.ckk + c0 * s.kk;  // columns c0*kk.. of W_g [kg, ckk]
      if (!in_place && !accumulate) std::fill(dxc, dxc + nch * s.hw, T(0));
      for (int64_t p0 = 0; p0 < s.howo; p0 += pl.cbw) {
        const int64_t np = std::min(s.howo, p0 + pl.cbw) - p0;
        if (in_place) {
          // W_g[:, c0:c1]^T [nch, kg] x dy [kg, np] -> dx[n, c0:c1, p0:p0+np]  (row stride hw)
          gemm(true, false, nch, np, s.kg, T(1), wg, s.ckk, dyg + p0, s.howo,
               accumulate ? T(1) : T(0), dxc + p0, s.hw);
        } else {
          // W_g[:, rows]^T [nch*kk, kg] x dy [kg, np] -> col [nch*kk, np], then col2im
          gemm(true, false, nch * s.kk, np, s.kg, T(1), wg, s.ckk, dyg + p0, s.howo, T(0), col, np);
          col2im_block(s, col, np, nch, p0, p0 + np, dxc);
        }
      }
    }
  }
  return FC_OK;
}

// The weight gradient without private copies of dW, for layers whose copies would be large
// (a linear layer's weight, run as a 1x1 convolution, can be hundreds of MB) or whose items are
// too few to share out. In place (no columns): the rows of dW are split, at least 16 each.
template <class T>
fc_status weight_grad_by_rows(const ConvShape &s, const T *dy, const T *x, T *dw, int nt) {
  const int64_t parts =
      std::max<int64_t>(1, std::min<int64_t>((s.kg + 15) / 16, (fixed_items() + s.g - 1) / s.g));
  if (fc_status st = blas_reserve(nt)) return st;
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t it = 0; it < s.g * parts; ++it) {
    const int64_t g = it / parts, part = it % parts;
    const int64_t r0 = s.kg * part / parts, r1 = s.kg * (part + 1) / parts;
    if (r1 == r0) continue;
    for (int64_t n = 0; n < s.n; ++n)
      // dy[n, rows] [r1-r0, hw] x x[n, g]^T [hw, cg] -> dW_g[rows] (accumulated over images)
      weight_gemm(r1 - r0, s.ckk, s.howo, dy + (n * s.k + g * s.kg + r0) * s.howo, s.howo,
                  x + (n * s.c + g * s.cg) * s.hw, s.hw, n != 0, dw + (g * s.kg + r0) * s.ckk,
                  s.ckk);
  }
  return FC_OK;
}

// With columns: a run of items is built into one shared buffer (a quarter of the L3, 8 MiB on
// a 32 MiB L3: every thread's GEMMs read all of it, so it should stay in the shared cache);
// then dW_g is cut into `parts` ranges of its columns, and each part adds the run's products,
// in item order, into its range.
template <class T>
fc_status weight_grad_by_columns(const ConvShape &s, const T *dy, const T *x, T *dw, int nt) {
  const ColPlan pl = plan_columns(s, s.ckk, sizeof(T), s.n, false);
  const int64_t items = s.n * pl.nblocks;
  const int64_t item_size = s.g * s.ckk * pl.cbw;  // one item's columns, every group
  const int64_t run =
      std::clamp<int64_t>(hardware().l3 / 4 / (item_size * (int64_t)sizeof(T)), 1, items);
  int64_t parts = 1;  // a power of two up to fixed_items() / g, each at least 32 columns wide
  while (parts * 2 * s.g <= fixed_items() && s.ckk / (parts * 2) >= 32) parts *= 2;
  Buffer<T> cols(item_size * run);
  if (!cols.ok())
    return fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of columns",
                (long long)(item_size * run * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
#pragma omp parallel num_threads(nt)
  for (int64_t r0 = 0; r0 < items; r0 += run) {  // every thread walks the same runs
    const int64_t nr = std::min(run, items - r0);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < nr * s.g; ++q) {
      const int64_t it = r0 + q / s.g, g = q % s.g;
      const int64_t n = it / pl.nblocks, p0 = (it % pl.nblocks) * pl.cbw;
      const int64_t np = std::min(s.howo, p0 + pl.cbw) - p0;
      im2col_block(s, x + (n * s.c + g * s.cg) * s.hw, s.cg, p0, p0 + np,
                   cols.get() + (q / s.g) * item_size + g * s.ckk * np, np);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t gp = 0; gp < s.g * parts; ++gp) {
      const int64_t g = gp / parts, part = gp % parts;
      const int64_t j0 = s.ckk * part / parts, nj = s.ckk * (part + 1) / parts - j0;
      for (int64_t q = 0; q < nr; ++q) {
        const int64_t it = r0 + q, n = it / pl.nblocks, p0 = (it % pl.nblocks) * pl.cbw;
        const int64_t np = std::min(s.howo, p0 + pl.cbw) - p0;
        const T *col = cols.get() + q * item_size + (g * s.ckk + j0) * np;
        // dy [kg, np] x col[j0:j0+nj]^T [np, nj] -> dW_g[:, j0:j0+nj] (the first item sets)
        weight_gemm(s.kg, nj, np, dy + (n * s.k + g * s.kg) * s.howo + p0, s.howo, col, np, it != 0,
                    dw + g * s.kg * s.ckk + j0, s.ckk);
      }
    }
  }
  return FC_OK;
}

// dW_g = sum over items (image, column block) of dy [kg, np] x col^T [np, ckk]. The items are
// dealt into `slots` runs of consecutive items, fixed by the shape (fixed_items()); each slot
// sums its run in item order into a private copy of dW (slot 0 into dw itself), threads taking
// slots in any order, and the copies are added in slot order. So which terms meet, and every
// GEMM's m, n and k, follow the shape only, and each GEMM keeps the full [kg, ckk] width
// (cutting dW's columns instead measured 1.3x slower on VGG's 64->128 at 112x112, batch 8).
template <class T>
fc_status gemm_conv_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw,
                                    bool in_place) {
  if (use_image_groups(s, in_place, GemmDir::weight, sizeof(T)))
    return backward_weight_image_groups(s, dy, x, dw);
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const ColPlan pl = plan_columns(s, s.ckk, sizeof(T), s.n, in_place);
  const int64_t items = s.n * pl.nblocks, wsize = s.k * s.ckk;
  const int64_t fixed = fixed_items(), slots = std::min<int64_t>(fixed, items);
  // The most the private copies may take: half the L3 (16 MiB on a 32 MiB L3). They are fresh
  // pages every call (faulted in and zeroed), and beyond the L3 a pass more over memory: L5's
  // 37 MB of copies ran 2.2x slower than cutting dW. Which way runs follows the shape and this
  // hardware fact only, never the thread count.
  const int64_t copy_bytes = hardware().l3 / 2;
  const bool slots_fit =
      slots >= fixed / 2 && (slots - 1) * wsize * (int64_t)sizeof(T) <= copy_bytes;
  // In place, a slot whose GEMMs sum under 256 positions (14x14 planes at batch 4, 28x28 at
  // batch 1) runs a short reduction far below the GEMM's peak and still writes a whole copy of
  // dW: the tiles measured 1.2-1.6x faster there (interleaved in one process, best of 10, two
  // runs: GoogLeNet's 1x1 512>160 at 14x14, batch 4, 1.13-1.52 -> 0.91-1.10 ms, PyTorch
  // 1.01-1.16; ResNet-50's 1x1 128>512 at 28x28, batch 1, 1.30-1.40 -> 0.86-0.89, PyTorch
  // 0.93-1.02) and 1.1-1.2x slower from 392 positions on (1x1 64>256 at 56x56, batch 1;
  // 256>128 at 28x28, batch 4).
  const bool short_slots = in_place && s.n * s.howo < 256 * slots;
  // In place on planes up to 16x16 such slots take dW's tiles instead, as few as the cores
  // where a tile's block of dW stays in a quarter of the L2 (plan_wide_tiles): each operand
  // packed once or twice, no copies of dW. Against the slots (8 images) or plan_tiles' eight
  // tiles (fewer images), interleaved, best of 10, the 2-vCPU Xeon, 2 threads, session 53:
  // ResNet-50's 1x1 256>1024 at 14x14 0.90x the time at 8 images (PyTorch 0.95-0.98x ours; 0.87x
  // in session 52's bench auto) and 0.88x at one, GoogLeNet's 512>160 at 14x14 0.85-0.89x at 1-8
  // images, 1024>256 at 14x14 0.89x at 4 images; 7x7 and 8x8 planes and 768>192 at 16x16 even
  // (0.96-1.02x); with the AVX2 tables 0.91-0.94x on the 14x14 ones, even on the rest.
  if (short_slots && s.howo <= 256) return weight_grad_few_images(s, dy, x, dw, in_place, true);
  if (s.n < fixed && (short_slots || !slots_fit || tiles_pack_less(s, slots, in_place)))
    return weight_grad_few_images(s, dy, x, dw, in_place);
  if (!slots_fit)
    return in_place ? weight_grad_by_rows(s, dy, x, dw, nt)
                    : weight_grad_by_columns(s, dy, x, dw, nt);
  const int64_t per_thread = in_place ? 0 : s.ckk * pl.cbw;
  Buffer<T> ws(per_thread * nt), acc((slots - 1) * wsize);
  if (!ws.ok() || !acc.ok())
    return fail(FC_ENOMEM, "im2col: cannot allocate %lld bytes of weight-gradient workspace",
                (long long)((per_thread * nt + (slots - 1) * wsize) * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
#pragma omp parallel num_threads(nt)
  {
    T *col = ws.get() + per_thread * omp_get_thread_num();
#pragma omp for schedule(dynamic, 1)
    for (int64_t sl = 0; sl < slots; ++sl) {
      T *mine = sl ? acc.get() + (sl - 1) * wsize : dw;
      const int64_t i0 = items * sl / slots, i1 = items * (sl + 1) / slots;
      for (int64_t it = i0; it < i1; ++it) {
        for (int64_t g = 0; g < s.g; ++g) {
          const ItemColumns<T> c = item_columns(s, pl, x, it, g, in_place, col);
          // dy [kg, np] x col^T [np, ckk] -> dW_g [kg, ckk] (the slot's first item sets)
          weight_gemm(s.kg, s.ckk, c.np, dy + (c.n * s.k + g * s.kg) * s.howo + c.p0, s.howo,
                      c.cols, c.ldb, it != i0, mine + g * s.kg * s.ckk, s.ckk);
        }
      }
    }
    // (the implicit barrier: every slot is complete) dW = slot 0 + slot 1 + ... in slot order
#pragma omp for schedule(static)
    for (int64_t e = 0; e < wsize; ++e) {
      T sum = dw[e];
      for (int64_t sl = 1; sl < slots; ++sl) sum += acc.get()[(sl - 1) * wsize + e];
      dw[e] = sum;
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_forward__im2col(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  return gemm_conv_forward(s, x, w, b, y, gemm_in_place(s));
}
template <class T>
fc_status conv2d_backward_data__im2col(const ConvShape &s, const T *dy, const T *w, T *dx) {
  return gemm_conv_backward_data(s, dy, w, dx, gemm_in_place(s));
}
template <class T>
fc_status gemm_backward_data_into(const ConvShape &s, const T *dy, const T *w, T *dx) {
  return gemm_conv_backward_data(s, dy, w, dx, gemm_in_place(s), true);
}
template <class T>
fc_status conv2d_backward_weight__im2col(const ConvShape &s, const T *dy, const T *x, T *dw) {
  return gemm_conv_backward_weight(s, dy, x, dw, gemm_in_place(s));
}

#define FC_INSTANTIATE_GEMM_DRIVERS(T)                                                             \
  template fc_status gemm_conv_forward<T>(const ConvShape &, const T *, const T *, const T *, T *, \
                                          bool, const Epilogue<T> *, const T *);                   \
  template bool rows_1x1_pays<T>(const ConvShape &);                                               \
  template int64_t rows_1x1_filter_size<T>(const ConvShape &);                                     \
  template void rows_1x1_pack_filters<T>(const ConvShape &, const T *, T *);                       \
  template fc_status gemm_conv_backward_data<T>(const ConvShape &, const T *, const T *, T *,      \
                                                bool, bool);                                       \
  template fc_status gemm_conv_backward_weight<T>(const ConvShape &, const T *, const T *, T *,    \
                                                  bool);                                           \
  template fc_status gemm_backward_data_into<T>(const ConvShape &, const T *, const T *, T *);
FC_INSTANTIATE_GEMM_DRIVERS(float)
FC_INSTANTIATE_GEMM_DRIVERS(double)
FC_INSTANTIATE_CONV_ALGO(im2col, float)
FC_INSTANTIATE_CONV_ALGO(im2col, double)

}  // namespace fc
