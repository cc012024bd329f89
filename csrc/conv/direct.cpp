// Direct convolution: no workspace. Loops are blocked so each call of a per-ISA row micro-kernel
// (cpu/ukernels.h) updates KB output rows from one input row: register-blocked over output
// channels x output width, the input channels streamed through while KB output rows stay in L1.
// Stride and dilation are parameters of the row kernels (input stride, tap offsets).
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
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t ih = oh * s.sh - s.ph + i * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      const T *xr = xg + c * s.hw + ih * s.w;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t off = j * s.dw - s.pw;
        int64_t lo, hi;
        valid_range(off, s.sw, s.w, s.wo, &lo, &hi);
        lo = std::max(lo, a);
        hi = std::min(hi, b);
        if (lo >= hi) continue;
        // y[k0:k0+nk, oh, lo:hi] += w[k0:k0+nk, c, i, j] * x[c, ih, lo*sw+off : : sw]
        uk.conv_rows(yk + oh * s.wo + lo, s.howo, nk, wk + (c * s.kh + i) * s.kw + j, s.ckk,
                     xr + lo * s.sw + off, s.sw, hi - lo);
      }
    }
  }
}

}  // namespace

template <class T>
fc_status conv2d_forward__direct(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  // Register tiles need unit stride along the row (vector loads of the input).
  const bool tiles = s.sw == 1 && uk.direct_tile != nullptr;
  const int64_t kbn = tiles ? uk.kb : KB;
  const int64_t kblocks = (s.kg + kbn - 1) / kbn;
  const int64_t items = s.n * s.g * kblocks;
  // Weights packed [group][k block][c][i][j][kbn] (zero rows pad the last block), so a tile
  // broadcasts its kbn weights of one tap from one cache line.
  Buffer<T> packed(tiles ? s.g * kblocks * kbn * s.ckk : 1);
  if (!packed.ok()) return fail(FC_ENOMEM, "direct: cannot allocate the packed weights");
  const int nt = num_threads();
  if (tiles) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t gb = 0; gb < s.g * kblocks; ++gb) {
      const int64_t k0 = (gb / kblocks) * s.kg + (gb % kblocks) * kbn;
      const int64_t nk = std::min(kbn, (gb / kblocks + 1) * s.kg - k0);
      T *dst = packed.get() + gb * kbn * s.ckk;
      for (int64_t t = 0; t < s.ckk; ++t)
        for (int64_t r = 0; r < kbn; ++r) dst[t * kbn + r] = r < nk ? w[(k0 + r) * s.ckk + t] : T(0);
    }
  }
  // Output columns where every tap j is in bounds: [lo_all, hi_all).
  int64_t lo_all = 0, hi_all = s.wo;
  for (int64_t j = 0; j < s.kw; ++j) {
    int64_t lo, hi;
    valid_range(j * s.dw - s.pw, s.sw, s.w, s.wo, &lo, &hi);
    lo_all = std::max(lo_all, lo);
    hi_all = std::min(hi_all, hi);
  }
  const int64_t step = tiles ? int64_t(uk.vlen) * uk.max_nvec : 0;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / (s.g * kblocks), g = (it / kblocks) % s.g, kb = it % kblocks;
    const int64_t k0 = g * s.kg + kb * kbn, nk = std::min(kbn, s.kg - kb * kbn);
    T *yk = y + (n * s.k + k0) * s.howo;
    for (int64_t r = 0; r < nk; ++r) fill_bias_plane(yk + r * s.howo, s.howo, b, k0 + r);
    const T *wk = w + k0 * s.ckk;
    const T *xg = x + (n * s.c + g * s.cg) * s.hw;
    const T *wp = packed.get() + (g * kblocks + kb) * kbn * s.ckk;
    for (int64_t oh = 0; oh < s.ho; ++oh) {
      const int64_t ih0 = oh * s.sh - s.ph;
      const bool rows_in = ih0 >= 0 && ih0 + (s.kh - 1) * s.dh < s.h;
      int64_t a = lo_all;
      if (tiles && rows_in && hi_all - lo_all >= uk.vlen) {
        for (; hi_all - a >= uk.vlen; a += step) {
          const int nvec = (int)std::min<int64_t>(uk.max_nvec, (hi_all - a) / uk.vlen);
          uk.direct_tile(xg + ih0 * s.w + a - s.pw, s.w, s.hw, wp, s.cg, s.kh, s.kw, s.dh, s.dw,
                         yk + oh * s.wo + a, s.howo, nk, nvec, 0);
          if (nvec < uk.max_nvec) {
            a += int64_t(nvec) * uk.vlen;
            break;
          }
        }
        if (a < hi_all) {  // a last vector, overlapping the previous tile, covers the tail
          const int64_t t0 = hi_all - uk.vlen;
          uk.direct_tile(xg + ih0 * s.w + t0 - s.pw, s.w, s.hw, wp, s.cg, s.kh, s.kw, s.dh, s.dw,
                         yk + oh * s.wo + t0, s.howo, nk, 1, (int)(a - t0));
        }
        // the border columns, where some taps fall into the padding
        forward_rows(s, uk, xg, wk, yk, nk, oh, 0, lo_all);
        forward_rows(s, uk, xg, wk, yk, nk, oh, hi_all, s.wo);
      } else {
        forward_rows(s, uk, xg, wk, yk, nk, oh, 0, s.wo);
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_data__direct(const ConvShape &s, const T *dy, const T *w, T *dx) {
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
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.h) continue;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t off = j * s.dw - s.pw;
            int64_t lo, hi;
            valid_range(off, s.sw, s.w, s.wo, &lo, &hi);
            if (lo >= hi) continue;
            // dx[c0:c0+nc, ih, lo*sw+off : : sw] += w[k, c0:c0+nc, i, j] * dy[k, oh, lo:hi]
            uk.scatter_rows(dxc + ih * s.w + lo * s.sw + off, s.hw, s.sw, nc,
                            wk + i * s.kw + j, s.kk, dyk + oh * s.wo + lo, hi - lo);
          }
        }
      }
    }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_weight__direct(const ConvShape &s, const T *dy, const T *x, T *dw) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t items = s.k * s.cg;  // one (k, c) pair each: its kh*kw taps, no races
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 4)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t k = it / s.cg, c = it % s.cg, g = k / s.kg;
    T *dwkc = dw + k * s.ckk + c * s.kk;
    for (int64_t i = 0; i < s.kh; ++i) {
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t off = j * s.dw - s.pw;
        int64_t lo, hi;
        valid_range(off, s.sw, s.w, s.wo, &lo, &hi);
        double acc = 0;
        for (int64_t n = 0; n < s.n && lo < hi; ++n) {
          const T *dyk = dy + (n * s.k + k) * s.howo;
          const T *xc = x + (n * s.c + g * s.cg + c) * s.hw;
          for (int64_t oh = 0; oh < s.ho; ++oh) {
            const int64_t ih = oh * s.sh - s.ph + i * s.dh;
            if (ih < 0 || ih >= s.h) continue;
            // sum over ow of dy[k, oh, ow] * x[c, ih, ow*sw + off]
            acc += uk.dot(dyk + oh * s.wo + lo, xc + ih * s.w + lo * s.sw + off, s.sw, hi - lo);
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
