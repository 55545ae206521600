//! Synthetic weights: seeded random values for any registry shape, for speed and memory work
//! where real weights cannot be had (decode speed does not depend on the values). Every framework
//! gets the very same numbers from here, so synthetic runs are comparable too. Anything loaded
//! from here is reported as synthetic. Which tensors there are and their shapes is the
//! [`crate::schema`]'s.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::schema::{TensorId, TensorRole};

/// Values per independently seeded chunk: the unit of parallel generation.
const CHUNK: usize = 1 << 16;

/// The values of one synthetic tensor: norms are ones, matrices uniform in ±1/sqrt(fan-in) so
/// activations keep a sane scale through the layers (the embedding uniform in ±1). Seeded by
/// (`seed`, the tensor's GGUF name, chunk index):
/// chunks of 65,536 values are generated in parallel, each from its own stream, so the values are
/// the same whatever the thread count, and an 8B model is ready at memory speed.
pub fn tensor_values(seed: u64, id: TensorId, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    if id.role.is_norm() {
        return vec![1.0; n];
    }
    // FNV-1a of the name, mixed with the seed: each tensor has its own stream.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in id.gguf_name().bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let fan_in = *shape.last().unwrap_or(&1) as f32;
    let a = if id.role == TensorRole::TokenEmbedding { 1.0 } else { 1.0 / fan_in.sqrt() };
    let mut out = vec![0f32; n];
    let fill = |first_chunk: usize, part: &mut [f32]| {
        for (i, chunk) in part.chunks_mut(CHUNK).enumerate() {
            let mut rng = SmallRng::seed_from_u64(h ^ ((first_chunk + i) as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
            for v in chunk {
                *v = rng.random_range(-a..a);
            }
        }
    };
    let threads = std::thread::available_parallelism().map(|t| t.get()).unwrap_or(1);
    let chunks = n.div_ceil(CHUNK);
    if threads == 1 || chunks < 4 {
        fill(0, &mut out);
        return out;
    }
    let per_thread = chunks.div_ceil(threads);
    std::thread::scope(|s| {
        for (t, part) in out.chunks_mut(per_thread * CHUNK).enumerate() {
            let fill = &fill;
            s.spawn(move || fill(t * per_thread, part));
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_seeded_per_tensor() {
        let q = TensorId::layer(0, TensorRole::AttnQ);
        let k = TensorId::layer(0, TensorRole::AttnK);
        let a = tensor_values(7, q, &[4, 16]);
        assert_eq!(a, tensor_values(7, q, &[4, 16]));
        assert_ne!(a, tensor_values(8, q, &[4, 16]));
        assert_ne!(a, tensor_values(7, k, &[4, 16]));
        assert!(a.iter().all(|v| v.abs() <= 0.25));
        assert!(tensor_values(7, TensorId::global(TensorRole::OutputNorm), &[3]).iter().all(|&v| v == 1.0));
    }
}
