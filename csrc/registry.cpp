// The algorithm table (registry.h): one row per fc_algo, with what it can run, its entry
// points and its cost model.
//
// Cost unit: one multiply-add at a well-shaped float32 GEMM's rate. Every model is
// "arithmetic / efficiency + data movement", in doubles (no overflow: each factor is a
// validated int64), ignoring the thread count and the ISA, which scale all rows alike. The
// constants are rough fits to the measurements quoted in api.cpp's choose() (Zen 4, 2
// threads, batch 4-8); the costs rank, they do not predict milliseconds.
#include "registry.h"

#include <cmath>

#include "hw.h"

namespace fc {

namespace {

const char *const kGemm =
    "its GEMM dimensions (output channels per group, channels x kernel "
    "taps, plane sizes) must fit int32";

// ---- shared cost terms ----------------------------------------------------------------

// Multiply-adds of any direction of s: n*k*ho*wo*(c/g)*kh*kw.
double conv_macs(const ConvShape &s) {
  return (double)s.n * (double)s.k * (double)s.howo * (double)s.ckk;
}

// Fraction of GEMM peak an [m x k] x [k x n] product reaches: near 0.9 for large ones, falling
// as a dimension gets thin (packing and the micro-kernel's edges are paid per element).
double gemm_eff(double m, double n, double k) {
  return 0.9 * (m / (m + 16)) * (n / (n + 16)) * (k / (k + 32));
}

// One element copied with a gather (im2col/col2im, phase planes), in GEMM multiply-adds.
constexpr double kCopy = 8;

// The GEMM path's three directions, per group and image (row-major; the swap to OpenBLAS's
// column-major happens in im2col.cpp):
//   forward          [kg, ckk] x [ckk, howo] -> [kg, howo]
//   data gradient    [ckk, kg] x [kg, howo]  -> columns, then col2im
//   weight gradient  [kg, howo] x [howo, ckk] -> [kg, ckk], summed over images
// plus the column matrix (n*g*ckk*howo elements) copied once, unless copy is 0 (1x1 in place).
double gemm_path_cost(const ConvShape &s, fc_direction dir, double copy) {
  const double kg = (double)s.kg, ckk = (double)s.ckk, howo = (double)s.howo;
  const double eff = dir == FC_DIR_FORWARD         ? gemm_eff(kg, howo, ckk)
                     : dir == FC_DIR_BACKWARD_DATA ? gemm_eff(ckk, howo, kg)
                                                   : gemm_eff(kg, ckk, howo);
  return conv_macs(s) / eff + copy * (double)s.n * (double)s.g * ckk * howo;
}

// ---- im2col ---------------------------------------------------------------------------

const char *im2col_why_not(const ConvShape &s) { return im2col_supports(s) ? nullptr : kGemm; }

// GEMMs as above, with a gathered copy of every column element; on a 1x1 kernel gemm1x1's
// code, so its cost (defined below).
double gemm1x1_cost(const ConvShape &s, fc_direction dir);
double im2col_cost(const ConvShape &s, fc_direction dir) {
  return s.kh == 1 && s.kw == 1 ? gemm1x1_cost(s, dir) : gemm_path_cost(s, dir, kCopy);
}

// ---- direct ---------------------------------------------------------------------------

const char *direct_why_not(const ConvShape &) { return nullptr; }

// Register tiles over output channels x output row: efficient with wide rows (wo) and enough
// output channels per group (kg) to fill a tile; strided rows and dilation beyond 2 scatter
// the loads. The data gradient (a transposed convolution on the same tiles) measured 0.5-0.7x
// of im2col's. Strided, it runs on phase planes (one group, no dilation: below); elsewhere by a
// scatter, which session 15's bench auto (AVX2 EPYC, 2 threads) put at up to 24x im2col's time
// (modelled 3-5x): so, the tuner's 4x pruning (tune.cpp) skips those. The
// weight gradient of groups or dilation is a dot product per tap (4-70x im2col's time then,
// modelled 10x); of one group without dilation it runs on the blocked tiles
// (conv/direct_blocked.cpp), modelled as the blocked forward with its tiles over input
// channels (6 a tile, AVX2's: ISA-blind, as every model here) and its copies of x and dy,
// twice as dear strided (ResNet's 3x3/2 layers ran 58-82 GFLOP/s, unit stride 150, on AVX2).
double direct_cost(const ConvShape &s, fc_direction dir) {
  const double wo = (double)s.wo, kg = (double)s.kg;
  // The blocked forward (conv/direct_blocked.cpp): 16 output channels x up to 6 positions of a
  // row per tile, input channels padded to blocks of 8 (in rows: none), plus packing the
  // filters and copying the input into blocks.
  if (dir == FC_DIR_FORWARD && direct_blocked_runs(s)) {
    const double c = (double)s.c, cpad = direct_blocked_in_rows(s) ? c : 8 * std::ceil(c / 8);
    return conv_macs(s) * cpad / c / (0.85 * (wo / (wo + 4))) +
           kCopy * ((double)s.k * (double)s.ckk + (double)s.n * cpad * (double)s.hw);
  }
  if (dir == FC_DIR_BACKWARD_WEIGHT && direct_blocked_weight_grad_applies(s) &&
      direct_weight_grad_rows_applies(s)) {
    // (under 8 input channels, along dy's rows: vectors of 8 positions, the last part-empty,
    // and x's rows copied per block of output rows; dy read where it lies)
    const double v = 8 * std::ceil(wo / 8);
    return conv_macs(s) * (v / wo) / 0.8 +
           kCopy * (double)s.n * (double)s.c * (double)s.sw * (double)s.hw;
  }
  if (dir == FC_DIR_BACKWARD_WEIGHT && direct_blocked_weight_grad_applies(s) &&
      direct_blocked_weight_grad_by_columns(s)) {
    // (under a tile of channels, on AVX-512: tiles over (channel, tap column) pairs, none
    // padded, each window row's pass reading a pair of output blocks' dy plane, from the L2
    // while that is under half of it (Zen 4: the stem's 7x7/2 and AlexNet's 11x11/4 at 112-137
    // GFLOP/s, 0.78-0.93x im2col's time; 3x3 layers on 224-299 planes 1.5-1.7x im2col's)
    const double dy_pass = 64 * (double)s.howo > (double)hardware().l2 / 2 ? 2.5 : 1;
    return conv_macs(s) * dy_pass / (0.85 * (wo / (wo + 4))) +
           kCopy * ((double)s.n * ((double)s.c * (double)s.hw + (double)s.k * (double)s.howo));
  }
  if (dir == FC_DIR_BACKWARD_WEIGHT && direct_blocked_weight_grad_applies(s)) {
    const double c = (double)s.c, cpad = 6 * std::ceil(c / 6),
                 kpad = 16 * std::ceil((double)s.k / 16);
    const double strided = s.sh > 1 || s.sw > 1 ? 2 : 1;
    return conv_macs(s) * (cpad / c) * (kpad / (double)s.k) * strided / (0.85 * (wo / (wo + 4))) +
           kCopy * ((double)s.n * (c * (double)s.hw + (double)s.k * (double)s.howo));
  }
  if (dir == FC_DIR_BACKWARD_DATA && (s.sh > 1 || s.sw > 1) &&
      direct_blocked_data_grad_phases_apply(s)) {
    // (strided: the blocked tiles over sh*sw phases of dx, rows about in_w/sw wide, dx's
    // channels in pairs of blocks and dy's in blocks, dy copied once and every filter packed
    // once; ResNet's 3x3/2 256 at 28x28 ran 316 GFLOP/s at 8 images on the 2-vCPU Xeon; a
    // stem's 3 channels of dx fill 3 of a tile's 16: 2-3x im2col's time)
    const double wq = (double)s.in_w / (double)s.sw, k = (double)s.k, c = (double)s.c;
    const double kpad = 8 * std::ceil(k / 8), cpad = 16 * std::ceil(c / 16);
    return conv_macs(s) * (kpad / k) * (cpad / c) / (0.9 * (wq / (wq + 2))) +
           kCopy * ((double)s.k * (double)s.ckk + (double)s.n * kpad * (double)s.howo);
  }
  double eff = 0.8 * (wo / (wo + 4)) * (kg / (kg + 8));
  // (the forward strided along rows runs the tiles on column phases: ceil(kw/sw)*sw taps
  // per row for kw, the rest scatter)
  if (s.sw > 1 && dir == FC_DIR_FORWARD && s.dil_w == 1 && s.kw > 1)
    eff *= (double)s.kw / ((double)((s.kw - 1) / s.sw + 1) * (double)s.sw);
  else if (s.sw > 1) eff *= 0.5;
  if (s.dil_h > 2 || s.dil_w > 2) eff *= 0.6;
  if (dir == FC_DIR_BACKWARD_DATA) eff *= s.sh > 1 || s.sw > 1 ? 0.125 : 0.5;
  if (dir == FC_DIR_BACKWARD_WEIGHT) eff *= 0.1;
  return conv_macs(s) / eff;
}

// ---- gemm1x1 --------------------------------------------------------------------------

const char *gemm1x1_why_not(const ConvShape &s) {
  if (s.kh != 1 || s.kw != 1) return "it needs a 1x1 kernel";
  return gemm1x1_supports(s) ? nullptr : kGemm;
}

// im2col's GEMMs on the input as it lies (stride 1, no padding: no copy at all), else on a
// contiguous gather of the strided/padded input (half a gather's cost per element).
double gemm1x1_cost(const ConvShape &s, fc_direction dir) {
  return gemm_path_cost(s, dir, gemm_in_place(s) ? 0 : kCopy / 2);
}

// ---- depthwise ------------------------------------------------------------------------

const char *depthwise_why_not(const ConvShape &s) {
  return depthwise_supports(s) ? nullptr : "it needs groups == input channels";
}

// Row loops per channel: bound by streaming the planes, about a third of GEMM peak on the
// kh*kw multiply-adds per output (no reduction over channels to reuse anything across).
double depthwise_cost(const ConvShape &s, fc_direction dir) {
  return conv_macs(s) / (dir == FC_DIR_BACKWARD_WEIGHT ? 0.2 : 0.3);
}

// ---- reference ------------------------------------------------------------------------

const char *reference_why_not(const ConvShape &) { return nullptr; }

// Scalar loops accumulating in double, no blocking: a thirtieth of GEMM peak.
double reference_cost(const ConvShape &s, fc_direction) { return conv_macs(s) / 0.03; }

// ---- winograd -------------------------------------------------------------------------

const char *winograd_why_not(const ConvShape &s) {
  if (s.kh != 3 || s.kw != 3) return "it needs a 3x3 kernel";
  if (s.sh != 1 || s.sw != 1) return "it needs stride 1";
  // (dilated: through the phase planes, see conv/phases.cpp)
  if (phases_apply(s) && !phases_fit(s)) return "the phase planes of this dilation overflow int64";
  const bool ok = phases_apply(s) ? winograd_supports(phase_shape(s)) : winograd_supports(s);
  return ok ? nullptr : "its channels per group must fit int32";
}

// F(m x m, 3x3) on the (phase-plane) shape t, m = 4 (2 with a reduction under 8 channels, and for a
// weight gradient of few tiles, as winograd.cpp picks; a forward or data gradient of 32 F(4x4)
// tiles or fewer runs F(2x2), measured 0.5-0.86x F(4x4)'s time there: priced as F(4x4), an upper
// bound), alpha = m + 2: per tile and element one multiply-add per (input channel, output channel)
// pair in alpha^2 GEMMs of [kg, cg] x [cg, tiles] at half the efficiency of one large GEMM (they
// are many and small; the fused forward's register tiles, winograd_fused, at 0.6 of it and losing
// less to few tiles: measured 0.8-0.9x im2col's time on 13x13 and 14x14 planes at batch 1 with
// 256-1024 channels), plus transforms costing 2 units per transformed value of the input and output
// tiles and 20 per value of the filters (their strided gather: 25 ns a 3x3 filter on one thread of
// the AVX2 EPYC, where one of its cores does 27 GMAC/s of GEMM; the fused forward of ResNet's
// 512-channel 7x7 layer at batch 1 is mostly that, 2.1x im2col's time, modelled 2.1x), plus copying
// into and out of the phase planes when dilated.
double winograd_cost(const ConvShape &s, fc_direction dir) {
  const bool phased = phases_apply(s);
  const ConvShape t = phased ? phase_shape(s) : s;
  const int64_t reduction = dir == FC_DIR_BACKWARD_DATA ? t.kg : t.cg;
  const double m = dir == FC_DIR_BACKWARD_WEIGHT ? winograd_weight_tile(t) : reduction < 8 ? 2 : 4;
  const double a2 = (m + 2) * (m + 2);
  const double tiles = (double)t.n * std::ceil((double)t.ho / m) * std::ceil((double)t.wo / m);
  const double cg = (double)t.cg, kg = (double)t.kg, g = (double)t.g;
  const bool fused =
      t.g == 1 && dir != FC_DIR_BACKWARD_WEIGHT && winograd_fused((int64_t)tiles, t.cg * t.kg);
  const double eff = fused ? 0.6 * 0.9 * (kg / (kg + 16)) * (tiles / (tiles + 4)) * (cg / (cg + 32))
                           : 0.5 * gemm_eff(kg, tiles, cg);
  const double gemm = a2 * tiles * g * cg * kg / eff;
  const double transforms = 2 * a2 * tiles * (double)(t.c + t.k) + 20 * a2 * (double)t.k * cg;
  const double copies =
      phased ? kCopy * (double)t.n * ((double)t.c * (double)t.hw + (double)t.k * (double)t.howo)
             : 0;
  return gemm + transforms + copies;
}

// ---- fft ------------------------------------------------------------------------------

// Whole-plane transforms of N = nh*nw points (bins = nh*(nw/2+1) complex values per plane):
// per bin one complex multiply-add per (image, input channel, output channel), costed 32 units
// (4 real multiply-adds, in double, in small GEMMs vectorised over planes), plus one transform
// per plane of the two operands and the result, 2.5 N log2 N units each. Fitted to the
// measurements behind fft_pays in api.cpp: 2-4x under im2col on L1-L3, even on L4 and
// AlexNet's 5x5 on 27x27, above it on OverFeat's unpadded 5x5 on 28x28 and on small kernels.
double fft_cost(const ConvShape &s, fc_direction) {
  const double bins = (double)fft_bins(s), points = 2 * bins;
  const double products = 32 * bins * (double)s.n * (double)s.k * (double)s.cg;
  const double planes =
      (double)s.n * (double)s.c + (double)s.k * (double)s.cg + (double)s.n * (double)s.k;
  return products + planes * 2.5 * points * std::log2(points);
}

// ---- linear ---------------------------------------------------------------------------

const char *linear_why_not(const ConvShape &s) {
  return linear_supports(s) ? nullptr
                            : "every output position must see every input element (a plane no "
                              "larger than the kernel's reach), with GEMM dimensions within int32";
}

// One GEMM over the batch per group on the expanded kernel (n x kg*ho*wo x cg*h*w multiply-adds,
// every one a term of the convolution), plus writing the expanded kernel (or folding its
// gradient) unless it is the kernel as it lies.
double linear_cost(const ConvShape &s, fc_direction dir) {
  const double q = (double)s.cg * (double)s.hw, n = (double)s.n;
  const double m = (double)s.kg * (double)s.howo;
  const double eff = dir == FC_DIR_FORWARD         ? gemm_eff(n, m, q)
                     : dir == FC_DIR_BACKWARD_DATA ? gemm_eff(n, q, m)
                                                   : gemm_eff(m, q, n);
  const double copy = s.howo == 1 && s.kk == s.hw ? 0 : kCopy * (double)s.k * (double)s.howo * q;
  return (double)s.g * m * n * q / eff + copy;
}

// ---- the table ------------------------------------------------------------------------

// The data gradients that add into dx themselves (ConvEntries::backward_data_into): the GEMM
// paths', whose GEMMs take beta 1 and whose col2im adds into dx as it is.
template <class T>
constexpr PhaseBackwardData<T> into_entry(fc_algo id) {
  return id == FC_ALGO_IM2COL || id == FC_ALGO_GEMM1X1 ? gemm_backward_data_into<T> : nullptr;
}

#define FC_ENTRIES(id, name, T)                                                                   \
  {conv2d_forward__##name<T>, conv2d_backward_data__##name<T>, conv2d_backward_weight__##name<T>, \
   into_entry<T>(id)}
#define FC_ROW(id, name, description, phase_planes, non_finite_fallback) \
  {id,                                                                   \
   #name,                                                                \
   description,                                                          \
   name##_why_not,                                                       \
   kAllDirections,                                                       \
   phase_planes,                                                         \
   non_finite_fallback,                                                  \
   name##_cost,                                                          \
   FC_ENTRIES(id, name, float),                                          \
   FC_ENTRIES(id, name, double)}

// In fc_algo order, FC_ALGO_AUTO (no algorithm) left out.
constexpr AlgoRow kRows[] = {
    FC_ROW(FC_ALGO_IM2COL, im2col,
           "im2col/col2im copies and one OpenBLAS GEMM per group; any descriptor whose GEMM "
           "dimensions fit int32 (1x1 kernels: gemm1x1's code)",
           false, false),
    FC_ROW(FC_ALGO_DIRECT, direct,
           "direct loops over SIMD register tiles (output channels x row), on a padded copy "
           "of the input where rows are unit-stride, or in 8-channel blocks (NCHWc) for wide "
           "forwards of one group; any descriptor",
           false, false),
    FC_ROW(FC_ALGO_GEMM1X1, gemm1x1,
           "1x1 kernels: one GEMM per image on the input as it lies (gathered first when "
           "strided or padded)",
           false, false),
    FC_ROW(FC_ALGO_DEPTHWISE, depthwise,
           "groups == input channels (any channel multiplier): row loops per channel", false,
           false),
    FC_ROW(FC_ALGO_REFERENCE, reference,
           "naive loops accumulating in double, the twin the fast paths are tested against; any "
           "descriptor",
           false, false),
    FC_ROW(FC_ALGO_WINOGRAD, winograd,
           "Winograd F(4x4, 3x3) minimal filtering: 3x3 kernels at stride 1 (dilated ones on "
           "their phase planes), any padding and groups",
           true, true),
    FC_ROW(FC_ALGO_FFT, fft,
           "whole-plane FFT convolution: stride 1 and dilation 1, any kernel, padding and "
           "groups, power-of-two transforms up to 65536 points",
           false, true),
    FC_ROW(FC_ALGO_LINEAR, linear,
           "every output position sees every input element (a 3x3 \"same\" convolution on a 1x1 "
           "or 2x2 plane, a 7x7 on a 7x7 plane): one GEMM over the batch on the kernel expanded "
           "to a dense matrix, as a linear layer",
           false, false),
};
#undef FC_ROW
#undef FC_ENTRIES

constexpr int kRowCount = (int)(sizeof kRows / sizeof kRows[0]);
static_assert(kRowCount == FC_ALGO_COUNT_ - 1, "one row per fc_algo but FC_ALGO_AUTO");

constexpr bool rows_in_enum_order() {
  for (int i = 0; i < kRowCount; ++i)
    if ((int)kRows[i].id != i + 1) return false;
  return true;
}
static_assert(rows_in_enum_order(), "kRows[i] is the row of fc_algo i + 1");

}  // namespace

const AlgoRow *algo_row(fc_algo a) {
  const int v = (int)a;  // (any int may arrive here: compare before subtracting)
  return v >= 1 && v <= kRowCount ? &kRows[v - 1] : nullptr;
}

}  // namespace fc
