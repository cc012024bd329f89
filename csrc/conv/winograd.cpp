// winograd convolution (being written: supports nothing yet).
#include "../internal.h"

namespace fc {

bool winograd_supports(const ConvShape &) { return false; }

template <class T>
fc_status conv2d_forward__winograd(const ConvShape &, const T *, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}
template <class T>
fc_status conv2d_backward_data__winograd(const ConvShape &, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}
template <class T>
fc_status conv2d_backward_weight__winograd(const ConvShape &, const T *, const T *, T *) {
  return FC_EUNSUPPORTED;
}

FC_INSTANTIATE_CONV_ALGO(winograd, float)
FC_INSTANTIATE_CONV_ALGO(winograd, double)

}  // namespace fc
