// Pooling under the sanitizers: max pooling (with and without switches), its backward through
// the switches, unpooling and its backward, average pooling (count_include_pad, divisor
// override, ceil mode) and adaptive average pooling, forward and backward, float and double,
// each against a naive loop written here from the semantics fastconv.h documents (PyTorch's).
// Switch entries also get out-of-range switches: FC_EINVAL and an untouched output.
#include <algorithm>

#include "common.h"

namespace drv {
namespace {

// Naive max pooling of one plane position: PyTorch's scan ("greater or NaN" replaces).
// Returns false for a window holding no input element.
template <class T>
bool naive_max(const fc_pool2d_desc &d, const T *plane, int64_t oh, int64_t ow, T *y, int64_t *at) {
  bool any = false;
  T best = -std::numeric_limits<T>::infinity();
  for (int64_t i = 0; i < d.kh; ++i)
    for (int64_t j = 0; j < d.kw; ++j) {
      const int64_t ih = oh * d.stride_h - d.pad_h + i * d.dil_h;
      const int64_t iw = ow * d.stride_w - d.pad_w + j * d.dil_w;
      if (ih < 0 || ih >= d.h || iw < 0 || iw >= d.w) continue;
      const T v = plane[ih * d.w + iw];
      if (!any) *at = ih * d.w + iw;
      any = true;
      if (v > best || v != v) {
        best = v;
        *at = ih * d.w + iw;
      }
    }
  *y = best;
  return any;
}

// PyTorch's avg_pool2d window: the clipped window and its divisor; false if it is empty.
bool naive_avg_window(const fc_pool2d_desc &d, bool incl, int64_t override_, int64_t oh, int64_t ow,
                      int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1, int64_t *div) {
  *h0 = oh * d.stride_h - d.pad_h;
  *w0 = ow * d.stride_w - d.pad_w;
  *h1 = std::min(*h0 + d.kh, d.h + d.pad_h);
  *w1 = std::min(*w0 + d.kw, d.w + d.pad_w);
  const int64_t pool = (*h1 - *h0) * (*w1 - *w0);
  *h0 = std::max<int64_t>(*h0, 0);
  *w0 = std::max<int64_t>(*w0, 0);
  *h1 = std::min(*h1, d.h);
  *w1 = std::min(*w1, d.w);
  if (*h0 >= *h1 || *w0 >= *w1) return false;
  *div = override_ ? override_ : incl ? pool : (*h1 - *h0) * (*w1 - *w0);
  return true;
}

fc_planes2d_desc planes_of(const fc_pool2d_desc &d, int64_t ho, int64_t wo) {
  return fc_planes2d_desc{d.n, d.c, d.h, d.w, ho, wo};
}

template <class T>
bool untouched(const std::vector<T> &v) {
  return std::all_of(v.begin(), v.end(), [](T e) { return std::isnan(e); });
}

// max_pool2d_backward, max_unpool2d_forward and max_unpool2d_backward on valid switches q, then
// with one switch broken (which must be refused before anything is written).
template <class T>
void check_switch_entries(const fc_planes2d_desc &p, Rng &rng, std::vector<int64_t> q,
                          const std::string &where) {
  const fc_dtype t = dtype_of<T>();
  const int64_t planes = p.n * p.c, hw = p.h * p.w, howo = p.ho * p.wo;
  const auto small = random_vector<T>(rng, planes * howo),
             full = random_vector<T>(rng, planes * hw);
  const auto small0 = small, full0 = full;
  const auto q0 = q;
  std::vector<double> bwd(planes * hw, 0.0), sbwd(planes * hw, 0.0), unpool(planes * hw, 0.0);
  std::vector<double> unpool_bwd(planes * howo);
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t i = 0; i < howo; ++i) {
      const int64_t s = pl * hw + q[pl * howo + i], o = pl * howo + i;
      bwd[s] += (double)small[o];
      sbwd[s] += std::fabs((double)small[o]);
      unpool[s] = (double)small[o];  // in order: the last write wins
      unpool_bwd[o] = (double)full[s];
    }
  std::vector<double> zero_scale_full(planes * hw, 0.0), zero_scale_small(planes * howo, 0.0);
  std::vector<T> out_full(planes * hw), out_small(planes * howo);
  fill_nan(out_full);
  if (expect(fc_max_pool2d_backward(&p, t, small.data(), q.data(), out_full.data()) == FC_OK,
             where + " max_pool2d_backward: " + fc_last_error()))
    expect_close(out_full, bwd, sbwd, tolerance<T>(), where + " max_pool2d_backward");
  fill_nan(out_full);
  if (expect(fc_max_unpool2d_forward(&p, t, small.data(), q.data(), out_full.data()) == FC_OK,
             where + " max_unpool2d_forward: " + fc_last_error()))
    expect_close(out_full, unpool, zero_scale_full, 0.0, where + " max_unpool2d_forward");
  fill_nan(out_small);
  if (expect(fc_max_unpool2d_backward(&p, t, full.data(), q.data(), out_small.data()) == FC_OK,
             where + " max_unpool2d_backward: " + fc_last_error()))
    expect_close(out_small, unpool_bwd, zero_scale_small, 0.0, where + " max_unpool2d_backward");

  // One switch outside its plane, anywhere: refused, nothing written.
  static const int64_t kBad[] = {
      -1, 0, 1, 0, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()};
  const int64_t pos = rng.range(0, planes * howo - 1);
  int64_t bad = kBad[rng.range(0, 5)];
  if (bad == 0) bad = hw;
  else if (bad == 1) bad = -hw;
  q[pos] = bad;
  const std::string b = where + " switch[" + std::to_string(pos) + "]=" + std::to_string(bad);
  fill_nan(out_full);
  expect(fc_max_pool2d_backward(&p, t, small.data(), q.data(), out_full.data()) == FC_EINVAL &&
             untouched(out_full),
         b + ": max_pool2d_backward did not refuse cleanly");
  fill_nan(out_full);
  expect(fc_max_unpool2d_forward(&p, t, small.data(), q.data(), out_full.data()) == FC_EINVAL &&
             untouched(out_full),
         b + ": max_unpool2d_forward did not refuse cleanly");
  fill_nan(out_small);
  expect(fc_max_unpool2d_backward(&p, t, full.data(), q.data(), out_small.data()) == FC_EINVAL &&
             untouched(out_small),
         b + ": max_unpool2d_backward did not refuse cleanly");
  q[pos] = q0[pos];
  expect(same_bits(small, small0) && same_bits(full, full0) && q == q0,
         where + ": a switch entry modified an input");
}

template <class T>
void check_max(const fc_pool2d_desc &d, Rng &rng, bool ties, bool nans, const std::string &where) {
  const fc_dtype t = dtype_of<T>();
  int64_t ho, wo;
  fc_pool2d_output_size(&d, &ho, &wo);
  const int64_t planes = d.n * d.c, hw = d.h * d.w, howo = ho * wo;
  std::vector<T> x = random_vector<T>(rng, planes * hw);
  if (ties)  // few distinct values: the first maximum must win
    for (auto &v : x) v = (T)rng.range(-2, 2);
  if (nans)
    for (int i = 0; i < 3; ++i)
      x[rng.range(0, planes * hw - 1)] = std::numeric_limits<T>::quiet_NaN();
  const auto x0 = x;
  std::vector<T> want(planes * howo);
  std::vector<int64_t> want_at(planes * howo);
  std::vector<char> has(planes * howo);
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < ho; ++oh)
      for (int64_t ow = 0; ow < wo; ++ow) {
        const int64_t o = (pl * ho + oh) * wo + ow;
        has[o] = naive_max(d, x.data() + pl * hw, oh, ow, &want[o], &want_at[o]);
      }
  for (int with_idx = 0; with_idx < 2; ++with_idx) {
    std::vector<T> y(planes * howo);
    std::vector<int64_t> at(with_idx ? planes * howo : 0, -7);
    fill_nan(y);
    const fc_status st =
        fc_max_pool2d_forward(&d, t, x.data(), y.data(), with_idx ? at.data() : nullptr);
    const std::string m = where + (with_idx ? " max_pool2d(switches)" : " max_pool2d");
    if (!expect(st == FC_OK, m + ": status " + std::to_string(st) + " " + fc_last_error()))
      continue;
    for (int64_t o = 0; o < planes * howo; ++o) {
      const bool same = (std::isnan(y[o]) && std::isnan(want[o])) || y[o] == want[o];
      const bool idx_ok = !with_idx || !has[o] || at[o] == want_at[o];
      if (!same || !idx_ok) {
        failure("%s: output %lld is %g (switch %lld), expected %g (switch %lld)", m.c_str(),
                (long long)o, (double)y[o], (long long)(with_idx ? at[o] : -1), (double)want[o],
                (long long)want_at[o]);
        break;
      }
      if (o + 1 == planes * howo) ++g_stats.checks;
    }
  }
  expect(same_bits(x, x0), where + " max_pool2d modified x");

  // The switch entries on the forward's own switches (when every window held an element),
  // else on random in-plane switches.
  std::vector<int64_t> q(planes * howo);
  const bool all = std::all_of(has.begin(), has.end(), [](char c) { return c != 0; });
  for (int64_t o = 0; o < planes * howo; ++o) q[o] = all ? want_at[o] : rng.range(0, hw - 1);
  check_switch_entries<T>(planes_of(d, ho, wo), rng, q, where);
}

template <class T>
void check_avg(const fc_pool2d_desc &d, Rng &rng, const std::string &where) {
  const fc_dtype t = dtype_of<T>();
  int64_t ho, wo;
  fc_pool2d_output_size(&d, &ho, &wo);
  const int64_t planes = d.n * d.c, hw = d.h * d.w, howo = ho * wo;
  const auto x = random_vector<T>(rng, planes * hw), dy = random_vector<T>(rng, planes * howo);
  const auto x0 = x, dy0 = dy;
  if (d.dil_h != 1 || d.dil_w != 1) {  // average pooling has no dilation: refused, untouched
    std::vector<T> y(planes * howo), dx(planes * hw);
    fill_nan(y);
    fill_nan(dx);
    expect(fc_avg_pool2d_forward(&d, t, 1, 0, x.data(), y.data()) == FC_EINVAL && untouched(y) &&
               fc_avg_pool2d_backward(&d, t, 1, 0, dy.data(), dx.data()) == FC_EINVAL &&
               untouched(dx),
           where + " avg_pool2d accepted a dilation");
    return;
  }
  for (int incl = 0; incl < 2; ++incl)
    for (int64_t ov : {int64_t(0), rng.range(1, 9)}) {
      const std::string m = where + " avg_pool2d(count_include_pad=" + std::to_string(incl) +
                            ", divisor_override=" + std::to_string(ov) + ")";
      std::vector<double> want(planes * howo, 0.0), scale(planes * howo, 0.0);
      std::vector<double> want_dx(planes * hw, 0.0), scale_dx(planes * hw, 0.0);
      for (int64_t pl = 0; pl < planes; ++pl)
        for (int64_t oh = 0; oh < ho; ++oh)
          for (int64_t ow = 0; ow < wo; ++ow) {
            int64_t h0, h1, w0, w1, div;
            if (!naive_avg_window(d, incl, ov, oh, ow, &h0, &h1, &w0, &w1, &div)) continue;
            const int64_t o = (pl * ho + oh) * wo + ow;
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) {
                const int64_t i = pl * hw + ih * d.w + iw;
                want[o] += (double)x[i] / (double)div;
                scale[o] += std::fabs((double)x[i]) / (double)div;
                want_dx[i] += (double)dy[o] / (double)div;
                scale_dx[i] += std::fabs((double)dy[o]) / (double)div;
              }
          }
      std::vector<T> y(planes * howo), dx(planes * hw);
      fill_nan(y);
      fill_nan(dx);
      if (expect(fc_avg_pool2d_forward(&d, t, incl, ov, x.data(), y.data()) == FC_OK,
                 m + ": " + fc_last_error()))
        expect_close(y, want, scale, tolerance<T>(), m + " forward");
      if (expect(fc_avg_pool2d_backward(&d, t, incl, ov, dy.data(), dx.data()) == FC_OK,
                 m + ": " + fc_last_error()))
        expect_close(dx, want_dx, scale_dx, tolerance<T>(), m + " backward");
    }
  expect(same_bits(x, x0) && same_bits(dy, dy0), where + " avg_pool2d modified an input");
}

template <class T>
void check_adaptive(const fc_planes2d_desc &p, Rng &rng) {
  const fc_dtype t = dtype_of<T>();
  const std::string where = str(p) + " " + dtype_name<T>();
  const int64_t planes = p.n * p.c, hw = p.h * p.w, howo = p.ho * p.wo;
  const auto x = random_vector<T>(rng, planes * hw), dy = random_vector<T>(rng, planes * howo);
  const auto x0 = x, dy0 = dy;
  std::vector<double> want(planes * howo, 0.0), scale(planes * howo, 0.0);
  std::vector<double> want_dx(planes * hw, 0.0), scale_dx(planes * hw, 0.0);
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < p.ho; ++oh)
      for (int64_t ow = 0; ow < p.wo; ++ow) {
        const int64_t h0 = oh * p.h / p.ho, h1 = ((oh + 1) * p.h + p.ho - 1) / p.ho;
        const int64_t w0 = ow * p.w / p.wo, w1 = ((ow + 1) * p.w + p.wo - 1) / p.wo;
        const double count = (double)((h1 - h0) * (w1 - w0));
        const int64_t o = (pl * p.ho + oh) * p.wo + ow;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) {
            const int64_t i = pl * hw + ih * p.w + iw;
            want[o] += (double)x[i] / count;
            scale[o] += std::fabs((double)x[i]) / count;
            want_dx[i] += (double)dy[o] / count;
            scale_dx[i] += std::fabs((double)dy[o]) / count;
          }
      }
  std::vector<T> y(planes * howo), dx(planes * hw);
  fill_nan(y);
  fill_nan(dx);
  if (expect(fc_adaptive_avg_pool2d_forward(&p, t, x.data(), y.data()) == FC_OK,
             where + ": " + fc_last_error()))
    expect_close(y, want, scale, tolerance<T>(), where + " adaptive_avg_pool2d forward");
  if (expect(fc_adaptive_avg_pool2d_backward(&p, t, dy.data(), dx.data()) == FC_OK,
             where + ": " + fc_last_error()))
    expect_close(dx, want_dx, scale_dx, tolerance<T>(), where + " adaptive_avg_pool2d backward");
  expect(same_bits(x, x0) && same_bits(dy, dy0), where + " adaptive_avg_pool2d modified an input");
}

fc_pool2d_desc pool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw, int64_t sh,
                    int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, int64_t ceil) {
  return fc_pool2d_desc{n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ceil};
}

std::vector<fc_pool2d_desc> edge_pools() {
  return {
      pool(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0),    // 1x1 image
      pool(2, 3, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1, 0),    // 1x1 image, window all but one padding
      pool(1, 2, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 0),    // window == padded input... and stride 1
      pool(1, 2, 4, 5, 4, 5, 4, 5, 0, 0, 1, 1, 0),    // window == input (global max)
      pool(2, 3, 5, 6, 2, 2, 9, 11, 0, 0, 1, 1, 1),   // stride beyond the input, ceil mode
      pool(1, 2, 6, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1),    // ceil mode: last window in padding
      pool(1, 2, 2, 2, 2, 2, 1, 1, 1, 1, 3, 3, 0),    // dilation: windows with no element
      pool(2, 17, 9, 65, 3, 3, 1, 1, 1, 1, 1, 1, 0),  // wide rows, stride 1 (SIMD, tails)
      pool(2, 5, 9, 65, 3, 3, 2, 2, 1, 1, 1, 1, 0),   // stride 2 (de-interleaving loads)
      pool(1, 5, 9, 67, 3, 5, 3, 3, 1, 2, 1, 1, 1),   // stride 3 (gathers)
      pool(1, 3, 17, 33, 3, 3, 2, 2, 1, 1, 2, 2, 0),  // dilated interior
      pool(3, 2, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1, 0),    // the classic 2x2/2
      pool(1, 1, 33, 1, 3, 1, 2, 1, 1, 0, 1, 1, 1),   // one column
      pool(1, 1, 1, 33, 1, 3, 1, 2, 0, 1, 1, 1, 1),   // one row
  };
}

fc_pool2d_desc random_pool(Rng &rng) {
  static const std::vector<int64_t> sizes{1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 33, 65};
  for (;;) {
    fc_pool2d_desc d{};
    d.n = rng.range(1, 3);
    d.c = rng.pick(std::vector<int64_t>{1, 2, 3, 5, 17});
    d.h = rng.pick(sizes);
    d.w = rng.pick(sizes);
    d.kh = rng.range(1, 7);
    d.kw = rng.range(1, 7);
    d.stride_h = rng.chance(0.3) ? d.kh : rng.range(1, 5);
    d.stride_w = rng.chance(0.3) ? d.kw : rng.range(1, 5);
    d.dil_h = rng.chance(0.7) ? 1 : rng.range(2, 3);
    d.dil_w = rng.chance(0.7) ? 1 : rng.range(2, 3);
    d.pad_h = rng.range(0, d.kh / 2);
    d.pad_w = rng.range(0, d.kw / 2);
    d.ceil_mode = rng.range(0, 1);
    int64_t ho, wo;
    if (fc_pool2d_output_size(&d, &ho, &wo) != FC_OK) continue;
    if (d.n * d.c * d.h * d.w > 8000 || d.n * d.c * ho * wo * d.kh * d.kw > 60000) continue;
    return d;
  }
}

}  // namespace

int64_t run_pool_edges(Rng &rng, int64_t random_configs) {
  std::vector<fc_pool2d_desc> all = edge_pools();
  for (int64_t i = 0; i < random_configs; ++i) all.push_back(random_pool(rng));
  int64_t i = 0;
  for (const fc_pool2d_desc &d : all) {
    int64_t ho, wo;
    if (!expect(fc_pool2d_output_size(&d, &ho, &wo) == FC_OK,
                "edge pooling descriptor invalid: " + str(d) + " " + fc_last_error()))
      continue;
    const int threads = 1 + (int)(i % 3);
    fc_set_num_threads(threads);
    const std::string where = str(d) + " threads=" + std::to_string(threads);
    const bool ties = i % 2 == 1, nans = i % 5 == 2;
    check_max<float>(d, rng, ties, nans, where + " f32");
    check_max<double>(d, rng, ties, nans, where + " f64");
    check_avg<float>(d, rng, where + " f32");
    check_avg<double>(d, rng, where + " f64");
    // Adaptive pooling of the same planes to sizes below, at and above the input's.
    fc_planes2d_desc p = planes_of(d, 1 + (int64_t)(i % 4 == 0 ? d.h + 2 : rng.range(0, d.h - 1)),
                                   1 + (int64_t)(i % 3 == 0 ? d.w : rng.range(0, d.w - 1)));
    check_adaptive<float>(p, rng);
    check_adaptive<double>(p, rng);
    ++i;
  }
  fc_set_num_threads(0);
  return (int64_t)all.size();
}

}  // namespace drv
