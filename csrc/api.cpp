// The C ABI's convolution entries: descriptor checks, algorithm choice, dispatch through the
// registry (registry.cpp: one row per algorithm), the registry queries.
// Everything below this file assumes a validated ConvShape.
#include <vector>

#include "blas.h"
#include "cpu/ukernels.h"
#include "internal.h"
#include "registry.h"
#include "tune.h"

namespace fc {

// Validates d and fills s. Every check names the descriptor field and its value.
fc_status make_shape(const fc_conv2d_desc *d, ConvShape *s) {
  clear_error();
  if (!d) return fail(FC_EINVAL, "desc is NULL");
  if (fc_status st = check_fields({{"n", d->n, 1},
                                   {"c", d->c, 1},
                                   {"h", d->h, 1},
                                   {"w", d->w, 1},
                                   {"k", d->k, 1},
                                   {"kh", d->kh, 1},
                                   {"kw", d->kw, 1},
                                   {"stride_h", d->stride_h, 1},
                                   {"stride_w", d->stride_w, 1},
                                   {"pad_h", d->pad_h, 0},
                                   {"pad_w", d->pad_w, 0},
                                   {"dil_h", d->dil_h, 1},
                                   {"dil_w", d->dil_w, 1},
                                   {"groups", d->groups, 1}}))
    return st;
  if (d->c % d->groups || d->k % d->groups)
    return fail(FC_EINVAL, "groups (%lld) must divide c (%lld) and k (%lld)", (long long)d->groups,
                (long long)d->c, (long long)d->k);
  // Effective kernel extent dil*(k-1)+1 against the padded input h + 2*pad.
  int64_t ext_h, ext_w, padded_h, padded_w;
  if (!mul_ok(d->dil_h, d->kh - 1, &ext_h) || !mul_ok(d->dil_w, d->kw - 1, &ext_w) ||
      !mul_ok(d->pad_h, 2, &padded_h) || !mul_ok(d->pad_w, 2, &padded_w) ||
      __builtin_add_overflow(padded_h, d->h, &padded_h) ||
      __builtin_add_overflow(padded_w, d->w, &padded_w) ||
      __builtin_add_overflow(ext_h, 1, &ext_h) || __builtin_add_overflow(ext_w, 1, &ext_w))
    return fail(FC_EOVERFLOW, "kernel extent or padded input size overflows int64");
  if (ext_h > padded_h || ext_w > padded_w)
    return fail(FC_EINVAL,
                "kernel extent %lldx%lld (kernel %lldx%lld, dilation %lldx%lld) is larger than "
                "the padded input %lldx%lld",
                (long long)ext_h, (long long)ext_w, (long long)d->kh, (long long)d->kw,
                (long long)d->dil_h, (long long)d->dil_w, (long long)padded_h, (long long)padded_w);
  s->n = d->n;
  s->c = d->c;
  s->in_h = d->h;
  s->in_w = d->w;
  s->k = d->k;
  s->kh = d->kh;
  s->kw = d->kw;
  s->sh = d->stride_h;
  s->sw = d->stride_w;
  s->ph = d->pad_h;
  s->pw = d->pad_w;
  s->dil_h = d->dil_h;
  s->dil_w = d->dil_w;
  s->g = d->groups;
  s->ho = (padded_h - ext_h) / s->sh + 1;
  s->wo = (padded_w - ext_w) / s->sw + 1;
  s->cg = s->c / s->g;
  s->kg = s->k / s->g;
  int64_t xs, ws, ys;
  if (!product_ok({s->in_h, s->in_w}, &s->hw) || !product_ok({s->ho, s->wo}, &s->howo) ||
      !product_ok({s->kh, s->kw}, &s->kk) || !product_ok({s->cg, s->kk}, &s->ckk) ||
      !product_ok({s->n, s->c, s->hw, 8}, &xs) || !product_ok({s->k, s->ckk, 8}, &ws) ||
      !product_ok({s->n, s->k, s->howo, 8}, &ys))
    return fail(FC_EOVERFLOW,
                "a buffer size overflows int64 (n=%lld c=%lld h=%lld w=%lld k=%lld kh=%lld "
                "kw=%lld)",
                (long long)s->n, (long long)s->c, (long long)s->in_h, (long long)s->in_w,
                (long long)s->k, (long long)s->kh, (long long)s->kw);
  return FC_OK;
}

// Winograd's F(4x4, 3x3) output tiles over the batch.
static int64_t winograd_tiles(const ConvShape &s) {
  return s.n * ((s.ho + 3) / 4) * ((s.wo + 3) / 4);
}

// A unit-stride, undilated 3x3 with "same" padding.
static bool same_3x3(const ConvShape &s) {
  return s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 && s.kh == 3 && s.kw == 3 &&
         s.ph == 1 && s.pw == 1;
}

// A unit-stride, undilated kernel without padding (L2-L5).
static bool unpadded_unit_stride(const ConvShape &s) {
  return s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 && s.ph == 0 && s.pw == 0;
}

// The weight gradient of one image's unpadded unit-stride 3x3 with 128+ channels each way onto
// rows 10+ wide, with direct's 32-channel weight-gradient tile (wide_avx512, wgrad_tile32): L5
// (384 at 13x13) 1.11 ms on direct against Winograd's 1.63 and im2col's 1.29 (interleaved, best
// of 5, the 2-vCPU Xeon, session 44).
static bool wide_unpadded_3x3_weight_grad(const ConvShape &s) {
  return wide_avx512() && s.n == 1 && unpadded_unit_stride(s) && s.kh == 3 && s.kw == 3 &&
         s.cg >= 128 && s.kg >= 128 && s.wo >= 10;
}

// Winograd pays once there are enough tiles to amortise transforming the filters (36*K*C
// values per call). Measured at batch 4 on Zen 4, 2 threads: F(4x4) beat im2col and direct
// 1.3-2x on every 3x3 layer from 12x12 to 112x112 planes with 16-1024 channels, but lost on
// 7x7 planes (16 tiles) with 160-512 channels (0.5-0.9x); with 64-128 channels it still won
// there. On the AVX2 EPYC (2 threads, interleaved in one process, best of 7-12):
//  - 40 tiles and more win whatever the channels (VGG's 28x28 layers at batch 1: 0.52-0.92x);
//  - 32-39 tiles win the forward with up to 1024 channels: OverFeat's 12x12 layers at batch 4
//    (36 tiles) 0.53-0.86x, ResNet's 3x3 512 on 7x7 at batch 8 (32) 0.75-0.94x, 3x3 512 on
//    24x24 at batch 1 (36) 0.61-0.77x. Their data gradient won too (0.71-0.97x), except on
//    14x14 planes at batch 2 (32 tiles of 16x16 over 14x14): 512 channels 1.22-1.30x, 128
//    1.21x slower, so it needs 36 tiles there. (Their weight gradient in F(4x4) lost to
//    im2col where a quarter of each tile is past the plane's edge: ResNet's 3x3 512 on 7x7 at
//    8 images 1.04-1.27x, session 15; it now runs F(2x2), below.)
//  - below 32 tiles, where the forward and data gradient run fused (winograd_fused: from 64x64
//    filters), against im2col, interleaved, best of 7-9, 64-1024 channels on 7x7 to 14x14
//    planes: 4-8 tiles (7x7 at batch 1-2) lost 1.2-2.5x in both directions; from 9 tiles the
//    forward won (0.46-0.92x; 12x12 at batch 2-4 0.46-0.82x), and so did the data gradient with
//    two images or more (0.60-0.91x), but not of one image (1.04-1.54x on 12x12 to 14x14).
//    Nor did one image's 9 tiles forward (11x11 outputs, L5 at batch 1): 1.19-1.44x im2col's
//    time with 256 and 384 channels in three interleaved runs (best of 12), and 1.15-1.33x in
//    each of four `fastconv bench auto` runs; so the forward needs 10 tiles (16 at batch 1:
//    ResNet's 3x3 256 and VGG's 512 on 14x14 won, 0.81-0.94x in three bench auto runs).
//    Since these run F(2x2) up to 32 tiles (winograd.cpp, forward_tile; session 28,
//    interleaved, best of 7), one image's 16 tiles (13x13 and 14x14 planes, 128-512 channels)
//    win the data gradient too, 0.73-0.90x im2col's time (1.08-1.22x PyTorch's for ResNet's
//    256 and VGG's 512), and the forward against direct's blocked forward, 0.73-0.93x (ResNet's
//    256 and VGG's 512 at 14x14, AlexNet's 384>384, 384>256 and 256>384 at 13x13, GoogLeNet's
//    160>320); 9 tiles of one image's data gradient stay off (L5 unpadded: 1.2x im2col's time);
//  - fewer filters below 32 tiles: the rule from Zen 4's 16 tiles (24-27 tiles with 512
//    channels lost the data and weight gradients, 1.1-1.3x, unfused).
// The weight gradient runs F(2x2) up to 48 F(4x4) tiles (winograd_weight_tile, with its
// measurements). Below 40 of them it beat im2col from 64 F(2x2) tiles, interleaved, best of
// 7-15 (session 20, AVX2 EPYC, 2 threads): 64-1024 channels on 7x7 planes at 4 and 8 images
// 0.65-0.98x im2col's time (ResNet's 512 at 8: 17.5 against 21.2 ms; GoogLeNet's 832>128 at 4:
// 0.65x), on 14x14 and 12x12 at 2 images 0.64-0.85x; with fewer it lost (16-32 tiles: 7x7 at
// 1-2 images 1.1-2x) or came out even (49: 14x14 and 13x13 at one image, 0.85-1.2x). With the
// transforms by rows (session 21; interleaved, best of 9-11) the 49 tiles of one 14x14 or 13x13
// image won, 0.67-0.79x im2col's time with 128-512 channels, while 16-32 (7x7 at 1-2 images)
// were mixed (0.76-1.26x, 48-832 channels; 512 at 2 images 0.94x and 1.10x): from 48 F(2x2)
// tiles. (AlexNet's 384>256 on 13x13 at one image, 0.79x, ran im2col: model_allows, the cost
// model 1.36x above; no longer asked there.) From 64 outputs in all since (session 28,
// interleaved, best of 7): L5 at one image (11x11 outputs, 36 F(2x2) tiles) 0.79x, 512 on 12x12
// 0.68x, 256 on 10x10 0.75x, 384 and 448>384 on 8x8 0.86x, 7x7 at two images with 64-512
// channels 0.81-0.85x; on 7x7 at one image (49 outputs) it lost, 1.08-1.11x, and 1024 channels
// on 6x6 4.2x.
//
// With full-rate AVX-512 (hw.h, wide_avx512: twice Zen 4's multiply-adds a cycle), one image's
// fused forward and data gradient with 128+ channels each way gives way to direct, whose tiles
// gain the whole of the wider arithmetic where the transforms gain little (the 2-vCPU Xeon with
// two 512-bit FMA pipes, 2 threads, `fastconv bench auto` and interleaved, best of 7, session
// 43): ResNet's 3x3 256 at 14x14 forward 0.70 against Winograd's 0.90 ms, data gradient 0.72
// against 0.93; VGG's 3x3 512 at 14x14 2.92 against 3.44 and 3.19 against 3.58. Their weight
// gradients stay (Winograd 0.78 against direct's 0.88 ms, 2.80 against 3.96), as does every
// case of 32 tiles and more (the 7x7 planes at 8 images: even; 28x28 at one image: 0.64x).
// Since direct's 32-channel tile (blocked_tile32, session 44) the 7x7 planes (F(4x4)'s tiles a
// quarter padding) at 2-8 images too: ResNet's 3x3 512 at 8 images forward 5.49 against
// Winograd's 6.07 ms, data gradient 5.62 against 6.12 (`fastconv bench auto`), at 4 images 2.71
// against 3.68, GoogLeNet's 192>384 and 160>320 at 8 images 0.92x and 0.92x, the data gradient
// 0.78x (interleaved, best of 7). At 16 images Winograd won (9.67 against 11.43 ms), as it does
// on 8x8 planes (Inception v3's 384 and 448>384 at 8 images, 0.94x direct's time) and on 14x14
// (ResNet's 256 at 8 images 3.99 against 5.09). Forwards from 96 input channels too (session
// 52, interleaved, best of 20, plain calls, ms direct / Winograd): GoogLeNet's 112>224 at 14x14
// 0.28 / 0.36, 96>208 0.24 / 0.25; prepared 0.28-0.33 / 0.35-0.45 and 0.25-0.31 / 0.25-0.33.
// (Their data gradients would go to im2col here, not direct: 0.34 against Winograd's 0.32.)
static bool winograd_pays(const ConvShape &s, fc_direction dir) {
  if (s.g != 1 || !winograd_supports(s)) return false;
  const int64_t tiles = winograd_tiles(s), kc = s.cg * s.kg;
  if (dir != FC_DIR_BACKWARD_WEIGHT &&
      (s.n == 1 ? tiles < 32 : s.n <= 8 && same_3x3(s) && s.wo == 7) &&
      s.cg >= (dir == FC_DIR_FORWARD ? 96 : 128) && s.kg >= 128 && wide_avx512())
    return false;
  if (dir == FC_DIR_BACKWARD_WEIGHT && wide_unpadded_3x3_weight_grad(s)) return false;
  if (dir == FC_DIR_BACKWARD_WEIGHT && tiles < 40) return s.n * s.howo >= 64;
  if (tiles >= 40) return true;
  if (tiles >= 32) {
    if (dir == FC_DIR_FORWARD) return true;
    if (dir == FC_DIR_BACKWARD_DATA && (tiles >= 36 || s.howo < 64)) return true;
  }
  if (winograd_fused(tiles, kc))
    return dir == FC_DIR_FORWARD || s.n == 1 ? tiles >= 10 : tiles >= 9;
  return kc <= 128 * 128;
}

// A plan's "same" 3x3 of one image on an even plane of 12x12 to 16x16 with 512+ channels each
// way, on full-rate AVX-512: Winograd (F(2x2) tiles, its fused forward by elements taking two
// panels a pass, tile_gemm2) rather than direct, which winograd_pays keeps for fewer than 32
// F(4x4) tiles. Prepared, bias and ReLU, interleaved, best of 15, warm / after a 64 MB pass, the
// 2-vCPU Xeon (session 52), ms Winograd / direct: VGG's 512 at 14x14 2.43 / 2.56-2.65, 512 at
// 12x12 1.78 / 2.00, at 16x16 2.83 / 3.65, 1024>512 and 512>1024 at 14x14 5.35 / 6.15 and
// 5.11 / 5.60; in VGG-16's batch-1 plan its three 14x14 steps 0.91-0.94x (8.44 -> 7.79 ms). On
// 13x13 (F(2x2) tiles over 14x14) direct stays ahead (2.49 against 2.62), with 256 channels at
// 14x14 too (ResNet's 0.65 against 0.68).
static bool winograd_prepared_even_plane(const ConvShape &s) {
  return s.n == 1 && s.g == 1 && same_3x3(s) && s.cg >= 512 && s.kg >= 512 && s.ho % 2 == 0 &&
         s.wo % 2 == 0 && std::min(s.ho, s.wo) >= 12 && std::max(s.ho, s.wo) <= 16 && wide_avx512();
}

// A unit-stride, undilated, "same"-padded kernel of 5x5 or more.
static bool same_large_kernel(const ConvShape &s) {
  return s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 && s.kh >= 5 && s.kw >= 5 &&
         2 * s.ph == s.kh - 1 && 2 * s.pw == s.kw - 1;
}

// A unit-stride, undilated, "same"-padded 1xk or kx1 kernel with k >= 7 (Inception v3's
// factorised 7x7: 1x7 and 7x1).
static bool same_long_strip(const ConvShape &s) {
  return s.sh == 1 && s.sw == 1 && s.dil_h == 1 && s.dil_w == 1 && std::min(s.kh, s.kw) == 1 &&
         std::max(s.kh, s.kw) >= 7 && 2 * s.ph == s.kh - 1 && 2 * s.pw == s.kw - 1;
}

// Both gradients of a same_long_strip on direct, with 16+ input channels, 24+ output channels
// (the transposed convolution's blocks) and rows 7+ wide (10+ for the weight gradient's
// tiles): Inception v3's 1x7 and 7x1 layers at 17x17 (128-192 channels), interleaved, best of
// 7-11, AVX2 EPYC, 2 threads (session 27), direct's time over im2col's: the data gradient
// 0.73-0.99x at 2, 4 and 8 images (one run gave 1.26x for 7x1 128>192 at 8, its rerun 0.93x),
// the weight gradient 0.74-0.98x, but 1.04x once (160>160 at 4 images); 96>64 7x1 at 33x33
// 0.71-0.79x, 64>64 at 17x17 0.68-0.75x, 32>32 at 9x9 0.54-0.65x. At one image it
// came out 0.85-1.12x there, and 1.10-1.29x in a `fastconv bench auto` run. Since the AVX2 tile
// keeps its accumulators in registers and the tiles leave out window rows in the padding
// (session 29, interleaved, best of 7) both won at one image too: the data gradient 0.85-0.96x
// im2col's time on six of those layers, the weight gradient 0.90-0.97x on seven. Its 1x3 and
// 3x1 at 8x8 (3 taps) lost, 1.0-2.4x, and stay on im2col.
static bool direct_strip_grad_pays(const ConvShape &s, fc_direction dir) {
  return same_long_strip(s) && s.cg >= 16 && s.kg >= (dir == FC_DIR_BACKWARD_DATA ? 24 : 16) &&
         s.wo >= (dir == FC_DIR_BACKWARD_DATA ? 7 : 10) &&
         (dir == FC_DIR_BACKWARD_DATA || direct_blocked_weight_grad_applies(s));
}

// The data gradient on direct (the blocked forward of the transposed convolution): a
// same_large_kernel with 16+ input channels, rows 24+ wide, or any rows from 4 images (see
// choose), or direct_strip_grad_pays. On rows under 24 (5x5 layers with 16-96 channels in and
// 32-128 out on 7x7 to 17x17 planes, GoogLeNet's and more; interleaved, best of 9-15, two runs,
// AVX2 EPYC, 2 threads) direct took 0.42-0.76x im2col's time at 4 and 8 images, except 128
// channels of gradient into 32-64 on 10x10 and 14x14 planes, even (0.72-1.10x); at one image it
// lost there (1.08-3.2x).
//
// A "same" 3x3 on rows of 7-9 at one or two images with 128+ channels each way, since its
// packing reads the filters transposed and flipped with no transposed copy first (session 41):
// direct took 0.80-0.94x im2col's time (Zen 4, 2 threads, interleaved, best of 7; ResNet's 3x3
// 512 at 7x7 1.25 against 1.51 ms, PyTorch 1.28; GoogLeNet's 128>256 to 192>384 at 7x7, Inception
// v3's 384>384 and 448>384 at 8x8; at two images ResNet's 512 0.77x, 384 at 8x8 0.85x) and
// 0.91-0.95x with FASTCONV_ISA=avx2; with 64-96 channels even. On 14x14 Winograd stays faster
// (ResNet's 256 at one image 0.96 against direct's 1.05 ms); unpadded (L4, L5: the transposed
// forward's padding is zeros it multiplies) im2col does. Without AVX2 (the generic table's
// scalar tiles) direct ran 25-29x slower.
// A "same" 3x3 at one or two images on rows 7-9 wide with 128+ channels each way, off the
// generic table: where direct's data and weight gradients both win (below and
// direct_weight_grad_pays).
static bool narrow_same_3x3(const ConvShape &s) {
  return same_3x3(s) && s.n <= 2 && s.wo >= 7 && s.wo < 10 && s.cg >= 128 && s.kg >= 128 &&
         hardware().isa != Isa::kGeneric;
}

// With full-rate AVX-512 the data gradient of one image's same 3x3 on rows up to 16 wide with 128+
// channels each way, where Winograd gives way (winograd_pays): direct 0.78x im2col's time on
// ResNet's 256 at 14x14 (0.72 against 0.92 ms), 0.92x on VGG's 512 there (the 2-vCPU Xeon). Since
// its 32-channel tile (blocked_tile32, session 44) 7x7 planes at 2-8 images as well (winograd_pays;
// ResNet's 512 at 8 images: 5.62 against Winograd's 6.12 ms), and one image's unpadded 7x7-9x9 and
// 3x3 kernels with 64+ channels in and 128+ out, the border of zeros it multiplies included
// (`fastconv bench auto`: L2 13.3 against im2col's 15.3 ms, L5 1.25 against 1.35, L4 0.85 against
// 0.88, L3 even). Since every table's tiles leave that border's products out at a row's end
// (session 55, conv/direct_blocked.cpp) those unpadded kernels on a full_avx512 core with the AVX2
// tables too (not measured on half-rate cores): with FASTCONV_ISA=avx2 on the Xeon (`fastconv bench
// auto`, best of 5) L2 21.2 against im2col's 25.1 ms, L3 8.89 against 10.1, L4 1.05 against 1.37;
// 3x3s only with the AVX-512 tables (L5 with AVX2's 2.21 against 2.09).
// Strided, on phase planes (conv/direct_blocked.cpp, direct_blocked_backward_data_phases), with
// 64+ channels each way and phases of 14+ columns from two images, 28+ at one (session 47, the
// 2-vCPU Xeon, 2 threads, best of 7; ms direct / im2col): ResNet's 3x3/2 256 at 28x28 5.85 /
// 8.07 at 8 images, 1.73 / 2.08 at 2, 0.88 / 1.00 at one; 128 at 56x56 6.10 / 9.02 and 0.77 /
// 1.09; Inception v3's 384 at 35x35 21.4 / 26.1 at 8; 64 at 112x112 8.4 / 13.7. With
// FASTCONV_ISA=avx2 0.80-0.93x at 2-8 images, 128 at 56x56 0.82x at one. Onto 7x7 phases
// (ResNet's 512 at 14x14) 0.87x at 8 images but 1.06x with AVX2's tables and 1.23-1.3x at one
// (its 9.4 MB of filters packed per call), 256 at 28x28 and 384 at 35x35 at one image even:
// im2col there. With the full-rate AVX-512 tables (wide_avx512: the 32-channel tile) from 8
// images onto 7x7 phases too (ResNet's 512 at 14x14 7.19 / 8.37 ms at 8, 13.1 / 16.4 at 16;
// 0.97-1.18x at 1-4 images; Inception v3's 192>320 at 17x17 2.31 / 2.83 at 8) and one image's
// onto 14+ wide ones (ResNet's 256 at 28x28 0.98 / 1.10, Inception v3's 384 at 35x35 3.04 /
// 3.24; its 192>320 at 17x17 1.21x).
static bool direct_strided_data_grad_pays(const ConvShape &s) {
  if ((s.sh == 1 && s.sw == 1) || s.cg < 64 || s.kg < 64 || hardware().isa == Isa::kGeneric ||
      !direct_blocked_data_grad_phases_apply(s))
    return false;
  const int64_t wq = s.in_w / s.sw;  // (a phase's columns, about)
  if (wide_avx512()) return s.n >= 8 || wq >= 14;
  return s.n >= 2 ? wq >= 14 : wq >= 28;
}

static bool direct_data_grad_pays(const ConvShape &s) {
  if (direct_strided_data_grad_pays(s)) return true;
  const bool wide = wide_avx512() && s.cg >= 128 && s.kg >= 128 && same_3x3(s) &&
                    (s.n == 1 ? s.wo >= 7 && s.wo <= 16 : s.n <= 8 && s.wo == 7);
  const bool unpadded = full_avx512_core() && s.n == 1 && unpadded_unit_stride(s) && s.kh == s.kw &&
                        s.kh >= (wide_avx512() ? 3 : 5) && s.kh <= 9 && s.cg >= 64 && s.kg >= 128 &&
                        hardware().isa != Isa::kGeneric;
  return (same_large_kernel(s) && s.cg >= 16 && (s.wo >= 24 || s.n >= 4)) ||
         ((narrow_same_3x3(s) || wide || unpadded) && direct_blocked_applies(s)) ||
         direct_strip_grad_pays(s, FC_DIR_BACKWARD_DATA);
}

// The data gradient of a unit-stride 1x1 on 7x7 or 8x8 planes at 2+ images (up to 512 positions,
// its filters packed pair by pair, transposed as they go) with 2048 channels on either side: on
// direct 0.71-0.92x gemm1x1's time (interleaved, best of 9, Zen 4, 2 threads, near, session 41:
// ResNet-50's 2048>512 at 7x7 at 8, 4 and 2 images 4.01 against 5.30 ms, 0.81x, 0.87x; 512>2048
// 0.87x at 8, 0.92x at 2; Inception v3's 2048>320 and 2048>192 at 8x8 at 8 images 0.86-0.87x,
// 2048>384 at 2 0.93x; with FASTCONV_ISA=avx2 0.84-0.94x). With 832-1280 channels it came out
// 0.90-0.99x and stays on gemm1x1, as does one image (0.66 against 0.67 ms: a 1x1's flipped
// packing reads its filters down their columns, as much work as the products there).
// On a full_avx512 core with the AVX2 tables only from 2048 channels of the gradient (the layer's
// input): ResNet-50's 512>2048 at 7x7, 8 images, took direct 1.46x gemm1x1's time on the 2-vCPU
// Xeon (6.63 against 4.53 ms), and 1.23x with the AVX-512 tables before their 32-channel tile
// (4.68 against 3.82; session 43), where 2048>512 and Inception v3's 2048>320 won (0.77-0.96x).
// With that tile (wide_avx512, blocked_tile32) 0.90x (3.33 against 3.70 ms; session 44).
//
// With that tile each group of 32 channels of dx packs as rows of the layer's weights copied
// whole (copy_rows32; before, 12% of the 512>2048's time went to packing them through 8x8
// calls), and direct took less time than gemm1x1 more widely (session 48, interleaved, best of
// 12, 2-vCPU Xeon, 2 threads): on 7x7 and 8x8 planes at any batch from 128 channels each way
// 0.67-0.92x (ResNet-50's 2048>512 at one image 0.85x, 512>2048 0.87x, GoogLeNet's 832>384
// 0.76-0.83x, 832>128 at 8 images 0.81x; at one image 1.00x), on 14x14-17x17 at one image
// 0.88-0.95x (ResNet-50's 1024>256 0.88-0.89x, 512>1024 0.88x, 2048>1024 0.91x; Inception v3's
// 768>192 0.95x), at 2-4 images 0.94-0.97x, at 8 images where dx has as many channels as dy or
// more 0.94-0.98x (fewer: 1.05-1.06x, kept). On 28x28 planes 0.99-1.26x: gemm1x1; under 128
// channels of dy (GoogLeNet's 832>48 at one image, 480>64) 1.22-1.25x.
// Where its tiles read dy's own planes (direct_blocked_reads_planes: dy's channels whole blocks
// of 8, dx's groups of 32, planes up to 14x14), at 8 images also where dx has fewer channels
// (interleaved, best of 9, the Xeon, 2 threads, session 56): ResNet-50's 512>1024 at 14x14 6.05
// against 6.53 ms, 256>1024 3.07 against 3.23; not where an image of dy passes half the L2
// (1024>2048 at 14x14 28.5 against 26.1).
static bool direct_wide_1x1_data_grad_pays(const ConvShape &s) {
  return wide_avx512() && s.c >= 128 && s.k >= 128 &&
         (s.howo <= 64 || (s.howo <= 289 && (s.n <= 4 || s.c >= s.k)) ||
          (s.n <= 8 && s.howo <= 196 && direct_blocked_reads_planes(s.k, s.c, s.howo) &&
           s.k * s.howo * 4 <= hardware().l2 / 2));
}

static bool direct_1x1_data_grad_pays(const ConvShape &s) {
  if (s.sh != 1 || s.sw != 1 || s.ph != 0 || s.pw != 0 || s.wo < 7 || !direct_blocked_applies(s))
    return false;
  return direct_wide_1x1_data_grad_pays(s) ||
         (s.howo <= 64 && s.n >= 2 && s.n * s.howo <= 512 &&
          (full_avx512_core() && !wide_avx512() ? s.c : std::max(s.c, s.k)) >= 2048 &&
          hardware().isa != Isa::kGeneric);
}

// The weight gradient on direct's blocked tiles (conv/direct_blocked.cpp): unit stride, 16+
// channels in and out, a kernel of 25+ taps (5x5 and up) and output rows 10+ wide.
// Interleaved, best of 10 (AVX2 EPYC, 2 threads), direct's time over im2col's: Inception v3's
// 5x5 48>64 at 35x35 0.65x at 8 images (10.1 ms; PyTorch 12.3) and 0.57x at 1; AlexNet's 5x5
// 64>192 at 27x27 0.72-0.76x at 4 images, 0.81-0.86x at 8; OverFeat's unpadded 5x5 96>256
// 0.87x; GoogLeNet's 5x5 layers at 4 images 0.47-0.76x (24>64 and 32>128 at 14x14, 16>32 and
// 32>96 at 28x28); L4 (10 wide) 0.68x at 8 images, 0.97-1.1x at 1. Smaller kernels stay on
// im2col (a 3x3 16>32 at 28x28 where Winograd does not run, 0.80x, is one shape, not enough to
// widen the rule), except Inception v3's 1x7 and 7x1 (direct_strip_grad_pays; they had come out
// 0.90-1.04x at 8 images and 1.0-1.26x at 1 over two earlier runs, 0.74-0.98x over ten shapes
// and four batches in session 27). It lost strided (ResNet's 3x3/2 layers 1.2-1.6x then, but see
// below; the 7x7/2 stem 1.2x), on 3 input channels (VGG's first layer: 1.6x, tiles of 3
// positions) and on narrow rows (ResNet's 3x3 512 at 7x7, batch 1, 2.1x; L5's 11 wide 1.1-1.2x;
// GoogLeNet's 5x5 48>128 at 7x7 even with im2col's image groups).
//
// A 3x3/2 on output rows 28+ wide, 16+ channels in and out, won since (session 28, interleaved,
// best of 7, AVX2 EPYC, 2 threads): ResNet's 3x3/2 128 at 56x56 0.79x im2col's time at one image,
// 0.88x at two, 0.93x at eight; 64>128 and 64 there 0.72-0.95x, 32>64 at 112x112 0.91-0.97x,
// 256 at 56x56 0.98x. Onto 17-wide rows it won with 96 channels (0.91-0.95x) but lost with 384
// (Inception v3's 3x3/2 384>384 at 35x35, 1.08-1.13x), onto 14 and 7 it lost (1.08-1.6x).
//
// Since its items run in fixed runs per thread over inputs each thread copied (session 42), it
// also wins 3x3/2 layers with 64+ channels each way onto rows 14+ wide (7+ with AVX-512), and
// narrow_same_3x3's layers where Winograd does not run (measured per state with the probe, best
// of 5 over 2.5-4 minutes, Zen 4, 2 threads; near, direct's time over im2col's, AVX-512 / AVX2):
// ResNet's 3x3/2 256 onto 14x14 at 1, 2 and 8 images 0.82-0.88x / 0.85-0.90x, its 3x3/2 512
// onto 7x7 0.86-0.94x / 0.98-1.01x (far 0.83-0.92x / 1.03-1.07x), Inception v3's 3x3/2 384>384
// onto 17x17 0.89-0.91x / 0.92-0.94x, 96>96 0.79x / 0.80x; ResNet's 3x3 512 at 7x7 at one
// image 0.85-0.87x / 0.94x (Winograd 1.6 ms against direct's 1.16-1.21), two 0.84x,
// GoogLeNet's 160>320 and 192>384 at 7x7 0.77x and 0.73-0.88x / 0.81-0.88x, Inception v3's
// 448>384 at 8x8 0.81x. Not on a full_avx512 core, whose im2col GEMM gains twice the
// multiply-adds a cycle where direct's weight-gradient tiles do not (the 2-vCPU Xeon, `bench
// auto`, session 43): ResNet's 3x3/2 512 onto 7x7 took direct 1.81x im2col's time at one image
// (2.06 against 1.14 ms) and 1.17x at eight, its 3x3 512 at 7x7, one image, 1.63x (2.01 against
// 1.23; with the AVX2 tables 1.23x, 1.86 against 1.51): there the rule keeps AVX2's 14-wide rows
// and leaves narrow_same_3x3 to im2col with either table.
static bool direct_weight_grad_pays(const ConvShape &s) {
  const bool s2_3x3 =
      s.sh == 2 && s.sw == 2 && s.kh == 3 && s.kw == 3 && s.dil_h == 1 && s.dil_w == 1;
  const bool full = full_avx512_core();
  const int64_t narrowest = hardware().isa == Isa::kAvx512 && !full ? 7 : 14;
  return (s.sh == 1 && s.sw == 1 && s.cg >= 16 && s.kg >= 16 && s.kk >= 25 && s.wo >= 10 &&
          direct_blocked_weight_grad_applies(s)) ||
         (s2_3x3 && s.cg >= 16 && s.kg >= 16 && s.wo >= 28 &&
          direct_blocked_weight_grad_applies(s)) ||
         (s2_3x3 && s.cg >= 64 && s.kg >= 64 && s.wo >= narrowest &&
          hardware().isa != Isa::kGeneric && direct_blocked_weight_grad_applies(s)) ||
         (narrow_same_3x3(s) && !full && direct_blocked_weight_grad_applies(s)) ||
         (wide_unpadded_3x3_weight_grad(s) && direct_blocked_weight_grad_applies(s)) ||
         direct_strip_grad_pays(s, FC_DIR_BACKWARD_WEIGHT);
}

// The weight gradient of under a tile of input channels on AVX-512 runs direct's tiles over
// (channel, tap column) pairs (direct_blocked_weight_grad_by_columns): with a 5x5 or larger
// kernel and 16+ output channels it took 0.70-0.93x im2col's time (ResNet's 7x7/2 stem at 1 and
// 8 images, AlexNet's 11x11/4, L1's 11x11 at one image, 5x5 3>32 at 32x32 at 8 and 64 images,
// 3>64 at 112x112, 7x7 4>64 at 56x56; interleaved, best of 5, Zen 4, 2 threads, session 33),
// while 3x3 layers on 224x224 and 299x299 planes ran 1.5-1.7x im2col's time.
static bool direct_columns_weight_grad_pays(const ConvShape &s) {
  return s.kk >= 25 && s.kg >= 16 && direct_blocked_weight_grad_applies(s) &&
         direct_blocked_weight_grad_by_columns(s);
}

// The weight gradient of a 3x3 (or smaller) kernel on under 8 input channels, along dy's rows
// (direct_weight_grad_rows_applies, conv/direct_blocked.cpp, with its measurements): dy is read
// where it lies, which bounds these products of few sums (interleaved, best of 5, the 2-vCPU
// Xeon, 2 threads, session 45; direct's time over the fastest other's, AVX-512 / AVX2 tables):
// Inception v3's 3x3/2 3>32 at 299x299 against im2col 0.50x / 0.71x at 8 images, 0.72-0.73x /
// 0.90-0.99x at 4 and 2, 0.77-0.79x / 1.03-1.09x at one; VGG's 3x3 3>64 at 224x224 against
// Winograd or im2col 0.46x / 0.70x at 8, 0.49x / 0.69x at 4, 0.83x / 1.19x at 2, 0.86x / 1.35x
// at one. So with the AVX2 tables from 4 images only (and not with the generic ones, not
// measured).
static bool direct_rows_weight_grad_pays(const ConvShape &s) {
  const Isa isa = hardware().isa;
  return s.kk <= 9 && s.kg >= 16 && direct_blocked_weight_grad_applies(s) &&
         direct_weight_grad_rows_applies(s) &&
         (isa == Isa::kAvx512 || (isa == Isa::kAvx2 && s.n >= 4));
}

// The forward on direct where rows are too narrow for its blocked forward (under 10): a
// same_large_kernel with 16+ input channels. 5x5 layers on 7x7 planes (GoogLeNet's 32>128 and
// 48>128, 16>32) took 0.63-0.81x im2col's time at 1, 4 and 8 images (as above).
static bool direct_narrow_forward_pays(const ConvShape &s) {
  return same_large_kernel(s) && s.cg >= 16 && s.wo < 10;
}

// Whole-plane FFT pays when the kernel is large next to the frequency bins each output needs: kk /
// (bins per output) >= 32, bins = nh*(nw/2+1) for the power-of-two transform sizes. Measured (batch
// 4-8, 2 threads): L1-L4 2-4x faster than im2col/direct (ratio 34-200), AlexNet's 5x5 on 27x27 (33)
// 1.2x forward; OverFeat's unpadded 5x5 on 28x28 (27) and 5x5 on 14x14 or 7x7 planes (9) slower.
// The data gradient of a few input channels is a product worth transforming for only far above
// that: L1's 3 channels (202) took 0.63-0.84x im2col's time at 4, 8 and 16 images and 1.07x at 2
// (interleaved, best of 5, AVX2 EPYC, 2 threads, session 28), an 11x11 on 96x96 (134) came out even
// at 8, one channel (L1's on 1) lost (1.4x), as did a 7x7 on 3 channels at 112x112 (74: 1.8x) and a
// 9x9 on 1 at 64x64 (40: 3.9x). At batch 1 nothing amortises the k*c filter transforms and their
// spectra (L3's 16384 of them, 71 MB), so the ratio must be 96: L3 (86) ran FFT 1.2-1.5x slower
// than direct or im2col in each of three runs at batch 1 (AVX2 EPYC, 2 threads), L2 (120) and L1
// (202) fastest as FFT there. Except the weight gradient, whose im2col path builds the whole column
// matrix (L3: 10368 x 576, 24 MB) for one product: there 80, L3's FFT ran 1.04-1.25x faster than
// im2col in three interleaved runs (best of 10) and 1.69x in a `fastconv bench auto` run on a busy
// machine (AVX2 EPYC, 2 threads).
//
// Where direct, not im2col, runs the direction when FFT does not (the blocked forward, the data
// gradient of direct_data_grad_pays), FFT must do better: a ratio of 256 at one image (192 for
// the forward, see below); from two images 64, except the forward from 8 images (32). Measured
// interleaved, best of 7 (AVX2 EPYC, 2 threads): L2's 9x9 (120) at batch 1 ran the blocked
// forward 1.15-1.22x faster than FFT (two bench auto runs and a timing), while from 2 images
// FFT took 0.56x direct's time there (L3,
// 86: 0.96x); GoogLeNet's 5x5 32>96 on 28x28 (36) at batch 4 took direct 0.84x FFT's time
// forward and 0.70x for the data gradient (16>32 there: 0.66x), AlexNet's 64>192 on 27x27 (34)
// 0.97x and 0.89x; at batch 8 FFT's filter transforms are paid back forward (direct 1.3x
// slower on both), while the data gradients stayed with direct (0.86-1.05x FFT's time).
//
// The weight gradient on direct's blocked tiles (direct_weight_grad_pays) the same way: against
// FFT, interleaved, best of 10 (AVX2 EPYC, 2 threads), direct took 0.60x FFT's time on L3 (86)
// at one image and 0.72x on L2 (120), 1.07x on L3 at two images; on L4 (34) 0.63x at two images,
// 1.0x at four; GoogLeNet's and AlexNet's 5x5 layers on 27x27 and 28x28 planes (33-36) 0.84-0.93x
// at four images, 1.23-1.32x at eight.
//
// The blocked forward at one image gives way from a ratio of 192 (was 256): L1 (202) ran FFT
// faster than the blocked forward in each of seven `fastconv bench auto` runs on a Zen 4 EPYC,
// sessions 32-35, with either table (direct 1.12-1.44x FFT's time), and on the AVX2 EPYC they
// were even over sessions 13-31 (direct 0.86-1.19x, FFT the fastest in 11 of 15 runs); L2
// (120) stays on direct, which won it there and split it with FFT on Zen 4 (0.91-1.21x).
static bool direct_is_the_alternative(const ConvShape &s, fc_direction dir) {
  return dir == FC_DIR_FORWARD         ? direct_blocked_pays(s)
         : dir == FC_DIR_BACKWARD_DATA ? direct_data_grad_pays(s)
                                       : direct_weight_grad_pays(s);
}
// A forward of under 4096 multiply-adds per output position and image (kh*kw*cg*kg): the
// transforms of a plane per input and output channel outweigh what the products save (the
// gradients keep their rules: the whole backward of the 5x5 3>8 below ran faster by FFT,
// 1.37 against 1.85 ms). Forwards at 2 threads
// (Zen 4, best of 100, session 40), FFT against im2col: LeNet's 5x5 1>6 at 32x32, 8 images,
// 133 against 27 us (it was auto's choice: a plan of LeNet-5 at batch 8 took 0.73 ms, eager 0.5);
// 5x5 3>8 at 32x32, 64 images, 4.2 against 0.57 ms; 5x5 3>16 at 32x32 5.4x, 7x7 2>16 at 64x64
// 5.6x, 9x9 1>32 at 64x64 1.24x slower. From 4700 to 6400 they came out even to 1.5x either way
// (7x7 3>32 at 32x32, 64 images, 1.03x; 7x7 4>32 at 64x64 0.82x; 5x5 3>64 at 64x64 1.5x), and
// L1's 11x11 3>96 (34848) ran 0.5-0.75x im2col's time: those stay with the rules below. A plan
// of LeNet-5 at batch 8 went from 0.73 to 0.47 ms.
//
// On a full_avx512 core not at one image: there FFT lost every direction of L1-L3 to im2col's
// or direct's doubled arithmetic (the 2-vCPU Xeon, `bench auto`, session 43: L1's forward 6.04
// against im2col's 3.10 ms, its weight gradient 6.02 against direct's 3.93, L2's data gradient
// 25.5 against direct's 15.0), and with the AVX2 tables (OpenBLAS's Haswell kernels) L1's
// forward 5.33 against 4.18, L2's data gradient 33.5 against 19.5 (its weight gradient won,
// 4.97 against im2col's 5.37); from 8 images it won as on Zen 4 (L2 and L3 0.4-0.6x direct's
// time, L1 0.95x im2col's). With direct's 32-channel tiles (wide_avx512, session 44) its forward
// and weight gradient from 8 images ask 48: L4 (34) took direct 3.69 against FFT's 4.41 ms at 8
// images forward, 4.22 against 4.88 for the weight gradient (L3, 86, and L2, 120, stay: FFT
// 0.52-0.61x direct's time); and the data gradient of under 16 channels asks 256: L1's (202) at 8
// images took FFT 1.10-1.39x im2col's time in three runs (with the AVX2 tables FFT won, 0.89x).
// With the AVX2 tables on such a core L4's forward at 8 images asks 48 too: direct took 0.91x,
// 0.89x and 0.79x FFT's time in three `bench auto` runs (sessions 48, 49 and 53; 7.20 against
// 9.13 ms in the last, PyTorch 7.70); its weight gradient stays (0.88-1.14x).
// With the AVX2 tables one image's weight gradient keeps the ratio rule: L1's took FFT 0.92-0.95x
// im2col's time in three sessions' runs (4.97 / 5.37 ms in session 43, 5.54 / 5.99 in bench auto
// in session 49, where im2col's 0.88x PyTorch was the run's lowest; 5.97 / 6.31 interleaved, best
// of 10, session 53).
static bool fft_pays(const ConvShape &s, fc_direction dir) {
  if (s.g != 1 || s.kk < 25 || !fft_supports(s)) return false;
  if (s.n == 1 && full_avx512_core() && (wide_avx512() || dir != FC_DIR_BACKWARD_WEIGHT))
    return false;
  if (dir == FC_DIR_FORWARD && s.kk * s.cg * s.kg < 4096) return false;
  // (the data gradient of under 16 channels: 3+ channels, 4+ images and a ratio of 160; below)
  const bool few_channels = dir == FC_DIR_BACKWARD_DATA && s.cg < 16;
  if (few_channels && (s.cg < 3 || s.n < 4)) return false;
  int64_t ratio = s.n > 1 ? 32 : dir == FC_DIR_BACKWARD_WEIGHT ? 80 : 96;
  const bool wide_eight = wide_avx512() || (dir == FC_DIR_FORWARD && full_avx512_core());
  if (direct_is_the_alternative(s, dir))
    ratio = s.n == 1                                  ? (dir == FC_DIR_FORWARD ? 192 : 256)
            : dir != FC_DIR_BACKWARD_DATA && s.n >= 8 ? (wide_eight ? 48 : 32)
                                                      : 64;
  if (few_channels) ratio = std::max<int64_t>(ratio, wide_avx512() ? 256 : 160);
  return s.kk * s.howo >= ratio * fft_bins(s);
}

// The transform algorithms (Winograd, FFT) only where the registry's cost model does not put
// them more than kModelMargin above the im2col GEMM path. The model carries what the rules
// above do not: few input channels (VGG-16's 3-channel first layer: Winograd's transforms
// outweigh its saving, 3.2x slower than im2col at batch 1 on an AVX2 EPYC, 2 threads) and small
// batches, whose filter transforms are not amortised (L4 at batch 1: FFT 2.7x slower). The
// margin keeps AlexNet's 5x5, where the model is 5% off and FFT measured 1.2x faster.
constexpr double kModelMargin = 1.25;
// Not for Winograd's weight gradient under 40 F(4x4) tiles with 16+ channels in and out
// (F(2x2): the model prices its reduction over few tiles 1.5x im2col's cost where it measured
// 0.68-0.86x, winograd_pays).
static bool model_allows(const ConvShape &s, fc_algo a, fc_direction dir) {
  if (!im2col_supports(s)) return true;
  if (a == FC_ALGO_WINOGRAD && dir == FC_DIR_BACKWARD_WEIGHT && !phases_apply(s) &&
      winograd_tiles(s) < 40 && s.cg >= 16 && s.kg >= 16)
    return true;
  return algo_row(a)->cost(s, dir) <= kModelMargin * algo_row(FC_ALGO_IM2COL)->cost(s, dir);
}

// The forward on im2col's implicit columns ahead of every direct forward: a reduction of under
// 200 terms, not a tiny one (choose's notes below).
static bool implicit_forward_pays(const ConvShape &s) {
  return s.ckk < 200 && s.ckk * s.kg >= 64 && implicit_columns_pay(s);
}

// FC_ALGO_AUTO, per direction, from `fastconv bench layers/shapes` runs and per-shape timings
// on Zen 4 (2 threads, AVX-512, batch 4-8) next to PyTorch (oneDNN):
//  - every output position seeing every input element (a 3x3 "same" convolution on a 1x1 or
//    2x2 plane, a 3x3/2 on a 2x2 one, fc_to_conv's 7x7 on 7x7): one GEMM over the batch on the
//    expanded kernel (linear). The per-image paths run GEMMs of 1-4 columns there and Winograd
//    transforms tiles of padding: ResNet's 3x3 512>512 on 1x1 planes at batch 64 took 23-33 ms
//    a direction (AVX2 EPYC, 2 threads), 0.5-1.1 ms as linear;
//  - groups == c > 1: the depthwise kernel (a GEMM per channel has no reduction to speak of);
//  - 1x1: straight GEMM on the input (gemm1x1), every direction, but the forward of 512+
//    outputs on 7x7 planes at 2-10 images and a strided one of 1-2 images with up to 512 input
//    channels (direct's blocked forward: direct_blocked_1x1_pays);
//  - 3x3 at unit stride (dilated ones through their phase planes): Winograd where it pays and
//    model_allows;
//  - large kernels at unit stride: whole-plane FFT where it pays (fft_pays) and model_allows;
//  - forward with unit stride along rows: the direct register tiles when rows are wide
//    (wo >= 24: L2 0.86-0.91x PyTorch against im2col's 0.73x, dilated 3x3 at 64x64) or the
//    reduction is short (cg*kh*kw < 512: L1's 3-channel 11x11 needs no column matrix), but not
//    when it is tiny (cg*kh*kw < 64: VGG-16's 3-channel 3x3 ran 1.06-1.13x slower direct than
//    as im2col at batch 1 and 8, AVX2 EPYC, 2 threads: 27 taps leave the tiles little to reuse);
//    narrow rows (L4/L5, 10-13 wide) run better as im2col GEMMs;
//  - the weight gradient of a unit-stride 5x5 or larger kernel with 16+ channels in and out on
//    rows 10+ wide: direct's blocked tiles (direct_weight_grad_pays: 0.5-0.87x im2col's time);
//  - the data and weight gradients otherwise: im2col + GEMM (the direct data gradient, a
//    transposed convolution on the same tiles, measured 0.5-0.7x of it), except the data
//    gradient of a unit-stride convolution whose forward takes the direct tiles for its wide
//    rows, with a 5x5 or larger "same"-padded kernel and enough input channels to fill the
//    tiles' output channels (Inception's 5x5 48>64 at 35x35: direct 0.66-0.9x im2col's time
//    over four runs, batch 1 and 8; col2im scatters 25 taps per input), on narrower rows too
//    from 4 images (direct_data_grad_pays); and both gradients of Inception's "same"-padded
//    1x7 and 7x1 (direct_strip_grad_pays). Unpadded, the transposed
//    convolution pads dy by k-1 a side, and the tiles' work on that border lost: L3's 9x9 data
//    gradient ran 1.6x slower direct;
//  - tiny channel counts where a GEMM has nothing to amortise its packing: direct;
//  - unit-stride forward with one group, 24+ input channels and output rows 10+ wide where
//    neither Winograd nor FFT pays: direct's blocked forward (8-channel blocks, no column
//    matrix; direct_blocked_pays, conv/direct_blocked.cpp: 1x7/7x1, 5x5, L3/L4 1.0-1.5x faster
//    than im2col with the filters packed per call);
//  - forward with under 8 input channels and long rows of taps (c*kw 15+ strided, 28+ at unit
//    stride: the 7x7/2 and 11x11/4 stems): the same blocked forward on rows of pixels with their
//    channels interleaved (direct_blocked_in_rows: 0.64-0.9x im2col's time).
//  - but before all of the direct forwards, a reduction of under 200 terms over up to 16 input
//    channels where im2col runs it on implicit columns (implicit_columns_pay, conv/im2col.cpp):
//    im2col. Interleaved, best of 5-7 (AVX2 EPYC, 2 threads, session 29), against the direct
//    forward auto had chosen: ResNet's 7x7/2 stem 0.86-0.89x the time at 1 and 8 images, a
//    7x7/2 3>96 at 224x224 0.93x, 3x3 8>32 and 16>32 at 112x112 0.87-0.89x, a 3x3 3>16 at
//    32x32 (64 images) 0.91x; 3x3 16>16 at 56x56 even, 16>32 at 14x14 1.03x. From 200 terms
//    direct stayed ahead: a 5x5 over 8 channels (200) at 14x14 and 28x28 1.04-1.06x slower
//    implicit, 16>48 at 28x28 (400) 1.19x, AlexNet's 11x11/4 (363) 1.06-1.1x.
// (Inception's 3x3 32>32 at 149x149 below 4 images once ran direct's blocked forward, 1.15-1.45x
// faster than Winograd; since Winograd's AVX2 transforms work by rows (session 21) Winograd
// takes 0.68-0.88x direct's time there at 1 and 2 images, forward and data gradient, and the
// exception is gone.)
// (prepared: the forward of fc_conv2d_choose_prepared, its filters packed or transformed once)
static fc_algo choose(const ConvShape &s, fc_direction dir, bool prepared = false) {
  if (linear_supports(s)) return FC_ALGO_LINEAR;
  // (groups > 1: a single-channel convolution is a plain one, e.g. LeNet's C1)
  if (s.g > 1 && depthwise_supports(s)) return FC_ALGO_DEPTHWISE;
  if (gemm1x1_supports(s))  // (but direct's blocked forward on small planes: direct_blocked.cpp)
    return (dir == FC_DIR_FORWARD && direct_blocked_1x1_pays(s, prepared)) ||
                   (dir == FC_DIR_BACKWARD_DATA && direct_1x1_data_grad_pays(s))
               ? FC_ALGO_DIRECT
               : FC_ALGO_GEMM1X1;
  if (dir == FC_DIR_BACKWARD_WEIGHT && direct_rows_weight_grad_pays(s)) return FC_ALGO_DIRECT;
  if (prepared && dir == FC_DIR_FORWARD && winograd_prepared_even_plane(s)) return FC_ALGO_WINOGRAD;
  if ((phases_apply(s) ? phases_fit(s) && winograd_pays(phase_shape(s), dir)
                       : winograd_pays(s, dir)) &&
      model_allows(s, FC_ALGO_WINOGRAD, dir))
    return FC_ALGO_WINOGRAD;
  if (fft_pays(s, dir) && model_allows(s, FC_ALGO_FFT, dir)) return FC_ALGO_FFT;
  if (!im2col_supports(s)) return FC_ALGO_DIRECT;
  if (dir == FC_DIR_FORWARD && implicit_forward_pays(s)) return FC_ALGO_IM2COL;
  // (with full-rate AVX-512 tables a unit-stride forward of under 8 input channels, whose rows
  // layout gets no 32-channel tile, stays on im2col's GEMM: L1's 11x11 3>96, one image, 2.82
  // against direct's 3.29 ms; session 44)
  if (dir == FC_DIR_FORWARD && s.sh == 1 && s.sw == 1 && s.cg < 8 && wide_avx512())
    return FC_ALGO_IM2COL;
  // (dilation 4 spreads a tile's rows over more cache lines than im2col's copy costs)
  if (dir == FC_DIR_FORWARD && s.sw == 1 && s.ckk >= 64 &&
      ((s.wo >= 24 && s.dil_h <= 2 && s.dil_w <= 2) || s.ckk < 512))
    return FC_ALGO_DIRECT;
  if (dir != FC_DIR_BACKWARD_WEIGHT && s.ckk * s.kg < 64) return FC_ALGO_DIRECT;
  // (direct's blocked forward: conv/direct_blocked.cpp, with its measurements)
  if (dir == FC_DIR_FORWARD && (direct_blocked_pays(s) || direct_narrow_forward_pays(s)))
    return FC_ALGO_DIRECT;
  if (dir == FC_DIR_BACKWARD_DATA && direct_data_grad_pays(s)) return FC_ALGO_DIRECT;
  if (dir == FC_DIR_BACKWARD_WEIGHT &&
      (direct_weight_grad_pays(s) || direct_columns_weight_grad_pays(s)))
    return FC_ALGO_DIRECT;
  return FC_ALGO_IM2COL;
}

static fc_status check_algo(fc_algo a) {
  if ((int)a < 0 || (int)a >= FC_ALGO_COUNT_)
    return fail(FC_EINVAL, "algo %d is not an fc_algo", (int)a);
  return FC_OK;
}

static fc_status check_direction(fc_direction dir) {
  if ((int)dir < 0 || (int)dir > FC_DIR_BACKWARD_WEIGHT)
    return fail(FC_EINVAL, "dir %d is not an fc_direction", (int)dir);
  return FC_OK;
}

// Whether row (a row, not nullptr) has an entry point for dir that can run s.
static bool row_runs(const AlgoRow *row, const ConvShape &s, fc_direction dir) {
  return row && (row->directions & dir_bit(dir)) && !row->why_not(s);
}

// The row that runs direction dir of s for algorithm a (FC_ALGO_AUTO: choose's), or the
// status: FC_EINVAL for a value that is no fc_algo, FC_EUNSUPPORTED with the row's reason.
static fc_status resolve(const ConvShape &s, fc_algo a, fc_direction dir, const AlgoRow **out) {
  if (fc_status st = check_algo(a)) return st;
  if (a == FC_ALGO_AUTO) a = choose(s, dir);
  const AlgoRow *row = algo_row(a);
  if (!(row->directions & dir_bit(dir)))
    return fail(FC_EUNSUPPORTED, "%s has no %s entry point", row->name,
                dir == FC_DIR_FORWARD         ? "forward"
                : dir == FC_DIR_BACKWARD_DATA ? "data gradient"
                                              : "weight gradient");
  if (const char *why = row->why_not(s))
    return fail(FC_EUNSUPPORTED, "%s cannot run this descriptor: %s", row->name, why);
  *out = row;
  return FC_OK;
}

// Resolves a (FC_ALGO_AUTO: the heuristic, or with autotuning on the measured choice) and runs
// its row through run(row). Tuning times the candidates (every row that can run the call but
// the reference twin, with the row's cost estimate) through `run` on the call's own buffers,
// then runs the winner, so the outputs are the winner's.
template <class Run>
static fc_status dispatch(const ConvShape &s, fc_algo a, fc_direction dir, fc_dtype t, Run &&run,
                          bool tunable = true) {
  const AlgoRow *r;
  if (fc_status st = resolve(s, a, dir, &r)) return st;
  if (a == FC_ALGO_AUTO && tunable && autotune_on()) {
    std::vector<TuneCandidate> candidates;
    for (int i = 1; i < FC_ALGO_COUNT_; ++i) {
      const AlgoRow *c = algo_row((fc_algo)i);
      // (im2col on a 1x1 kernel is gemm1x1's code: timing it twice only lets noise choose)
      const bool same_as_gemm1x1 = c->id == FC_ALGO_IM2COL && gemm1x1_supports(s);
      if (c->id != FC_ALGO_REFERENCE && !same_as_gemm1x1 && row_runs(c, s, dir))
        candidates.push_back({c->id, c->cost(s, dir)});
    }
    fc_status st;
    const fc_algo tuned = tuned_algo(tune_key(s, dir, t, num_threads()), candidates, r->id,
                                     [&](fc_algo c) { return run(*algo_row(c)); }, &st);
    if (st != FC_OK) return st;
    // (an imported table may name one that cannot)
    if (row_runs(algo_row(tuned), s, dir)) r = algo_row(tuned);
  }
  return run(*r);
}

// The row's entry points for dtype T; a phase_planes row sees a dilated unit-stride
// convolution as an undilated one over the input's phase planes (conv/phases.cpp).
template <class T>
static fc_status forward(const ConvShape &s, const AlgoRow &row, const void *x, const void *w,
                         const void *b, void *y) {
  auto X = static_cast<const T *>(x);
  auto W = static_cast<const T *>(w);
  auto B = static_cast<const T *>(b);
  auto Y = static_cast<T *>(y);
  const auto f = entries<T>(row).forward;
  return row.phase_planes && phases_apply(s) ? phases_forward(s, X, W, B, Y, f) : f(s, X, W, B, Y);
}

template <class T>
static fc_status backward_data(const ConvShape &s, const AlgoRow &row, const void *dy,
                               const void *w, void *dx) {
  auto DY = static_cast<const T *>(dy);
  auto W = static_cast<const T *>(w);
  auto DX = static_cast<T *>(dx);
  const auto f = entries<T>(row).backward_data;
  return row.phase_planes && phases_apply(s) ? phases_backward_data(s, DY, W, DX, f)
                                             : f(s, DY, W, DX);
}

// dx += the data gradient: the row's own adding entry where it has one (and no phase planes
// stand between), else the gradient into a temporary, added in one threaded pass.
template <class T>
static fc_status backward_data_into(const ConvShape &s, const AlgoRow &row, const void *dy,
                                    const void *w, void *dx) {
  const auto into = entries<T>(row).backward_data_into;
  if (into && !(row.phase_planes && phases_apply(s)))
    return into(s, static_cast<const T *>(dy), static_cast<const T *>(w), static_cast<T *>(dx));
  const int64_t count = s.n * s.c * s.hw;  // (make_shape checked the product)
  Buffer<T> tmp(count);
  if (!tmp.ok())
    return fail(FC_ENOMEM, "cannot allocate %lld bytes for the data gradient",
                (long long)(count * (int64_t)sizeof(T)));
  if (fc_status st = backward_data<T>(s, row, dy, w, tmp.get())) return st;
  add_inplace(count, static_cast<T *>(dx), tmp.get());
  return FC_OK;
}

template <class T>
static fc_status backward_weight(const ConvShape &s, const AlgoRow &row, const void *dy,
                                 const void *x, void *dw, void *db) {
  auto DY = static_cast<const T *>(dy);
  auto X = static_cast<const T *>(x);
  auto DW = static_cast<T *>(dw);
  auto DB = static_cast<T *>(db);
  if (db) bias_grad(s, DY, DB);
  if (!dw) return FC_OK;
  const auto f = entries<T>(row).backward_weight;
  return row.phase_planes && phases_apply(s) ? phases_backward_weight(s, DY, X, DW, f)
                                             : f(s, DY, X, DW);
}

// dy summed over images and positions, per output channel, in double. One thread sums a
// channel, in one fixed order whatever the thread count: 8 running sums take a plane's
// positions in turn (the tail continues from the first), and are added pairwise at the end.
// A single running sum waited an add's latency per element (no reassociation without
// -ffast-math): 1.6% of GoogLeNet's batch-4 training step; the lanes vectorize.
template <class T>
void bias_grad(const ConvShape &s, const T *dy, T *db) {
  constexpr int kLanes = 8;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t k = 0; k < s.k; ++k) {
    double lane[kLanes] = {};
    for (int64_t n = 0; n < s.n; ++n) {
      const T *p = dy + (n * s.k + k) * s.howo;
      int64_t i = 0;
      for (; i + kLanes <= s.howo; i += kLanes) {
#pragma omp simd
        for (int j = 0; j < kLanes; ++j) lane[j] += double(p[i + j]);
      }
      for (int j = 0; i + j < s.howo; ++j) lane[j] += double(p[i + j]);
    }
    db[k] = T(((lane[0] + lane[4]) + (lane[2] + lane[6])) +
              ((lane[1] + lane[5]) + (lane[3] + lane[7])));
  }
}
template void bias_grad<float>(const ConvShape &, const float *, float *);
template void bias_grad<double>(const ConvShape &, const double *, double *);

template <class T>
void add_bias(const ConvShape &s, const T *bias, T *y) {
  if (!bias) return;
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t nk = 0; nk < s.n * s.k; ++nk) {
    T *p = y + nk * s.howo;
    const T v = bias[nk % s.k];
    for (int64_t i = 0; i < s.howo; ++i) p[i] += v;
  }
}
template void add_bias<float>(const ConvShape &, const float *, float *);
template void add_bias<double>(const ConvShape &, const double *, double *);

}  // namespace fc

using namespace fc;

// Multiply-adds of one direction of a convolution (saturating: only compared to a threshold).
static int64_t conv_work(const ConvShape &s) {
  int64_t w;
  if (__builtin_mul_overflow(s.n * s.k, s.howo, &w) || __builtin_mul_overflow(w, s.ckk, &w))
    return INT64_MAX;
  return w;
}

#define FC_PROLOGUE(d, t)                            \
  ConvShape s;                                       \
  if (fc_status st_ = make_shape(d, &s)) return st_; \
  if (fc_status st_ = check_dtype(t)) return st_;    \
  blas_init_single_threaded();                       \
  SmallWorkGuard small_(conv_work(s));

// fc_conv2d_backward_data (dx =) and fc_conv2d_backward_data_into (dx +=, into).
static fc_status backward_data_entry(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *dy,
                                     const void *w, void *dx, bool into) {
  FC_PROLOGUE(d, t)
  if (!dy || !w || !dx) return fail(FC_EINVAL, "dy, w and dx must not be NULL");
  if (fc_status st = check_algo(a)) return st;
  return run_entry([&, t, a, into] {
    return dispatch(s, a, FC_DIR_BACKWARD_DATA, t, [&, t, into](const AlgoRow &r) {
      if (into)
        return t == FC_F32 ? backward_data_into<float>(s, r, dy, w, dx)
                           : backward_data_into<double>(s, r, dy, w, dx);
      return t == FC_F32 ? backward_data<float>(s, r, dy, w, dx)
                         : backward_data<double>(s, r, dy, w, dx);
    });
  });
}

extern "C" {

fc_status fc_conv2d_output_size(const fc_conv2d_desc *d, int64_t *ho, int64_t *wo) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (!ho || !wo) return fail(FC_EINVAL, "ho and wo must not be NULL");
  *ho = s.ho;
  *wo = s.wo;
  return FC_OK;
}

fc_status fc_conv2d_supports(const fc_conv2d_desc *d, fc_algo a) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (a == FC_ALGO_AUTO) return FC_OK;
  const AlgoRow *r;
  return resolve(s, a, FC_DIR_FORWARD, &r);
}

fc_status fc_conv2d_choose(const fc_conv2d_desc *d, fc_algo *a) {
  return fc_conv2d_choose_for(d, FC_DIR_FORWARD, a);
}

fc_status fc_conv2d_choose_prepared(const fc_conv2d_desc *d, fc_algo *a) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (!a) return fail(FC_EINVAL, "a is NULL");
  // (the blocked direct forward without its per-call filter packing: conv/direct_blocked.cpp;
  // strided only over few positions; 1x1 layers by direct_blocked_1x1_pays's prepared rules)
  *a = choose(s, FC_DIR_FORWARD, true);
  if (*a == FC_ALGO_IM2COL && !implicit_forward_pays(s) && direct_blocked_pays(s, true))
    *a = FC_ALGO_DIRECT;
  return FC_OK;
}

fc_status fc_conv2d_choose_for(const fc_conv2d_desc *d, fc_direction dir, fc_algo *a) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (!a) return fail(FC_EINVAL, "a is NULL");
  if (fc_status st = check_direction(dir)) return st;
  *a = choose(s, dir);
  return FC_OK;
}

fc_status fc_conv2d_tuned(const fc_conv2d_desc *d, fc_direction dir, fc_dtype t, fc_algo *a) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (fc_status st = check_dtype(t)) return st;
  if (!a) return fail(FC_EINVAL, "a is NULL");
  if (fc_status st = check_direction(dir)) return st;
  SmallWorkGuard small_(conv_work(s));  // (as the call itself would run)
  if (!tuned_lookup(tune_key(s, dir, t, num_threads()), a))
    return fail(FC_EINVAL, "no measured choice for this call (autotuning %s)",
                autotune_on() ? "has not met it yet" : "is off");
  return FC_OK;
}

fc_status fc_conv2d_forward(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *x,
                            const void *w, const void *bias_or_null, void *y) {
  FC_PROLOGUE(d, t)
  if (!x || !w || !y) return fail(FC_EINVAL, "x, w and y must not be NULL");
  if (fc_status st = check_algo(a)) return st;
  return run_entry([&, t, a] {
    return dispatch(s, a, FC_DIR_FORWARD, t, [&, t](const AlgoRow &r) {
      return t == FC_F32 ? forward<float>(s, r, x, w, bias_or_null, y)
                         : forward<double>(s, r, x, w, bias_or_null, y);
    });
  });
}

fc_status fc_conv2d_backward_data(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *dy,
                                  const void *w, void *dx) {
  return backward_data_entry(d, t, a, dy, w, dx, false);
}

fc_status fc_conv2d_backward_data_into(const fc_conv2d_desc *d, fc_dtype t, fc_algo a,
                                       const void *dy, const void *w, void *dx) {
  return backward_data_entry(d, t, a, dy, w, dx, true);
}

fc_status fc_conv2d_backward_weight(const fc_conv2d_desc *d, fc_dtype t, fc_algo a, const void *dy,
                                    const void *x, void *dw, void *dbias_or_null) {
  FC_PROLOGUE(d, t)
  if (!dy || !x) return fail(FC_EINVAL, "dy and x must not be NULL");
  if (!dw && !dbias_or_null)
    return fail(FC_EINVAL, "dw and dbias are both NULL: nothing to compute");
  if (fc_status st = check_algo(a)) return st;
  return run_entry([&, t, a] {
    // (the bias gradient alone has no algorithm to tune)
    return dispatch(s, a, FC_DIR_BACKWARD_WEIGHT, t, [&, t](const AlgoRow &r) {
      return t == FC_F32 ? backward_weight<float>(s, r, dy, x, dw, dbias_or_null)
                         : backward_weight<double>(s, r, dy, x, dw, dbias_or_null);
    }, dw != nullptr);
  });
}

const char *fc_status_string(fc_status s) {
  switch (s) {
    case FC_OK: return "ok";
    case FC_EINVAL: return "invalid argument";
    case FC_ENOMEM: return "out of memory";
    case FC_EUNSUPPORTED: return "algorithm does not support these arguments";
    case FC_EOVERFLOW: return "size overflow";
    default: return "unknown status";
  }
}

const char *fc_isa(void) { return isa_name(); }

const char *fc_algo_name(fc_algo a) {
  if (a == FC_ALGO_AUTO) return "auto";
  const AlgoRow *row = algo_row(a);
  return row ? row->name : nullptr;
}

int fc_algo_count(void) { return FC_ALGO_COUNT_; }

unsigned fc_algo_flags(fc_algo a) {
  const AlgoRow *row = algo_row(a);
  if (!row) return 0;
  unsigned f = 0;
  if (row->directions & dir_bit(FC_DIR_FORWARD)) f |= FC_ALGO_FLAG_FORWARD;
  if (row->directions & dir_bit(FC_DIR_BACKWARD_DATA)) f |= FC_ALGO_FLAG_BACKWARD_DATA;
  if (row->directions & dir_bit(FC_DIR_BACKWARD_WEIGHT)) f |= FC_ALGO_FLAG_BACKWARD_WEIGHT;
  if (row->phase_planes) f |= FC_ALGO_FLAG_PHASE_PLANES;
  if (row->non_finite_fallback) f |= FC_ALGO_FLAG_NONFINITE_FALLBACK;
  return f;
}

const char *fc_algo_description(fc_algo a) {
  if (a == FC_ALGO_AUTO)
    return "picks one of the others per shape and direction (fc_conv2d_choose_for)";
  const AlgoRow *row = algo_row(a);
  return row ? row->description : nullptr;
}

fc_status fc_conv2d_cost(const fc_conv2d_desc *d, fc_algo a, fc_direction dir, double *cost) {
  ConvShape s;
  if (fc_status st = make_shape(d, &s)) return st;
  if (!cost) return fail(FC_EINVAL, "cost is NULL");
  if (fc_status st = check_direction(dir)) return st;
  const AlgoRow *r;
  if (fc_status st = resolve(s, a, dir, &r)) return st;
  *cost = r->cost(s, dir);
  return FC_OK;
}

}  // extern "C"
