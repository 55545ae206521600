//! The safetensors header, read and checked once for every backend before any tensor is
//! touched: the 8-byte little-endian header length, the JSON table of
//! `name -> {dtype, shape, data_offsets}` (format: huggingface/safetensors `README.md`).
//! Element counts and byte sizes are computed with checked arithmetic and every tensor's data
//! must lie inside the file, so the numbers a backend later hands to its framework are sane.
//! The backends read the data itself with their own crates (candle's loader, `safetensors`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::options::DType;
use crate::{Error, Result};

/// The format's own limit on the header size (the `safetensors` crate refuses larger ones).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// A safetensors element type, by the name the header uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StDtype {
    Bool,
    U8,
    I8,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
    F8E4M3,
    F8E5M2,
}

impl StDtype {
    fn parse(s: &str) -> Option<Self> {
        use StDtype::*;
        Some(match s {
            "BOOL" => Bool,
            "U8" => U8,
            "I8" => I8,
            "I16" => I16,
            "U16" => U16,
            "F16" => F16,
            "BF16" => BF16,
            "I32" => I32,
            "U32" => U32,
            "F32" => F32,
            "F64" => F64,
            "I64" => I64,
            "U64" => U64,
            "F8_E4M3" => F8E4M3,
            "F8_E5M2" => F8E5M2,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use StDtype::*;
        match self {
            Bool => "BOOL",
            U8 => "U8",
            I8 => "I8",
            I16 => "I16",
            U16 => "U16",
            F16 => "F16",
            BF16 => "BF16",
            I32 => "I32",
            U32 => "U32",
            F32 => "F32",
            F64 => "F64",
            I64 => "I64",
            U64 => "U64",
            F8E4M3 => "F8_E4M3",
            F8E5M2 => "F8_E5M2",
        }
    }

    pub fn size_in_bytes(self) -> u64 {
        use StDtype::*;
        match self {
            Bool | U8 | I8 | F8E4M3 | F8E5M2 => 1,
            I16 | U16 | F16 | BF16 => 2,
            I32 | U32 | F32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// The float dtype a model weight of this type is, if it is one this project computes in.
    pub fn float(self) -> Option<DType> {
        match self {
            StDtype::F32 => Some(DType::F32),
            StDtype::F16 => Some(DType::F16),
            StDtype::BF16 => Some(DType::BF16),
            _ => None,
        }
    }
}

/// One tensor of a safetensors file, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StTensor {
    pub name: String,
    pub dtype: StDtype,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// Byte range in the file (from the start of the file, header included).
    pub start: u64,
    pub end: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// One safetensors shard memory-mapped and its header read: the one place a shard is opened.
pub fn map_shard(shard: &Path) -> Result<(memmap2::Mmap, Vec<StTensor>)> {
    let file = std::fs::File::open(shard).map_err(|e| Error::io("opening safetensors file", shard, e))?;
    // SAFETY: read-only map; like every mmap-based loader we assume the file is not truncated by
    // another process while it is in use.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("memory-mapping safetensors file", shard, e))?;
    let header = read_header(&map, shard)?;
    Ok((map, header))
}

/// Reads and checks the header of the safetensors file `bytes` (named `path` in errors).
pub fn read_header(bytes: &[u8], path: &Path) -> Result<Vec<StTensor>> {
    let bad = |m: String| Error::ModelFiles(format!("invalid safetensors file {}: {m}. The file is corrupt or truncated; download it again", path.display()));
    let file_len = bytes.len() as u64;
    let len_bytes: [u8; 8] =
        bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or_else(|| bad(format!("{file_len} bytes is too short for a header (accepted: at least 8)")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || header_len > file_len - 8 {
        return Err(bad(format!(
            "header length {header_len} (accepted: up to {} bytes and within the file's {file_len} bytes)",
            MAX_HEADER_BYTES.min(file_len - 8)
        )));
    }
    let data_start = 8 + header_len;
    let header = &bytes[8..data_start as usize];
    let table: BTreeMap<String, serde_json::Value> = serde_json::from_slice(header).map_err(|e| bad(format!("header is not a JSON object of tensors: {e}")))?;
    let mut tensors = Vec::with_capacity(table.len());
    for (name, value) in table {
        if name == "__metadata__" {
            continue;
        }
        let raw: RawEntry =
            serde_json::from_value(value).map_err(|e| bad(format!("tensor {name}: {e} (accepted: {{\"dtype\", \"shape\", \"data_offsets\"}})")))?;
        let dtype = StDtype::parse(&raw.dtype).ok_or_else(|| bad(format!("tensor {name}: unknown dtype {:?}", raw.dtype)))?;
        let elements = raw
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| bad(format!("tensor {name}: shape {:?} multiplies to more than 2^63 - 1 elements", raw.shape)))?;
        let [rel_start, rel_end] = raw.data_offsets;
        let nbytes = elements.checked_mul(dtype.size_in_bytes());
        let range = data_start.checked_add(rel_start).zip(data_start.checked_add(rel_end));
        let (start, end) = match (nbytes, range) {
            (Some(n), Some((s, e))) if s <= e && e - s == n && e <= file_len => (s, e),
            _ => {
                return Err(bad(format!(
                    "tensor {name}: data_offsets [{rel_start}, {rel_end}] for shape {:?} {} (accepted: exactly {} bytes inside the file's {} bytes of data)",
                    raw.shape,
                    dtype.name(),
                    nbytes.map(|n| n.to_string()).unwrap_or_else(|| "too many".into()),
                    file_len - data_start
                )))
            }
        };
        let shape = raw.shape.iter().map(|&d| d as usize).collect();
        tensors.push(StTensor { name, dtype, shape, start, end });
    }
    // Data regions may not overlap (the format lays them out back to back).
    let mut by_start: Vec<&StTensor> = tensors.iter().filter(|t| t.end > t.start).collect();
    by_start.sort_by_key(|t| t.start);
    for pair in by_start.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(bad(format!("tensors {} and {} share bytes (accepted: separate data regions)", pair[0].name, pair[1].name)));
        }
    }
    Ok(tensors)
}
