//! [`TensorSource`]: the weights of a model, by tensor role, whatever file they come from — in the
//! spirit of candle-nn's `VarBuilder`, without a framework. A framework asks for
//! [`TensorId`]s of the [`crate::schema`] and gets each tensor's bytes and its checked shape; it
//! never spells a tensor name, parses a header, or checks a shape itself.
//!
//! Opening a source reads the model's hyper-parameters ([`ModelConfig`]) and checks every tensor
//! the schema expects against the shape they imply, before a byte of weights is read: a wrong
//! shape is an error naming the tensor, the file, the shape found and the shape expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::arch::Architecture;
use crate::backend::{DType, WeightFormat, WeightSource};
use crate::config::{check_shape, ModelConfig};
use crate::gguf::{GgmlType, GgufFile};
use crate::safetensors::StTensor;
use crate::schema::{NameScheme, TensorId, TensorRole, LAYER_ROLES};
use crate::{synthetic, Error, Result};

/// A tensor's data as the source holds it.
#[derive(Debug)]
pub enum TensorData<'a> {
    /// ggml data of a GGUF file: blocks for quantized types, little-endian floats otherwise.
    Ggml {
        /// The ggml type of the data.
        ggml_type: GgmlType,
        /// The tensor's bytes in the file.
        bytes: &'a [u8],
    },
    /// Little-endian floats of a safetensors file (not necessarily aligned).
    Float {
        /// Their dtype.
        dtype: DType,
        /// The tensor's bytes in the file.
        bytes: &'a [u8],
    },
    /// Values made here (synthetic weights).
    F32(Vec<f32>),
}

/// One tensor of a [`TensorSource`].
#[derive(Debug)]
pub struct Tensor<'a> {
    /// Its name in the file (for messages).
    pub name: String,
    /// Row-major shape, checked against the architecture.
    pub shape: Vec<usize>,
    /// Its data.
    pub data: TensorData<'a>,
}

enum Files {
    Gguf(GgufFile),
    Safetensors {
        maps: Vec<(PathBuf, memmap2::Mmap)>,
        /// Every tensor of every shard: (index into `maps`, its header entry).
        index: BTreeMap<String, (usize, StTensor)>,
    },
    Synthetic {
        seed: u64,
    },
}

/// A model's weights, opened and checked.
pub struct TensorSource {
    files: Files,
    config: ModelConfig,
    name: String,
}

impl TensorSource {
    /// Opens the weights of `source` and checks the model's hyper-parameters and every tensor's
    /// shape. `framework` names the caller in "this framework cannot run it" errors.
    pub fn open(source: &WeightSource, framework: &str) -> Result<Self> {
        match source {
            WeightSource::Files(WeightFormat::Gguf(path)) => Self::gguf(path, framework),
            WeightSource::Files(WeightFormat::Safetensors { shards, config }) => Self::safetensors(shards, config),
            WeightSource::Synthetic { arch, seed } => Self::synthetic(arch, *seed),
        }
    }

    /// A GGUF file (LLaMA architecture).
    pub fn gguf(path: &Path, framework: &str) -> Result<Self> {
        let gguf = GgufFile::open(path)?;
        gguf.require_llama(framework)?;
        let config = ModelConfig::from_gguf(&gguf)?;
        Ok(Self { files: Files::Gguf(gguf), config, name: file_name(path) })
    }

    /// A Hugging Face checkpoint: `config.json` and its safetensors shards, memory-mapped.
    pub fn safetensors(shards: &[PathBuf], config_json: &Path) -> Result<Self> {
        let config = ModelConfig::from_safetensors(config_json, shards)?;
        let mut maps = Vec::with_capacity(shards.len());
        let mut index = BTreeMap::new();
        for (i, shard) in shards.iter().enumerate() {
            let (map, header) = crate::safetensors::map_shard(shard)?;
            for t in header {
                index.insert(t.name.clone(), (i, t));
            }
            maps.push((shard.clone(), map));
        }
        let name = config_json.parent().map(file_name).unwrap_or_default();
        Ok(Self { files: Files::Safetensors { maps, index }, config, name })
    }

    /// Seeded random weights of a registry shape ([`crate::synthetic`]).
    pub fn synthetic(arch: &Architecture, seed: u64) -> Result<Self> {
        let config = ModelConfig::synthetic(arch.clone())?;
        Ok(Self { files: Files::Synthetic { seed }, config, name: format!("synthetic (seed {seed})") })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The model's name for reports: the file or folder name, or "synthetic (seed N)".
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// Whether the weights are synthetic.
    pub fn is_synthetic(&self) -> bool {
        matches!(self.files, Files::Synthetic { .. })
    }

    /// Says that `t`, a tensor of this source, has been copied by its reader and will not be read
    /// again: its file pages leave the process's resident memory ([`GgufFile::release`]), so a
    /// framework that copies the weights tensor by tensor peaks near one copy of them, not two.
    pub fn release(&self, t: &Tensor<'_>) {
        let bytes = match &t.data {
            TensorData::Ggml { bytes, .. } | TensorData::Float { bytes, .. } => *bytes,
            TensorData::F32(_) => return,
        };
        match &self.files {
            Files::Gguf(g) => g.release(bytes),
            Files::Safetensors { maps, .. } => maps.iter().for_each(|(_, map)| crate::gguf::release_map_range(map, bytes)),
            Files::Synthetic { .. } => {}
        }
    }

    /// The GGUF file, when the source is one.
    pub fn gguf_file(&self) -> Option<&GgufFile> {
        match &self.files {
            Files::Gguf(g) => Some(g),
            _ => None,
        }
    }

    /// What the file stores, for reports: "gguf 61xf32, 210xq4_1, 1xq8_0", "safetensors bf16",
    /// "synthetic".
    pub fn storage_summary(&self) -> String {
        match &self.files {
            Files::Gguf(g) => format!("gguf {}", g.type_summary()),
            Files::Safetensors { .. } => match self.float_dtype(TensorId::global(TensorRole::TokenEmbedding)) {
                Some(dt) => format!("safetensors {}", dt.as_str()),
                None => "safetensors".into(),
            },
            Files::Synthetic { .. } => "synthetic".into(),
        }
    }

    /// The float dtype a tensor is stored in (safetensors; synthetic: f32), `None` for ggml blocks
    /// or a tensor the file lacks.
    pub fn float_dtype(&self, id: TensorId) -> Option<DType> {
        match &self.files {
            Files::Gguf(g) => match g.tensor(&id.gguf_name())?.ggml_type {
                GgmlType::F32 => Some(DType::F32),
                GgmlType::F16 => Some(DType::F16),
                GgmlType::BF16 => Some(DType::BF16),
                _ => None,
            },
            Files::Safetensors { index, .. } => index.get(&id.hf_name())?.1.dtype.float(),
            Files::Synthetic { .. } => Some(DType::F32),
        }
    }

    /// Whether the file has a separate output head (a tied model has none).
    pub fn has_output_head(&self) -> bool {
        let id = TensorId::global(TensorRole::Output);
        match &self.files {
            Files::Gguf(g) => g.tensor(&id.gguf_name()).is_some(),
            Files::Safetensors { index, .. } => index.contains_key(&id.hf_name()),
            Files::Synthetic { .. } => !self.config.arch.tied_embeddings,
        }
    }

    /// The file tensors are read from (for messages).
    fn origin(&self) -> PathBuf {
        match &self.files {
            Files::Gguf(g) => g.path.clone(),
            Files::Safetensors { maps, .. } => maps.first().map(|(p, _)| p.clone()).unwrap_or_default(),
            Files::Synthetic { .. } => PathBuf::from(&self.name),
        }
    }

    /// One tensor, its shape checked against the architecture's. The output head of a tied model
    /// is the embedding, with the head's shape.
    pub fn tensor(&self, id: TensorId) -> Result<Tensor<'_>> {
        let arch = &self.config.arch;
        let expected = id.shape(arch);
        let id = if id.role == TensorRole::Output && !self.has_output_head() { TensorId::global(TensorRole::TokenEmbedding) } else { id };
        let missing = |name: &str, file: &Path| Error::ModelFiles(format!("{}: missing tensor {name}", file.display()));
        let (name, shape, file, data) = match &self.files {
            Files::Gguf(g) => {
                let name = id.gguf_name();
                let info = g.tensor(&name).ok_or_else(|| missing(&name, &g.path))?;
                let bytes = g.tensor_bytes(info)?;
                (name, info.shape(), g.path.clone(), TensorData::Ggml { ggml_type: info.ggml_type, bytes })
            }
            Files::Safetensors { maps, index } => {
                let name = id.hf_name();
                let origin = self.origin();
                let (i, t) = index.get(&name).ok_or_else(|| missing(&name, &origin))?;
                let (path, map) = &maps[*i];
                let dtype = t
                    .dtype
                    .float()
                    .ok_or_else(|| Error::ModelFiles(format!("{}: tensor {name} has dtype {} (accepted: F32, F16, BF16)", path.display(), t.dtype.name())))?;
                // read_header checked the range lies inside the file.
                let bytes = &map[t.start as usize..t.end as usize];
                (name, t.shape.clone(), path.clone(), TensorData::Float { dtype, bytes })
            }
            Files::Synthetic { seed } => {
                let values = synthetic::tensor_values(*seed, id, &expected);
                (id.gguf_name(), expected.clone(), self.origin(), TensorData::F32(values))
            }
        };
        check_shape(arch, &file, &name, &expected, &shape)?;
        Ok(Tensor { name, shape, data })
    }

    /// Checks that every tensor the schema expects is present with its shape, without reading
    /// values (for a framework that hands the file to its own loader, as llama.cpp does). Synthetic
    /// weights have the schema's shapes by construction and are not generated here.
    pub fn check_shapes(&self) -> Result<()> {
        if self.is_synthetic() {
            return Ok(());
        }
        let globals = [TensorRole::TokenEmbedding, TensorRole::OutputNorm, TensorRole::Output].map(TensorId::global);
        let layers = (0..self.config.arch.layers).flat_map(|i| LAYER_ROLES.iter().map(move |&r| TensorId::layer(i, r)));
        for id in globals.into_iter().chain(layers) {
            self.tensor(id)?;
        }
        Ok(())
    }

    /// How this source names tensors.
    pub fn scheme(&self) -> NameScheme {
        match self.files {
            Files::Safetensors { .. } => NameScheme::HuggingFace,
            _ => NameScheme::Gguf,
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_tensors_have_the_schema_shapes() {
        let arch = crate::test_support::registry_arch("smollm2-135m");
        let src = TensorSource::synthetic(&arch, 3).unwrap();
        let q = src.tensor(TensorId::layer(2, TensorRole::AttnK)).unwrap();
        assert_eq!(q.shape, vec![192, 576]);
        assert!(matches!(q.data, TensorData::F32(ref v) if v.len() == 192 * 576));
        // Tied: the head is the embedding, with the head's shape.
        let head = src.tensor(TensorId::global(TensorRole::Output)).unwrap();
        assert_eq!(head.name, TensorId::global(TensorRole::TokenEmbedding).gguf_name());
        assert_eq!(src.storage_summary(), "synthetic");
    }
}
