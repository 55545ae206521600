//! Logging to stderr (`--debug`, `RUST_LOG`) and the Chrome trace of `--profile`.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::Cli;

/// Keeps the Chrome trace writer alive; on drop the trace is flushed and moved into place.
pub(crate) struct Profile {
    guard: Option<tracing_chrome::FlushGuard>,
    tmp: PathBuf,
    target: PathBuf,
}

impl Drop for Profile {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            eprintln!("error: could not write the profile {}: {e}", self.target.display());
        } else {
            eprintln!("profile written to {} (open it in Perfetto)", self.target.display());
        }
    }
}

pub(crate) fn init_tracing(cli: &Cli) -> Result<Option<Profile>> {
    use tracing_subscriber::prelude::*;
    let level = if cli.output.debug { "debug" } else { "warn" };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()));
    let mut profile = None;
    let chrome = match &cli.output.profile {
        Some(path) => {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                bail!("cannot write the profile {}: folder {} does not exist", path.display(), dir.display());
            }
            let tmp = dir.join(format!(".{}.partial", path.file_name().map(|s| s.to_string_lossy()).unwrap_or_default()));
            let (layer, guard) = tracing_chrome::ChromeLayerBuilder::new().file(&tmp).include_args(true).build();
            profile = Some(Profile { guard: Some(guard), tmp, target: path.clone() });
            Some(layer.with_filter(tracing_subscriber::filter::LevelFilter::TRACE))
        }
        None => None,
    };
    tracing_subscriber::registry().with(fmt).with(chrome).try_init().ok();
    Ok(profile)
}
