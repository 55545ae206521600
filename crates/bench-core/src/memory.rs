//! Process memory as the operating system reports it (Linux `/proc/self/status`): peak resident
//! set size (VmHWM) and current RSS. Each framework runs in its own process, so these are per
//! framework. On other systems they are reported as unknown rather than guessed.

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

#[cfg(test)]
mod tests {
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
