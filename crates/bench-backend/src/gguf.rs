//! A GGUF reader shared by every backend: header, metadata, tensor table, and tensor bytes
//! through `memmap2` (nothing is copied until a backend converts a tensor).
//!
//! Format: ggml's `docs/gguf.md` (versions 2 and 3). Written here rather than taken from a crate
//! because bench-core must not depend on a framework (candle has a reader, tied to its tensors) and
//! no small, maintained, framework-free GGUF crate exposes the raw block bytes both backends need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml tensor types, with the numbering of `ggml.h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ4_NL,
    IQ4_XS,
    BF16,
    Other(u32),
}

impl GgmlType {
    pub fn from_u32(v: u32) -> Self {
        use GgmlType::*;
        match v {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            20 => IQ4_NL,
            23 => IQ4_XS,
            30 => BF16,
            other => Other(other),
        }
    }

    pub fn to_u32(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ4_NL => 20,
            IQ4_XS => 23,
            BF16 => 30,
            Other(v) => v,
        }
    }

    /// (values per block, bytes per block), or `None` for a type this project does not know.
    pub fn block(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        Some(match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (256, 84),
            Q3_K => (256, 110),
            Q4_K => (256, 144),
            Q5_K => (256, 176),
            Q6_K => (256, 210),
            Q8_K => (256, 292),
            IQ4_NL => (32, 18),
            IQ4_XS => (256, 136),
            Other(_) => return None,
        })
    }

    pub fn is_quantized(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GgmlType::Other(v) => write!(f, "ggml type {v}"),
            t => write!(f, "{t:?}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        use MetaValue::*;
        match *self {
            U8(v) => Some(v as u64),
            U16(v) => Some(v as u64),
            U32(v) => Some(v as u64),
            U64(v) => Some(v),
            I8(v) if v >= 0 => Some(v as u64),
            I16(v) if v >= 0 => Some(v as u64),
            I32(v) if v >= 0 => Some(v as u64),
            I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Element count. [`GgufFile::open`] has checked that it fits in an `i64` (what libtorch takes),
    /// so on an opened file this never saturates.
    pub fn elements(&self) -> u64 {
        checked_elements(&self.dims).unwrap_or(u64::MAX)
    }
    /// Row-major shape (outermost first), as candle and torch describe tensors.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| usize::try_from(d).unwrap_or(usize::MAX)).collect()
    }
    /// Bytes of the tensor's data, or `None` for a type this project does not know.
    pub fn byte_len(&self) -> Option<u64> {
        let (per_block, bytes) = self.ggml_type.block()?;
        (self.elements() / per_block as u64).checked_mul(bytes as u64)
    }
}

/// The product of the dimensions, if it fits in an `i64` (the largest element count libtorch and
/// candle accept).
fn checked_elements(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)).filter(|&n| n <= i64::MAX as u64)
}

/// Accepted `general.alignment` values: powers of two up to this (ggml's rule; real files use 32).
pub const MAX_ALIGNMENT: u64 = 1 << 16;

/// The tensor types some framework here reads (bench-backend's `ggml_blocks` dequantizes every
/// one), as `GgmlType`'s names, for error messages.
pub const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS";

/// The GGUF name of the token embedding table (the schema names every tensor; this one is also
/// how a file without `vocab_size` metadata tells its vocabulary).
pub const TOKEN_EMBEDDING: &str = "token_embd.weight";

/// The metadata key `cargo xtask synth-gguf` sets to `true` in files of seeded random weights:
/// every framework that loads such a file reports its results as synthetic.
pub const SYNTHETIC_KEY: &str = "llama3_bench.synthetic";

/// An open, validated GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    data_start: u64,
    alignment: u64,
    mmap: Data,
}

/// The file's bytes: memory-mapped, or owned (files built in memory, fuzzing).
enum Data {
    Map(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Data::Map(m) => m,
            Data::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or_else(|| {
                Error::gguf(self.path, format!("file is truncated: {what} at byte {} needs {n} bytes, file has {}", self.pos, self.buf.len()))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, w: &str) -> Result<u8> {
        Ok(self.take(1, w)?[0])
    }
    fn array<const N: usize>(&mut self, w: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, w)?);
        Ok(a)
    }
    fn u16(&mut self, w: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(w)?))
    }
    fn u32(&mut self, w: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(w)?))
    }
    fn u64(&mut self, w: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(w)?))
    }
    fn string(&mut self, w: &str) -> Result<String> {
        let len = self.u64(w)?;
        let len = usize::try_from(len).map_err(|_| Error::gguf(self.path, format!("{w}: absurd string length {len}")))?;
        let bytes = self.take(len, w)?;
        // Some converters wrote invalid UTF-8 in token strings; keep them readable, not fatal.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
    fn value(&mut self, ty: u32, w: &str, depth: usize) -> Result<MetaValue> {
        use MetaValue as V;
        Ok(match ty {
            0 => V::U8(self.u8(w)?),
            1 => V::I8(self.u8(w)? as i8),
            2 => V::U16(self.u16(w)?),
            3 => V::I16(self.u16(w)? as i16),
            4 => V::U32(self.u32(w)?),
            5 => V::I32(self.u32(w)? as i32),
            6 => V::F32(f32::from_bits(self.u32(w)?)),
            7 => V::Bool(self.u8(w)? != 0),
            8 => V::String(self.string(w)?),
            9 if depth == 0 => {
                let ety = self.u32(w)?;
                let n = self.u64(w)?;
                // Every element takes at least one byte: a larger count is a corrupt file.
                if n > (self.buf.len() - self.pos) as u64 {
                    return Err(Error::gguf(self.path, format!("{w}: array of {n} elements runs past the end of the file")));
                }
                // Capacity is bounded: a small file may not claim millions of elements up front.
                let mut items = Vec::with_capacity((n as usize).min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(ety, w, depth + 1)?);
                }
                V::Array(items)
            }
            10 => V::U64(self.u64(w)?),
            11 => V::I64(self.u64(w)? as i64),
            12 => V::F64(f64::from_bits(self.u64(w)?)),
            other => return Err(Error::gguf(self.path, format!("{w}: unknown metadata value type {other}"))),
        })
    }
}

impl GgufFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening GGUF file", path, e))?;
        // SAFETY: the map is read-only; like every mmap-based loader we assume the model file is
        // not truncated by another process while it is in use.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("memory-mapping GGUF file", path, e))?;
        Self::parse(path, Data::Map(mmap))
    }

    /// Reads a GGUF held in memory; `name` stands for the file in errors.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        Self::parse(name.as_ref(), Data::Owned(bytes))
    }

    fn parse(path: &Path, mmap: Data) -> Result<Self> {
        let mut c = Cursor { buf: &mmap, pos: 0, path };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(Error::gguf(path, "not a GGUF file (bad magic number)"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::gguf(path, format!("GGUF version {version} is not supported (2 and 3 are)")));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.u64("metadata count")?;
        if n_tensors > 1 << 24 || n_kv > 1 << 24 {
            return Err(Error::gguf(path, format!("implausible header ({n_tensors} tensors, {n_kv} metadata entries)")));
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&key)?;
            let value = c.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity((n_tensors as usize).min(1 << 16));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..n_tensors {
            let name = c.string("tensor name")?;
            let n_dims = c.u32(&name)?;
            if n_dims > 4 {
                return Err(Error::gguf(path, format!("tensor {name} has {n_dims} dimensions (at most 4)")));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(c.u64(&name)?);
            }
            let ggml_type = GgmlType::from_u32(c.u32(&name)?);
            let offset = c.u64(&name)?;
            if checked_elements(&dims).is_none() {
                return Err(Error::gguf(
                    path,
                    format!("tensor {name}: dimensions {dims:?} multiply to more than {} elements (accepted: a product up to 2^63 - 1)", i64::MAX),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(Error::gguf(path, format!("tensor {name} appears twice in the tensor table (accepted: unique names)")));
            }
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
                _ => return Err(Error::gguf(path, format!("general.alignment is {v:?} (accepted: a power of two from 1 to {MAX_ALIGNMENT})"))),
            },
        };
        let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
        let gguf = GgufFile { path: path.to_path_buf(), version, metadata, tensors, data_start, alignment, mmap };
        gguf.check_tensor_extents()?;
        Ok(gguf)
    }

    /// The `general.alignment` in effect (32 when the file does not say).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Every tensor's data must start at a multiple of the alignment and lie inside the file:
    /// catches truncated downloads and corrupt tensor tables up front.
    fn check_tensor_extents(&self) -> Result<()> {
        let file_len = self.mmap.len() as u64;
        for t in &self.tensors {
            if t.offset % self.alignment != 0 {
                return Err(Error::gguf(
                    &self.path,
                    format!(
                        "tensor {}: data offset {} is not a multiple of general.alignment {} (accepted: offsets that are multiples of {})",
                        t.name, t.offset, self.alignment, self.alignment
                    ),
                ));
            }
            let Some((per_block, _)) = t.ggml_type.block() else { continue };
            if t.dims.first().copied().unwrap_or(0) % per_block as u64 != 0 {
                return Err(Error::gguf(&self.path, format!("tensor {} row length {:?} is not a multiple of the {} block size", t.name, t.dims, t.ggml_type)));
            }
            let end = t.byte_len().and_then(|len| self.data_start.checked_add(t.offset)?.checked_add(len));
            if end.filter(|&e| e <= file_len).is_none() {
                return Err(Error::gguf(
                    &self.path,
                    format!(
                        "file is truncated: tensor {} (offset {}, {:?} {}) ends past the end of the file ({file_len} bytes; accepted: data inside the file). Download it again",
                        t.name, t.offset, t.dims, t.ggml_type
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the file carries this project's synthetic-weights marker ([`SYNTHETIC_KEY`]).
    pub fn is_synthetic(&self) -> bool {
        self.get(SYNTHETIC_KEY).and_then(|v| v.as_bool()).unwrap_or(false)
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(MetaValue::as_f64)
    }

    /// `general.architecture`, e.g. "llama".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Fails unless the file is a LLaMA-architecture model (or does not say).
    pub fn require_llama(&self, framework: &str) -> Result<()> {
        match self.architecture() {
            Some("llama") | None => Ok(()),
            Some(other) => Err(Error::ModelFiles(format!(
                "{}: unsupported architecture '{other}'; the {framework} framework runs LLaMA-architecture models",
                self.path.display()
            ))),
        }
    }

    /// The tensor types in the file, counted: "61xf32, 210xq4_1, 1xq8_0" (for reports).
    pub fn type_summary(&self) -> String {
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for t in &self.tensors {
            *types.entry(t.ggml_type.to_string().to_lowercase()).or_default() += 1;
        }
        types.iter().map(|(k, n)| format!("{n}x{k}")).collect::<Vec<_>>().join(", ")
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of a tensor (ggml blocks for quantized types).
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<&[u8]> {
        let len = info.byte_len().ok_or_else(|| {
            Error::gguf(
                &self.path,
                format!(
                    "tensor {} has {}, which no framework here reads (supported: {}); rewrite the file in a supported type (llama.cpp's llama-quantize)",
                    info.name, info.ggml_type, SUPPORTED_TYPES
                ),
            )
        })?;
        let range = self.data_start.checked_add(info.offset).and_then(|start| Some((start, start.checked_add(len)?)));
        range
            .and_then(|(start, end)| self.mmap.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?))
            .ok_or_else(|| Error::gguf(&self.path, format!("tensor {} lies outside the file", info.name)))
    }

    pub fn file_len(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// Tells the system that `bytes` (a tensor of this file, already copied by its reader) will
    /// not be read again soon: the mapping's pages of that range leave this process's resident
    /// memory (they stay in the page cache, and are read again from it if touched). Without this a
    /// loader that copies every tensor peaks at two copies of the weights: its own and the file's
    /// pages it touched. Advice only: a range outside the map, or a refusal, changes nothing.
    pub fn release(&self, bytes: &[u8]) {
        if let Data::Map(map) = &self.mmap {
            release_map_range(map, bytes);
        }
    }
}

/// `MADV_DONTNEED` over `bytes` where they lie inside the read-only file map `map` (widened to
/// whole pages); anything else is left alone. Sound for such a map: the advice only drops this
/// process's page-table entries, and the next read of any byte in the range faults the page in
/// again from the file, so every live reference into the map keeps reading the same bytes (under
/// the assumption `GgufFile::open` states: the file is not modified while mapped); nothing is
/// written through a read-only map, so nothing is discarded.
pub(crate) fn release_map_range(map: &memmap2::Mmap, bytes: &[u8]) {
    let Some(offset) = (bytes.as_ptr() as usize).checked_sub(map.as_ptr() as usize) else { return };
    if offset.checked_add(bytes.len()).is_none_or(|end| end > map.len()) {
        return;
    }
    #[cfg(unix)]
    {
        // SAFETY: read-only file map, range inside it (checked above): DONTNEED re-reads the
        // same bytes from the file on the next access (see this fn's doc).
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, offset, bytes.len()) };
    }
    #[cfg(not(unix))]
    let _ = offset;
}
