// Convolution under the sanitizers: every fc_algo (explicit ones included), forward, data and
// weight gradients, float and double, at edge shapes and at random small shapes, each compared
// with FC_ALGO_REFERENCE. An algorithm that cannot run a descriptor must say FC_EUNSUPPORTED and
// leave its outputs untouched; inputs must never change; outputs start as NaN so any element a
// kernel forgets to write (or reads before writing) shows up.
#include <algorithm>

#include "common.h"

namespace drv {
namespace {

struct Sizes {
  int64_t x, w, y, k, ho, wo, ckk;
};

Sizes sizes_of(const fc_conv2d_desc &d) {
  Sizes z{};
  fc_conv2d_output_size(&d, &z.ho, &z.wo);
  z.ckk = d.c / d.groups * d.kh * d.kw;
  z.x = d.n * d.c * d.h * d.w;
  z.w = d.k * z.ckk;
  z.y = d.n * d.k * z.ho * z.wo;
  z.k = d.k;
  return z;
}

// The reference algorithm's results, and the same computed on absolute values (the scale of
// the summed terms, for the tolerance rule).
template <class T>
struct Expected {
  std::vector<double> y, sy, dx, sdx, dw, sdw, db, sdb;
};

template <class T>
std::vector<double> widen(const std::vector<T> &v) {
  return std::vector<double>(v.begin(), v.end());
}

template <class T>
bool reference(const fc_conv2d_desc &d, const Sizes &z, const std::vector<T> &x,
               const std::vector<T> &w, const std::vector<T> &dy, std::vector<double> *y,
               std::vector<double> *dx, std::vector<double> *dw, std::vector<double> *db) {
  const fc_dtype t = dtype_of<T>();
  std::vector<T> ry(z.y), rdx(z.x), rdw(z.w), rdb(z.k);
  if (!expect(fc_conv2d_forward(&d, t, FC_ALGO_REFERENCE, x.data(), w.data(), nullptr, ry.data()) ==
                      FC_OK &&
                  fc_conv2d_backward_data(&d, t, FC_ALGO_REFERENCE, dy.data(), w.data(),
                                          rdx.data()) == FC_OK &&
                  fc_conv2d_backward_weight(&d, t, FC_ALGO_REFERENCE, dy.data(), x.data(),
                                            rdw.data(), rdb.data()) == FC_OK,
              "reference algorithm failed on " + str(d) + ": " + fc_last_error()))
    return false;
  *y = widen(ry);
  *dx = widen(rdx);
  *dw = widen(rdw);
  *db = widen(rdb);
  return true;
}

template <class T>
void check_conv(const fc_conv2d_desc &d, Rng &rng, int threads) {
  const fc_dtype t = dtype_of<T>();
  const Sizes z = sizes_of(d);
  fc_set_num_threads(threads);
  const std::string where = str(d) + " " + dtype_name<T>() + " threads=" + std::to_string(threads);
  const auto x = random_vector<T>(rng, z.x), w = random_vector<T>(rng, z.w);
  const auto b = random_vector<T>(rng, z.k), dy = random_vector<T>(rng, z.y);
  const auto x0 = x, w0 = w, b0 = b, dy0 = dy;  // to check that inputs stay unchanged

  Expected<T> e;
  if (!reference(d, z, x, w, dy, &e.y, &e.dx, &e.dw, &e.db)) return;
  if (!reference(d, z, abs_of(x), abs_of(w), abs_of(dy), &e.sy, &e.sdx, &e.sdw, &e.sdb)) return;
  std::vector<double> yb(e.y), syb(e.sy);  // with bias
  for (int64_t i = 0; i < z.y; ++i) {
    const int64_t k = (i / (z.ho * z.wo)) % d.k;
    yb[i] += (double)b[k];
    syb[i] += std::fabs((double)b[k]);
  }
  const double tol = tolerance<T>();

  for (int ai = FC_ALGO_AUTO; ai < fc_algo_count(); ++ai) {  // every registered algorithm
    const fc_algo a = (fc_algo)ai;
    const std::string at = where + " algo=" + fc_algo_name(a);
    const fc_status sup = fc_conv2d_supports(&d, a);
    if (!expect(sup == FC_OK || sup == FC_EUNSUPPORTED,
                at + ": supports() gave " + std::to_string(sup)))
      continue;
    const bool ok = sup == FC_OK;
    for (int dir = FC_DIR_FORWARD; dir <= FC_DIR_BACKWARD_WEIGHT; ++dir) {
      double cost = -1;
      const fc_status cs = fc_conv2d_cost(&d, a, (fc_direction)dir, &cost);
      expect(cs == (ok ? FC_OK : FC_EUNSUPPORTED) &&
                 (ok ? std::isfinite(cost) && cost > 0 : cost == -1),
             at + " dir=" + std::to_string(dir) + ": cost status " + std::to_string(cs) +
                 ", cost " + std::to_string(cost));
    }
    auto run = [&](const char *what, fc_status st, const std::vector<T> &out,
                   const std::vector<double> &want, const std::vector<double> &scale) {
      const std::string m = at + " " + what;
      if (!ok) {  // must refuse, and touch nothing
        expect(st == FC_EUNSUPPORTED, m + ": expected FC_EUNSUPPORTED, got " + std::to_string(st));
        expect(*fc_last_error() != '\0', m + ": FC_EUNSUPPORTED without a message");
        for (const T &v : out)
          if (!std::isnan(v)) return (void)expect(false, m + ": wrote an output while refusing");
        return;
      }
      if (expect(st == FC_OK, m + ": status " + std::to_string(st) + " (" + fc_last_error() + ")"))
        expect_close(out, want, scale, tol, m);
    };
    for (int with_bias = 0; with_bias < 2; ++with_bias) {
      std::vector<T> y(z.y);
      fill_nan(y);
      fc_status st =
          fc_conv2d_forward(&d, t, a, x.data(), w.data(), with_bias ? b.data() : nullptr, y.data());
      if (with_bias) run("forward+bias", st, y, yb, syb);
      else run("forward", st, y, e.y, e.sy);
    }
    {
      std::vector<T> dx(z.x);
      fill_nan(dx);
      run("backward_data", fc_conv2d_backward_data(&d, t, a, dy.data(), w.data(), dx.data()), dx,
          e.dx, e.sdx);
    }
    for (int which = 0; which < 3; ++which) {  // (dw, db), (dw, NULL), (NULL, db)
      std::vector<T> dw(z.w), db(z.k);
      fill_nan(dw);
      fill_nan(db);
      T *pw = which == 2 ? nullptr : dw.data();
      T *pb = which == 1 ? nullptr : db.data();
      fc_status st = fc_conv2d_backward_weight(&d, t, a, dy.data(), x.data(), pw, pb);
      if (pw) run(which ? "backward_weight(dw only)" : "backward_weight(dw)", st, dw, e.dw, e.sdw);
      if (pb) run(which ? "backward_weight(db only)" : "backward_weight(db)", st, db, e.db, e.sdb);
      if (!pw)
        expect(std::all_of(dw.begin(), dw.end(), [](T v) { return std::isnan(v); }),
               at + ": backward_weight wrote dw although it was NULL");
      if (!pb)
        expect(std::all_of(db.begin(), db.end(), [](T v) { return std::isnan(v); }),
               at + ": backward_weight wrote db although it was NULL");
    }
    expect(same_bits(x, x0) && same_bits(w, w0) && same_bits(b, b0) && same_bits(dy, dy0),
           at + ": an input buffer was modified");
  }
}

fc_conv2d_desc make(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k, int64_t kh, int64_t kw,
                    int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                    int64_t g) {
  return fc_conv2d_desc{n, c, h, w, k, kh, kw, sh, sw, ph, pw, dh, dw, g};
}

// Hand-picked edges: 1x1 images, kernels as large as the (padded) input, big strides, dilation,
// groups, depthwise with multipliers, 1x1 paths, padding wider than the kernel, channel counts
// and widths off the SIMD/blocking sizes, and an im2col that needs several column blocks.
std::vector<fc_conv2d_desc> edge_descs() {
  return {
      make(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1),     // 1x1 image, 1x1 kernel
      make(2, 3, 1, 1, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1),     // 1x1 image, 3x3 kernel, pad 1
      make(1, 3, 4, 4, 2, 6, 6, 1, 1, 1, 1, 1, 1, 1),     // kernel == padded input
      make(2, 17, 7, 5, 3, 7, 5, 1, 1, 0, 0, 1, 1, 1),    // kernel == input
      make(2, 3, 5, 6, 4, 2, 2, 9, 11, 0, 0, 1, 1, 1),    // stride beyond the input
      make(1, 2, 5, 5, 3, 3, 3, 1, 1, 0, 0, 2, 2, 1),     // dilated extent == input
      make(1, 2, 9, 9, 3, 3, 3, 2, 2, 4, 4, 4, 4, 1),     // dilated, padded, strided
      make(2, 17, 9, 9, 17, 3, 3, 1, 1, 1, 1, 1, 1, 17),  // depthwise
      make(1, 5, 8, 7, 10, 3, 3, 2, 2, 1, 1, 1, 1, 5),    // depthwise, multiplier 2, strided
      make(1, 3, 5, 5, 9, 2, 2, 1, 1, 0, 0, 1, 1, 3),     // depthwise, multiplier 3
      make(2, 4, 9, 10, 4, 3, 3, 2, 3, 2, 2, 2, 1, 4),    // depthwise, dilated, strided
      make(2, 9, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3),     // groups 3
      make(3, 33, 5, 7, 17, 1, 1, 1, 1, 0, 0, 1, 1, 1),   // 1x1 in place
      make(2, 17, 7, 9, 33, 1, 1, 2, 3, 1, 2, 1, 1, 1),   // 1x1 strided and padded (gather)
      make(2, 6, 4, 4, 4, 1, 1, 1, 1, 0, 0, 1, 1, 2),     // 1x1 grouped
      make(1, 2, 3, 3, 3, 1, 1, 1, 1, 3, 2, 1, 1, 1),     // padding wider than the kernel
      make(1, 3, 1, 33, 4, 1, 7, 1, 2, 0, 3, 1, 3, 1),    // one row (conv1d-like)
      make(1, 3, 33, 1, 4, 5, 1, 3, 1, 2, 0, 2, 1, 1),    // one column
      make(2, 3, 6, 65, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1),    // wide rows: SIMD tails
      make(1, 5, 6, 6, 15, 3, 3, 1, 1, 0, 0, 1, 1, 1),    // k, c off the 8 / 4 blocking
      make(9, 2, 2, 2, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1),     // many tiny images
      make(1, 64, 20, 20, 4, 7, 7, 1, 1, 3, 3, 1, 1, 1),  // im2col: several column blocks
      make(1, 1, 40, 40, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1),   // 1x1, one plane, split over threads
      // Medium layers: several register tiles and column blocks per row/plane, tile tails.
      make(1, 32, 28, 29, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1),
      make(2, 3, 37, 41, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1),
      make(1, 48, 14, 15, 72, 1, 1, 1, 1, 0, 0, 1, 1, 1),
      make(1, 24, 30, 31, 24, 3, 3, 1, 1, 1, 1, 1, 1, 24),
      make(2, 16, 19, 23, 20, 3, 5, 1, 1, 2, 2, 2, 1, 2),
      // Huge padding made small again by a huge stride: no padded copy may be sized from it
      // ((h + 2*pad_h) * w overflows int64 in the second).
      make(1, 2, 1, 4, 3, 1, 1, int64_t(1) << 25, 1, int64_t(1) << 24, 0, 1, 1, 1),
      make(1, 1, 1, 1024, 1, 1, 1, int64_t(1) << 54, 1, int64_t(1) << 53, 0, 1, 1, 1),
      make(2, 3, 3, 2, 2, 2, 1, 1, int64_t(1) << 61, 0, int64_t(1) << 60, 1, 1, 1),
  };
}

// A random valid small descriptor, biased towards edges.
fc_conv2d_desc random_desc(Rng &rng) {
  static const std::vector<int64_t> chans{1, 2, 3, 4, 5, 7, 8, 9, 16, 17};
  static const std::vector<int64_t> sizes{1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 33};
  static const std::vector<int64_t> kernels{1, 1, 2, 3, 3, 5, 7};
  static const std::vector<int64_t> strides{1, 1, 1, 2, 3, 4, 7, 40};
  static const std::vector<int64_t> dils{1, 1, 1, 2, 3};
  for (;;) {
    fc_conv2d_desc d{};
    const double r = rng.uniform();
    if (r < 0.2) {  // depthwise
      d.groups = d.c = rng.pick(std::vector<int64_t>{1, 2, 3, 5, 8, 17});
      d.k = d.c * rng.range(1, 3);
    } else {
      d.groups = r < 0.75 ? 1 : rng.range(2, 3);
      d.c = d.groups * rng.pick(chans);
      d.k = d.groups * rng.pick(chans);
    }
    d.n = rng.pick(std::vector<int64_t>{1, 1, 2, 3});
    d.h = rng.pick(sizes);
    d.w = rng.pick(sizes);
    d.kh = rng.pick(kernels);
    d.kw = rng.pick(kernels);
    d.stride_h = rng.pick(strides);
    d.stride_w = rng.pick(strides);
    d.dil_h = rng.pick(dils);
    d.dil_w = rng.pick(dils);
    d.pad_h = rng.range(0, 3);
    d.pad_w = rng.range(0, 3);
    // Shrink a kernel that does not fit: often to exactly the padded input.
    d.kh = std::min(d.kh, (d.h + 2 * d.pad_h - 1) / d.dil_h + 1);
    d.kw = std::min(d.kw, (d.w + 2 * d.pad_w - 1) / d.dil_w + 1);
    int64_t ho, wo;
    if (fc_conv2d_output_size(&d, &ho, &wo) != FC_OK) continue;
    const int64_t macs = d.n * d.k * ho * wo * (d.c / d.groups) * d.kh * d.kw;
    if (d.n * d.c * d.h * d.w > 6000 || macs > 150000) continue;
    return d;
  }
}

}  // namespace

int64_t run_conv_edges(Rng &rng, int64_t random_configs) {
  std::vector<fc_conv2d_desc> all = edge_descs();
  for (int64_t i = 0; i < random_configs; ++i) all.push_back(random_desc(rng));
  int64_t i = 0;
  for (const fc_conv2d_desc &d : all) {
    int64_t ho, wo;
    if (!expect(fc_conv2d_output_size(&d, &ho, &wo) == FC_OK, "edge descriptor invalid: " + str(d)))
      continue;
    const int threads = 1 + (int)(i++ % 3);
    check_conv<float>(d, rng, threads);
    check_conv<double>(d, rng, threads);
  }
  fc_set_num_threads(0);
  return (int64_t)all.size();
}

}  // namespace drv
