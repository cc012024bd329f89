// Per-ISA micro-kernels: raw pointers, sizes and strides only. They never allocate, never start
// threads. One table per element type is chosen once, at load time, by dispatch.cpp.
#pragma once
#include <cstdint>

#include "../hw.h"  // isa_name(), for fc_isa

namespace fc {

// What a 32-channel tile adds to its sums before it stores them (a plan's fused epilogue, the
// operations and their order those of epilogue_rows, so the same bits): bias[o] for output
// channel o (or none), then the residual res, laid out as y from the tile's first output (or
// none), then ReLU.
template <class T>
struct TileEpilogue {
  const T *bias = nullptr;
  const T *res = nullptr;
  bool relu = false;
};

template <class T>
struct UKernels {
  // y[r*y_ld + o] += w[r*w_ld] * x[o*xs] for r < rows, o < n.
  // The direct forward: `rows` output channels share one input row (register-blocked by 4).
  void (*conv_rows)(T *y, int64_t y_ld, int64_t rows, const T *w, int64_t w_ld, const T *x,
                    int64_t xs, int64_t n);
  // dx[r*dx_ld + o*ds] += w[r*w_ld] * dy[o] for r < rows, o < n. The direct data gradient.
  void (*scatter_rows)(T *dx, int64_t dx_ld, int64_t ds, int64_t rows, const T *w, int64_t w_ld,
                       const T *dy, int64_t n);
  // sum over o < n of a[o] * b[o*bs]. The direct weight gradient.
  T (*dot)(const T *a, const T *b, int64_t bs, int64_t n);

  // The direct forward's register tile: `kb` output channels x `nvec` vectors of `vlen`
  // consecutive output positions, on an input that is already padded (every tap in bounds):
  //   y[r*y_plane + o] += sum over c, i, j of wp[((c*kh + i)*kw + j)*kb + r] *
  //                                          x[c*x_plane + i*dil_h*x_w + j*dil_w + o]
  // for r < nkeep (rows nkeep..kb-1 of wp are padding), o < nvec*vlen, 1 <= nvec <= max_nvec.
  // wp is the weight block packed [cg][kh][kw][kb]. Accumulators stay in registers over the
  // whole cg*kh*kw reduction; y is read once and written once.
  void (*direct_tile)(const T *x, int64_t x_w, int64_t x_plane, const T *wp, int64_t cg, int64_t kh,
                      int64_t kw, int64_t dil_h, int64_t dil_w, T *y, int64_t y_plane,
                      int64_t nkeep, int nvec);
  // y[r*ldy + o] = (bias ? bias[r] : 0) + sum over t < k of wp[t*kb + r] * x[off[t] + o] for
  // r < nkeep (<= kb), o < n: a short reduction's product over one row of positions, each sum
  // in registers from its first term to one store (im2col.cpp's implicit columns: term t's
  // row of the column matrix is x + off[t]). wp is packed [k][kb]. Reads whole vectors: each
  // row must stay readable to n rounded up to vlen.
  void (*short_gemm)(int64_t k, const T *wp, const T *x, const int64_t *off, const T *bias, T *y,
                     int64_t ldy, int64_t nkeep, int64_t n);
  // The other register tile, vectorized over output channels instead of positions (for narrow
  // images, where rows of positions do not fill vectors): `kt` output channels x `pt`
  // consecutive positions of the padded input, written position-major:
  //   out[o*kt + r] = sum over c, i, j of wk[((c*kh + i)*kw + j)*kt + r] *
  //                                       x[c*x_plane + i*dil_h*x_w + j*dil_w + o]
  // for r < kt, o < pt (always all pt positions: the caller gives the input slack).
  void (*direct_ktile)(const T *x, int64_t x_w, int64_t x_plane, const T *wk, int64_t cg,
                       int64_t kh, int64_t kw, int64_t dil_h, int64_t dil_w, T *out);
  // y[o] = (accumulate ? y[o] : 0) + sum over t < nt of w[t] * src[t][o], for o < n: any
  // number of shifted inputs summed in registers, one pass over y. The depthwise kernels' taps.
  void (*sum_taps)(T *y, const T *const *src, const T *w, int nt, int64_t n, bool accumulate);
  // acc[t*vlen + l] += partial sums (lane l) of a[o] * src[t][o] over o < n, for t < nt:
  // every tap's dot product in one pass over a, left as vlen partial sums per tap so that many
  // calls accumulate before one reduction (the sum over lanes is the dot product). The
  // depthwise weight gradient.
  void (*dot_taps)(const T *a, const T *const *src, int nt, int64_t n, T *acc);
  // acc[(k*nt + t)*vlen + l] += lane l's partial sums, over r < rows and o < n + vlen, of
  //   a[k][r*a_row + o] * src[t][r*x_row + o]
  // for k < nk (a multiple of rows_kt), t < nt, n a multiple of vlen, where a row's last vector
  // of a (o >= n) is read from tail + r*tail_row + k*vlen (none where tail is null): dot_taps for
  // rows_kt rows of a at once, each src vector loaded once into rows_kt multiply-adds, the sums
  // in registers over all the rows. The weight gradient of a few input channels, dy read where
  // it lies (conv/direct_blocked.cpp).
  void (*dot_rows)(const T *const *a, int64_t a_row, const T *tail, int64_t tail_row, int64_t nk,
                   const T *const *src, int64_t x_row, int64_t nt, int64_t rows, int64_t n, T *acc);
  // c[i*ldc + j] = (accumulate ? c[i*ldc + j] : 0) + sum over p < k of a[i*lda + p] *
  // b[j*ldb + p], for i < m, j < n: the product a b^T as dot products over k, vectorized along
  // k (register tile FC_DOT_MR x FC_DOT_NR). The weight gradient where dW has few columns.
  void (*gemm_nt)(int64_t m, int64_t n, int64_t k, const T *a, int64_t lda, const T *b, int64_t ldb,
                  T *c, int64_t ldc, bool accumulate);
  // The blocked direct forward's register tile (conv/direct_blocked.cpp): channels in blocks
  // of ne = 8, the input [cb][row][column][8] (padded: every tap in bounds), the weights
  // [ob][cb][kh][kw][ne inputs][8 outputs]; two output blocks (16 channels) x np positions of
  // one output row (1 <= np <= bt), column step x_step between positions:
  //   y[o*y_plane + p] = sum over cb < cbn, i < kh, j < kw, e < ne of
  //       w[(o/8)*w_ob + cb*w_cb + (i*kw + j)*ne*8 + e*8 + o%8] *
  //       x[cb*x_cb + i*x_row + j*ne + p*x_step + e]
  // for o < nk (<= 16), p < np: each sum in registers, in that order, over the whole reduction.
  // w_cb is kh*kw*ne*8 where every window row is summed; a caller that leaves out window rows
  // (those in the padding) passes the packed filters' stride and kh rows from its first.
  // Few input channels (the rows layout): cbn = kw = 1 and ne = c*kw, the run of a window
  // row's taps with the channels interleaved. Columns: position p's tap column j reads the
  // input's column (p*x_step + j*ne)/ne from the tile's first; those outside [cl, cr) must hold
  // zeros (the padding), and a table may leave their products out (the channel-block tiles at a
  // column step of 8 or 16 do: the same bits for finite filters; the rows layout sums them).
  // cl = -2^30, cr = 2^30: none.
  void (*blocked_tile)(const T *x, int64_t x_cb, int64_t x_row, int64_t x_step, const T *w,
                       int64_t w_ob, int64_t w_cb, int64_t cbn, int64_t kh, int64_t kw, int64_t ne,
                       T *y, int64_t y_plane, int64_t nk, int np, int64_t cl, int64_t cr);
  // The same sums for np positions anywhere (several output rows in one tile, channel blocks
  // only: ne = 8): position p reads x + x_at[p] (its window's first tap) and writes y + y_at[p].
  void (*blocked_tile_at)(const T *x, const int64_t *x_at, int64_t x_cb, int64_t x_row, const T *w,
                          int64_t w_ob, int64_t cbn, int64_t kh, int64_t kw, T *y,
                          const int64_t *y_at, int64_t y_plane, int64_t nk, int np);
  // The weight gradient's tile: blocked_tile's sums in the rows layout for one window row
  // (kh = kw = 1), np <= bt positions x_step apart, each position's 16 sums (o = 0..15, past
  // nk too) to y[p*y_pos + o], or added to what y holds there when add:
  //   y[p*y_pos + o] (+)= sum over r < rows, e < ne of
  //       w[(o/8)*w_ob + r*w_row + e*8 + o%8] * x[r*x_row + p*x_step + e]
  void (*wgrad_tile)(const T *x, int64_t x_row, int64_t x_step, const T *w, int64_t w_ob,
                     int64_t w_row, int64_t rows, int64_t ne, T *y, int64_t y_pos, bool add,
                     int np);
  // wgrad_tile's sums for 32 output channels (nk 17-32: four blocks of w joined, each of its
  // runs of 8 values a run of 32; w_row: a row of them), each input value feeding two
  // multiply-adds: channels 0-15 of position p to y[p*y_pos + o], 16-31 to
  // y[y_hi + p*y_pos + o - 16] (set, or added when add). Null where the table has none (all but
  // AVX-512's float one).
  void (*wgrad_tile32)(const T *x, int64_t x_row, int64_t x_step, const T *w, int64_t w_row,
                       int64_t rows, int64_t ne, T *y, int64_t y_pos, int64_t y_hi, bool add,
                       int np) = nullptr;
  // Dot products of 3 rows of a with dots_nr rows of b (8 on AVX-512, 4 on AVX2) over segments
  // of their columns (a 1x1's weight gradient: dy's and x's planes, image by image,
  // conv/gemm1x1.cpp):
  //   out[i*oi + j*oj] = (add ? out[i*oi + j*oj] : 0) + sum over s < nseg, p < seg[3s+2] of
  //       a[i*a_row + seg[3s] + p] * b[j*b_row + seg[3s+1] + p]
  // for i < ni <= 3, j < nj <= dots_nr; rows of a past ni read row 0, rows of b past nj are read
  // (and must be readable) but never stored. Each sum in a fixed order: a vector's lanes along p,
  // then its lanes added in a fixed tree. Null where the table has none (the generic one, and
  // every float64 one).
  void (*dots_tile)(const T *a, int64_t a_row, const T *b, int64_t b_row, const int64_t *seg,
                    int64_t nseg, T *out, int64_t oi, int64_t oj, int ni, int nj,
                    bool add) = nullptr;
  // wgrad_tile's sums out to the weight gradient: d[o*ld + q] = a[q*16 + o] for q < nq,
  // o < nk (<= 16).
  void (*wgrad_store)(const T *a, int64_t nq, T *d, int64_t ld, int64_t nk);
  // blocked_tile's sums for np <= fbt positions anywhere, any run of ne values a tap: position p
  // reads x + x_at[p] (the weight gradient of under bt input channels, whose positions are its
  // (channel, tap column) pairs). Null where the table has none (all but AVX-512's float one).
  void (*blocked_tile_rows_at)(const T *x, const int64_t *x_at, int64_t x_cb, int64_t x_row,
                               const T *w, int64_t w_ob, int64_t w_cb, int64_t cbn, int64_t kh,
                               int64_t kw, int64_t ne, T *y, int64_t y_plane, int64_t nk,
                               int np) = nullptr;
  // blocked_tile's sums for 32 output channels (nk 17-32), np <= fbt positions of one row,
  // channel blocks at a column step of 8 or 16 (ne = 8), the four output blocks' filters
  // joined: w[cb*w_cb + ((i*kw + j)*8 + e)*32 + o] for output channel o. Each broadcast input
  // value feeds two multiply-adds. With pf_lines > 0, the pf_lines cache lines from pf on are
  // prefetched into the L2 along the way, one a step (a plan's next filters); cl, cr as
  // blocked_tile's (left out here). Null where the table has none (all but AVX-512's float
  // one).
  // With te, each output gets te's bias, residual and ReLU before it is stored (TileEpilogue).
  void (*blocked_tile32)(const T *x, int64_t x_cb, int64_t x_row, int64_t x_step, const T *w,
                         int64_t w_cb, int64_t cbn, int64_t kh, int64_t kw, T *y, int64_t y_plane,
                         int64_t nk, int np, const T *pf, int64_t pf_lines, int64_t cl, int64_t cr,
                         const TileEpilogue<T> *te) = nullptr;
  // blocked_tile32's sums for a 1x1 (unpadded, unit stride) read from the layer's own planes:
  // np <= fbt consecutive positions from x, input channel c's at x + c*plane (cbn blocks of 8
  // whole channels); w, pf, pf_lines and te as blocked_tile32's (w_cb = 256). Null where the
  // table has none (all but AVX-512's float one).
  void (*plane_tile32)(const T *x, int64_t plane, const T *w, int64_t cbn, T *y, int64_t y_plane,
                       int64_t nk, int np, const T *pf, int64_t pf_lines,
                       const TileEpilogue<T> *te) = nullptr;
  // blocked_tile_rows_at's sums for 32 output channels (nk 17-32), the four blocks of w joined:
  // each run of 8 values a run of 32, w_ob unused (the weight gradient's dy, copied so); np <=
  // fbt positions anywhere. Null where the table has none (all but AVX-512's float one).
  void (*blocked_tile_rows_at32)(const T *x, const int64_t *x_at, int64_t x_cb, int64_t x_row,
                                 const T *w, int64_t w_ob, int64_t w_cb, int64_t cbn, int64_t kh,
                                 int64_t kw, int64_t ne, T *y, int64_t y_plane, int64_t nk,
                                 int np) = nullptr;
  // One whole block of direct's blocked filters: d[(t*8 + e)*ds + o] = src[o*ld + e*kk + t] for
  // o, e < 8 and t < kk (8 output channels' runs of 8*kk weights, ld apart, turned into kk taps
  // of 8 input x 8 output channels; ds: 8, or 32 where four blocks lie joined). Returns whether
  // every value is finite (no infinity, no NaN).
  bool (*pack_block8)(const T *src, int64_t ld, int64_t kk, T *d, int64_t ds);
  // The same block of a data gradient's filters, read from the layer's own weights (transposed
  // per group and flipped): d[(t*8 + e)*ds + o] = src[e*ld + o*kk + kk-1-t] (input channel e's
  // run of 8 output channels' kk taps, ld apart). Returns whether every value is finite.
  bool (*pack_block8_flipped)(const T *src, int64_t ld, int64_t kk, T *d, int64_t ds);
  // The same block read as pack_block8_flipped reads it, each tap t to its own place:
  // dt[t][e*ds[t] + o] = src[e*ld + o*kk + t] (a strided data gradient's phases, each taking
  // some of the taps). Returns whether every value is finite.
  bool (*pack_block8_taps)(const T *src, int64_t ld, int64_t kk, T *const *dt, const int64_t *ds);
  // d[r*32 + q] = src[r*ld + q] for r < rows, q < 32 (a 1x1 data gradient's joined filters of
  // 32 channels, which lie in the layer's weights as the tile reads them). Returns whether every
  // value is finite.
  bool (*copy_rows32)(const T *src, int64_t ld, int64_t rows, T *d);
  // d[i*ds + e] = (e < nc ? src[e*plane + i] : 0) for i < n, e < 8 (nc <= 8): n consecutive
  // pixels of nc channel planes, plane apart, as 8-channel pixels (direct's blocked input copy;
  // ds 8, or 32 where four blocks lie joined).
  void (*pixels8)(const T *src, int64_t plane, int64_t nc, int64_t n, T *d, int64_t ds);
  // An output stage (epilogue.h) over rows x cols of y, rows ld apart, in one pass:
  //   y[r*ld + i] = act((y[r*ld + i] + bias[r]) + res[r*ld + i])
  // each term only where given (bias, res null: none; a missing term is not an added 0, which
  // would turn -0 into +0); act an fc_act with its alpha.
  void (*epilogue_rows)(T *y, int64_t ld, int64_t rows, int64_t cols, const T *bias, const T *res,
                        int act, T alpha);
  // y[r*ld + i] = b[r] for r < rows, i < cols: a forward GEMM's starting value (bias_rows).
  void (*fill_rows)(T *y, const T *b, int64_t rows, int64_t cols, int64_t ld);
  int rows_kt;      // rows of a per dot_rows tile
  int bt;           // positions per blocked tile
  int wbt = 0;      // positions per wgrad_tile32 (where the table has it)
  int dots_nr = 0;  // rows of b per dots_tile (where the table has it)
  int fbt;          // positions per forward tile on channel blocks at stride 1 or 2 (>= bt)
  int kt;           // output channels per k-tile (a multiple of vlen)
  int pt;           // positions per k-tile
  int kb;           // output channels per tile
  int vlen;         // pixels per vector
  int max_nvec;     // vectors per tile row
};

const UKernels<float> &ukernels_f32();
const UKernels<double> &ukernels_f64();
template <class T>
const UKernels<T> &ukernels();
template <>
inline const UKernels<float> &ukernels<float>() {
  return ukernels_f32();
}
template <>
inline const UKernels<double> &ukernels<double>() {
  return ukernels_f64();
}

// Each per-ISA file defines these (the `__isa` suffix names its variant).
void get_ukernels__generic(UKernels<float> *f, UKernels<double> *d);
void get_ukernels__avx2(UKernels<float> *f, UKernels<double> *d);
void get_ukernels__avx512(UKernels<float> *f, UKernels<double> *d);

}  // namespace fc
