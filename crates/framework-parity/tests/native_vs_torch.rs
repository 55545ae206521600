//! native and torch on the real SmolLM2 GGUF with f32 weights: logits at every position of the
//! test prompts agree within 1e-3 relative, and 32-token greedy generations are identical.

use bench_core::backend::{Backend, DType};
use bench_core::bench::{self, BenchConfig};
use backend_conformance::{fixtures, gguf_source, spec};

const REL_TOLERANCE: f32 = 1e-3;

fn frameworks() -> [Box<dyn Backend>; 2] {
    [Box::new(backend_native::NativeBackend), Box::new(backend_torch::TorchBackend)]
}

#[test]
fn logits_agree_at_every_position() {
    let gguf = fixtures::smollm2_gguf();
    let mut prompts = fixtures::question_prompts();
    prompts.push(fixtures::smollm2_tokenizer().encode(bench_core::chat::Role::User.as_str(), false).unwrap());
    let [a, b] = frameworks();
    let mut ma = a.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let mut mb = b.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let (mut positions, mut worst) = (0, 0.0f32);
    for ids in &prompts {
        ma.reset();
        mb.reset();
        let la = ma.forward_all(ids, 0).unwrap();
        let lb = mb.forward_all(ids, 0).unwrap();
        for (x, y) in la.iter().zip(&lb) {
            let scale = y.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let rel = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max) / scale;
            worst = worst.max(rel);
            positions += 1;
        }
    }
    println!("parity native vs torch: {} prompts, {positions} positions, max relative |Δ| = {worst:.2e}", prompts.len());
    assert!(worst < REL_TOLERANCE, "max relative difference {worst}");
}

#[test]
fn greedy_generations_are_identical() {
    let gguf = fixtures::smollm2_gguf();
    let prompts = fixtures::question_prompts();
    for ids in &prompts {
        let tokens: Vec<Vec<u32>> = frameworks()
            .iter()
            .map(|fw| {
                let mut m = fw.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
                let cfg = BenchConfig { prompt_tokens: ids.clone(), gen_tokens: 32, iterations: 1, warmup: 0 };
                bench::run(m.as_mut(), &cfg, |_, _, _| {}).unwrap().1
            })
            .collect();
        assert_eq!(tokens[0].len(), 32);
        assert_eq!(tokens[0], tokens[1], "native and torch diverge");
    }
    println!("parity native vs torch: {} prompts x 32 greedy tokens identical", prompts.len());
}
