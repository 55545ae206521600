//! The cache directory for model files, libtorch and reference tools.
//!
//! `$LLAMA3_BENCH_HOME`, else `$XDG_CACHE_HOME/llama3-bench`, else `~/.cache/llama3-bench`.
//! It lives outside the repository so a fresh clone on the same machine reuses what was fetched.

use std::path::{Path, PathBuf};

use crate::registry::{FileSpec, Registry, Source};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// The cache at [`bench_backend::cache_root`].
    pub fn from_env() -> Self {
        Self { root: bench_backend::cache_root() }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder holding one registry entry's files.
    pub fn entry_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    /// Where a registry file is kept once downloaded.
    pub fn file_path(&self, name: &str, spec: &FileSpec) -> PathBuf {
        self.entry_dir(name).join(spec.file_name())
    }

    /// The local paths of an entry's files if all are present (no network), else `None`.
    ///
    /// For Hugging Face sources this looks in hf-hub's cache (`HF_HOME`).
    pub fn resolve(&self, registry: &Registry, name: &str) -> Result<Option<Vec<PathBuf>>> {
        match registry.source(name)? {
            Source::Pypi { files, .. } => {
                let paths: Vec<_> = files.iter().map(|f| self.file_path(name, f)).collect();
                Ok(paths.iter().all(|p| p.is_file()).then_some(paths))
            }
            Source::Huggingface { repo, revision, files, index } => {
                let cache = hf_hub::Cache::from_env();
                let repo = cache.repo(hf_hub::Repo::with_revision(repo.clone(), hf_hub::RepoType::Model, revision.clone()));
                let mut paths = Vec::new();
                for f in files {
                    match repo.get(&f.path) {
                        Some(p) => paths.push(p),
                        None => return Ok(None),
                    }
                }
                if let Some(index) = index {
                    let Some(index_path) = repo.get(index) else { return Ok(None) };
                    for shard in crate::files::safetensors_index_shards(&index_path)? {
                        match repo.get(&shard) {
                            Some(p) => paths.push(p),
                            None => return Ok(None),
                        }
                    }
                    paths.push(index_path);
                }
                Ok(Some(paths))
            }
        }
    }

    /// Like [`Cache::resolve`] but an absent entry is an error saying how to fetch it.
    pub fn require(&self, registry: &Registry, name: &str) -> Result<Vec<PathBuf>> {
        self.resolve(registry, name)?.ok_or_else(|| {
            Error::ModelFiles(format!(
                "model '{name}' is not downloaded (looked in {}). Run `cargo xtask download {name}` or pass --download",
                self.root.display()
            ))
        })
    }
}
