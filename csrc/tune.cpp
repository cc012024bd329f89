// Measured algorithm choice (see tune.h): the in-memory table, the measurement, and its text
// form for export/import (the Python package persists it per machine).
#include "tune.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "hw.h"

namespace fc {

namespace {

// Candidates whose cost estimate is more than kPrune times the cheapest are not timed.
constexpr double kPrune = 4.0;
// Each candidate runs once untimed (its first call pays page faults and cold caches, which a
// tuned layer pays once, not every call), then at most kRuns timed runs, fewer once it is
// kGiveUp times slower than the best so far; a key stops trying new candidates after kBudget
// seconds. Candidates within kClose of the best then run kRefine more rounds, taking turns, so a
// burst of load on a shared machine does not decide between two near-equal algorithms. Within
// 15% and 3 rounds (session 35) the tuned choice came out over 1.05x the fastest in 12 of 318
// cases of bench auto on Zen 4, up to 1.40x: a slow spell on the memory side (1.3-2x on this
// kind of machine) had put the faster one out of reach of the refining rounds; within 30% and
// 5 rounds still 11 (L1's forward at one image, the run's first case: direct 1.32x FFT's time),
// hence 5 timed runs before them (was 3).
constexpr int kRuns = 5, kRefine = 5;
constexpr double kGiveUp = 2.0, kBudget = 2.0, kClose = 1.3;

struct Entry {
  fc_algo algo;
  double seconds;
};

std::mutex g_mu;
std::map<TuneKey, Entry> g_table;
std::atomic<int> g_mode{[] {
  const char *env = std::getenv("FASTCONV_AUTOTUNE");
  return env && (!std::strcmp(env, "on") || !std::strcmp(env, "1") || !std::strcmp(env, "persist"))
             ? 1
             : 0;
}()};

// The ISA named in an imported line (the text form names it, the key holds the enum).
bool isa_by_name(const std::string &name, Isa *out) {
  for (Isa i : {Isa::kGeneric, Isa::kAvx2, Isa::kAvx512})
    if (name == isa_name(i)) {
      *out = i;
      return true;
    }
  return false;
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

fc_algo algo_by_name(const std::string &name) {
  for (int i = 1; i < FC_ALGO_COUNT_; ++i)
    if (name == fc_algo_name((fc_algo)i)) return (fc_algo)i;
  return FC_ALGO_AUTO;
}

}  // namespace

bool TuneKey::operator<(const TuneKey &o) const { return std::memcmp(this, &o, sizeof *this) < 0; }
bool TuneKey::operator==(const TuneKey &o) const {
  return std::memcmp(this, &o, sizeof *this) == 0;
}

TuneKey tune_key(const ConvShape &s, fc_direction dir, fc_dtype t, int threads) {
  TuneKey k;
  std::memset(&k, 0, sizeof k);  // (padding too: keys compare as bytes)
  const int64_t d[14] = {s.n,  s.c,  s.in_h, s.in_w, s.k,     s.kh,    s.kw,
                         s.sh, s.sw, s.ph,   s.pw,   s.dil_h, s.dil_w, s.g};
  std::memcpy(k.desc, d, sizeof d);
  k.dir = dir;
  k.dtype = t;
  k.threads = threads;
  k.isa = (int32_t)hardware().isa;
  return k;
}

bool autotune_on() { return g_mode.load(std::memory_order_relaxed) != 0; }

bool tuned_lookup(const TuneKey &key, fc_algo *a) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_table.find(key);
  if (it == g_table.end()) return false;
  *a = it->second.algo;
  return true;
}

fc_algo tuned_algo(const TuneKey &key, const std::vector<TuneCandidate> &candidates,
                   fc_algo fallback, const std::function<fc_status(fc_algo)> &run, fc_status *st) {
  *st = FC_OK;
  fc_algo known;
  if (tuned_lookup(key, &known)) return known;
  if (candidates.empty()) return fallback;
  double cheapest = candidates[0].cost;
  for (const auto &c : candidates) cheapest = std::min(cheapest, c.cost);
  // The heuristic's choice first: its time bounds how long the others may take.
  std::vector<TuneCandidate> order(candidates);
  std::stable_sort(order.begin(), order.end(), [&](const TuneCandidate &a, const TuneCandidate &b) {
    return (a.algo == fallback) > (b.algo == fallback);
  });
  fc_algo best = FC_ALGO_AUTO;
  double best_t = 0;
  std::vector<Entry> timed;  // every candidate that ran, with its best time
  const double start = now();
  // One run of candidate a: its seconds, < 0 when it ran out of memory; any other error is
  // left in *st and ends tuning.
  auto time_run = [&](fc_algo a) {
    const double t0 = now();
    const fc_status s = run(a);
    const double t = now() - t0;
    if (s != FC_ENOMEM) *st = s;
    return s == FC_OK ? t : -1.0;
  };
  for (const auto &c : order) {
    if (c.algo != fallback && c.cost > kPrune * cheapest) continue;
    if (best != FC_ALGO_AUTO && now() - start > kBudget) break;
    const double warm = time_run(c.algo);
    if (*st != FC_OK) return fallback;
    if (warm < 0) continue;  // (another candidate may fit)
    double t_min = warm;
    if (best == FC_ALGO_AUTO || warm <= 2 * kGiveUp * best_t) {  // (else far behind, cold or not)
      for (int r = 0; r < kRuns; ++r) {
        const double t = time_run(c.algo);
        if (*st != FC_OK) return fallback;
        if (t < 0) break;
        t_min = r ? std::min(t_min, t) : t;
        if (best != FC_ALGO_AUTO && t_min > kGiveUp * best_t) break;
      }
    }
    timed.push_back({c.algo, t_min});
    if (best == FC_ALGO_AUTO || t_min < best_t) {
      best = c.algo;
      best_t = t_min;
    }
  }
  std::vector<Entry *> close;
  for (auto &e : timed)
    if (e.seconds <= kClose * best_t) close.push_back(&e);
  for (int r = 0; close.size() > 1 && r < kRefine && now() - start < 2 * kBudget; ++r) {
    for (Entry *e : close) {
      const double t = time_run(e->algo);
      if (*st != FC_OK) return fallback;
      if (t >= 0) e->seconds = std::min(e->seconds, t);
    }
  }
  for (Entry *e : close)
    if (e->seconds < best_t) {
      best = e->algo;
      best_t = e->seconds;
    }
  if (best == FC_ALGO_AUTO) return fallback;  // every candidate ran out of memory
  std::lock_guard<std::mutex> lock(g_mu);
  g_table[key] = {best, best_t};
  return best;
}

}  // namespace fc

using namespace fc;

extern "C" {

fc_status fc_set_autotune(int mode) {
  clear_error();
  if (mode != FC_AUTOTUNE_OFF && mode != FC_AUTOTUNE_ON)
    return fail(FC_EINVAL, "mode must be FC_AUTOTUNE_OFF (0) or FC_AUTOTUNE_ON (1), got %d", mode);
  g_mode.store(mode, std::memory_order_relaxed);
  return FC_OK;
}

int fc_get_autotune(void) { return g_mode.load(std::memory_order_relaxed); }

void fc_autotune_clear(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_table.clear();
}

int64_t fc_autotune_size(void) {
  std::lock_guard<std::mutex> lock(g_mu);
  return (int64_t)g_table.size();
}

// One line per entry: the 14 descriptor fields, direction, dtype, threads, ISA name, the
// algorithm's name and its measured seconds.
fc_status fc_autotune_export(char *buf, int64_t cap, int64_t *needed) {
  clear_error();
  if (!needed) return fail(FC_EINVAL, "needed must not be NULL");
  if (cap < 0 || (cap > 0 && !buf)) return fail(FC_EINVAL, "buf must hold cap >= 0 bytes");
  std::string text;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const auto &kv : g_table) {
      char line[512];
      int at = 0;
      for (int64_t v : kv.first.desc)
        at += std::snprintf(line + at, sizeof line - at, "%" PRId64 " ", v);
      std::snprintf(line + at, sizeof line - at, "%d %d %d %s %s %.9g\n", kv.first.dir,
                    kv.first.dtype, kv.first.threads, isa_name((Isa)kv.first.isa),
                    fc_algo_name(kv.second.algo), kv.second.seconds);
      text += line;
    }
  }
  *needed = (int64_t)text.size() + 1;
  if (cap < *needed)
    return cap == 0 ? FC_OK
                    : fail(FC_EINVAL, "buf holds %lld bytes, the table needs %lld", (long long)cap,
                           (long long)*needed);
  std::memcpy(buf, text.c_str(), text.size() + 1);
  return FC_OK;
}

fc_status fc_autotune_import(const char *text, int64_t *entries) {
  clear_error();
  if (!text) return fail(FC_EINVAL, "text must not be NULL");
  std::istringstream in(text);
  std::string line;
  std::map<TuneKey, Entry> parsed;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    TuneKey k;
    std::memset(&k, 0, sizeof k);
    std::string isa, algo;
    double seconds = 0;
    for (int64_t &v : k.desc) f >> v;
    f >> k.dir >> k.dtype >> k.threads >> isa >> algo >> seconds;
    std::string rest;
    const fc_algo a = algo_by_name(algo);
    bool ok = !f.fail() && !(f >> rest) && a != FC_ALGO_AUTO && k.dir >= 0 &&
              k.dir <= FC_DIR_BACKWARD_WEIGHT && (k.dtype == FC_F32 || k.dtype == FC_F64) &&
              k.threads >= 1 && k.threads <= FC_MAX_THREADS && seconds >= 0;
    Isa isa_value = Isa::kGeneric;
    ok = ok && isa_by_name(isa, &isa_value);
    for (int i = 0; ok && i < 14; ++i) ok = k.desc[i] >= (i >= 9 && i <= 10 ? 0 : 1);
    if (!ok)
      return fail(FC_EINVAL, "line %lld is not an autotune entry: '%.80s'", (long long)lineno,
                  line.c_str());
    k.isa = (int32_t)isa_value;
    parsed[k] = {a, seconds};
  }
  std::lock_guard<std::mutex> lock(g_mu);
  for (const auto &kv : parsed) g_table[kv.first] = kv.second;
  if (entries) *entries = (int64_t)parsed.size();
  return FC_OK;
}

}  // extern "C"
