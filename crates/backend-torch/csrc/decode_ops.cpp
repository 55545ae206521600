// The per-token operations between the products of a decode step (a few tokens), on f32 rows,
// fused so that one call replaces libtorch's chain of small ops (a SmolLM2 layer spent about a
// quarter of a millisecond in them: RMSNorm alone is six libtorch ops, rotation a dozen):
//   rms_norm:       y = x / sqrt(mean(x^2) + eps) * w, row by row (Zhang & Sennrich 2019, as
//                   Meta's Llama reference computes it);
//   rope_qkv:       splits a row of the stacked Q/K/V product, rotates Q and K (Su et al. 2021) in
//                   GGUF's interleaved-pair or Hugging Face's half-split layout, writes Q to its
//                   buffer and K, V into the KV cache at their positions;
//   attention:      causal grouped-query attention of the new queries over the cache, no mask
//                   tensor: query i at position pos + i reads positions 0..=pos + i, query head h
//                   reads KV head h / (heads / kv_heads);
//   silu_mul:       y = silu(gate) * up for a row of the stacked gate/up product (Shazeer 2020).
// The same maths as the native backend's kernels (crates/cpu-kernels/src/ops.rs). Layouts: rows
// are row-major f32; the KV cache is the model's libtorch tensor (1, kv_heads, capacity, hd),
// contiguous. Callers (src/decode_ops.rs) check every length first.
//
// Attention's dot products run AVX2 + FMA when the CPU has it (chosen at run time, or lowered by
// the caller; the tests run each tier), plain C++ otherwise; the rest is a few hundred values per
// token, plain loops. Attention spreads (token, head) pairs over libtorch's thread pool once the
// work outweighs a hand-off.

#include <ATen/Parallel.h>

#include <immintrin.h>

#include "cpu.h"

#include <cmath>
#include <cstdint>
#include <exception>
#include <vector>

namespace {

// ---- portable ------------------------------------------------------------------------------

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_scalar(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// ---- AVX2 + FMA ----------------------------------------------------------------------------

__attribute__((target("avx2,fma"))) float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), a1);
  }
  float acc = llama3_bench::hsum256(_mm256_add_ps(a0, a1));
  for (; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

__attribute__((target("avx2,fma"))) void axpy_avx2(float alpha, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(alpha);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

using Dot = float (*)(const float*, const float*, int64_t);
using Axpy = void (*)(float, const float*, float*, int64_t);

}  // namespace

extern "C" {

// y (m, dim) = rms_norm(x (m, dim)) * w (dim). x and y may be the same buffer.
void llama3_bench_rms_norm(const float* x, const float* w, float eps, float* y, int64_t m, int64_t dim) {
  for (int64_t t = 0; t < m; ++t) {
    const float* xr = x + t * dim;
    float ss = 0.f;
    for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
    const float r = 1.f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) y[t * dim + i] = xr[i] * r * w[i];
  }
}

// qkv (m, (heads + 2 kv_heads) hd): each row Q's heads, then K's, then V's. Rotates Q into
// q (m, heads hd) and K into k_cache, copies V into v_cache, at positions pos..pos+m of caches
// (kv_heads, capacity, hd); cos / sin hold hd/2 values per position, starting at position pos.
// interleaved: pairs (2j, 2j+1); otherwise (j, j + hd/2).
void llama3_bench_rope_qkv(const float* qkv, const float* cos, const float* sin, int interleaved, float* q,
                           float* k_cache, float* v_cache, int64_t pos, int64_t m, int64_t heads, int64_t kv_heads,
                           int64_t hd, int64_t capacity) {
  const int64_t half = hd / 2, width = (heads + 2 * kv_heads) * hd;
  for (int64_t t = 0; t < m; ++t) {
    const float* row = qkv + t * width;
    const float* c = cos + t * half;
    const float* s = sin + t * half;
    for (int64_t h = 0; h < heads + kv_heads; ++h) {
      const float* src = row + h * hd;
      float* dst = h < heads ? q + (t * heads + h) * hd : k_cache + ((h - heads) * capacity + pos + t) * hd;
      for (int64_t j = 0; j < half; ++j) {
        const int64_t a = interleaved ? 2 * j : j, b = interleaved ? 2 * j + 1 : j + half;
        const float x0 = src[a], x1 = src[b];
        dst[a] = x0 * c[j] - x1 * s[j];
        dst[b] = x0 * s[j] + x1 * c[j];
      }
    }
    for (int64_t g = 0; g < kv_heads; ++g) {
      const float* src = row + (heads + kv_heads + g) * hd;
      float* dst = v_cache + (g * capacity + pos + t) * hd;
      for (int64_t i = 0; i < hd; ++i) dst[i] = src[i];
    }
  }
}

// out (m, heads hd) = causal attention of q (m, heads hd), at positions pos..pos+m, over caches
// (kv_heads, capacity, hd) that already hold positions 0..pos+m; heads a multiple of kv_heads.
// tier: 0 plain C++, 1 or more AVX2 + FMA (lowered to what the CPU has). Returns 0, or 1 if
// libtorch's pool raised.
int llama3_bench_attention(int tier, const float* q, const float* k_cache, const float* v_cache, float* out, int64_t pos,
                           int64_t m, int64_t heads, int64_t kv_heads, int64_t hd, int64_t capacity) {
  const bool avx2 = llama3_bench::usable_tier(tier) != llama3_bench::Tier::Portable;
  const Dot dot = avx2 ? dot_avx2 : dot_scalar;
  const Axpy axpy = avx2 ? axpy_avx2 : axpy_scalar;
  const int64_t rep = heads / kv_heads, width = heads * hd, tasks = m * heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  auto task = [&](int64_t begin, int64_t end) {
    // Scores of one (token, head), reused across calls: no allocation per token.
    thread_local std::vector<float> scores;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t i = task / heads, h = task % heads, len = pos + i + 1, g = h / rep;
      const float* qh = q + i * width + h * hd;
      const float* keys = k_cache + g * capacity * hd;
      const float* vals = v_cache + g * capacity * hd;
      if (static_cast<int64_t>(scores.size()) < len) scores.resize(len);
      float max = -INFINITY;
      for (int64_t j = 0; j < len; ++j) {
        scores[j] = dot(qh, keys + j * hd, hd) * scale;
        max = scores[j] > max ? scores[j] : max;
      }
      float sum = 0.f;
      for (int64_t j = 0; j < len; ++j) {
        scores[j] = std::exp(scores[j] - max);
        sum += scores[j];
      }
      float* o = out + i * width + h * hd;
      for (int64_t d = 0; d < hd; ++d) o[d] = 0.f;
      for (int64_t j = 0; j < len; ++j) axpy(scores[j] / sum, vals + j * hd, o, hd);
    }
  };
  // A short context is cheaper on the calling thread than a hand-off to the pool.
  const int64_t work = tasks * (pos + m) * hd;
  try {
    if (work < 64 * 1024) {
      task(0, tasks);
    } else {
      at::parallel_for(0, tasks, 1, task);
    }
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// y (m, ffn) = silu(gate) * up for gate_up (m, 2 ffn), each row gate then up.
void llama3_bench_silu_mul(const float* gate_up, float* y, int64_t m, int64_t ffn) {
  for (int64_t t = 0; t < m; ++t) {
    const float* gate = gate_up + t * 2 * ffn;
    const float* up = gate + ffn;
    for (int64_t i = 0; i < ffn; ++i) y[t * ffn + i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
  }
}

}  // extern "C"
