//! native and torch on the real SmolLM2 GGUF with f32 weights: logits at every position of the
//! test prompts agree within 1e-3 relative, and 32-token greedy generations are identical.

use backend_conformance::{fixtures, gguf_source, spec};
use bench_backend::backend::{Backend, DType};
use bench_core::run::bench::{self, BenchConfig};

const REL_TOLERANCE: f32 = 1e-3;

fn frameworks() -> [Box<dyn Backend>; 2] {
    [Box::new(backend_native::NativeBackend), Box::new(backend_torch::TorchBackend)]
}

#[test]
fn logits_agree_at_every_position() {
    let gguf = fixtures::smollm2_gguf();
    let mut prompts = fixtures::question_prompts();
    prompts.push(fixtures::smollm2_tokenizer().encode(bench_core::text::chat::Role::User.as_str(), false).unwrap());
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

#[test]
fn quantized_logits_and_perplexity_agree() {
    use bench_backend::backend::Quantize;
    let gguf = fixtures::smollm2_gguf();
    let prompt = fixtures::question_prompts().remove(1);
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/genesis-1-4-kjv.txt")).unwrap();
    let tokens: Vec<u32> = fixtures::smollm2_tokenizer().encode(&text, false).unwrap().into_iter().take(384).collect();
    for q in [None, Some(Quantize::Float16), Some(Quantize::Int8), Some(Quantize::Nf4)] {
        let mut s = spec(gguf_source(&gguf), if q.is_none() { Some(DType::F32) } else { None });
        s.quantize = q;
        s.max_seq_len = Some(128);
        let (mut logits, mut ppl) = (vec![], vec![]);
        for fw in frameworks() {
            let mut m = fw.load(&s).unwrap();
            logits.push(m.forward(&prompt, 0).unwrap());
            ppl.push(bench_core::run::perplexity::perplexity(m.as_mut(), &tokens, 128, |_, _| {}).unwrap().perplexity);
        }
        let scale = logits[1].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let rel = logits[0].iter().zip(&logits[1]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max) / scale;
        let ppl_diff = (ppl[0] - ppl[1]).abs() / ppl[1];
        println!(
            "parity native vs torch, quantize {q:?}: logits max relative |Δ| {rel:.2e}; perplexity {:.4} vs {:.4} ({:.3}%)",
            ppl[0],
            ppl[1],
            ppl_diff * 100.0
        );
        // f16 compute rounds differently in each framework; the others compute in f32.
        let tol = if q == Some(Quantize::Float16) { 2e-2 } else { REL_TOLERANCE };
        assert!(rel < tol, "{q:?}: {rel}");
        assert!(ppl_diff < 0.01, "{q:?}: perplexity differs by {:.2}%", ppl_diff * 100.0);
    }
}
