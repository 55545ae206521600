//! Process memory as the operating system reports it (Linux `/proc/self/status`): peak resident
//! set size (VmHWM) and current RSS. Each framework runs in its own process, so these are per
//! framework. On other systems they are reported as unknown rather than guessed.
//!
//! Also the memory check made before loading: the bytes a load will hold, worked out from the
//! architecture and the dtype / quantization before a byte is read ([`estimate_load`]), against
//! the memory available ([`available`]: `MemAvailable` of `/proc/meminfo`, and the cgroup v2 or v1
//! limit minus usage when the process runs under one), so a model that cannot fit is refused in
//! a moment instead of being killed by the kernel minutes later.
//!
//! And [`WeightBytes`], the one rule every backend counts its weights by (bytes held, bytes read
//! to decode one token), so the bandwidth column compares like with like.

use crate::arch::Architecture;
use crate::backend::{DType, Quantize};

fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Peak resident set size of this process, in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM").map(|kb| kb * 1024)
}

/// Current resident set size of this process, in bytes.
pub fn current_rss_bytes() -> Option<u64> {
    status_kb("VmRSS").map(|kb| kb * 1024)
}

pub const GB: f64 = 1e9;

/// Seconds since this process started, from the kernel's own clock (`/proc/self/stat`'s start
/// time against `/proc/uptime`; 10 ms resolution), so dynamic loading before `main` (libtorch's
/// libraries) is counted. `None` off Linux.
pub fn process_age_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start after its closing parenthesis;
    // the start time is field 22 overall, the 20th after it. /proc reports it in USER_HZ, 100 on
    // every Linux architecture.
    let start_ticks: f64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    Some((uptime - start_ticks / 100.0).max(0.0))
}

/// Bytes of a KV cache of `positions` positions in each of `slots` slots, `value_bytes` per
/// value: keys and values of every layer, `kv_heads x head_dim` values per position.
pub fn kv_cache_bytes(arch: &Architecture, positions: usize, slots: usize, value_bytes: usize) -> u64 {
    (2 * arch.layers * arch.kv_heads * arch.head_dim() * positions * slots.max(1) * value_bytes) as u64
}

/// Memory this process can still take, and where the figure comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    pub bytes: u64,
    /// e.g. "MemAvailable" or "cgroup limit 8.0 GB, 1.2 GB in use".
    pub source: String,
}

/// The smaller of `MemAvailable` and the cgroup's limit minus its usage; `None` where neither
/// can be read (not Linux).
pub fn available() -> Option<Available> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| meminfo_available(&m));
    let cgroup = cgroup_headroom();
    match (meminfo, cgroup) {
        (Some(m), Some((limit, used))) if limit.saturating_sub(used) < m => Some(Available {
            bytes: limit.saturating_sub(used),
            source: format!("cgroup limit {:.1} GB, {:.1} GB in use", limit as f64 / GB, used as f64 / GB),
        }),
        (Some(m), _) => Some(Available { bytes: m, source: "MemAvailable".into() }),
        (None, Some((limit, used))) => Some(Available {
            bytes: limit.saturating_sub(used),
            source: format!("cgroup limit {:.1} GB, {:.1} GB in use", limit as f64 / GB, used as f64 / GB),
        }),
        (None, None) => None,
    }
}

/// `MemAvailable` in bytes from the text of `/proc/meminfo`.
pub fn meminfo_available(meminfo: &str) -> Option<u64> {
    let kb: u64 = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    kb.checked_mul(1024)
}

/// (limit, usage) of this process's memory cgroup, v2 or v1; `None` when unlimited or absent.
fn cgroup_headroom() -> Option<(u64, u64)> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let read = |p: String| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    // v2: one "0::/path" line; files memory.max ("max" when unlimited) and memory.current.
    if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
        for dir in [format!("/sys/fs/cgroup{path}"), "/sys/fs/cgroup".to_string()] {
            if let (Some(limit), Some(used)) = (read(format!("{dir}/memory.max")), read(format!("{dir}/memory.current"))) {
                return Some((limit, used));
            }
        }
    }
    // v1: "N:memory:/path"; an unlimited group reports a limit near 2^63.
    let path = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| path.to_string())
    });
    for dir in [path.map(|p| format!("/sys/fs/cgroup/memory{p}")), Some("/sys/fs/cgroup/memory".to_string())].into_iter().flatten() {
        if let (Some(limit), Some(used)) = (read(format!("{dir}/memory.limit_in_bytes")), read(format!("{dir}/memory.usage_in_bytes"))) {
            return (limit < 1 << 60).then_some((limit, used));
        }
    }
    None
}

/// How the weights are held when no float dtype is asked for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stored {
    /// Converted to this float dtype (synthetic weights: f32; GGUF on a framework without ggml
    /// kernels: f32).
    Float(DType),
    /// Kept as they are in the file: `file_bytes` of tensors, plus the embedding dequantized to
    /// f32 for the lookup (GGUF blocks on native; safetensors in their own dtype).
    AsInFile { file_bytes: u64, embedding_f32: bool },
}

/// What a load will hold, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadEstimate {
    pub weights: u64,
    pub kv_cache: u64,
}

impl LoadEstimate {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv_cache)
    }
}

/// The bytes a load will hold: weights (in `float` with `quantize` applied to the layer matrices,
/// or as `stored` when no float dtype is asked for) and the KV cache of `cache_len` positions.
/// Quantized sizes follow `crate::quant`: int8 = one byte per weight + one f32 scale per row;
/// nf4 = half a byte per weight + one f32 absmax per 64.
pub fn estimate_load(arch: &Architecture, stored: Stored, float: Option<DType>, quantize: Option<Quantize>, cache_len: usize) -> LoadEstimate {
    let (d, f, v, l) = (arch.dim as u64, arch.ffn_dim as u64, arch.vocab_size as u64, arch.layers as u64);
    let kv = (arch.kv_heads * arch.head_dim()) as u64;
    let matrices = l * (2 * d * d + 2 * d * kv + 3 * d * f);
    let rows = l * (3 * d + 2 * kv + 2 * f);
    let norms = (2 * l + 1) * d * 4;
    let embedding = v * d;
    let head = if arch.tied_embeddings { 0 } else { v * d };
    let (weights, compute) = match float {
        Some(dt) => {
            let s = dt.size_in_bytes() as u64;
            let m = match quantize {
                Some(Quantize::Int8) => matrices + rows * 4,
                Some(Quantize::Nf4) => matrices / 2 + matrices / crate::quant::NF4_BLOCK as u64 * 4,
                _ => matrices * s,
            };
            (m + norms + (embedding + head) * s, s)
        }
        None => match stored {
            Stored::Float(dt) => {
                let s = dt.size_in_bytes() as u64;
                ((matrices + embedding + head) * s + norms, s)
            }
            Stored::AsInFile { file_bytes, embedding_f32 } => (file_bytes + if embedding_f32 { embedding * 4 } else { 0 }, 4),
        },
    };
    LoadEstimate { weights, kv_cache: l * 2 * cache_len as u64 * kv * compute }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_8b_weights_match_the_parameter_count() {
        // Llama 3.1 8B has 8,030,261,248 parameters (Meta's model card: 8.03 B): 32.1 GB in f32,
        // 16.1 GB in bf16; int8 and nf4 shrink only the layer matrices.
        let arch = &crate::test_support::registry_arch("llama3-8b");
        let f32 = estimate_load(arch, Stored::Float(DType::F32), None, None, 0);
        assert_eq!(f32.weights, arch.parameters() * 4);
        assert_eq!(arch.parameters(), 8_030_261_248);
        let bf16 = estimate_load(arch, Stored::Float(DType::F32), Some(DType::BF16), None, 0);
        assert_eq!(bf16.weights, 16_060_522_496 + 65 * 4096 * 2); // norms stay f32
        let int8 = estimate_load(arch, Stored::Float(DType::F32), Some(DType::F32), Some(Quantize::Int8), 0);
        let nf4 = estimate_load(arch, Stored::Float(DType::F32), Some(DType::F32), Some(Quantize::Nf4), 0);
        assert!(nf4.weights < int8.weights && int8.weights < bf16.weights, "{nf4:?} {int8:?} {bf16:?}");
        // KV cache: 32 layers x (k, v) x 4096 positions x 8 KV heads x 128 x 4 bytes = 1 GiB.
        assert_eq!(estimate_load(arch, Stored::Float(DType::F32), None, None, 4096).kv_cache, 1 << 30);
    }

    #[test]
    fn meminfo_is_parsed() {
        let text = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   21500000 kB\n";
        assert_eq!(meminfo_available(text), Some(21_500_000 * 1024));
        assert_eq!(meminfo_available("MemTotal: 5 kB\n"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn peak_is_at_least_current() {
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        let cur = super::current_rss_bytes().unwrap();
        let peak = super::peak_rss_bytes().unwrap();
        assert!(peak >= cur && peak >= 64 << 20, "{peak} {cur}");
    }
}

/// Bytes of weights a loaded model holds and reads to decode one token, counted by one rule for
/// every framework: every matrix and norm is read whole for each token; the token embedding is
/// held whole but only one row of it is read, plus all of it when it also serves as the output
/// head (tied embeddings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WeightBytes {
    held: u64,
    per_token: u64,
}

impl WeightBytes {
    /// A tensor read whole for every token (a layer matrix, a norm, an untied head).
    pub fn whole(&mut self, bytes: u64) {
        self.held += bytes;
        self.per_token += bytes;
    }

    /// The token embedding: `bytes` over `rows` rows; `also_head` when the same bytes are the
    /// output head (held once, read whole).
    pub fn embedding(&mut self, bytes: u64, rows: u64, also_head: bool) {
        self.held += bytes;
        self.per_token += bytes / rows.max(1) + if also_head { bytes } else { 0 };
    }

    /// A second copy of a tensor already counted, on another device (a sharded model's tied
    /// head): held again, not read again.
    pub fn copy(&mut self, bytes: u64) {
        self.held += bytes;
    }

    /// Bytes held ([`crate::ModelInfo::weight_bytes`]).
    pub fn held(&self) -> u64 {
        self.held
    }

    /// Bytes read per decoded token ([`crate::ModelInfo::weight_bytes_per_token`]).
    pub fn per_token(&self) -> u64 {
        self.per_token
    }
}

#[cfg(test)]
mod weight_bytes_tests {
    use super::WeightBytes;

    #[test]
    fn tied_embedding_is_held_once_and_read_whole() {
        let mut w = WeightBytes::default();
        w.whole(1000);
        w.embedding(400, 100, true);
        assert_eq!((w.held(), w.per_token()), (1400, 1000 + 4 + 400));
        let mut untied = WeightBytes::default();
        untied.whole(1000);
        untied.embedding(400, 100, false);
        assert_eq!((untied.held(), untied.per_token()), (1400, 1004));
    }
}
