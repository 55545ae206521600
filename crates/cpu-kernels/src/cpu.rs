//! Which instruction set the kernels use, decided once at run time from the CPU's features
//! (never from the build machine's: the binary is built for baseline x86-64).
//!
//! Tiers, each a superset of the one before:
//! - [`Isa::Scalar`]: plain Rust, any CPU (also aarch64 and the rest);
//! - [`Isa::Avx2`]: AVX2 + FMA + F16C (Haswell / Zen 1 and later);
//! - [`Isa::Avx512Vnni`]: the above + AVX-512 F/BW/VL + VNNI, used at 256-bit width
//!   (`vpdpbusd ymm`): one instruction per 32 u8 x i8 products instead of AVX2's three, without
//!   the frequency cost of 512-bit registers (Ice Lake / Sapphire Rapids, Zen 4).
//!
//! `LLAMA3_BENCH_ISA=scalar|avx2|avx512vnni` caps the tier (for tests and comparisons); a tier the
//! CPU lacks is never chosen.

use std::sync::OnceLock;

/// An instruction-set tier for the kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 tier + AVX-512 F/BW/VL + VNNI.
    Avx512Vnni,
}

impl Isa {
    /// A short label for reports.
    pub fn label(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma+f16c",
            Isa::Avx512Vnni => "avx512-vnni (256-bit)",
        }
    }

    /// The best tier this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
            let vnni = avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            if vnni {
                return Isa::Avx512Vnni;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Scalar
    }

    /// Every tier this CPU supports, lowest first (tests run each).
    pub fn available() -> Vec<Isa> {
        let best = Isa::detect();
        [Isa::Scalar, Isa::Avx2, Isa::Avx512Vnni].into_iter().filter(|i| *i <= best).collect()
    }
}

/// A tier this CPU has: only [`Supported::clamp`] makes one (the requested tier capped at
/// [`Isa::detect`]), so code that holds one may run that tier's `#[target_feature]` functions.
/// The public entries take a plain [`Isa`] and clamp it; the dispatch inside takes this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Supported(Isa);

impl Supported {
    /// `isa`, or the best tier this CPU has if `isa` asks for more.
    #[inline]
    pub(crate) fn clamp(isa: Isa) -> Supported {
        Supported(isa.min(Isa::detect()))
    }

    /// The tier.
    #[inline]
    pub(crate) fn isa(self) -> Isa {
        self.0
    }
}

impl Isa {
    /// `self`, or the best tier this CPU has if `self` asks for more: what every public entry
    /// that takes an `Isa` runs on.
    pub fn clamped(self) -> Isa {
        Supported::clamp(self).isa()
    }
}

/// The tier the kernels use: the CPU's best, capped by `LLAMA3_BENCH_ISA` if set.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = Isa::detect();
        let cap = match std::env::var("LLAMA3_BENCH_ISA").as_deref() {
            Ok("scalar") => Isa::Scalar,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512Vnni,
        };
        best.min(cap)
    })
}
