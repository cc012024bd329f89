// Winograd transform micro-kernels F(m x m, 3 x 3), one table per element type and tile size,
// chosen once at load time by winograd_dispatch.cpp (the convolution table's instruction set,
// see ukernels.h, so FASTCONV_ISA selects these too). Raw pointers, sizes and strides only:
// they never allocate and never start threads.
//
// Every kernel works on a batch of `nt` tiles (or filters) at once, the batch index innermost,
// so the transforms are loops over contiguous vectors of tiles. The transformed domain has
// alpha*alpha = (m + 2)^2 elements e; element e of batch item t lives at out[e*ld_e + t].
#pragma once
#include <cstdint>

namespace fc {

// Where one tile sits: its image and the top-left output position (oy, ox) it covers.
struct WinoTile {
  int64_t img, oy, ox;
};

template <class T>
struct WinogradUKernels {
  int m;  // output tile (m x m); alpha = m + 2
  int alpha;
  // v[e*ld_e + t] = (B^T d_t B)[e]: d_t the alpha x alpha input patch of tile t, rows from
  // oy - ph, columns from ox - pw of the plane xc + img*img_stride ([h, w]; zero outside).
  // Like weight and grad, returns whether every value it wrote is finite.
  bool (*input)(const T *xc, int64_t img_stride, int64_t h, int64_t w, int64_t ph, int64_t pw,
                const WinoTile *tiles, int64_t nt, T *v, int64_t ld_e);
  // y[img*img_stride + (oy + i)*ldy + ox + j] = (A^T M_t A)[i][j] + bias for i, j < m where
  // oy + i < y1 and ox + j < x1 (ragged last tiles write only their valid part), with
  // M_t[e] = mk[e*ld_e + t].
  void (*output)(const T *mk, int64_t ld_e, const WinoTile *tiles, int64_t nt, T bias, T *y,
                 int64_t img_stride, int64_t ldy, int64_t y1, int64_t x1);
  // u[e*ld_e + t] = (G g_t G^T)[e] for the 3x3 filters g_t = w + t*stride (row-major), each
  // rotated by 180 degrees when `flip` (the data gradient's filters).
  bool (*weight)(const T *w, int64_t stride, int64_t nt, bool flip, T *u, int64_t ld_e);
  // The weight gradient's operands. grad: v[e*ld_e + t] = (A dy_t A^T)[e] for the m x m tile of
  // output gradients of tile t in the plane dyc + img*img_stride ([ho, wo]; zero outside).
  bool (*grad)(const T *dyc, int64_t img_stride, int64_t ho, int64_t wo, const WinoTile *tiles,
               int64_t nt, T *v, int64_t ld_e);
  // dw[t*9 + i*3 + j] = (G^T Z_t G)[i][j] with Z_t[e] = z[e*ld_e + t]: the 3x3 weight gradient
  // from its accumulated transform.
  void (*weight_grad)(const T *z, int64_t ld_e, int64_t nt, T *dw);
  // The fused forward's products (conv/winograd.cpp, forward_fused): for i < mr, j < nr,
  //   m[i*ldm + j] = (acc ? m[i*ldm + j] : 0) + sum over q < kc of up[q*lanes + i] * v[q*ldv + j]
  // with lanes = 64 bytes of T (a panel of transformed filters, [q][lanes]) and up to pw
  // columns of the transformed inputs. Reads all pw columns of v (the caller pads them).
  void (*tile_gemm)(int64_t kc, const T *up, const T *v, int64_t ldv, T *m, int64_t ldm, int64_t mr,
                    int64_t nr, bool acc);
  // tile_gemm for two panels over the same columns at once, up0 into m0's mr0 rows and up1 into
  // m1's mr1 (the same sums, the same bits); null where the ISA's registers do not hold both.
  void (*tile_gemm2)(int64_t kc, const T *up0, const T *up1, const T *v, int64_t ldv, T *m0, T *m1,
                     int64_t ldm, int64_t mr0, int64_t mr1, int64_t nr, bool acc);
  int pw;  // tile_gemm's columns
};

// The table for tile m (2 or 4).
template <class T>
const WinogradUKernels<T> &winograd_ukernels(int m);

// Each per-ISA file fills the tables for both tiles, float then double (index 0: m = 2, 1: m = 4).
void get_winograd_ukernels__generic(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]);
void get_winograd_ukernels__avx2(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]);
void get_winograd_ukernels__avx512(WinogradUKernels<float> f[2], WinogradUKernels<double> d[2]);

}  // namespace fc
