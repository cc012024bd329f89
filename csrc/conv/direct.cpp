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

template <class T>
fc_status conv2d_forward__direct(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  const UKernels<T> &uk = ukernels<T>();
  const int64_t kblocks = (s.kg + KB - 1) / KB;
  const int64_t items = s.n * s.g * kblocks;
#pragma omp parallel for num_threads(num_threads()) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t n = it / (s.g * kblocks), g = (it / kblocks) % s.g, kb = it % kblocks;
    const int64_t k0 = g * s.kg + kb * KB, nk = std::min(KB, s.kg - kb * KB);
    T *yk = y + (n * s.k + k0) * s.howo;
    for (int64_t r = 0; r < nk; ++r) fill_bias_plane(yk + r * s.howo, s.howo, b, k0 + r);
    const T *wk = w + k0 * s.ckk;
    const T *xg = x + (n * s.c + g * s.cg) * s.hw;
    for (int64_t oh = 0; oh < s.ho; ++oh) {
      for (int64_t c = 0; c < s.cg; ++c) {
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t ih = oh * s.sh - s.ph + i * s.dh;
          if (ih < 0 || ih >= s.h) continue;
          const T *xr = xg + c * s.hw + ih * s.w;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t off = j * s.dw - s.pw;
            int64_t lo, hi;
            valid_range(off, s.sw, s.w, s.wo, &lo, &hi);
            if (lo >= hi) continue;
            // y[k0:k0+nk, oh, lo:hi] += w[k0:k0+nk, c, i, j] * x[c, ih, lo*sw+off : ... : sw]
            uk.conv_rows(yk + oh * s.wo + lo, s.howo, nk, wk + (c * s.kh + i) * s.kw + j, s.ckk,
                         xr + lo * s.sw + off, s.sw, hi - lo);
          }
        }
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
