// Measured algorithm choice (autotuning), as cuDNN's benchmark mode or FFTW's wisdom: for a key
// (descriptor, direction, dtype, thread count, ISA), the applicable algorithms are timed on the
// call's own buffers the first time the key is seen, and the fastest is remembered.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "internal.h"

namespace fc {

struct TuneKey {
  int64_t desc[14];  // fc_conv2d_desc's fields in its order: n c h w k kh kw ... groups
  int32_t dir, dtype, threads, isa;
  bool operator<(const TuneKey &o) const;
  bool operator==(const TuneKey &o) const;
};

TuneKey tune_key(const ConvShape &s, fc_direction dir, fc_dtype t, int threads);

// An algorithm that may run the key, with the registry's cost estimate for it.
struct TuneCandidate {
  fc_algo algo;
  double cost;
};

bool autotune_on();

// The remembered choice for key, if any.
bool tuned_lookup(const TuneKey &key, fc_algo *a);

// The algorithm for `key` while tuning is on: remembered, or measured now by calling
// run(a) for the candidates (those within kPrune of the cheapest estimate, each timed at most
// a few times and within a time budget), which writes the call's outputs; the caller runs the
// returned algorithm afterwards, so the outputs end as that algorithm leaves them. A candidate
// failing with FC_ENOMEM is skipped; any other failure is returned in *st.
fc_algo tuned_algo(const TuneKey &key, const std::vector<TuneCandidate> &candidates,
                   fc_algo fallback, const std::function<fc_status(fc_algo)> &run, fc_status *st);

}  // namespace fc
