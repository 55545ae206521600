// Weight-only f32, int8 and NF4 products for a few tokens, on libtorch's own intra-op thread pool
// (`at::parallel_for`, so `set_num_threads` and the OpenMP runtime libtorch ships apply).
//
// What they compute (the same numbers as expanding the matrix to f32 and calling `linear`, but
// for the AVX2 int8 and NF4 rows, which round the activations to int16 first, and NF4 its code
// book too: see int8_row_avx2 and nf4_row_avx2):
//   f32:  y[t][r] = sum_i x[t][i] * w[r][i]
//   int8: y[t][r] = scales[r] * sum_i x[t][i] * q[r][i]
//   nf4:  y[t][r] = sum_b absmax[r][b] * sum_{j<64} codebook[code(r, 64b + j)] * x[t][64b + j]
// Layouts are bench-backend's quantization formats (crates/bench-backend/src/quant.rs): int8 codes
// row-major (rows, k) with one f32 scale per row; NF4 codes packed two per byte, row-major
// (rows, k/2), the even index in the high nibble, one f32 absmax per 64 values, 16-entry code book.
//
// libtorch has no op for these on the CPU at one token that reads the codes directly (its
// `_weight_int8pack_mm` measured slower than expanding; NF4 has none), so each product would
// otherwise write and reread a full f32 copy of the matrix. Here a row is read once per call.
//
// Instruction sets are chosen at run time (`__builtin_cpu_supports`): AVX-512 (F + BW), AVX2 +
// FMA, or portable C++; a caller may ask for a lower tier (the tests run each one). Callers
// (src/weight_only.rs) check every shape, dtype and pointer first.

#include <ATen/Parallel.h>

#include <immintrin.h>

#include "cpu.h"

#include <cmath>
#include <cstdint>
#include <exception>
#include <vector>

namespace {

using llama3_bench::best_tier;
using llama3_bench::Tier;
using llama3_bench::hsum256;

// The residual add fused into a product: y = result, or y += result.
inline void store(float* y, float v, bool add) { *y = add ? *y + v : v; }

using F32Row = void (*)(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k, bool add);
using Int8Row = void (*)(const float* x, const int8_t* q, float scale, float* y, int64_t m, int64_t n, int64_t k, bool add);
using Nf4Row = void (*)(const float* x, const uint8_t* packed, const float* absmax, const float* codebook, float* y,
                        int64_t m, int64_t n, int64_t k, bool add);

// ---- portable ------------------------------------------------------------------------------

void int8_row_scalar(const float* x, const int8_t* q, float scale, float* y, int64_t m, int64_t n, int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    float acc = 0.f;
    for (int64_t i = 0; i < k; ++i) acc += x[t * k + i] * static_cast<float>(q[i]);
    store(y + t * n, acc * scale, add);
  }
}

void f32_row_scalar(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    float acc = 0.f;
    for (int64_t i = 0; i < k; ++i) acc += x[t * k + i] * w[i];
    store(y + t * n, acc, add);
  }
}

void nf4_row_scalar(const float* x, const uint8_t* packed, const float* absmax, const float* codebook, float* y,
                    int64_t m, int64_t n, int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    float acc = 0.f;
    for (int64_t b = 0; b < k / 64; ++b) {
      float block = 0.f;
      for (int64_t j = 0; j < 32; ++j) {
        const uint8_t byte = packed[b * 32 + j];
        block += codebook[byte >> 4] * x[t * k + b * 64 + 2 * j] + codebook[byte & 15] * x[t * k + b * 64 + 2 * j + 1];
      }
      acc += block * absmax[b];
    }
    store(y + t * n, acc, add);
  }
}

// ---- AVX2 + FMA ----------------------------------------------------------------------------


// The AVX2 int8 product takes the activations as int16 with one f32 scale per token (quantized
// once per call, below), so that a pair of codes costs one `vpmaddwd` in place of two int8 -> f32
// conversions and two FMAs: widening codes to f32 bound the f32-activation loop by its
// instruction count (18 GB/s of codes at 2 threads on the AVX2 EPYC, against 25 for f32 rows),
// not by memory. 16-bit activations add a rounding of at most max|x| / 65534 per value, about
// 1e-5 of the result, far under the int8 codes' own rounding.
//
// x (m, k) -> xq (m, k) int16 and xs (m): xq = round(x / xs), xs = max|x| / 32767 per row.
__attribute__((target("avx2,fma"))) void quantize_i16_avx2(const float* x, int16_t* xq, float* xs, int64_t m, int64_t k) {
  const __m256 sign = _mm256_set1_ps(-0.f);
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * k;
    int16_t* qt = xq + t * k;
    __m256 vmax = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xt + i)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    float amax = _mm_cvtss_f32(h);
    for (; i < k; ++i) amax = std::fabs(xt[i]) > amax ? std::fabs(xt[i]) : amax;
    xs[t] = amax / 32767.f;
    const float inv = amax > 0.f ? 32767.f / amax : 0.f;
    const __m256 vinv = _mm256_set1_ps(inv);
    i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xt + i), vinv));
      const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xt + i + 8), vinv));
      // packs works per 128-bit lane: (a0..3, b0..3, a4..7, b4..7); the permute restores order.
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qt + i), _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8));
    }
    for (; i < k; ++i) qt[i] = static_cast<int16_t>(std::lrintf(xt[i] * inv));
  }
}

// One int8 row against int16 activations (see above). Each 32-bit lane adds at most
// 2 * 127 * 32767 per step; sums are moved to f32 every 2048 values, well inside int32.
__attribute__((target("avx2,fma"))) void int8_row_avx2(const int16_t* xq, const float* xs, const int8_t* q, float scale,
                                                        float* y, int64_t m, int64_t n, int64_t k, bool add) {
  const int64_t full = k / 32 * 32;
  for (int64_t t = 0; t < m; ++t) {
    const int16_t* xt = xq + t * k;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    while (i < full) {
      const int64_t end = full < i + 2048 ? full : i + 2048;
      __m256i a0 = _mm256_setzero_si256(), a1 = a0;
      for (; i < end; i += 32) {
        const __m256i q0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
        const __m256i q1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i + 16)));
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(q0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + i))));
        a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(q1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt + i + 16))));
      }
      acc = _mm256_add_ps(acc, _mm256_cvtepi32_ps(_mm256_add_epi32(a0, a1)));
    }
    int32_t tail = 0;
    for (; i < k; ++i) tail += static_cast<int32_t>(xt[i]) * q[i];
    store(y + t * n, (hsum256(acc) + static_cast<float>(tail)) * xs[t] * scale, add);
  }
}

__attribute__((target("avx2,fma"))) void f32_row_avx2(const float* x, const float* w, float* y, int64_t m, int64_t n,
                                                       int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * k;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(xt + i), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(xt + i + 8), a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(xt + i + 16), a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(xt + i + 24), a3);
    }
    for (; i + 8 <= k; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(xt + i), a0);
    float acc = hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < k; ++i) acc += xt[i] * w[i];
    store(y + t * n, acc, add);
  }
}

// The AVX2 NF4 product also takes int16 activations (see above), and the code book as int16
// (value / max|value| * 32767, so a code is off by at most 1.5e-5 of the largest): two `pshufb`
// on a 16-byte table (low and high bytes of the int16 values) turn 32 codes into 32 int16 weights
// and `vpmaddwd` multiplies them with the activations. Looking codes up in f32 took two `vpermps`,
// a blend and a conversion per 8 values (about 4.5 GB/s of codes at 2 threads here, at or below
// f32's speed in bytes of the matrix it stands for).
//
// A block of 64 codes is 32 bytes; `unpack{lo,hi}_epi8` of the high and low nibbles (index order)
// works within 128-bit lanes, so the 4 vectors of 16 weights hold indices
// [0-7 | 32-39], [8-15 | 40-47], [16-23 | 48-55], [24-31 | 56-63]: the activations are stored in
// that order once per call (nf4_order), not shuffled per row.

// Position of activation j of a 64-value block in NF4 order (see above).
inline int64_t nf4_order(int64_t j) {
  const int64_t lane = (j / 32), within = j % 32;  // lane: 0 for 0-31, 1 for 32-63
  return (within / 8) * 16 + lane * 8 + within % 8;
}

// 64-value blocks of int16 activations (m rows of k) rearranged into NF4 order.
void reorder_nf4(const int16_t* xq, int16_t* out, int64_t m, int64_t k) {
  for (int64_t t = 0; t < m; ++t)
    for (int64_t b = 0; b < k / 64; ++b)
      for (int64_t j = 0; j < 64; ++j) out[t * k + b * 64 + nf4_order(j)] = xq[t * k + b * 64 + j];
}

// One NF4 row against reordered int16 activations. Each 32-bit lane of a `vpmaddwd` adds two
// products of at most 32767^2 (inside int32); the four per block go to f32 separately.
__attribute__((target("avx2,fma"))) inline __m256 madd_f32(__m256i w, const int16_t* x) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x))));
}

// lo / hi: the int16 code book's low and high bytes (16 each).
__attribute__((target("avx2,fma"))) void nf4_row_avx2(const int16_t* xr, const float* xs, const uint8_t* packed,
                                                       const float* absmax, const uint8_t* lo, const uint8_t* hi,
                                                       float cscale, float* y, int64_t m, int64_t n, int64_t k, bool add) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i tab_lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo)));
  const __m256i tab_hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)));
  for (int64_t t = 0; t < m; ++t) {
    const int16_t* xt = xr + t * k;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < k / 64; ++b) {
      const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(packed + b * 32));
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), m4), lo = _mm256_and_si256(bytes, m4);
      const __m256i c0 = _mm256_unpacklo_epi8(hi, lo), c1 = _mm256_unpackhi_epi8(hi, lo);
      const __m256i l0 = _mm256_shuffle_epi8(tab_lo, c0), h0 = _mm256_shuffle_epi8(tab_hi, c0);
      const __m256i l1 = _mm256_shuffle_epi8(tab_lo, c1), h1 = _mm256_shuffle_epi8(tab_hi, c1);
      const int16_t* xb = xt + b * 64;
      const __m256 s = _mm256_add_ps(
          _mm256_add_ps(madd_f32(_mm256_unpacklo_epi8(l0, h0), xb), madd_f32(_mm256_unpackhi_epi8(l0, h0), xb + 16)),
          _mm256_add_ps(madd_f32(_mm256_unpacklo_epi8(l1, h1), xb + 32), madd_f32(_mm256_unpackhi_epi8(l1, h1), xb + 48)));
      acc = _mm256_fmadd_ps(s, _mm256_set1_ps(absmax[b]), acc);
    }
    store(y + t * n, hsum256(acc) * xs[t] * cscale, add);
  }
}

// ---- AVX-512 (F + BW) ----------------------------------------------------------------------

__attribute__((target("avx512f,avx512bw"))) void f32_row_avx512(const float* x, const float* w, float* y, int64_t m,
                                                                 int64_t n, int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * k;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(xt + i), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(xt + i + 16), a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(xt + i + 32), a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(xt + i + 48), a3);
    }
    for (; i + 16 <= k; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(xt + i), a0);
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < k; ++i) acc += xt[i] * w[i];
    store(y + t * n, acc, add);
  }
}

__attribute__((target("avx512f,avx512bw"))) inline __m512 int8x16(const int8_t* q) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
}

__attribute__((target("avx512f,avx512bw"))) void int8_row_avx512(const float* x, const int8_t* q, float scale, float* y,
                                                                  int64_t m, int64_t n, int64_t k, bool add) {
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * k;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
      a0 = _mm512_fmadd_ps(int8x16(q + i), _mm512_loadu_ps(xt + i), a0);
      a1 = _mm512_fmadd_ps(int8x16(q + i + 16), _mm512_loadu_ps(xt + i + 16), a1);
      a2 = _mm512_fmadd_ps(int8x16(q + i + 32), _mm512_loadu_ps(xt + i + 32), a2);
      a3 = _mm512_fmadd_ps(int8x16(q + i + 48), _mm512_loadu_ps(xt + i + 48), a3);
    }
    for (; i + 16 <= k; i += 16) a0 = _mm512_fmadd_ps(int8x16(q + i), _mm512_loadu_ps(xt + i), a0);
    float acc = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < k; ++i) acc += xt[i] * static_cast<float>(q[i]);
    store(y + t * n, acc * scale, add);
  }
}

__attribute__((target("avx512f,avx512bw"))) void nf4_row_avx512(const float* x, const uint8_t* packed, const float* absmax,
                                                                 const float* codebook, float* y, int64_t m, int64_t n,
                                                                 int64_t k, bool add) {
  const __m512 table = _mm512_loadu_ps(codebook);
  const __m128i mask = _mm_set1_epi8(0x0F);
  for (int64_t t = 0; t < m; ++t) {
    const float* xt = x + t * k;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < k / 64; ++b) {
      __m512 s0 = _mm512_setzero_ps(), s1 = s0;
      for (int64_t j = 0; j < 4; j += 2) {
        // 8 bytes = 16 codes; `unpacklo_epi8(high nibbles, low nibbles)` restores index order.
        const __m128i b0 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + b * 32 + j * 8));
        const __m128i b1 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + b * 32 + j * 8 + 8));
        const __m128i c0 = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b0, 4), mask), _mm_and_si128(b0, mask));
        const __m128i c1 = _mm_unpacklo_epi8(_mm_and_si128(_mm_srli_epi16(b1, 4), mask), _mm_and_si128(b1, mask));
        s0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c0), table), _mm512_loadu_ps(xt + b * 64 + j * 16), s0);
        s1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(c1), table), _mm512_loadu_ps(xt + b * 64 + j * 16 + 16), s1);
      }
      acc = _mm512_fmadd_ps(_mm512_add_ps(s0, s1), _mm512_set1_ps(absmax[b]), acc);
    }
    store(y + t * n, _mm512_reduce_add_ps(acc), add);
  }
}

// ---- dispatch ------------------------------------------------------------------------------

// The calling thread's int16 activations for one product (see int8_row_avx2), in index order or
// in NF4 order (see nf4_row_avx2), in buffers reused across calls. Pointers are returned, not the
// thread_local buffers: inside a pool task a thread_local name is the worker's own copy.
struct I16Rows {
  const int16_t* q;
  const float* scale;
};

I16Rows int16_activations(const float* x, int64_t m, int64_t k, bool in_nf4_order) {
  thread_local std::vector<int16_t> xq, reordered;
  thread_local std::vector<float> xs;
  xq.resize(m * k);
  xs.resize(m);
  quantize_i16_avx2(x, xq.data(), xs.data(), m, k);
  if (!in_nf4_order) return {xq.data(), xs.data()};
  reordered.resize(m * k);
  reorder_nf4(xq.data(), reordered.data(), m, k);
  return {reordered.data(), xs.data()};
}

// Rows per task: at least ~32 KiB of codes, so a task outlasts the pool's hand-off.
int64_t grain(int64_t row_bytes) { return row_bytes >= 32768 ? 1 : 32768 / row_bytes; }

}  // namespace

extern "C" {

// The best tier this CPU runs (see above).
int llama3_bench_weight_only_best_tier() { return static_cast<int>(best_tier()); }

// y (m, n) = x (m, k) times the f32 matrix w (n, k), transposed; with add != 0, y += that instead
// (a residual add fused into the product). Tier and result as below.
int llama3_bench_f32_matmul(int tier, const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k, int add) {
  F32Row row = f32_row_scalar;
  switch (llama3_bench::usable_tier(tier)) {
    case Tier::Avx512: row = f32_row_avx512; break;
    case Tier::Avx2Fma: row = f32_row_avx2; break;
    case Tier::Portable: row = f32_row_scalar; break;
  }
  try {
    at::parallel_for(0, n, grain(k * 4), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(x, w + r * k, y + r, m, n, k, add != 0);
    });
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// y (m, n) = x (m, k) times the int8 matrix q (n, k) with row scales (n), transposed, with the
// given tier (lowered to what the CPU has); add as above. Returns 0, or 1 if libtorch's pool raised (nothing
// here throws; the pool's own failures are reported).
int llama3_bench_int8_matmul(int tier, const float* x, const int8_t* q, const float* scales, float* y, int64_t m,
                             int64_t n, int64_t k, int add) {
  const Tier t = llama3_bench::usable_tier(tier);
  try {
    // AVX2 takes int16 activations (its own row signature); the other tiers share one.
    if (t == Tier::Avx2Fma) {
      const I16Rows a = int16_activations(x, m, k, false);
      at::parallel_for(0, n, grain(k), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) int8_row_avx2(a.q, a.scale, q + r * k, scales[r], y + r, m, n, k, add != 0);
      });
      return 0;
    }
    const Int8Row row = t == Tier::Avx512 ? int8_row_avx512 : int8_row_scalar;
    at::parallel_for(0, n, grain(k), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(x, q + r * k, scales[r], y + r, m, n, k, add != 0);
    });
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

// y (m, n) = x (m, k) times the NF4 matrix (n, k) given as packed codes (n, k/2), absmax
// (n, k/64) and the 16-entry code book, transposed; k a multiple of 64. Tier and result as above.
int llama3_bench_nf4_matmul(int tier, const float* x, const uint8_t* packed, const float* absmax, const float* codebook,
                            float* y, int64_t m, int64_t n, int64_t k, int add) {
  const Tier t = llama3_bench::usable_tier(tier);
  try {
    // AVX2 takes int16 activations (its own row signature); the other tiers share one.
    if (t == Tier::Avx2Fma) {
      // int16 activations in NF4 order and an int16 code book, once per call (see nf4_row_avx2).
      const I16Rows a = int16_activations(x, m, k, true);
      float cmax = 0.f;
      for (int i = 0; i < 16; ++i) cmax = std::fabs(codebook[i]) > cmax ? std::fabs(codebook[i]) : cmax;
      uint8_t lo[16], hi[16];
      for (int i = 0; i < 16; ++i) {
        const int16_t v = cmax > 0.f ? static_cast<int16_t>(std::lrintf(codebook[i] / cmax * 32767.f)) : 0;
        lo[i] = static_cast<uint8_t>(v & 0xFF);
        hi[i] = static_cast<uint8_t>((v >> 8) & 0xFF);
      }
      const float cscale = cmax / 32767.f;
      at::parallel_for(0, n, grain(k / 2), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
          nf4_row_avx2(a.q, a.scale, packed + r * (k / 2), absmax + r * (k / 64), lo, hi, cscale, y + r, m, n, k, add != 0);
      });
      return 0;
    }
    const Nf4Row row = t == Tier::Avx512 ? nf4_row_avx512 : nf4_row_scalar;
    at::parallel_for(0, n, grain(k / 2), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) row(x, packed + r * (k / 2), absmax + r * (k / 64), codebook, y + r, m, n, k, add != 0);
    });
  } catch (const std::exception&) {
    return 1;
  }
  return 0;
}

}  // extern "C"
