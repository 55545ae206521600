//! [`BenchRequest`]: what `compare` asks a per-framework binary (`native-only`, `torch-only`,
//! `llamacpp-only`) to measure, as one typed value. [`BenchRequest::to_args`] is the only place
//! the child's command line is written, and the child's own parser reads it back into the same
//! typed values (a test in bench-cli parses `to_args` and compares), so a new option is added in
//! one place and a typo cannot reach run time.

use std::path::PathBuf;

use bench_backend::backend::{DType, Device, Kernels, Quantize};
use bench_hub::files::ModelType;
use bench_hub::registry::Size;

/// A framework of this project: each has its own binary (`native-only`, ...) that `compare`
/// runs in its own process. The one place framework names are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Framework {
    /// candle with the project's CPU kernels (`backend-native`).
    Native,
    /// libtorch through tch (`backend-torch`).
    Torch,
    /// llama.cpp through llama-cpp-2 (`backend-llamacpp`).
    Llamacpp,
}

impl Framework {
    /// Every framework, in report order.
    pub const ALL: [Framework; 3] = [Framework::Native, Framework::Torch, Framework::Llamacpp];

    /// The name in reports and on command lines ("native").
    pub fn as_str(self) -> &'static str {
        match self {
            Framework::Native => "native",
            Framework::Torch => "torch",
            Framework::Llamacpp => "llamacpp",
        }
    }

    /// Its binary's (and package's) name ("native-only").
    pub fn binary_name(self) -> &'static str {
        match self {
            Framework::Native => "native-only",
            Framework::Torch => "torch-only",
            Framework::Llamacpp => "llamacpp-only",
        }
    }

    /// Opt-in frameworks need a C++ toolchain to build: in `compare`'s default set only when built.
    pub fn is_opt_in(self) -> bool {
        matches!(self, Framework::Llamacpp)
    }
}

impl std::fmt::Display for Framework {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which model the child loads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ModelChoice {
    /// The CLI's default registry model.
    #[default]
    Default,
    /// A registry model by name.
    Registry(String),
    /// A Llama 3 size of the registry (1B, 8B, 70B, 405B).
    Size(Size),
    /// A model file or folder.
    Path(PathBuf),
}

/// One benchmark run of one framework.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRequest {
    /// The model.
    pub model: ModelChoice,
    /// The model type the user expects (checked against the files).
    pub model_type: Option<ModelType>,
    /// Seeded random weights of the registry shape.
    pub synthetic: bool,
    /// Download the registry model if missing.
    pub download: bool,
    /// Load even when the model looks larger than the memory available.
    pub ignore_memory_check: bool,
    /// Weight and compute dtype; `None` keeps each file's own storage.
    pub dtype: Option<DType>,
    /// Load-time quantization.
    pub quantize: Option<Quantize>,
    /// Measured iterations.
    pub iterations: usize,
    /// Discarded warm-up iterations.
    pub warmup: usize,
    /// Tokens generated per iteration (EOS ignored).
    pub gen_tokens: usize,
    /// CPU threads.
    pub threads: usize,
    /// Where to run.
    pub device: Device,
    /// Tuned or stock CPU kernels.
    pub kernels: Kernels,
    /// `--shard N`: layers split over N devices in one process (1 = unsharded).
    pub shard: usize,
    /// Where the child writes the logits of its first iteration, for quality comparisons.
    pub dump_logits: Option<PathBuf>,
}

impl BenchRequest {
    /// The child's arguments after `--benchmark --json`.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut flag = |name: &str, value: String| {
            a.push(format!("--{name}"));
            a.push(value);
        };
        flag("iterations", self.iterations.to_string());
        flag("warmup", self.warmup.to_string());
        flag("gen-tokens", self.gen_tokens.to_string());
        flag("threads", self.threads.to_string());
        flag("device", self.device.to_string());
        flag("kernels", self.kernels.as_str().into());
        if self.shard != 1 {
            flag("shard", self.shard.to_string());
        }
        match &self.model {
            ModelChoice::Default => {}
            ModelChoice::Registry(name) => flag("model", name.clone()),
            ModelChoice::Size(size) => flag("size", size.to_string()),
            ModelChoice::Path(path) => flag("model-path", path.display().to_string()),
        }
        if let Some(t) = self.model_type {
            flag("model-type", t.to_string());
        }
        if let Some(d) = self.dtype {
            flag("dtype", d.as_str().into());
        }
        if let Some(q) = self.quantize {
            flag("quantize", q.as_str().into());
        }
        if let Some(p) = &self.dump_logits {
            flag("dump-logits", p.display().to_string());
        }
        for (on, name) in [(self.synthetic, "--synthetic"), (self.download, "--download"), (self.ignore_memory_check, "--ignore-memory-check")] {
            if on {
                a.push(name.into());
            }
        }
        a
    }
}
