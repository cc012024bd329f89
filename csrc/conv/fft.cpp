// FFT convolution (stride 1, dilation 1, any kernel, padding and groups): whole-plane
// transforms of size nh x nw, the powers of two at least the padded input (h + 2ph) x
// (w + 2pw). At that size the circular convolutions of all three directions equal the linear
// ones on the windows kept:
//   forward     y[o]      = sum_i x_pad[o + i] w[i]    Y(n,k)  = sum_c X(n,c)  conj W(k,c)
//   data grad   dx_pad[t] = sum_o dy[o] w[t - o]       DX(n,c) = sum_k DY(n,k) W(k,c)
//   weight grad dw[i]     = sum_o x_pad[o + i] dy[o]   DW(c,k) = sum_n X(c,n)  conj DY(k,n)
// (x_pad: x at (ph, pw) of the zero grid; w and dy at (0, 0); the windows kept: o < ho,
// t - ph < h, i < kh). All three are one problem, out(i, j) = sum over r of
// P(i, r) op(Q(j, r)), solved by fft_products: per frequency a small complex GEMM
// (cpu/fft_ukernels.h, cmac) vectorised over `lanes` planes of i or of j, whichever fills
// the lanes better (L1's 3 input channels leave the data gradient's lanes to the images).
//
// Frequency-domain layout, bins outermost so each bin's GEMM reads one block: the operand
// broadcast in the GEMM (the one not in the lanes) as complex scalars [bin][r][m], shared by
// the threads; the other operand and the result as complex vectors [bin][r] and [bin][m],
// private to the thread that owns the lane block.
//
// Threads: two phases per chunk of m, one barrier between them: every thread transforms a
// share of the broadcast operand; then each work item (a block of lanes, or a part of its sum
// over r when there are few blocks) transforms its own lanes of the other operand, multiplies
// and transforms back (parts first meet in a third phase that adds them). Few barriers
// matter: a barrier costs a scheduler time slice whenever the machine is busier than its cores.
//
// Transform sizes: whole planes, not tiles. Bins per output value, nh*(nw/2+1) / (ho*wo),
// are what the products cost; for L1 (11x11 on 128) whole planes need 0.60 where 64-tiles
// (overlap-save) would need 0.72 and 32-tiles 1.12; L2 (9x9 on 64) 0.67 against 0.94 for
// 32-tiles; L3 and L4 are single tiles already. Tiles would pay where rounding up to a power
// of two wastes much of the plane (33 -> 64) or beyond the largest size (see fft_supports).
//
// Precision: float32 convolutions are computed in double (fft_ukernels' _f32 transforms read
// and write the float planes): the rounding error of a transform is spread over the whole
// plane, so in float32 an output much smaller than its plane's typical value (a 1x1 kernel on
// a small input value) would carry errors well above 1e-4 of its own magnitude.
//
// Prepared filters (fc_conv2d_prepare where fft_reuse_pays: a training step's forward and data
// gradient, an inference plan's forward): the filters' bins computed once, complex scalars
// [bin][group][k][c], and given to fft_products as Q's bins (PreBins), read as [k][c] by the
// forward and as [c][k] by the data gradient. Both put the images in the lanes there, as the
// ordinary calls do, so the results are theirs, bit for bit, without the filter transform.
#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

#include <cstdio>

#include "../cpu/fft_ukernels.h"
#include "../hw.h"
#include "../internal.h"

namespace fc {

namespace {

constexpr int64_t kMaxDim = 4096;          // largest transform along one side
constexpr int64_t kMaxArea = 65536;        // largest nh * nw (the per-thread scratch)
constexpr int64_t kMaxLanes = 8;           // the widest table's lanes (AVX-512 doubles)
constexpr int64_t kChunkBytes = 64 << 20;  // target size of the shared broadcast operand (a
                                           // memory bound: it streams from memory anyway)
constexpr int64_t kMinItems = 4;           // work items per chunk before r is split

int64_t pow2_at_least(int64_t v) {
  int64_t n = 1;
  while (n < v) n *= 2;
  return n;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Target size of a thread's block of the vector operand (and twice that, of its results) where
// half the L2 holds under 8 planes' bins (fft_products): 8 x the L2, 4 MiB on the 512 KiB-L2
// EPYC it was measured on. The block is transformed and then read back by the same thread, bin
// by bin, so it scales with the per-core caches. A hardware fact: the blocks (and so the order
// of the sums over r) never follow the thread count.
int64_t block_bytes() { return 8 * hardware().l2; }

// How many of `total` items to take at a time for `budget` bytes at `each` bytes apiece: at
// least 1, and the chunks balanced (10 items, at most 8 at a time: 5 + 5, not 8 + 2).
int64_t fit(int64_t budget, int64_t each, int64_t total) {
  const int64_t most = std::max<int64_t>(1, std::min(total, budget / std::max<int64_t>(1, each)));
  return ceil_div(total, ceil_div(total, most));
}

// Twiddles and bit reversals for every size up to kMaxDim (layout in FftSize), computed once
// (thread-safe static): cos/sin of the exact angle, not a recurrence.
struct Tables {
  std::vector<double> tw;
  std::vector<int32_t> rev;
  Tables() {
    for (int64_t m = 2; m <= kMaxDim; m *= 2)
      for (int64_t j = 0; j < m / 2; ++j) {
        const double a = -2.0 * M_PI * double(j) / double(m);
        tw.push_back(std::cos(a));
        tw.push_back(std::sin(a));
      }
    for (int64_t n = 1, bits = 0; n <= kMaxDim; n *= 2, ++bits)
      for (int64_t i = 0; i < n; ++i) {
        int32_t r = 0;
        for (int64_t b = 0; b < bits; ++b) r |= int32_t((i >> b) & 1) << (bits - 1 - b);
        rev.push_back(r);
      }
  }
};

FftSize fft_size(const ConvShape &s) {
  static const Tables t;
  return {pow2_at_least(s.in_h + 2 * s.ph), pow2_at_least(s.in_w + 2 * s.pw), t.tw.data(),
          t.rev.data()};
}

// A family of real planes: plane (a, b) of group g lies at base + g*sg + a*sa + b*sb, is
// hh x ww (rows ww apart) and lies at (oy, ox) of the transform grid.
struct Family {
  int64_t sa, sb, sg;
  int64_t hh, ww, oy, ox;
};

// out(i, j) = sum over r < R of P(i, r) op(Q(j, r)) for i < I, j < J (op = conj when conj_q),
// in every group; bias (per j of every group, may be NULL) is added to the output planes.
struct Problem {
  int64_t I, J, R;
  Family p, q, out;  // out's planes are (i, j)
  bool conj_q;
};

// The grid rows (or columns) [lo, hi] where out = P op(Q) has terms, from where the rows of
// P and Q lie: a correlation (op = conj) or a convolution of the two spans.
struct Span {
  int64_t lo, hi;
};
Span support(int64_t p0, int64_t pn, int64_t q0, int64_t qn, bool correlation) {
  if (correlation) return {p0 - (q0 + qn - 1), p0 + pn - 1 - q0};
  return {p0 + q0, p0 + pn - 1 + q0 + qn - 1};
}

// Outputs without a single term (a kernel tap that only ever meets padding) are exactly the
// bias, or 0: the transforms would leave rounding noise there, which no relative bound
// allows. Sets the window p of the planes at dst outside rows x cols to that value.
template <class S>
void exact_outside(const FftPlanes &p, Span rows, Span cols, S *dst, const S *bias,
                   int64_t bias_stride) {
  for (int l = 0; l < p.count; ++l) {
    const S v = bias ? bias[l * bias_stride] : S(0);
    for (int64_t r = 0; r < p.hh; ++r) {
      S *d = dst + l * p.plane_stride + r * p.row_stride;
      const int64_t gy = p.oy + r;
      for (int64_t c = 0; c < p.ww; ++c) {
        const int64_t gx = p.ox + c;
        if (gy < rows.lo || gy > rows.hi || gx < cols.lo || gx > cols.hi) d[c] = v;
      }
    }
  }
}

// The transforms of planes of the convolution's type S (the arithmetic is double).
inline void forward_transform(const FftUKernels &u, const FftSize &z, const double *src,
                              const FftPlanes &p, double *out, const FftBins &o, double *scr) {
  u.rfft2(z, src, p, out, o, scr);
}
inline void forward_transform(const FftUKernels &u, const FftSize &z, const float *src,
                              const FftPlanes &p, double *out, const FftBins &o, double *scr) {
  u.rfft2_f32(z, src, p, out, o, scr);
}
inline void inverse_transform(const FftUKernels &u, const FftSize &z, const double *in, int64_t bs,
                              double *dst, const FftPlanes &p, double scale, const double *bias,
                              int64_t bias_stride, double *scr) {
  u.irfft2(z, in, bs, dst, p, scale, bias, bias_stride, scr);
}
inline void inverse_transform(const FftUKernels &u, const FftSize &z, const double *in, int64_t bs,
                              float *dst, const FftPlanes &p, double scale, const float *bias,
                              int64_t bias_stride, double *scr) {
  u.irfft2_f32(z, in, bs, dst, p, scale, bias, bias_stride, scr);
}

// Q's bins computed before the call (fft_prepare_filters: a convolution's filters, transformed
// once for a training step's forward and data gradient): bin b of plane (j, r) of group g as
// the complex scalar at p[b*bs + g*gs + j*js + r*rs] (re, im adjacent).
struct PreBins {
  const double *p;
  int64_t bs, gs, js, rs;
};

// Lanes over i (P in vectors, Q broadcast) or over j: fewer padding lanes per plane; j where
// both fill them alike. (Taking i there, session 19, put the images in the lanes of forwards
// with 4 or 8 images and filters in multiples of 4, AVX2: each block of filters then re-ran
// the images' transforms, and AlexNet's 5x5 64>192 at 27x27 took 106 ms forward at batch 8
// against 24 ms, its weight gradient at batch 4 31 ms against 19.)
bool lanes_over_i(int64_t I, int64_t J, int64_t L) {
  return ceil_div(I, L) * J < ceil_div(J, L) * I;
}

// (pre: Q's bins as given, so Q is the broadcast operand, lanes over i)
template <class S>
fc_status fft_products(const ConvShape &s, const Problem &pb, const S *P, const S *Q, S *out,
                       const S *bias, const PreBins *pre = nullptr) {
  using C = double;  // the arithmetic, whatever S (see the top)
  const FftUKernels &u = fft_ukernels();
  const FftSize z = fft_size(s);
  const int64_t L = u.lanes, cv = 2 * L, nbins = z.nh * (z.nw / 2 + 1);
  const bool lanes_i = pre || lanes_over_i(pb.I, pb.J, L);
  const int64_t V = lanes_i ? pb.I : pb.J, M = lanes_i ? pb.J : pb.I, R = pb.R;
  const S *vsrc = lanes_i ? P : Q, *bsrc = lanes_i ? Q : P;
  const Family &fv = lanes_i ? pb.p : pb.q, &fb = lanes_i ? pb.q : pb.p;
  // A = the vector operand, B = the broadcast one: P op(Q) is A op(B) or op(A) B.
  const int conj = !pb.conj_q ? kConjNone : lanes_i ? kConjB : kConjA;
  // out plane (v, m): lane stride and m stride; the bias is per j: per lane, or per m.
  const int64_t o_sv = lanes_i ? pb.out.sa : pb.out.sb, o_sm = lanes_i ? pb.out.sb : pb.out.sa;
  const int64_t bias_sv = lanes_i ? 0 : 1, bias_sm = lanes_i ? 1 : 0;
  const int64_t vblocks = ceil_div(V, L), rblocks = ceil_div(R, L);
  // Blocks of r and of m: where half the L2 holds 8 or more planes' bins, a block is what fits
  // there (the vector operand's block A [bin][r] and an item's results O [bin][m] stay in the
  // L2 while every bin's product passes over them), else what block_bytes() allows. Each
  // block's sum over r is added to the ones before (in double), so the blocks, which follow the
  // L2 and never the thread count, can move a float64 result's last bits; the float32 results
  // of every shape below came out the same bits as before. Interleaved in one process, best
  // of 5-8, 2 threads (the 2-vCPU Xeon, session 54), ms before -> after: L4 (7x7 on 16x16,
  // 128>128) at 8 images forward 5.82 -> 5.01, data gradient 6.27 -> 5.25, weight gradient
  // 6.93 -> 5.39, at one image 3.5-4.0 -> 2.0-2.6; L3 (9x9 on 32x32) at 8 images 34.1 -> 27.6,
  // 33.1 -> 26.5, 28.9 -> 27.3; with the AVX2 tables L4 0.79-0.73x and L3 0.80-0.84x; L1 and
  // L2 (under 8 planes a half L2) unchanged. A half L2 for A alone (O as before) left the weight
  // gradients, whose r is the images, as they were (one image of L4 3.4 against 2.5 ms).
  const int64_t plane_bins = nbins * cv * (int64_t)sizeof(C), half_l2 = hardware().l2 / 2;
  const bool in_half = half_l2 >= 8 * plane_bins;
  const int64_t mc = std::min(fit(kChunkBytes, nbins * R * 2 * (int64_t)sizeof(C), M),
                              fit(in_half ? half_l2 : 2 * block_bytes(), plane_bins, M));
  const int64_t rc = fit(in_half ? half_l2 : block_bytes(), plane_bins, R);
  // Work items: a block of lanes and a share of r. Few lane blocks (L1's data gradient has
  // one) would leave threads idle, so their r is split and the partial sums added before the
  // inverse transforms. The split follows the shape only, so results never depend on the
  // thread count.
  const int64_t parts = std::min(R, ceil_div(kMinItems, vblocks)), items = vblocks * parts;
  const int nt = num_threads();
  const int64_t osize = nbins * mc * cv;  // one item's results O [bin][m]
  const int64_t per_thread =
      nbins * rc * cv + (parts == 1 ? osize : 0) + fft_scratch_size(z, u.lanes);
  const int64_t bsize = pre ? 0 : nbins * mc * R * 2;
  Buffer<C> B(bsize), mine(per_thread * nt), shared(parts > 1 ? osize * items : 0);
  if (!B.ok() || !mine.ok() || !shared.ok())
    return fail(
        FC_ENOMEM, "fft: cannot allocate %lld bytes of frequency-domain buffers",
        (long long)((bsize + per_thread * nt + (parts > 1) * osize * items) * (int64_t)sizeof(C)));
  const C scale = C(1) / C(z.nh * z.nw);
  const Span rows = support(pb.p.oy, pb.p.hh, pb.q.oy, pb.q.hh, pb.conj_q);
  const Span cols = support(pb.p.ox, pb.p.ww, pb.q.ox, pb.q.ww, pb.conj_q);
  const bool full = rows.lo <= pb.out.oy && rows.hi >= pb.out.oy + pb.out.hh - 1 &&
                    cols.lo <= pb.out.ox && cols.hi >= pb.out.ox + pb.out.ww - 1;
#pragma omp parallel num_threads(nt)
  {
    C *A = mine.get() + per_thread * omp_get_thread_num();  // [bin][r] of a block of r
    C *scr = A + nbins * rc * cv + (parts == 1 ? osize : 0);
    for (int64_t g = 0; g < s.g; ++g) {
      for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t mm = std::min(mc, M - m0);
        // B[bin][r][m]: the broadcast operand, r in the lanes of each transform (none: given)
        if (!pre) {
#pragma omp for schedule(dynamic)
          for (int64_t it = 0; it < mm * rblocks; ++it) {
            const int64_t m = it / rblocks, r0 = it % rblocks * L;
            const FftPlanes p{fb.sb, fb.ww, fb.hh, fb.ww, fb.oy, fb.ox, (int)std::min(L, R - r0)};
            forward_transform(u, z, bsrc + g * fb.sg + (m0 + m) * fb.sa + r0 * fb.sb, p,
                              B.get() + (r0 * mm + m) * 2, FftBins{mm * R * 2, mm * 2, 1}, scr);
          }
        }
        // out planes (v0.., m0 + m) from O[bin][m]: the window of the output family
        auto finish = [&](int64_t v0, int64_t m, const C *O) {
          const Family &fo = pb.out;
          const S *bm = bias ? bias + g * pb.J + v0 * bias_sv + (m0 + m) * bias_sm : nullptr;
          S *dst = out + g * fo.sg + v0 * o_sv + (m0 + m) * o_sm;
          const FftPlanes po{o_sv, fo.ww, fo.hh, fo.ww, fo.oy, fo.ox, (int)std::min(L, V - v0)};
          inverse_transform(u, z, O + m * cv, mm * cv, dst, po, scale, bm, bias_sv, scr);
          if (!full) exact_outside(po, rows, cols, dst, bm, bias_sv);
        };
#pragma omp for schedule(dynamic)
        for (int64_t it = 0; it < items; ++it) {
          const int64_t v0 = it / parts * L, part = it % parts;
          const int64_t ra = R * part / parts, rb = R * (part + 1) / parts;
          const int count = (int)std::min(L, V - v0);
          C *O = parts == 1 ? A + nbins * rc * cv : shared.get() + it * osize;
          for (int64_t r0 = ra; r0 < rb; r0 += rc) {
            const int64_t nr = std::min(rc, rb - r0);
            // A[bin][r]: planes (v0.., r) in the lanes
            for (int64_t r = 0; r < nr; ++r)
              forward_transform(u, z, vsrc + g * fv.sg + v0 * fv.sa + (r0 + r) * fv.sb,
                                FftPlanes{fv.sa, fv.ww, fv.hh, fv.ww, fv.oy, fv.ox, count},
                                A + r * cv, FftBins{nr * cv, 1, L}, scr);
            // per bin: O[m] (+)= sum over r of A[r] . B[r][m]   ([nr] x [nr, mm] -> [mm])
            if (pre)
              u.cmac(conj, nbins, nr, mm, A, nr * cv, cv,
                     pre->p + g * pre->gs + m0 * pre->js + r0 * pre->rs, pre->bs, pre->js, pre->rs,
                     O, mm * cv, cv, r0 > ra);
            else
              u.cmac(conj, nbins, nr, mm, A, nr * cv, cv, B.get() + r0 * mm * 2, mm * R * 2, 2,
                     mm * 2, O, mm * cv, cv, r0 > ra);
          }
          if (parts == 1)
            for (int64_t m = 0; m < mm; ++m) finish(v0, m, O);
        }
        if (parts > 1) {
          // the partial sums of a lane block, added into its first part's results
#pragma omp for schedule(dynamic)
          for (int64_t it = 0; it < vblocks * mm; ++it) {
            const int64_t vb = it / mm, m = it % mm;
            C *O = shared.get() + vb * parts * osize;
            for (int64_t part = 1; part < parts; ++part) {
              const C *o = O + part * osize;
              for (int64_t b = 0; b < nbins; ++b)
                for (int64_t e = (b * mm + m) * cv, end = e + cv; e < end; ++e) O[e] += o[e];
            }
            finish(vb * L, m, O);
          }
        }
      }
    }
  }
  return FC_OK;
}

fc_status unsupported(const ConvShape &s) {
  return fail(FC_EUNSUPPORTED, "fft: %s", fft_why_not(s));
}

// A transform mixes every value of a plane into every bin, so a NaN or an infinity would
// reach outputs it has no term in. Calls with one (all_finite, internal.h) run on the GEMM
// path instead (direct where GEMM dimensions do not fit int32), whose NaNs and infinities land
// where PyTorch's do.

}  // namespace

int64_t fft_bins(const ConvShape &s) {
  return pow2_at_least(s.in_h + 2 * s.ph) * (pow2_at_least(s.in_w + 2 * s.pw) / 2 + 1);
}

const char *fft_why_not(const ConvShape &s) {
  thread_local char why[160];
  if (s.sh != 1 || s.sw != 1) return "it needs stride 1";
  if (s.dil_h != 1 || s.dil_w != 1) return "it needs dilation 1";
  const int64_t hp = s.in_h + 2 * s.ph, wp = s.in_w + 2 * s.pw;  // (make_shape checked these fit)
  if (hp > kMaxDim || wp > kMaxDim) {
    std::snprintf(why, sizeof why, "it needs a padded plane within %lld x %lld, got %lld x %lld",
                  (long long)kMaxDim, (long long)kMaxDim, (long long)hp, (long long)wp);
    return why;
  }
  const int64_t nh = pow2_at_least(hp), nw = pow2_at_least(wp);
  if (nh * nw > kMaxArea) {
    std::snprintf(why, sizeof why, "its %lld x %lld transform exceeds %lld points", (long long)nh,
                  (long long)nw, (long long)kMaxArea);
    return why;
  }
  // The smallest chunks (one m, one block of r) must fit in sane memory: 1 GiB of complex
  // doubles per thread.
  const int64_t per_bin = std::max(std::max(s.n, s.c), s.k) + 2 * kMaxLanes;
  if (nh * (nw / 2 + 1) > (int64_t(1) << 26) / per_bin) {
    std::snprintf(why, sizeof why,
                  "its smallest chunk of transforms would exceed 1 GiB per thread (%lld x %lld "
                  "planes with batch or channels up to %lld)",
                  (long long)nh, (long long)nw, (long long)std::max(std::max(s.n, s.c), s.k));
    return why;
  }
  return nullptr;
}

bool fft_supports(const ConvShape &s) { return fft_why_not(s) == nullptr; }

// y(n, k) = sum over c of x(n, c) * conj w(k, c)
Problem forward_problem(const ConvShape &s) {
  return {s.n,
          s.kg,
          s.cg,
          {s.c * s.hw, s.hw, s.cg * s.hw, s.in_h, s.in_w, s.ph, s.pw},
          {s.ckk, s.kk, s.kg * s.ckk, s.kh, s.kw, 0, 0},
          {s.k * s.howo, s.howo, s.kg * s.howo, s.ho, s.wo, 0, 0},
          true};
}

// dx(n, c) = sum over k of dy(n, k) * w(k, c)
Problem data_problem(const ConvShape &s) {
  return {s.n,
          s.cg,
          s.kg,
          {s.k * s.howo, s.howo, s.kg * s.howo, s.ho, s.wo, 0, 0},
          {s.kk, s.ckk, s.kg * s.ckk, s.kh, s.kw, 0, 0},
          {s.c * s.hw, s.hw, s.cg * s.hw, s.in_h, s.in_w, s.ph, s.pw},
          false};
}

// The prepared filters' bins (fft_prepare_filters): bin b of plane (k, c) of group g is the
// complex scalar at 2 * (((b * groups + g) * kg + k) * cg + c), read as the forward's Q
// (j = k, r = c) or as the data gradient's (j = c, r = k).
PreBins prepared_bins(const ConvShape &s, const double *spec, bool data) {
  const int64_t cs = 2, ks = s.cg * cs;
  return {spec, s.g * s.kg * ks, s.kg * ks, data ? cs : ks, data ? ks : cs};
}

template <class T>
fc_status conv2d_forward__fft(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  if (!fft_supports(s)) return unsupported(s);
  if (!all_finite(x, s.n * s.c * s.hw) || !all_finite(w, s.k * s.ckk))
    return im2col_supports(s) ? conv2d_forward__im2col(s, x, w, b, y)
                              : conv2d_forward__direct(s, x, w, b, y);
  return fft_products(s, forward_problem(s), x, w, y, b);
}

template <class T>
fc_status conv2d_backward_data__fft(const ConvShape &s, const T *dy, const T *w, T *dx) {
  if (!fft_supports(s)) return unsupported(s);
  if (!all_finite(dy, s.n * s.k * s.howo) || !all_finite(w, s.k * s.ckk))
    return im2col_supports(s) ? conv2d_backward_data__im2col(s, dy, w, dx)
                              : conv2d_backward_data__direct(s, dy, w, dx);
  return fft_products(s, data_problem(s), dy, w, dx, static_cast<const T *>(nullptr));
}

// Where a training step keeps the forward's filter bins for its data gradient: where both
// ordinary calls take the filters as the broadcast operand (lanes over the images: a batch
// that fills the lanes strictly better than the channels, 4 or 8 images with AVX2's 4 doubles
// against channel counts that are not multiples of 4), so the calls on the bins are theirs,
// bit for bit, without the filter transform; and where the bins, kept from the forward until
// the backward, stay within 16 MiB (complex doubles: nh * (nw/2 + 1) * k * cg * 16 bytes,
// 20-170x the weights). Measured there (3-18 channels, 5x5-11x11 on 20x20-64x64 planes, batch
// 4 and 8, interleaved, best of 15, AVX2 EPYC, 2 threads): forward and data gradient 0.69-0.95x
// the ordinary calls' time. Where the channels fill the lanes as well, the ordinary calls put
// the filters in them, and the bins with the images in the lanes took 1.6-3.8x their time.
bool fft_reuse_pays(const ConvShape &s) {
  if (!fft_supports(s)) return false;
  const int64_t L = fft_ukernels().lanes;
  return lanes_over_i(s.n, s.kg, L) && lanes_over_i(s.n, s.cg, L) &&
         fft_spectra_size(s) * (int64_t)sizeof(double) <= (int64_t(16) << 20);
}

int64_t fft_spectra_size(const ConvShape &s) { return fft_bins(s) * s.g * s.kg * s.cg * 2; }

template <class T>
bool fft_prepare_filters(const ConvShape &s, const T *w, double *spec) {
  if (!all_finite(w, s.k * s.ckk)) return false;
  const FftUKernels &u = fft_ukernels();
  const FftSize z = fft_size(s);
  const int64_t L = u.lanes, cblocks = ceil_div(s.cg, L), items = s.g * s.kg * cblocks;
  const PreBins pre = prepared_bins(s, spec, false);
  const int nt = num_threads();
  Buffer<double> scratch(fft_scratch_size(z, u.lanes) * nt);
  if (!scratch.ok()) return false;  // (then the calls run on w, as without the bins)
#pragma omp parallel num_threads(nt)
  {
    double *scr = scratch.get() + fft_scratch_size(z, u.lanes) * omp_get_thread_num();
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t g = it / (s.kg * cblocks), k = it / cblocks % s.kg, c0 = it % cblocks * L;
      // planes (k, c0..) in the lanes, their bins as complex scalars (lane stride: one c)
      const FftPlanes p{s.kk, s.kw, s.kh, s.kw, 0, 0, (int)std::min(L, s.cg - c0)};
      forward_transform(u, z, w + (g * s.kg + k) * s.ckk + c0 * s.kk, p,
                        spec + g * pre.gs + k * pre.js + c0 * pre.rs, FftBins{pre.bs, pre.rs, 1},
                        scr);
    }
  }
  return true;
}

template <class T>
fc_status conv2d_forward__fft_prepared(const ConvShape &s, const T *x, const double *spec,
                                       const T *b, T *y, bool *finite) {
  *finite = all_finite(x, s.n * s.c * s.hw);
  if (!*finite) return FC_OK;
  const PreBins pre = prepared_bins(s, spec, false);
  return fft_products(s, forward_problem(s), x, static_cast<const T *>(nullptr), y, b, &pre);
}

template <class T>
fc_status conv2d_backward_data__fft_prepared(const ConvShape &s, const T *dy, const double *spec,
                                             T *dx, bool accumulate, bool *finite) {
  *finite = all_finite(dy, s.n * s.k * s.howo);
  if (!*finite) return FC_OK;
  const PreBins pre = prepared_bins(s, spec, true);
  const T *none = nullptr;
  if (!accumulate) return fft_products(s, data_problem(s), dy, none, dx, none, &pre);
  const int64_t n = s.n * s.c * s.hw;
  Buffer<T> tmp(n);
  if (!tmp.ok())
    return fail(FC_ENOMEM, "fft: cannot allocate %lld bytes of data gradient",
                (long long)(n * (int64_t)sizeof(T)));
  if (fc_status st = fft_products(s, data_problem(s), dy, none, tmp.get(), none, &pre)) return st;
  add_inplace(n, dx, tmp.get());
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_weight__fft(const ConvShape &s, const T *dy, const T *x, T *dw) {
  if (!fft_supports(s)) return unsupported(s);
  if (!all_finite(x, s.n * s.c * s.hw) || !all_finite(dy, s.n * s.k * s.howo))
    return im2col_supports(s) ? conv2d_backward_weight__im2col(s, dy, x, dw)
                              : conv2d_backward_weight__direct(s, dy, x, dw);
  // dw(c, k) = sum over n of x(c, n) * conj dy(k, n)
  const Problem pb{s.cg,
                   s.kg,
                   s.n,
                   {s.hw, s.c * s.hw, s.cg * s.hw, s.in_h, s.in_w, s.ph, s.pw},
                   {s.howo, s.k * s.howo, s.kg * s.howo, s.ho, s.wo, 0, 0},
                   {s.kk, s.ckk, s.kg * s.ckk, s.kh, s.kw, 0, 0},
                   true};
  return fft_products(s, pb, x, dy, dw, static_cast<const T *>(nullptr));
}

FC_INSTANTIATE_CONV_ALGO(fft, float)
FC_INSTANTIATE_CONV_ALGO(fft, double)

#define FC_INSTANTIATE_FFT_PREPARED(T)                                                             \
  template bool fft_prepare_filters<T>(const ConvShape &, const T *, double *);                    \
  template fc_status conv2d_forward__fft_prepared<T>(const ConvShape &, const T *, const double *, \
                                                     const T *, T *, bool *);                      \
  template fc_status conv2d_backward_data__fft_prepared<T>(const ConvShape &, const T *,           \
                                                           const double *, T *, bool, bool *);
FC_INSTANTIATE_FFT_PREPARED(float)
FC_INSTANTIATE_FFT_PREPARED(double)

}  // namespace fc
