//! The correctness suite every framework must pass (burn's pattern: one suite, every backend).
//!
//! A backend crate instantiates it in its tests with
//! `backend_conformance::conformance_suite!(my_crate::MyBackend);`, which expands to one
//! `#[test]` per check below. The checks use the real SmolLM2 GGUF and compare against logits from
//! an independent NumPy implementation (`tests/reference/llama_numpy.py`, weights dequantized by
//! the `gguf` package), never against the code under test.

pub mod batch;
pub mod cli;
pub mod fixtures;
pub mod serve;

use std::path::Path;

use bench_backend::backend::{Backend, DType, Device, Kernels, LoadSpec, WeightFormat, WeightSource, SHARD_DEVICES_ENV};
use bench_backend::schema::{TensorId, TensorRole};
use bench_core::run::generate::generate;
use bench_core::run::sampling::{argmax, top_k, Sampler, SamplingConfig};
use bench_hub::files;
use bench_hub::registry::Registry;

/// Max |Δ| allowed between an f32 framework and the float64 reference, in logit units. SmolLM2's
/// logits span about ±30; native measured 1.1e-4, so this leaves room for other summation orders
/// while catching any real error (a wrong RoPE or mask moves logits by whole units).
pub const F32_LOGIT_TOLERANCE: f32 = 2e-3;

pub fn spec(source: WeightSource, dtype: Option<DType>) -> LoadSpec {
    LoadSpec { source, dtype, quantize: None, device: Device::Cpu, max_seq_len: Some(512), threads: None, kernels: Default::default(), shard: 1, slots: 1 }
}

pub fn gguf_source(path: &Path) -> WeightSource {
    WeightSource::Files(WeightFormat::Gguf(path.to_path_buf()))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "vocabulary sizes differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// With every weight dequantized to f32, the logits at the first generated position (and every
/// prompt position) match the NumPy reference: same top-1, small max |Δ|.
pub fn f32_logits_match_reference(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let prompts = fixtures::question_prompts();
    let reference = fixtures::reference_logits(&gguf, &prompts);
    let mut model = backend.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let mut worst = 0.0f32;
    for (ids, want) in prompts.iter().zip(&reference) {
        model.reset();
        let last = model.forward(ids, 0).unwrap();
        let want_last = want.last().unwrap();
        assert_eq!(argmax(&last), argmax(want_last), "top-1 differs from the reference");
        worst = worst.max(max_abs_diff(&last, want_last));
        model.reset();
        let all = model.forward_all(ids, 0).unwrap();
        assert_eq!(all.len(), ids.len());
        for (got, want) in all.iter().zip(want) {
            worst = worst.max(max_abs_diff(got, want));
        }
    }
    println!(
        "conformance[{}]: f32 logits vs NumPy reference: {} prompts, {} positions, top-1 agrees, max |Δ| = {worst:.2e}",
        backend.name(),
        prompts.len(),
        prompts.iter().map(Vec::len).sum::<usize>()
    );
    assert!(worst < F32_LOGIT_TOLERANCE, "max |Δ| {worst} exceeds {F32_LOGIT_TOLERANCE}");
}

/// Greedy decoding, one token at a time through the KV cache, reproduces the reference's
/// logits at every step (the reference runs the whole sequence without a cache).
pub fn kv_cache_decode_matches_reference(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let prompt = fixtures::question_prompts().remove(0);
    let mut model = backend.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let mut ids = prompt.clone();
    let mut logits = model.forward(&prompt, 0).unwrap();
    for _ in 0..8 {
        let next = argmax(&logits);
        ids.push(next);
        logits = model.forward(&[next], ids.len() - 1).unwrap();
    }
    let reference = fixtures::reference_logits(&gguf, &[ids.clone()]).remove(0);
    let want = reference.last().unwrap();
    let d = max_abs_diff(&logits, want);
    println!("conformance[{}]: 8 cached decode steps vs reference without cache: max |Δ| = {d:.2e}", backend.name());
    assert!(d < F32_LOGIT_TOLERANCE, "max |Δ| {d}");
    assert_eq!(argmax(&logits), argmax(want));
}

/// `--shard 3` on the real SmolLM2 at f32 (30 layers -> 0..10, 10..20, 20..30), every shard
/// mapped to the CPU through [`SHARD_DEVICES_ENV`] so the sharded path (per-shard layers and
/// caches, the activations handed over with `to_device`) runs on a machine without GPUs: its
/// logits at every prompt position match the NumPy reference, and its prompt logits and 16 greedy
/// decode steps through the KV cache equal the unsharded model's (both on the framework's stock
/// ops, which a sharded native model runs). The result lists each shard's layers and weight bytes,
/// adding up to the model's. Sets the environment variable: call it from a test binary of its own.
pub fn sharded_output_equals_unsharded(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let prompt = fixtures::question_prompts().remove(0);
    std::env::set_var(SHARD_DEVICES_ENV, "cpu,cpu,cpu");
    let base = LoadSpec { kernels: Kernels::Stock, ..spec(gguf_source(&gguf), Some(DType::F32)) };
    let mut one = backend.load(&base).unwrap();
    let mut three = backend.load(&LoadSpec { shard: 3, ..base.clone() }).unwrap();
    std::env::remove_var(SHARD_DEVICES_ENV);

    let info = three.info();
    assert!(one.info().shards.is_empty(), "an unsharded model lists no shards");
    let layers: Vec<[usize; 2]> = info.shards.iter().map(|s| s.layers).collect();
    assert_eq!(layers, vec![[0, 10], [10, 20], [20, 30]], "{:?}", info.shards);
    assert!(info.shards.iter().all(|s| s.device == "cpu" && s.weight_bytes > 0), "{:?}", info.shards);
    assert_eq!(info.shards.iter().map(|s| s.weight_bytes).sum::<u64>(), info.weight_bytes, "{:?}", info.shards);
    assert_eq!(info.weight_bytes, one.info().weight_bytes);

    let reference = fixtures::reference_logits(&gguf, std::slice::from_ref(&prompt)).remove(0);
    let sharded = three.forward_all(&prompt, 0).unwrap();
    let vs_reference = sharded.iter().zip(&reference).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);
    assert!(vs_reference < F32_LOGIT_TOLERANCE, "sharded vs NumPy reference: max |Δ| {vs_reference}");
    let unsharded = one.forward_all(&prompt, 0).unwrap();
    let mut worst = sharded.iter().zip(&unsharded).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);

    let (mut a, mut b) = (unsharded.last().unwrap().clone(), sharded.last().unwrap().clone());
    let mut tokens = Vec::new();
    for step in 0..16 {
        let (ta, tb) = (argmax(&a), argmax(&b));
        assert_eq!(ta, tb, "greedy token {step} differs");
        tokens.push(ta);
        let pos = prompt.len() + step;
        a = one.forward(&[ta], pos).unwrap();
        b = three.forward(&[tb], pos).unwrap();
        worst = worst.max(max_abs_diff(&a, &b));
    }
    println!(
        "conformance[{}]: --shard 3 (all on cpu): {} prompt positions vs NumPy max |Δ| = {vs_reference:.2e}; vs unsharded max |Δ| = {worst:.2e} over the prompt and 16 greedy steps {tokens:?}; shard weight bytes {:?}",
        backend.name(),
        prompt.len(),
        info.shards.iter().map(|s| s.weight_bytes).collect::<Vec<_>>()
    );
    assert!(worst <= 1e-5, "sharded vs unsharded: max |Δ| {worst}");
}

/// `--temperature 0 --dtype f32`: the answer to "What is the capital of France?" names Paris.
pub fn greedy_answer_mentions_paris(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let tok = fixtures::smollm2_tokenizer();
    let prompt = fixtures::question_prompts().remove(0);
    let mut model = backend.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let mut sampler = Sampler::new(SamplingConfig::greedy());
    let out = generate(model.as_mut(), &tok, &prompt, &mut sampler, 32, |_| {}).unwrap();
    println!("conformance[{}]: greedy answer: {:?}", backend.name(), out.text);
    assert!(out.text.contains("Paris"), "answer {:?} does not mention Paris", out.text);
}

/// In the GGUF's own quantized form the top-5 at the first generated position overlaps the f32
/// reference's top-5 (quantized activations flip near-ties, so exact text is not compared).
pub fn quantized_top5_overlaps_reference(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let prompts = fixtures::question_prompts();
    let reference = fixtures::reference_logits(&gguf, &prompts);
    let mut model = backend.load(&spec(gguf_source(&gguf), None)).unwrap();
    for (ids, want) in prompts.iter().zip(&reference) {
        model.reset();
        let got = model.forward(ids, 0).unwrap();
        let (g, w) = (top_k(&got, 5), top_k(want.last().unwrap(), 5));
        let common = g.iter().filter(|t| w.contains(t)).count();
        println!("conformance[{}]: quantized top-5 {g:?} vs reference {w:?}: {common} in common", backend.name());
        assert!(common >= 3 && w.contains(&g[0]), "quantized top-5 {g:?} vs reference {w:?}");
    }
}

/// Synthetic weights at the real Llama 3.2 1B shape: a forward runs, and the reported model
/// memory is exactly parameters x 4 bytes (f32, tied embedding stored once).
pub fn synthetic_llama3_1b_shape(backend: &dyn Backend) {
    let arch = Registry::load().unwrap().model("llama3-1b").unwrap().architecture.clone();
    let mut s = spec(WeightSource::Synthetic { arch: arch.clone(), seed: 7 }, Some(DType::F32));
    s.max_seq_len = Some(64);
    let mut model = backend.load(&s).unwrap();
    let info = model.info();
    assert!(info.synthetic);
    assert_eq!(info.parameters, 1_235_814_400);
    assert_eq!(info.weight_bytes, arch.parameters() * 4, "model memory must be the weight bytes");
    let logits = model.forward(&[128000, 9906, 1917], 0).unwrap();
    assert_eq!(logits.len(), 128_256);
    assert!(logits.iter().all(|v| v.is_finite()));
    let next = model.forward(&[argmax(&logits)], 3).unwrap();
    assert!(next.iter().all(|v| v.is_finite()));
    println!(
        "conformance[{}]: synthetic Llama 3.2 1B shape: {} parameters, {:.3} GB f32 weights, forward ok",
        backend.name(),
        info.parameters,
        info.weight_bytes as f64 / 1e9
    );
}

/// A hand-made tiny LLaMA GGUF (F32 weights) matches the NumPy reference at every position.
pub fn tiny_gguf_matches_reference(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    fixtures::GgufBuilder::tiny_llama("llama").write(&path);
    let ids = vec![1u32, 5, 9, 30, 2, 17];
    let reference = fixtures::reference_logits(&path, std::slice::from_ref(&ids)).remove(0);
    let mut model = backend.load(&spec(gguf_source(&path), None)).unwrap();
    let got = model.forward_all(&ids, 0).unwrap();
    let worst = got.iter().zip(&reference).map(|(a, b)| max_abs_diff(a, b)).fold(0.0, f32::max);
    assert!(worst < 1e-4, "tiny model max |Δ| {worst}");
}

/// `--quantize int8|nf4`: the layers' matrices take the expected bytes (int8: 1 byte a value +
/// one f32 scale a row; nf4: half a byte + one f32 absmax per 64), the rest stays f32, and the
/// predictions stay close to the f32 model's (KL divergence and top-1 on the test prompts).
pub fn quantized_int8_and_nf4_memory_and_quality(backend: &dyn Backend) {
    use bench_backend::backend::Quantize;
    let gguf = fixtures::smollm2_gguf();
    let prompts = fixtures::question_prompts();
    let mut f32_model = backend.load(&spec(gguf_source(&gguf), Some(DType::F32))).unwrap();
    let reference: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| {
            f32_model.reset();
            f32_model.forward(p, 0).unwrap()
        })
        .collect();
    let f32_bytes = f32_model.info().weight_bytes;
    drop(f32_model);
    let arch = Registry::load().unwrap().model("smollm2-135m").unwrap().architecture.clone();
    let kv = arch.kv_heads * arch.head_dim();
    // (rows, cols) of every layer matrix.
    let per_layer = [
        (arch.dim, arch.dim),
        (kv, arch.dim),
        (kv, arch.dim),
        (arch.dim, arch.dim),
        (arch.ffn_dim, arch.dim),
        (arch.ffn_dim, arch.dim),
        (arch.dim, arch.ffn_dim),
    ];
    let matrices: Vec<(usize, usize)> = (0..arch.layers).flat_map(|_| per_layer).collect();
    let values: u64 = matrices.iter().map(|(r, c)| (r * c) as u64).sum();
    let rest = f32_bytes - 4 * values;
    // Bounds from measurement (native: int8 0.004, nf4 0.52 nats; SmolLM2 is already 4-bit Q4_1,
    // so NF4 requantizes quantized values): an order of magnitude would mean a real bug.
    for (q, max_kl) in [(Quantize::Int8, 0.05), (Quantize::Nf4, 1.0)] {
        let mut s = spec(gguf_source(&gguf), None);
        s.quantize = Some(q);
        let mut m = backend.load(&s).unwrap();
        let quantized: u64 = match q {
            Quantize::Int8 => matrices.iter().map(|(r, c)| (r * c + 4 * r) as u64).sum(),
            _ => matrices.iter().map(|(r, c)| (r * c / 2 + 4 * r * c / 64) as u64).sum(),
        };
        assert_eq!(m.info().weight_bytes, rest + quantized, "{q:?} weight bytes");
        let (mut kl, mut top1) = (0.0, 0);
        for (p, want) in prompts.iter().zip(&reference) {
            m.reset();
            let got = m.forward(p, 0).unwrap();
            kl += bench_core::run::sampling::kl_divergence(want, &got) / prompts.len() as f64;
            top1 += usize::from(argmax(&got) == argmax(want));
        }
        println!(
            "conformance[{}]: {q:?}: matrices {:.3}x of f32, whole model {:.3}x; mean KL vs f32 {kl:.4} nats, top-1 {top1}/{}",
            backend.name(),
            quantized as f64 / (4 * values) as f64,
            m.info().weight_bytes as f64 / f32_bytes as f64,
            prompts.len()
        );
        assert!(kl < max_kl, "{q:?}: KL {kl}");
        assert!(top1 >= prompts.len() - 1, "{q:?}: top-1 agreement {top1}/{}", prompts.len());
    }
}

/// `--quantize nf4` on a model whose rows do not split into 64-value blocks is a clear error.
pub fn nf4_with_indivisible_rows_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    fixtures::GgufBuilder::tiny_llama("llama").write(&path);
    let mut s = spec(gguf_source(&path), None);
    s.quantize = Some(bench_backend::backend::Quantize::Nf4);
    let err = match backend.load(&s) {
        Ok(_) => panic!("nf4 on rows of 8 must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("blocks of 64") && err.contains("rows of 8") && err.contains("int8"), "{err}");
}

fn load_err(backend: &dyn Backend, source: WeightSource) -> String {
    match backend.load(&spec(source, None)) {
        Ok(_) => panic!("loading should have failed"),
        Err(e) => e.to_string(),
    }
}

/// A GGUF cut short is rejected, naming truncation.
pub fn truncated_gguf_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    let bytes = std::fs::read(fixtures::smollm2_gguf()).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(backend, gguf_source(&path));
    assert!(err.contains("truncated"), "{err}");
}

pub fn unsupported_architecture_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mamba.gguf");
    fixtures::GgufBuilder::tiny_llama("mamba").write(&path);
    let err = load_err(backend, gguf_source(&path));
    assert!(err.contains("unsupported architecture 'mamba'"), "{err}");
    // bench-core's detection says the same before any backend is involved.
    let files = files::discover(&path).unwrap();
    let err = files::check_model_type(&files, None).unwrap_err().to_string();
    assert!(err.contains("unsupported architecture 'mamba'"), "{err}");
}

pub fn unsupported_tensor_type_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq.gguf");
    // ggml type 16 (IQ2_XXS) is read by no framework here: the error names the tensor, the type
    // and the supported types.
    let q = TensorId::layer(0, TensorRole::AttnQ).gguf_name();
    fixtures::GgufBuilder::tiny_llama("llama").retype(&q, 16, vec![0; 64]).write(&path);
    let err = load_err(backend, gguf_source(&path));
    assert!(err.contains(&q) && err.contains("ggml type 16") && err.contains("IQ4_NL") && err.contains("Q5_1"), "{err}");
}

pub fn corrupt_safetensors_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_attention_heads":2,"num_hidden_layers":1,
            "num_key_value_heads":1,"vocab_size":32}"#,
    )
    .unwrap();
    // A header length far past the end of the file, then garbage.
    let mut bytes = (1u64 << 40).to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{not json");
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let files = files::discover(dir.path()).unwrap();
    let err = load_err(backend, WeightSource::Files(files.weights));
    assert!(err.contains("safetensors") && err.contains("model.safetensors"), "{err}");
}

/// Malformed GGUF metadata and tensor tables, caught by bench-core's reader and config before
/// the framework sees a tensor: each error names the key or tensor, the file and what is accepted.
pub fn malformed_gguf_fields_are_errors(backend: &dyn Backend) {
    use fixtures::GgufBuilder;
    let dir = tempfile::tempdir().unwrap();
    let tiny = || GgufBuilder::tiny_llama("llama");
    let cases: Vec<(&str, GgufBuilder, Vec<&str>)> = vec![
        // The writer lays data out on 32-byte boundaries; a file declaring 64 has misaligned offsets.
        ("misaligned", tiny().u32("general.alignment", 64), vec!["is not a multiple of general.alignment 64 (accepted: offsets that are multiples of 64)"]),
        ("alignment", tiny().u32("general.alignment", 24), vec!["general.alignment is U32(24) (accepted: a power of two from 1 to 65536)"]),
        ("rope_nan", tiny().f32("llama.rope.freq_base", f32::NAN), vec!["llama.rope.freq_base is NaN (accepted: a finite number >= 1)"]),
        ("rope_inf", tiny().f32("llama.rope.freq_base", f32::INFINITY), vec!["llama.rope.freq_base is inf (accepted: a finite number >= 1)"]),
        ("rope_zero", tiny().f32("llama.rope.freq_base", 0.0), vec!["llama.rope.freq_base is 0 (accepted: a finite number >= 1)"]),
        (
            "eps",
            tiny().f32("llama.attention.layer_norm_rms_epsilon", -1e-5),
            vec!["llama.attention.layer_norm_rms_epsilon is -0.0000", "(accepted: a finite number > 0 and < 1)"],
        ),
        (
            "heads",
            tiny().u32("llama.attention.head_count", 3),
            vec!["llama.attention.head_count is 3 (accepted: a divisor of the hidden size 8 leaving an even head size"],
        ),
        ("kv_heads", tiny().u32("llama.attention.head_count_kv", 3), vec!["llama.attention.head_count_kv is 3 (accepted: a divisor of the 2 attention heads)"]),
        ("layers", tiny().u32("llama.block_count", 3), vec!["missing tensor blk.2.attn_norm.weight (the config has 3 layers"]),
        ("vocab", tiny().u32("llama.vocab_size", 64), vec!["tensor token_embd.weight has shape [32, 8], but the config", "implies [64, 8]"]),
        (
            "overflow",
            tiny().tensor("huge.weight", &[1 << 40, 1 << 40], 0, vec![0; 32]),
            vec!["tensor huge.weight: dimensions [1099511627776, 1099511627776] multiply to more than"],
        ),
        ("past_end", tiny().tensor("big.weight", &[1 << 30, 1 << 20], 0, vec![0; 32]), vec!["tensor big.weight", "ends past the end of the file"]),
    ];
    for (name, builder, needles) in cases {
        let path = dir.path().join(format!("{name}.gguf"));
        builder.write(&path);
        let err = load_err(backend, gguf_source(&path));
        assert!(err.contains(&format!("{name}.gguf")), "{name}: the error names the file: {err}");
        for n in needles {
            assert!(err.contains(n), "{name}: expected {n:?} in: {err}");
        }
    }
}

/// The same checks on a Hugging Face `config.json` and safetensors header.
pub fn malformed_config_json_and_safetensors_are_errors(backend: &dyn Backend) {
    let config = |extra: &str| {
        format!(
            r#"{{"model_type":"llama","hidden_size":8,"intermediate_size":16,"num_attention_heads":2,"num_hidden_layers":1,
                "num_key_value_heads":1,"vocab_size":32{extra}}}"#
        )
    };
    let header = |json: &str| {
        let mut b = (json.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(json.as_bytes());
        b.extend_from_slice(&[0u8; 64]);
        b
    };
    let ok_header = header(r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}"#);
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        ("rope", config(r#","rope_theta":-1.0"#), ok_header.clone(), "rope_theta is -1 (accepted: a finite number >= 1)"),
        ("eps", config(r#","rms_norm_eps":0.0"#), ok_header.clone(), "rms_norm_eps is 0 (accepted: a finite number > 0 and < 1)"),
        (
            "kv",
            config(r#","num_key_value_heads":3"#).replace(r#""num_key_value_heads":1,"#, ""),
            ok_header.clone(),
            "num_key_value_heads is 3 (accepted: a divisor of the 2 attention heads)",
        ),
        (
            "overflow",
            config(""),
            header(r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,64]}}"#),
            "tensor model.embed_tokens.weight: shape [4294967296, 4294967296] multiplies to more than 2^63 - 1 elements",
        ),
        (
            "offsets",
            config(""),
            header(r#"{"model.embed_tokens.weight":{"dtype":"F32","shape":[32,8],"data_offsets":[0,1024]}}"#),
            "tensor model.embed_tokens.weight: data_offsets [0, 1024] for shape [32, 8] F32 (accepted: exactly 1024 bytes inside the file's 64 bytes of data)",
        ),
        ("shapes", config(""), ok_header.clone(), "tensor model.embed_tokens.weight has shape [4, 4], but the config"),
    ];
    for (name, config_json, shard, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), config_json).unwrap();
        std::fs::write(dir.path().join("model.safetensors"), shard).unwrap();
        let files = files::discover(dir.path()).unwrap();
        let err = load_err(backend, WeightSource::Files(files.weights));
        assert!(err.contains(needle), "{name}: expected {needle:?} in: {err}");
        assert!(err.contains("config.json") || err.contains("model.safetensors"), "{name}: the error names the file: {err}");
    }
}

pub fn prompt_longer_than_context_is_an_error(backend: &dyn Backend) {
    let gguf = fixtures::smollm2_gguf();
    let tok = fixtures::smollm2_tokenizer();
    let mut s = spec(gguf_source(&gguf), None);
    s.max_seq_len = Some(16);
    let mut model = backend.load(&s).unwrap();
    let prompt: Vec<u32> = (0..20).map(|i| 100 + i).collect();
    let mut sampler = Sampler::new(SamplingConfig::greedy());
    let err = generate(model.as_mut(), &tok, &prompt, &mut sampler, 4, |_| {}).unwrap_err().to_string();
    assert!(err.contains("20 tokens") && err.contains("context holds 16"), "{err}");
    // The model itself refuses positions past its cache too.
    let err = model.forward(&prompt, 0).unwrap_err().to_string();
    assert!(err.contains("context"), "{err}");
}

/// A projection stored with its dimensions swapped, `(in, out)` instead of `(out, in)`, is
/// refused when the GGUF is loaded, with a message naming the tensor, the file, the shape found
/// and the shape the config implies. The k projection is the one swapped: a LLaMA's q projection
/// is square (`heads * head_dim = dim`), so swapping its dimensions leaves its shape as it is,
/// while k's `(kv_heads * head_dim, dim)` is `(4, 8)` here.
pub fn wrong_shaped_gguf_tensor_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swapped.gguf");
    let k = TensorId::layer(1, TensorRole::AttnK);
    // ggml order (innermost first): (out 4, in 8) is [8, 4]; swapped it is [4, 8].
    fixtures::GgufBuilder::tiny_llama("llama").redim(&k.gguf_name(), &[4, 8]).write(&path);
    let err = load_err(backend, gguf_source(&path));
    let want = format!("swapped.gguf: tensor {} has shape [8, 4], but the config", k.gguf_name());
    assert!(err.contains(&want) && err.contains("implies [4, 8]"), "expected {want:?} ... implies [4, 8] in: {err}");
}

/// The same swapped k projection in a Hugging Face safetensors checkpoint.
pub fn wrong_shaped_safetensors_tensor_is_an_error(backend: &dyn Backend) {
    let dir = tempfile::tempdir().unwrap();
    let arch = fixtures::tiny_arch();
    let k = TensorId::layer(1, TensorRole::AttnK);
    fixtures::write_safetensors_checkpoint(dir.path(), &arch, |id| {
        let shape = id.shape(&arch);
        if id == k {
            shape.into_iter().rev().collect()
        } else {
            shape
        }
    });
    let files = files::discover(dir.path()).unwrap();
    let err = load_err(backend, WeightSource::Files(files.weights));
    let want = format!("model.safetensors: tensor {} has shape [8, 4], but the config", k.hf_name());
    assert!(err.contains(&want) && err.contains("implies [4, 8]"), "expected {want:?} ... implies [4, 8] in: {err}");
}

/// Expands to one `#[test]` per named check (a function of this crate taking `&dyn Backend`) for
/// the given backend value: `conformance_checks!(MyBackend; f32_logits_match_reference, ...)`.
/// A framework that cannot run some checks lists the others.
#[macro_export]
macro_rules! conformance_checks {
    ($backend:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::$check(&$backend)
            }
        )+
    };
}

/// Expands to one `#[test]` per conformance check, every check, for the given backend value.
#[macro_export]
macro_rules! conformance_suite {
    ($backend:expr) => {
        $crate::conformance_checks!($backend;
            f32_logits_match_reference,
            kv_cache_decode_matches_reference,
            greedy_answer_mentions_paris,
            quantized_top5_overlaps_reference,
            synthetic_llama3_1b_shape,
            tiny_gguf_matches_reference,
            quantized_int8_and_nf4_memory_and_quality,
            nf4_with_indivisible_rows_is_an_error,
            truncated_gguf_is_an_error,
            unsupported_architecture_is_an_error,
            unsupported_tensor_type_is_an_error,
            corrupt_safetensors_is_an_error,
            malformed_gguf_fields_are_errors,
            malformed_config_json_and_safetensors_are_errors,
            wrong_shaped_gguf_tensor_is_an_error,
            wrong_shaped_safetensors_tensor_is_an_error,
            prompt_longer_than_context_is_an_error,
        );
    };
}

/// Expands to one `#[test]` per named command-line check (a function of [`cli`] taking the
/// binary's path) for the binary at the given path (use `env!("CARGO_BIN_EXE_<name>")`).
#[macro_export]
macro_rules! cli_checks {
    ($bin:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                $crate::cli::$check(std::path::Path::new($bin))
            }
        )+
    };
}

/// Expands to one `#[test]` per command-line check, every check, for the binary at the given path.
#[macro_export]
macro_rules! cli_suite {
    ($bin:expr) => {
        $crate::cli_checks!($bin;
            greedy_prompt_json_mentions_paris,
            benchmark_json_is_a_benchmark_result,
            chat_reads_one_question_per_line_from_a_pipe,
            chat_survives_bad_lines_and_ends_cleanly_at_eof,
            a_model_larger_than_memory_is_refused_before_loading,
            profile_writes_a_chrome_trace,
            missing_path_is_a_clear_error,
            empty_directory_is_a_clear_error,
            model_type_mismatch_uses_the_original_message,
            prompt_longer_than_the_context_is_a_clear_error,
            unknown_model_and_offline_download_are_clear_errors,
            pickle_checkpoints_are_refused,
        );
    };
}
