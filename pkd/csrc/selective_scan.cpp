// Fused CPU selective scan (Mamba-1 S6) with mamba_ssm.selective_scan_fn semantics, forward and backward.
//
// Letters: B batch, ED channels, L length, N state size, W channel lanes per SIMD block.
// Work is split over (b, block of W channels) tasks with at::parallel_for (torch's OpenMP pool); inside a task
// the state x (N, W) lives in a small thread-local array, the recurrence runs over t, and every inner loop is a
// `#pragma omp simd` loop over the W channel lanes (no horizontal reductions on the hot path). B and C arrive
// transposed to (B, L, N) so the values of one step are contiguous. The backward pass recomputes the forward
// states of one task into thread-local (L+1, N, W) buffers and runs the reverse-time adjoint recurrence; the
// (B, L, N) gradients of B and C are accumulated per thread over the tasks of one batch row and flushed once.
// Nothing of size (B, ED, L, N) is allocated.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

namespace {

using torch::Tensor;
using OptTensor = c10::optional<Tensor>;

// exp for float, Cephes polynomial (about 2 ulp), inlined so the lane loops vectorise without libm calls.
static inline float fexp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float k = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  const float r2 = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  p = p * r2 + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  float s;
  std::memcpy(&s, &bits, sizeof(float));
  return p * s;
}

struct Inputs {
  const float* u;      // (B, ED, L)
  const float* delta;  // (B, ED, L)
  const float* A;      // (ED, N)
  const float* Bt;     // (B, L, N)
  const float* Ct;     // (B, L, N)
  const float* D;      // (ED,) or null
  const float* z;      // (B, ED, L) or null
  const float* bias;   // (ED,) or null
  int64_t batch, dim, len, nst;
  bool softplus;
};

// Loads one (b, d0 .. d0+W) block into lane-major scratch: uu/dt/raw/zz (L, W), Aw (N, W), Dw (W).
// Padding lanes get u = dt = 0, so their state stays 0 and nothing is written back for them.
template <int W>
void load_block(const Inputs& p, int64_t b, int64_t d0, float* uu, float* dt, float* raw, float* zz,
                float* Aw, float* Dw) {
  const int64_t L = p.len, N = p.nst;
  const int64_t nd = std::min<int64_t>(W, p.dim - d0);
  for (int64_t w = 0; w < W; ++w) {
    if (w < nd) {
      const int64_t d = d0 + w;
      const float* ur = p.u + (b * p.dim + d) * L;
      const float* dr = p.delta + (b * p.dim + d) * L;
      const float bias = p.bias ? p.bias[d] : 0.0f;
      for (int64_t t = 0; t < L; ++t) {
        const float r = dr[t] + bias;
        uu[t * W + w] = ur[t];
        raw[t * W + w] = r;
        // torch.nn.functional.softplus (beta 1, threshold 20).
        dt[t * W + w] = p.softplus ? (r > 20.0f ? r : std::log1p(std::exp(r))) : r;
      }
      if (zz) {
        const float* zr = p.z + (b * p.dim + d) * L;
        for (int64_t t = 0; t < L; ++t) zz[t * W + w] = zr[t];
      }
      for (int64_t n = 0; n < N; ++n) Aw[n * W + w] = p.A[d * N + n];
      Dw[w] = p.D ? p.D[d] : 0.0f;
    } else {
      for (int64_t t = 0; t < L; ++t) {
        uu[t * W + w] = 0.0f;
        raw[t * W + w] = 0.0f;
        dt[t * W + w] = 0.0f;
        if (zz) zz[t * W + w] = 0.0f;
      }
      for (int64_t n = 0; n < N; ++n) Aw[n * W + w] = 0.0f;
      Dw[w] = 0.0f;
    }
  }
}

// Runs the recurrence of one block. Writes y_t (before D and the gate) to ys (L, W) and, when xs/as are given,
// every state x_t to xs[(t+1)] and every decay exp(dt_t A) to as[t] (both (., N, W)). x ends as the last state.
template <int W>
inline void scan_block(const float* Bb, const float* Cb, int64_t L, int64_t N, const float* uu, const float* dt,
                       const float* Aw, float* x, float* ys, float* xs, float* as) {
  for (int64_t t = 0; t < L; ++t) {
    alignas(64) float dtv[W], duv[W], y[W];
#pragma omp simd
    for (int w = 0; w < W; ++w) {
      dtv[w] = dt[t * W + w];
      duv[w] = dtv[w] * uu[t * W + w];
      y[w] = 0.0f;
    }
    const float* Bs = Bb + t * N;
    const float* Cs = Cb + t * N;
    for (int64_t n = 0; n < N; ++n) {
      const float bn = Bs[n], cn = Cs[n];
      float* xn = x + n * W;
      const float* an = Aw + n * W;
      if (xs) {
        float* xo = xs + ((t + 1) * N + n) * W;
        float* ao = as + (t * N + n) * W;
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          const float a = fexp(dtv[w] * an[w]);
          const float xv = a * xn[w] + duv[w] * bn;
          xn[w] = xv;
          xo[w] = xv;
          ao[w] = a;
          y[w] += xv * cn;
        }
      } else {
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          const float a = fexp(dtv[w] * an[w]);
          const float xv = a * xn[w] + duv[w] * bn;
          xn[w] = xv;
          y[w] += xv * cn;
        }
      }
    }
#pragma omp simd
    for (int w = 0; w < W; ++w) ys[t * W + w] = y[w];
  }
}

Inputs make_inputs(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bt, const Tensor& Ct,
                   const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus) {
  for (const Tensor* t : {&u, &delta, &A, &Bt, &Ct}) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous(),
                "pkd scan kernel: expected contiguous float32 CPU tensors");
  }
  Inputs p;
  p.u = u.data_ptr<float>();
  p.delta = delta.data_ptr<float>();
  p.A = A.data_ptr<float>();
  p.Bt = Bt.data_ptr<float>();
  p.Ct = Ct.data_ptr<float>();
  p.D = D.has_value() ? D->data_ptr<float>() : nullptr;
  p.z = z.has_value() ? z->data_ptr<float>() : nullptr;
  p.bias = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  p.batch = u.size(0);
  p.dim = u.size(1);
  p.len = u.size(2);
  p.nst = A.size(1);
  p.softplus = softplus;
  return p;
}

template <int W>
void forward_impl(const Inputs& p, float* out, float* last) {
  const int64_t L = p.len, N = p.nst, ED = p.dim;
  const int64_t nblk = (ED + W - 1) / W;
  at::parallel_for(0, p.batch * nblk, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf(5 * L * W + 2 * N * W + W);
    float* uu = buf.data();
    float* dt = uu + L * W;
    float* raw = dt + L * W;
    float* zz = raw + L * W;
    float* ys = zz + L * W;
    float* Aw = ys + L * W;
    float* x = Aw + N * W;
    float* Dw = x + N * W;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, d0 = (task % nblk) * W;
      const int64_t nd = std::min<int64_t>(W, ED - d0);
      load_block<W>(p, b, d0, uu, dt, raw, p.z ? zz : nullptr, Aw, Dw);
      std::fill(x, x + N * W, 0.0f);
      scan_block<W>(p.Bt + b * L * N, p.Ct + b * L * N, L, N, uu, dt, Aw, x, ys, nullptr, nullptr);
      for (int64_t t = 0; t < L; ++t) {
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          float o = ys[t * W + w] + Dw[w] * uu[t * W + w];
          if (p.z) {
            const float zv = zz[t * W + w];
            o *= zv / (1.0f + std::exp(-zv));
          }
          ys[t * W + w] = o;
        }
      }
      for (int64_t w = 0; w < nd; ++w) {
        float* orow = out + (b * ED + d0 + w) * L;
        for (int64_t t = 0; t < L; ++t) orow[t] = ys[t * W + w];
        if (last) {
          for (int64_t n = 0; n < N; ++n) last[(b * ED + d0 + w) * N + n] = x[n * W + w];
        }
      }
    }
  });
}

template <int W>
void backward_impl(const Inputs& p, const float* gout, const float* glast, float* gu, float* gdelta, float* gA_part,
                   float* gBt, float* gCt, float* gD_part, float* gz) {
  const int64_t L = p.len, N = p.nst, ED = p.dim;
  const int64_t nblk = (ED + W - 1) / W;
  std::mutex flush_mutex;
  at::parallel_for(0, p.batch * nblk, 1, [&](int64_t begin, int64_t end) {
    const int64_t LNW = L * N * W;
    std::vector<float> big(2 * LNW + (L + 1) * N * W + LNW);
    float* accB = big.data();
    float* accC = accB + LNW;
    float* xs = accC + LNW;             // (L+1, N, W), xs[0] = 0
    float* as = xs + (L + 1) * N * W;   // (L, N, W)
    std::vector<float> buf(8 * L * W + 4 * N * W + 2 * W);
    float* uu = buf.data();
    float* dt = uu + L * W;
    float* raw = dt + L * W;
    float* zz = raw + L * W;
    float* ys = zz + L * W;
    float* go = ys + L * W;   // grad of y_t (after gate)
    float* gub = go + L * W;
    float* gdb = gub + L * W;
    float* Aw = gdb + L * W;
    float* x = Aw + N * W;
    float* h = x + N * W;
    float* gAl = h + N * W;
    float* Dw = gAl + N * W;
    float* gDl = Dw + W;
    int64_t cur_b = -1;
    auto flush = [&](int64_t b) {
      std::lock_guard<std::mutex> lock(flush_mutex);
      float* gb = gBt + b * L * N;
      float* gc = gCt + b * L * N;
      for (int64_t i = 0; i < L * N; ++i) {
        float sb = 0.0f, sc = 0.0f;
#pragma omp simd reduction(+ : sb, sc)
        for (int w = 0; w < W; ++w) {
          sb += accB[i * W + w];
          sc += accC[i * W + w];
        }
        gb[i] += sb;
        gc[i] += sc;
      }
    };
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nblk, d0 = (task % nblk) * W;
      const int64_t nd = std::min<int64_t>(W, ED - d0);
      if (b != cur_b) {
        if (cur_b >= 0) flush(cur_b);
        std::fill(accB, accB + 2 * LNW, 0.0f);
        cur_b = b;
      }
      load_block<W>(p, b, d0, uu, dt, raw, p.z ? zz : nullptr, Aw, Dw);
      const float* Bb = p.Bt + b * L * N;
      const float* Cb = p.Ct + b * L * N;
      std::fill(x, x + N * W, 0.0f);
      std::fill(xs, xs + N * W, 0.0f);
      scan_block<W>(Bb, Cb, L, N, uu, dt, Aw, x, ys, xs, as);
      // Output gradients: gate, skip.
      for (int64_t w = 0; w < W; ++w) {
        if (w < nd) {
          const float* gr = gout + (b * ED + d0 + w) * L;
          for (int64_t t = 0; t < L; ++t) go[t * W + w] = gr[t];
        } else {
          for (int64_t t = 0; t < L; ++t) go[t * W + w] = 0.0f;
        }
      }
#pragma omp simd
      for (int w = 0; w < W; ++w) gDl[w] = 0.0f;
      for (int64_t t = 0; t < L; ++t) {
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          const int64_t i = t * W + w;
          float g = go[i];
          if (p.z) {
            const float zv = zz[i];
            const float sz = 1.0f / (1.0f + std::exp(-zv));
            const float o = ys[i] + Dw[w] * uu[i];
            zz[i] = g * o * sz * (1.0f + zv * (1.0f - sz));  // zz now holds grad z
            g *= zv * sz;
          }
          go[i] = g;
          gDl[w] += g * uu[i];
        }
      }
      // Reverse-time adjoint recurrence; h holds dLoss/dx_t coming from step t+1 (initially the last-state grad).
      for (int64_t w = 0; w < W; ++w) {
        for (int64_t n = 0; n < N; ++n) {
          h[n * W + w] = (glast && w < nd) ? glast[(b * ED + d0 + w) * N + n] : 0.0f;
          gAl[n * W + w] = 0.0f;
        }
      }
      for (int64_t t = L - 1; t >= 0; --t) {
        alignas(64) float dtv[W], duv[W], gy[W], gdu[W], gdt[W];
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          dtv[w] = dt[t * W + w];
          duv[w] = dtv[w] * uu[t * W + w];
          gy[w] = go[t * W + w];
          gdu[w] = 0.0f;
          gdt[w] = 0.0f;
        }
        const float* Bs = Bb + t * N;
        const float* Cs = Cb + t * N;
        const float* xt = xs + (t + 1) * N * W;
        const float* xp = xs + t * N * W;
        const float* at = as + t * N * W;
        float* aB = accB + t * N * W;
        float* aC = accC + t * N * W;
        for (int64_t n = 0; n < N; ++n) {
          const float bn = Bs[n], cn = Cs[n];
          const int64_t o = n * W;
#pragma omp simd
          for (int w = 0; w < W; ++w) {
            const float hv = h[o + w] + gy[w] * cn;
            aC[o + w] += gy[w] * xt[o + w];
            aB[o + w] += hv * duv[w];
            gdu[w] += hv * bn;
            const float q = hv * xp[o + w] * at[o + w];
            gdt[w] += q * Aw[o + w];
            gAl[o + w] += q * dtv[w];
            h[o + w] = hv * at[o + w];
          }
        }
#pragma omp simd
        for (int w = 0; w < W; ++w) {
          const int64_t i = t * W + w;
          gub[i] = gy[w] * Dw[w] + gdu[w] * dtv[w];
          float gd = gdu[w] * uu[i] + gdt[w];
          if (p.softplus) {
            const float r = raw[i];
            gd *= r > 20.0f ? 1.0f : 1.0f / (1.0f + std::exp(-r));
          }
          gdb[i] = gd;
        }
      }
      for (int64_t w = 0; w < nd; ++w) {
        const int64_t row = (b * ED + d0 + w) * L;
        for (int64_t t = 0; t < L; ++t) {
          gu[row + t] = gub[t * W + w];
          gdelta[row + t] = gdb[t * W + w];
        }
        if (gz) {
          for (int64_t t = 0; t < L; ++t) gz[row + t] = zz[t * W + w];
        }
        for (int64_t n = 0; n < N; ++n) gA_part[(b * ED + d0 + w) * N + n] = gAl[n * W + w];
        if (gD_part) gD_part[b * ED + d0 + w] = gDl[w];
      }
    }
    if (cur_b >= 0) flush(cur_b);
  });
}

int pick_lanes(int64_t dim) { return dim % 16 == 0 ? 16 : 8; }

// Returns [out (B, ED, L), last state (B, ED, N) or an empty tensor].
std::vector<Tensor> fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& Bt, const Tensor& Ct,
                        const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus,
                        bool want_last) {
  const Inputs p = make_inputs(u, delta, A, Bt, Ct, D, z, bias, softplus);
  Tensor out = torch::empty({p.batch, p.dim, p.len}, u.options());
  Tensor last = want_last ? torch::empty({p.batch, p.dim, p.nst}, u.options()) : torch::empty({0}, u.options());
  float* lp = want_last ? last.data_ptr<float>() : nullptr;
  if (pick_lanes(p.dim) == 16) {
    forward_impl<16>(p, out.data_ptr<float>(), lp);
  } else {
    forward_impl<8>(p, out.data_ptr<float>(), lp);
  }
  return {out, last};
}

// Returns [gu, gdelta (B, ED, L), gA per batch row (B, ED, N), gBt, gCt (B, L, N), gD per batch row (B, ED) or
// empty, gz (B, ED, L) or empty]. gdelta is the gradient w.r.t. delta (before bias and softplus).
std::vector<Tensor> bwd(const Tensor& gout, const OptTensor& glast, const Tensor& u, const Tensor& delta,
                        const Tensor& A, const Tensor& Bt, const Tensor& Ct, const OptTensor& D, const OptTensor& z,
                        const OptTensor& bias, bool softplus) {
  const Inputs p = make_inputs(u, delta, A, Bt, Ct, D, z, bias, softplus);
  TORCH_CHECK(gout.is_contiguous() && gout.scalar_type() == at::kFloat, "pkd scan kernel: bad output grad");
  auto opt = u.options();
  Tensor gu = torch::empty_like(u);
  Tensor gdelta = torch::empty_like(u);
  Tensor gA = torch::empty({p.batch, p.dim, p.nst}, opt);
  Tensor gBt = torch::zeros({p.batch, p.len, p.nst}, opt);
  Tensor gCt = torch::zeros({p.batch, p.len, p.nst}, opt);
  Tensor gD = D.has_value() ? torch::empty({p.batch, p.dim}, opt) : torch::empty({0}, opt);
  Tensor gz = z.has_value() ? torch::empty_like(u) : torch::empty({0}, opt);
  const float* gl = nullptr;
  if (glast.has_value()) {
    TORCH_CHECK(glast->is_contiguous() && glast->scalar_type() == at::kFloat, "pkd scan kernel: bad state grad");
    gl = glast->data_ptr<float>();
  }
  float* gDp = D.has_value() ? gD.data_ptr<float>() : nullptr;
  float* gzp = z.has_value() ? gz.data_ptr<float>() : nullptr;
  if (pick_lanes(p.dim) == 16) {
    backward_impl<16>(p, gout.data_ptr<float>(), gl, gu.data_ptr<float>(), gdelta.data_ptr<float>(),
                      gA.data_ptr<float>(), gBt.data_ptr<float>(), gCt.data_ptr<float>(), gDp, gzp);
  } else {
    backward_impl<8>(p, gout.data_ptr<float>(), gl, gu.data_ptr<float>(), gdelta.data_ptr<float>(),
                     gA.data_ptr<float>(), gBt.data_ptr<float>(), gCt.data_ptr<float>(), gDp, gzp);
  }
  return {gu, gdelta, gA, gBt, gCt, gD, gz};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &fwd, "selective scan forward");
  m.def("bwd", &bwd, "selective scan backward");
}
