//! CPU kernels for llama3-bench's native framework, kept apart from the model (as ggml-cpu is):
//! quantized and dense matrix x activations ([`matmul`]), the small per-token ops around them
//! ([`ops`]: RMSNorm, SwiGLU, rotary embedding, attention over a KV cache), and the thread pool
//! they run on ([`pool`]).
//!
//! The instruction set is chosen once at run time ([`cpu::isa`]): one function per weight type
//! and tier, selected by a `match`, so the model code never sees the instruction set and a binary
//! built for baseline x86-64 uses AVX2 or AVX-512 VNNI where the CPU has them. All `unsafe` SIMD
//! lives in `quant/x86.rs`; inputs are checked at each public entry.
//!
//! No framework dependency: the backend wraps these in candle custom ops.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cpu;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
mod storage;

pub use matmul::{matmul, matmul_many, Layout, Matrix};
pub use quant::WeightType;

/// A kernel refused its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelError {
    /// Shapes or byte counts do not match.
    Shape(String),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelError::Shape(s) => write!(f, "kernel input: {s}"),
        }
    }
}

impl std::error::Error for KernelError {}
