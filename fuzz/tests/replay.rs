//! The short fuzzing run of `cargo test`: every seed of every target, then a few thousand
//! seeded mutations of each (byte flips, truncations, splices), so CI replays the corpus and
//! exercises the readers' error paths without libFuzzer. The long runs are `cargo xtask fuzz`.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use readers_fuzz::{seeds, Target};

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    // Most of what a reader interprets sits in the first bytes; aim there more often.
    let hot = m.len().clamp(1, 4096);
    for _ in 0..rng.random_range(1..=8) {
        if m.is_empty() {
            break;
        }
        let at = if rng.random_bool(0.8) { rng.random_range(0..hot.min(m.len())) } else { rng.random_range(0..m.len()) };
        match rng.random_range(0..6) {
            0 => m[at] ^= 1 << rng.random_range(0..8),
            1 => m[at] = rng.random(),
            2 => m[at] = [0x00, 0xff, 0x7f, 0x80][rng.random_range(0..4)],
            3 => m.truncate(at),
            4 => {
                let end = (at + 8).min(m.len());
                m[at..end].fill(0xff);
            }
            _ => {
                let len = rng.random_range(1..16).min(m.len() - at);
                let chunk = m[at..at + len].to_vec();
                let to = rng.random_range(0..m.len());
                m.splice(to..to, chunk);
            }
        }
    }
    m
}

fn replay(target: Target) {
    let seeds = seeds(target);
    assert!(seeds.len() >= 2, "{}: the committed corpus is missing", target.name());
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    let mut runs = 0;
    for (name, seed) in &seeds {
        target.run(seed);
        runs += 1;
        // Fewer mutants of the 2 MB SmolLM2 header: each run parses its whole vocabulary.
        let mutants = if seed.len() > 100_000 { 20 } else { 2000 };
        for _ in 0..mutants {
            target.run(&mutate(&mut rng, seed));
            runs += 1;
        }
        println!("{}: seed {name} ({} bytes) + {mutants} mutants: no panic", target.name(), seed.len());
    }
    println!("{}: {runs} inputs, no panic", target.name());
}

#[test]
fn gguf_corpus_and_mutants() {
    replay(Target::Gguf);
}

#[test]
fn safetensors_corpus_and_mutants() {
    replay(Target::Safetensors);
}

#[test]
fn config_corpus_and_mutants() {
    replay(Target::Config);
}
