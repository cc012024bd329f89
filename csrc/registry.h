// The convolution algorithms, one row each: everything api.cpp, fc_algo_name, the C ABI's
// registry queries and (through them) Python know about an algorithm. Adding one is a row in
// registry.cpp, its file in conv/, its fc_algo value in fastconv.h (and kernels.pxd).
#pragma once
#include <type_traits>

#include "internal.h"

namespace fc {

// An algorithm's three entry points for one dtype (defined in its conv/ file, instantiated
// there for float and double with FC_INSTANTIATE_CONV_ALGO), and optionally a data gradient
// that adds into dx (dx += ..., fc_conv2d_backward_data_into) where the algorithm can do that
// without a second buffer; nullptr: the dispatch adds a temporary's result.
template <class T>
struct ConvEntries {
  PhaseForward<T> forward;
  PhaseBackwardData<T> backward_data;
  PhaseBackwardWeight<T> backward_weight;
  PhaseBackwardData<T> backward_data_into;
};

// Bits of AlgoRow::directions, one per fc_direction.
constexpr unsigned dir_bit(fc_direction d) { return 1u << (unsigned)d; }
constexpr unsigned kAllDirections =
    dir_bit(FC_DIR_FORWARD) | dir_bit(FC_DIR_BACKWARD_DATA) | dir_bit(FC_DIR_BACKWARD_WEIGHT);

struct AlgoRow {
  fc_algo id;
  const char *name;         // fc_algo_name; the name Python's algo= takes
  const char *description;  // one line: what it computes and what it can run
  // Why it cannot run s (the text after "... cannot run this descriptor: "), nullptr when it
  // can. Checked once per call, before any entry point runs.
  const char *(*why_not)(const ConvShape &s);
  unsigned directions;  // dir_bit()s of the directions it has entry points for
  // Dilated unit-stride convolutions run as undilated ones on the input's phase planes
  // (conv/phases.cpp): the dispatch wraps the entry points, which only see phase_shape(s).
  bool phase_planes;
  // A NaN or an infinity in an input makes the entry point redo the call on im2col (direct
  // where GEMM dimensions do not fit int32), which keeps it to the outputs it reaches; without
  // this, the algorithm's own sums place them as a plain convolution does.
  bool non_finite_fallback;
  // Estimated time of one call of direction dir on a shape it supports, in units of one
  // multiply-add at a well-shaped float32 GEMM's rate: cheap, positive, finite, good to rank
  // algorithms within a factor of about two (it prunes a tuner's candidates, it does not
  // choose). The model of each row is described at its function in registry.cpp.
  double (*cost)(const ConvShape &s, fc_direction dir);
  ConvEntries<float> f32;
  ConvEntries<double> f64;
};

// The row of algorithm a, or nullptr for FC_ALGO_AUTO and values that are no algorithm.
const AlgoRow *algo_row(fc_algo a);

template <class T>
const ConvEntries<T> &entries(const AlgoRow &r) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double");
  if constexpr (std::is_same_v<T, float>) return r.f32;
  else return r.f64;
}

}  // namespace fc
