// The naive twin of every convolution path: plain loops in the textbook gather form, each
// output accumulated in double. Slow on purpose, short on purpose; tests compare against it.
#include "../internal.h"

namespace fc {

template <class T>
fc_status conv2d_forward__reference(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t nk = 0; nk < s.n * s.k; ++nk) {
    const int64_t n = nk / s.k, k = nk % s.k, g = k / s.kg;
    for (int64_t oh = 0; oh < s.ho; ++oh)
      for (int64_t ow = 0; ow < s.wo; ++ow) {
        double acc = b ? (double)b[k] : 0.0;
        for (int64_t c = 0; c < s.cg; ++c)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t ih = oh * s.sh - s.ph + i * s.dil_h,
                            iw = ow * s.sw - s.pw + j * s.dil_w;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
              acc += (double)x[((n * s.c + g * s.cg + c) * s.in_h + ih) * s.in_w + iw] *
                     (double)w[((k * s.cg + c) * s.kh + i) * s.kw + j];
            }
        y[(nk * s.ho + oh) * s.wo + ow] = (T)acc;
      }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_data__reference(const ConvShape &s, const T *dy, const T *w, T *dx) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t nc = 0; nc < s.n * s.c; ++nc) {
    const int64_t n = nc / s.c, c = nc % s.c, g = c / s.cg, cl = c % s.cg;
    for (int64_t ih = 0; ih < s.in_h; ++ih)
      for (int64_t iw = 0; iw < s.in_w; ++iw) {
        double acc = 0;
        for (int64_t k = g * s.kg; k < (g + 1) * s.kg; ++k)
          for (int64_t i = 0; i < s.kh; ++i)
            for (int64_t j = 0; j < s.kw; ++j) {
              // ih = oh*sh - ph + i*dil_h  =>  oh = (ih + ph - i*dil_h) / sh when that divides
              const int64_t th = ih + s.ph - i * s.dil_h, tw = iw + s.pw - j * s.dil_w;
              if (th < 0 || tw < 0 || th % s.sh || tw % s.sw) continue;
              const int64_t oh = th / s.sh, ow = tw / s.sw;
              if (oh >= s.ho || ow >= s.wo) continue;
              acc += (double)dy[((n * s.k + k) * s.ho + oh) * s.wo + ow] *
                     (double)w[((k * s.cg + cl) * s.kh + i) * s.kw + j];
            }
        dx[(nc * s.in_h + ih) * s.in_w + iw] = (T)acc;
      }
  }
  return FC_OK;
}

template <class T>
fc_status conv2d_backward_weight__reference(const ConvShape &s, const T *dy, const T *x, T *dw) {
#pragma omp parallel for num_threads(num_threads()) schedule(static)
  for (int64_t kc = 0; kc < s.k * s.cg; ++kc) {
    const int64_t k = kc / s.cg, c = kc % s.cg, g = k / s.kg;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        double acc = 0;
        for (int64_t n = 0; n < s.n; ++n)
          for (int64_t oh = 0; oh < s.ho; ++oh)
            for (int64_t ow = 0; ow < s.wo; ++ow) {
              const int64_t ih = oh * s.sh - s.ph + i * s.dil_h,
                            iw = ow * s.sw - s.pw + j * s.dil_w;
              if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) continue;
              acc += (double)dy[((n * s.k + k) * s.ho + oh) * s.wo + ow] *
                     (double)x[((n * s.c + g * s.cg + c) * s.in_h + ih) * s.in_w + iw];
            }
        dw[(kc * s.kh + i) * s.kw + j] = (T)acc;
      }
  }
  return FC_OK;
}

FC_INSTANTIATE_CONV_ALGO(reference, float)
FC_INSTANTIATE_CONV_ALGO(reference, double)

}  // namespace fc
