//! The torch framework's ggml dequantizers (its tensor-op ones, and bench-backend's reference
//! dequantizer for the other types) against the `gguf` package's, on random blocks of every
//! supported type (scales set to finite values; everything else random bytes).

use std::process::Command;

use bench_backend::gguf::GgmlType;

fn random_blocks(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
    let (_, bytes) = ty.block().unwrap();
    let mut state = seed;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 24) as u8
    };
    let mut out: Vec<u8> = (0..blocks * bytes).map(|_| next()).collect();
    // Put finite f16 scales where the format keeps them (random bits could be NaN or inf).
    let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
    for b in 0..blocks {
        let blk = &mut out[b * bytes..(b + 1) * bytes];
        let s = 0.01 + (b % 7) as f32 * 0.003;
        match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 => blk[..2].copy_from_slice(&f16(s)),
            GgmlType::Q4_1 => {
                blk[..2].copy_from_slice(&f16(s));
                blk[2..4].copy_from_slice(&f16(-0.05));
            }
            GgmlType::Q4_K => {
                blk[..2].copy_from_slice(&f16(s));
                blk[2..4].copy_from_slice(&f16(s / 2.0));
            }
            GgmlType::Q6_K => blk[208..210].copy_from_slice(&f16(s)),
            GgmlType::Q5_0 | GgmlType::IQ4_NL | GgmlType::IQ4_XS => blk[..2].copy_from_slice(&f16(s)),
            GgmlType::Q5_1 => {
                blk[..2].copy_from_slice(&f16(s));
                blk[2..4].copy_from_slice(&f16(-0.05));
            }
            GgmlType::Q5_K => {
                blk[..2].copy_from_slice(&f16(s));
                blk[2..4].copy_from_slice(&f16(s / 2.0));
            }
            GgmlType::Q2_K => {
                blk[80..82].copy_from_slice(&f16(s));
                blk[82..84].copy_from_slice(&f16(s / 2.0));
            }
            GgmlType::Q3_K => blk[108..110].copy_from_slice(&f16(s)),
            _ => {}
        }
    }
    out
}

#[test]
fn dequantizers_match_the_gguf_package() {
    let python = backend_conformance::fixtures::reference_python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/dequant.py");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let types = [
        (GgmlType::Q8_0, "Q8_0"),
        (GgmlType::Q4_0, "Q4_0"),
        (GgmlType::Q4_1, "Q4_1"),
        (GgmlType::Q4_K, "Q4_K"),
        (GgmlType::Q6_K, "Q6_K"),
        // Through bench-backend's reference dequantizer.
        (GgmlType::Q5_0, "Q5_0"),
        (GgmlType::Q5_1, "Q5_1"),
        (GgmlType::Q2_K, "Q2_K"),
        (GgmlType::Q3_K, "Q3_K"),
        (GgmlType::Q5_K, "Q5_K"),
        (GgmlType::IQ4_NL, "IQ4_NL"),
        (GgmlType::IQ4_XS, "IQ4_XS"),
    ];
    for (ty, name) in types {
        let (per_block, _) = ty.block().unwrap();
        let blocks = 24;
        let raw = random_blocks(ty, blocks, 0x9E3779B97F4A7C15 ^ per_block as u64);
        let (inp, out) = (dir.path().join(format!("{name}.bin")), dir.path().join(format!("{name}.f32")));
        std::fs::write(&inp, &raw).unwrap();
        let ok = Command::new(&python).arg(script).arg(name).arg(&inp).arg(&out).status().unwrap().success();
        assert!(ok, "reference dequantizer failed for {name}");
        let want: Vec<f32> = std::fs::read(&out).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
        let got = Vec::<f32>::try_from(&backend_torch::dequantize(&raw, ty, blocks * per_block, name).unwrap()).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-6, "{name}: max |Δ| {worst}");
        checked += 1;
    }
    println!("dequantizers vs gguf package: {checked} types, {} blocks each, exact to 1e-6", 24);
}
