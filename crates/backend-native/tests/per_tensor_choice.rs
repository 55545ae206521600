//! The tuned path's choice is per tensor: on the real SmolLM2 weights with the MLP's gate and up
//! matrices requantized to Q5_0 and its down matrices to Q5_1 (requantized here by candle's
//! implementation of ggml's quantizer, so the file is made without llama.cpp), a model of mixed
//! block types stays on the tuned kernels with every tensor on its own blocks (Q5_0, Q5_1, the
//! attention's Q4_1, the embedding's Q8_0), the kernels line says so, and the logits follow
//! candle's stock path on the same file (candle's own Q5_0, Q5_1 and Q4_1 products). Block types
//! without a kernel (IQ4_NL, IQ4_XS, which candle cannot read) are converted per tensor at load:
//! backend-llamacpp's `quantized_types` test runs them on llama.cpp's own files.

use backend_conformance::{fixtures, gguf_source, spec};
use bench_backend::backend::{Backend, Kernels, LanguageModel, LoadSpec};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

/// Writes `src` with every tensor `pick` selects requantized to `to` (through f32), the rest and
/// all metadata as they are.
fn requantize(src: &std::path::Path, dst: &std::path::Path, to: GgmlDType, pick: impl Fn(&str) -> bool) -> usize {
    let mut f = std::fs::File::open(src).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut changed = 0;
    let tensors: Vec<(String, QTensor)> = names
        .iter()
        .map(|name| {
            let q = content.tensor(&mut f, name, &Device::Cpu).unwrap();
            if pick(name) {
                changed += 1;
                let values = q.dequantize(&Device::Cpu).unwrap();
                (name.to_string(), QTensor::quantize(&values, to).unwrap())
            } else {
                (name.to_string(), q)
            }
        })
        .collect();
    let metadata: Vec<(&str, &gguf_file::Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &metadata, &tensor_refs).unwrap();
    changed
}

/// The largest |Δ| between the two models' next-token logits over the test prompts, relative to
/// the logits' scale; with `same_top1`, also checks that both pick the same next token.
fn max_rel_diff(a: &mut dyn LanguageModel, b: &mut dyn LanguageModel, same_top1: bool) -> f32 {
    let mut worst = 0.0f32;
    for ids in fixtures::question_prompts() {
        a.reset();
        b.reset();
        let (x, y) = (a.forward(&ids, 0).unwrap(), b.forward(&ids, 0).unwrap());
        let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        worst = worst.max(x.iter().zip(&y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max) / scale);
        if same_top1 {
            assert_eq!(argmax(&x), argmax(&y), "tuned (with converted tensors) and stock disagree on the next token");
        }
    }
    worst
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::MIN), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

#[test]
fn mixed_block_types_each_run_on_their_own_blocks_and_follow_the_stock_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smollm2-mlp-q5_0-q5_1.gguf");
    let src = fixtures::smollm2_gguf();
    let tmp = dir.path().join("smollm2-mlp-q5_0.gguf");
    let gate_up = |n: &str| n.starts_with("blk.") && (n.contains("ffn_gate") || n.contains("ffn_up"));
    assert_eq!(requantize(&src, &tmp, GgmlDType::Q5_0, gate_up), 60, "SmolLM2 has 30 layers of gate and up matrices");
    let down = |n: &str| n.starts_with("blk.") && n.contains("ffn_down");
    assert_eq!(requantize(&tmp, &path, GgmlDType::Q5_1, down), 30);

    let base: LoadSpec = spec(gguf_source(&path), None);
    let mut tuned = backend_native::NativeBackend.load(&base).unwrap();
    let mut stock = backend_native::NativeBackend.load(&LoadSpec { kernels: Kernels::Stock, ..base.clone() }).unwrap();
    let kernels = tuned.info().kernels;
    println!("kernels: {kernels}");
    assert!(kernels.starts_with("tuned ("), "a tensor sent the model to the stock path: {kernels}");
    assert!(!kernels.contains("re-encoded") && !kernels.contains("dequantized"), "Q5_0 and Q5_1 have tuned kernels: {kernels}");
    // Every tensor stays on its blocks: 37 MB of Q5_0 gate/up, 20 MB of Q5_1 down, 47 MB of
    // attention and embedding blocks; an MLP expanded to f16 would be over 150 MB more.
    let weights = tuned.info().weight_bytes;
    assert!(weights < 120_000_000, "{weights} bytes held: more than every tensor's own blocks");

    // The reference difference: tuned vs stock on the original file, where every tensor has a
    // tuned kernel (the two paths quantize activations differently, which alone moves logits).
    let original = spec(gguf_source(&src), None);
    let mut tuned_orig = backend_native::NativeBackend.load(&original).unwrap();
    let mut stock_orig = backend_native::NativeBackend.load(&LoadSpec { kernels: Kernels::Stock, ..original.clone() }).unwrap();
    let (worst, reference) = (max_rel_diff(tuned.as_mut(), stock.as_mut(), true), max_rel_diff(tuned_orig.as_mut(), stock_orig.as_mut(), false));
    println!(
        "tuned vs candle's stock path, max relative |Δ| over 3 prompts: {worst:.2e} with Q5_0 and Q5_1 MLP blocks, {reference:.2e} on the original Q4_1 file; {weights} weight bytes held"
    );
    assert!(worst < 2.0 * reference.max(0.01), "the Q5_0/Q5_1 kernels moved the logits {worst} from stock's, vs {reference} on the original file");
}
