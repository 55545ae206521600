// What both C++ files of this crate share: the instruction-set tier this CPU runs, detected once
// at run time, and the AVX2 horizontal sum.
#pragma once

#include <immintrin.h>

namespace llama3_bench {

// Tiers, as the Rust side numbers them (`weight_only::Tier`): 0 portable, 1 AVX2 + FMA,
// 2 AVX-512 (F + BW).
inline int detect_tier() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
  return 0;
}

// The best tier this CPU runs (one detection per process: an inline function's static is shared).
inline int best_tier() {
  static const int best = detect_tier();
  return best;
}

// A caller's tier lowered to what the CPU has.
inline int usable_tier(int tier) { return tier < best_tier() ? tier : best_tier(); }

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

}  // namespace llama3_bench
