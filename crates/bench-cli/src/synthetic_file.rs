//! Results of a GGUF written by `cargo xtask synth-gguf` are labelled synthetic, whichever
//! framework loaded it.

/// A model loaded from a GGUF that `cargo xtask synth-gguf` wrote (metadata
/// `llama3_bench.synthetic = true`): reported as synthetic whichever framework loaded it.
pub(crate) struct SyntheticFile(Box<dyn bench_backend::backend::LanguageModel>);

impl SyntheticFile {
    pub(crate) fn marked(spec: &bench_backend::backend::LoadSpec) -> bool {
        match &spec.source {
            bench_backend::backend::WeightSource::Files(bench_backend::WeightFormat::Gguf(p)) => {
                bench_backend::gguf::GgufFile::open(p).ok().is_some_and(|g| g.is_synthetic())
            }
            _ => false,
        }
    }

    pub(crate) fn wrap(
        model: Box<dyn bench_backend::backend::LanguageModel>,
        spec: &bench_backend::backend::LoadSpec,
    ) -> Box<dyn bench_backend::backend::LanguageModel> {
        if Self::marked(spec) && !model.info().synthetic {
            Box::new(SyntheticFile(model))
        } else {
            model
        }
    }
}

impl bench_backend::backend::LanguageModel for SyntheticFile {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> bench_backend::Result<bench_backend::backend::Logits> {
        self.0.forward(tokens, pos)
    }
    fn forward_all(&mut self, tokens: &[u32], pos: usize) -> bench_backend::Result<Vec<bench_backend::backend::Logits>> {
        self.0.forward_all(tokens, pos)
    }
    fn reset(&mut self) {
        self.0.reset()
    }
    fn slots(&self) -> usize {
        self.0.slots()
    }
    fn forward_batch(&mut self, seqs: &[bench_backend::SeqStep]) -> bench_backend::Result<Vec<bench_backend::backend::Logits>> {
        self.0.forward_batch(seqs)
    }
    fn reset_slot(&mut self, slot: usize) {
        self.0.reset_slot(slot)
    }
    fn info(&self) -> bench_backend::backend::ModelInfo {
        let mut info = self.0.info();
        info.synthetic = true;
        info.weights = format!("synthetic {}", info.weights);
        info
    }
}
