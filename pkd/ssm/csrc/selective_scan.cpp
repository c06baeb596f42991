// Fused CPU selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics, forward and backward.
//
// Letters: B batch, ED channels, L length, N state size, W channel lanes per SIMD block (4, 8 or 16: the caller
// picks it, see pkd/ssm/cpu_kernel.py pick_lanes; kPreferredLanes is what the compiler's target suits). Work is split over (b, block of W channels) tasks with at::parallel_for (torch's OpenMP pool,
// contiguous ranges per thread); inside a task every operation is on GCC vector types holding W channels, so the
// recurrence over t vectorises without horizontal reductions. The state x (N vectors) stays in a thread-local
// array in L1. B and C arrive transposed to (B, L, N) so the values of one step are contiguous. exp is an inlined
// polynomial. The skip D, the gate silu(z), delta_bias and the softplus of dt are fused (dt = softplus(delta +
// bias) is computed per block as its rows are gathered, so no (B, ED, L) dt tensor is made and no torch softplus
// runs; the backward recomputes it and returns the gradient of delta and of the bias). The backward pass recomputes the forward states and decays of one task into thread-local
// (L+1, N) buffers and runs the reverse-time adjoint recurrence; the (B, L, N) gradients of B and C are summed
// per thread over the tasks of one batch row (of one group of it) and flushed once. Nothing of size (B, ED, L, N)
// is allocated.
//
// Layouts of B and C (each on its own): input-dependent (B, L, N) (Mamba-1), grouped (B, G, L, N) (G groups of ED/G
// channels share a row; a block of W lanes must lie in one group, so ED/G is a multiple of W) or fixed (ED, N), held
// as N lane vectors like A. Each (fixed B?, fixed C?) pair is its own template instance, so the Mamba-1 instance
// runs exactly the operations it ran before the other layouts existed. Real A only (complex A runs in torch).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace {

using torch::Tensor;
using OptTensor = c10::optional<Tensor>;

// The widest lane count whose N = 16 state vectors still fit the target's vector registers: a 16-lane vector is a
// zmm register with AVX-512 but a pair of ymm registers with AVX2, where the states of a block spill (measured on
// an AVX2 EPYC: 3.8x slower per channel than 8 lanes). NEON and SSE2 registers hold 4 floats.
#if defined(__AVX512F__)
constexpr int kPreferredLanes = 16;
constexpr const char* kVectorIsa = "AVX-512F";
#elif defined(__AVX2__)
constexpr int kPreferredLanes = 8;
constexpr const char* kVectorIsa = "AVX2";
#elif defined(__AVX__)
constexpr int kPreferredLanes = 8;
constexpr const char* kVectorIsa = "AVX";
#elif defined(__ARM_NEON) || defined(__ARM_NEON__)
constexpr int kPreferredLanes = 4;
constexpr const char* kVectorIsa = "NEON";
#elif defined(__SSE2__)
constexpr int kPreferredLanes = 4;
constexpr const char* kVectorIsa = "SSE2";
#else
constexpr int kPreferredLanes = 4;
constexpr const char* kVectorIsa = "portable (no SIMD extension known to the compiler)";
#endif

// One SIMD block of W channel lanes as a GCC/Clang vector type: one register when the target has W-float vectors,
// split into narrower registers by the compiler otherwise. Every width is compiled on every target.
template <int W>
struct Lane;
template <>
struct Lane<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};
template <>
struct Lane<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef int32_t i __attribute__((vector_size(32)));
};
template <>
struct Lane<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};

// exp of every lane, Cephes polynomial (about 2 ulp) with round-to-nearest by the 1.5 * 2^23 trick; inputs are
// clamped to [-87, 88] (so exp(-inf) gives 1.6e-38 instead of 0, harmless here).
template <typename vf, typename vi>
static inline vf vexp(vf x) {
  const vf lo = vf{} - 87.0f, hi = vf{} + 88.0f;
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const vf k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  vf r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  const vf r2 = r * r;
  vf p = vf{} + 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r2 + r + 1.0f;
  const vi bits = (__builtin_convertvector(k, vi) + 127) << 23;
  return p * reinterpret_cast<const vf&>(bits);
}

// Natural log of every lane for finite x >= 1 (what softplus needs), Cephes logf: x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log(1 + f) by its polynomial (about 1 ulp).
template <typename vf, typename vi>
static inline vf vlog(vf x) {
  const vi bits = reinterpret_cast<const vi&>(x);
  vi e = ((bits >> 23) & 0xff) - 126;
  const vi mbits = (bits & 0x007fffff) | 0x3f000000;  // mantissa in [0.5, 1)
  vf m = reinterpret_cast<const vf&>(mbits);
  const vi small = m < 0.707106781186547524f;  // -1 where true
  e = e + small;
  m = small ? m + m - 1.0f : m - 1.0f;
  const vf fe = __builtin_convertvector(e, vf);
  const vf z = m * m;
  vf y = vf{} + 7.0376836292E-2f;
  y = y * m - 1.1514610310E-1f;
  y = y * m + 1.1676998740E-1f;
  y = y * m - 1.2420140846E-1f;
  y = y * m + 1.4249322787E-1f;
  y = y * m - 1.6668057665E-1f;
  y = y * m + 2.0000714765E-1f;
  y = y * m - 2.4999993993E-1f;
  y = y * m + 3.3333331174E-1f;
  y = y * m * z + fe * -2.12194440e-4f - 0.5f * z;
  return m + y + fe * 0.693359375f;
}

// softplus of every lane as torch's F.softplus (threshold 20: x itself above it): log1p(e^x), with log1p by
// Goldberg's correction log(u) * e / (u - 1), u = 1 + e (e itself where u rounds to 1), accurate for tiny e.
template <typename vf, typename vi>
static inline vf vsoftplus(vf x) {
  const vi big = x > 20.0f;
  const vf e = vexp<vf, vi>(big ? vf{} : x);
  const vf u = 1.0f + e;
  const vf d = u - 1.0f;
  const vf lp = d == 0.0f ? e : vlog<vf, vi>(u) * (e / d);
  return big ? x : lp;
}

// One level of a transpose-reduce: a and b hold W/G groups of G lanes; the result holds twice as many groups of
// G/2 lanes, each group halved by adding its two halves (a's group g goes to 2g, b's to 2g + 1).
template <int W, int G>
static inline typename Lane<W>::f fold(typename Lane<W>::f a, typename Lane<W>::f b) {
  typedef typename Lane<W>::i vi;
  vi lo, hi;
  for (int o = 0; o < W; ++o) {
    const int grp = o / (G / 2), j = o % (G / 2), g = grp / 2, side = grp % 2;
    lo[o] = side * W + g * G + j;
    hi[o] = side * W + g * G + G / 2 + j;
  }
  return __builtin_shuffle(a, b, lo) + __builtin_shuffle(a, b, hi);
}

template <int W, int G>
static inline void fold_level(typename Lane<W>::f* v, int count) {
  for (int i = 0; i < count; ++i) v[i] = fold<W, G>(v[2 * i], v[2 * i + 1]);
}

// All levels of the transpose-reduce, from groups of G lanes down to single lanes.
template <int W, int G>
static inline void fold_levels(typename Lane<W>::f* v) {
  fold_level<W, G>(v, G / 2);
  if constexpr (G > 2) fold_levels<W, G / 2>(v);
}

constexpr int bit_reverse(int x, int bits) {
  int r = 0;
  for (int i = 0; i < bits; ++i) r |= ((x >> i) & 1) << (bits - 1 - i);
  return r;
}

// dst[i] += sum of the lanes of src[i] for i < rows, W rows at a time with a shuffle tree (no scalar lane loop).
template <int W>
static inline void add_lane_sums(const typename Lane<W>::f* src, int64_t rows, float* dst) {
  typedef typename Lane<W>::f vf;
  constexpr int bits = W == 16 ? 4 : (W == 8 ? 3 : 2);
  int64_t i = 0;
  for (; i + W <= rows; i += W) {
    vf v[W];
    for (int k = 0; k < W; ++k) v[k] = src[i + k];
    fold_levels<W, W>(v);
    for (int l = 0; l < W; ++l) dst[i + bit_reverse(l, bits)] += v[0][l];
  }
  for (; i < rows; ++i) {
    float acc = 0.0f;
    for (int l = 0; l < W; ++l) acc += src[i][l];
    dst[i] += acc;
  }
}

struct Inputs {
  const float* u;      // (B, ED, L)
  const float* dt;     // (B, ED, L): delta, before the bias and softplus
  const float* A;      // (ED, N)
  const float* Bt;     // (B, L, N), (B, G, L, N), or fixed (ED, N)
  const float* Ct;     // (B, L, N), (B, G, L, N), or fixed (ED, N)
  const float* D;      // (ED,) or null
  const float* z;      // (B, ED, L) or null
  const float* bias;   // (ED,) delta_bias or null
  bool softplus;       // dt = softplus(delta + bias), else delta + bias
  int64_t batch, dim, len, nst;
  int64_t gB, gC;      // groups of B and C: 0 when fixed (ED, N), 1 for (B, L, N)
  int64_t hB, hC;      // channels per group (ED / groups; ED when fixed)
};

// Start of the (L, N) rows that channel d0 of batch row b reads (a fixed operand: the (ED, N) matrix itself).
inline const float* group_rows(const float* M, int64_t groups, int64_t per_group, int64_t b, int64_t d0, int64_t L,
                               int64_t N) {
  if (groups == 0) return M;
  return M + (b * groups + d0 / per_group) * L * N;
}

// Value of B or C at state n: a scalar of the step's row (broadcast over lanes) or the lane vector of a fixed one.
template <bool Fixed, typename vf>
static inline auto operand(const float* row, const vf* lanes, int64_t n) {
  if constexpr (Fixed) {
    return lanes[n];
  } else {
    return row[n];
  }
}

// Gathers rows src[(b, d0 + w, :)] of a (B, ED, L) tensor into lane vectors dst[t] (zero in padding lanes).
template <int W>
inline void gather_rows(const float* src, int64_t b, int64_t d0, int64_t dim, int64_t L,
                        typename Lane<W>::f* dst) {
  const int64_t nd = std::min<int64_t>(W, dim - d0);
  float* out = reinterpret_cast<float*>(dst);
  for (int64_t w = 0; w < W; ++w) {
    if (w < nd) {
      const float* row = src + (b * dim + d0 + w) * L;
      for (int64_t t = 0; t < L; ++t) out[t * W + w] = row[t];
    } else {
      for (int64_t t = 0; t < L; ++t) out[t * W + w] = 0.0f;
    }
  }
}

// Scatters lane vectors src[t] back to rows dst[(b, d0 + w, :)] for the real (non-padding) lanes.
template <int W>
inline void scatter_rows(const typename Lane<W>::f* src, int64_t b, int64_t d0, int64_t dim, int64_t L,
                         float* dst) {
  const int64_t nd = std::min<int64_t>(W, dim - d0);
  const float* in = reinterpret_cast<const float*>(src);
  for (int64_t w = 0; w < nd; ++w) {
    float* row = dst + (b * dim + d0 + w) * L;
    for (int64_t t = 0; t < L; ++t) row[t] = in[t * W + w];
  }
}

// Lane vectors out[n][w] = M[(d0 + w, n)] of an (ED, N) matrix (zero in padding lanes).
template <int W>
inline void load_lanes(const float* M, int64_t d0, int64_t dim, int64_t N, typename Lane<W>::f* out) {
  const int64_t nd = std::min<int64_t>(W, dim - d0);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t w = 0; w < W; ++w) out[n][w] = w < nd ? M[(d0 + w) * N + n] : 0.0f;
  }
}

template <int W>
inline void load_params(const Inputs& p, int64_t d0, typename Lane<W>::f* Aw, typename Lane<W>::f& Dw) {
  const int64_t nd = std::min<int64_t>(W, p.dim - d0);
  for (int64_t n = 0; n < p.nst; ++n) {
    for (int64_t w = 0; w < W; ++w) Aw[n][w] = w < nd ? p.A[(d0 + w) * p.nst + n] : 0.0f;
  }
  for (int64_t w = 0; w < W; ++w) Dw[w] = (p.D && w < nd) ? p.D[d0 + w] : 0.0f;
}

// The block's dt_t = softplus(delta_t + bias) (or delta_t + bias without softplus), in place over the L gathered
// delta vectors; with sig, also sig[t] = d softplus / d x = sigmoid(delta_t + bias) for the backward's chain rule.
template <int W>
inline void prepare_dt(const Inputs& p, int64_t d0, int64_t L, typename Lane<W>::f* dt, typename Lane<W>::f* sig) {
  using vf = typename Lane<W>::f;
  using vi = typename Lane<W>::i;
  if (!p.bias && !p.softplus) return;
  vf bw = vf{};
  const int64_t nd = std::min<int64_t>(W, p.dim - d0);
  for (int64_t w = 0; w < nd && p.bias; ++w) bw[w] = p.bias[d0 + w];
  for (int64_t t = 0; t < L; ++t) {
    const vf x = dt[t] + bw;
    if (!p.softplus) {
      dt[t] = x;
      continue;
    }
    dt[t] = vsoftplus<vf, vi>(x);
    if (sig) sig[t] = 1.0f / (1.0f + vexp<vf, vi>(-x));
  }
}

constexpr int64_t kChunk = 16;  // checkpoint spacing: the backward recomputes kChunk steps at a time

// Recurrence of one block over steps [t0, t1) from state x (N vectors, updated in place): y_t (before skip and
// gate) into ys[t]; with ckpt, the state before every step t % kChunk == 0 into ckpt[(t / kChunk) N + n]; with
// xs/as, every state x_t into xs[(t - t0 + 1) N + n] and every decay exp(dt_t A) into as[(t - t0) N + n].
// Bb/Cb: the block's (L, N) rows, or Bw/Cw: N lane vectors when FB/FC (fixed B/C).
template <int W, bool FB, bool FC>
inline void scan_block(const float* Bb, const float* Cb, const typename Lane<W>::f* Bw,
                       const typename Lane<W>::f* Cw, int64_t t0, int64_t t1, int64_t N,
                       const typename Lane<W>::f* uu, const typename Lane<W>::f* dt, const typename Lane<W>::f* Aw,
                       typename Lane<W>::f* x, typename Lane<W>::f* ys, typename Lane<W>::f* ckpt,
                       typename Lane<W>::f* xs, typename Lane<W>::f* as) {
  using vf = typename Lane<W>::f;
  using vi = typename Lane<W>::i;
  for (int64_t t = t0; t < t1; ++t) {
    const vf dtv = dt[t];
    const vf duv = dtv * uu[t];
    vf y = vf{};
    const float* Bs = nullptr;
    const float* Cs = nullptr;
    if constexpr (!FB) Bs = Bb + t * N;
    if constexpr (!FC) Cs = Cb + t * N;
    if (ckpt && t % kChunk == 0) std::copy(x, x + N, ckpt + (t / kChunk) * N);
    if (xs) {
      vf* xo = xs + (t - t0 + 1) * N;
      vf* ao = as + (t - t0) * N;
      for (int64_t n = 0; n < N; ++n) {
        const vf a = vexp<vf, vi>(dtv * Aw[n]);
        const vf xv = a * x[n] + duv * operand<FB>(Bs, Bw, n);
        x[n] = xv;
        xo[n] = xv;
        ao[n] = a;
      }
    } else {
      for (int64_t n = 0; n < N; ++n) {
        const vf a = vexp<vf, vi>(dtv * Aw[n]);
        const vf xv = a * x[n] + duv * operand<FB>(Bs, Bw, n);
        x[n] = xv;
        y += xv * operand<FC>(Cs, Cw, n);
      }
      ys[t] = y;
    }
  }
}

Inputs make_inputs(const Tensor& u, const Tensor& dt, const Tensor& A, const Tensor& Bt, const Tensor& Ct,
                   const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus) {
  for (const Tensor* t : {&u, &dt, &A, &Bt, &Ct}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "pkd scan kernel: expected contiguous float32 CPU tensors");
  }
  Inputs p;
  p.u = u.data_ptr<float>();
  p.dt = dt.data_ptr<float>();
  p.A = A.data_ptr<float>();
  p.Bt = Bt.data_ptr<float>();
  p.Ct = Ct.data_ptr<float>();
  p.D = D.has_value() ? D->data_ptr<float>() : nullptr;
  p.z = z.has_value() ? z->data_ptr<float>() : nullptr;
  p.bias = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  p.softplus = softplus;
  p.batch = u.size(0);
  p.dim = u.size(1);
  p.len = u.size(2);
  p.nst = A.size(1);
  p.gB = Bt.dim() == 2 ? 0 : (Bt.dim() == 4 ? Bt.size(1) : 1);
  p.gC = Ct.dim() == 2 ? 0 : (Ct.dim() == 4 ? Ct.size(1) : 1);
  TORCH_CHECK(u.dim() == 3 && dt.sizes() == u.sizes() && A.dim() == 2 && A.size(0) == p.dim,
              "pkd scan kernel: u, dt must be (B, ED, L) and A (ED, N)");
  for (const OptTensor* v : {&D, &bias}) {
    TORCH_CHECK(!v->has_value() || ((*v)->dim() == 1 && (*v)->size(0) == p.dim && (*v)->is_contiguous() &&
                                    (*v)->scalar_type() == at::kFloat),
                "pkd scan kernel: D and delta_bias must be contiguous float32 (ED,)");
  }
  for (const Tensor* M : {&Bt, &Ct}) {
    const bool fixed = M->dim() == 2 && M->size(0) == p.dim && M->size(1) == p.nst;
    const bool rows = (M->dim() == 3 || M->dim() == 4) && M->size(0) == p.batch && M->size(-2) == p.len &&
                      M->size(-1) == p.nst && (M->dim() == 3 || (M->size(1) > 0 && p.dim % M->size(1) == 0));
    TORCH_CHECK(fixed || rows, "pkd scan kernel: B and C must be (B, L, N), (B, G, L, N) or (ED, N)");
  }
  p.hB = p.gB == 0 ? p.dim : p.dim / p.gB;
  p.hC = p.gC == 0 ? p.dim : p.dim / p.gC;
  return p;
}

// Checkpoint tensor layout: (B, blocks, chunks, N, W) floats.

// Tasks per thread chunk: about 2^18 lane-steps (~0.1 ms) at least, so tiny scans (batch-1 inference) stay on one
// thread instead of paying an OpenMP wake-up and barrier that costs milliseconds on a busy machine.
inline int64_t grain_tasks(int64_t L, int64_t N, int64_t W) {
  return std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(1, L * N * W));
}
inline int64_t num_chunks(int64_t L) { return (L + kChunk - 1) / kChunk; }

template <int W, bool FB, bool FC>
void forward_impl(const Inputs& p, float* out, float* last, float* ckpt, float* ypre) {
  using vf = typename Lane<W>::f;
  using vi = typename Lane<W>::i;
  const int64_t L = p.len, N = p.nst, ED = p.dim;
  const int64_t nblk = (ED + W - 1) / W;
  at::parallel_for(0, p.batch * nblk, grain_tasks(L, N, W), [&](int64_t begin, int64_t end) {
    std::vector<vf> buf(4 * L + 4 * N);
    vf* uu = buf.data();
    vf* dt = uu + L;
    vf* zz = dt + L;
    vf* ys = zz + L;
    vf* Aw = ys + L;
    vf* x = Aw + N;
    vf* Bw = x + N;  // fixed B / C as lane vectors
    vf* Cw = Bw + N;
    vf Dw;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, d0 = (task % nblk) * W;
      gather_rows<W>(p.u, b, d0, ED, L, uu);
      gather_rows<W>(p.dt, b, d0, ED, L, dt);
      prepare_dt<W>(p, d0, L, dt, nullptr);
      load_params<W>(p, d0, Aw, Dw);
      if constexpr (FB) load_lanes<W>(p.Bt, d0, ED, N, Bw);
      if constexpr (FC) load_lanes<W>(p.Ct, d0, ED, N, Cw);
      std::fill(x, x + N, vf{});
      vf* ck = ckpt ? reinterpret_cast<vf*>(ckpt) + task * num_chunks(L) * N : nullptr;
      scan_block<W, FB, FC>(group_rows(p.Bt, p.gB, p.hB, b, d0, L, N), group_rows(p.Ct, p.gC, p.hC, b, d0, L, N),
                            Bw, Cw, 0, L, N, uu, dt, Aw, x, ys, ck, nullptr, nullptr);
      if (p.z) {
        if (ypre) scatter_rows<W>(ys, b, d0, ED, L, ypre);
        gather_rows<W>(p.z, b, d0, ED, L, zz);
        for (int64_t t = 0; t < L; ++t) {
          const vf zv = zz[t];
          ys[t] = (ys[t] + Dw * uu[t]) * (zv / (1.0f + vexp<vf, vi>(-zv)));
        }
      } else if (p.D) {
        for (int64_t t = 0; t < L; ++t) ys[t] += Dw * uu[t];
      }
      scatter_rows<W>(ys, b, d0, ED, L, out);
      if (last) {
        const int64_t nd = std::min<int64_t>(W, ED - d0);
        for (int64_t w = 0; w < nd; ++w) {
          for (int64_t n = 0; n < N; ++n) last[(b * ED + d0 + w) * N + n] = x[n][w];
        }
      }
    }
  });
}

// One block's buffers in the backward, carved from a row of `per` vectors: uu, dt, go, gub, zz, sig (L vectors
// each), then Aw, h, gA, Bw, Cw, gBw, gCw (N each).
template <typename vf>
struct BlockRows {
  static int64_t size(int64_t L, int64_t N) { return 6 * L + 7 * N; }
  BlockRows(vf* r, int64_t L, int64_t N)
      : uu(r), dt(r + L), go(r + 2 * L), gub(r + 3 * L), zz(r + 4 * L), sig(r + 5 * L), Aw(r + 6 * L), h(Aw + N),
        gA(h + N), Bw(gA + N), Cw(Bw + N), gBw(Cw + N), gCw(gBw + N) {}
  vf *uu, *dt, *go, *gub, *zz, *sig, *Aw, *h, *gA, *Bw, *Cw, *gBw, *gCw;
};

// Backward. A thread owns a contiguous range of (b, block) tasks; the blocks of one batch row are processed
// together, chunk by chunk in reverse time: recompute the chunk's states from the forward checkpoint into small
// buffers, run the adjoint recurrence, then flush the chunk's B/C gradient sums (summed over the blocks of one
// group of the row). A fixed B/C instead sums its (ED, N) gradient per block, like A, into gB/gC per batch row.
template <int W, bool FB, bool FC>
void backward_impl(const Inputs& p, const float* gout, const float* glast, const float* ckpt, const float* ypre,
                   float* gu, float* gdt, float* gA_part, float* gBt, float* gCt, float* gD_part, float* gz,
                   float* gbias_part) {
  using vf = typename Lane<W>::f;
  using vi = typename Lane<W>::i;
  const int64_t L = p.len, N = p.nst, ED = p.dim;
  const int64_t nblk = (ED + W - 1) / W, nchunk = num_chunks(L);
  std::mutex flush_mutex;
  at::parallel_for(0, p.batch * nblk, grain_tasks(L, N, W), [&](int64_t begin, int64_t end) {
    const int64_t pad = 3;  // odd number of vectors between buffers against 4 KiB aliasing
    std::vector<vf> chunk(2 * (kChunk * N + pad) + ((kChunk + 1) * N + pad) + kChunk * N);
    vf* accB = chunk.data();                  // (kChunk, N) lane sums of dLoss/dB for the current chunk
    vf* accC = accB + kChunk * N + pad;       // (kChunk, N)
    vf* xs = accC + kChunk * N + pad;         // (kChunk + 1, N) states of the chunk (row 0 unused)
    vf* as = xs + (kChunk + 1) * N + pad;     // (kChunk, N) decays of the chunk
    std::vector<vf> rows;  // per block of the row: BlockRows
    std::vector<vf> Dws(nblk), gDs(nblk);
    std::vector<vf> xwork(N);  // running state while recomputing a chunk
    vf* xw = xwork.data();
    for (int64_t task = begin; task < end;) {
      const int64_t b = task / nblk, k0 = task % nblk;
      const int64_t k1 = std::min<int64_t>(nblk, k0 + (end - task));
      const int64_t nk = k1 - k0;
      const int64_t per = BlockRows<vf>::size(L, N);
      rows.assign(nk * per, vf{});
      for (int64_t k = k0; k < k1; ++k) {
        const BlockRows<vf> R(rows.data() + (k - k0) * per, L, N);
        vf *uu = R.uu, *dt = R.dt, *go = R.go, *zz = R.zz, *Aw = R.Aw, *h = R.h;
        const int64_t d0 = k * W, nd = std::min<int64_t>(W, ED - d0);
        gather_rows<W>(p.u, b, d0, ED, L, uu);
        gather_rows<W>(p.dt, b, d0, ED, L, dt);
        prepare_dt<W>(p, d0, L, dt, R.sig);
        gather_rows<W>(gout, b, d0, ED, L, go);
        load_params<W>(p, d0, Aw, Dws[k]);
        if constexpr (FB) load_lanes<W>(p.Bt, d0, ED, N, R.Bw);
        if constexpr (FC) load_lanes<W>(p.Ct, d0, ED, N, R.Cw);
        if (p.z) {  // go becomes dLoss/dy_t (before the gate); zz becomes dLoss/dz_t
          vf* yp = R.gub;  // borrow the gub slot for y before the gate
          gather_rows<W>(ypre, b, d0, ED, L, yp);
          gather_rows<W>(p.z, b, d0, ED, L, zz);
          for (int64_t t = 0; t < L; ++t) {
            const vf zv = zz[t];
            const vf sz = 1.0f / (1.0f + vexp<vf, vi>(-zv));
            const vf o = yp[t] + Dws[k] * uu[t];
            zz[t] = go[t] * o * sz * (1.0f + zv * (1.0f - sz));
            go[t] = go[t] * zv * sz;
          }
        }
        vf gDl = vf{};
        for (int64_t t = 0; t < L; ++t) gDl += go[t] * uu[t];
        gDs[k] = gDl;
        for (int64_t n = 0; n < N; ++n) {
          for (int64_t w = 0; w < W; ++w) h[n][w] = (glast && w < nd) ? glast[(b * ED + d0 + w) * N + n] : 0.0f;
        }
      }
      for (int64_t c = nchunk - 1; c >= 0; --c) {
        const int64_t t0 = c * kChunk, t1 = std::min(L, t0 + kChunk);
        std::fill(accB, accB + kChunk * N, vf{});
        std::fill(accC, accC + kChunk * N, vf{});
        for (int64_t k = k0; k < k1; ++k) {
          const BlockRows<vf> R(rows.data() + (k - k0) * per, L, N);
          vf *uu = R.uu, *dt = R.dt, *go = R.go, *gub = R.gub, *Aw = R.Aw, *h = R.h, *gA = R.gA;
          vf *Bw = R.Bw, *Cw = R.Cw, *gBw = R.gBw, *gCw = R.gCw;
          const int64_t d0 = k * W;
          const float* Bb = group_rows(p.Bt, p.gB, p.hB, b, d0, L, N);
          const float* Cb = group_rows(p.Ct, p.gC, p.hC, b, d0, L, N);
          const vf* ck = reinterpret_cast<const vf*>(ckpt) + ((b * nblk + k) * nchunk + c) * N;
          std::copy(ck, ck + N, xw);
          scan_block<W, FB, FC>(Bb, Cb, Bw, Cw, t0, t1, N, uu, dt, Aw, xw, nullptr, nullptr, xs, as);
          const vf Dw = Dws[k];
          for (int64_t t = t1 - 1; t >= t0; --t) {
            const vf dtv = dt[t];
            const vf duv = dtv * uu[t];
            const vf gy = go[t];
            vf gdu = vf{}, gdtv = vf{};
            const float* Bs = nullptr;
            const float* Cs = nullptr;
            if constexpr (!FB) Bs = Bb + t * N;
            if constexpr (!FC) Cs = Cb + t * N;
            const vf* xt = xs + (t - t0 + 1) * N;
            const vf* at = as + (t - t0) * N;
            vf* aB = accB + (t - t0) * N;
            vf* aC = accC + (t - t0) * N;
            for (int64_t n = 0; n < N; ++n) {
              const vf hv = h[n] + gy * operand<FC>(Cs, Cw, n);
              const vf xv = xt[n];
              if constexpr (FC) {
                gCw[n] += gy * xv;
              } else {
                aC[n] += gy * xv;
              }
              if constexpr (FB) {
                gBw[n] += hv * duv;
              } else {
                aB[n] += hv * duv;
              }
              gdu += hv * operand<FB>(Bs, Bw, n);
              // dLoss/d(a_t) * a_t, as a_t x_{t-1} = x_t - du_t B_t
              const vf q = hv * (xv - duv * operand<FB>(Bs, Bw, n));
              gdtv += q * Aw[n];
              gA[n] += q * dtv;
              h[n] = hv * at[n];
            }
            gub[t] = gy * Dw + gdu * dtv;
            dt[t] = gdu * uu[t] + gdtv;  // dt[t] is not read again: it now holds dLoss/d(dt_t)
          }
          // Flush the chunk's row sums once the next block reads another group's row (or the range ends).
          const bool last_block = k + 1 == k1;
          const bool flushB = !FB && (last_block || (d0 + W) / p.hB != d0 / p.hB);
          const bool flushC = !FC && (last_block || (d0 + W) / p.hC != d0 / p.hC);
          if (flushB || flushC) {
            std::lock_guard<std::mutex> lock(flush_mutex);
            if (flushB) add_lane_sums<W>(accB, (t1 - t0) * N, gBt + ((b * p.gB + d0 / p.hB) * L + t0) * N);
            if (flushC) add_lane_sums<W>(accC, (t1 - t0) * N, gCt + ((b * p.gC + d0 / p.hC) * L + t0) * N);
          }
          if (flushB && !last_block) std::fill(accB, accB + kChunk * N, vf{});
          if (flushC && !last_block) std::fill(accC, accC + kChunk * N, vf{});
        }
      }
      for (int64_t k = k0; k < k1; ++k) {
        const BlockRows<vf> R(rows.data() + (k - k0) * per, L, N);
        vf *dt = R.dt, *gub = R.gub, *zz = R.zz, *gA = R.gA, *gBw = R.gBw, *gCw = R.gCw;
        const int64_t d0 = k * W, nd = std::min<int64_t>(W, ED - d0);
        // dt holds dLoss/d(dt_t): chain it through the softplus to dLoss/d(delta_t); the bias gradient is its sum
        // over t, compensated (Kahan) so that long rows keep float32 accuracy.
        vf gbias = vf{}, comp = vf{};
        for (int64_t t = 0; t < L; ++t) {
          if (p.softplus) dt[t] *= R.sig[t];
          const vf yk = dt[t] - comp;
          const vf sum = gbias + yk;
          comp = (sum - gbias) - yk;
          gbias = sum;
        }
        scatter_rows<W>(gub, b, d0, ED, L, gu);
        scatter_rows<W>(dt, b, d0, ED, L, gdt);
        if (gz) scatter_rows<W>(zz, b, d0, ED, L, gz);
        for (int64_t w = 0; w < nd; ++w) {
          for (int64_t n = 0; n < N; ++n) gA_part[(b * ED + d0 + w) * N + n] = gA[n][w];
          if constexpr (FB) {
            for (int64_t n = 0; n < N; ++n) gBt[(b * ED + d0 + w) * N + n] = gBw[n][w];
          }
          if constexpr (FC) {
            for (int64_t n = 0; n < N; ++n) gCt[(b * ED + d0 + w) * N + n] = gCw[n][w];
          }
          if (gD_part) gD_part[b * ED + d0 + w] = gDs[k][w];
          if (gbias_part) gbias_part[b * ED + d0 + w] = gbias[w];
        }
      }
      task += nk;
    }
  });
}

// Checks the lane count the caller chose: 4, 8 or 16, and whole blocks in every group of a grouped B/C.
int check_lanes(const Inputs& p, int64_t lanes) {
  TORCH_CHECK(lanes == 4 || lanes == 8 || lanes == 16, "pkd scan kernel: lanes must be 4, 8 or 16, got ", lanes);
  auto fits = [&](int64_t groups, int64_t per_group) { return groups <= 1 || per_group % lanes == 0; };
  TORCH_CHECK(fits(p.gB, p.hB) && fits(p.gC, p.hC), "pkd scan kernel: grouped B/C need a multiple of ", lanes,
              " channels per group (use fewer lanes or the torch backend)");
  return static_cast<int>(lanes);
}

// Calls f(lanes, fixed B?, fixed C?) with the three as compile-time constants.
template <typename F>
void dispatch(const Inputs& p, int W, F&& f) {
  auto with_c = [&](auto lanes, auto fb) {
    if (p.gC == 0) {
      f(lanes, fb, std::true_type{});
    } else {
      f(lanes, fb, std::false_type{});
    }
  };
  auto with_b = [&](auto lanes) {
    if (p.gB == 0) {
      with_c(lanes, std::true_type{});
    } else {
      with_c(lanes, std::false_type{});
    }
  };
  if (W == 16) {
    with_b(std::integral_constant<int, 16>{});
  } else if (W == 8) {
    with_b(std::integral_constant<int, 8>{});
  } else {
    with_b(std::integral_constant<int, 4>{});
  }
}

// Returns [out (B, ED, L), last state (B, ED, N) or empty, checkpoints (B, ED/W, ceil(L/16), N, W) or empty,
// y before the gate (B, ED, L) or empty]. dt = softplus(delta + bias) with softplus, else delta + bias (bias
// optional). With save (autograd), the
// checkpoints, and y before the gate when z is given, are returned for bwd. lanes: W, 4, 8 or 16.
std::vector<Tensor> fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bt, const Tensor& Ct,
                        const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus, bool want_last,
                        bool save, int64_t lanes) {
  const Inputs p = make_inputs(u, delta, A, Bt, Ct, D, z, bias, softplus);
  auto opt = u.options();
  const int W = check_lanes(p, lanes);
  Tensor out = torch::empty({p.batch, p.dim, p.len}, opt);
  Tensor last = want_last ? torch::empty({p.batch, p.dim, p.nst}, opt) : torch::empty({0}, opt);
  Tensor ckpt = save ? torch::empty({p.batch, (p.dim + W - 1) / W, num_chunks(p.len), p.nst, W}, opt)
                     : torch::empty({0}, opt);
  Tensor ypre = (save && z.has_value()) ? torch::empty_like(u) : torch::empty({0}, opt);
  float* lp = want_last ? last.data_ptr<float>() : nullptr;
  float* cp = save ? ckpt.data_ptr<float>() : nullptr;
  float* yp = (save && z.has_value()) ? ypre.data_ptr<float>() : nullptr;
  float* op = out.data_ptr<float>();
  dispatch(p, W, [&](auto lanes, auto fb, auto fc) {
    forward_impl<decltype(lanes)::value, decltype(fb)::value, decltype(fc)::value>(p, op, lp, cp, yp);
  });
  return {out, last, ckpt, ypre};
}

// Returns [gu, gdelta (B, ED, L), gA per batch row (B, ED, N), gBt, gCt (B, L, N) / (B, G, L, N), or per batch
// row (B, ED, N) when fixed, gD per batch row (B, ED) or empty, gz (B, ED, L) or empty, gbias per batch row (B, ED)
// or empty]. W is the checkpoints' last dimension (the lanes of the forward pass).
std::vector<Tensor> bwd(const Tensor& gout, const OptTensor& glast, const Tensor& ckpt, const Tensor& ypre,
                        const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bt, const Tensor& Ct,
                        const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus) {
  const Inputs p = make_inputs(u, delta, A, Bt, Ct, D, z, bias, softplus);
  TORCH_CHECK(ckpt.dim() == 5, "pkd scan kernel: bad checkpoints");
  const int W = check_lanes(p, ckpt.size(4));
  TORCH_CHECK(gout.is_contiguous() && gout.scalar_type() == at::kFloat, "pkd scan kernel: bad output grad");
  TORCH_CHECK(ckpt.is_contiguous() && ckpt.numel() == p.batch * ((p.dim + W - 1) / W) * num_chunks(p.len) * p.nst * W,
              "pkd scan kernel: bad checkpoints");
  TORCH_CHECK(!z.has_value() || (ypre.is_contiguous() && ypre.numel() == u.numel()), "pkd scan kernel: bad ypre");
  auto opt = u.options();
  Tensor gu = torch::empty_like(u);
  Tensor gdt = torch::empty_like(u);
  Tensor gA = torch::empty({p.batch, p.dim, p.nst}, opt);
  Tensor gBt = p.gB == 0 ? torch::empty({p.batch, p.dim, p.nst}, opt) : torch::zeros_like(Bt);
  Tensor gCt = p.gC == 0 ? torch::empty({p.batch, p.dim, p.nst}, opt) : torch::zeros_like(Ct);
  Tensor gD = D.has_value() ? torch::empty({p.batch, p.dim}, opt) : torch::empty({0}, opt);
  Tensor gz = z.has_value() ? torch::empty_like(u) : torch::empty({0}, opt);
  Tensor gbias = bias.has_value() ? torch::empty({p.batch, p.dim}, opt) : torch::empty({0}, opt);
  const float* gl = nullptr;
  if (glast.has_value()) {
    TORCH_CHECK(glast->is_contiguous() && glast->scalar_type() == at::kFloat, "pkd scan kernel: bad state grad");
    gl = glast->data_ptr<float>();
  }
  float* gDp = D.has_value() ? gD.data_ptr<float>() : nullptr;
  float* gzp = z.has_value() ? gz.data_ptr<float>() : nullptr;
  float* gbp = bias.has_value() ? gbias.data_ptr<float>() : nullptr;
  const float* yp = z.has_value() ? ypre.data_ptr<float>() : nullptr;
  dispatch(p, W, [&](auto lanes, auto fb, auto fc) {
    backward_impl<decltype(lanes)::value, decltype(fb)::value, decltype(fc)::value>(
        p, gout.data_ptr<float>(), gl, ckpt.data_ptr<float>(), yp, gu.data_ptr<float>(), gdt.data_ptr<float>(),
        gA.data_ptr<float>(), gBt.data_ptr<float>(), gCt.data_ptr<float>(), gDp, gzp, gbp);
  });
  return {gu, gdt, gA, gBt, gCt, gD, gz, gbias};
}

// ---------------------------------------------------------------------------------------------------------------
// Mamba's causal depthwise conv1d with its SiLU, u = silu(conv1d(x)[..., :L]), forward and backward, one (b, d) row
// per task: pre_t = bias + sum_k w_k x_(t - K + 1 + k), x before t = 0 reading 0. x may be any strided (B, ED, L)
// view (Mamba's is the channel half of in_proj's (B, L, 2ED) result), so no copy of it is made; outputs are
// contiguous. torch's depthwise conv backward was the largest single cost of a classroom student's step.

struct ConvArgs {
  const float* x;
  int64_t sb, sd, st;  // x's strides
  const float* w;      // (ED, K)
  const float* bias;   // (ED,) or null
  int64_t batch, dim, len, K;
};

inline int64_t round8(int64_t n) { return (n + 7) / 8 * 8; }

// The row's K - 1 zeros and L inputs into xr (L + K - 1), and its conv output before the SiLU into pre (L).
inline void conv_row(const ConvArgs& a, int64_t b, int64_t d, float* xr, float* pre) {
  const int64_t K = a.K, L = a.len;
  const float* src = a.x + b * a.sb + d * a.sd;
  for (int64_t k = 0; k < K - 1; ++k) xr[k] = 0.0f;
  for (int64_t t = 0; t < L; ++t) xr[K - 1 + t] = src[t * a.st];
  const float* wr = a.w + d * K;
  const float bv = a.bias ? a.bias[d] : 0.0f;
  for (int64_t t = 0; t < L; ++t) {
    float acc = bv;
    for (int64_t k = 0; k < K; ++k) acc += wr[k] * xr[t + k];
    pre[t] = acc;
  }
}

// sigmoid of n floats (n a multiple of 8) from v into sig, 8 lanes at a time.
inline void sigmoid8(const float* v, float* sig, int64_t n) {
  using vf = Lane<8>::f;
  using vi = Lane<8>::i;
  for (int64_t i = 0; i < n; i += 8) {
    vf p;
    std::memcpy(&p, v + i, sizeof(vf));
    p = 1.0f / (1.0f + vexp<vf, vi>(-p));
    std::memcpy(sig + i, &p, sizeof(vf));
  }
}

ConvArgs make_conv_args(const Tensor& x, const Tensor& w, const OptTensor& bias) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat && x.dim() == 3,
              "pkd conv kernel: x must be a float32 (B, ED, L) CPU tensor");
  TORCH_CHECK(w.scalar_type() == at::kFloat && w.is_contiguous() && w.dim() == 2 && w.size(0) == x.size(1),
              "pkd conv kernel: weight must be contiguous float32 (ED, K)");
  TORCH_CHECK(!bias.has_value() || (bias->scalar_type() == at::kFloat && bias->is_contiguous() &&
                                    bias->dim() == 1 && bias->size(0) == x.size(1)),
              "pkd conv kernel: bias must be contiguous float32 (ED,)");
  return ConvArgs{x.data_ptr<float>(), x.stride(0), x.stride(1), x.stride(2), w.data_ptr<float>(),
                  bias.has_value() ? bias->data_ptr<float>() : nullptr, x.size(0), x.size(1), x.size(2), w.size(1)};
}

inline int64_t conv_grain(int64_t L) { return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, L)); }

// Returns silu(conv1d(x)[..., :L]) (B, ED, L).
Tensor conv_fwd(const Tensor& x, const Tensor& w, const OptTensor& bias) {
  const ConvArgs a = make_conv_args(x, w, bias);
  Tensor out = torch::empty({a.batch, a.dim, a.len}, x.options().memory_format(at::MemoryFormat::Contiguous));
  float* op = out.data_ptr<float>();
  const int64_t L = a.len, n8 = round8(a.len);
  at::parallel_for(0, a.batch * a.dim, conv_grain(L), [&](int64_t begin, int64_t end) {
    std::vector<float> xr(L + a.K - 1), pre(n8, 0.0f), sig(n8);
    for (int64_t task = begin; task < end; ++task) {
      conv_row(a, task / a.dim, task % a.dim, xr.data(), pre.data());
      sigmoid8(pre.data(), sig.data(), n8);
      float* o = op + task * L;
      for (int64_t t = 0; t < L; ++t) o[t] = pre[t] * sig[t];
    }
  });
  return out;
}

// Returns [gx (B, ED, L), gweight per batch row (B, ED, K), gbias per batch row (B, ED) or empty] for the output
// gradient gout (B, ED, L), contiguous.
std::vector<Tensor> conv_bwd(const Tensor& gout, const Tensor& x, const Tensor& w, const OptTensor& bias) {
  const ConvArgs a = make_conv_args(x, w, bias);
  TORCH_CHECK(gout.is_contiguous() && gout.scalar_type() == at::kFloat && gout.sizes() == x.sizes(),
              "pkd conv kernel: bad output grad");
  auto opt = x.options().memory_format(at::MemoryFormat::Contiguous);
  Tensor gx = torch::empty({a.batch, a.dim, a.len}, opt);
  Tensor gw = torch::empty({a.batch, a.dim, a.K}, opt);
  Tensor gb = bias.has_value() ? torch::empty({a.batch, a.dim}, opt) : torch::empty({0}, opt);
  const float* go = gout.data_ptr<float>();
  float *gxp = gx.data_ptr<float>(), *gwp = gw.data_ptr<float>();
  float* gbp = bias.has_value() ? gb.data_ptr<float>() : nullptr;
  const int64_t L = a.len, K = a.K, n8 = round8(a.len);
  at::parallel_for(0, a.batch * a.dim, conv_grain(L), [&](int64_t begin, int64_t end) {
    std::vector<float> xr(L + K - 1), pre(n8, 0.0f), sig(n8), gp(L + K - 1);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t d = task % a.dim;
      conv_row(a, task / a.dim, d, xr.data(), pre.data());
      sigmoid8(pre.data(), sig.data(), n8);
      const float* g = go + task * L;
      float gbias = 0.0f;
      for (int64_t t = 0; t < L; ++t) {  // d silu(p) / dp = s (1 + p (1 - s))
        gp[t] = g[t] * sig[t] * (1.0f + pre[t] * (1.0f - sig[t]));
        gbias += gp[t];
      }
      for (int64_t t = L; t < L + K - 1; ++t) gp[t] = 0.0f;
      const float* wr = a.w + d * K;
      float* gwr = gwp + task * K;
      for (int64_t k = 0; k < K; ++k) {
        float acc = 0.0f;
        for (int64_t t = 0; t < L; ++t) acc += gp[t] * xr[t + k];
        gwr[k] = acc;
      }
      float* gxr = gxp + task * L;
      for (int64_t s = 0; s < L; ++s) {  // x_s feeds pre_t for t = s + K - 1 - k
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += wr[k] * gp[s + K - 1 - k];
        gxr[s] = acc;
      }
      if (gbp) gbp[task] = gbias;
    }
  });
  return {gx, gw, gb};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &fwd, "selective scan forward");
  m.def("bwd", &bwd, "selective scan backward");
  m.def("conv_fwd", &conv_fwd, "causal depthwise conv1d + SiLU forward");
  m.def("conv_bwd", &conv_bwd, "causal depthwise conv1d + SiLU backward");
  m.def("preferred_lanes", [] { return kPreferredLanes; }, "lanes the compiler's vector target suits");
  m.def("vector_isa", [] { return std::string(kVectorIsa); }, "the SIMD extension the kernel was compiled for");
}
