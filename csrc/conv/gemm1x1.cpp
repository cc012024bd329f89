// 1x1 convolutions as GEMM. With stride 1 and no padding the input plane [cg, h*w] of each
// image and group is the column matrix as it lies: one GEMM per (image, column block), no copy.
// Strided or padded 1x1 convolutions gather first (im2col with a 1x1 kernel is that gather).
#include "../internal.h"

namespace fc {

bool gemm1x1_supports(const ConvShape &s) { return s.kh == 1 && s.kw == 1 && im2col_supports(s); }

template <class T>
fc_status conv2d_forward__gemm1x1(const ConvShape &s, const T *x, const T *w, const T *b, T *y) {
  return gemm_conv_forward(s, x, w, b, y, gemm_in_place(s));
}
template <class T>
fc_status conv2d_backward_data__gemm1x1(const ConvShape &s, const T *dy, const T *w, T *dx) {
  return gemm_conv_backward_data(s, dy, w, dx, gemm_in_place(s));
}
template <class T>
fc_status conv2d_backward_weight__gemm1x1(const ConvShape &s, const T *dy, const T *x, T *dw) {
  return gemm_conv_backward_weight(s, dy, x, dw, gemm_in_place(s));
}

FC_INSTANTIATE_CONV_ALGO(gemm1x1, float)
FC_INSTANTIATE_CONV_ALGO(gemm1x1, double)

}  // namespace fc
