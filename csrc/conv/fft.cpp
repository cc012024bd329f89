// FFT convolution (stride 1, dilation 1, any kernel, padding and groups): whole-plane
// transforms of size nh x nw, the powers of two at least the padded input (h + 2ph) x
// (w + 2pw). At that size the circular convolutions of all three directions equal the linear
// ones on the windows kept:
//   forward     y[o]     = sum_i x_pad[o + i] w[i]    Y  = sum_c  X  conj(W)   o < ho
//   data grad   dx_pad[t] = sum_o dy[o] w[t - o]       DX = sum_k  DY W         t - ph < h
//   weight grad dw[i]    = sum_o x_pad[o + i] dy[o]   DW = sum_n  X  conj(DY)  i < kh
// (x_pad: x at (ph, pw) of the zero grid; w and dy at (0, 0)). Each frequency's sum is a small
// complex GEMM (cpu/fft_ukernels.h, cmac), vectorised over `lanes` output planes at a time.
//
// Data layout in the frequency domain, bins outermost so each bin's GEMM reads one block:
// the operand reduced over is held as complex scalars (broadcast), the other and the result
// as complex vectors of `lanes` planes, the planes one transform produces.
//
// Threads: every phase (transform a set of planes, the products over bins, the inverse
// transforms) is an `omp for` inside one parallel region, over its own independent items; the
// buffers are shared. Images are taken in chunks and input channels (forward) / output
// channels (data gradient) in chunks so the frequency-domain buffers stay within a budget.
#include <omp.h>

#include <cmath>
#include <vector>

#include "../cpu/fft_ukernels.h"
#include "../internal.h"

namespace fc {

namespace {

constexpr int64_t kMaxDim = 4096;          // largest transform along one side
constexpr int64_t kMaxArea = 65536;        // largest nh * nw (the per-thread scratch)
constexpr int64_t kMaxLanes = 16;          // the widest table's lanes (AVX-512 float)
constexpr int64_t kChunkBytes = 32 << 20;  // target size of a chunk's frequency-domain buffers
constexpr int64_t kWeightBytes = 8 << 20;  // target size of a block of transformed weights
constexpr int64_t kBinBlock = 16;          // bins per work item of the products

int64_t pow2_at_least(int64_t v) {
  int64_t n = 1;
  while (n < v) n *= 2;
  return n;
}

// Twiddles and bit reversals for every size up to kMaxDim (layout in FftSize), computed once
// (thread-safe static) in double: cos/sin of the exact angle, not a recurrence.
template <class T>
struct Tables {
  std::vector<T> tw;
  std::vector<int32_t> rev;
  Tables() {
    for (int64_t m = 2; m <= kMaxDim; m *= 2)
      for (int64_t j = 0; j < m / 2; ++j) {
        const double a = -2.0 * M_PI * double(j) / double(m);
        tw.push_back(T(std::cos(a)));
        tw.push_back(T(std::sin(a)));
      }
    for (int64_t n = 1, bits = 0; n <= kMaxDim; n *= 2, ++bits)
      for (int64_t i = 0; i < n; ++i) {
        int32_t r = 0;
        for (int64_t b = 0; b < bits; ++b) r |= int32_t((i >> b) & 1) << (bits - 1 - b);
        rev.push_back(r);
      }
  }
};

template <class T>
FftSize<T> fft_size(const ConvShape &s) {
  static const Tables<T> t;
  return {pow2_at_least(s.h + 2 * s.ph), pow2_at_least(s.w + 2 * s.pw), t.tw.data(),
          t.rev.data()};
}

int64_t bins_of(const ConvShape &s) {
  return pow2_at_least(s.h + 2 * s.ph) * (pow2_at_least(s.w + 2 * s.pw) / 2 + 1);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// How many of `total` items fit `budget` bytes at `each` bytes apiece (at least 1).
int64_t fit(int64_t budget, int64_t each, int64_t total) {
  return std::max<int64_t>(1, std::min(total, budget / std::max<int64_t>(1, each)));
}

// The per-thread transform scratch, shared by every phase.
template <class T>
struct Scratch {
  int64_t each;
  Buffer<T> buf;
  Scratch(const FftSize<T> &z, int lanes, int nt)
      : each(fft_scratch_size(z, lanes)), buf(each * nt) {}
  T *mine() const { return buf.get() + each * omp_get_thread_num(); }
};

}  // namespace

bool fft_supports(const ConvShape &s) {
  if (s.sh != 1 || s.sw != 1 || s.dh != 1 || s.dw != 1) return false;
  const int64_t hp = s.h + 2 * s.ph, wp = s.w + 2 * s.pw;  // (make_shape checked these fit)
  if (hp > kMaxDim || wp > kMaxDim) return false;
  if (pow2_at_least(hp) * pow2_at_least(wp) > kMaxArea) return false;
  // The smallest chunks (one image, one block of channels) must fit in sane memory: 1 GiB of
  // complex doubles.
  const int64_t per_bin = 2 * (ceil_div(s.cg, kMaxLanes) * kMaxLanes + s.kg + 2 * kMaxLanes);
  return bins_of(s) <= (int64_t(1) << 26) / per_bin;
}

template <class T>
fc_status conv2d_forward__fft(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  if (!fft_supports(s)) return fail(FC_EUNSUPPORTED, "fft: needs stride 1, dilation 1 and a padded plane of at most %lld x %lld", (long long)kMaxDim, (long long)kMaxDim);
  const FftUKernels<T> &u = fft_ukernels<T>();
  const FftSize<T> z = fft_size<T>(s);
  const int64_t L = u.lanes, cv = 2 * L, nbins = bins_of(s);
  const int64_t kblocks = ceil_div(s.kg, L), cblocks = ceil_div(s.cg, L);
  // X [bin][n][c] complex scalars and Y [bin][n] complex vectors per image of a chunk;
  // W [bin][c] complex vectors per input channel of a weight block.
  const int64_t nc = fit(kChunkBytes, nbins * (2 * s.cg + cv) * (int64_t)sizeof(T), s.n);
  const int64_t cc = fit(kWeightBytes, nbins * cv * (int64_t)sizeof(T), s.cg);
  const int nt = num_threads();
  Buffer<T> X(nbins * nc * s.cg * 2), Y(nbins * nc * cv), W(nbins * cc * cv);
  Scratch<T> scr(z, u.lanes, nt);
  if (!X.ok() || !Y.ok() || !W.ok() || !scr.buf.ok())
    return fail(FC_ENOMEM, "fft: cannot allocate the frequency-domain buffers (%lld bins)",
                (long long)nbins);
  const T scale = T(1) / T(z.nh * z.nw);
#pragma omp parallel num_threads(nt)
  for (int64_t g = 0; g < s.g; ++g) {
    for (int64_t n0 = 0; n0 < s.n; n0 += nc) {
      const int64_t nn = std::min(nc, s.n - n0);
      // X[bin][n][c]: input planes, channels in the lanes
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < nn * cblocks; ++it) {
        const int64_t n = it / cblocks, c0 = it % cblocks * L;
        const FftPlanes p{s.hw, s.w, s.h, s.w, s.ph, s.pw, (int)std::min(L, s.cg - c0)};
        u.rfft2(z, x + ((n0 + n) * s.c + g * s.cg + c0) * s.hw, p, X.get() + (n * s.cg + c0) * 2,
                FftBins{nn * s.cg * 2, 2, 1}, scr.mine());
      }
      for (int64_t kb = 0; kb < kblocks; ++kb) {
        const int64_t k0 = g * s.kg + kb * L;  // first output channel of the block
        const int kcount = (int)std::min(L, s.kg - kb * L);
        for (int64_t c0 = 0; c0 < s.cg; c0 += cc) {
          const int64_t ncc = std::min(cc, s.cg - c0);
          // W[bin][c]: the weights of output channels k0.. (lanes) for input channels c0..
#pragma omp for schedule(dynamic)
          for (int64_t c = 0; c < ncc; ++c)
            u.rfft2(z, w + k0 * s.ckk + (c0 + c) * s.kk,
                    FftPlanes{s.ckk, s.kw, s.kh, s.kw, 0, 0, kcount}, W.get() + c * cv,
                    FftBins{ncc * cv, 1, L}, scr.mine());
          // per bin: Y[n] (+)= sum over c of conj(W[c]) X[n][c]   ([ncc] x [nn, ncc]^T -> [nn])
#pragma omp for schedule(dynamic)
          for (int64_t b0 = 0; b0 < nbins; b0 += kBinBlock)
            u.cmac(kConjA, std::min(kBinBlock, nbins - b0), ncc, nn, W.get() + b0 * ncc * cv,
                   ncc * cv, cv, X.get() + (b0 * nn * s.cg + c0) * 2, nn * s.cg * 2, s.cg * 2, 2,
                   Y.get() + b0 * nn * cv, nn * cv, cv, c0 > 0);
        }
        // y[n][k0..] = Y[n] transformed back, cropped to ho x wo, plus the bias
#pragma omp for schedule(dynamic)
        for (int64_t n = 0; n < nn; ++n)
          u.irfft2(z, Y.get() + n * cv, nn * cv, y + ((n0 + n) * s.k + k0) * s.howo,
                   FftPlanes{s.howo, s.wo, s.ho, s.wo, 0, 0, kcount}, scale, b ? b + k0 : nullptr,
                   false, scr.mine());
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_data__fft(const ConvShape &s, const T *dy, const T *w, T *dx) {
  if (!fft_supports(s)) return fail(FC_EUNSUPPORTED, "fft: needs stride 1, dilation 1 and a padded plane of at most %lld x %lld", (long long)kMaxDim, (long long)kMaxDim);
  const FftUKernels<T> &u = fft_ukernels<T>();
  const FftSize<T> z = fft_size<T>(s);
  const int64_t L = u.lanes, cv = 2 * L, nbins = bins_of(s);
  const int64_t kblocks = ceil_div(s.kg, L), cblocks = ceil_div(s.cg, L);
  // DY [bin][n][k] complex scalars and DX [bin][n] complex vectors per image of a chunk;
  // W [bin][k] complex vectors per output channel of a weight block.
  const int64_t nc = fit(kChunkBytes, nbins * (2 * s.kg + cv) * (int64_t)sizeof(T), s.n);
  const int64_t kc = fit(kWeightBytes, nbins * cv * (int64_t)sizeof(T), s.kg);
  const int nt = num_threads();
  Buffer<T> DY(nbins * nc * s.kg * 2), DX(nbins * nc * cv), W(nbins * kc * cv);
  Scratch<T> scr(z, u.lanes, nt);
  if (!DY.ok() || !DX.ok() || !W.ok() || !scr.buf.ok())
    return fail(FC_ENOMEM, "fft: cannot allocate the frequency-domain buffers (%lld bins)",
                (long long)nbins);
  const T scale = T(1) / T(z.nh * z.nw);
#pragma omp parallel num_threads(nt)
  for (int64_t g = 0; g < s.g; ++g) {
    for (int64_t n0 = 0; n0 < s.n; n0 += nc) {
      const int64_t nn = std::min(nc, s.n - n0);
      // DY[bin][n][k]: output-gradient planes, channels in the lanes
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < nn * kblocks; ++it) {
        const int64_t n = it / kblocks, k0 = it % kblocks * L;
        const FftPlanes p{s.howo, s.wo, s.ho, s.wo, 0, 0, (int)std::min(L, s.kg - k0)};
        u.rfft2(z, dy + ((n0 + n) * s.k + g * s.kg + k0) * s.howo, p,
                DY.get() + (n * s.kg + k0) * 2, FftBins{nn * s.kg * 2, 2, 1}, scr.mine());
      }
      for (int64_t cb = 0; cb < cblocks; ++cb) {
        const int64_t c0 = cb * L;  // first input channel of the block, within the group
        const int ccount = (int)std::min(L, s.cg - c0);
        for (int64_t k0 = 0; k0 < s.kg; k0 += kc) {
          const int64_t nkc = std::min(kc, s.kg - k0);
          // W[bin][k]: the weights of input channels c0.. (lanes) for output channels k0..
#pragma omp for schedule(dynamic)
          for (int64_t k = 0; k < nkc; ++k)
            u.rfft2(z, w + (g * s.kg + k0 + k) * s.ckk + c0 * s.kk,
                    FftPlanes{s.kk, s.kw, s.kh, s.kw, 0, 0, ccount}, W.get() + k * cv,
                    FftBins{nkc * cv, 1, L}, scr.mine());
          // per bin: DX[n] (+)= sum over k of W[k] DY[n][k]   ([nkc] x [nn, nkc]^T -> [nn])
#pragma omp for schedule(dynamic)
          for (int64_t b0 = 0; b0 < nbins; b0 += kBinBlock)
            u.cmac(kConjNone, std::min(kBinBlock, nbins - b0), nkc, nn, W.get() + b0 * nkc * cv,
                   nkc * cv, cv, DY.get() + (b0 * nn * s.kg + k0) * 2, nn * s.kg * 2, s.kg * 2, 2,
                   DX.get() + b0 * nn * cv, nn * cv, cv, k0 > 0);
        }
        // dx[n][c0..] = DX[n] transformed back, the window at (ph, pw) of h x w
#pragma omp for schedule(dynamic)
        for (int64_t n = 0; n < nn; ++n)
          u.irfft2(z, DX.get() + n * cv, nn * cv, dx + ((n0 + n) * s.c + g * s.cg + c0) * s.hw,
                   FftPlanes{s.hw, s.w, s.h, s.w, s.ph, s.pw, ccount}, scale, nullptr, false,
                   scr.mine());
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_weight__fft(const ConvShape &s, const T *dy, const T *x, T *dw) {
  if (!fft_supports(s)) return fail(FC_EUNSUPPORTED, "fft: needs stride 1, dilation 1 and a padded plane of at most %lld x %lld", (long long)kMaxDim, (long long)kMaxDim);
  const FftUKernels<T> &u = fft_ukernels<T>();
  const FftSize<T> z = fft_size<T>(s);
  const int64_t L = u.lanes, cv = 2 * L, nbins = bins_of(s);
  const int64_t kblocks = ceil_div(s.kg, L), cblocks = ceil_div(s.cg, L);
  // X [bin][cblock][n] complex vectors and DY [bin][n][k] complex scalars per image of a
  // chunk; DW [bin][cblock][k] complex vectors per output channel of a block.
  const int64_t nc = fit(kChunkBytes, nbins * (cblocks * cv + 2 * s.kg) * (int64_t)sizeof(T), s.n);
  const int64_t kc = fit(kWeightBytes, nbins * cblocks * cv * (int64_t)sizeof(T), s.kg);
  const int nt = num_threads();
  Buffer<T> X(nbins * cblocks * nc * cv), DY(nbins * nc * s.kg * 2), DW(nbins * cblocks * kc * cv);
  Scratch<T> scr(z, u.lanes, nt);
  if (!X.ok() || !DY.ok() || !DW.ok() || !scr.buf.ok())
    return fail(FC_ENOMEM, "fft: cannot allocate the frequency-domain buffers (%lld bins)",
                (long long)nbins);
  const T scale = T(1) / T(z.nh * z.nw);
#pragma omp parallel num_threads(nt)
  for (int64_t g = 0; g < s.g; ++g) {
    for (int64_t n0 = 0; n0 < s.n; n0 += nc) {
      const int64_t nn = std::min(nc, s.n - n0);
      const int64_t xb = cblocks * nn * cv;  // X values per bin
      // X[bin][cblock][n]: input planes, channels in the lanes
#pragma omp for schedule(dynamic) nowait
      for (int64_t it = 0; it < nn * cblocks; ++it) {
        const int64_t n = it / cblocks, cb = it % cblocks;
        const FftPlanes p{s.hw, s.w, s.h, s.w, s.ph, s.pw, (int)std::min(L, s.cg - cb * L)};
        u.rfft2(z, x + ((n0 + n) * s.c + g * s.cg + cb * L) * s.hw, p,
                X.get() + (cb * nn + n) * cv, FftBins{xb, 1, L}, scr.mine());
      }
      // DY[bin][n][k]: output-gradient planes, channels in the lanes
#pragma omp for schedule(dynamic)
      for (int64_t it = 0; it < nn * kblocks; ++it) {
        const int64_t n = it / kblocks, k0 = it % kblocks * L;
        const FftPlanes p{s.howo, s.wo, s.ho, s.wo, 0, 0, (int)std::min(L, s.kg - k0)};
        u.rfft2(z, dy + ((n0 + n) * s.k + g * s.kg + k0) * s.howo, p,
                DY.get() + (n * s.kg + k0) * 2, FftBins{nn * s.kg * 2, 2, 1}, scr.mine());
      }
      for (int64_t k0 = 0; k0 < s.kg; k0 += kc) {
        const int64_t nkc = std::min(kc, s.kg - k0);
        const int64_t wb = cblocks * nkc * cv;  // DW values per bin
        // per bin and channel block: DW[k] = sum over n of X[n] conj(DY[n][k])
        //   ([nn] x [nkc, nn]^T -> [nkc])
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < ceil_div(nbins, kBinBlock) * cblocks; ++it) {
          const int64_t b0 = it / cblocks * kBinBlock, cb = it % cblocks;
          u.cmac(kConjB, std::min(kBinBlock, nbins - b0), nn, nkc,
                 X.get() + b0 * xb + cb * nn * cv, xb, cv, DY.get() + (b0 * nn * s.kg + k0) * 2,
                 nn * s.kg * 2, 2, s.kg * 2, DW.get() + b0 * wb + cb * nkc * cv, wb, cv, false);
        }
        // dw[k][cblock] (+)= DW[k] transformed back, the kh x kw window at (0, 0)
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < nkc * cblocks; ++it) {
          const int64_t k = it / cblocks, cb = it % cblocks;
          u.irfft2(z, DW.get() + (cb * nkc + k) * cv, wb,
                   dw + (g * s.kg + k0 + k) * s.ckk + cb * L * s.kk,
                   FftPlanes{s.kk, s.kw, s.kh, s.kw, 0, 0, (int)std::min(L, s.cg - cb * L)},
                   scale, nullptr, n0 > 0, scr.mine());
        }
      }
    }
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(fft, float)
FC_INSTANTIATE_CONV_ALGO(fft, double)

}  // namespace fc
