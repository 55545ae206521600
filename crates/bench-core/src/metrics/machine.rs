//! The machine a comparison ran on, and its measured memory bandwidth: the physical limit of
//! batch-1 decode, which reads every weight once per token.

use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MachineInfo {
    pub cpu: String,
    pub logical_cores: usize,
    pub memory_gb: f64,
    pub os: String,
    /// Measured copy bandwidth, GB/s (bytes read + bytes written per second, all cores).
    pub memory_bandwidth_gbs: Option<f64>,
}

impl MachineInfo {
    pub fn probe(measure_bandwidth: bool) -> Self {
        let memory_gb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
            .map(|kb| kb * 1024.0 / 1e9)
            .unwrap_or(f64::NAN);
        Self {
            cpu: bench_backend::backend::cpu_model(),
            logical_cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            memory_gb,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            memory_bandwidth_gbs: measure_bandwidth.then(memory_bandwidth_gbs),
        }
    }
}

/// Copies a 256 MiB buffer (far larger than any cache) on every core, best of 5 rounds;
/// counts bytes read plus bytes written.
pub fn memory_bandwidth_gbs() -> f64 {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let total = 256usize << 20;
    let chunk = total / threads;
    let src = vec![1u8; total];
    let mut dst = vec![0u8; total];
    let mut best = 0.0f64;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
        let secs = t.elapsed().as_secs_f64();
        best = best.max(2.0 * total as f64 / secs / 1e9);
    }
    std::hint::black_box(&dst);
    best
}
