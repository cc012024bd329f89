// The blocked direct forward: channels in blocks of 8, as ONNX Runtime's NCHWc convolutions lay
// them out. The input is copied once into zero-padded planes of 8-channel pixels
// ([n][c/8][h + 2ph][w + 2pw][8]) and the weights into [k/8][c/8][kh][kw][8 in][8 out], or,
// for the 32-channel tiles, four output blocks joined, [k/32][c/8][kh][kw][8 in][32 out]
// (direct_blocked_pack_filters; inference plans keep them packed). A register tile
// (cpu/ukernels.h, blocked_tile) sums 16 output channels x a few positions of one output row
// over every input channel and tap: per step two weight vectors and one broadcast input value
// per position, whose 8 channels share a cache line; no column matrix, no packing of the input
// beyond the copy, any stride. Work items are (image, 16 output channels, output row): each
// output is written by one tile, so the bits follow the shape, never the thread count. Under 8
// input channels the copy is the rows layout instead (rows_layout, below): a stem's 3 channels
// interleaved in each row, the c*kw taps of a window row one run for the tile.
#include <omp.h>
#include <vector>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "../cpu/ukernels.h"
#include "../epilogue.h"
#include "../hw.h"
#include "../internal.h"

namespace fc {

namespace {

constexpr int64_t kB = 8;                   // channels per block
constexpr int64_t kFar = int64_t(1) << 30;  // (a tile's cl, cr: every column in the plane)
constexpr int kMaxTile = 16;                // the most positions of a tile (x_at, y_at)

int64_t blocks(int64_t channels) { return (channels + kB - 1) / kB; }
// Output blocks, even: tiles take them in pairs (a zero block pads an odd count).
int64_t out_blocks(int64_t k) { return (k + 2 * kB - 1) / (2 * kB) * 2; }

// With under 8 input channels (a network's stem: 3) the input is laid out in rows instead:
// each padded row holds its pixels' channels interleaved ([row][column][c], NHWC per image), so
// the c*kw taps of one window row are one run of consecutive values, which the tile sums as
// one block of ne = c*kw values (its kernel one tap wide). Padding the stem's 3 channels to a
// block of 8 had wasted 5 multiply-adds of 8.
bool rows_layout(const ConvShape &s) { return s.c < kB; }

// How the tile sees the packed input and filters (blocked_tile's x_cb, x_row, x_step, cbn, kw,
// ne; ukernels.h).
struct Geometry {
  int64_t cbn, kw, ne;                 // blocks, taps a row, values a block (as the tile sees them)
  int64_t hp, wp, px;                  // padded plane, values per pixel in it
  int64_t x_row, x_cb, x_img, x_step;  // strides of the packed input (x_img: one image)
  int64_t w_block, w_ob;  // packed filters of one (output block, input block), one output block
};

Geometry geometry(const ConvShape &s) {
  Geometry g;
  g.hp = s.in_h + 2 * s.ph;
  g.wp = s.in_w + 2 * s.pw;
  if (rows_layout(s)) {
    g.cbn = 1;
    g.kw = 1;
    g.ne = s.c * s.kw;
    g.px = s.c;
    g.x_row = g.wp * g.px;
    g.x_cb = 0;
    g.x_img = g.hp * g.x_row;
    g.x_step = s.sw * s.c;
  } else {
    g.cbn = blocks(s.c);
    g.kw = s.kw;
    g.ne = kB;
    g.px = kB;
    g.x_row = g.wp * g.px;
    g.x_cb = g.hp * g.x_row;
    g.x_img = g.cbn * g.x_cb;
    g.x_step = s.sw * kB;
  }
  g.w_block = s.kh * g.kw * g.ne * kB;
  g.w_ob = g.cbn * g.w_block;
  return g;
}

// Where copy_padded_pixels reads pixel (ih, iw) of plane p: src[p*plane + ih*row + iw*col],
// for ih < rows and iw < cols; past those the plane reads as zeros (a strided data gradient's
// phases, below, see dy with a row or column of zeros more than it has).
struct SourcePlanes {
  int64_t plane, row, col;
  int64_t rows = INT64_MAX, cols = INT64_MAX;
};

// Planes of h x w pixels of src (at `from`) into dst [n][nb][h + 2ph][w + 2pw][px], zero-padded:
// each pixel's px values (block b's channels b*8 on, zero past the last channel and in blocks
// past it; in rows, px == c and nb == 1: the pixel's channels). Must be called by every thread
// of the team (an omp for with its barrier). Rows of consecutive pixels go through pixels8 (on
// AVX2, 8x8 register transposes): the value-by-value loop had taken 31% of a 1x1 192>64 at
// 28x28 (perf); 0.79-0.94x the forward's time on GoogLeNet's and ResNet-50's 1x1 at 7x7-28x28
// and 0.95-0.98x on ResNet's 3x3/2, batch-1 plans of ResNet-50, GoogLeNet and Inception v3
// 0.986-0.992x (interleaved, best of 11-15, AVX2 EPYC, 2 threads, session 30).
// Row q of the copy (image q / (hp*nb), block q / hp % nb, padded row q % hp).
template <class T>
inline void copy_padded_row(const T *src, const SourcePlanes &from, int64_t c, int64_t h, int64_t w,
                            int64_t ph, int64_t pw, int64_t px, int64_t nb, T *dst, int64_t q) {
  const int64_t hp = h + 2 * ph, row = (w + 2 * pw) * px;
  const int64_t r = q % hp, b = q / hp % nb, i = q / (hp * nb);
  T *d = dst + q * row;
  const int64_t ih = r - ph, nc = std::clamp<int64_t>(c - b * kB, 0, px);
  if (ih < 0 || ih >= h || ih >= from.rows) {
    std::fill(d, d + row, T(0));
    return;
  }
  const int64_t wv = std::min(w, from.cols);  // (the pixels read; zeros past them)
  std::fill(d, d + pw * px, T(0));
  std::fill(d + (pw + wv) * px, d + row, T(0));
  T *dr = d + pw * px;
  const T *sr = src + (i * c + b * kB) * from.plane + ih * from.row;
  if (from.col == 1 && px == kB) {  // (a row of consecutive pixels)
    ukernels<T>().pixels8(sr, from.plane, nc, wv, dr, kB);
    return;
  }
  if (from.col == 2 && px == kB) {  // (every second pixel: a strided 1x1's, subsampled_view)
    // gathered 64 at a time into consecutive runs, then through pixels8: value by value, the
    // copy had taken 11% of ResNet's 1x1/2 512>1024 from 28x28 at 8 images (perf; gathered,
    // its loads waiting on memory); that layer 0.98x the time, ResNet-50's batch-1 plan 0.965x
    // (alternating processes, best of 8 rounds, the Xeon, session 55)
    constexpr int64_t kRun = 64;
    T run[kB * kRun];
    for (int64_t i0 = 0; i0 < wv; i0 += kRun) {
      const int64_t m = std::min(kRun, wv - i0);
      for (int64_t e = 0; e < nc; ++e) {
        const T *se = sr + e * from.plane + 2 * i0;
        for (int64_t i = 0; i < m; ++i) run[e * kRun + i] = se[2 * i];
      }
      ukernels<T>().pixels8(run, kRun, nc, m, dr + i0 * px, kB);
    }
    return;
  }
  for (int64_t iw = 0; iw < wv; ++iw) {
    for (int64_t e = 0; e < nc; ++e) dr[iw * px + e] = sr[e * from.plane + iw * from.col];
    for (int64_t e = nc; e < px; ++e) dr[iw * px + e] = T(0);
  }
}
template <class T>
void copy_padded_pixels(const T *src, const SourcePlanes &from, int64_t n, int64_t c, int64_t h,
                        int64_t w, int64_t ph, int64_t pw, int64_t px, int64_t nb, T *dst) {
  const int64_t hp = h + 2 * ph;
#pragma omp for schedule(static)
  for (int64_t q = 0; q < n * nb * hp; ++q)
    copy_padded_row(src, from, c, h, w, ph, pw, px, nb, dst, q);
}
// The same for images [i0, i1) only, by the calling thread alone.
template <class T>
void copy_padded_images(const T *src, const SourcePlanes &from, int64_t i0, int64_t i1, int64_t c,
                        int64_t h, int64_t w, int64_t ph, int64_t pw, int64_t px, int64_t nb,
                        T *dst) {
  const int64_t hp = h + 2 * ph;
  for (int64_t q = i0 * nb * hp; q < i1 * nb * hp; ++q)
    copy_padded_row(src, from, c, h, w, ph, pw, px, nb, dst, q);
}

}  // namespace

bool direct_blocked_applies(const ConvShape &s) {
  if (s.g != 1 || s.dil_h != 1 || s.dil_w != 1) return false;
  if (ukernels<float>().blocked_tile == nullptr) return false;
  // The padded copy stays near the size of the input and output (a huge padding, valid with a
  // stride that shrinks the output again, is left to the other paths), with no int64 overflow.
  int64_t hp, wp, plane, v;
  if (__builtin_add_overflow(s.in_h, 2 * s.ph, &hp) ||
      __builtin_add_overflow(s.in_w, 2 * s.pw, &wp) || __builtin_mul_overflow(hp, wp, &plane) ||
      __builtin_mul_overflow(plane, blocks(s.c) * kB, &v))
    return false;
  return v <= 4 * (s.c * s.hw + s.k * s.howo) + 4096 && !__builtin_mul_overflow(v, s.n, &v) &&
         !__builtin_mul_overflow(out_blocks(s.k) * kB, blocks(s.c) * kB * s.kk, &v);
}

// Measured on the AVX2 EPYC, 2 threads, forward with the filters packed per call (bench auto's
// shapes and others), unit stride: against im2col 1.1-1.5x faster on Inception's 1x7 and 7x1 at
// 17x17 and 5x5 48>64 at 35x35, L3 and L4, even on L5 (11x11 out); against the row tiles (the
// direct forward before) 1.1-1.9x faster, but with 16 input channels (0.9x). It lost with under 24
// input channels (the stem's 3 padded to 8: 2-3x slower; the rows layout below runs it). Strided
// (3x3/2 at 56x56, 35x35 and 28x28) it came out 0.85-1.2x im2col's time from run to run at batch 1
// and 8 in bench auto, so auto keeps im2col there. With the filters packed once (an inference
// plan), batch 1: ResNet's 512-channel 3x3 at 7x7 1.35-1.4x faster than im2col and its 3x3/2 layers
// 1.15-1.45x (where packing 9.4 MB of filters per call made the 7-wide ones 0.8-0.9x); at batch 8
// the strided ones ran 0.94-1.0x, hence the limit on positions. Strided at one image with 192+
// input channels onto 144-400 positions it won even packing per call (session 21, interleaved, best
// of 11, two runs): Inception v3's 3x3/2 384>384, 288>384 and 192>320 on 35x35 0.72-0.93x im2col's
// time, 256>512 on 24x24 0.71x, ResNet's 256 on 28x28 (196 positions) 0.94-0.98x; onto 49-64
// positions it lost (512 on 14x14, 768 on 17x17: 1.56-1.66x), onto 784 it came out even (128 and 64
// on 56x56, 0.97-1.06x), and at two images 0.95x. Since its AVX2 tile keeps every accumulator in
// registers (session 29) 64-128 input channels onto 784 positions won too: ResNet's 3x3/2 128
// and 64>128 at 56x56 0.94x im2col's time, 96 0.92x, 256 0.99x (interleaved, best of 7; at two
// images even, 0.99x; 64 on 112x112 onto 3136 even). With the filters packed pair by pair as the
// threads reach them (up to 512 positions in all, session 26) strided forwards onto small planes
// won at 1-8 images (interleaved, best of 9, warm and after a 64 MB pass over memory, session
// 27): ResNet's 3x3/2 512 onto 7x7 0.85-0.93x im2col's time at 1, 2, 4 and 8 images, ResNet-18's
// 256>512 0.77-0.93x, 256 and 128>256 onto 14x14 at 1-2 images 0.80-0.87x, Inception v3's
// 192>320 onto 8x8 0.80-0.95x; with 768 input channels (Inception v3's 768 onto 8x8, 21 MB of
// filters) even to 1.08x. Since its strided tiles prefetch (cpu/ukernels_impl.inc,
// prefetch_block_rows; session 31, interleaved, best of 7-11) it wins strided at every batch:
// against im2col, packing per call, ResNet's 3x3/2 128, 256 and 64>128 at 56x56 and 28x28
// 0.83-0.94x the time at 1, 2, 4, 8 and 16 images, 64 at 112x112 0.81-0.83x at 1 and 8,
// Inception v3's 384>384 and 96>96 at 35x35 0.73-0.92x, its 192>192 and 192>320 at 17x17 at 8
// images 0.83-0.91x, ResNet's 512 onto 7x7 at 8 0.89x; on narrow rows at one or two images it
// lost (512 and 256>512 onto 7x7 1.09-1.19x, 192>320 onto 8x8 1.05x). With the filters packed
// once (prepared) 0.74-0.93x im2col's time on all of ResNet's and Inception v3's at 1, 2 and 8.
//
// In rows (under 8 input channels), against the direct forward before it (the row tiles, or on
// column phases where strided) and im2col, interleaved, best of 10 (AVX2 EPYC, 2 threads): the
// stem's 7x7/2 3>64 at 224x224 0.85-0.9x im2col's time at batch 1-8 (PyTorch 0.9-1.0x ours at
// 1-4 images), AlexNet's 11x11/4 0.64x, OverFeat's 0.76x, L1's 11x11 on 128x128 0.83x (FFT's
// 6.8 ms, 5.3 now), a 5x5/2 on 3 channels 0.9x. With short runs at unit stride the row tiles,
// whose vectors are unit-stride rows of positions, stay faster (3x3 on 3 channels 1.1x, 5x5 on
// 1 or 3 channels 1.1-1.8x); at 28 taps a row even (7x7 on 4), from 30 ahead (5x5 on 6,
// LeNet's C3: 0.8x). Strided, 9 taps a row lose to im2col (Inception v3's 3x3/2 on 3: 1.1-1.2x).
bool direct_blocked_in_rows(const ConvShape &s) {
  return rows_layout(s) && s.c * s.kw >= (s.sw > 1 ? 15 : 28);
}

bool direct_blocked_runs(const ConvShape &s) {
  return (s.c >= 24 || direct_blocked_in_rows(s)) && s.wo >= 7 && direct_blocked_applies(s);
}

bool direct_blocked_pays(const ConvShape &s, bool prepared) {
  if (!direct_blocked_runs(s)) return false;
  if (rows_layout(s)) return true;
  const bool strided = s.sh > 1 || s.sw > 1;
  if (prepared) return true;
  // Strided, since its tiles ask for the next channel block's window rows ahead (session 31,
  // above): 64-512 input channels; onto narrow output rows (7-9 wide, whose tiles take positions
  // anywhere) at one or two images on AVX-512, or with filters of up to 256x256 channels. On
  // AVX-512 (Zen 4, 2 threads, interleaved, best of 11-21, session 37) ResNet's 3x3/2 512 onto
  // 7x7 took 0.87-0.92x im2col's time at one and two images, ResNet-18's 256>512 0.87-0.98x,
  // Inception v3's 192>320 onto 8x8 0.89-0.93x, 64-256 channels onto 7x7 at one image 0.61-0.83x
  // (in `fastconv bench auto`, ResNet's 512 at one image 0.72-0.94x in two runs); with
  // FASTCONV_ISA=avx2 64-256 channels 0.69-0.87x at one image and 0.84-0.95x at two, 192>320
  // 0.95-1.02x, 256>384 0.99x, but 512 and 256>512 1.03-1.11x: AVX2 kept im2col there until
  // the packing stopped dividing per tap (session 41, pack_block8): 512 onto 7x7 0.78x im2col's
  // time at one image and 0.82x at two, 256>512 0.77x and 0.83x (interleaved, best of 7). The
  // generic table keeps its rule of before.
  if (strided)
    return s.cg >= 64 && s.cg <= 512 &&
           (hardware().isa != Isa::kGeneric || s.wo >= 10 || s.n > 2 || s.cg * s.k <= 256 * 256);
  // Rows of 7-9 positions at one image, a kernel 3x3 or larger: the filters packed pair by
  // pair as the threads reach them (direct_blocked_forward_packing), interleaved, best of
  // 10-20, against im2col (AVX2 EPYC, 2 threads): ResNet's 3x3 512 at 7x7 0.85-1.0x the time
  // over five runs (0.84x PyTorch's in bench auto as im2col, 0.98x as direct), GoogLeNet's 3x3
  // 160>320 and 192>384 at 7x7 0.81-0.91x, Inception v3's 3x3 384>384 and 448>384 at 8x8
  // 0.79-0.82x and 0.83-1.0x, 3x3 256>256 and 128>256 at 7x7 0.82-0.86x, 64>64 0.68-0.75x
  // (0.86x in sum over these, 1.3x PyTorch's). Its 1x3 and 3x1 at 8x8 lost (1.03-1.08x). At two
  // images (8 Winograd tiles, too few for it: choose) the same (session 28, interleaved, best
  // of 7): ResNet's 3x3 512, 256 and 128 at 7x7 0.90x, 0.79x and 0.69x im2col's time, GoogLeNet's
  // 160>320, 192>384 and 832>384 at 7x7 0.83x, 0.85x and 0.94x, Inception v3's 448>384 at 8x8
  // 0.94x; from four images Winograd takes the 3x3 layers there, except with direct's 32-channel
  // tile (blocked_tile32, wide_avx512; api.cpp's winograd_pays): ResNet's 3x3 512 at 7x7, 8
  // images, 5.49 against Winograd's 6.07 ms and im2col's 9.40 (session 44).
  return s.wo >= 10 || ((s.n <= 2 || wide_avx512()) && s.kh >= 3 && s.kw >= 3);
}

template <class T>
int64_t direct_blocked_filter_size(const ConvShape &s) {
  return out_blocks(s.k) * geometry(s).w_ob;
}

namespace {

// Output block ob's filters for input block cb, packed into d ([kh][kw][ne][8 out], each run of
// 8 output channels ds apart: kB, or 4*kB where four blocks lie joined; zero for output
// channels past k and input channels past c). Returns whether they are all finite.
// flipped: w is not s's [k][c][kh][kw] but the weights of the layer whose data gradient s is
// ([c][k][kh][kw]: s is that layer transposed, one group), read transposed and flipped, so the
// data gradient packs them without first writing a transposed copy of them all.
template <class T>
bool pack_filter_block(const ConvShape &s, const Geometry &gm, const T *w, bool flipped, int64_t ob,
                       int64_t cb, T *d, int64_t ds = kB) {
  // Tap t (of kk) of output channel o and input channel ci.
  auto tap = [&](int64_t o, int64_t ci, int64_t t) {
    return flipped ? w[(ci * s.k + o) * s.kk + s.kk - 1 - t] : w[o * s.ckk + ci * s.kk + t];
  };
  const int64_t no = std::clamp<int64_t>(s.k - ob * kB, 0, kB), runs = gm.w_block / kB;
  if (rows_layout(s)) {  // row i's run of taps t = j*c + channel (never joined)
    if (no < kB) std::fill(d, d + gm.w_block, T(0));
    for (int64_t o = 0; o < no; ++o)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t t = 0; t < gm.ne; ++t)
          d[(i * gm.ne + t) * kB + o] = tap(ob * kB + o, t % s.c, i * s.kw + t / s.c);
    return all_finite(d, gm.w_block);
  }
  const int64_t ne = std::min(kB, s.c - cb * kB);
  if (no == kB && ne == kB)
    return flipped ? ukernels<T>().pack_block8_flipped(w + (cb * s.k + ob) * kB * s.kk, s.k * s.kk,
                                                       s.kk, d, ds)
                   : ukernels<T>().pack_block8(w + ob * kB * s.ckk + cb * kB * s.kk, s.ckk, s.kk, d,
                                               ds);
  bool fin = true;  // (edge blocks only: zero padding)
  for (int64_t r = 0; r < runs; ++r) std::fill(d + r * ds, d + r * ds + kB, T(0));
  for (int64_t o = 0; o < no; ++o)
    for (int64_t e = 0; e < ne; ++e)
      for (int64_t t = 0; t < s.kk; ++t) {
        const T v = tap(ob * kB + o, cb * kB + e, t);
        d[(t * kB + e) * ds + o] = v;
        fin &= std::isfinite(v);
      }
  return fin;
}

}  // namespace

// Consecutive output rows lie end to end in the padded input's pixels and in the output (a 1x1
// kernel, unpadded, unit stride): one run of positions covers several rows.
static bool flat_runs(const ConvShape &s) {
  return s.kh == 1 && s.kw == 1 && s.ph == 0 && s.pw == 0 && s.sh == 1 && s.sw == 1 &&
         !rows_layout(s);
}

// A strided 1x1, unpadded, reads only every sh-th row's every sw-th pixel: it runs as the
// unit-stride 1x1 over those pixels (subsampled_view), copied alone into the blocked layout
// (1/(sh*sw) of the input instead of all of it) with their rows end to end. Each output is the
// same sum in the same order as over the whole copy: the same bits.
static bool subsampled_1x1(const ConvShape &s) {
  return s.kh == 1 && s.kw == 1 && s.ph == 0 && s.pw == 0 && (s.sh > 1 || s.sw > 1) &&
         !rows_layout(s);
}
static ConvShape subsampled_view(const ConvShape &s) {
  ConvShape t = s;
  t.in_h = s.ho;
  t.in_w = s.wo;
  t.sh = t.sw = 1;
  t.hw = s.howo;
  return t;
}

namespace {

// How the blocked forward tiles a shape (s: as it runs, after subsampled_view).
struct ForwardTiles {
  bool flat;    // runs over several rows (flat_runs)
  bool narrow;  // tiles across rows of a narrow plane (blocked_tile_at)
  bool wide;    // items of 32 output channels (blocked_tile32), the filters joined
  int64_t tp;   // positions a tile
};

// A run's positions are cut evenly into tiles (7 = 4 + 3, not 6 + 1: a one-position tile loads
// two weight vectors per two multiply-adds). A run is one output row, except where a tile may
// take positions of several rows: where consecutive rows lie end to end in both the padded
// input and the output (flat_runs: a 1x1 kernel, unpadded, unit stride), and where a row under
// two tiles wide would be cut into tiles of under 5 positions (narrow), whose tiles then read
// each position from its own place (blocked_tile_at). A tile of 3 or 4 positions keeps 6 or 8
// accumulator vectors, too few to cover the multiply-adds' latency on two pipes. On AVX2 (6 a
// tile) that is rows of 7-9 positions: a 7x7 plane becomes 9 tiles of 5-6 positions instead of
// 7 rows of 4 + 3 (prepared forwards, interleaved, a 64 MB pass over memory before each, best
// of 20: ResNet's 3x3 512 at 7x7 and its 3x3/2 onto 7x7 0.77x the time at batch 1, 0.8x at 8;
// GoogLeNet's 3x3 and 5x5 at 7x7 0.66-0.88x, Inception v3's 8x8 layers 0.8-0.9x; 9x9 0.97x;
// rows of 14 0.92-0.97x, of 17 and 28 1.1-1.4x slower. In the batch-1 plans, profiled in
// turn, best of 8: ResNet-18's 7x7 3x3 steps 9.23 -> 7.09 ms, ResNet-50's 7.96 -> 6.29).
// Every output is still one tile's sum over the whole reduction, in the same order, so the
// bits are those of row runs. AVX-512's zmm tiles (14 positions on channel blocks at stride 1
// or 2, uk.fbt) take rows up to 14 wide whole, 4 accumulators covering the latency there:
// narrow is then rows of 4 or fewer (tiles across the rows of a 7x7 plane, 10 a tile, took
// 1.04-1.10x the time of a tile a row; session 33, Zen 4).
// On two full-rate 512-bit FMA pipes (hw.h, wide_avx512) an item takes two pairs, 32 output
// channels, for the tile that broadcasts each input value once into two multiply-adds
// (blocked_tile32; the last item of an odd count of pairs takes one).
template <class T>
ForwardTiles forward_tiles(const ConvShape &s) {
  const UKernels<T> &uk = ukernels<T>();
  const Geometry gm = geometry(s);
  ForwardTiles f;
  f.flat = flat_runs(s);
  f.tp = !rows_layout(s) && (gm.x_step == 8 || gm.x_step == 16) ? uk.fbt : uk.bt;
  f.narrow = !f.flat && !rows_layout(s) && f.tp >= 5 && f.tp <= kMaxTile && s.wo < 2 * f.tp &&
             s.wo / ((s.wo + f.tp - 1) / f.tp) < 5;
  f.wide = uk.blocked_tile32 && wide_avx512() && !rows_layout(s) && !f.narrow &&
           (gm.x_step == 8 || gm.x_step == 16);
  return f;
}

// Output blocks a group of the packed filters: four where the forward runs 32-channel items
// (wide), whose filters lie joined, [cb][kh][kw][8 in][32 out] (blocked_tile32 loads two
// plain vectors a step), except a last group of one pair; else each block [cb][kh][kw][8
// in][8 out], w_ob apart. A group of nb blocks takes nb*w_ob values either way.
// Block ob0 + h of the group whose first block is ob0, input block cb, into the group's
// filters at g; returns whether they are all finite.
// Where block h of a group lies in the group's filters at g for input block cb (w_block
// values a block, cbn input blocks), and *ds, the stride of its runs of 8 output channels.
template <class T>
T *group_block(T *g, bool joined, int64_t h, int64_t cb, int64_t cbn, int64_t w_block,
               int64_t *ds) {
  *ds = joined ? 4 * kB : kB;
  return joined ? g + cb * 4 * w_block + h * kB : g + (h * cbn + cb) * w_block;
}
// A 1x1's data gradient (flipped): each whole joined group of 32 channels is 32 consecutive
// values of the layer's weight rows, one row an input channel: copy_rows32 packs it.
static bool packs_by_rows(const ConvShape &s, bool flipped) {
  return flipped && s.kk == 1 && s.c % kB == 0;
}
template <class T>
bool pack_group_block(const ConvShape &s, const Geometry &gm, const T *w, bool flipped, int64_t ob0,
                      int64_t h, int64_t cb, bool joined, T *g) {
  int64_t ds;
  T *d = group_block(g, joined, h, cb, gm.cbn, gm.w_block, &ds);
  return pack_filter_block(s, gm, w, flipped, ob0 + h, cb, d, ds);
}

}  // namespace

template <class T>
bool direct_blocked_pack_filters(const ConvShape &s, const T *w, T *wb, bool flipped) {
  // Per (output block, input block): 8 runs of 8*kk consecutive weights read in order, written
  // into one [kk][8][8] block that stays in L1 (2.3 KB for 3x3). It streams all the weights
  // once (plans pack once; a plain forward packs each pair of output blocks as it reaches it,
  // direct_blocked_forward_packing).
  const Geometry gm = geometry(s);
  const bool wide = forward_tiles<T>(subsampled_1x1(s) ? subsampled_view(s) : s).wide;
  const int64_t cbn = gm.cbn, obn = out_blocks(s.k);
  int bad = 0;
  const int64_t rows_done = wide && packs_by_rows(s, flipped) ? s.k / (4 * kB) : 0;
#pragma omp parallel for num_threads(num_threads()) schedule(static) reduction(| : bad)
  for (int64_t g = 0; g < rows_done; ++g)
    bad |= !ukernels<T>().copy_rows32(w + g * 4 * kB, s.k, s.c, wb + g * 4 * cbn * gm.w_block);
#pragma omp parallel for num_threads(num_threads()) schedule(static) reduction(| : bad)
  for (int64_t q = 0; q < obn * cbn; ++q) {  // (flipped: input block by input block, as above)
    int64_t ob = flipped ? q % obn : q / cbn, cb = flipped ? q / obn : q % cbn;
    if (ob < 4 * rows_done) continue;
    if (wide && !flipped && q < obn / 4 * 4 * cbn) {  // (joined: a group's four blocks in turn,
      ob = q / (4 * cbn) * 4 + q % 4;                 // each input block's rows sharing lines)
      cb = q / 4 % cbn;
    }
    const bool joined = wide && ob / 4 * 4 + 4 <= obn;  // (a whole group of four)
    const int64_t ob0 = joined ? ob / 4 * 4 : ob;
    bad |= !pack_group_block(s, gm, w, flipped, ob0, ob - ob0, cb, joined,
                             wb + ob0 * cbn * gm.w_block);
  }
  return !bad;
}

// A 1x1 convolution, the filters packed once (an inference plan), against gemm1x1: per step of
// ResNet-50's and GoogLeNet's batch-1 plans (AVX2 EPYC, 2 threads, plans compiled with each
// rule in one process, profiled in turn, best of 10). Unit stride, on its flat runs: on 7x7
// planes from 128 outputs 0.75-0.92x gemm1x1's time (ResNet-50's 512>2048 1.05-1.12 -> 0.89-0.92
// ms, 2048>512 1.04-1.09 -> 0.83-0.88; GoogLeNet's 832>128 to 832>384), under 128 slower (832>32
// 0.046 -> 0.064 ms: x's copy into 8-channel pixels, as large as the product there). On 14x14
// from 256 outputs 0.86-1.04x (1024>512 1.71 -> 1.47 ms), under 256 slower (512>24 to 512>160
// 1.1-2.8x). At 8 images OpenBLAS won on 7x7 too then (ResNet-50's, 39.2 -> 41.0 ms in all; not
// since, below). On 28x28 from 256 outputs, since its blocked input copy went by register
// transposes (session 30): 0.91-0.96x (prepared, interleaved, best of 11, two runs, session 31:
// ResNet-50's 128>512 0.75 -> 0.68 ms, 512>256 and 256>512 1.27-1.33 -> 1.22-1.26), with 128
// outputs even (512>128, 480>128, 256>128), with 64 and on 56x56 slower (192>64 at 28x28,
// 256>64 and 64>256 at 56x56 1.03-1.1x).
// Strided (subsampled_1x1), prepared forwards timed alone after a 64 MB pass over memory, best
// of 15: ResNet-50's and ResNet-18's downsampling 1x1/2 layers 0.61-0.81x gemm1x1's time at one
// image (512>1024 at 28x28 3.31 -> 2.26 ms), 0.71-0.89x at two, 0.84-1.15x at eight. In the
// batch-1 plans onto 14x14 and 7x7 0.68-0.81x (ResNet-50's 512>1024 2.07 -> 1.64 ms, 1024>2048
// 2.24 -> 1.82; ResNet-18's 128>256 and 256>512), onto 28x28 even or slower (256>512 1.88 ->
// 1.90 ms, 64>128 0.169 -> 0.181).
// From two images, with its work items pair by pair (a plain forward packing the filters as it
// goes, session 26) and on under 512 positions in all, 7x7 planes gained too, plain and
// prepared (interleaved, best of 7-11, warm and after a 64 MB pass over memory, AVX2 EPYC, 2
// threads; session 27): ResNet-50's 512>2048 and 2048>512 at 2, 4 and 8 images 0.82-0.97x
// gemm1x1's time plain, 0.79-0.87x prepared, and in its batch-8 plan 30.2 -> 27.5 ms over its
// five such steps. GoogLeNet's 832>128 to 832>384 at 7x7 came out 0.87-1.07x plain, but lost
// in its batch-8 plan (5.8 -> 6.6 ms over six steps), 832>48 lost everywhere (1.02-1.36x),
// and 8x8 planes at 8 images (Inception v3's 2048>192 to 2048>384, 512 positions) 1.03-1.16x:
// 7x7 from 512 outputs only. At one image gemm1x1 stays the plain choice (0.69 against
// direct's 0.76 ms for 512>2048, warm). A plain strided 1x1 of one or two images with up to 512
// input channels (same method): ResNet's downsampling 256>512 to 1024 and ResNet-18's 64>128
// to 256>512 0.77-1.05x gemm1x1's time (0.92x in sum, warm and cold), 1024>2048 0.99-1.05x;
// at four images even, at eight 1.0-1.15x slower. On a full_avx512 core (hw.h) with the AVX2
// tables a plain 1x1 of 2048 input channels at 2+ images stays on gemm1x1: ResNet-50's 2048>512
// at 7x7, 8 images, took direct 1.32x its time (6.16 against 4.67 ms) on the 2-vCPU Xeon, and
// even with AVX-512's (3.88 against 3.87) before their 32-channel tile (blocked_tile32), where
// 512>2048 won with both (0.77-0.87x; session 43). With that tile 0.80x (2.92 against 3.63 ms;
// session 44), and there (`fastconv bench auto`, session 44) one image's plain 1x1 of 4x as many
// outputs as inputs (256+) on 14x14 and larger planes 0.85-0.98x (ResNet's 128>512 at 28x28 0.34
// against 0.40 ms, 64>256 at 56x56 0.91x; 256>64, 512>128 and 256>128 1.1-1.6x slower; in the
// batch-1 plan of ResNet-50, prepared, its 64>256 steps at 56x56 came out even), and
// strided ones of 512+ input channels at 8 images 0.94x (ResNet's 512>1024 and 1024>2048).
// Prepared strided ones with the AVX-512 tables on a full-rate core (one-step plans with bias
// and ReLU, interleaved, best of 6-12, the 2-vCPU Xeon, session 49), ms direct / gemm1x1: onto
// 28x28 too (ResNet-50's 256>512 from 56x56 0.785 / 1.017 at one image, 1.48 / 1.81 at two,
// 3.06 / 3.36 at four; ResNet-18's 64>128 0.079 / 0.091), and at 8 images from 512 input
// channels (512>1024 6.47 / 6.72, 1024>2048 5.60 / 6.67); 256>512 at 8 images 7.60 / 6.88.
// A 1x1's tiles read the input's own planes (plane_tile32: a channel's positions consecutive,
// the 8 channels of a block a plane apart) instead of a copy of it in blocks of 8 channels
// (pixels8), where every item takes 32 whole channels and the planes are up to 28x28. The
// products and their order are those of the copy: the same bits. Alternating processes, best
// of 7 calls in each of 8 rounds, the Xeon, 2 threads, session 56, the time with over without
// the copy: plain forwards at 8 images ResNet-50's 1024>256 at 14x14 0.89x, 2048>512 at 7x7
// 0.925x, 1024>512 0.98x, Inception v3's 2048>320 at 8x8 0.85x, GoogLeNet's 832>384 at 7x7
// 0.90x, data gradients 256>1024 at 14x14 0.91x, 1024>512 0.98x; at one image 1024>256 0.89x,
// 2048>512 0.93x (512>2048's data gradient 0.90x). In whole plans per step (prepared, best of
// 30 runs in 3 rounds): ResNet-50's 1x1s at 14x14 0.86-0.95x at one image, 0.88-0.95x at 8,
// at 7x7 0.93-0.97x; its batch-1 plan 0.976x, batch 8 0.994x, GoogLeNet and Inception v3 even.
// On 28x28 planes the tiles first took 1.09-1.13x the copy's time (ResNet-50's 128>512 and
// 512>256 in its batch-1 plan: a tile's rows of 8 channels lie 3 KB apart, past what the
// hardware prefetches); each tile now prefetches the next one's values of every channel into
// the L1 (two lines a channel), and (alternating processes, best of 5-7 calls in 6 rounds) plain
// forwards of ResNet-50's 512>256 at 28x28 took 0.89x the copy's time at one and 8 images,
// 512>128 at 8 images 0.84x, 128>512 0.95x, Inception v3's 768>192 at 17x17 0.83x at one image,
// 0.885x at 8, the 512>128's data gradient 0.98x; on 14x14 even; the plans of ResNet-50 (one
// and 8 images), GoogLeNet and Inception v3 (one) 0.985-1.01x (their steps on such planes are
// mostly gemm1x1's). auto's rules take these tiles into account up to 14x14 only.
bool direct_blocked_reads_planes(int64_t c, int64_t k, int64_t howo) {
  return wide_avx512() && ukernels<float>().plane_tile32 && c % kB == 0 && k % (4 * kB) == 0 &&
         howo <= 784;
}

bool direct_blocked_1x1_pays(const ConvShape &s, bool prepared) {
  if (!direct_blocked_runs(s)) return false;
  const bool wide = wide_avx512();
  if (subsampled_1x1(s))
    return (s.n <= 2 && (prepared ? s.howo <= 196 : s.c <= 512)) ||
           (wide && ((prepared && s.n <= 4) || (s.n <= 8 && s.c >= 512)));
  if (!flat_runs(s)) return false;
  // Since the 32-channel tile reads its filters joined (session 46, the Xeon): 2-8 images of
  // 832+ input channels on planes up to 14x14, plain forwards, 0.78-0.93x gemm1x1's time
  // (interleaved, best of 7, 2 threads; Inception v3's 2048>320, >384, >192 and 1280>448 at
  // 8x8, ResNet-50's 1024>512, >256 and >64 at 14x14, GoogLeNet's 832>384 at 7x7, at 8 images;
  // 2048>320 and 1024>256 at 2 and 4), where 768>192 at 17x17, 256>1024 at 14x14 and 512>128
  // at 28x28 stayed 1.04-1.15x slower, 1024>256 at 14x14 even at 16 images. Prepared (plans)
  // they came out even or behind: the batch-8 plans of ResNet-50, Inception v3 and GoogLeNet
  // 0.98-1.02x the time (interleaved processes, best of 5, 3 rounds).
  // Only while the input every pair of output blocks reads again stays under two L2s (as
  // float): on another host (session 53, SGEMM 278-288 against 319 GFLOP/s) 8 images of
  // 1024>512 and 1024>256 at 14x14 (6.4 MB) took direct 1.22-1.24x gemm1x1's time (8.47 / 6.86
  // and 4.25 / 3.49 ms) and of 2048>320 at 8x8 (4 MiB) 1.06-1.10x in two runs, where at 2-4
  // images they still took 0.82-0.92x (1024>512 at four 3.61 / 3.91, 2048>320 at four 1.72 /
  // 1.99) and GoogLeNet's 832>384 at 7x7 at 8 images 0.77x (1.10 / 1.43; interleaved, best of
  // 8-10).
  if (!prepared && s.n >= 2 && s.n <= 8 && wide && s.c >= 832 && s.howo <= 196 &&
      s.n * s.c * s.howo * 4 < 2 * hardware().l2)  // (as float)
    return true;
  // Where the tiles read the input's own planes (direct_blocked_reads_planes), plain forwards
  // of up to 8 images on 14x14 planes and of 2-8 on smaller ones from 256 outputs (interleaved,
  // best of 9, the Xeon, 2 threads, session 56), ms direct / gemm1x1: at 8 images ResNet-50's
  // 1024>512 at 14x14 6.28 / 6.41, 1024>256 3.06 / 3.23, 512>1024 6.19 / 6.38, 256>1024 3.09 /
  // 3.21, GoogLeNet's 528>256 1.61 / 1.72, 480>192 1.09 / 1.15, Inception v3's 2048>320 at 8x8
  // 2.38 / 3.10, 2048>384 2.99 / 3.65; at two and four 512>1024 1.71 / 2.38, 256>1024 1.65 /
  // 1.85; at one image 1024>512 0.82 / 0.91, 1024>256 0.41 / 0.47, 528>256 0.21 / 0.24, 512>1024
  // even. Not taken: one image on 7x7 (ResNet-50's 512>2048 0.60 / 0.57, GoogLeNet's 832>384
  // 0.19 / 0.18; 832>256 0.12 / 0.15), under 256 outputs at 8x8 (2048>192 1.98 / 1.85), an
  // image's input past half the L2 (2048>512 at 14x14, 8 images, 13.8 / 12.7; 2048>1024 28.5 /
  // 24.6).
  if (!prepared && s.n <= 8 && s.howo <= 196 && direct_blocked_reads_planes(s.c, s.k, s.howo) &&
      s.c * s.howo * 4 <= hardware().l2 / 2 && (s.howo >= 144 || (s.n >= 2 && s.k >= 256)))
    return true;
  // Prepared, 2-8 images on planes up to 14x14 and 2-4 on 17x17, from 128 outputs too
  // (full-rate AVX-512 tables; interleaved, best of 15, warm / after a 64 MB pass, the 2-vCPU
  // Xeon, session 51), ms direct / gemm1x1 (its rows product): at two images ResNet-50's
  // 256>1024 at 14x14 0.69 / 1.03, 1024>256 0.67 / 1.00, 1024>512 1.30 / 2.02, GoogLeNet's
  // 528>128 0.19 / 0.31 (0.61-0.68x warm, 0.66-0.70x cold); at four 256>1024 and 1024>256
  // 0.79-0.82x; at eight 0.91-0.95x (256>1024, 1024>512, 1024>256, 512>1024, GoogLeNet's 480>192
  // to 528>256). Whole plans, the two rules compiled in one process, interleaved, best of 12-20:
  // ResNet-50 at 2, 4 and 8 images 0.91-0.93x, 0.945x and 0.98x the time, GoogLeNet at 2 0.96x;
  // at 16 images ResNet-50 even (1.004x): up to 8. In session 52, per step inside whole plans
  // (each step's best of 6-10 runs, the two rules in one process): Inception v3's 1280>192 to
  // >448 and 2048>192 to >448 at 8x8 0.66-0.68x at two images, 0.60-0.69x at four, 0.77-0.87x at
  // eight (session 51 had measured the batch-8 plan 1.05x with these; three reruns 0.970-0.991x);
  // its 768>128 to >192 at 17x17 0.65-0.74x at two, 0.83-0.97x at four (0.89x in all),
  // at eight 0.94-1.15x (even in all: not taken); GoogLeNet's 832>128 to >384 at 7x7
  // 0.54-0.83x at two, 0.66-0.69x at eight. Whole plans, interleaved, best of 8-20: Inception v3
  // at 2, 4 and 8 images 0.922x, 0.945x and 0.983x the time, GoogLeNet at 2 and 8 0.969x and
  // 0.959x (ResNet-50's unchanged: its 7x7 1x1s have 512+ outputs, taken below). Not taken: 64
  // outputs (512>64 at 14x14, eight images, 0.91x alone, not tried in a plan), 28x28 planes at
  // two images (ResNet-50's 128>512 and 512>128 1.07-1.19x).
  if (prepared && wide && s.n >= 2 && s.k >= 128 &&
      (s.howo <= 196 ? s.n <= 8 : s.howo <= 289 && s.n <= 4))
    return true;
  if (s.n >= 2)
    return s.howo < 64 && s.n * s.howo < 512 && s.k >= 512 &&
           (prepared || s.c < 2048 || !full_avx512_core() || wide);
  if (!prepared) return wide && s.k >= 4 * s.c && s.k >= 256 && s.howo >= 196;
  // On a full-rate core with the AVX-512 tables, one image's planes up to 17x17 from 96 outputs
  // too (prepared, interleaved, best of 15, warm / after a 64 MB pass, the 2-vCPU Xeon, session
  // 50): GoogLeNet's 528>128, 512>112 to 528>192 and 480>96 at 14x14 0.60-0.80x gemm1x1's
  // time warm, 0.73-0.85x cold, Inception v3's 768>128 to 768>192 at 17x17 0.73-0.76x / 0.77-0.89x;
  // 64 outputs even (480>64, 512>64), 16-24 1.26-1.38x slower; 28x28 planes stay (256>288 even).
  return s.howo <= 64 ? s.k >= 128
                      : (s.howo <= 784 && s.k >= 256) || (wide && s.howo <= 289 && s.k >= 96);
}

namespace {

// Where the threads divide the batch (split, below), the images a thread runs at a time: every
// group of output channels passes over all of them, so where their blocked input does not fit
// in the L2 each group reads it again from the L3 or memory. A thread's m images then go in
// groups of as many as fit, with one group's filters, in half the L2, where that moves fewer
// bytes than one pass: grouped, all the filters are read once an image group (ceil(m / g) x
// the filters + the input once), whole, the input once a group of outputs (the filters once +
// groups x the input). A 3x3 of 512 channels (1.2 MB a group's filters) stays whole; a 1x1 of
// 1024+ channels on 14x14 and smaller planes goes image by image. One-step plans (a prepared
// 1x1 with ReLU), interleaved in one process, best of 15, 2 threads (the 2-vCPU Xeon, session
// 54), ms whole -> grouped: ResNet-50's 1024>256 at 14x14, 8 images, 3.92 -> 3.23 (two images
// a group, their input in the whole L2: 3.76), 1024>512 7.91 -> 6.35, 2048>512 at 7x7 3.19 ->
// 2.84, Inception v3's 2048>384 at 8x8 3.40 -> 3.00, 1024>256 at 4 images 1.69 -> 1.51; 3x3s
// unchanged (they stay whole). Whole plans at 8 images: ResNet-50 251.2 -> 245.4 ms,
// SE-ResNet-50 276.2 -> 263.9, Inception v3 and GoogLeNet even. With the AVX2 tables even, or
// 0.87x (2048>512 at 7x7, 8 images). Each output is the same tile's sum either way: the same
// bits.
int64_t split_images(int64_t m, int64_t x_bytes, int64_t wg_bytes, int64_t groups) {
  int64_t g = m;
  while (g > 1 && g * x_bytes + wg_bytes > hardware().l2 / 2) --g;
  if (g == m) return m;
  const int64_t w_bytes = groups * wg_bytes;
  const int64_t grouped = (m + g - 1) / g * w_bytes + m * x_bytes;
  const int64_t whole = w_bytes + groups * m * x_bytes;
  return grouped < whole ? g : m;
}

// A thread's images [n0, n1) in groups of ig: copy(g0, g1) its input, then item(n, pr, r) for
// every group of outputs pr in [p0, p1), image n of the group and r < runs.
template <class Copy, class Item>
void run_image_groups(int64_t n0, int64_t n1, int64_t ig, int64_t p0, int64_t p1, int64_t runs,
                      const Copy &copy, const Item &item) {
  for (int64_t g0 = n0; g0 < n1; g0 += ig) {
    const int64_t g1 = std::min(n1, g0 + ig);
    copy(g0, g1);
    for (int64_t pr = p0; pr < p1; ++pr)
      for (int64_t n = g0; n < g1; ++n)
        for (int64_t r = 0; r < runs; ++r) item(n, pr, r);
  }
}

// The blocked forward with the filters packed (wb), or packed as it goes from w (wb null): then
// work items run pair of output blocks by pair (pair-major), and each thread packs a pair's
// filters into its own buffer (2 x w_ob values: 295 KB for ResNet's 512-channel 3x3, in the L2)
// when it first reaches one of the pair's items. Threads take whole pairs where there are at
// least two a thread, so each pair is packed once; with fewer, items one at a time (a pair
// then packed by each thread that runs one of its items). The filters are read once, and no
// packed copy of all of them goes through memory: a plain forward of ResNet's 512-channel 3x3
// at 7x7, one image, had spent 1.7 of its 3.5 ms packing (AVX2 EPYC, 2 threads).
// Images a group for a packing forward's thread groups (blocked_forward), or 0 where they do
// not pay: a 1x1 (s as it runs), whose filters (pk_each values a group of outputs, groups of
// them) exceed the L2 (not split), the batch's input does too and is more than one group of
// images (each in half the L2), the groups divide evenly over the threads (or 4+ each), and the
// bytes from beyond the L2 (each thread's filters once an image group, plus the input) are
// fewer than the input once for each of a thread's groups. (A 3x3 does 9 times the work on
// each value of its input: ResNet's 3x3/2 512 onto 7x7 at 8 images, by the bytes 23 MB a
// thread against 38, took 1.085x the time so.)
template <class T>
int64_t thread_groups(const ConvShape &s, int nt, int64_t x_img, int64_t groups, int64_t pk_each,
                      bool split, bool packing) {
  const int64_t l2 = hardware().l2, xb = x_img * (int64_t)sizeof(T);
  if (split || !packing || s.kh * s.kw != 1 || nt < 2 || groups < nt ||
      (groups % nt && groups < 4 * nt))
    return 0;
  const int64_t ig = std::min<int64_t>(s.n, l2 / 2 / std::max<int64_t>(xb, 1));
  if (ig < 1 || ig >= s.n || s.n * xb <= l2) return 0;
  const int64_t share = (groups + nt - 1) / nt, w_share = share * pk_each * (int64_t)sizeof(T);
  const int64_t grouped = (s.n + ig - 1) / ig * w_share + s.n * xb;
  const int64_t whole = share * s.n * xb + w_share;
  return grouped < whole ? ig : 0;
}

template <class T>
fc_status blocked_forward(const ConvShape &s0, const T *x, const T *wb, const T *w, bool flipped,
                          const T *b, T *y, const Epilogue<T> *ep, bool finite, bool *packed_finite,
                          bool cold) {
  if (ep && ep->none()) ep = nullptr;
  const bool sub = subsampled_1x1(s0);
  const ConvShape s = sub ? subsampled_view(s0) : s0;
  const SourcePlanes from =
      sub ? SourcePlanes{s0.hw, s0.sh * s0.in_w, s0.sw} : SourcePlanes{s0.hw, s0.in_w, 1};
  const UKernels<T> &uk = ukernels<T>();
  const Geometry gm = geometry(s);
  const int64_t cbn = gm.cbn, pairs = out_blocks(s.k) / 2;
  const int64_t x_row = gm.x_row, x_cb = gm.x_cb, x_img = gm.x_img, w_ob = gm.w_ob;
  const int nt = num_threads();
  const bool packing = wb == nullptr;
  // Work items: (image, 16 or 32 output channels, run of output rows; forward_tiles).
  const ForwardTiles ft = forward_tiles<T>(s);
  const bool flat = ft.flat, narrow = ft.narrow, wide = ft.wide;
  const int64_t tp = ft.tp;
  const int64_t gp = wide ? 2 : 1;  // pairs an item
  const int64_t groups = (pairs + gp - 1) / gp;
  // (one run per row otherwise: rows never share a tile)
  const int64_t runs =
      flat || narrow
          ? std::clamp<int64_t>((fixed_items() + s.n * groups - 1) / (s.n * groups), 1, s.ho)
          : s.ho;
  const int64_t per_pair = s.n * runs;  // items of a group of pairs
  const int64_t chunk = packing && groups >= 2 * nt ? per_pair : 1;
  const int64_t pk_each = gp * 2 * w_ob;  // (a thread's packed filters: one item's)
  // Where the threads divide the batch, each copies and runs its own images (every pair of
  // them), with no barrier between: what a thread reads it wrote itself, and a plan's steps
  // before and after (gemm1x1's static image items, Winograd's static blocks) keep the same
  // images on the same thread, so activations do not cross between cores. On this 2-vCPU VM
  // that crossing is what slows a step when the host places the vCPUs on cores that share no
  // L3 (the far state, ARCHITECTURE.md): Inception v3's 7x1 128>192 at 17x17, 8 images, 4.31
  // -> 3.89 ms there (near 3.40 -> 3.32); its batch-8 plan 486 -> 441 ms far, 386 -> 381 near
  // (interleaved in one process, each round classified by bench/core_latency.c; Zen 4, 2
  // threads, session 40). A plain forward then packs all the filters in each thread: where
  // they exceed the L2 (ResNet's 3x3 512 at 7x7, 9.4 MB) that took 1.04-1.15x the time, so
  // those keep the pair-major items.
  const bool split = nt > 1 && s.n % nt == 0 &&
                     (!packing || pairs * 2 * w_ob * (int64_t)sizeof(T) <= hardware().l2);
  // Elsewhere, where the blocked input stays within twice the L2, each thread copies all of it
  // and takes a fixed run of the pair-major items: what it reads it wrote, and it writes the
  // same outputs (and packs the same filters) every call. The items had been taken dynamically
  // over one shared copy, half of which each thread then read from the other core: far apart,
  // ResNet's 3x3/2 128 at 56x56, one image, took 1.70 ms against 1.13 near; now 1.11 far, 1.085
  // near (its 3x3/2 256 onto 28x28 1.48 / 1.11-1.24 -> 1.12 / 1.08, 3x3/2 512 onto 14x14 1.43 /
  // 1.17-1.30 -> 1.22 / 1.17, Inception v3's 5x5 48>64 at 35x35 1.00 / 0.83 -> 0.82 / 0.80;
  // alternating processes, best of 15, Zen 4, 2 threads). At 8 images (the copy 4+ MB) the
  // copies and the fixed runs came out even or behind, within the noise: left dynamic.
  // Where all the filters exceed the L2 and so does the input of the whole batch (ResNet-50's
  // 1x1 2048>512 at 7x7, 8 images: 4 MB of filters, 3.2 MB of input), each group of outputs
  // read all the input again, from the L3, 8 times a thread there. Each thread instead packs
  // all its own groups' filters first, then runs its groups over the batch in groups of
  // images whose input fits half the L2, each copied as it comes (thread_groups: the
  // filters from the L3 once an image group), where a byte count says so. Alternating
  // processes, best of 8 rounds, the Xeon, 2 threads, session 55, ms before -> after, 8
  // images: 2048>512 at 7x7 4.00 -> 3.51, Inception v3's 2048>320 at 8x8 3.30 -> 2.88,
  // 1024>512 at 14x14 6.77 -> 6.62 (one image a group); a second round 2048>512 3.87 -> 3.28,
  // 2048>384 at 8x8 3.76 -> 3.33, 2048>512 at 4 images 0.95x; data gradients of ResNet-50's
  // 512>2048 at 7x7 and Inception v3's 320>2048 at 8x8 0.92x and 0.89x. The same bits: each
  // output is the same tile's sum.
  const int64_t tg_images = thread_groups<T>(s, nt, x_img, groups, pk_each, split, packing);
  const bool tg = tg_images > 0;
  // A 1x1 on flat runs whose items all take 32 whole channels reads x's own planes
  // (direct_blocked_reads_planes): no copy of the input at all.
  const bool planes = flat && wide && !sub && direct_blocked_reads_planes(s.c, s.k, s.howo);
  // (tg: each thread's copies of its image groups, all the groups' packed filters)
  const int64_t xb_size = planes ? 1
                          : tg   ? nt * tg_images * x_img
                                 : s.n * x_img,
                pk_size = !packing ? 0
                          : tg     ? groups * pk_each
                                   : nt * pk_each;
  Buffer<T> xb(xb_size), pk(pk_size);
  if (!xb.ok() || !pk.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of blocked input and filters",
                (long long)((xb_size + pk_size) * (int64_t)sizeof(T)));
  // (whether each group's filters are finite; allocated only for tg: a plan's prepared steps
  // make no heap call)
  std::vector<char> tg_finite;
  if (tg) tg_finite.assign(groups, 1);
  const bool own_x =
      !tg && !split && nt > 1 && s.n * x_img * (int64_t)sizeof(T) <= 2 * hardware().l2;
  Buffer<T> xp(own_x && !planes ? (nt - 1) * s.n * x_img : 1);  // (thread 0 copies into xb)
  if (!xp.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of blocked input",
                (long long)((nt - 1) * s.n * x_img * (int64_t)sizeof(T)));
  int bad = 0;  // (a pair's filters packed here had an infinity or a NaN)
#pragma omp parallel num_threads(nt) reduction(| : bad)
  {
    const int tid = omp_get_thread_num();
    const int64_t n0 = s.n * tid / nt, n1 = s.n * (tid + 1) / nt;
    const T *xs = planes ? x : xb.get();
    const int64_t xi = planes ? s.c * s.hw : x_img;  // (an image of xs)
    if (own_x && !planes) {  // (planes: x itself, every image in place, nothing to copy)
      T *mx = tid == 0 ? xb.get() : xp.get() + (tid - 1) * s.n * x_img;
      copy_padded_images(x, from, 0, s.n, s.c, s.in_h, s.in_w, s.ph, s.pw, gm.px, cbn, mx);
      xs = mx;
    } else if (!planes && !split && !tg) {  // (split, tg: each group of images as it comes)
      copy_padded_pixels(x, from, s.n, s.c, s.in_h, s.in_w, s.ph, s.pw, gm.px, cbn, xb.get());
    }
    T *mine = packing ? pk.get() + tid * pk_each : nullptr;
    int64_t held = -1;                      // the group whose filters `mine` holds
    bool held_finite = true;                // and whether they are all finite
    int64_t x0 = 0;                         // (the first image in xs)
    auto pack = [&](int64_t pr, T *mine) {  // group pr's filters into mine; whether all finite
      const int64_t k0 = pr * gp * 2 * kB;
      const int64_t nb = 2 * (std::min(pairs, (pr + 1) * gp) - pr * gp);  // output blocks
      bool finite = true;
      // (flipped, both blocks of an input block in turn: their 16 taps share the cache lines of
      // the layer's rows, which lie a whole row of it apart; a 1x1's data gradient at 7x7, one
      // image, had spent 37% of its time packing block by block)
      if (nb == 4 && packs_by_rows(s, flipped) && k0 + 4 * kB <= s.k)
        return uk.copy_rows32(w + k0, s.k, s.c, mine);
      for (int64_t q = 0; q < nb * cbn; ++q) {
        // (joined, the four blocks of an input block in turn too: they share cache lines)
        const bool by_cb = flipped || nb == 4;
        const int64_t h = by_cb ? q % nb : q / cbn, cb = by_cb ? q / nb : q % cbn;
        finite &= pack_group_block(s, gm, w, flipped, 2 * gp * pr, h, cb, nb == 4, mine);
      }
      return finite;
    };
    const int64_t tg0 = groups * tid / nt, tg1 = groups * (tid + 1) / nt;  // (tg: its groups)
    auto item = [&](int64_t n, int64_t pr, int64_t ru) {  // (pr: a group of gp pairs)
      const int64_t oh = s.ho * ru / runs, span = (s.ho * (ru + 1) / runs - oh) * s.wo;
      const int64_t k0 = pr * gp * 2 * kB, nk = std::min(gp * 2 * kB, s.k - k0);
      if (tg) {
        mine = pk.get() + pr * pk_each;
        held_finite = tg_finite[pr];
      } else if (packing && held != pr) {
        held = pr;
        held_finite = pack(pr, mine);
        bad |= !held_finite;
      }
      const T *wp = packing ? mine : wb + pr * gp * 2 * w_ob;
      const int64_t tiles = (span + tp - 1) / tp;
      // The 32-channel tiles add the bias, the residual and ReLU to their sums before they
      // store them (TileEpilogue): no pass over the item's outputs after, the same bits.
      // Whole plans, alternating processes, best of 5 runs in each of 8 rounds (the Xeon, 2
      // threads, session 56): ResNet-50 at one image 0.988x the time, at 8 0.987x, GoogLeNet
      // at one 0.96x, Inception v3 0.988x, ResNet-18 even.
      const bool fused = (ep || b) && nk > 2 * kB && !narrow &&
                         (!ep || ep->act == FC_ACT_NONE || ep->act == FC_ACT_RELU);
      TileEpilogue<T> te;
      te.bias = b ? b + k0 : nullptr;
      te.relu = ep && ep->act == FC_ACT_RELU;
      // One output row: only its window rows [i0, i1) inside the plane, not those in the
      // padding (zeros, each product 0: the sum is the same, bit for bit, for finite filters;
      // an infinite or NaN filter tap keeps every row, whose 0 x inf is NaN as in PyTorch).
      // Inception v3's 7x1 128>192 at 17x17 (12 of 119 window rows in the padding) took 0.91x
      // the time forward at 8 images, 0.91-0.93x for its data gradient at 1 and 8, the 5x5
      // 48>64 at 35x35 0.96x (interleaved, best of 9, session 29). Packing as it goes, a pair's
      // own filters decide, checked as they are packed (pack_block8): a pass over all of them
      // first had taken 7.7% of ResNet's 3x3 512 at 7x7, one image (perf, Zen 4, 2 threads).
      // The same for the columns: a tile at a row's end leaves out, tap column by tap column, the
      // positions whose tap lies in the padding ([cl, cr): the plane's padded columns; the
      // channel-block tiles, ukernels_impl.inc for_positions). AVX-512: L3's data gradient (a 9x9's
      // full convolution, 8 columns of padding each side of a 24-wide dy, a quarter of its products
      // zeros) took 0.80-0.81x the time at 1 and 8 images, L4's (7x7 on 10-wide) 0.82-0.84x,
      // ResNet's 3x3 512 at 7x7 0.92-0.95x forward and 0.94x data gradient, a 7x7 with padding 3 at
      // 17x17 0.92-0.96x; unpadded and 56-wide rows even; batch-1 plans: ResNet-18 19.1 -> 17.2 ms,
      // ResNet-50 45.9 -> 44.1, GoogLeNet 14.9 -> 14.3, Inception v3 and VGG-16 even (interleaved
      // in one process, best of 12-15, the Xeon, 2 threads, session 55, the host slow that hour).
      // With the AVX2 tables (blocked_tile_cols_n at a row's ends; alternating processes, best of 8
      // rounds): L3's data gradient 0.81x, L4's 0.74x, the 7x7 with padding 3 0.94x, batch-1 plans
      // of ResNet-18, ResNet-50 and GoogLeNet 0.97-0.99x (a 7x7 plane's tiles span its rows there:
      // unchanged). The same bits (test_direct_blocked.py, test_tiles_at_row_ends_*: as the input
      // padded beforehand).
      int64_t i0 = 0, i1 = s.kh;  // (input row oh*sh - ph + i in [0, in_h))
      int64_t cl = -kFar, cr = kFar;
      if (!flat && !narrow && (packing ? held_finite : finite)) {
        valid_range(oh * s.sh - s.ph, 1, s.in_h, s.kh, &i0, &i1);
        if (!rows_layout(s)) {
          cl = s.pw;
          cr = s.pw + s.in_w;
        }
      }
      const T *xr = xs + (n - x0) * xi + (planes ? oh * s.wo : oh * s.sh * x_row);
      T *yr = y + (n * s.k + k0) * s.howo + oh * s.wo;  // (the run's rows lie end to end here)
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t p0 = span * t / tiles, p1 = span * (t + 1) / tiles;
        if (narrow) {
          int64_t x_at[kMaxTile], y_at[kMaxTile];
          for (int64_t q = p0; q < p1; ++q) {
            x_at[q - p0] = q / s.wo * s.sh * x_row + q % s.wo * gm.x_step;
            y_at[q - p0] = q;
          }
          uk.blocked_tile_at(xr, x_at, x_cb, x_row, wp, w_ob, cbn, s.kh, gm.kw, yr, y_at, s.howo,
                             nk, (int)(p1 - p0));
          continue;
        }
        if (nk > 2 * kB) {  // (four blocks: joined)
          // cold (a plan's filters, packed long before): this tile's share of the next group's
          // filters is prefetched into the L2 as it goes, a line a step, so that group's first
          // row finds them there (ukernels_impl.inc, blocked_tile_zmm2)
          const T *pf = nullptr;
          int64_t pf_lines = 0;
          if (cold && pr + 1 < groups) {
            const int64_t next = 2 * (std::min(pairs, (pr + 2) * gp) - (pr + 1) * gp);
            const int64_t lines = next * w_ob * (int64_t)sizeof(T) / 64, parts = runs * tiles;
            const int64_t part = ru * tiles + t;
            const int64_t l0 = lines * part / parts, l1 = lines * (part + 1) / parts;
            pf = wb + (pr + 1) * gp * 2 * w_ob + l0 * (64 / (int64_t)sizeof(T));
            pf_lines = l1 - l0;
          }
          te.res = ep && ep->res ? ep->res + (yr - y) + p0 : nullptr;
          const TileEpilogue<T> *end = fused ? &te : nullptr;
          if (planes) {
            uk.plane_tile32(xr + p0, s.hw, wp, cbn, yr + p0, s.howo, nk, (int)(p1 - p0), pf,
                            pf_lines, end);
            continue;
          }
          uk.blocked_tile32(xr + i0 * x_row + p0 * gm.x_step, x_cb, x_row, gm.x_step,
                            wp + i0 * gm.kw * gm.ne * 4 * kB, 4 * gm.w_block, cbn, i1 - i0, gm.kw,
                            yr + p0, s.howo, nk, (int)(p1 - p0), pf, pf_lines, cl - p0 * s.sw,
                            cr - p0 * s.sw, end);
          continue;
        }
        uk.blocked_tile(xr + i0 * x_row + p0 * gm.x_step, x_cb, x_row, gm.x_step,
                        wp + i0 * gm.kw * gm.ne * kB, w_ob, gm.w_block, cbn, i1 - i0, gm.kw, gm.ne,
                        yr + p0, s.howo, nk, (int)(p1 - p0), cl - p0 * s.sw, cr - p0 * s.sw);
      }
      if ((ep || b) && !fused)
        epilogue_block(ep ? *ep : Epilogue<T>{}, y, yr - y, nk, span, s.howo, b ? b + k0 : nullptr);
    };
    if (tg) {  // (its groups' filters, then the batch in groups of tg_images images)
      for (int64_t pr = tg0; pr < tg1; ++pr) {
        tg_finite[pr] = pack(pr, pk.get() + pr * pk_each);
        bad |= !tg_finite[pr];
      }
      T *mx = planes ? nullptr : xb.get() + tid * tg_images * x_img;  // (planes: no copies)
      if (mx) xs = mx;
      run_image_groups(0, s.n, tg_images, tg0, tg1, runs, [&](int64_t g0, int64_t g1) {
        if (!mx) return;
        copy_padded_images(x + g0 * s.c * from.plane, from, 0, g1 - g0, s.c, s.in_h, s.in_w, s.ph,
                           s.pw, gm.px, cbn, mx);
        x0 = g0;
      }, item);
    } else if (split) {
      const int64_t ig = split_images(n1 - n0, x_img * (int64_t)sizeof(T),
                                      gp * 2 * w_ob * (int64_t)sizeof(T), groups);
      run_image_groups(n0, n1, ig, 0, groups, runs, [&](int64_t g0, int64_t g1) {
        if (!planes)
          copy_padded_images(x, from, g0, g1, s.c, s.in_h, s.in_w, s.ph, s.pw, gm.px, cbn,
                             xb.get());
      }, item);
    } else if (own_x) {
      const int64_t items = s.n * groups * runs;
      for (int64_t it = items * tid / nt; it < items * (tid + 1) / nt; ++it) {
        const int64_t ru = it % runs, pr = it / per_pair, n = it / runs % s.n;
        item(n, pr, ru);
      }
    } else {
#pragma omp for schedule(dynamic, chunk)
      for (int64_t it = 0; it < s.n * groups * runs; ++it) {
        const int64_t ru = it % runs;
        const int64_t pr = packing ? it / per_pair : it / runs % groups;
        const int64_t n = packing ? it / runs % s.n : it / (runs * groups);
        item(n, pr, ru);
      }
    }
  }
  if (packed_finite) *packed_finite = !bad;
  return FC_OK;
}

}  // namespace

template <class T>
fc_status direct_blocked_forward(const ConvShape &s, const T *x, const T *wb, const T *b, T *y,
                                 const Epilogue<T> *ep, bool finite, bool cold) {
  return blocked_forward(s, x, wb, (const T *)nullptr, false, b, y, ep, finite, (bool *)nullptr,
                         cold);
}

template <class T>
fc_status direct_blocked_forward_packing(const ConvShape &s, const T *x, const T *w, const T *b,
                                         T *y, bool flipped, bool *finite) {
  // (finite: each pair's filters are checked as they are packed)
  return blocked_forward(s, x, (const T *)nullptr, w, flipped, b, y, (const Epilogue<T> *)nullptr,
                         true, finite, false);
}

// ---- The data gradient of a strided convolution, on phase planes ------------------------------
//
// With stride sh the rows of dx of one phase ry (ih = sh*q + ry) take only the taps
// ky = ky0 + sh*j with ky0 = (ry + ph) mod sh, from dy's rows oh = q + dly - j (dly =
// (ry + ph) / sh): a unit-stride convolution of dy with those taps flipped, padded
// nky - 1 - dly above, over hq = ceil((in_h - ry) / sh) output rows; the same along the
// columns. So dx is sh*sw such convolutions on the blocked forward's tiles, each phase's
// filters packed as the unit-stride data gradient's (transposed and flipped), all of them in
// one pass over the weights, each tap to its phase (pack_block8_taps). One copy of dy into
// padded blocks serves every phase: padded by the most any phase needs (with rows and
// columns of zeros past dy's end, SourcePlanes' rows and cols), each phase reading it from
// its own corner. A work item is (image, 16 or 32 channels of dx, q): row q of every phase,
// so the sh rows of dx it writes are whole when it leaves them, their columns filled in turn
// by the sw column phases through the thread's scratch rows while in the L1. Phase by phase
// instead (each a whole forward), every line of dx went to memory and back sh*sw times:
// Inception v3's 3x3/2 384 at 35x35, 8 images, took 24.1 ms against 20 for the phases alone.
// Each value of dx is one tile's sum over its phase's taps and dy's channels, in the order of
// the unit-stride tiles: the bits follow the shape. A kernel narrower than the stride leaves
// phases with no taps: their values of dx are zero.
namespace {

// Along one axis: phase r's taps, the rows of padding above dy it reads, its output rows and
// the end of the rows of dy it reads. False where that padding would be negative (a padding of
// the kernel's size or more).
bool phase_axis(int64_t r, int64_t st, int64_t pad, int64_t k, int64_t in, int64_t *nk,
                int64_t *top, int64_t *outs, int64_t *end) {
  const int64_t k0 = (r + pad) % st, dl = (r + pad) / st;
  *nk = k0 < k ? (k - 1 - k0) / st + 1 : 0;
  *outs = (in - r + st - 1) / st;
  *top = *nk - 1 - dl;
  *end = *outs + dl;
  return *nk == 0 || *top >= 0;
}

// Phase (ry, rx): the unit-stride forward over dy that gives its values of dx (kh == 0 or
// kw == 0: no taps, its values zero); *bottom, *right: the end of dy's rows and columns it reads.
bool data_grad_phase(const ConvShape &s, int64_t ry, int64_t rx, ConvShape *f,
                     int64_t *bottom = nullptr, int64_t *right = nullptr) {
  int64_t nky, nkx, top, left, hq, wq, hend, wend;
  if (!phase_axis(ry, s.sh, s.ph, s.kh, s.in_h, &nky, &top, &hq, &hend) ||
      !phase_axis(rx, s.sw, s.pw, s.kw, s.in_w, &nkx, &left, &wq, &wend))
    return false;
  ConvShape &t = *f;
  t = s;
  t.c = t.cg = s.k;
  t.k = t.kg = s.c;
  t.kh = nky;
  t.kw = nkx;
  t.sh = t.sw = 1;
  t.ho = hq;
  t.wo = wq;
  t.howo = hq * wq;
  t.kk = nky * nkx;
  t.ckk = t.c * t.kk;
  t.ph = std::max<int64_t>(top, 0);
  t.pw = std::max<int64_t>(left, 0);
  t.in_h = std::max<int64_t>(hend - t.ph, 1);  // (padded symmetrically: rows to its last)
  t.in_w = std::max<int64_t>(wend - t.pw, 1);
  t.hw = t.in_h * t.in_w;
  if (bottom) *bottom = hend;
  if (right) *right = wend;
  return true;
}

constexpr int64_t kMaxPhases = 16, kMaxPhaseTaps = 64;

// The filters of every phase, from w ([k][c][kh][kw], the layer's), packed as each phase's
// forward reads them (direct_blocked_pack_filters' layout; joined: the 32-channel tiles').
template <class T>
bool pack_phase_filters(const ConvShape &s, const ConvShape *ph, const T *w, bool joined_ok,
                        T *const *wb) {
  const int64_t obn = out_blocks(s.c), cbn = blocks(s.k);
  int bad = 0;
#pragma omp parallel for num_threads(num_threads()) schedule(static) reduction(| : bad)
  for (int64_t q = 0; q < obn * cbn; ++q) {  // (input block by input block, as the flipped)
    const int64_t ob = q % obn, cb = q / obn;
    const bool joined = joined_ok && ob / 4 * 4 + 4 <= obn;
    const int64_t ob0 = joined ? ob / 4 * 4 : ob;
    T *dt[kMaxPhaseTaps];
    int64_t ds[kMaxPhaseTaps];
    for (int64_t t = 0; t < s.kk; ++t) {  // tap (ky, kx): its phase's flipped tap (a, b)
      const int64_t ky = t / s.kw, kx = t % s.kw;
      const int64_t i =
          ((ky - s.ph) % s.sh + s.sh) % s.sh * s.sw + ((kx - s.pw) % s.sw + s.sw) % s.sw;
      const ConvShape &u = ph[i];
      const int64_t a = u.kh - 1 - ky / s.sh, b = u.kw - 1 - kx / s.sw, w_block = u.kk * kB * kB;
      dt[t] = group_block(wb[i] + ob0 * cbn * w_block, joined, ob - ob0, cb, cbn, w_block, &ds[t]) +
              (a * u.kw + b) * kB * ds[t];
    }
    const int64_t no = std::min(kB, s.c - ob * kB), ne = std::min(kB, s.k - cb * kB);
    const T *src = w + (cb * kB * s.c + ob * kB) * s.kk;  // (row e: dy channel cb*8 + e)
    if (no == kB && ne == kB) {
      bad |= !ukernels<T>().pack_block8_taps(src, s.c * s.kk, s.kk, dt, ds);
      continue;
    }
    for (int64_t t = 0; t < s.kk; ++t)  // (edge blocks: zeros past the channels)
      for (int64_t e = 0; e < kB; ++e)
        for (int64_t o = 0; o < kB; ++o) {
          const T v = o < no && e < ne ? src[(e * s.c + o) * s.kk + t] : T(0);
          dt[t][e * ds[t] + o] = v;
          bad |= !std::isfinite(v);
        }
  }
  return !bad;
}

}  // namespace

bool direct_blocked_data_grad_phases_apply(const ConvShape &s) {
  if (s.g != 1 || s.dil_h != 1 || s.dil_w != 1 || (s.sh == 1 && s.sw == 1) ||
      s.sh * s.sw > kMaxPhases || s.kk > kMaxPhaseTaps || s.in_h < s.sh || s.in_w < s.sw)
    return false;
  for (int64_t ry = 0; ry < s.sh; ++ry)
    for (int64_t rx = 0; rx < s.sw; ++rx) {
      ConvShape t;
      if (!data_grad_phase(s, ry, rx, &t)) return false;
      if (t.kk > 0 && (rows_layout(t) || !direct_blocked_runs(t))) return false;
    }
  return true;
}

template <class T>
fc_status direct_blocked_backward_data_phases(const ConvShape &s, const T *dy, const T *w, T *dx,
                                              bool *finite) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t nph = s.sh * s.sw;
  ConvShape ph[kMaxPhases];
  // The copy of dy: padded by the most any phase reads above and left of it, and to the
  // furthest row and column any reads (zeros past dy's)
  ConvShape u = s;
  u.c = s.k;
  u.ph = u.pw = 0;
  int64_t bottom = 0, right = 0, size = 0, at[kMaxPhases], qmax = 0, wmax = 0;
  for (int64_t i = 0; i < nph; ++i) {
    int64_t b, r;
    data_grad_phase(s, i / s.sw, i % s.sw, &ph[i], &b, &r);
    const ConvShape &t = ph[i];
    at[i] = size;
    qmax = std::max(qmax, t.ho);
    wmax = std::max(wmax, t.wo);
    if (t.kk == 0) continue;
    size += out_blocks(s.c) * blocks(s.k) * t.kk * kB * kB;
    u.ph = std::max(u.ph, t.ph);
    u.pw = std::max(u.pw, t.pw);
    bottom = std::max(bottom, b);
    right = std::max(right, r);
  }
  u.in_h = std::max<int64_t>(bottom - u.ph, 1);
  u.in_w = std::max<int64_t>(right - u.pw, 1);
  const Geometry gm = geometry(u);
  const SourcePlanes from{s.howo, s.wo, 1, s.ho, s.wo};
  const int64_t cbn = gm.cbn, pairs = out_blocks(s.c) / 2;
  const bool wide = uk.blocked_tile32 && wide_avx512();
  const int64_t gp = wide ? 2 : 1, groups = (pairs + gp - 1) / gp, tp = uk.fbt;
  const int nt = num_threads();
  const int64_t scratch_each = gp * 2 * kB * wmax;
  Buffer<T> wb(size), xb(s.n * gm.x_img), scratch(nt * scratch_each);
  if (!wb.ok() || !xb.ok() || !scratch.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of blocked filters and dy",
                (long long)((size + s.n * gm.x_img + nt * scratch_each) * (int64_t)sizeof(T)));
  T *wbs[kMaxPhases];
  for (int64_t i = 0; i < nph; ++i) wbs[i] = wb.get() + at[i];
  *finite = pack_phase_filters(s, ph, w, wide, wbs);
  if (!*finite) return FC_OK;
  // Where the threads divide the batch, each copies its own images and runs their items (as
  // blocked_forward's split), in groups of images where dy's copy would not stay in the L2
  // (split_images; a group's filters: every phase's taps of its output blocks). Interleaved in
  // one process, best of 10, 2 threads, 8 images (session 54), ms whole -> grouped: ResNet-50's
  // 1x1/2 data gradients 1024>2048 from 14x14 11.2 -> 9.7, 512>1024 from 28x28 11.0 -> 8.3,
  // 256>512 from 56x56 14.3 -> 11.1; its 3x3/2s stay whole (even).
  const bool split = nt > 1 && s.n % nt == 0;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int64_t n0 = s.n * tid / nt, n1 = s.n * (tid + 1) / nt;
    if (!split)
      copy_padded_pixels(dy, from, s.n, u.c, u.in_h, u.in_w, u.ph, u.pw, gm.px, cbn, xb.get());
    T *scr = scratch.get() + tid * scratch_each;
    auto item = [&](int64_t n, int64_t pr, int64_t q) {
      const int64_t k0 = pr * gp * 2 * kB, nk = std::min(gp * 2 * kB, s.c - k0);
      const int64_t nb = 2 * (std::min(pairs, (pr + 1) * gp) - pr * gp);  // output blocks
      for (int64_t i = 0; i < nph; ++i) {
        const ConvShape &t = ph[i];
        if (q >= t.ho) continue;
        T *d = dx + (n * s.c + k0) * s.hw + (q * s.sh + i / s.sw) * s.in_w + i % s.sw;
        if (t.kk == 0) {  // (no taps)
          for (int64_t o = 0; o < nk; ++o)
            for (int64_t c = 0; c < t.wo; ++c) d[o * s.hw + c * s.sw] = T(0);
          continue;
        }
        const int64_t w_block = t.kk * kB * kB, w_ob = cbn * w_block;
        const T *wp = wbs[i] + pr * gp * 2 * w_ob;
        int64_t i0 = 0, i1 = t.kh;  // (window rows inside dy only: the rest multiply zeros)
        valid_range(q - t.ph, 1, s.ho, t.kh, &i0, &i1);
        const T *xr =
            xb.get() + n * gm.x_img + (q + u.ph - t.ph + i0) * gm.x_row + (u.pw - t.pw) * kB;
        const int64_t tiles = (t.wo + tp - 1) / tp;
        for (int64_t j = 0; j < tiles; ++j) {
          const int64_t p0 = t.wo * j / tiles, p1 = t.wo * (j + 1) / tiles;
          if (nb == 4) {  // (joined: the 32-channel tile)
            uk.blocked_tile32(xr + p0 * kB, gm.x_cb, gm.x_row, kB, wp + i0 * t.kw * 4 * kB * kB,
                              4 * w_block, cbn, i1 - i0, t.kw, scr + p0, t.wo, nk, (int)(p1 - p0),
                              (const T *)nullptr, 0, t.pw - p0, t.pw + s.wo - p0,
                              (const TileEpilogue<T> *)nullptr);
          } else {
            uk.blocked_tile(xr + p0 * kB, gm.x_cb, gm.x_row, kB, wp + i0 * t.kw * kB * kB, w_ob,
                            w_block, cbn, i1 - i0, t.kw, kB, scr + p0, t.wo, nk, (int)(p1 - p0),
                            t.pw - p0, t.pw + s.wo - p0);
          }
        }
        for (int64_t o = 0; o < nk; ++o) {  // (into dx's row, every sw-th column)
          T *__restrict dr = d + o * s.hw;
          const T *__restrict sr = scr + o * t.wo;
          for (int64_t c = 0; c < t.wo; ++c) dr[c * s.sw] = sr[c];
        }
      }
    };
    if (split) {  // (in groups of images, each copied as it comes: split_images)
      const int64_t ig =
          split_images(n1 - n0, gm.x_img * (int64_t)sizeof(T),
                       gp * 2 * (size / out_blocks(s.c)) * (int64_t)sizeof(T), groups);
      run_image_groups(n0, n1, ig, 0, groups, qmax, [&](int64_t g0, int64_t g1) {
        copy_padded_images(dy, from, g0, g1, u.c, u.in_h, u.in_w, u.ph, u.pw, gm.px, cbn, xb.get());
      }, item);
    } else {  // (a fixed run of the items a thread, channel group by group: each thread
              // reads its groups' filters only)
      const int64_t items = s.n * groups * qmax;
      for (int64_t it = items * tid / nt; it < items * (tid + 1) / nt; ++it)
        item(it / qmax % s.n, it / (s.n * qmax), it % qmax);
    }
  }
  return FC_OK;
}

// ---- The weight gradient on the same tiles ----------------------------------------------------
//
// dW[k][c][i][j] = the sum over images and output positions of dy[n][k][oh][ow] *
// xpad[n][c][oh*sh + i][ow*sw + j]. The tile's roles turn around: its 16 output channels are 16
// of dW's (dy copied into [n][k/8][positions][8], as the packed filters lie), its positions are
// up to bt input channels at one tap (planes of a padded copy of x, a fixed step apart), and
// its reduction runs over one output row of positions per block (ne = wo), the blocks over the
// output rows (cbn = ho). x is copied split into its sw column phases (copy_width_phases, as
// direct's strided forward), so a tap's positions along a row are consecutive values at any
// stride. Work items are (16 output channels, bt input channels): each sums its taps over the
// images in order, so the bits follow the shape, never the thread count.
//
// The items go to the threads in fixed runs, in channel-group order, and each thread copies the
// input of the groups it starts: a thread reads the copy it wrote and writes the same dW rows
// every call. They had been taken dynamically in pair order, the copy split by images and
// channels: each thread read about half the copy from the other core's cache, and dW's lines
// moved between cores from call to call. On a 2-vCPU Zen 4 VM whose vCPUs are at times far
// apart (ARCHITECTURE.md, "Two-vCPU virtual machines") that cost up to 1.45x the near time; now (2
// threads, float32, alternating processes, best of 15; near / far, ms): ResNet's 3x3/2 128 at
// 56x56 at one image 1.13 / 1.23 against 1.18 / 1.66, at 8 images 9.4-9.5 / 10.1 against
// 9.65 / 12.8; Inception v3's 1x7 128>128 at 17x17 0.327 / 0.37 against 0.354 / 0.52 (8
// images 2.55 / 2.86 against 2.60 / 3.54), its 7x1 128>192 0.437 / 0.50 against 0.463 / 0.645.
namespace {

// Columns per phase row of x's copy: every column a tap reads (ow + j/sw for ow < wo, j < kw).
int64_t wgrad_columns(const ConvShape &s) { return s.wo + (s.kw - 1) / s.sw; }

}  // namespace

bool direct_blocked_weight_grad_applies(const ConvShape &s) {
  if (s.g != 1 || s.dil_h != 1 || s.dil_w != 1) return false;
  if (ukernels<float>().blocked_tile == nullptr) return false;
  int64_t hp, plane, v;
  if (__builtin_add_overflow(s.in_h, 2 * s.ph, &hp) ||
      __builtin_mul_overflow(hp, wgrad_columns(s) * s.sw, &plane))
    return false;
  // (the copy of x near the input's size, as the forward's; no int64 overflow)
  return plane <= 4 * s.hw + 4096 && !__builtin_mul_overflow(plane, s.c, &v) &&
         !__builtin_mul_overflow(v, s.n, &v) &&
         !__builtin_mul_overflow(out_blocks(s.k) * kB, s.howo, &v) &&
         !__builtin_mul_overflow(v, s.n, &v);
}

bool direct_blocked_weight_grad_by_columns(const ConvShape &s) {
  const UKernels<float> &uk = ukernels<float>();
  return s.c < uk.bt && uk.blocked_tile_rows_at != nullptr;
}

// ---- A few input channels: dy read where it lies --------------------------------------------
//
// Under a tile of input channels (a stem's 3) dW is k x c*kh*kw sums over every output
// position, each a dot product of one dy plane with one tap's shifted (and strided) view of x.
// Here they are summed along dy's own rows (dot_rows): for each block of output rows, the
// window rows of x it reads are copied, split into their sw column phases, so a tap's values
// along a row are consecutive; each vector of a dy row (vlen positions) then feeds one
// multiply-add per tap, rows_kt rows of dy sharing each loaded x vector, the sums kept as vlen
// lanes per (output channel, tap) over a whole image and added across lanes at its end. dy is
// never copied or blocked: the blocked path copied it into [n][k/8][positions][8], one write and
// two reads of the largest tensor, which bound it where the sums are few (Inception v3's 3x3/2
// 3>32 at 8 images, 31 MB of x and dy for 38 MFLOP).
//
// Items are (image, run of output channels); each (image, channel, tap) sum is one item's, in
// the same order whatever the runs, and the images' sums are added in image order at the end:
// the bits follow the shape, never the thread count. A row's last vlen - 1 positions or fewer go
// through a zero-padded copy of dy's end of row, so the vector reads past it multiply zeros:
// exact for finite values only (0 x inf is NaN). A NaN or infinity among the values a product
// reads, the needed ones or the zero-weighted extras, leaves that sum non-finite, so no pass
// looks for them: where a sum comes out non-finite the call runs again on the blocked path,
// which has NaN and infinity as PyTorch does (an overflow gives the same infinities there).
namespace {

template <class T>
bool weight_grad_rows(const ConvShape &s, const T *dy, const T *x, T *dw, fc_status *st) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t V = uk.vlen, KT = uk.rows_kt, nv = s.wo / V, run = nv * V, rem = s.wo - run;
  const int64_t kq = (s.kw - 1) / s.sw, wq = s.wo + kq;     // (a tap's shift along its phase row)
  const int64_t wqp = (kq + (nv + 1) * V + V - 1) / V * V;  // (tail vector's reads: zeros past wq)
  const int64_t ckk = s.ckk, l2 = (int64_t)hardware().l2;
  // R output rows a block: their sums in registers over about 64 vectors of dy a row (at 2 rows
  // the stem's 7x7/2 at 8 images took 1.3x the time, Inception v3's 3x3/2 1.13x; 128-256
  // vectors no better), their x rows (span padded rows of each channel, in phases) within a
  // quarter of the L2
  auto span = [&](int64_t r) { return (r - 1) * s.sh + s.kh; };
  int64_t R = std::max<int64_t>(1, std::min<int64_t>(s.ho, 64 / (nv + (rem > 0))));
  while (R > 1 && s.c * span(R) * s.sw * wqp * (int64_t)sizeof(T) > l2 / 4) --R;
  const int64_t xrows = s.c * span(R) * s.sw;
  const int nt = num_threads();
  // kchunks runs of output channels an image: items split evenly over the threads, each item's
  // sums within half the L2 where there are enough channels
  const int64_t kgroups = (s.k + KT - 1) / KT, base = nt / std::gcd<int64_t>(s.n, nt);
  int64_t kchunks = std::min(kgroups, base);
  auto kc_max = [&] { return (kgroups + kchunks - 1) / kchunks * KT; };
  while (kchunks + base <= kgroups && kc_max() * ckk * V * (int64_t)sizeof(T) > l2 / 2)
    kchunks += base;
  const int64_t items = s.n * kchunks, kc = kc_max();
  const int64_t per_thread = xrows * wqp + R * kc * V + kc * ckk * V;
  const int64_t ptrs = ckk + kc;
  Buffer<T> part(s.n * s.k * ckk), buf(nt * per_thread);
  Buffer<const T *> pb(nt * ptrs);
  if (!part.ok() || !buf.ok() || !pb.ok()) {
    *st = fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of weight-gradient sums",
               (long long)((s.n * s.k * ckk + nt * per_thread) * (int64_t)sizeof(T) +
                           nt * ptrs * (int64_t)sizeof(T *)));
    return true;
  }
  bool bad = false;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    // xr[c][row][phase][q]: the block's padded rows; tail[r][k][V]: dy's ends of rows
    T *xr = buf.get() + tid * per_thread, *tail = xr + xrows * wqp, *acc = tail + R * kc * V;
    const T **src = pb.get() + tid * ptrs, **rows = src + ckk;
    for (int64_t c = 0, t = 0; c < s.c; ++c)
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j, ++t)
          src[t] = xr + ((c * span(R) + i) * s.sw + j % s.sw) * wqp + j / s.sw;
    // (copy_phase_row writes a row's first wq values: the zeros past them, and the tails' past
    // rem, are set once)
    std::fill(xr, xr + xrows * wqp + R * kc * V, T(0));
    bool mine_bad = false;
    for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth && !mine_bad; ++it) {
      const int64_t n = it / kchunks, q = it % kchunks;
      const int64_t g0 = kgroups * q / kchunks, g1 = kgroups * (q + 1) / kchunks;
      const int64_t k0 = g0 * KT, nk = std::min(s.k, g1 * KT) - k0, nkp = (g1 - g0) * KT;
      std::fill(acc, acc + nkp * ckk * V, T(0));
      for (int64_t oh = 0; oh < s.ho; oh += R) {
        const int64_t nr = std::min(R, s.ho - oh);
        for (int64_t c = 0; c < s.c; ++c)
          for (int64_t i = 0; i < span(nr); ++i)
            for (int64_t b = 0; b < s.sw; ++b)
              copy_phase_row(s, x + (n * s.c + c) * s.hw, b, oh * s.sh + i - s.ph, wq,
                             xr + ((c * span(R) + i) * s.sw + b) * wqp);
        // (a padding channel past the last repeats it; its sums are dropped)
        for (int64_t k = 0; k < nkp; ++k)
          rows[k] = dy + ((n * s.k + k0 + std::min(k, nk - 1)) * s.ho + oh) * s.wo;
        for (int64_t k = 0; k < nk && rem > 0; ++k)
          for (int64_t r = 0; r < nr; ++r)
            for (int64_t o = 0; o < rem; ++o)
              tail[(r * kc + k) * V + o] = rows[k][r * s.wo + run + o];
        // a group of rows_kt channels at a time, and after each a slice of the next block's dy
        // lines asked for into the L2 (for the L2's stream prefetcher, a block's rows of 32-64
        // planes are as many streams; VGG's 3x3 3>64 at 8 images 0.85x the time, the stem's
        // 7x7/2 0.92x)
        const int64_t nr2 = std::min(R, s.ho - oh - nr), groups = nkp / KT;
        const int64_t lines = (nr2 * s.wo * (int64_t)sizeof(T) + 63) / 64;
        for (int64_t g = 0; g < groups; ++g) {
          uk.dot_rows(rows + g * KT, s.wo, rem > 0 ? tail + g * KT * V : nullptr, kc * V, KT, src,
                      s.sh * s.sw * wqp, ckk, nr, run, acc + g * KT * ckk * V);
          for (int64_t k = g * nk / groups; k < (g + 1) * nk / groups && nr2 > 0; ++k) {
            const char *d = (const char *)(rows[k] + nr * s.wo);
            for (int64_t l = 0; l < lines; ++l) __builtin_prefetch(d + 64 * l, 0, 2);
          }
        }
      }
      // each sum's vlen lanes, in lane order
      for (int64_t k = 0; k < nk; ++k)
        for (int64_t t = 0; t < ckk; ++t) {
          const T *a = acc + (k * ckk + t) * V;
          T v = a[0];
          for (int64_t l = 1; l < V; ++l) v += a[l];
          part.get()[(n * s.k + k0 + k) * ckk + t] = v;
          mine_bad |= !(std::fabs(v) <= std::numeric_limits<T>::max());
        }
    }
    if (mine_bad) {
#pragma omp atomic write
      bad = true;
    }
#pragma omp barrier
    bool any_bad;
#pragma omp atomic read
    any_bad = bad;
    if (!any_bad) {
      // dW: the images' sums in image order
#pragma omp for schedule(static)
      for (int64_t k = 0; k < s.k; ++k)
        for (int64_t t = 0; t < ckk; ++t) {
          T v = part.get()[k * ckk + t];
          for (int64_t n = 1; n < s.n; ++n) v += part.get()[(n * s.k + k) * ckk + t];
          dw[k * ckk + t] = v;
        }
    }
  }
  return !bad;
}

}  // namespace

// Where a row's vectors of positions fill better than direct's few-channel tiles (the
// (channel, tap column) pairs of a window row, fbt a tile, where the table has them) or than its
// tiles of channels (bt input channels a tile, AVX2's and float64's). Measured (interleaved,
// alternate processes, best of 5-7, 2 threads, the 2-vCPU Xeon, session 45; ms along dy's
// rows / on the blocked tiles): with the AVX-512 tables Inception v3's 3x3/2 3>32 at 299x299
// 1.95 / 5.2 at 8 images and 0.27 / 0.47 at one, VGG's 3x3 3>64 at 224x224 9.0 / 24.5 and 0.93
// / 1.7, ResNet's 7x7/2 stem 8.2 / 10.5 and 0.94 / 1.1, 5x5 3>64 at 112x112 4.35 / 7.3, 5x5
// 3>32 at 32x32 (64 images) 1.84 / 2.2; not 7x7 4>64 at 56x56 (3.1 / 2.5: 28 pairs fill two
// tiles, 56 positions 3.5 vectors), L1's 11x11 3>96 (4.1 / 3.75), AlexNet's 11x11/4 (0.87-1.23
// / 0.54: four column phases of x copied per block). With the AVX2 tables (two rows of dy a
// tile): Inception v3's 3.2 / 7.5 and 0.40 / 0.65, VGG's 15.7 / 36 and 1.6 / 3.0, LeNet's 5x5
// 1>20 0.06 / 0.15; the stem 2.05 / 1.83 at one image and 5x5 3>32 at 32x32 1.03-1.2x: so
// there only 3x3 kernels and one or two channels.
bool direct_weight_grad_rows_applies(const ConvShape &s) {
  if (s.c >= kB || s.sw > 2 || s.kk > 49) return false;
  if (s.kk <= 9 || s.c <= 2) return true;
  const UKernels<float> &uk = ukernels<float>();
  if (uk.blocked_tile_rows_at == nullptr) return false;
  const int64_t v = uk.vlen, cols = s.c * s.kw, fbt = uk.fbt;
  // fill of a row's vectors >= fill of the pairs' tiles: wo / ceil(wo/v)v >= cols / ceil(cols/fbt)fbt
  return s.wo * ((cols + fbt - 1) / fbt * fbt) >= cols * ((s.wo + v - 1) / v * v);
}

template <class T>
fc_status direct_blocked_backward_weight(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  if (s.n > 0 && direct_weight_grad_rows_applies(s)) {
    fc_status st = FC_OK;
    if (weight_grad_rows(s, dy, x, dw, &st)) return st;
  }
  const int64_t wq = wgrad_columns(s), plane = (s.in_h + 2 * s.ph) * wq;  // (one phase's)
  // Under bt input channels (first layers: 3), a tile of channels at one tap leaves most of its
  // positions empty: there (where the table has blocked_tile_rows_at) a tile's positions are
  // the (channel, tap column) pairs of one window row, up to fbt of them, each read from its own
  // place. Every dW value is still one tile's sum per image, added image after image: the
  // same bits as the tiles of channels.
  const bool few = sizeof(T) == 4 && direct_blocked_weight_grad_by_columns(s);
  // On two full-rate 512-bit FMA pipes (wide_avx512) an item takes two pairs of output blocks,
  // 32 channels, and wbt input channels, for the tile that broadcasts each input value once into
  // two multiply-adds (wgrad_tile32; a last lone pair takes wgrad_tile, wbt of its positions);
  // in the few-channel path (blocked_tile_rows_at32) items of two pairs (a last lone one) by
  // window row and tile of positions (below).
  const bool wide =
      (few ? uk.blocked_tile_rows_at32 != nullptr : uk.wgrad_tile32 != nullptr) && wide_avx512();
  const int64_t gp = wide ? 2 : 1;  // pairs an item (dy's copy then in groups of four blocks)
  // (wide: the channels cut evenly into groups of up to wbt, 48 into 4 x 12 rather than
  // 14 + 14 + 14 + 6)
  const int64_t wg = (s.c + uk.wbt - 1) / std::max(uk.wbt, 1);
  const int64_t bt = wide && !few ? (s.c + wg - 1) / wg : uk.bt, kk = s.kk, ob = out_blocks(s.k),
                x_c = s.sw * plane;
  const int64_t cgroups = (s.c + bt - 1) / bt, pairs = ob / 2;
  if (s.n == 0) {
    std::fill(dw, dw + s.k * s.ckk, T(0));
    return FC_OK;
  }
  const int64_t cols = s.c * s.kw, ftiles = few ? (cols + uk.fbt - 1) / uk.fbt : 0;
  const int64_t groups = (pairs + gp - 1) / gp, items = groups * cgroups;
  // per thread: the sums of its item's taps (tiles of channels), or one tile's (few channels)
  const int nt = num_threads();
  const int64_t per_thread = few ? gp * 2 * kB * uk.fbt : kk * gp * 2 * kB * bt;
  Buffer<T> xb(s.n * s.c * x_c), db(s.n * ob * s.howo * kB), sums(nt * per_thread);
  if (!xb.ok() || !db.ok() || !sums.ok())
    return fail(FC_ENOMEM, "direct: cannot allocate %lld bytes of blocked input and gradient",
                (long long)((s.n * s.c * x_c + s.n * ob * s.howo * kB + nt * per_thread) *
                            (int64_t)sizeof(T)));
  T *X = xb.get(), *D = db.get();
  // (whether dy is all finite: each row checked by the thread that copies it, below, while it is
  // in the L1; a pass over dy of its own first, on one thread, had taken 7% of L1's weight
  // gradient at one image)
  int finite = 1;
#pragma omp parallel num_threads(nt)
  {
    // X[n][c][b][r][q] = xpad[r][q*sw + b]; off the few-channel path, each channel group by the
    // thread whose items start it (it reads it most, or only)
    const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    if (few) {
      copy_width_phases(s, x, wq, X);
    } else {
      const int64_t hp = s.in_h + 2 * s.ph;
      for (int64_t g = 0; g < cgroups; ++g) {
        const int64_t first = g * groups;  // its first item, of the thread t with
        if (first < items * tid / nth || first >= items * (tid + 1) / nth) continue;  // (t == tid)
        for (int64_t n = 0; n < s.n; ++n)
          for (int64_t c = g * bt; c < std::min(s.c, (g + 1) * bt); ++c)
            for (int64_t r = 0; r < s.sw * hp; ++r)
              copy_phase_row(s, x + (n * s.c + c) * s.hw, r / hp, r % hp - s.ph, wq,
                             X + ((n * s.c + c) * s.sw * hp + r) * wq);
      }
    }
    // dy as [n][k/8][positions][8], zero past the last output channel (the barrier: both copies
    // complete); for the 32-channel tiles each group of four blocks joined, [positions][32]
    // (as the forward's filters: two plain loads a step, not two loads and a shuffle per vector
    // from four streams; ResNet's 3x3/2 128, 256 and 512 at 8 images, Inception v3's 7x1
    // 128>192 and 5x5 48>64, L4 at 8 images, L5 at one: 0.91-0.97x the time, 0.93x in sum;
    // interleaved processes, best of 5, 6 rounds, the Xeon, session 46; the same bits)
#pragma omp for schedule(static) reduction(& : finite)
    for (int64_t q = 0; q < s.n * ob * s.ho; ++q) {  // (row r of block b of image n)
      const int64_t r = q % s.ho, b = q / s.ho % ob, n = q / (s.ho * ob), g0 = b / 4 * 4;
      const bool in_group = wide && g0 + 4 <= ob;
      T *d = D + (n * ob + (in_group ? g0 : b)) * s.howo * kB +
             (in_group ? r * s.wo * 4 * kB + (b - g0) * kB : r * s.wo * kB);
      const T *src = dy + (n * s.k + b * kB) * s.howo + r * s.wo;
      const int64_t nc = std::clamp<int64_t>(s.k - b * kB, 0, kB);
      uk.pixels8(src, s.howo, nc, s.wo, d, in_group ? 4 * kB : kB);
      for (int64_t c = 0; c < nc; ++c) finite &= all_finite(src + c * s.howo, s.wo);
    }
    T *acc = sums.get() + omp_get_thread_num() * per_thread;
    if (few) {
      // Items (a group of gp pairs, window row i, tile q), a fixed run of them each thread: a
      // tile's sums [nk][np] in acc, added into its dW values image by image and, in an image,
      // block of rows by block (below; the first sets). By runs of whole pairs (as before session
      // 53), L1's 96 channels (three groups of 32) left each thread a 32-channel item and a
      // 16-channel one, which took 1.3x the time a channel; by these items L1's weight gradient
      // took 0.96x the time at one image and at eight, AlexNet's 11x11/4 3>96 0.90-0.93x, the 7x7/2
      // stem and 3>64 even (interleaved, best of 10, the 2-vCPU Xeon, 2 threads; the same bits).
      // With runs of items image after image, not all images an item: one image's x and dy stay in
      // the L2 (AlexNet's 11x11/4 3>64 at 8 images 1.22x the time the other way).
      // Each item's rows of dy in blocks of rb (each block's tile added into dW in turn), so
      // that a group's rows of dy stay in the L2 over the thread's items (about 512 KB of them
      // as 32 channels, whatever the table and the L2: the same bits everywhere): L1's 118 rows
      // (1.8 MB of dy a group) whole had streamed from the L3 for each item; in blocks of 34
      // its weight gradient took 0.89x the time at one image, 0.92x at eight (alternating
      // processes, best of 6 rounds, the Xeon, session 55; 256 KB and 1 MB blocks the same).
      const int64_t per = s.kh * ftiles, fitems = groups * per;
      const int64_t rb = std::max<int64_t>(1, (512 << 10) / (4 * kB * (int64_t)sizeof(T) * s.wo));
      for (int64_t n = 0; n < s.n; ++n)  // (an image's x and dy stay in the L2 over its items)
        for (int64_t r0 = 0; r0 < s.ho; r0 += rb)
          for (int64_t it = fitems * tid / nth; it < fitems * (tid + 1) / nth; ++it) {
            const int64_t pr = it / per * gp, i = it % per / ftiles, q = it % ftiles;
            const int64_t g = std::min(gp, pairs - pr);  // (pairs in this item)
            const int64_t k0 = pr * 2 * kB, nk = std::min(g * 2 * kB, s.k - k0);
            int64_t oh0 = 0, oh1 = s.ho;  // (as below)
            if (finite) valid_range(i - s.ph, s.sh, s.in_h, s.ho, &oh0, &oh1);
            oh0 = std::max(oh0, r0);
            oh1 = std::max(oh0, std::min(oh1, r0 + rb));
            const int64_t p0 = cols * q / ftiles, np = cols * (q + 1) / ftiles - p0;
            int64_t x_at[kMaxTile];
            for (int64_t p = 0; p < np; ++p) {
              const int64_t c = (p0 + p) / s.kw, j = (p0 + p) % s.kw;
              x_at[p] = c * x_c + j % s.sw * plane + j / s.sw;
            }
            const int64_t dk = nk > 2 * kB ? 4 * kB : kB;  // (dy's values a position: joined)
            (nk > 2 * kB ? uk.blocked_tile_rows_at32 : uk.blocked_tile_rows_at)(
                X + n * s.c * x_c + (oh0 * s.sh + i) * wq, x_at, s.sh * wq, 0,
                D + (n * ob + 2 * pr) * s.howo * kB + oh0 * s.wo * dk, s.howo * kB, s.wo * dk,
                oh1 - oh0, 1, 1, s.wo, acc, np, nk, (int)np);
            for (int64_t p = 0; p < np; ++p) {
              const int64_t c = (p0 + p) / s.kw, j = (p0 + p) % s.kw;
              T *d = dw + k0 * s.ckk + c * kk + i * s.kw + j;
              for (int64_t o = 0; o < nk; ++o)
                d[o * s.ckk] = n + r0 == 0 ? acc[o * np + p] : d[o * s.ckk] + acc[o * np + p];
            }
          }
    } else {
      auto item = [&](int64_t pr, int64_t c0) {  // (pr: a group of gp pairs)
        const int64_t np = std::min(bt, s.c - c0), k0 = pr * gp * 2 * kB,
                      nk = std::min(gp * 2 * kB, s.k - k0);
        const int64_t hi = kk * 2 * kB * bt;  // (channels 16-31's sums in acc, past 0-15's)
        // acc[(p*kk + t)*16 + o]: the sums of channel c0 + p at tap t for output channel k0 + o
        // (o < 16: past nk, the zero-padded blocks' zeros), each image's tile added to those of
        // the images before it (the first sets them), as its accumulators hold them; dW's runs
        // written at the end through register transposes (wgrad_tile, wgrad_store). Against the
        // tile that stored [16][bt] per tap, one value at a time, and added each image's tile
        // into the sums one value at a time: the same bits in 0.85-0.95x the time at one image
        // (L4's 7x7, Inception v3's 1x7 and 7x1 at 17x17, ResNet's 3x3/2 128 at 56x56), 0.85-0.99x
        // at eight; AVX2 tables 0.75-0.92x, float64 0.70-0.92x (interleaved, best of 5-11, Zen 4,
        // 2 threads, session 35).
        for (int64_t n = 0; n < s.n; ++n) {
          const T *w = D + (n * ob + 2 * gp * pr) * s.howo * kB;
          const T *xc = X + (n * s.c + c0) * x_c;
          for (int64_t i = 0; i < s.kh; ++i) {
            // only the output rows whose window row i lies inside the plane (padded row oh*sh + i
            // in [ph, ph + in_h)): the others' products are 0, the same sums for finite dy (a
            // non-finite one keeps them all: 0 x inf is NaN, as in PyTorch)
            // (Inception v3's 7x1 128>192 at 17x17: 0.95x the time at 1 and 8 images, session 29)
            int64_t oh0 = 0, oh1 = s.ho;
            if (finite) valid_range(i - s.ph, s.sh, s.in_h, s.ho, &oh0, &oh1);
            for (int64_t j = 0; j < s.kw; ++j) {
              const T *xt = xc + j % s.sw * plane + (oh0 * s.sh + i) * wq + j / s.sw;
              if (nk > 2 * kB)  // (joined)
                uk.wgrad_tile32(xt, s.sh * wq, x_c, w + oh0 * s.wo * 4 * kB, s.wo * 4 * kB,
                                oh1 - oh0, s.wo, acc + (i * s.kw + j) * 2 * kB, kk * 2 * kB, hi,
                                n != 0, (int)np);
              else  // (in tiles of up to uk.bt channels)
                for (int64_t p0 = 0; p0 < np; p0 += uk.bt)
                  uk.wgrad_tile(xt + p0 * x_c, s.sh * wq, x_c, w + oh0 * s.wo * kB, s.howo * kB,
                                s.wo * kB, oh1 - oh0, s.wo, acc + (p0 * kk + i * s.kw + j) * 2 * kB,
                                kk * 2 * kB, n != 0, (int)std::min<int64_t>(uk.bt, np - p0));
            }
          }
        }
        // dW[k0 + o][c0 + p][t]: for each o, one run of np*kk values
        uk.wgrad_store(acc, np * kk, dw + k0 * s.ckk + c0 * kk, s.ckk, std::min(nk, 2 * kB));
        if (nk > 2 * kB)
          uk.wgrad_store(acc + hi, np * kk, dw + (k0 + 2 * kB) * s.ckk + c0 * kk, s.ckk,
                         nk - 2 * kB);
      };
      // a fixed run of the items in channel-group order (all the pairs of a group in turn), by
      // the thread count only; the thread copied those groups' input itself (above)
      for (int64_t it = items * tid / nth; it < items * (tid + 1) / nth; ++it)
        item(it % groups, it / groups * bt);
    }
  }
  return FC_OK;
}

#define FC_INSTANTIATE_BLOCKED(T)                                                                  \
  template int64_t direct_blocked_filter_size<T>(const ConvShape &);                               \
  template bool direct_blocked_pack_filters<T>(const ConvShape &, const T *, T *, bool);           \
  template fc_status direct_blocked_forward<T>(const ConvShape &, const T *, const T *, const T *, \
                                               T *, const Epilogue<T> *, bool, bool);              \
  template fc_status direct_blocked_forward_packing<T>(const ConvShape &, const T *, const T *,    \
                                                       const T *, T *, bool, bool *);              \
  template fc_status direct_blocked_backward_data_phases<T>(const ConvShape &, const T *,          \
                                                            const T *, T *, bool *);               \
  template fc_status direct_blocked_backward_weight<T>(const ConvShape &, const T *, const T *,    \
                                                       T *);
FC_INSTANTIATE_BLOCKED(float)
FC_INSTANTIATE_BLOCKED(double)
#undef FC_INSTANTIATE_BLOCKED

}  // namespace fc
