// The descriptor fuzz target: random fc_conv2d_desc / fc_pool2d_desc / fc_planes2d_desc fields
// (huge, negative, zero, INT64_MIN/MAX, values whose products overflow), random enum values and
// NULL pointers, on every entry. The library must only ever return a status:
//  - a descriptor it rejects is also rejected by every entry, which gets 1-element buffers, so
//    AddressSanitizer reports the first element any kernel would touch beyond them;
//  - a valid descriptor too large to allocate gets a NULL in a required pointer (FC_EINVAL);
//  - a valid small descriptor gets real buffers of exactly its sizes, outputs pre-filled with
//    NaN: FC_OK must leave every output finite (all inputs are finite).
// UndefinedBehaviorSanitizer aborts on any signed overflow in the size arithmetic.
#include <algorithm>
#include <cstdlib>
#include <map>

#include "common.h"

namespace drv {
namespace {

constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kSmall = 1 << 13;  // elements: the largest buffer the fuzzer allocates

// clang-format off: a table (clang-format would put one element a line)
const std::vector<int64_t> kInteresting = {
    kMin, kMin + 1, -(int64_t(1) << 32), -65536, -3, -2, -1, 0, 1, 2, 3, 4, 7, 16, 255, 65535,
    65536, INT32_MAX - 1, INT32_MAX, int64_t(INT32_MAX) + 1, int64_t(1) << 32,
    3037000499,  // floor(sqrt(INT64_MAX)): its square fits, one more does not
    3037000500, int64_t(1) << 40, int64_t(1) << 62, kMax / 2, kMax / 2 + 1, kMax - 1, kMax};
// clang-format on

std::map<std::string, int64_t> g_status_counts;
const bool g_trace = std::getenv("FASTCONV_DRIVER_TRACE") != nullptr;  // each descriptor to stderr

int64_t field(Rng &rng, int64_t small_lo, int64_t small_hi) {
  const double r = rng.uniform();
  if (r < 0.5) return rng.range(small_lo, small_hi);
  if (r < 0.9) return rng.pick(kInteresting);
  return (int64_t)rng.next();
}

// One field of n replaced by a hostile value, or every field random.
template <class D>
D hostile(Rng &rng, D valid, int64_t small_hi) {
  constexpr int nf = sizeof(D) / sizeof(int64_t);
  int64_t f[nf];
  std::memcpy(f, &valid, sizeof f);
  if (rng.chance(0.5)) {
    for (int k = 0, m = (int)rng.range(1, 2); k < m; ++k)
      f[rng.range(0, nf - 1)] = field(rng, 0, small_hi);
  } else {
    for (auto &v : f) v = field(rng, 0, small_hi);
  }
  D d;
  std::memcpy(&d, f, sizeof f);
  return d;
}

bool mul(std::initializer_list<int64_t> v, int64_t *out) {
  int64_t p = 1;
  for (int64_t e : v)
    if (e < 0 || __builtin_mul_overflow(p, e, &p)) return false;
  *out = p;
  return true;
}

void count(const char *entry, int st) {
  static const char *names[] = {"OK", "EINVAL", "ENOMEM", "EUNSUPPORTED", "EOVERFLOW"};
  g_status_counts[std::string(entry) + ":" + (is_status(st) ? names[st] : "INVALID")]++;
}

// A status, and a message for every failure.
bool status_ok(int st, const std::string &what) {
  if (!expect(is_status(st), what + ": returned " + std::to_string(st) + ", not an fc_status"))
    return false;
  if (st != FC_OK) expect(*fc_last_error() != '\0', what + ": failed without a message");
  return true;
}

// Mostly a registered algorithm (the library's list, fc_algo_count(), not this header's).
fc_algo random_algo(Rng &rng) {
  if (rng.chance(0.9)) return (fc_algo)rng.range(0, fc_algo_count() - 1);
  return (fc_algo)rng.pick(std::vector<int>{-1, fc_algo_count(), 100, INT32_MIN, INT32_MAX});
}

fc_dtype random_dtype(Rng &rng) {
  if (rng.chance(0.9)) return rng.chance(0.5) ? FC_F32 : FC_F64;
  return (fc_dtype)rng.pick(std::vector<int>{-1, 2, 3, INT32_MAX});
}

// Finite random contents of `count` elements of t (bytes for a bad dtype: one byte each).
struct Buf {
  std::vector<float> f;
  std::vector<double> d;
  std::vector<unsigned char> raw;
  Buf(fc_dtype t, int64_t count, Rng &rng) {
    if (t == FC_F32) f = random_vector<float>(rng, count);
    else if (t == FC_F64) d = random_vector<double>(rng, count);
    else raw.assign((size_t)count, 0);
  }
  void *p() {
    return !f.empty() ? (void *)f.data() : !d.empty() ? (void *)d.data() : (void *)raw.data();
  }
  void nan() {
    fill_nan(f);
    fill_nan(d);
  }
  bool finite() const {
    return std::all_of(f.begin(), f.end(), [](float v) { return std::isfinite(v); }) &&
           std::all_of(d.begin(), d.end(), [](double v) { return std::isfinite(v); });
  }
};

// ---- convolution --------------------------------------------------------------------------

// A forward output against FC_ALGO_REFERENCE (tolerance relative to the sum of |terms|).
template <class T>
void agrees_with_reference(const fc_conv2d_desc &d, const std::vector<T> &x,
                           const std::vector<T> &w, const std::vector<T> &y,
                           const std::vector<T> *b, const std::string &where) {
  const fc_dtype t = dtype_of<T>();
  std::vector<T> ref(y.size()), scale(y.size());
  const std::vector<T> ab = b ? abs_of(*b) : std::vector<T>();
  if (!expect(fc_conv2d_forward(&d, t, FC_ALGO_REFERENCE, x.data(), w.data(),
                                b ? b->data() : nullptr, ref.data()) == FC_OK &&
                  fc_conv2d_forward(&d, t, FC_ALGO_REFERENCE, abs_of(x).data(), abs_of(w).data(),
                                    b ? ab.data() : nullptr, scale.data()) == FC_OK,
              where + ": the reference failed"))
    return;
  expect_close(y, std::vector<double>(ref.begin(), ref.end()),
               std::vector<double>(scale.begin(), scale.end()), 2 * tolerance<T>(),
               where + " forward vs reference");
}

void fuzz_conv(const fc_conv2d_desc &d, Rng &rng) {
  const std::string where = "conv " + str(d);
  if (g_trace) std::fprintf(stderr, "%s\n", where.c_str());
  int64_t ho = -1, wo = -1;
  const int st = fc_conv2d_output_size(&d, &ho, &wo);
  count("conv2d_output_size", st);
  if (!status_ok(st, where + " output_size")) return;
  status_ok(fc_conv2d_output_size(&d, nullptr, nullptr), where + " output_size(NULL)");
  const fc_algo a = random_algo(rng);
  const int sup = fc_conv2d_supports(&d, a);
  status_ok(sup, where + " supports");
  fc_algo chosen = (fc_algo)-1;
  const int ch = fc_conv2d_choose(&d, rng.chance(0.1) ? nullptr : &chosen);
  if (status_ok(ch, where + " choose") && ch == FC_OK)
    expect(chosen > FC_ALGO_AUTO && chosen < fc_algo_count(),
           where + ": choose gave algo " + std::to_string(chosen));
  {  // the cost estimate: a status like supports()'s, and a positive finite cost with FC_OK
    double cost = -1;
    const int dir = rng.chance(0.95) ? (int)rng.range(0, 2) : (rng.chance(0.5) ? -1 : 3);
    const int cs = fc_conv2d_cost(&d, a, (fc_direction)dir, rng.chance(0.05) ? nullptr : &cost);
    count("conv2d_cost", cs);
    if (status_ok(cs, where + " cost") && cs == FC_OK)
      expect(std::isfinite(cost) && cost > 0, where + ": cost " + std::to_string(cost));
    else expect(cost == -1, where + ": cost written on failure");
    if (cs == FC_OK || cs == FC_EUNSUPPORTED)
      expect(sup == (a == FC_ALGO_AUTO ? FC_OK : cs), where + ": cost and supports disagree");
  }
  const fc_dtype t = random_dtype(rng);

  if (st != FC_OK) {  // rejected: every entry must refuse without touching its 1-element buffers
    expect(ch == st, where + ": choose disagrees with output_size");
    Buf x(FC_F64, 1, rng), w(FC_F64, 1, rng), b(FC_F64, 1, rng), y(FC_F64, 1, rng);
    const int s1 = fc_conv2d_forward(&d, t, a, x.p(), w.p(), b.p(), y.p());
    const int s2 = fc_conv2d_backward_data(&d, t, a, y.p(), w.p(), x.p());
    const int s3 = fc_conv2d_backward_weight(&d, t, a, y.p(), x.p(), w.p(), b.p());
    count("conv2d_forward", s1);
    for (int s : {s1, s2, s3})
      if (status_ok(s, where + " entry"))
        expect(s != FC_OK, where + ": an entry accepted a rejected descriptor");
    return;
  }
  expect(ho >= 1 && wo >= 1,
         where + ": valid with output " + std::to_string(ho) + "x" + std::to_string(wo));
  int64_t nx, nw, ny;
  const bool sized = mul({d.n, d.c, d.h, d.w}, &nx) &&
                     mul({d.k, d.c / d.groups, d.kh, d.kw}, &nw) && mul({d.n, d.k, ho, wo}, &ny);
  if (!expect(sized, where + ": valid, but its buffer sizes overflow int64")) return;
  const int which = (int)rng.range(0, 2);
  if (nx > kSmall || nw > kSmall || ny > kSmall) {  // valid but big: a NULL required pointer
    Buf one(FC_F64, 1, rng);
    int s;
    if (which == 0) s = fc_conv2d_forward(&d, t, a, nullptr, one.p(), nullptr, one.p());
    else if (which == 1) s = fc_conv2d_backward_data(&d, t, a, one.p(), nullptr, one.p());
    else s = fc_conv2d_backward_weight(&d, t, a, nullptr, one.p(), one.p(), nullptr);
    count("conv2d_entry(big, NULL)", s);
    if (status_ok(s, where + " NULL buffer"))
      expect(s != FC_OK, where + ": accepted a NULL buffer");
    return;
  }
  // Valid and small: real buffers of exactly the descriptor's sizes.
  fc_set_num_threads((int)rng.range(1, 2));
  Buf x(t, nx, rng), w(t, nw, rng), b(t, d.k, rng), y(t, ny, rng);
  const bool null_in = rng.chance(0.05);
  bool nothing_wanted = false;  // backward_weight with dw and db both NULL
  bool bias_used = false;
  int s;
  if (which == 0) {
    y.nan();
    bias_used = rng.chance(0.5);
    s = fc_conv2d_forward(&d, t, a, null_in ? nullptr : x.p(), w.p(), bias_used ? b.p() : nullptr,
                          y.p());
    count("conv2d_forward", s);
    if (status_ok(s, where + " forward") && s == FC_OK) {
      expect(y.finite(), where + ": forward left outputs unwritten");
      if (!null_in && !y.f.empty())
        agrees_with_reference(d, x.f, w.f, y.f, bias_used ? &b.f : nullptr, where);
      if (!null_in && !y.d.empty())
        agrees_with_reference(d, x.d, w.d, y.d, bias_used ? &b.d : nullptr, where);
    }
  } else if (which == 1) {
    x.nan();
    s = fc_conv2d_backward_data(&d, t, a, y.p(), null_in ? nullptr : w.p(), x.p());
    count("conv2d_backward_data", s);
    if (status_ok(s, where + " backward_data") && s == FC_OK)
      expect(x.finite(), where + ": backward_data left outputs unwritten");
  } else {
    const bool no_dw = rng.chance(0.2), no_db = rng.chance(0.5);
    w.nan();
    b.nan();
    s = fc_conv2d_backward_weight(&d, t, a, y.p(), null_in ? nullptr : x.p(),
                                  no_dw ? nullptr : w.p(), no_db ? nullptr : b.p());
    count("conv2d_backward_weight", s);
    if (status_ok(s, where + " backward_weight") && s == FC_OK)
      expect((no_dw || w.finite()) && (no_db || b.finite()),
             where + ": backward_weight left outputs unwritten");
    nothing_wanted = no_dw && no_db;
  }
  const bool bad_enum =
      t != FC_F32 && t != FC_F64 ? true : ((int)a < 0 || (int)a >= fc_algo_count());
  if (null_in || bad_enum || nothing_wanted)
    expect(s == FC_EINVAL, where + ": expected FC_EINVAL for a NULL input or bad enum");
  else
    expect(s == FC_OK || s == FC_EUNSUPPORTED,
           where + ": status " + std::to_string(s) + " " + fc_last_error());
}

// ---- pooling ------------------------------------------------------------------------------

void fuzz_pool(const fc_pool2d_desc &d, Rng &rng) {
  const std::string where = "pool " + str(d);
  if (g_trace) std::fprintf(stderr, "%s\n", where.c_str());
  int64_t ho = -1, wo = -1;
  const int st = fc_pool2d_output_size(&d, &ho, &wo);
  count("pool2d_output_size", st);
  if (!status_ok(st, where + " output_size")) return;
  const fc_dtype t = random_dtype(rng);
  const int incl = rng.pick(std::vector<int>{0, 1, -1, 7});
  const int64_t ov = rng.chance(0.7) ? 0 : field(rng, 1, 9);
  if (st != FC_OK) {
    Buf x(FC_F64, 1, rng), y(FC_F64, 1, rng);
    int64_t sw[1] = {0};
    const int s1 = fc_max_pool2d_forward(&d, t, x.p(), y.p(), sw);
    const int s2 = fc_avg_pool2d_forward(&d, t, incl, ov, x.p(), y.p());
    const int s3 = fc_avg_pool2d_backward(&d, t, incl, ov, y.p(), x.p());
    count("max_pool2d_forward", s1);
    for (int s : {s1, s2, s3})
      if (status_ok(s, where + " entry"))
        expect(s != FC_OK, where + ": an entry accepted a rejected descriptor");
    return;
  }
  int64_t nx, ny;
  if (!expect(mul({d.n, d.c, d.h, d.w}, &nx) && mul({d.n, d.c, ho, wo}, &ny) && ho >= 1 && wo >= 1,
              where + ": valid, but sizes overflow or output is empty"))
    return;
  if (nx > kSmall || ny > kSmall) {
    Buf one(FC_F64, 1, rng);
    const int s1 = fc_max_pool2d_forward(&d, t, nullptr, one.p(), nullptr);
    const int s2 = fc_avg_pool2d_forward(&d, t, incl, ov, one.p(), nullptr);
    const int s3 = fc_avg_pool2d_backward(&d, t, incl, ov, nullptr, one.p());
    for (int s : {s1, s2, s3})
      if (status_ok(s, where + " NULL buffer"))
        expect(s != FC_OK, where + ": accepted a NULL buffer");
    return;
  }
  fc_set_num_threads((int)rng.range(1, 2));
  Buf x(t, nx, rng), y(t, ny, rng);
  std::vector<int64_t> sw((size_t)ny, -1);
  y.nan();
  int s = fc_max_pool2d_forward(&d, t, x.p(), y.p(), rng.chance(0.5) ? sw.data() : nullptr);
  count("max_pool2d_forward", s);
  const bool good_t = t == FC_F32 || t == FC_F64;
  if (status_ok(s, where + " max forward")) {
    // A window can hold no element only with dilation: it gives -inf, so check finiteness
    // only without dilation.
    if (good_t) expect(s == FC_OK, where + ": max_pool2d_forward " + fc_last_error());
    else expect(s == FC_EINVAL, where + ": bad dtype accepted");
    if (s == FC_OK && d.dil_h == 1 && d.dil_w == 1)
      expect(y.finite(), where + ": max forward left outputs unwritten");
  }
  y.nan();
  s = fc_avg_pool2d_forward(&d, t, incl, ov, x.p(), y.p());
  count("avg_pool2d_forward", s);
  const bool avg_ok = good_t && d.dil_h == 1 && d.dil_w == 1;
  if (status_ok(s, where + " avg forward")) {
    // fastconv.h: divisor_override 0 means none; a negative one may be refused (FC_EINVAL).
    expect(avg_ok ? (s == FC_OK || (ov < 0 && s == FC_EINVAL)) : s == FC_EINVAL,
           where + ": avg_pool2d_forward(dtype=" + std::to_string(t) + ", count_include_pad=" +
               std::to_string(incl) + ", divisor_override=" + std::to_string(ov) + ") status " +
               std::to_string(s) + " " + fc_last_error());
    if (s == FC_OK) expect(y.finite(), where + ": avg forward left outputs unwritten");
  }
  x.nan();
  s = fc_avg_pool2d_backward(&d, t, incl, ov, y.p(), x.p());
  if (status_ok(s, where + " avg backward") && s == FC_OK)
    expect(x.finite(), where + ": avg backward left outputs unwritten");
}

void fuzz_planes(const fc_planes2d_desc &d, Rng &rng) {
  const std::string where = "planes " + str(d);
  if (g_trace) std::fprintf(stderr, "%s\n", where.c_str());
  const fc_dtype t = random_dtype(rng);
  int64_t nf, ns;
  const bool sized = mul({d.n, d.c, d.h, d.w}, &nf) && mul({d.n, d.c, d.ho, d.wo}, &ns) &&
                     d.n >= 1 && d.c >= 1 && d.h >= 1 && d.w >= 1 && d.ho >= 1 && d.wo >= 1;
  if (!sized || nf > kSmall || ns > kSmall) {
    // Invalid: 1-element buffers, which anything but a refusal would overrun. Valid but big:
    // a NULL in a required pointer.
    Buf a(FC_F64, 1, rng), b(FC_F64, 1, rng);
    int64_t sw[1] = {0};
    void *in = sized ? nullptr : a.p();
    const int r[] = {fc_max_pool2d_backward(&d, t, in, sw, b.p()),
                     fc_max_unpool2d_forward(&d, t, in, sw, b.p()),
                     fc_max_unpool2d_backward(&d, t, in, sw, b.p()),
                     fc_adaptive_avg_pool2d_forward(&d, t, in, b.p()),
                     fc_adaptive_avg_pool2d_backward(&d, t, in, b.p())};
    count(sized ? "planes_entry(big, NULL)" : "planes_entry(invalid)", r[0]);
    for (int s : r)
      if (status_ok(s, where + " entry")) expect(s != FC_OK, where + ": an entry accepted it");
    return;
  }
  fc_set_num_threads((int)rng.range(1, 2));
  Buf full(t, nf, rng), small(t, ns, rng);
  const int64_t hw = d.h * d.w;
  std::vector<int64_t> sw((size_t)ns);
  const bool bad_switches = rng.chance(0.3);
  for (auto &v : sw) v = rng.range(0, hw - 1);
  if (bad_switches)
    sw[rng.range(0, ns - 1)] = rng.pick(std::vector<int64_t>{-1, -2, -hw, kMin, hw, hw + 1, kMax});
  const bool good_t = t == FC_F32 || t == FC_F64;
  const int want = !good_t || bad_switches ? FC_EINVAL : FC_OK;
  full.nan();
  int s = fc_max_pool2d_backward(&d, t, small.p(), sw.data(), full.p());
  count("max_pool2d_backward", s);
  if (status_ok(s, where + " max backward"))
    expect(s == want, where + ": max_pool2d_backward status " + std::to_string(s));
  full.nan();
  s = fc_max_unpool2d_forward(&d, t, small.p(), sw.data(), full.p());
  if (status_ok(s, where + " unpool"))
    expect(s == want, where + ": max_unpool2d_forward status " + std::to_string(s));
  if (s == FC_OK) expect(full.finite(), where + ": unpool left outputs unwritten");
  small.nan();
  s = fc_max_unpool2d_backward(&d, t, full.p(), sw.data(), small.p());
  if (status_ok(s, where + " unpool backward"))
    expect(s == want, where + ": max_unpool2d_backward status " + std::to_string(s));
  Buf x(t, nf, rng);
  small.nan();
  s = fc_adaptive_avg_pool2d_forward(&d, t, x.p(), small.p());
  count("adaptive_avg_pool2d_forward", s);
  if (status_ok(s, where + " adaptive") && good_t)
    expect(s == FC_OK && small.finite(), where + ": adaptive forward");
  full.nan();
  s = fc_adaptive_avg_pool2d_backward(&d, t, small.p(), full.p());
  if (status_ok(s, where + " adaptive backward") && good_t)
    expect(s == FC_OK && full.finite(), where + ": adaptive backward");
}

// ---- element-wise --------------------------------------------------------------------------

// fc_relu_forward/backward with a hostile element count: negative -> FC_EINVAL; n elements whose
// bytes overflow int64 (n = 2^61 doubles) -> FC_EOVERFLOW with 1-element buffers, which
// anything else would overrun; valid but large -> a NULL pointer (FC_EINVAL); small -> real
// buffers, outputs NaN-filled, which FC_OK must leave finite.
void fuzz_eltwise(Rng &rng) {
  const int64_t n = field(rng, 0, kSmall);
  const fc_dtype t = random_dtype(rng);
  const std::string where = "relu n=" + std::to_string(n) + " dtype=" + std::to_string((int)t);
  if (g_trace) std::fprintf(stderr, "%s\n", where.c_str());
  const bool good_t = t == FC_F32 || t == FC_F64;
  const int64_t elem = t == FC_F32 ? 4 : 8;
  if (n < 0 || n > kSmall) {
    Buf a(FC_F64, 1, rng), b(FC_F64, 1, rng), c(FC_F64, 1, rng);
    const bool overflows = n > INT64_MAX / elem;
    void *in = n < 0 || overflows ? a.p() : nullptr;
    const int r[] = {fc_relu_forward(t, n, in, b.p()), fc_relu_backward(t, n, in, b.p(), c.p())};
    count(n < 0 ? "relu(negative)" : overflows ? "relu(overflow)" : "relu(big, NULL)", r[0]);
    for (int s : r) {
      if (!status_ok(s, where)) continue;
      expect(s != FC_OK, where + ": accepted");
      if (good_t && overflows) expect(s == FC_EOVERFLOW, where + ": not FC_EOVERFLOW");
    }
    return;
  }
  fc_set_num_threads((int)rng.range(1, 2));
  Buf x(t, n, rng), y(t, n, rng), dy(t, n, rng), dx(t, n, rng);
  y.nan();
  int s = fc_relu_forward(t, n, x.p(), y.p());
  if (status_ok(s, where + " forward") && good_t)
    expect(s == FC_OK && y.finite(), where + ": forward");
  dx.nan();
  s = fc_relu_backward(t, n, dy.p(), x.p(), dx.p());
  if (status_ok(s, where + " backward") && good_t)
    expect(s == FC_OK && dx.finite(), where + ": backward");
}

}  // namespace

int64_t run_fuzz(Rng &rng, int64_t descriptors) {
  const fc_conv2d_desc conv0{2, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2};
  const fc_pool2d_desc pool0{2, 3, 6, 6, 3, 3, 2, 2, 1, 1, 1, 1, 0};
  const fc_planes2d_desc planes0{2, 3, 6, 6, 3, 3};
  for (int64_t i = 0; i < descriptors; ++i) {
    switch (i % 5) {
      case 0:
      case 1: fuzz_conv(hostile(rng, conv0, 4), rng); break;
      case 2: fuzz_pool(hostile(rng, pool0, 4), rng); break;
      case 3: fuzz_planes(hostile(rng, planes0, 6), rng); break;
      default: fuzz_eltwise(rng); break;
    }
  }
  // NULL descriptors and out-of-range enum values in the string functions.
  int64_t ho, wo;
  expect(fc_conv2d_output_size(nullptr, &ho, &wo) == FC_EINVAL, "conv2d_output_size(NULL)");
  expect(fc_conv2d_output_size(&conv0, nullptr, nullptr) == FC_EINVAL,
         "conv2d_output_size(d, NULL, NULL)");
  expect(fc_pool2d_output_size(&pool0, nullptr, nullptr) == FC_EINVAL,
         "pool2d_output_size(d, NULL, NULL)");
  for (int64_t n : {int64_t(1) << 61, INT64_MAX / 4 + 1, INT64_MAX}) {
    float one = 1, out = 0;
    expect(fc_relu_forward(FC_F64, n, &one, &out) == FC_EOVERFLOW, "relu_forward(2^61 doubles)");
    expect(fc_relu_backward(FC_F32, n, &one, &one, &out) == FC_EOVERFLOW, "relu_backward(huge n)");
  }
  expect(fc_pool2d_output_size(nullptr, &ho, &wo) == FC_EINVAL, "pool2d_output_size(NULL)");
  expect(fc_max_pool2d_backward(nullptr, FC_F32, nullptr, nullptr, nullptr) == FC_EINVAL,
         "max_pool2d_backward(NULL)");
  for (int v : {-1, 5, 100, INT32_MIN, INT32_MAX}) {
    const char *s = fc_status_string((fc_status)v);
    expect(s != nullptr && *s, "fc_status_string(" + std::to_string(v) + ")");
  }
  for (int v : {-1, fc_algo_count(), 100, INT32_MIN}) {
    expect(fc_algo_name((fc_algo)v) == nullptr, "fc_algo_name(" + std::to_string(v) + ")");
    expect(fc_algo_description((fc_algo)v) == nullptr,
           "fc_algo_description(" + std::to_string(v) + ")");
    expect(fc_algo_flags((fc_algo)v) == 0, "fc_algo_flags(" + std::to_string(v) + ")");
  }
  for (int v = 0; v < fc_algo_count(); ++v)
    expect(fc_algo_name((fc_algo)v) && *fc_algo_name((fc_algo)v) && fc_algo_description((fc_algo)v),
           "algorithm " + std::to_string(v) + " has no name or description");
  fc_set_num_threads(0);
  std::fprintf(stderr, "fuzz statuses:");
  for (const auto &kv : g_status_counts)
    std::fprintf(stderr, " %s=%lld", kv.first.c_str(), (long long)kv.second);
  std::fprintf(stderr, "\n");
  return descriptors;
}

}  // namespace drv
