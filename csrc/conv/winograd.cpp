// Winograd convolution F(m x m, 3 x 3) for 3x3 stride-1 undilated convolutions (any padding,
// groups, batch; dilated ones arrive on phase planes, conv/phases.cpp), after Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks".
//
// Forward: the filters are transformed once per call, U[e][k][c] = (G w[k][c] G^T)[e] for the
// alpha*alpha = (m + 2)^2 elements e. The output tiles of all images are numbered together and
// cut into blocks of `tb` tiles; per block a thread transforms the input patches,
// V[e][c][t] = (B^T d B)[e], multiplies per element and group M[e] = U[e] V[e] (one OpenBLAS
// GEMM each), and transforms back, y = A^T M A + bias, writing only the valid outputs of the
// ragged last tiles. The transforms are per-ISA micro-kernels (cpu/winograd_ukernels.h).
// Fused forwards (winograd_fused) keep U from going through memory whole or multiply in
// register tiles without packing: few tiles under many filters by panels of output channels
// (forward_fused), a few dozen to 256 tiles under 256x256 filters or more by elements
// (forward_fused_elements), many tiles under few channels in blocks (forward_fused_blocks).
//
// Data gradient: the full convolution of dy with the filters rotated by 180 degrees and
// transposed (k <-> c), i.e. the same forward at padding 2 - p (a negative padding crops).
//
// Weight gradient: by the transposition principle, the weight gradient of one tile is the
// Winograd algorithm F(3 x 3, m x m) with the same points:
//   dW_t = G^T [(A dy_t A^T) . (B^T x_t B)] G.
// Summed over tiles inside the transform, dW[k][c] = G^T Z[k][c] G with
// Z[e] = sum over tiles of (A dy A^T)[e][k][t] (B^T x B)[e][c][t]: GEMMs per element e that
// reduce over tiles, accumulated either per thread over cache-sized blocks (small Z) or into
// one Z over memory-sized chunks (large Z). With few tiles it runs F(2x2) (winograd_weight_tile),
// and so do the forward and the data gradient (forward_tile).
#include <omp.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>

#include "../blas.h"
#include "../cpu/winograd_ukernels.h"
#include "../epilogue.h"
#include "../hw.h"
#include "../internal.h"

namespace fc {

namespace {

// A stride-1 3x3 convolution in forward form: the forward itself, or the data gradient.
struct WinoConv {
  int64_t n, c, in_h, in_w;  // input [n, c, in_h, in_w]
  int64_t k, ho, wo;         // output [n, k, ho, wo]
  int64_t ph, pw;            // padding; negative crops the input
  int64_t g, cg, kg;         // groups, input and output channels per group
  bool transposed;  // filters are w[c][k] of the original convolution, rotated (data gradient)
};

// The forward itself in that form.
WinoConv forward_form(const ConvShape &s) {
  return {s.n, s.c, s.in_h, s.in_w, s.k, s.ho, s.wo, s.ph, s.pw, s.g, s.cg, s.kg, false};
}

// The data gradient in that form: the full convolution of dy with the filters rotated and
// transposed, at padding 2 - p (conv2d_backward_data__winograd).
WinoConv data_form(const ConvShape &s) {
  return {s.n, s.k, s.ho, s.wo, s.c, s.in_h, s.in_w, 2 - s.ph, 2 - s.pw, s.g, s.kg, s.cg, true};
}

// The output tile, for float and double alike: F(4x4, 3x3) does 4x fewer multiplications than
// direct convolution (F(2x2, 3x3) 2.25x) and ran VGG's 56x56 layers 1.4-1.6x faster than
// F(2x2); its float32 error on VGG, L5 and ResNet layers measured at most 3.2e-6 of the sum of
// absolute terms (F(2x2): 2.6e-7; float64: 7e-15), the bounds are in tests/test_winograd.py.
// A reduction over fewer than 8 channels per group (depthwise-like) takes F(2x2): F(4x4)'s
// error follows the magnitudes over its whole 6x6 input tile, so an output whose own window
// holds one or two small terms (a corner beside large neighbours) measured up to 2x the
// 1e-4*scale bound; with few channels F(4x4) also has no speed to gain.
// FASTCONV_WINOGRAD_TILE=2|4 forces one (the tests run both); forced_tile() is 0 without it.
int forced_tile() {
  static const int forced = [] {
    const char *env = std::getenv("FASTCONV_WINOGRAD_TILE");
    if (!env || !env[0] || env[1]) return 0;
    return env[0] == '2' ? 2 : env[0] == '4' ? 4 : 0;
  }();
  return forced;
}
int tile_size(int64_t reduction) {
  if (const int forced = forced_tile()) return forced;
  return reduction < 8 ? 2 : 4;
}

// Tiles per block: at least 128 (the GEMMs' n: each call repacks its U[e], so fewer tiles
// spend measurably more time packing), more while the block's V and M ([alpha^2][c + k][tb])
// stay within 4 L2s (2 MiB on the 512 KiB-L2 EPYC it was measured on: V is written and read
// back by one thread, so it scales with the per-core cache), at most 1024; then evened out
// over the blocks. From 384 channels (c + k) no block of 128 tiles fits that budget anyway
// (V and M of 512 + 512 channels: 19 MB) and repacking U[e] per block dominates: at least 256
// tiles there ran VGG's 3x3 layers with 128-512 channels in and 256-512 out on 28x28 and 56x56
// 0.84-0.94x the time at batch 8, forward and data gradient (interleaved in one process, best
// of 9, AVX2 EPYC, 2 threads), and 256 on 56x56 at batch 1 0.93x; on 7x7 and 14x14 planes
// even (0.97-1.03x); with fewer channels 256 lost (64 and 128: 1.06-1.10x). Never a function
// of the thread count.
int64_t block_tiles(int64_t total, int64_t per_tile_bytes, int64_t channels) {
  const int64_t budget = 4 * hardware().l2;
  const int64_t least = channels >= 384 ? 256 : 128;
  const int64_t tb =
      std::clamp<int64_t>(budget / std::max<int64_t>(1, per_tile_bytes), least, 1024);
  const int64_t nblocks = std::max<int64_t>(1, (total + tb - 1) / tb);
  return std::max<int64_t>(1, (total + nblocks - 1) / nblocks);
}

// Slots of the per-slot weight gradient: fixed_items(), fewer where a slot would hold under
// kSlotTiles tiles (each slot costs a pass over Z).
constexpr int64_t kSlotTiles = 192;
int64_t private_slots(int64_t total) {
  return std::clamp<int64_t>(total / kSlotTiles, 1, fixed_items());
}

// The workspaces are large (U alone is 4x the filters) and written in full on every call: ask
// for transparent huge pages (Linux's THP, "madvise" mode) so that the kernel faults them in
// 2 MiB at a time; with 4 KiB pages the faults took ~20% of a VGG 512-channel 14x14 layer.
template <class T>
void advise_huge_pages(const Buffer<T> &buf, int64_t count) {
#ifdef MADV_HUGEPAGE
  const uintptr_t lo = ((uintptr_t)buf.get() + 4095) & ~uintptr_t(4095);
  const uintptr_t hi = ((uintptr_t)buf.get() + (uintptr_t)count * sizeof(T)) & ~uintptr_t(4095);
  if (hi > lo + (uintptr_t(2) << 20)) madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
  (void)buf;
  (void)count;
#endif
}

// The tiles of a forward (tile_grid): m x m tiles over the outputs [oy0, oy1) x [ox0, ox1), th
// rows of tw tiles an image.
struct TileGrid {
  int64_t oy0, oy1, ox0, ox1, th, tw;
};

// Output tiles numbered across images: tile q is image q / (th*tw), row and column of tiles
// from the rest; the tiles start at output position (oy0, ox0).
void tile_list(int64_t q0, int64_t nt, int64_t th, int64_t tw, int m, int64_t oy0, int64_t ox0,
               WinoTile *tiles) {
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t q = q0 + t, r = q % (th * tw);
    tiles[t] = {q / (th * tw), oy0 + (r / tw) * m, ox0 + (r % tw) * m};
  }
}

// The outputs [lo, hi) along one axis that read the input at all: o - pad + [0, 2] meets
// [0, size). Beyond a padding of 2 the outer outputs read only zeros; they are set exactly
// (to the bias) instead of being tiled, where Winograd's rounding would leave them inexact.
void reach(int64_t size, int64_t pad, int64_t out, int64_t *lo, int64_t *hi) {
  *lo = std::clamp<int64_t>(pad - 2, 0, out);
  *hi = std::clamp<int64_t>(size + pad, *lo, out);
}

// U[e][k][0:cg] = (G w[k][c] G^T)[e], rows k of [k0, k1): the filters in the transform domain
// (forward form; transposed: the data gradient's rotated, transposed filters). False when one
// is not finite.
template <class T>
bool transform_filters(const WinogradUKernels<T> &uk, const WinoConv &p, const T *w, int64_t k0,
                       int64_t k1, T *u) {
  bool ok = true;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t base = p.transposed ? ((k / p.kg) * p.cg * p.kg + k % p.kg) * 9 : k * p.cg * 9;
    const int64_t step = p.transposed ? p.kg * 9 : 9;
    ok &= uk.weight(w + base, step, p.cg, p.transposed, u + k * p.cg, p.k * p.cg);
  }
  return ok;
}

// The epilogue (an inference plan's residual and activation) on the outputs of output channel
// k that tiles [0, nt) wrote, right after they were written (still in cache): per run of tiles
// along one tile row (tile_list's order), its m rows at once.
template <class T>
void tiles_epilogue(const Epilogue<T> &ep, T *y, int64_t k, int64_t kstride, int64_t howo,
                    int64_t wo, int m, const WinoTile *tiles, int64_t nt, int64_t y1, int64_t x1) {
  for (int64_t t = 0; t < nt;) {
    const WinoTile &first = tiles[t];
    int64_t u = t + 1;
    while (u < nt && tiles[u].img == first.img && tiles[u].oy == first.oy) ++u;
    const int64_t rows = std::min<int64_t>(m, y1 - first.oy);
    const int64_t cols = std::min<int64_t>(tiles[u - 1].ox + m, x1) - first.ox;
    epilogue_block(ep, y, first.img * kstride + k * howo + first.oy * wo + first.ox, rows, cols,
                   wo);
    t = u;
  }
}

// The outputs beyond the input's reach (reach()): the bias (or 0) on every side of the grid's
// [oy0, oy1) x [ox0, ox1), and the epilogue on them; nothing where the grid covers them all. An orphaned omp for without its barrier:
// call it from every thread of a parallel region.
template <class T>
void beyond_reach(const WinoConv &p, const TileGrid &g, const T *b, T *y, const Epilogue<T> *ep) {
  if (g.oy1 - g.oy0 == p.ho && g.ox1 - g.ox0 == p.wo) return;  // (every output in reach)
  const int64_t oy0 = g.oy0, oy1 = g.oy1, ox0 = g.ox0, ox1 = g.ox1, howo = p.ho * p.wo;
#pragma omp for schedule(static) nowait
  for (int64_t nk = 0; nk < p.n * p.k; ++nk) {
    T *plane = y + nk * howo;
    const T bias = b ? b[nk % p.k] : T(0);
    std::fill(plane, plane + oy0 * p.wo, bias);
    for (int64_t r = oy0; r < oy1; ++r) {
      std::fill(plane + r * p.wo, plane + r * p.wo + ox0, bias);
      std::fill(plane + r * p.wo + ox1, plane + (r + 1) * p.wo, bias);
    }
    std::fill(plane + oy1 * p.wo, plane + howo, bias);
    if (ep) {
      const int64_t off = nk * howo;
      epilogue_block(*ep, y, off, oy0, p.wo, p.wo);
      for (int64_t r = oy0; r < oy1; ++r) {
        epilogue_block(*ep, y, off + r * p.wo, 1, ox0, p.wo);
        epilogue_block(*ep, y, off + r * p.wo + ox1, 1, p.wo - ox1, p.wo);
      }
      epilogue_block(*ep, y, off + oy1 * p.wo, p.ho - oy1, p.wo, p.wo);
    }
  }
}

// The fused forward: for few tiles under many filters (ResNet's 512-channel 7x7 layers at
// batch 8: 32 tiles against 36 x 512 x 512 transformed filters), where the unfused forward spent
// most of its time writing U out to memory, and OpenBLAS reading it back to pack it, for GEMMs of
// a few dozen columns. Here U never exists whole. V, every tile's transformed input, is built
// first ([e][c][ldv], the columns padded to the product tile's width). Then per work item, a
// panel of `lanes` output channels (64 bytes of T): for each run of kFusedChunk input channels,
// their filters are transformed straight into a panel [e][c][lanes] that stays in the L2, and
// multiplied (tile_gemm, accumulators in registers) into the panel's M rows [e][lanes][total];
// the output transform writes the panel's channels. Every M element sums its input channels in
// one fixed order, whatever the thread count. One group only.
// Each thread takes a fixed run of panels, and transforms its own V where that stays within
// twice the L2 (own_v_fits); the panels had been taken dynamically from one shared V. With the
// 2 vCPUs far apart (forward_fused_elements) ResNet's 3x3 512 at 7x7, 2 images, took 3.25-3.28
// ms against 2.97-3.07 now (near 2.65-2.68 against 2.67-2.76), its data gradient at one image
// 2.42-2.75 against 2.18-2.39 (near 2.02 both), GoogLeNet's 192>384 at 7x7, 2 images, 1.0
// against 0.80 (near 0.777 against 0.756), Inception v3's 384 at 8x8 1.42-1.45 against
// 1.27-1.31 (near 1.17-1.18 both); alternating processes, best of 15, Zen 4, 2 threads.
constexpr int64_t kFusedChunk = 128;
// The most tiles forward_fused takes (winograd_fused); more run in blocks (forward_fused_blocks).
constexpr int64_t kFusedTiles = 40;
// The most tiles forward_fused_elements takes by default (winograd_fused_elements).
constexpr int64_t kElementTiles = 256;
// Tiles a block where forward_fused_elements takes two panels a pass (a multiple of every
// ISA's tile_gemm width).
constexpr int64_t kPairTiles = 24;

// Whether each thread of forward_fused_elements transforms its own copy of V (v_bytes each)
// rather than sharing one: up to twice the L2. Measured (Zen 4, 2 threads, float32, alternating
// processes; near / far as there): 0.9-1.8 MB of V (ResNet's 256 and 512 at 14x14 at one image)
// 1.025-1.045x the shared V's time near, 0.80-0.88x far; 3.5-7 MB (ResNet's 512 at 7x7 at 8
// images, 384 at 13x13 and 512 at 14x14 at 4, 256 at 14x14 at 12) 1.04-1.11x near, 0.90-0.95x
// far: the copies cost more near than they save far.
bool own_v_fits(int64_t v_bytes) { return v_bytes <= 2 * hardware().l2; }

// Panel q of the fused forward's filters, input channels [c0, c0 + kc): up[(e*ld_c + c - c0) *
// lanes + r] = (G w[q*lanes + r][c] G^T)[e] (rows r past k left as they are). False when one is
// not finite.
template <class T>
bool fused_panel(const WinogradUKernels<T> &uk, const WinoConv &p, const T *w, int64_t q,
                 int64_t c0, int64_t kc, int64_t ld_c, T *up) {
  constexpr int64_t W = 64 / sizeof(T);
  // filter (k, c) at w + k*sk + c*sc: w[k][c] (forward), or the original w[c][k] (transposed)
  const int64_t sk = p.transposed ? 9 : p.c * 9, sc = p.transposed ? p.k * 9 : 9;
  const int64_t k0 = q * W, nk = std::min(W, p.k - k0);
  bool ok = true;
  for (int64_t c = c0; c < c0 + kc; ++c)
    ok &= uk.weight(w + k0 * sk + c * sc, sk, nk, p.transposed, up + (c - c0) * W, ld_c * W);
  return ok;
}

// Panel q over every input channel into u's panel layout [q][e][c][lanes], rows past k zero (a
// part panel): what the blocked forward and prepared filters hold. False when one is not finite.
template <class T>
bool whole_panel(const WinogradUKernels<T> &uk, const WinoConv &p, const T *w, int64_t q, T *u) {
  constexpr int64_t W = 64 / sizeof(T);
  const int64_t size = int64_t(uk.alpha) * uk.alpha * p.c * W;
  T *uq = u + q * size;
  if ((q + 1) * W > p.k) std::fill(uq, uq + size, T(0));
  return fused_panel(uk, p, w, q, 0, p.c, p.c, uq);
}

// The fused forwards' outputs of a panel's channels [k0, k0 + nk), tiles [0, nt), from their
// M rows (mk: [e][lanes][nt]), with the bias and the epilogue.
template <class T>
void panel_outputs(const WinoConv &p, const WinogradUKernels<T> &uk, const T *mk,
                   const WinoTile *tiles, int64_t nt, int64_t k0, int64_t nk, const T *b, T *y,
                   const Epilogue<T> *ep, int64_t oy1, int64_t ox1) {
  constexpr int64_t W = 64 / sizeof(T);
  const int64_t howo = p.ho * p.wo;
  for (int64_t k = k0; k < k0 + nk; ++k) {
    uk.output(mk + (k - k0) * nt, W * nt, tiles, nt, b ? b[k] : T(0), y + k * howo, p.k * howo,
              p.wo, oy1, ox1);
    if (ep) tiles_epilogue(*ep, y, k, p.k * howo, howo, p.wo, uk.m, tiles, nt, oy1, ox1);
  }
}

// V[e][c][0:total] = (B^T d B)[e] for every tile of the list and input channel c, the columns
// up to ldv zero (tile_gemm reads whole widths): the fused forwards' V over all their tiles.
// False when a patch is not finite. An orphaned omp for, with its barrier: call it from every
// thread of a parallel region.
template <class T>
bool input_channel(const WinogradUKernels<T> &uk, const WinoConv &p, const T *x,
                   const WinoTile *tiles, int64_t total, T *v, int64_t ldv, int64_t c) {
  const int64_t hw = p.in_h * p.in_w, e2 = int64_t(uk.alpha) * uk.alpha;
  const bool ok = uk.input(x + c * hw, p.c * hw, p.in_h, p.in_w, p.ph, p.pw, tiles, total,
                           v + c * ldv, p.c * ldv);
  for (int64_t e = 0; e < e2; ++e)
    std::fill(v + (e * p.c + c) * ldv + total, v + (e * p.c + c + 1) * ldv, T(0));
  return ok;
}

template <class T>
bool inputs_all_tiles(const WinogradUKernels<T> &uk, const WinoConv &p, const T *x,
                      const WinoTile *tiles, int64_t total, T *v, int64_t ldv) {
  const int64_t hw = p.in_h * p.in_w, e2 = int64_t(uk.alpha) * uk.alpha;
  bool ok = true;
#pragma omp for schedule(static)
  for (int64_t c = 0; c < p.c; ++c) {
    ok &= uk.input(x + c * hw, p.c * hw, p.in_h, p.in_w, p.ph, p.pw, tiles, total, v + c * ldv,
                   p.c * ldv);
    for (int64_t e = 0; e < e2; ++e)
      std::fill(v + (e * p.c + c) * ldv + total, v + (e * p.c + c + 1) * ldv, T(0));
  }
  return ok;
}

// Whether the fused forwards multiply two panels of output channels at a time (tile_gemm2, the
// AVX-512 tables: 24 accumulators, two panel loads and twelve broadcasts a step for 24
// multiply-adds, against tile_gemm's one load and twelve broadcasts for 12), on full-rate
// AVX-512 cores, where tile_gemm's loads and not its multiply-adds set its pace. The same sums:
// the same bits. Measured there (prepared filters, bias and ReLU, interleaved in one process,
// best of 12, the 2-vCPU Xeon, 2 threads, session 52), the time against one panel a pass: in
// blocks (forward_fused_blocks) VGG's 64 at 224x224 0.90x, 128 at 112x112 0.94x, ResNet's 64
// at 56x56 at 8 images 0.91x, 128 at 28x28 0.99x; by elements ResNet's and VGG's 512 at 28x28
// 0.84x and at 14x14 0.83x, 2 images 0.85x, 8 images of 512 at 7x7 0.91x, 256 at 14x14
// 0.93-0.98x, but 256 at 56x56 0.99-1.02x (196 tiles; two panels' filters, 32 KB, may crowd
// the tiles' columns out of the L1); up to 40 tiles (forward_fused, prepared filters) 512 at 7x7
// 0.93x, 4 images 0.83x, 384 at 13x13 0.85x, 1024 at 12x12 0.80x, GoogLeNet's 192>384 at 7x7
// 0.89x. VGG-16's batch-1 plan 0.949x the time (78.1 -> 74.1 ms). Half-rate cores (Zen 4)
// were not measured: one panel a pass, as before.
template <class T>
bool pair_panels(const WinogradUKernels<T> &uk) {
  return uk.tile_gemm2 && wide_avx512();
}

// u_pre: the filters already in panels ([q][e][c][lanes], winograd_prepare_filters), or nullptr.
template <class T>
fc_status forward_fused(const WinoConv &p, const WinogradUKernels<T> &uk, const T *x, const T *w,
                        const T *b, T *y, bool *finite, const T *u_pre, const Epilogue<T> *ep,
                        const TileGrid &g) {
  constexpr int64_t W = 64 / sizeof(T);
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = num_threads();
  const int64_t total = p.n * g.th * g.tw, ldv = (total + uk.pw - 1) / uk.pw * uk.pw;
  const int64_t panels = (p.k + W - 1) / W, kc_max = std::min(kFusedChunk, p.c);
  const int64_t per_panel = u_pre ? 0 : e2 * kc_max * W;
  const bool pair = u_pre && pair_panels(uk);
  const int64_t per_thread = per_panel + e2 * W * total * (pair ? 2 : 1);  // filter panel, M rows
  const bool own_v = nt > 1 && own_v_fits(e2 * p.c * ldv * (int64_t)sizeof(T));
  Buffer<T> vs(e2 * p.c * ldv * (own_v ? nt : 1)), ws(per_thread * nt);
  Buffer<WinoTile> tl(total);
  if (!vs.ok() || !ws.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of workspace",
                (long long)((e2 * p.c * ldv + per_thread * nt) * (int64_t)sizeof(T)));
  advise_huge_pages(vs, e2 * p.c * ldv);
  tile_list(0, total, g.th, g.tw, m, g.oy0, g.ox0, tl.get());
  const WinoTile *tiles = tl.get();
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    bool ok = true;
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    T *up = ws.get() + per_thread * tid, *mk = up + per_panel;
    std::fill(up, up + per_panel, T(0));  // (rows past k are computed, never stored: defined)
    beyond_reach(p, g, b, y, ep);
    // a fixed run of panels per thread (their filters, M rows and outputs its own; see
    // forward_fused_elements)
    const int64_t qa = panels * tid / nth, qb = panels * (tid + 1) / nth;
    T *v = vs.get();
    if (!own_v) {
      ok &= inputs_all_tiles(uk, p, x, tiles, total, v, ldv);  // (its barrier: V is complete)
    } else if (qa < qb) {
      v += tid * e2 * p.c * ldv;
      for (int64_t c = 0; c < p.c; ++c) ok &= input_channel(uk, p, x, tiles, total, v, ldv, c);
    }
    for (int64_t q = qa; q < qb; q += pair ? 2 : 1) {
      const int64_t k0 = q * W, nk = std::min(W, p.k - k0);
      const bool two = pair && q + 1 < qb;  // two prepared panels a pass over V (tile_gemm2)
      const int64_t nk1 = two ? std::min(W, p.k - k0 - W) : 0;
      T *const mk1 = mk + e2 * W * total;
      for (int64_t c0 = 0; c0 < p.c; c0 += kc_max) {
        const int64_t kc = std::min(kc_max, p.c - c0);
        if (!u_pre) ok &= fused_panel(uk, p, w, q, c0, kc, kc_max, up);
        for (int64_t e = 0; e < e2; ++e) {
          const T *ue = u_pre ? u_pre + ((q * e2 + e) * p.c + c0) * W : up + e * kc_max * W;
          const T *ve = v + (e * p.c + c0) * ldv;
          for (int64_t t0 = 0; t0 < total; t0 += uk.pw) {
            const int64_t nr = std::min<int64_t>(uk.pw, total - t0), at = e * W * total + t0;
            if (two)
              uk.tile_gemm2(kc, ue, ue + e2 * p.c * W, ve + t0, ldv, mk + at, mk1 + at, total, nk,
                            nk1, nr, c0 > 0);
            else uk.tile_gemm(kc, ue, ve + t0, ldv, mk + at, total, nk, nr, c0 > 0);
          }
        }
      }
      panel_outputs(p, uk, mk, tiles, total, k0, nk, b, y, ep, g.oy1, g.ox1);
      if (two) panel_outputs(p, uk, mk1, tiles, total, k0 + W, nk1, b, y, ep, g.oy1, g.ox1);
    }
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The fused forward by elements: the same panels and tile_gemm, the loops the other way round.
// forward_fused takes a panel of output channels at a time and reads every element's V for it:
// with a few dozen tiles under 256+ channels, V ([e][c][ldv]: 0.9 MB for 256 channels and 49
// tiles) no longer stays in the L2 beside a panel's filters, and was read back from the L3 once
// per panel (16 times for 256 output channels). Here a thread walks the elements e, and for each
// the panels q it owns: V[e] (50 KB there) stays in the L1/L2 over them, and each panel's
// filters ([c][lanes] per element, in the order winograd_prepare_filters lays them out) are
// read once, in one pass of tile_gemm over every input channel.
//
// Each thread owns a fixed run of panels (qa..qb, by the thread count only): it transforms their
// filters, computes their M rows ([q][e][lanes][total]) and their outputs, so no filter panel
// and no M row written by one core is read by another, and no barrier waits between the stages.
// The work items had been (element, panel) pairs taken dynamically, the panels' filters
// transformed by whichever thread and the outputs after a barrier: about 3 MB crossing cores per
// call on ResNet's 256 at 14x14. On a 2-vCPU Zen 4 VM whose vCPUs are at times far apart (a
// cache line's round trip between them 300-600 ns, against 60-110 ns near; bench.core_probe)
// that call took 1.92-2.04 ms far against 0.95 ms near, where direct took 1.12 / 1.01 ms; owned
// panels took 1.22-1.24 ms far, and with a V per thread as well 0.99 ms (ResNet's 512 at 14x14
// 6.0-6.9 -> 4.1 -> 3.6 ms, from 3.7-3.8 near). Near, owned panels took 0.99x the old time
// (0.94 ms; 3.70 against 3.75 ms on the 512); a V per thread 1.025-1.045x that (every thread
// transforms every input channel) -- see own_v_fits. Every M element sums its input channels in
// one pass, in order, whatever the thread count. One group only.
template <class T>
fc_status forward_fused_elements(const WinoConv &p, const WinogradUKernels<T> &uk, const T *x,
                                 const T *w, const T *b, T *y, bool *finite, const T *u_pre,
                                 const Epilogue<T> *ep, const TileGrid &g) {
  constexpr int64_t W = 64 / sizeof(T);
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = num_threads();
  const int64_t total = p.n * g.th * g.tw, ldv = (total + uk.pw - 1) / uk.pw * uk.pw;
  const int64_t panels = (p.k + W - 1) / W;
  const int64_t usize = u_pre ? 0 : panels * e2 * p.c * W, msize = panels * e2 * W * total;
  Buffer<T> us(std::max<int64_t>(usize, 1)), vs(e2 * p.c * ldv), ms(msize);
  Buffer<WinoTile> tl(total);
  if (!us.ok() || !vs.ok() || !ms.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of workspace",
                (long long)((usize + e2 * p.c * ldv + msize) * (int64_t)sizeof(T)));
  if (usize) advise_huge_pages(us, usize);
  tile_list(0, total, g.th, g.tw, m, g.oy0, g.ox0, tl.get());
  const WinoTile *tiles = tl.get();
  const T *const u = u_pre ? u_pre : us.get();
  T *const v = vs.get();
  int bad = 0;  // set when a transform meets a NaN or an infinity
  // A V per thread where it stays small (own_v_fits): no line of V then crosses cores either.
  const bool own_v = nt > 1 && own_v_fits(e2 * p.c * ldv * (int64_t)sizeof(T));
  Buffer<T> vs_more(own_v ? e2 * p.c * ldv * (nt - 1) : 1);
  if (!vs_more.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of workspace",
                (long long)(e2 * p.c * ldv * (nt - 1) * (int64_t)sizeof(T)));
#pragma omp parallel num_threads(nt)
  {
    bool ok = true;
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t qa = panels * tid / nth, qb = panels * (tid + 1) / nth;  // this thread's panels
    beyond_reach(p, g, b, y, ep);
    if (!u_pre)
      for (int64_t q = qa; q < qb; ++q) ok &= whole_panel(uk, p, w, q, us.get());
    const T *vt = v;
    if (!own_v) {
      ok &= inputs_all_tiles(uk, p, x, tiles, total, v, ldv);  // (its barrier: V is complete)
    } else if (qa < qb) {
      T *mine = tid == 0 ? v : vs_more.get() + (tid - 1) * e2 * p.c * ldv;
      for (int64_t c = 0; c < p.c; ++c) ok &= input_channel(uk, p, x, tiles, total, mine, ldv, c);
      vt = mine;
    }
    // With two panels a pass (tile_gemm2), the tiles in blocks of kPairTiles: a block's columns
    // of V[e] stay in the L1 over every pair of panels, whose filters come from the L2. 256 at
    // 56x56 (196 tiles) 0.93-0.95x the time of whole rows of tiles a pair, 512 at 28x28 and 14x14
    // and 8 images of 256 at 14x14 0.98-1.00x (blocks of 12-96 tried; interleaved in one process,
    // best of 20, the 2-vCPU Xeon, session 52). The same sums: the same bits. With one panel a
    // pass, all tiles one block (V[e] stays in the L1/L2 over the panels).
    const bool pair = pair_panels(uk);
    const int64_t block = pair ? kPairTiles : total;
    for (int64_t e = 0; e < e2; ++e)
      for (int64_t b0 = 0; b0 < total; b0 += block)
        for (int64_t q = qa; q < qb; q += pair ? 2 : 1) {
          const int64_t nk = std::min(W, p.k - q * W), b1 = std::min(total, b0 + block);
          const T *ue = u + (q * e2 + e) * p.c * W, *ve = vt + e * p.c * ldv;
          T *mk = ms.get() + (q * e2 + e) * W * total;
          for (int64_t t0 = b0; t0 < b1; t0 += uk.pw) {
            const int64_t nr = std::min<int64_t>(uk.pw, total - t0);
            if (pair && q + 1 < qb)
              uk.tile_gemm2(p.c, ue, ue + e2 * p.c * W, ve + t0, ldv, mk + t0,
                            mk + e2 * W * total + t0, total, nk, std::min(W, p.k - (q + 1) * W), nr,
                            false);
            else uk.tile_gemm(p.c, ue, ve + t0, ldv, mk + t0, total, nk, nr, false);
          }
        }
    for (int64_t q = qa; q < qb; ++q)
      panel_outputs(p, uk, ms.get() + q * e2 * W * total, tiles, total, q * W,
                    std::min(W, p.k - q * W), b, y, ep, g.oy1, g.ox1);
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The fused forward over blocks of tiles, for many tiles under few channels (ResNet's and
// VGG's 64- and 128-channel layers), where the unfused forward's V and M ([alpha^2][c + k][tb],
// 128 tiles and more so that each GEMM amortises packing U[e]) went out to the L3 and back:
// there the transforms took about half the time. Here every filter is transformed once into
// the fused forward's panels ([q][e][c][lanes]), and a thread takes a block of `tb` tiles:
// their V ([e][c][ldv]) stays near its core while tile_gemm (no packing) multiplies it by every
// panel in turn, each panel's M rows ([e][lanes][tb]) turned into outputs right away. Every M
// element sums its input channels in one pass, in order, whatever the thread count; the blocks
// follow the shape only.
// Tiles per block: 48 (a multiple of every ISA's lane count and tile_gemm's width); measured
// against 96 and 192 (AVX2 EPYC, 2 threads, interleaved, best of 6): 96 0.89-1.0x, 192
// 0.91-1.12x the unfused time on ResNet's 64 and 128 and VGG's 64 channels, 48 0.86-0.91x;
// and against 24, 30, 36 and 60 (1 thread, best of 8 interleaved, 64 channels at 56x56 and
// 128 at 28x28, batch 8): 0.94-1.15x of 48's time, none better on both.
// At least fixed_items() blocks where each keeps 24 tiles or more: 392 tiles (ResNet's 128 on
// 28x28 at batch 8) made 9 blocks, and 16 threads (a 16-core Xeon, session 39) ran those
// layers 4.6x faster than one thread, where the other steps of the plan ran 7-9x faster; with 8
// work items (up to 8 CPUs) every shape that takes this path (from 392 tiles) already makes 9
// or more, so nothing changes there. Evened out over the blocks. A block only groups tiles:
// every output is the same sum whatever the blocks (tests/test_winograd.py).
int64_t fused_block_tiles(int64_t total) {
  const int64_t nblocks =
      std::max<int64_t>({1, (total + 47) / 48, std::min<int64_t>(fixed_items(), total / 24)});
  return (total + nblocks - 1) / nblocks;
}

template <class T>
fc_status forward_fused_blocks(const WinoConv &p, const WinogradUKernels<T> &uk, const T *x,
                               const T *w, const T *b, T *y, bool *finite, const T *u_pre,
                               const Epilogue<T> *ep, const TileGrid &g) {
  constexpr int64_t W = 64 / sizeof(T);
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = num_threads();
  const int64_t total = p.n * g.th * g.tw, panels = (p.k + W - 1) / W;
  const int64_t tb = fused_block_tiles(total);
  const int64_t nblocks = (total + tb - 1) / tb;
  const int64_t ldv = (tb + uk.pw - 1) / uk.pw * uk.pw;
  const int64_t usize = u_pre ? 0 : panels * e2 * p.c * W;
  const bool pair = pair_panels(uk);
  const int64_t per_thread = e2 * p.c * ldv + e2 * W * tb * (pair ? 2 : 1);  // V, panels' M
  Buffer<T> us(std::max<int64_t>(usize, 1)), ws(per_thread * nt);
  Buffer<WinoTile> tl(tb * nt);
  if (!us.ok() || !ws.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of workspace",
                (long long)((usize + per_thread * nt) * (int64_t)sizeof(T)));
  if (usize) advise_huge_pages(us, usize);
  const int64_t hw = p.in_h * p.in_w;
  const T *const u = u_pre ? u_pre : us.get();
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    bool ok = true;
    const int tid = omp_get_thread_num();
    T *const v = ws.get() + per_thread * tid, *const mk = v + e2 * p.c * ldv;
    WinoTile *const tiles = tl.get() + tb * tid;
    beyond_reach(p, g, b, y, ep);
    if (!u_pre) {
#pragma omp for schedule(static)
      for (int64_t q = 0; q < panels; ++q) ok &= whole_panel(uk, p, w, q, us.get());
    }  // (the implicit barrier: every panel is complete)
    // Each thread a run of consecutive blocks (static): at 2+ images mostly its own images, as
    // the 1x1 GEMMs' and the blocked direct forward's image items around it in a plan, so the
    // activations stay on the core that wrote them. Dynamic blocks had them cross between
    // cores, which costs where the vCPUs share no L3 (the far state, ARCHITECTURE.md):
    // ResNet-50's and GoogLeNet's batch-8 plans 0.97x the time there with this (after the
    // direct forward's own image split), 1.00x near, batch 1 even (Zen 4, 2 threads, session
    // 40). Which thread runs a block never changes a bit.
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t q0 = blk * tb, nb = std::min(tb, total - q0);
      const int64_t padded = (nb + uk.pw - 1) / uk.pw * uk.pw;  // columns tile_gemm reads
      tile_list(q0, nb, g.th, g.tw, m, g.oy0, g.ox0, tiles);
      for (int64_t c = 0; c < p.c; ++c) {
        ok &= uk.input(x + c * hw, p.c * hw, p.in_h, p.in_w, p.ph, p.pw, tiles, nb, v + c * ldv,
                       p.c * ldv);
        for (int64_t e = 0; e < e2; ++e)
          std::fill(v + (e * p.c + c) * ldv + nb, v + (e * p.c + c) * ldv + padded, T(0));
      }
      for (int64_t q = 0; q < panels; q += pair ? 2 : 1) {
        const int64_t k0 = q * W, nk = std::min(W, p.k - k0);
        const T *uq = u + q * e2 * p.c * W;
        const bool two = pair && q + 1 < panels;  // two panels a pass over V (tile_gemm2)
        const int64_t nk1 = two ? std::min(W, p.k - k0 - W) : 0;
        T *const mk1 = mk + e2 * W * tb;
        for (int64_t e = 0; e < e2; ++e)
          for (int64_t t0 = 0; t0 < nb; t0 += uk.pw) {
            const T *ue = uq + e * p.c * W, *ve = v + e * p.c * ldv + t0;
            const int64_t nr = std::min<int64_t>(uk.pw, nb - t0), at = e * W * nb + t0;
            if (two)
              uk.tile_gemm2(p.c, ue, ue + e2 * p.c * W, ve, ldv, mk + at, mk1 + at, nb, nk, nk1, nr,
                            false);
            else uk.tile_gemm(p.c, ue, ve, ldv, mk + at, nb, nk, nr, false);
          }
        panel_outputs(p, uk, mk, tiles, nb, k0, nk, b, y, ep, g.oy1, g.ox1);
        if (two) panel_outputs(p, uk, mk1, tiles, nb, k0 + W, nk1, b, y, ep, g.oy1, g.ox1);
      }
    }
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The tiles of forward_core: over the outputs that read the input (reach()), m x m each.
TileGrid tile_grid(const WinoConv &p, int m) {
  TileGrid g;
  reach(p.in_h, p.ph, p.ho, &g.oy0, &g.oy1);
  reach(p.in_w, p.pw, p.wo, &g.ox0, &g.ox1);
  g.th = (g.oy1 - g.oy0 + m - 1) / m;
  g.tw = (g.ox1 - g.ox0 + m - 1) / m;
  return g;
}

// Whether the forward (or data gradient) runs fused: FASTCONV_WINOGRAD_FUSED=0|1 forces it off
// or on wherever it applies (one group), =2 on and by elements (the tests run all three),
// otherwise winograd_fused. Filters prepared for a shape are laid out for the path it takes.
int forced_fused() {  // FASTCONV_WINOGRAD_FUSED: 0, 1 or 2, or -1 unset (or any other value)
  static const int forced = [] {
    const char *env = std::getenv("FASTCONV_WINOGRAD_FUSED");
    if (!env || !env[0] || env[1] || env[0] < '0' || env[0] > '2') return -1;
    return env[0] - '0';
  }();
  return forced;
}
bool use_fused(const WinoConv &p, int64_t total) {
  if (p.g != 1) return false;
  return forced_fused() >= 0 ? forced_fused() >= 1 : winograd_fused(total, p.k * p.c);
}

// Whether a fused forward takes forward_fused_elements: by winograd_fused's rule, or wherever
// one does with FASTCONV_WINOGRAD_FUSED=2.
bool fused_by_elements(const WinoConv &p, int64_t total) {
  return forced_fused() == 2 || winograd_fused_elements(total, p.k * p.c);
}

}  // namespace

// Up to kFusedTiles tiles, from 64x64 filters. Measured against the unfused forward (AVX2 EPYC, 2
// threads, float32, best of 7-9 over alternating processes), forward and data gradient:
// 0.54-0.96x its time from 4 to 36 tiles with 64-1024 channels (ResNet's 3x3 512 on 7x7 at
// batch 1 0.59-0.65x, OverFeat's 1024 on 12x12 at batch 4 0.64-0.80x); from 64 tiles on it lost
// (3x3 512 on 7x7 at batch 16 1.06-1.34x, 256 on 14x14 at batch 8 1.14-1.20x): it reads every
// tile's V once per 64-byte panel of output channels, where the unfused forward reads U once
// per block of tiles.
//
// From 392 tiles under at most 128 x 256 filters (forward_fused_blocks, in blocks of 48 tiles):
// 0.73-0.91x the unfused time, forward and data gradient (interleaved, best of 6-8, AVX2 EPYC,
// 2 threads): ResNet's 64 on 56x56 at batch 8 0.88-0.91x, 128 on 28x28 0.79-0.91x, VGG's 64 on
// 224x224 at batch 1 0.89-0.94x, 64>128 on 112x112 at batch 8 0.73-0.84x, 128 on 112x112 at
// batch 1 0.86x, 128>256 on 56x56 0.85x forward (its data gradient, 256>128, 0.96x), GoogLeNet's
// 64>192 on 56x56 at batch 4 0.85x forward. With 196 tiles (64 on 56x56 at batch 1, 96>128 and
// 128>192 on 28x28 at batch 4) even (0.98-1.03x); with 256x256 filters 1.05-1.06x, 512x512
// 1.16-1.55x, and 64 tiles 1.22x: the unfused GEMMs' packing pays off there.
bool winograd_fused(int64_t tiles, int64_t kc) {
  return (tiles <= kFusedTiles && kc >= 64 * 64) || winograd_fused_elements(tiles, kc) ||
         (tiles >= 392 && kc <= 128 * 256);
}

// From 41 to 256 tiles under 256x256 filters or more (forward_fused_elements). Measured against
// the unfused forward (Zen 4, 2 threads, float32, alternating processes, best of 7-11), forward /
// data gradient, the filters transformed per call: ResNet's 256 on 14x14 at 1, 2, 4 and 12
// images 0.93/0.90, 0.91/0.82, 0.89/0.88 and 0.91/0.91x the time, 512 on 7x7 at 4 and 8 images
// 0.92/0.91 and 0.95/0.91x, 512 on 14x14 at one 0.99/0.87x, AlexNet's 384>256 on 13x13
// 1.05/0.90x, 320 on 17x17 0.94/0.87x, 256 on 17x17 1.00/0.96x, 16 images of 256 on 14x14
// 0.95/0.92x and of 512 and 256 on 7x7 0.97-1.02x; in the batch-1 plans, whose filters are
// transformed once and come from memory, not the cache (interleaved, best of 6-8): ResNet-50's
// 256 on 14x14 0.89x, AlexNet's 13x13 layers 0.87-0.90x. Under fewer channels it lost or came
// out even: 128 on 28x28 1.22x, 96>128 1.07-1.24x, 64 on 28x28 1.2x, 160>320 and 128>256 on
// 14x14 0.97-1.04x (in GoogLeNet's plan 0.91-0.94x); up to 40 tiles forward_fused, which
// transforms each panel's filters into the cache right before its products, stayed ahead
// (ResNet's 512 on 7x7 at one image: elements 1.27/1.38x).
bool winograd_fused_elements(int64_t tiles, int64_t kc) {
  return tiles > kFusedTiles && tiles <= kElementTiles && kc >= 256 * 256;
}

namespace {

// The tile of a forward or data gradient (forward form): F(2x2) where there are 32 F(4x4) tiles or
// fewer (7x7 planes up to 8 images, 13x13 and 14x14 up to 2). There transforming the filters (36
// values per filter in F(4x4), 16 in F(2x2)) and the part-filled edge tiles outweigh F(4x4)'s fewer
// multiplications: F(2x2) took 0.50-0.86x F(4x4)'s time with 192-512 channels (ResNet's 3x3 512 on
// 7x7 at 1, 2 and 4 images 0.50, 0.64-0.65 and 0.82-0.86x; 256 on 14x14 at 1 and 2 images
// 0.70-0.79x; 384 on 13x13 0.70-0.82x; 8 images on 7x7 even), forward and data gradient alike; at
// 49-64 tiles 0.87-1.24x, from 81 1.2-1.8x slower (interleaved, best of 7, AVX2 EPYC, 2 threads,
// session 28). Filters prepared for the shape (plans, a training step's kept filters) take the same
// tile, so a prepared forward stays bitwise the plain one; in plans, where the transform is paid
// once, F(2x2) costs a little: ResNet-50's prepared 3x3 256 steps at 14x14 and batch 1 took
// 0.95 ms against F(4x4)'s 0.89 (0.6% of the plan), the whole plans of ResNet-18/50, VGG-16 and
// GoogLeNet at batch 1 and 8 0.99-1.03x their time. Follows the shape only.
int forward_tile(const WinoConv &p) {
  const int m = tile_size(p.cg);
  if (m != 4 || forced_tile()) return m;
  const TileGrid g = tile_grid(p, 4);
  return p.n * g.th * g.tw <= 32 ? 2 : 4;
}

// u_pre: the filters already transformed (transform_filters over every k, by
// winograd_prepare_filters), or nullptr to transform w here. ep (or nullptr): the epilogue,
// applied to each block's outputs as the output transform writes them.
// u_t: u_pre holds the transformed filters of the convolution whose data gradient p is, in that
// forward's unfused layout U[e][k][c] (p's [e][c][k]): the products read it transposed, and
// the unfused path runs whatever use_fused says (winograd_data_gradient_reuses checks that it
// would anyway).
template <class T>
fc_status forward_core(const WinoConv &p, const T *x, const T *w, const T *b, T *y, bool *finite,
                       const T *u_pre = nullptr, const Epilogue<T> *ep = nullptr,
                       bool u_t = false) {
  const WinogradUKernels<T> &uk = winograd_ukernels<T>(forward_tile(p));
  const int m = uk.m, a = uk.alpha, e2 = a * a;
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const TileGrid g = tile_grid(p, m);
  const int64_t total = p.n * g.th * g.tw;
  if (!u_t && use_fused(p, total)) {  // (u_pre, if given, is in its panels)
    if (fused_by_elements(p, total))
      return forward_fused_elements(p, uk, x, w, b, y, finite, u_pre, ep, g);
    if (total > kFusedTiles)  // (forced on, or by winograd_fused's rule for many tiles)
      return forward_fused_blocks(p, uk, x, w, b, y, finite, u_pre, ep, g);
    return forward_fused(p, uk, x, w, b, y, finite, u_pre, ep, g);
  }
  const int64_t tb = block_tiles(total, e2 * (p.c + p.k) * (int64_t)sizeof(T), p.c + p.k);
  const int64_t nblocks = (total + tb - 1) / tb;
  // Work items: a block of tiles each (transform its input into V, 36 GEMMs into M, transform
  // M to outputs). With fewer blocks than fixed_items() (L5 and VGG's 14x14 layers at batch 8:
  // one block) the blocks run one after another instead, each in three parallel stages, the
  // GEMMs one item per (element, group): every GEMM keeps its full [kg, nb] shape whatever the
  // thread count (rounding depends on a GEMM's m and n), and up to 36 threads find work.
  const bool staged = nblocks < fixed_items();
  const int64_t per_thread = staged ? 0 : e2 * (p.c + p.k) * tb;
  const int64_t staged_size = staged ? e2 * (p.c + p.k) * tb : 0;  // one block's V and M
  Buffer<T> u(u_pre ? 1 : e2 * p.k * p.cg);
  Buffer<T> ws(per_thread * nt + staged_size);
  Buffer<WinoTile> tl(tb * nt);
  if (!u.ok() || !ws.ok() || !tl.ok())
    return fail(
        FC_ENOMEM, "winograd: cannot allocate %lld bytes of workspace",
        (long long)((e2 * p.k * p.cg + per_thread * nt + staged_size) * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  if (!u_pre) advise_huge_pages(u, e2 * p.k * p.cg);
  const T *const uu = u_pre ? u_pre : u.get();
  advise_huge_pages(ws, per_thread * nt + staged_size);
  const int64_t hw = p.in_h * p.in_w, howo = p.ho * p.wo;
  T *const vs = ws.get(), *const ms = vs + e2 * p.c * tb;  // (staged) [e][c or k][nb]
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    bool ok = true;
    WinoTile *tiles = tl.get() + tb * tid;
    // U[e][k][0:cg] from filter row k: w[k][c] (forward) or, transposed, the original
    // w[g*cg' + j][k % kg'] rotated, for j < cg' (this problem's cg is the original kg).
    if (!u_pre) {
#pragma omp for schedule(static)
      for (int64_t k = 0; k < p.k; ++k) ok &= transform_filters(uk, p, w, k, k + 1, u.get());
    }
    beyond_reach(p, g, b, y, ep);
    // U[e][g*kg:, :] [kg, cg] x V[e][g*cg:, :] [cg, nb] -> M[e][g*kg:, :] [kg, nb]
    // (u_t: U_g^T, from the rows g*cg : +cg of [e][c][kg]; the forward's [e][k][cg])
    auto products = [&](int64_t e, int64_t g, int64_t nb, const T *v, T *mm) {
      if (u_t)
        gemm(true, false, p.kg, nb, p.cg, T(1), uu + (e * p.c + g * p.cg) * p.kg, p.kg,
             v + (e * p.c + g * p.cg) * nb, nb, T(0), mm + (e * p.k + g * p.kg) * nb, nb);
      else
        gemm(false, false, p.kg, nb, p.cg, T(1), uu + (e * p.k + g * p.kg) * p.cg, p.cg,
             v + (e * p.c + g * p.cg) * nb, nb, T(0), mm + (e * p.k + g * p.kg) * nb, nb);
    };
    if (staged) {
      for (int64_t blk = 0; blk < nblocks; ++blk) {  // every thread walks the same blocks
        const int64_t q0 = blk * tb, nb = std::min(tb, total - q0);
        tile_list(q0, nb, g.th, g.tw, m, g.oy0, g.ox0, tiles);
        // (the implicit barriers: U, the previous block's outputs are complete)
#pragma omp for schedule(static)
        for (int64_t c = 0; c < p.c; ++c)
          ok &= uk.input(x + c * hw, p.c * hw, p.in_h, p.in_w, p.ph, p.pw, tiles, nb, vs + c * nb,
                         p.c * nb);
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < e2 * p.g; ++it) products(it / p.g, it % p.g, nb, vs, ms);
#pragma omp for schedule(static)
        for (int64_t k = 0; k < p.k; ++k) {
          uk.output(ms + k * nb, p.k * nb, tiles, nb, b ? b[k] : T(0), y + k * howo, p.k * howo,
                    p.wo, g.oy1, g.ox1);
          if (ep) tiles_epilogue(*ep, y, k, p.k * howo, howo, p.wo, m, tiles, nb, g.oy1, g.ox1);
        }
      }
    } else {
      T *v = ws.get() + per_thread * tid, *mm = v + e2 * p.c * tb;
      // (the implicit barrier of the filter loop: U is complete; with u_pre, no loop to wait for)
      // (runs of consecutive blocks, as forward_fused_blocks: images stay on their thread)
#pragma omp for schedule(static)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t q0 = blk * tb, nb = std::min(tb, total - q0);
        tile_list(q0, nb, g.th, g.tw, m, g.oy0, g.ox0, tiles);
        for (int64_t c = 0; c < p.c; ++c)
          ok &= uk.input(x + c * hw, p.c * hw, p.in_h, p.in_w, p.ph, p.pw, tiles, nb, v + c * nb,
                         p.c * nb);
        for (int64_t e = 0; e < e2; ++e)
          for (int64_t g = 0; g < p.g; ++g) products(e, g, nb, v, mm);
        for (int64_t k = 0; k < p.k; ++k) {
          uk.output(mm + k * nb, p.k * nb, tiles, nb, b ? b[k] : T(0), y + k * howo, p.k * howo,
                    p.wo, g.oy1, g.ox1);
          if (ep) tiles_epilogue(*ep, y, k, p.k * howo, howo, p.wo, m, tiles, nb, g.oy1, g.ox1);
        }
      }
    }
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

}  // namespace

bool winograd_supports(const ConvShape &s) {
  return s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 &&
         s.ho > 0 && s.wo > 0 && gemm_dims_fit(s.cg) && gemm_dims_fit(s.kg);
}

template <class T>
fc_status conv2d_forward__winograd(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  if (!winograd_supports(s)) return FC_EUNSUPPORTED;
  const WinoConv p = forward_form(s);
  bool finite;
  const fc_status st = forward_core(p, x, w, b, y, &finite);
  if (st != FC_OK || finite) return st;
  // A NaN or an infinity among the operands: Winograd's transforms would spread it over whole
  // tiles. Redo the call on the GEMM (or direct) path, which keeps it to the outputs it reaches.
  return im2col_supports(s) ? gemm_conv_forward(s, x, w, b, y, false)
                            : conv2d_forward__direct(s, x, w, b, y);
}

namespace {

// Whether the forward p runs fused, and so wants its prepared filters in panels.
bool fused_shape(const WinoConv &p) {
  const TileGrid g = tile_grid(p, forward_tile(p));
  return use_fused(p, p.n * g.th * g.tw);
}

// The data gradient of s in flipped form: with dy and dx mirrored in both spatial axes (the
// planes read back to front), the data gradient is the correlation of dy with the filters
// transposed but not rotated: dx~[c, y, x] = sum over k, i, j of w[k, c, i, j]
// dy~[k, y + i - (2 - ph), x + j - (2 - pw)], for dx~[c, y, x] = dx[c, in_h-1-y, in_w-1-x] and
// dy~ likewise. Its transformed filters are the forward's own, U[e][k][c], read transposed.
WinoConv flipped_data_form(const ConvShape &s) {
  return {s.n, s.k, s.ho, s.wo, s.c, s.in_h, s.in_w, 2 - s.ph, 2 - s.pw, s.g, s.kg, s.cg, false};
}

// dst[p] (+)= src[p] mirrored in both axes, for planes [0, planes) of h x w. Called by every
// thread of a team.
template <class T>
void mirror_planes(const T *src, int64_t planes, int64_t h, int64_t w, T *dst, bool add) {
  const int64_t hw = h * w;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < planes; ++q) {
    const T *sp = src + q * hw + hw - 1;  // read back to front
    T *dp = dst + q * hw;
    if (add)
      for (int64_t i = 0; i < hw; ++i) dp[i] += sp[-i];
    else
      for (int64_t i = 0; i < hw; ++i) dp[i] = sp[-i];
  }
}

}  // namespace

// Where the forward's prepared filters serve the data gradient (see flipped_data_form): the
// forward keeps them unfused ([e][k][c]), both directions take the same tile, and the data
// gradient runs the unfused path anyway, so only the filter source changes.
bool winograd_data_gradient_reuses(const ConvShape &s) {
  if (!winograd_supports(s)) return false;
  const WinoConv f = forward_form(s), d = flipped_data_form(s);
  if (fused_shape(f) || fused_shape(d) || forward_tile(f) != forward_tile(d)) return false;
  return true;
}

// Where a training step keeps the forward's filters for the data gradient: where the filter
// transform is a large part of the data gradient, few tiles (up to 128), and the kept filters
// stay small (16 MiB: 36 x 256 x 256 in float32). Measured against the data gradient on w
// (interleaved in one process, best of 15, AVX2 EPYC, 2 threads, float32): GoogLeNet's 3x3
// layers at 14x14 and batch 4 (64 tiles) 0.72-0.83x the time, ResNet's 256 at 14x14 0.80x at
// batch 4 and 0.82x at 8 (128 tiles); at 196 tiles (GoogLeNet's 28x28 at batch 4) even,
// 0.97-1.03x. ResNet's 512 at 7x7 and batch 16 (64 tiles) ran 0.75x, but keeping its 38 MB of
// filters per layer raised ResNet-18's peak RSS at batch 16 by 16% (847 to 984 MiB). (Shapes
// whose forward now runs fused by elements, ResNet's 256 at 14x14 up to 16 images among them,
// keep their filters in panels and no longer reuse them: there the fused data gradient took
// 0.82-0.91x the unfused one's time, about what the reuse saved.)
bool winograd_reuse_pays(const ConvShape &s, int64_t elem_bytes) {
  if (!winograd_data_gradient_reuses(s)) return false;
  const WinoConv f = forward_form(s);
  const int m = forward_tile(f);
  const TileGrid g = tile_grid(f, m);
  const int64_t e2 = (m + 2) * (m + 2);
  return s.n * g.th * g.tw <= 128 && e2 * s.k * s.cg * elem_bytes <= (int64_t(16) << 20);
}

// dx (+)= the data gradient from the forward's prepared filters u (winograd_prepare_filters on
// an unfused shape): dy mirrored into a workspace, the flipped problem's forward with u read
// transposed (no filter transform), its output mirrored into dx. *finite is false, and dx
// untouched, where a transform met a NaN or an infinity: the caller then runs the ordinary
// data gradient, which takes the GEMM path for such operands.
template <class T>
fc_status conv2d_backward_data__winograd_reusing(const ConvShape &s, const T *dy, const T *u, T *dx,
                                                 bool accumulate, bool *finite) {
  if (!winograd_data_gradient_reuses(s)) return FC_EUNSUPPORTED;
  const WinoConv d = flipped_data_form(s);
  const int nt = num_threads();
  Buffer<T> dyf(s.n * s.k * s.howo), dxf(s.n * s.c * s.hw);
  if (!dyf.ok() || !dxf.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of mirrored planes",
                (long long)((s.n * s.k * s.howo + s.n * s.c * s.hw) * (int64_t)sizeof(T)));
#pragma omp parallel num_threads(nt)
  mirror_planes(dy, s.n * s.k, s.ho, s.wo, dyf.get(), false);
  const fc_status st = forward_core(d, dyf.get(), (const T *)nullptr, (const T *)nullptr, dxf.get(),
                                    finite, u, (const Epilogue<T> *)nullptr, true);
  if (st != FC_OK || !*finite) return st;
#pragma omp parallel num_threads(nt)
  mirror_planes(dxf.get(), s.n * s.c, s.in_h, s.in_w, dx, accumulate);
  return FC_OK;
}

template <class T>
int64_t winograd_filter_size(const ConvShape &s) {
  const WinoConv p = forward_form(s);
  const WinogradUKernels<T> &uk = winograd_ukernels<T>(forward_tile(p));
  constexpr int64_t W = 64 / sizeof(T);
  const int64_t e2 = int64_t(uk.alpha) * uk.alpha;
  return fused_shape(p) ? (s.k + W - 1) / W * e2 * s.c * W : e2 * s.k * s.cg;
}

// U[e][k][c] (forward_core's unfused layout), or in the fused forward's panels [q][e][c][lanes]
// (rows past k zero) when the shape runs fused.
template <class T>
bool winograd_prepare_filters(const ConvShape &s, const T *w, T *u) {
  const WinoConv p = forward_form(s);
  const WinogradUKernels<T> &uk = winograd_ukernels<T>(forward_tile(p));
  constexpr int64_t W = 64 / sizeof(T);
  const bool fused = fused_shape(p);
  const int64_t items = fused ? (s.k + W - 1) / W : s.k;
  int bad = 0;
#pragma omp parallel for num_threads(num_threads()) schedule(static) reduction(| : bad)
  for (int64_t q = 0; q < items; ++q) {
    if (!fused) {
      bad |= !transform_filters(uk, p, w, q, q + 1, u);
      continue;
    }
    bad |= !whole_panel(uk, p, w, q, u);
  }
  return !bad;
}

template <class T>
fc_status conv2d_forward__winograd_prepared(const ConvShape &s, const T *x, const T *u,
                                            bool u_finite, const T *w, const T *b, T *y,
                                            const Epilogue<T> *ep) {
  if (!winograd_supports(s)) return FC_EUNSUPPORTED;
  if (ep && ep->none()) ep = nullptr;
  const WinoConv p = forward_form(s);
  bool finite = u_finite;
  fc_status st = FC_OK;
  if (u_finite) st = forward_core(p, x, w, b, y, &finite, u, ep);
  if (st != FC_OK || finite) return st;
  // (a NaN or an infinity in the filters or the input: as in the forward, the epilogue on the
  // GEMM path's tiles; the residual is not y, so the partial outputs above are not read)
  if (im2col_supports(s)) return gemm_conv_forward(s, x, w, b, y, false, ep);
  st = conv2d_forward__direct(s, x, w, b, y);
  if (st == FC_OK && ep) epilogue_block(*ep, y, 0, 1, s.n * s.k * s.howo, 0);
  return st;
}

template fc_status conv2d_backward_data__winograd_reusing<float>(const ConvShape &, const float *,
                                                                 const float *, float *, bool,
                                                                 bool *);
template fc_status conv2d_backward_data__winograd_reusing<double>(const ConvShape &, const double *,
                                                                  const double *, double *, bool,
                                                                  bool *);
template int64_t winograd_filter_size<float>(const ConvShape &);
template int64_t winograd_filter_size<double>(const ConvShape &);
template bool winograd_prepare_filters<float>(const ConvShape &, const float *, float *);
template bool winograd_prepare_filters<double>(const ConvShape &, const double *, double *);
template fc_status conv2d_forward__winograd_prepared<float>(const ConvShape &, const float *,
                                                            const float *, bool, const float *,
                                                            const float *, float *,
                                                            const Epilogue<float> *);
template fc_status conv2d_forward__winograd_prepared<double>(const ConvShape &, const double *,
                                                             const double *, bool, const double *,
                                                             const double *, double *,
                                                             const Epilogue<double> *);

template <class T>
fc_status conv2d_backward_data__winograd(const ConvShape &s, const T *dy, const T *w, T *dx) {
  if (!winograd_supports(s)) return FC_EUNSUPPORTED;
  // dx[c, y, x] = sum over k, i, j of dy[k, y + i - (2 - ph), x + j - (2 - pw)] w[k, c, 2-i, 2-j]
  const WinoConv p = data_form(s);
  bool finite;
  const fc_status st = forward_core<T>(p, dy, w, nullptr, dx, &finite);
  if (st != FC_OK || finite) return st;
  // (a NaN or an infinity: as in the forward)
  return im2col_supports(s) ? gemm_conv_backward_data(s, dy, w, dx, false)
                            : conv2d_backward_data__direct(s, dy, w, dx);
}

// The weight gradient with Z accumulated per slot: the tile blocks (their Xt and Dt within
// twice the L2, 1 MiB on the 512 KiB-L2 EPYC it was measured on; at least 32 tiles) are cut
// into `slots` runs of consecutive blocks, a function of the shape and the caches only. A
// thread takes a slot and adds the products of its blocks in order into the slot's own Z
// ([alpha^2][k][cg]); after a barrier the slots' Zs are added in slot order, so the sums never
// depend on the thread count or on which thread ran which slot. (Adding each slot into the
// total as it finished, in slot order, made threads wait on each other: 1.5x slower on
// ResNet's 64->64 at 56x56.) Nothing streams through memory but Z's updates, so it suits
// layers whose Z is small (measured at 2 threads: VGG 64->128 at 112x112 41 ms against 92 ms
// chunked, ResNet 64->64 at 56x56 12 ms against 21 ms).
// A slot holds at least kSlotTiles tiles: each costs one more pass over Z.
template <class T>
fc_status backward_weight_private(const ConvShape &s, const WinogradUKernels<T> &uk, const T *dy,
                                  const T *x, T *dw, bool *finite) {
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t th = (s.ho + m - 1) / m, tw = (s.wo + m - 1) / m, total = s.n * th * tw;
  int64_t slots = private_slots(total);
  const int64_t per_tile = e2 * (s.c + s.k) * (int64_t)sizeof(T);
  const int64_t tb_max = std::clamp<int64_t>(2 * hardware().l2 / per_tile, 32, 1024);
  const int64_t per_slot = ((total + tb_max - 1) / tb_max + slots - 1) / slots;  // blocks
  const int64_t tb = (total + slots * per_slot - 1) / (slots * per_slot);        // evened out
  const int64_t nblocks = (total + tb - 1) / tb;
  slots = std::min(slots, nblocks);  // every slot holds a block
  const int64_t zsize = e2 * s.k * s.cg, per_thread = e2 * (s.c + s.k) * tb;
  Buffer<T> ws(per_thread * nt), zs(zsize * slots);  // Z of every slot
  Buffer<WinoTile> tl(tb * nt);
  if (!ws.ok() || !zs.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of weight-gradient workspace",
                (long long)((per_thread * nt + zsize * slots) * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  advise_huge_pages(ws, per_thread * nt);
  advise_huge_pages(zs, zsize * slots);
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    bool ok = true;
    T *xt = ws.get() + per_thread * tid, *dt = xt + e2 * s.c * tb;
    WinoTile *tiles = tl.get() + tb * tid;
#pragma omp for schedule(dynamic, 1)
    for (int64_t slot = 0; slot < slots; ++slot) {
      T *z = zs.get() + slot * zsize;
      const int64_t b0 = nblocks * slot / slots, b1 = nblocks * (slot + 1) / slots;
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t q0 = blk * tb, nb = std::min(tb, total - q0);
        tile_list(q0, nb, th, tw, m, 0, 0, tiles);
        for (int64_t c = 0; c < s.c; ++c)
          ok &= uk.input(x + c * s.hw, s.c * s.hw, s.in_h, s.in_w, s.ph, s.pw, tiles, nb,
                         xt + c * nb, s.c * nb);
        for (int64_t k = 0; k < s.k; ++k)
          ok &=
              uk.grad(dy + k * s.howo, s.k * s.howo, s.ho, s.wo, tiles, nb, dt + k * nb, s.k * nb);
        for (int64_t e = 0; e < e2; ++e)
          for (int64_t g = 0; g < s.g; ++g)
            // Dt[e][g*kg:, :] [kg, nb] x Xt[e][g*cg:, :]^T [nb, cg] -> Z[e][g*kg:, :] [kg, cg]
            // (the slot's first block sets, the others add)
            gemm(false, true, s.kg, s.cg, nb, T(1), dt + (e * s.k + g * s.kg) * nb, nb,
                 xt + (e * s.c + g * s.cg) * nb, nb, blk > b0 ? T(1) : T(0),
                 z + (e * s.k + g * s.kg) * s.cg, s.cg);
      }
    }
    // (the implicit barrier: every slot is complete) Z = Z_0 + Z_1 + ... in slot order, then
    // dW[k][c] = G^T Z[k][c] G
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.k; ++k) {
      T *z0 = zs.get() + k * s.cg;
      for (int64_t sl = 1; sl < slots; ++sl)
        for (int64_t e = 0; e < e2; ++e) {
          const T *zi = zs.get() + sl * zsize + e * s.k * s.cg + k * s.cg;
          for (int64_t c = 0; c < s.cg; ++c) z0[e * s.k * s.cg + c] += zi[c];
        }
      uk.weight_grad(z0, s.k * s.cg, s.cg, dw + k * s.cg * 9);
    }
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The runs of channels (x's c, then dy's k) that cut each sub-block of a chunk's transforms
// into items: at least 32 items a chunk for the dynamic schedule where there are the rows (16
// rows a run at least). Cut by tiles only, a 14x14 plane at 4 images (64 tiles: one
// sub-block) was transformed by one thread while the other waited; cut into runs, GoogLeNet's
// 3x3 layers at 14x14 and batch 4 (96>208 to 160>320) took 0.69-0.95x the time, 28x28 and 7x7
// 0.86-1.04x (interleaved in one process, best of 12-25, three runs, AVX2 EPYC, 2 threads).
// The items write disjoint parts of the transformed arrays: the results never depend on the cut.
namespace {
int64_t transform_runs(int64_t subblocks, int64_t rows) {
  return std::clamp<int64_t>((32 + subblocks - 1) / subblocks, 1, std::max<int64_t>(1, rows / 16));
}
}  // namespace

// The weight gradient with one shared Z: chunks of tiles are transformed by all threads, then
// each element's GEMM (one per thread at a time) reduces over the whole chunk. For layers whose
// Z is large (many channels; L5's copies of Z would take 42 MB and its 128 tiles cannot
// amortise them: 26 ms here against 53 ms private).
template <class T>
fc_status backward_weight_chunked(const ConvShape &s, const WinogradUKernels<T> &uk, const T *dy,
                                  const T *x, T *dw, bool *finite) {
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t th = (s.ho + m - 1) / m, tw = (s.wo + m - 1) / m, total = s.n * th * tw;
  // Tiles per chunk: the transformed x and dy of a chunk ([alpha^2][c + k][tc]) within 64 MiB,
  // so the GEMMs reduce over many tiles; sub-blocks of `sb` tiles feed the transforms.
  const int64_t sb = 64;
  const int64_t per_tile = e2 * (s.c + s.k) * (int64_t)sizeof(T);
  const int64_t tc = std::min(total, std::max<int64_t>(sb, (int64_t(64) << 20) / per_tile));
  Buffer<T> xt(e2 * s.c * tc), dt(e2 * s.k * tc), z(e2 * s.k * s.cg);
  Buffer<WinoTile> tl(sb * nt);
  if (!xt.ok() || !dt.ok() || !z.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of weight-gradient workspace",
                (long long)((e2 * (s.c + s.k) * tc + e2 * s.k * s.cg) * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  advise_huge_pages(xt, e2 * s.c * tc);
  advise_huge_pages(dt, e2 * s.k * tc);
  advise_huge_pages(z, e2 * s.k * s.cg);
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    bool ok = true;
    WinoTile *tiles = tl.get() + sb * tid;
    for (int64_t q0 = 0; q0 < total; q0 += tc) {  // every thread walks the same chunks
      const int64_t nc = std::min(tc, total - q0);
      // Xt[e][c][t] = (B^T x_t B)[e], Dt[e][k][t] = (A dy_t A^T)[e] for the chunk's tiles
      const int64_t nsb = (nc + sb - 1) / sb, runs = transform_runs(nsb, s.c + s.k);
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < nsb * runs; ++it) {
        const int64_t t0 = it / runs * sb, nb = std::min(sb, nc - t0), run = it % runs;
        const int64_t r0 = (s.c + s.k) * run / runs, r1 = (s.c + s.k) * (run + 1) / runs;
        tile_list(q0 + t0, nb, th, tw, m, 0, 0, tiles);
        for (int64_t c = r0; c < std::min(r1, s.c); ++c)
          ok &= uk.input(x + c * s.hw, s.c * s.hw, s.in_h, s.in_w, s.ph, s.pw, tiles, nb,
                         xt.get() + c * nc + t0, s.c * nc);
        for (int64_t k = std::max(r0, s.c) - s.c; k < r1 - s.c; ++k)
          ok &= uk.grad(dy + k * s.howo, s.k * s.howo, s.ho, s.wo, tiles, nb,
                        dt.get() + k * nc + t0, s.k * nc);
      }
#pragma omp for schedule(dynamic, 1)
      for (int64_t it = 0; it < e2 * s.g; ++it) {
        const int64_t e = it / s.g, g = it % s.g;
        // Dt[e][g*kg:, :] [kg, nc] x Xt[e][g*cg:, :]^T [nc, cg] -> Z[e][g*kg:, :] [kg, cg],
        // accumulated over chunks
        gemm(false, true, s.kg, s.cg, nc, T(1), dt.get() + (e * s.k + g * s.kg) * nc, nc,
             xt.get() + (e * s.c + g * s.cg) * nc, nc, q0 ? T(1) : T(0),
             z.get() + (e * s.k + g * s.kg) * s.cg, s.cg);
      }
    }
    // dW[k][c] = G^T Z[k][c] G
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.k; ++k)
      uk.weight_grad(z.get() + k * s.cg, s.k * s.cg, s.cg, dw + k * s.cg * 9);
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The weight gradient where each thread owns a fixed run of output channels: a V per thread
// (every thread transforms all of x's tiles), dy's transforms, Z's rows and dW's rows of its
// own channels only, one chunk of every tile, no barrier. See weight_owned_applies.
//
// Where x's transformed tiles fit twice the L2 (own_v_fits), in one group. The chunked weight
// gradient there (one chunk) shares everything: the transforms taken dynamically, each
// element's GEMM by whichever thread, and dW from Z's rows that the other core wrote (Z 4 MB
// for 256x256 filters in F(2x2)). With the 2 vCPUs far apart (see forward_fused_elements) it
// took twice its near time; owned, measured in alternating processes (Zen 4, 2 threads,
// float32, one image unless said), near / far: ResNet's 256 at 14x14 0.89 / 1.07 ms against
// 0.79 / 1.60, L5 (384>256 at 13x13) 1.31 / 1.57 against 1.14 / 2.28, ResNet's 512 at 14x14
// 3.26 / 3.46-3.57 against 2.93 / 5.3, 512 at 7x7 at 2 images 2.35 / 2.55 against 2.16 / 4.25,
// 128 at 28x28 0.65 / 0.88 against 0.54 / 1.18, 64 at 56x56 0.69 / 0.81 against 0.57 / 1.22:
// 1.1-1.2x the time near, 0.52-0.75x far (im2col, the next fastest, took 1.29 / 1.36 ms on the
// 256 at 14x14).
bool weight_owned_applies(const ConvShape &s, int64_t xt_bytes) {
  return s.g == 1 && own_v_fits(xt_bytes);
}

template <class T>
fc_status backward_weight_owned(const ConvShape &s, const WinogradUKernels<T> &uk, const T *dy,
                                const T *x, T *dw, bool *finite) {
  const int m = uk.m, e2 = uk.alpha * uk.alpha;
  const int nt = gemm_threads();  // (its parallel regions call gemm)
  const int64_t th = (s.ho + m - 1) / m, tw = (s.wo + m - 1) / m, total = s.n * th * tw;
  // Blocks of about 128 channels, at least 2, at most fixed_items(): the GEMMs' shapes follow
  // the shape and the machine only, whichever thread runs them (README, "Determinism"). Blocks
  // of k/8 channels took 1.13-1.43x the time of these near (ResNet's 256 at 14x14 at one image
  // 1.01 against 0.89 ms), the same far.
  const int64_t blocks = std::clamp<int64_t>(s.k / 128, std::min<int64_t>(2, s.k), fixed_items());
  const int64_t xsize = e2 * s.c * total;
  Buffer<T> xts(xsize * nt), dt(e2 * s.k * total), z(e2 * s.k * s.c);
  Buffer<WinoTile> tl(total);
  if (!xts.ok() || !dt.ok() || !z.ok() || !tl.ok())
    return fail(FC_ENOMEM, "winograd: cannot allocate %lld bytes of weight-gradient workspace",
                (long long)((xsize * nt + e2 * s.k * (total + s.c)) * (int64_t)sizeof(T)));
  if (fc_status st = blas_reserve(nt)) return st;
  tile_list(0, total, th, tw, m, 0, 0, tl.get());
  const WinoTile *tiles = tl.get();
  int bad = 0;  // set when a transform meets a NaN or an infinity
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    const int64_t ba = blocks * tid / nth, bb = blocks * (tid + 1) / nth;
    const int64_t ka = s.k * ba / blocks, kb = s.k * bb / blocks;  // this thread's channels
    bool ok = true;
    if (ka < kb) {
      T *xt = xts.get() + xsize * tid;
      for (int64_t c = 0; c < s.c; ++c)
        ok &= uk.input(x + c * s.hw, s.c * s.hw, s.in_h, s.in_w, s.ph, s.pw, tiles, total,
                       xt + c * total, s.c * total);
      for (int64_t k = ka; k < kb; ++k)
        ok &= uk.grad(dy + k * s.howo, s.k * s.howo, s.ho, s.wo, tiles, total, dt.get() + k * total,
                      s.k * total);
      for (int64_t e = 0; e < e2; ++e)  // (Xt[e] stays in the L2 over the blocks)
        for (int64_t blk = ba; blk < bb; ++blk) {
          const int64_t k0 = s.k * blk / blocks, k1 = s.k * (blk + 1) / blocks;
          // Dt[e][k0:k1, :] [k1 - k0, total] x Xt[e]^T [total, c] -> Z[e][k0:k1, :]
          gemm(false, true, k1 - k0, s.c, total, T(1), dt.get() + (e * s.k + k0) * total, total,
               xt + e * s.c * total, total, T(0), z.get() + (e * s.k + k0) * s.c, s.c);
        }
      for (int64_t k = ka; k < kb; ++k)
        uk.weight_grad(z.get() + k * s.c, s.k * s.c, s.c, dw + k * s.c * 9);
    }
    if (!ok) {
#pragma omp atomic write
      bad = 1;
    }
  }
  *finite = !bad;
  return FC_OK;
}

// The weight gradient's tile. Its GEMMs reduce over the tiles into Z ([alpha^2][k][cg], read
// and written once per block of tiles), so with few tiles Z's traffic and the GEMMs' thin
// reduction decide, not the multiplications saved: F(2x2)'s Z is 16/36 of F(4x4)'s and it has
// 4x the tiles to reduce over. Up to 48 F(4x4) tiles (7x7 planes up to 12 images, 14x14 up to
// 3, 12x12 up to 5) F(2x2) took 0.43-0.90x F(4x4)'s time with 160-1024 channels (ResNet's
// 3x3 512 on 7x7 at 8 images 17.5 against 22.1 ms, on 14x14 at 2 images 13.9 against 21.9,
// GoogLeNet's 192>384 on 7x7 at 4 images 3.1 against 4.9), 0.66-1.1x with 64-128; at 49 tiles
// (28x28 at one image) F(4x4) was faster (0.75-0.96x), at 64 even (0.8-1.2x), from 128 faster
// (0.77x). Measured interleaved in one process, best of 7-15, AVX2 EPYC, 2 threads. Follows the
// shape only.
int winograd_weight_tile(const ConvShape &s) {
  const int m = tile_size(s.n * s.howo);
  if (m != 4 || forced_tile()) return m;
  return s.n * ((s.ho + 3) / 4) * ((s.wo + 3) / 4) <= 48 ? 2 : 4;
}

template <class T>
fc_status conv2d_backward_weight__winograd(const ConvShape &s, const T *dy, const T *x, T *dw) {
  if (!winograd_supports(s)) return FC_EUNSUPPORTED;
  const WinogradUKernels<T> &uk = winograd_ukernels<T>(winograd_weight_tile(s));
  const int64_t z_bytes = uk.alpha * uk.alpha * s.k * s.cg * (int64_t)sizeof(T);
  const int64_t tiles = s.n * ((s.ho + uk.m - 1) / uk.m) * ((s.wo + uk.m - 1) / uk.m);
  bool finite;
  // Per-slot Z while a few copies (one per thread and the total) fit the L3: Z up to 3/8 of
  // it (12 MiB of a 32 MiB L3), and there are tiles for several slots. The choice follows the
  // shape and the hardware description only, never the thread count (README, "Determinism").
  const fc_status st = weight_owned_applies(s, uk.alpha * uk.alpha * s.c * tiles * sizeof(T))
                           ? backward_weight_owned(s, uk, dy, x, dw, &finite)
                       : z_bytes <= hardware().l3 * 3 / 8 && private_slots(tiles) > 1
                           ? backward_weight_private(s, uk, dy, x, dw, &finite)
                           : backward_weight_chunked(s, uk, dy, x, dw, &finite);
  if (st != FC_OK || finite) return st;
  // (a NaN or an infinity: as in the forward)
  return im2col_supports(s) ? gemm_conv_backward_weight(s, dy, x, dw, false)
                            : conv2d_backward_weight__direct(s, dy, x, dw);
}

FC_INSTANTIATE_CONV_ALGO(winograd, float)
FC_INSTANTIATE_CONV_ALGO(winograd, double)

}  // namespace fc
