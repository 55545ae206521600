//! The LLaMA tensor schema: which tensors a LLaMA-architecture model has, what they are called in
//! a GGUF file and in a Hugging Face checkpoint, and the shape the [`Architecture`] implies for
//! each. It is the only place in the workspace where a tensor name is spelled; loaders, the
//! synthetic-weight generator, the file checks and the tests all ask it.
//!
//! Names: GGUF's are llama.cpp's `LLM_TENSOR_*` names for the `llama` architecture
//! (`token_embd`, `blk.N.attn_q`, ...); Hugging Face's are transformers' `LlamaForCausalLM`
//! parameter names (`model.embed_tokens`, `model.layers.N.self_attn.q_proj`, ...). Shapes are
//! row-major, outermost first, `(out, in)` for matrices, as both formats store them (a GGUF lists
//! its dimensions innermost first; [`crate::gguf::TensorInfo::shape`] reverses them).

use crate::arch::Architecture;

/// What a tensor is in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorRole {
    /// Token embedding, `(vocab, dim)`.
    TokenEmbedding,
    /// RMSNorm weight before attention, `(dim)`.
    AttnNorm,
    /// Query projection, `(heads * head_dim, dim)`.
    AttnQ,
    /// Key projection, `(kv_heads * head_dim, dim)`.
    AttnK,
    /// Value projection, `(kv_heads * head_dim, dim)`.
    AttnV,
    /// Attention output projection, `(dim, heads * head_dim)`.
    AttnOutput,
    /// RMSNorm weight before the MLP, `(dim)`.
    FfnNorm,
    /// SwiGLU gate projection, `(ffn_dim, dim)`.
    FfnGate,
    /// SwiGLU up projection, `(ffn_dim, dim)`.
    FfnUp,
    /// SwiGLU down projection, `(dim, ffn_dim)`.
    FfnDown,
    /// Final RMSNorm weight, `(dim)`.
    OutputNorm,
    /// Output head, `(vocab, dim)`; absent when the embedding is tied.
    Output,
}

/// How a file names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameScheme {
    /// llama.cpp's GGUF names.
    Gguf,
    /// transformers' safetensors names.
    HuggingFace,
}

/// The one table of names: (role, GGUF stem, Hugging Face stem). Per-layer stems are prefixed with
/// `blk.N.` / `model.layers.N.`; every name ends in `.weight`. Rows 1 to 9 are the per-layer
/// roles in forward-pass order ([`LAYER_ROLES`]).
const NAMES: [(TensorRole, &str, &str); 12] = [
    (TensorRole::TokenEmbedding, "token_embd", "model.embed_tokens"),
    (TensorRole::AttnNorm, "attn_norm", "input_layernorm"),
    (TensorRole::AttnQ, "attn_q", "self_attn.q_proj"),
    (TensorRole::AttnK, "attn_k", "self_attn.k_proj"),
    (TensorRole::AttnV, "attn_v", "self_attn.v_proj"),
    (TensorRole::AttnOutput, "attn_output", "self_attn.o_proj"),
    (TensorRole::FfnNorm, "ffn_norm", "post_attention_layernorm"),
    (TensorRole::FfnGate, "ffn_gate", "mlp.gate_proj"),
    (TensorRole::FfnUp, "ffn_up", "mlp.up_proj"),
    (TensorRole::FfnDown, "ffn_down", "mlp.down_proj"),
    (TensorRole::OutputNorm, "output_norm", "model.norm"),
    (TensorRole::Output, "output", "lm_head"),
];

/// The GGUF name of Llama 3.1's RoPE frequency factors (not a weight of the forward pass).
pub const GGUF_ROPE_FREQS: &str = "rope_freqs.weight";

/// The tensors of one decoder layer, in the order the forward pass uses them (the per-layer
/// rows of [`NAMES`]).
pub const LAYER_ROLES: [TensorRole; 9] = {
    let mut roles = [TensorRole::AttnNorm; 9];
    let mut i = 0;
    while i < 9 {
        roles[i] = NAMES[i + 1].0;
        i += 1;
    }
    roles
};

impl TensorRole {
    fn stems(self) -> (&'static str, &'static str) {
        let (_, gguf, hf) = NAMES.iter().find(|(r, _, _)| *r == self).expect("every role is in NAMES");
        (gguf, hf)
    }

    /// Whether there is one of it per decoder layer.
    pub fn per_layer(self) -> bool {
        LAYER_ROLES.contains(&self)
    }

    /// An RMSNorm weight (a vector, kept in f32 by every framework).
    pub fn is_norm(self) -> bool {
        matches!(self, TensorRole::AttnNorm | TensorRole::FfnNorm | TensorRole::OutputNorm)
    }

    /// A layer matrix: what `--quantize int8|nf4` applies to (not the embedding or the head).
    pub fn is_layer_matrix(self) -> bool {
        self.per_layer() && !self.is_norm()
    }

    /// The shape `arch` implies, row-major.
    pub fn shape(self, arch: &Architecture) -> Vec<usize> {
        let (d, f, v) = (arch.dim, arch.ffn_dim, arch.vocab_size);
        let q = arch.heads * arch.head_dim();
        let kv = arch.kv_heads * arch.head_dim();
        match self {
            TensorRole::TokenEmbedding | TensorRole::Output => vec![v, d],
            TensorRole::AttnNorm | TensorRole::FfnNorm | TensorRole::OutputNorm => vec![d],
            TensorRole::AttnQ => vec![q, d],
            TensorRole::AttnK | TensorRole::AttnV => vec![kv, d],
            TensorRole::AttnOutput => vec![d, q],
            TensorRole::FfnGate | TensorRole::FfnUp => vec![f, d],
            TensorRole::FfnDown => vec![d, f],
        }
    }
}

/// One tensor of a model: a role and, for per-layer roles, the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId {
    /// What it is.
    pub role: TensorRole,
    /// The decoder layer, for per-layer roles.
    pub layer: Option<usize>,
}

impl TensorId {
    /// A tensor outside the layers (embedding, final norm, output head).
    pub fn global(role: TensorRole) -> Self {
        debug_assert!(!role.per_layer(), "{role:?} is per layer");
        Self { role, layer: None }
    }

    /// A tensor of decoder layer `layer`.
    pub fn layer(layer: usize, role: TensorRole) -> Self {
        debug_assert!(role.per_layer(), "{role:?} is not per layer");
        Self { role, layer: Some(layer) }
    }

    /// Its name in a file of the given scheme.
    pub fn name(self, scheme: NameScheme) -> String {
        let (gguf, hf) = self.role.stems();
        match (scheme, self.layer) {
            (NameScheme::Gguf, None) => format!("{gguf}.weight"),
            (NameScheme::Gguf, Some(i)) => format!("blk.{i}.{gguf}.weight"),
            (NameScheme::HuggingFace, None) => format!("{hf}.weight"),
            (NameScheme::HuggingFace, Some(i)) => format!("model.layers.{i}.{hf}.weight"),
        }
    }

    /// Its GGUF name (`blk.3.attn_q.weight`).
    pub fn gguf_name(self) -> String {
        self.name(NameScheme::Gguf)
    }

    /// Its Hugging Face name (`model.layers.3.self_attn.q_proj.weight`).
    pub fn hf_name(self) -> String {
        self.name(NameScheme::HuggingFace)
    }

    /// The shape `arch` implies.
    pub fn shape(self, arch: &Architecture) -> Vec<usize> {
        self.role.shape(arch)
    }

    /// The tensor a name of the given scheme refers to, if it is one of the schema's.
    pub fn parse(name: &str, scheme: NameScheme) -> Option<Self> {
        let stem = name.strip_suffix(".weight")?;
        let stem_of = |role: TensorRole| match scheme {
            NameScheme::Gguf => role.stems().0,
            NameScheme::HuggingFace => role.stems().1,
        };
        let layer_prefix = match scheme {
            NameScheme::Gguf => "blk.",
            NameScheme::HuggingFace => "model.layers.",
        };
        if let Some(rest) = stem.strip_prefix(layer_prefix) {
            let (i, part) = rest.split_once('.')?;
            let layer = i.parse().ok()?;
            let role = LAYER_ROLES.into_iter().find(|&r| stem_of(r) == part)?;
            return Some(Self::layer(layer, role));
        }
        NAMES.iter().map(|(r, _, _)| *r).filter(|r| !r.per_layer()).find(|&r| stem_of(r) == stem).map(Self::global)
    }
}

/// Every tensor of a model of this shape, in file order: embedding, the layers, final norm, and
/// the output head unless it is tied to the embedding.
pub fn tensors(arch: &Architecture) -> Vec<TensorId> {
    let mut t = vec![TensorId::global(TensorRole::TokenEmbedding)];
    for i in 0..arch.layers {
        t.extend(LAYER_ROLES.map(|r| TensorId::layer(i, r)));
    }
    t.push(TensorId::global(TensorRole::OutputNorm));
    if !arch.tied_embeddings {
        t.push(TensorId::global(TensorRole::Output));
    }
    t
}

/// The Hugging Face name of a tensor given its GGUF name (`blk.3.attn_q.weight` ->
/// `model.layers.3.self_attn.q_proj.weight`); a name outside the schema is returned unchanged.
pub fn hf_tensor_name(gguf_name: &str) -> String {
    TensorId::parse(gguf_name, NameScheme::Gguf).map(TensorId::hf_name).unwrap_or_else(|| gguf_name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arch() -> Architecture {
        // SmolLM2-135M's shape (models.toml): grouped-query attention, tied embedding.
        Architecture {
            layers: 30,
            dim: 576,
            heads: 9,
            kv_heads: 3,
            ffn_dim: 1536,
            vocab_size: 49152,
            rope_theta: 100000.0,
            norm_eps: 1e-5,
            tied_embeddings: true,
            context_length: 8192,
            rope_scaling: None,
        }
    }

    #[test]
    fn layer_roles_are_the_per_layer_rows() {
        assert_eq!(
            LAYER_ROLES.len(),
            NAMES.iter().filter(|(r, _, _)| !matches!(r, TensorRole::TokenEmbedding | TensorRole::OutputNorm | TensorRole::Output)).count()
        );
        assert_eq!(LAYER_ROLES[0], TensorRole::AttnNorm);
        assert_eq!(LAYER_ROLES[8], TensorRole::FfnDown);
    }

    #[test]
    fn names_round_trip_in_both_schemes() {
        let a = arch();
        let all = tensors(&a);
        assert_eq!(all.len(), 1 + 9 * 30 + 1);
        for id in all {
            for scheme in [NameScheme::Gguf, NameScheme::HuggingFace] {
                assert_eq!(TensorId::parse(&id.name(scheme), scheme), Some(id));
            }
        }
        assert_eq!(hf_tensor_name("blk.3.attn_q.weight"), "model.layers.3.self_attn.q_proj.weight");
        assert_eq!(hf_tensor_name("output.weight"), "lm_head.weight");
        assert_eq!(hf_tensor_name("token_embd.weight"), "model.embed_tokens.weight");
        assert_eq!(TensorId::global(TensorRole::TokenEmbedding).gguf_name(), crate::gguf::TOKEN_EMBEDDING);
        assert_eq!(TensorId::parse("blk.x.attn_q.weight", NameScheme::Gguf), None);
    }

    #[test]
    fn shapes_add_up_to_the_parameter_count() {
        let count = |a: &Architecture| -> u64 { tensors(a).iter().map(|t| t.shape(a).iter().product::<usize>() as u64).sum() };
        for name in ["smollm2-135m", "llama3-1b", "llama3-8b"] {
            let a = crate::test_support::registry_arch(name);
            assert_eq!(count(&a), a.parameters(), "{name}");
        }
        let mut a = arch();
        a.tied_embeddings = false;
        assert_eq!(count(&a), a.parameters());
        assert_eq!(TensorId::layer(0, TensorRole::AttnK).shape(&a), vec![192, 576]);
    }
}
