// Direct convolution: per-ISA micro-kernels (cpu/ukernels.h) accumulate output channels x output
// positions in registers, with no column matrix. Unit-stride rows run on register tiles over a
// zero-padded copy of the input; other shapes run the row kernels, each call updating KB output
// rows from one input row while the input channels stream through and the KB rows stay in L1.
// Stride and dilation are parameters of the row kernels (input stride, tap offsets).
//
// Workspaces (Buffer, internal.h): the register-tile forward copies the input into padded
// planes, packs the weights per block of output channels and gives each thread an output
// buffer; strided along rows it first splits the input and weights into column phases; the
// unit-stride data gradient transposes the weights (then runs that forward). The row forward,
// the scatter data gradient and the weight gradient allocate nothing.
#include <omp.h>

#include "../cpu/ukernels.h"
#include "../internal.h"

namespace fc {

namespace {
constexpr int64_t KB = 8;  // output channels per work item (forward)
constexpr int64_t CB = 4;  // input channels per work item (data gradient)
}  // namespace

namespace {

// y[k0:k0+nk, oh, a:b] += every in-bounds tap, one row micro-kernel call per (c, i, j): the
// general path (any stride), used for border pixels and wherever no register tile applies.
template <class T>
void forward_rows(const ConvShape &s, const UKernels<T> &uk, const T *xg, const T *wk, T *yk,
                  int64_t nk, int64_t oh, int64_t a, int64_t b) {
  for (int64_t c = 0; c < s.cg; ++c) {
    const T *xc = xg + c * s.hw;
    for_each_tap(s, oh, [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
      lo = std::max(lo, a);
      hi = std::min(hi, b);
      if (lo >= hi) return;
      // y[k0:k0+nk, oh, lo:hi] += w[k0:k0+nk, c, i, j] * x[c, ih, lo*sw+off : : sw]
      uk.conv_rows(yk + oh * s.wo + lo, s.howo, nk, wk + (c * s.kh + i) * s.kw + j, s.ckk,
                   xc + ih * s.in_w + lo * s.sw + off, s.sw, hi - lo);
    });
  }
}

// The general path: any stride, taps clipped per row by valid_range; KB output rows per call.
template <class T>
fc_status forward_by_rows(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t kblocks = (s.kg + KB - 1) / KB;
  const int64_t items = s.n * s.g * kblocks;
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / (s.g * kblocks), g = (it / kblocks) % s.g, kb = it % kblocks;
    const int64_t k0 = g * s.kg + kb * KB, nk = std::min(KB, s.kg - kb * KB);
    T *yk = y + (n * s.k + k0) * s.howo;
    for (int64_t r = 0; r < nk; ++r) fill_bias_plane(yk + r * s.howo, s.howo, b, k0 + r);
    const T *xg = x + (n * s.c + g * s.cg) * s.hw;
    for (int64_t oh = 0; oh < s.ho; ++oh)
      forward_rows(s, uk, xg, w + k0 * s.ckk, yk, nk, oh, 0, s.wo);
  }
  return FC_OK;
}

}  // namespace

// Which register tile runs a unit-stride-row convolution: the k-tile (vectorized over output
// channels) needs enough channels per group to fill its vectors; the position tile needs runs
// of positions. FASTCONV_DIRECT_TILE=pos|k forces one (for measuring).
template <class T>
static bool use_ktile(const ConvShape &s, const UKernels<T> &uk) {
  static const char *force = std::getenv("FASTCONV_DIRECT_TILE");
  if (force && !std::strcmp(force, "k")) return true;
  if (force && !std::strcmp(force, "pos")) return false;
  return s.kg >= uk.kt / 2 && s.wo < uk.vlen;
}

// Strided along rows (sw > 1, dilation 1 along rows): the register tiles need unit-stride rows,
// so the padded input is split into sw column phases, u[c*sw + b][r][q] = xpad[c][r][q*sw + b],
// and the kernel likewise, v[k][c*sw + b][i][jj] = w[k][c][i][jj*sw + b] (0 past kw): output
// column ow reads xpad[ow*sw + jj*sw + b] = u[c*sw + b][ow + jj]. That is a convolution with
// unit stride along rows and ceil(kw/sw) taps per row (7x7/2: 4, so 8/7 of the multiply-adds;
// 3x3/2: 2, 4/3 of them), run by the tiles below. ResNet's 7x7/2 stem, on 3 input channels, has
// too short a reduction for GEMMs to run near their peak (27-147 rows).
// Where the phases apply and their buffers stay near the size of the input and output (a huge
// padding or stride takes the row path; every product here is checked for int64 overflow).
// The zero taps past kw multiply input values that no real tap reads with them, so an input
// with a NaN or an infinity takes the row path too: 0 x inf would put NaNs where PyTorch has
// none.
// A buffer of `elems` elements stays near the size of the input and output planes.
static bool near_io_size(const ConvShape &s, int64_t elems) {
  return elems <= 4 * (s.hw + s.howo) + 4096;
}

static bool width_phases_fit(const ConvShape &s) {
  if (s.sw <= 1 || s.dil_w != 1 || s.kw <= 1) return false;
  const int64_t tkw = (s.kw - 1) / s.sw + 1;
  int64_t hp, wq, plane, v;
  return !__builtin_mul_overflow(s.ph, 2, &v) && !__builtin_add_overflow(s.in_h, v, &hp) &&
         !__builtin_add_overflow(s.wo, tkw - 1, &wq) && !__builtin_mul_overflow(hp, wq, &plane) &&
         !__builtin_mul_overflow(plane, s.sw, &v) && near_io_size(s, v) &&
         !__builtin_mul_overflow(v, s.n * s.c, &v) &&  // (n*c: make_shape checked n*c*hw)
         !__builtin_mul_overflow(s.cg, s.sw, &v) && !__builtin_mul_overflow(v, s.kh, &v) &&
         !__builtin_mul_overflow(v, tkw, &v) && !__builtin_mul_overflow(v, s.k, &v);
}

// Row by row (every (plane, phase, row) an item: a few planes still feed every thread).
template <class T>
void copy_width_phases(const ConvShape &s, const T *x, int64_t wq, T *u) {
  const int64_t hp = s.in_h + 2 * s.ph;
#pragma omp for schedule(static) nowait
  for (int64_t row = 0; row < s.n * s.c * s.sw * hp; ++row) {
    const int64_t p = row / (s.sw * hp), bq = row / hp % s.sw;
    copy_phase_row(s, x + p * s.hw, bq, row % hp - s.ph, wq, u + row * wq);
  }
}
template void copy_width_phases<float>(const ConvShape &, const float *, int64_t, float *);
template void copy_width_phases<double>(const ConvShape &, const double *, int64_t, double *);

template <class T>
fc_status forward_width_phases(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  ConvShape t = s;
  t.kw = (s.kw - 1) / s.sw + 1;
  t.sw = 1;
  t.cg = s.cg * s.sw;
  t.c = s.c * s.sw;
  t.in_h = s.in_h + 2 * s.ph;
  t.in_w = s.wo + t.kw - 1;
  t.ph = t.pw = 0;
  t.hw = t.in_h * t.in_w;
  t.kk = t.kh * t.kw;
  t.ckk = t.cg * t.kk;
  Buffer<T> u(t.n * t.c * t.hw), v(t.k * t.ckk);
  if (!u.ok() || !v.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of column phases",
                (long long)((t.n * t.c * t.hw + t.k * t.ckk) * (int64_t)sizeof(T)));
#pragma omp parallel num_threads(num_threads())
  {
    copy_width_phases(s, x, t.in_w, u.get());
#pragma omp for schedule(static)
    for (int64_t k = 0; k < s.k; ++k)
      for (int64_t c = 0; c < s.cg; ++c)
        for (int64_t bq = 0; bq < s.sw; ++bq)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t jj = 0; jj < t.kw; ++jj) {
              const int64_t j = jj * s.sw + bq;
              v.get()[k * t.ckk + ((c * s.sw + bq) * t.kh + i) * t.kw + jj] =
                  j < s.kw ? w[k * s.ckk + (c * s.kh + i) * s.kw + j] : T(0);
            }
  }
  return conv2d_forward__direct(t, u.get(), v.get(), b, y);
}

// The blocked forward (conv/direct_blocked.cpp), its filters packed per call; flipped: w holds
// the weights of the layer whose data gradient s is, packed transposed and flipped.
template <class T>
static fc_status forward_blocked(const ConvShape &s, const T *x, const T *w, const T *b, T *y,
                                 bool flipped, bool *finite) {
  // Up to 512 output positions in all (small planes, few images), where the packing weighs
  // most next to the products, each pair of output blocks is packed as a thread reaches it;
  // larger ones pack all the filters first (the runs then go image by image: pair by pair,
  // every pair would read the whole batch's input again). Interleaved in one process with
  // a 64 MB pass over memory before each call, best of 10-12, AVX2 EPYC, 2 threads, one
  // against the other: ResNet's 3x3 512 at 7x7 0.67-0.82x the time at one image and
  // 0.87-0.93x at eight, its 3x3/2 512 onto 7x7 0.69-0.79x, L4 and L5 at one image
  // 0.85-0.88x, GoogLeNet's 3x3 and 5x5 at 7x7 at four images 0.79-0.99x, Inception v3's
  // 3x3/2 384>384 onto 17x17 0.80-0.82x; over all 28 such shapes of `fastconv bench auto`
  // and GoogLeNet's 0.74-1.14x (0.89x in sum; the slower ones 1x1 layers, which auto gives
  // gemm1x1). On larger planes at eight images pair by pair lost 1.1-1.45x (VGG-16's 3x3
  // 256>512 at 28x28, Inception v3's 3x3/2 384 on 35x35).
  if (s.n * s.howo <= 512) return direct_blocked_forward_packing(s, x, w, b, y, flipped, finite);
  Buffer<T> wb(direct_blocked_filter_size<T>(s));
  if (!wb.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of blocked filters",
                (long long)(direct_blocked_filter_size<T>(s) * (int64_t)sizeof(T)));
  const bool all = direct_blocked_pack_filters(s, w, wb.get(), flipped);
  if (finite) *finite = all;
  return direct_blocked_forward(s, x, wb.get(), b, y, (const Epilogue<T> *)nullptr, all, false);
}

// Register tiles (unit stride along rows). The input is copied once into zero-padded planes
// [hp, wp] with slack at the end, so every tap of every tile is in bounds. An output row is
// then a run of positions q whose taps sit at q + i*dil_h*wp + j*dil_w: with unit stride along the
// height too, all rows together form ONE run of ho*wp positions (columns wo..wp-1 of each row
// are computed and dropped), so narrow images still fill whole tiles. Work items are (image,
// group, block of output channels). The position tile accumulates into a thread-local wide
// buffer whose valid columns are copied out; the k-tile writes [positions][channels] blocks
// that are transposed into the output as they come.
template <class T>
fc_status conv2d_forward__direct(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  if (direct_blocked_runs(s)) {  // (conv/direct_blocked.cpp)
    return forward_blocked(s, x, w, b, y, false, (bool *)nullptr);
  }
  if (s.sw != 1 && uk.direct_tile != nullptr && width_phases_fit(s) &&
      all_finite(x, s.n * s.c * s.hw))
    return forward_width_phases(s, x, w, b, y);
  // The padded copy must stay near the size of the input and output planes: a huge padding
  // (valid with a stride that makes the output small again) takes the row path, which copies
  // nothing; (h + 2*ph) * (w + 2*pw) can even overflow int64 there.
  int64_t padded_plane;
  if (s.sw != 1 || uk.direct_tile == nullptr ||
      __builtin_mul_overflow(s.in_h + 2 * s.ph, s.in_w + 2 * s.pw, &padded_plane) ||
      !near_io_size(s, padded_plane))
    return forward_by_rows(s, x, w, b, y);
  const bool ktile = use_ktile(s, uk);
  const int64_t vlen = uk.vlen, step = ktile ? uk.pt : vlen * uk.max_nvec;
  const int64_t kbn = ktile ? uk.kt : uk.kb;
  const int64_t hp = s.in_h + 2 * s.ph, wp = s.in_w + 2 * s.pw;
  const bool flat = s.sh == 1;
  const int64_t run = flat ? s.ho * wp : s.wo;  // positions per run
  const int64_t runs = flat ? 1 : s.ho;
  const int64_t run_pad = (run + step - 1) / step * step;  // whole tiles
  // Slack so the last tile's reads stay inside the padded plane buffer.
  const int64_t xplane = hp * wp + (run_pad - run) + s.dil_w * (s.kw - 1) + wp;
  const int64_t yrow = flat ? wp : run_pad;  // wide-buffer row stride: runs must not overlap
  const int64_t yplane = ktile ? 0 : s.ho * yrow + step;
  const int64_t kblocks = (s.kg + kbn - 1) / kbn;
  const int nt = num_threads();
  Buffer<T> xpad(s.n * s.c * xplane), packed(s.g * kblocks * kbn * s.ckk),
      wide(nt * (ktile ? kbn * step : kbn * yplane));
  if (!xpad.ok() || !packed.ok() || !wide.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate the padded input / packed weights");
#pragma omp parallel num_threads(nt)
  {
#pragma omp for schedule(static) nowait
    for (int64_t p = 0; p < s.n * s.c; ++p) {
      T *dst = xpad.get() + p * xplane;
      std::fill(dst, dst + xplane, T(0));
      for (int64_t r = 0; r < s.in_h; ++r)
        std::memcpy(dst + (r + s.ph) * wp + s.pw, x + p * s.hw + r * s.in_w, s.in_w * sizeof(T));
    }
    // Weights packed [group][k block][c][i][j][kbn] (zero rows pad the last block), so a tile
    // reads the kbn weights of one tap from consecutive memory.
#pragma omp for schedule(static)
    for (int64_t gb = 0; gb < s.g * kblocks; ++gb) {
      const int64_t k0 = (gb / kblocks) * s.kg + (gb % kblocks) * kbn;
      const int64_t nk = std::min(kbn, (gb / kblocks + 1) * s.kg - k0);
      T *dst = packed.get() + gb * kbn * s.ckk;
      for (int64_t t = 0; t < s.ckk; ++t)
        for (int64_t r = 0; r < kbn; ++r)
          dst[t * kbn + r] = r < nk ? w[(k0 + r) * s.ckk + t] : T(0);
    }
    T *yw = wide.get() + omp_get_thread_num() * (ktile ? kbn * step : kbn * yplane);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < s.n * s.g * kblocks; ++it) {
      const int64_t n = it / (s.g * kblocks), g = (it / kblocks) % s.g, kb = it % kblocks;
      const int64_t k0 = g * s.kg + kb * kbn, nk = std::min(kbn, s.kg - kb * kbn);
      const T *xg = xpad.get() + (n * s.c + g * s.cg) * xplane;
      const T *wpk = packed.get() + (g * kblocks + kb) * kbn * s.ckk;
      T *yk = y + (n * s.k + k0) * s.howo;
      if (ktile) {
        for (int64_t r0 = 0; r0 < runs; ++r0) {
          const T *xr = xg + r0 * s.sh * wp;
          for (int64_t q = 0; q < run; q += step) {
            uk.direct_ktile(xr + q, wp, xplane, wpk, s.cg, s.kh, s.kw, s.dil_h, s.dil_w, yw);
            // yw [positions][kbn] -> y[k0 + r, oh, ow], dropping the padding columns
            for (int64_t o = 0; o < std::min(step, run - q); ++o) {
              const int64_t pos = q + o;
              const int64_t oh = flat ? pos / wp : r0, ow = flat ? pos % wp : pos;
              if (ow >= s.wo) continue;
              for (int64_t r = 0; r < nk; ++r)
                yk[r * s.howo + oh * s.wo + ow] = yw[o * kbn + r] + (b ? b[k0 + r] : T(0));
            }
          }
        }
        continue;
      }
      std::fill(yw, yw + kbn * yplane, T(0));
      for (int64_t r0 = 0; r0 < runs; ++r0) {
        const T *xr = xg + r0 * s.sh * wp;  // run r0 = output row r0 when not flat
        T *yr = yw + r0 * yrow;
        for (int64_t q = 0; q < run; q += step) {
          const int nvec = (int)std::min<int64_t>(uk.max_nvec, (run - q + vlen - 1) / vlen);
          uk.direct_tile(xr + q, wp, xplane, wpk, s.cg, s.kh, s.kw, s.dil_h, s.dil_w, yr + q,
                         yplane, nk, nvec);
        }
      }
      for (int64_t r = 0; r < nk; ++r) {
        const T bias = b ? b[k0 + r] : T(0);
        T *dst = yk + r * s.howo;
        const T *src = yw + r * yplane;
        for (int64_t oh = 0; oh < s.ho; ++oh)
          for (int64_t ow = 0; ow < s.wo; ++ow) dst[oh * s.wo + ow] = src[oh * yrow + ow] + bias;
      }
    }
  }
  return FC_OK;
}

namespace {

// The data gradient as a scatter: dx rows += w * dy rows, items owning disjoint dx planes.
// Any stride; used where the gradient is not itself a unit-stride convolution.
template <class T>
fc_status backward_data_scatter(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t cblocks = (s.cg + CB - 1) / CB;
  const int64_t items = s.n * s.g * cblocks;
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / (s.g * cblocks), g = (it / cblocks) % s.g, cb = it % cblocks;
    const int64_t c0 = cb * CB, nc = std::min(CB, s.cg - c0);
    T *dxc = dx + (n * s.c + g * s.cg + c0) * s.hw;  // nc planes, owned by this item
    std::fill(dxc, dxc + nc * s.hw, T(0));
    for (int64_t k = g * s.kg; k < (g + 1) * s.kg; ++k) {
      const T *dyk = dy + (n * s.k + k) * s.howo;
      const T *wk = w + k * s.ckk + c0 * s.kk;
      for (int64_t oh = 0; oh < s.ho; ++oh) {
        for_each_tap(s, oh,
                     [&](int64_t i, int64_t ih, int64_t j, int64_t off, int64_t lo, int64_t hi) {
          // dx[c0:c0+nc, ih, lo*sw+off : : sw] += w[k, c0:c0+nc, i, j] * dy[k, oh, lo:hi]
          uk.scatter_rows(dxc + ih * s.in_w + lo * s.sw + off, s.hw, s.sw, nc, wk + i * s.kw + j,
                          s.kk, dyk + oh * s.wo + lo, hi - lo);
        });
      }
    }
  }
  return FC_OK;
}

}  // namespace

// With unit stride the data gradient is itself a unit-stride convolution: of dy (k channels)
// with the weights transposed per group and flipped, padded dil*(k-1) - pad. It then runs on
// the forward's register tiles.
template <class T>
fc_status conv2d_backward_data__direct(const ConvShape &s, const T *dy, const T *w, T *dx) {
  const int64_t tph = s.dil_h * (s.kh - 1) - s.ph, tpw = s.dil_w * (s.kw - 1) - s.pw;
  // Strided: on phase planes (conv/direct_blocked.cpp), where an infinite or NaN weight takes
  // the scatter, as below
  if ((s.sh != 1 || s.sw != 1) && ukernels<T>().direct_tile != nullptr &&
      direct_blocked_data_grad_phases_apply(s)) {
    bool finite = true;
    const fc_status st = direct_blocked_backward_data_phases(s, dy, w, dx, &finite);
    return st != FC_OK || finite ? st : backward_data_scatter(s, dy, w, dx);
  }
  if (s.sh != 1 || s.sw != 1 || tph < 0 || tpw < 0 || ukernels<T>().direct_tile == nullptr)
    return backward_data_scatter(s, dy, w, dx);
  ConvShape t = s;
  t.c = s.k;
  t.k = s.c;
  t.in_h = s.ho;
  t.in_w = s.wo;
  t.ho = s.in_h;
  t.wo = s.in_w;
  t.ph = tph;
  t.pw = tpw;
  t.cg = s.kg;
  t.kg = s.cg;
  t.hw = s.howo;
  t.howo = s.hw;
  t.ckk = s.kg * s.kk;
  // On the blocked forward the packing reads w transposed and flipped as it goes: the
  // transposed copy below had taken 0.6 of the 2.1 ms of ResNet's 3x3 512 at 7x7, one image
  // (Zen 4, 2 threads; the forward 1.24). A filter tap that is infinite or NaN would also meet
  // dy's zero padding there (0 x inf: NaN where the gradient has no product; im2col and
  // PyTorch have none): such filters, seen as they are packed, take the scatter instead.
  if (direct_blocked_runs(t)) {
    bool finite = true;
    const fc_status st = forward_blocked(t, dy, w, (const T *)nullptr, dx, true, &finite);
    return st != FC_OK || finite ? st : backward_data_scatter(s, dy, w, dx);
  }
  Buffer<T> wt(s.k * s.ckk);
  if (!wt.ok()) return fail(FC_ENOMEM, "direct: cannot allocate the transposed weights");
  // wt[g*cg + ci, ko, i, j] = w[g*kg + ko, ci, kh-1-i, kw-1-j]. An item takes 8 input
  // channels' rows of wt (8 streams of writes) and walks every ko, reading 8*kk consecutive
  // weights per ko; a 1x1's 8x8 blocks go through the micro-kernels' transpose (pack_block8).
  // Pair by pair, the writes went kg*kk apart through the whole wt, and tiles of 16x16 pairs
  // wrote 16 lines 8 KB apart (one set of the L1): ResNet-50's 1x1 2048>512 (4 MB of weights)
  // spent 2-2.7 ms of its data gradient transposing, at one image and at eight (AVX2 EPYC, 2
  // threads).
  const UKernels<T> &uk = ukernels<T>();
  T *W = wt.get();
  const int64_t cbs = (s.cg + 7) / 8;
  int bad = 0;  // (an infinite or NaN tap: the scatter, as above)
#pragma omp parallel for num_threads(num_threads()) schedule(static) reduction(| : bad)
  for (int64_t q = 0; q < s.g * cbs; ++q) {
    const int64_t g = q / cbs, ci0 = q % cbs * 8, nc = std::min<int64_t>(8, s.cg - ci0);
    const T *src = w + (g * s.kg * s.cg + ci0) * s.kk;  // [ko][cg*kk] from channel ci0
    T *dst = W + (g * s.cg + ci0) * s.kg * s.kk;        // [ci][kg*kk] from channel ci0
    int64_t ko = 0;
    if (s.kk == 1 && nc == 8) {
      T blk[64];
      for (; ko + 8 <= s.kg; ko += 8) {
        bad |= !uk.pack_block8(src + ko * s.cg, s.cg, 1, blk,
                               8);  // blk[ci*8 + o] = src[(ko+o)*cg + ci]
        for (int64_t ci = 0; ci < 8; ++ci)
          std::memcpy(dst + ci * s.kg + ko, blk + ci * 8, 8 * sizeof(T));
      }
    }
    for (; ko < s.kg; ++ko)
      for (int64_t ci = 0; ci < nc; ++ci)
        for (int64_t e = 0; e < s.kk; ++e) {
          const T v = src[(ko * s.cg + ci) * s.kk + s.kk - 1 - e];
          dst[(ci * s.kg + ko) * s.kk + e] = v;
          bad |= !(std::fabs(v) <= std::numeric_limits<T>::max());
        }
  }
  if (bad) return backward_data_scatter(s, dy, w, dx);
  return conv2d_forward__direct(t, dy, W, (const T *)nullptr, dx);
}

template <class T>
fc_status conv2d_backward_weight__direct(const ConvShape &s, const T *dy, const T *x, T *dw) {
  // (one group without dilation: the blocked tiles, conv/direct_blocked.cpp; the rest a dot
  // product per tap)
  if (direct_blocked_weight_grad_applies(s)) return direct_blocked_backward_weight(s, dy, x, dw);
  const UKernels<T> &uk = ukernels<T>();
  const int64_t items = s.k * s.cg;  // one (k, c) pair each: its kh*kw taps, no races
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 4)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t k = it / s.cg, c = it % s.cg, g = k / s.kg;
    T *dwkc = dw + k * s.ckk + c * s.kk;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t off = j * s.dil_w - s.pw;
        int64_t lo, hi;
        valid_range(off, s.sw, s.in_w, s.wo, &lo, &hi);
        double acc = 0;
        for (int64_t n = 0; n < s.n && lo < hi; ++n) {
          const T *dyk = dy + (n * s.k + k) * s.howo;
          const T *xc = x + (n * s.c + g * s.cg + c) * s.hw;
          for (int64_t oh = 0; oh < s.ho; ++oh) {
            const int64_t ih = oh * s.sh - s.ph + i * s.dil_h;
            if (ih < 0 || ih >= s.in_h) continue;
            // sum over ow of dy[k, oh, ow] * x[c, ih, ow*sw + off]
            acc += uk.dot(dyk + oh * s.wo + lo, xc + ih * s.in_w + lo * s.sw + off, s.sw, hi - lo);
          }
        }
        dwkc[i * s.kw + j] = (T)acc;
      }
    }
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(direct, float)
FC_INSTANTIATE_CONV_ALGO(direct, double)

}  // namespace fc
