//! The option enums every layer shares (dtype, device, load-time quantization, CPU kernels): a
//! leaf module, so the file readers and the interface can both use them without depending on
//! each other.

use serde::{Deserialize, Serialize};

use crate::Result;

/// Compute / storage dtype of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float
    F32,
    /// 16-bit float (IEEE half)
    F16,
    /// bfloat16
    #[cfg_attr(feature = "clap", value(name = "bf16"))]
    BF16,
}

impl DType {
    /// Bytes per value.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
    /// The command-line spelling ("f32").
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = crate::Error;
    /// `f32`, `f16` or `bf16` (what [`DType::as_str`] writes).
    fn from_str(s: &str) -> Result<Self> {
        parse_named(s, "dtype", &[DType::F32, DType::F16, DType::BF16], |d| d.as_str())
    }
}

/// The device a framework runs on, parsed once from `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl std::str::FromStr for Device {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|i| i.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| crate::Error::InvalidInput(format!("device '{s}': use cpu, cuda or cuda:N"))),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The one of `all` whose `name` is `s`; the error names `what` and the accepted names.
fn parse_named<T: Copy>(s: &str, what: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Result<T> {
    all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
        let accepted: Vec<_> = all.iter().map(|&v| name(v)).collect();
        crate::Error::InvalidInput(format!("{what} '{s}' (accepted: {})", accepted.join(", ")))
    })
}

/// Load-time quantization (the original's `--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// Layer matrices in int8, one scale per row.
    Int8,
    /// Layer matrices in 4-bit NormalFloat, one absmax per 64 values.
    Nf4,
    /// Every weight in f16, computed in f16.
    Float16,
}

impl std::str::FromStr for Quantize {
    type Err = crate::Error;
    /// `int8`, `nf4` or `float16` (what [`Quantize::as_str`] writes).
    fn from_str(s: &str) -> Result<Self> {
        parse_named(s, "quantization", &[Quantize::Int8, Quantize::Nf4, Quantize::Float16], |q| q.as_str())
    }
}

impl Quantize {
    /// The name `--quantize` takes and reports show.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantize::Int8 => "int8",
            Quantize::Nf4 => "nf4",
            Quantize::Float16 => "float16",
        }
    }
}

/// Which CPU kernels a framework with a choice runs (native: its own tuned kernels, or candle's
/// ops as shipped). Frameworks without a choice ignore it and say what they ran in
/// [`ModelInfo::kernels`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Kernels {
    /// The framework's fastest path (native: `cpu-kernels`, chosen per CPU at run time; torch:
    /// int8 / NF4 products of a few tokens read the codes, `weight_only.cpp`)
    #[default]
    Tuned,
    /// The framework's own ops as shipped (native: candle's `QMatMul`, matmul, softmax, ...;
    /// torch: libtorch ops only)
    Stock,
}

impl std::str::FromStr for Kernels {
    type Err = crate::Error;
    /// `tuned` or `stock`.
    fn from_str(s: &str) -> Result<Self> {
        parse_named(s, "kernels", &[Kernels::Tuned, Kernels::Stock], |k| k.as_str())
    }
}

impl Kernels {
    /// The name `--kernels` takes and reports show.
    pub fn as_str(self) -> &'static str {
        match self {
            Kernels::Tuned => "tuned",
            Kernels::Stock => "stock",
        }
    }
}
