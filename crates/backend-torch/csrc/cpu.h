// What both C++ files of this crate share: the instruction-set tier this CPU runs, detected once
// at run time, and the AVX2 horizontal sum.
#pragma once

#include <immintrin.h>

namespace llama3_bench {

// Instruction-set tiers, each a superset of the one before. The values are the Rust side's
// (`weight_only::Tier`), which passes them across the C ABI as ints; inside C++ a tier is always
// this type, made by detection or by `usable_tier` (never a bare int).
enum class Tier : int { Portable = 0, Avx2Fma = 1, Avx512 = 2 };

inline Tier detect_tier() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return Tier::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Tier::Avx2Fma;
  return Tier::Portable;
}

// The best tier this CPU runs (one detection per process: an inline function's static is shared).
inline Tier best_tier() {
  static const Tier best = detect_tier();
  return best;
}

// A tier asked for across the C ABI, lowered to what the CPU has (an unknown or negative value
// counts as the best tier's cap / portable): the only way from an int to a Tier.
inline Tier usable_tier(int asked) {
  const int best = static_cast<int>(best_tier());
  return static_cast<Tier>(asked < 0 ? 0 : asked < best ? asked : best);
}

__attribute__((target("avx2,fma"))) inline float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

}  // namespace llama3_bench
