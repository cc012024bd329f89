// fft convolution (being written: supports nothing yet).
#include "../internal.h"

namespace fc {

bool fft_supports(const ConvShape &) { return false; }

template <class T>
fc_status conv2d_forward__fft(const ConvShape &, const T *, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}
template <class T>
fc_status conv2d_backward_data__fft(const ConvShape &, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}
template <class T>
fc_status conv2d_backward_weight__fft(const ConvShape &, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}

FC_INSTANTIATE_CONV_ALGO(fft, float)
FC_INSTANTIATE_CONV_ALGO(fft, double)

}  // namespace fc
