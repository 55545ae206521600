//! Matrix x activations: `y (t, rows) = x (t, cols) · Wᵀ` for one weight matrix or several that
//! share their input (Q/K/V; gate/up), on the global [`pool`](crate::pool).
//!
//! Quantized types quantize `x` once per call in each [`ActivationFormat`] the matrices need
//! (ggml's per-type choice, to [`BlockQ8`]s; int8 and NF4: int16 with a scale per token, NF4's in
//! its lookup order; into reused scratch buffers), then
//! split the weight rows into tasks; a task runs its rows against every token, so a weight row is
//! read from memory once and reused from cache for the whole prompt. f16 and bf16 rows take `x`
//! rounded to their own type first (round half to even, once per call), as ggml does (their
//! `vec_dot_type` is F16 / BF16): each product term is then exact in f32 and only the order of
//! the additions differs from ggml's; f32 rows take `x` as it is.
//!
//! Prompt batches (`t >= 4`) use register tiles: quantized rows are multiplied with four tokens
//! at a time (each weight block unpacked once; interleaved Q2_K rows on AVX-512 VNNI with eight,
//! `quant::has_group_x8`); dense rows are expanded tile by tile (64 rows) to
//! f32 and handed to the `gemm` crate's packed, register-blocked GEMM (single-threaded per task:
//! the pool spreads the tiles); so are int8 and NF4 rows, whose prompts thus keep the exact f32
//! maths (their int16 kernels serve one to three tokens). `LLAMA3_BENCH_PREFILL=gemm` sends quantized types down the
//! dequantize-to-tiles + gemm path too, for comparison. All entry checks (byte counts, shapes) are here, once per call; the SIMD code
//! below trusts them.

use std::borrow::Cow;
use std::cell::RefCell;

use crate::cpu::{self, Isa, Supported};
use crate::pool;
use crate::quant::{self, ActivationFormat, BlockQ8, WeightType};
use crate::storage::Storage;
use crate::KernelError;

/// How a [`Matrix`] keeps its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Row after row, each in its [`WeightType`] layout (as in the file).
    Rows,
    /// Groups of 8 rows with their blocks interleaved ([`quant::interleave`]): the types
    /// [`quant::interleave::applies`] names, whose row count is a multiple of 8, on the SIMD tiers.
    Interleaved8,
}

impl Layout {
    /// The layout the kernels multiply fastest on this CPU.
    pub fn best(ty: WeightType, rows: usize) -> Layout {
        if quant::interleave::applies(ty, rows) && cpu::isa() >= Isa::Avx2 {
            Layout::Interleaved8
        } else {
            Layout::Rows
        }
    }
}

/// A weight matrix `(rows, cols)` of one of the [`WeightType`]s, in a [`Layout`].
#[derive(Debug, Clone)]
pub struct Matrix {
    ty: WeightType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    layout: Layout,
    data: Storage,
}

impl Matrix {
    /// Copies `data` (`rows` rows of `cols` values of `ty`, row after row, as in the file) after
    /// checking its size, in the [`Layout::best`] for this CPU. A slice of a memory-mapped file
    /// is copied once, straight into the matrix's storage.
    pub fn new(ty: WeightType, rows: usize, cols: usize, data: impl AsRef<[u8]>) -> Result<Matrix, KernelError> {
        Matrix::with_layout(ty, rows, cols, data, Layout::best(ty, rows))
    }

    /// [`Matrix::new`] in a given layout (`Interleaved8` only where [`quant::interleave::applies`]).
    pub fn with_layout(ty: WeightType, rows: usize, cols: usize, data: impl AsRef<[u8]>, layout: Layout) -> Result<Matrix, KernelError> {
        let data = data.as_ref();
        let row_bytes = ty.row_bytes(cols).ok_or(KernelError::Shape(format!(
            "{cols} columns is not a whole number of {}-value {} blocks",
            ty.block_values(),
            ty.label()
        )))?;
        let want = row_bytes.checked_mul(rows).ok_or(KernelError::Shape(format!("{rows} x {cols} overflows")))?;
        if data.len() != want || rows == 0 {
            return Err(KernelError::Shape(format!("{} matrix ({rows}, {cols}) needs {want} bytes, got {}", ty.label(), data.len())));
        }
        let data = match layout {
            Layout::Rows => Storage::copy_of(data),
            Layout::Interleaved8 if quant::interleave::applies(ty, rows) => {
                let mut out = Storage::zeroed(data.len());
                quant::interleave::pack(ty, rows, row_bytes, data, &mut out);
                out
            }
            Layout::Interleaved8 => return Err(KernelError::Shape(format!("a {} matrix of {rows} rows cannot be interleaved in groups of 8", ty.label()))),
        };
        Ok(Matrix { ty, rows, cols, row_bytes, layout, data })
    }

    /// Storage type.
    pub fn ty(&self) -> WeightType {
        self.ty
    }
    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
    /// How the bytes are kept.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The bytes of row `r` in its [`WeightType`] layout (gathered when interleaved).
    pub fn row(&self, r: usize) -> Cow<'_, [u8]> {
        match self.layout {
            Layout::Rows => Cow::Borrowed(&self.data[r * self.row_bytes..(r + 1) * self.row_bytes]),
            Layout::Interleaved8 => {
                let mut out = vec![0u8; self.row_bytes];
                quant::interleave::unpack_row(self.ty, self.row_bytes, &self.data, r, &mut out);
                Cow::Owned(out)
            }
        }
    }
    /// Row `r` as f32 (the plain reference).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        quant::reference::dequantize_row(self.ty, &self.row(r), out)
    }
    /// The bytes of interleaved group `g` (rows `8g..8g+8`).
    fn group(&self, g: usize) -> &[u8] {
        let n = quant::interleave::GROUP * self.row_bytes;
        &self.data[g * n..(g + 1) * n]
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<BlockQ8>; 3]> = const { RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
    /// int16 activations and their per-token scales, for `I16` and `I16Nf4`.
    static SCRATCH_I16: RefCell<[(Vec<i16>, Vec<f32>); 2]> = const { RefCell::new([(Vec::new(), Vec::new()), (Vec::new(), Vec::new())]) };
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// The activations rounded to f16 and to bf16 (kept as f32), for f16 / bf16 rows.
    static ROUNDED: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// The activations of one call as each weight type takes them: f16 / bf16 rows the values
/// rounded to that type ([`WeightType::F16`] / [`WeightType::BF16`]; empty when no such matrix
/// is in the call), every other type `x` itself.
#[derive(Clone, Copy)]
struct DenseInput<'a> {
    x: &'a [f32],
    f16: &'a [f32],
    bf16: &'a [f32],
}

impl<'a> DenseInput<'a> {
    fn for_type(&self, ty: WeightType) -> &'a [f32] {
        match ty {
            WeightType::F16 => self.f16,
            WeightType::BF16 => self.bf16,
            _ => self.x,
        }
    }
}

/// Runs `f` with `x` and its f16 / bf16 roundings for the types in `ws`.
fn with_dense_input<R>(ws: &[&Matrix], x: &[f32], f: impl FnOnce(DenseInput<'_>) -> R) -> R {
    ROUNDED.with(|r| {
        let mut r = r.borrow_mut();
        let [f16s, bf16s] = &mut *r;
        f16s.clear();
        bf16s.clear();
        if ws.iter().any(|w| w.ty == WeightType::F16) {
            f16s.extend(x.iter().map(|&v| half::f16::from_f32(v).to_f32()));
        }
        if ws.iter().any(|w| w.ty == WeightType::BF16) {
            bf16s.extend(x.iter().map(|&v| half::bf16::from_f32(v).to_f32()));
        }
        f(DenseInput { x, f16: f16s, bf16: bf16s })
    })
}

/// Rows per prefill tile handed to gemm, at least / at most (gemm packs the activations again
/// for every call, so tiles are as large as an even spread over the threads allows).
const GEMM_TILE_ROWS: (usize, usize) = (64, 512);

/// Whether a `t`-token product with `ty` goes through f32 tiles and gemm.
fn via_gemm(ty: WeightType, t: usize) -> bool {
    use std::sync::OnceLock;
    static QUANTIZED_TOO: OnceLock<bool> = OnceLock::new();
    let quantized_too = *QUANTIZED_TOO.get_or_init(|| std::env::var("LLAMA3_BENCH_PREFILL").as_deref() == Ok("gemm"));
    let ggml_block = ty.activation_format().is_some_and(ActivationFormat::is_q8);
    t >= 4 && (!ggml_block || quantized_too)
}

/// Int16 activations of one call: codes of every token (`t * cols`) and each token's scale.
#[derive(Clone, Copy)]
struct I16Acts<'a> {
    q: &'a [i16],
    s: &'a [f32],
}

/// `y = x · Wᵀ` for one matrix: `x` is `(t, cols)`, `y` `(t, rows)`, both row-major.
pub fn matmul(w: &Matrix, x: &[f32], t: usize, y: &mut [f32]) -> Result<(), KernelError> {
    matmul_many(&[w], x, t, y)
}

/// `y = x · [W0; W1; ...]ᵀ` for matrices sharing `cols`: `y` is `(t, Σ rows)`, each token's row
/// holding W0's outputs, then W1's, and so on (the fused Q/K/V and gate/up products).
pub fn matmul_many(ws: &[&Matrix], x: &[f32], t: usize, y: &mut [f32]) -> Result<(), KernelError> {
    matmul_many_isa(cpu::isa(), ws, x, t, y)
}

/// [`matmul_many`] on a given tier (capped at what the CPU has): for tests and comparisons.
pub fn matmul_many_isa(isa: Isa, ws: &[&Matrix], x: &[f32], t: usize, y: &mut [f32]) -> Result<(), KernelError> {
    let isa = Supported::clamp(isa);
    let Some(first) = ws.first() else { return Ok(()) };
    let cols = first.cols;
    if let Some(w) = ws.iter().find(|w| w.cols != cols) {
        return Err(KernelError::Shape(format!("fused matrices differ in columns: {} vs {}", w.cols, cols)));
    }
    let total_rows: usize = ws.iter().map(|w| w.rows).sum();
    if x.len() != t * cols || y.len() != t * total_rows {
        return Err(KernelError::Shape(format!("x has {} values for ({t}, {cols}) and y {} for ({t}, {total_rows})", x.len(), y.len())));
    }
    if t == 0 {
        return Ok(());
    }
    with_dense_input(ws, x, |input| {
        if ws.iter().all(|w| via_gemm(w.ty, t)) {
            gemm_tiles(ws, input, t, total_rows, y);
        } else {
            quantize_and_run(ws, isa, input, t, cols, total_rows, y);
        }
    });
    Ok(())
}

/// The activations in every format the matrices need, then [`run`].
fn quantize_and_run(ws: &[&Matrix], isa: Supported, input: DenseInput<'_>, t: usize, cols: usize, total_rows: usize, y: &mut [f32]) {
    let x = input.x;
    SCRATCH.with(|s| {
        SCRATCH_I16.with(|s16| {
            let (mut scratch, mut scratch16) = (s.borrow_mut(), s16.borrow_mut());
            let blocks = cols / 32;
            for format in ActivationFormat::ALL {
                if !ws.iter().any(|w| w.ty.activation_format() == Some(format)) {
                    continue;
                }
                // Rows are whole blocks of their type, so of its activation format (Matrix::new).
                if format.is_q8() {
                    let buf = &mut scratch[format.index()];
                    buf.clear();
                    buf.resize(t * blocks, BlockQ8::default());
                    for (xr, qr) in x.chunks_exact(cols).zip(buf.chunks_exact_mut(blocks)) {
                        quant::quantize_row_q8_on(isa, format, xr, qr);
                    }
                } else {
                    let (q, scales) = &mut scratch16[(format == ActivationFormat::I16Nf4) as usize];
                    q.clear();
                    q.resize(t * cols, 0);
                    scales.clear();
                    for (xr, qr) in x.chunks_exact(cols).zip(q.chunks_exact_mut(cols)) {
                        scales.push(quant::quantize_row_i16_on(isa, format, xr, qr));
                    }
                }
            }
            let xq: [&[BlockQ8]; 3] = [&scratch[0], &scratch[1], &scratch[2]];
            let xi = [0, 1].map(|i| I16Acts { q: &scratch16[i].0, s: &scratch16[i].1 });
            run(ws, isa, input, xq, xi, t, cols, total_rows, y);
        })
    });
}

/// Output pointer shared by tasks that write disjoint elements.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint (row, token) elements; `run` returns only after all tasks finish.
unsafe impl Send for Out {}
// SAFETY: as for `Send`: no two tasks touch the same element.
unsafe impl Sync for Out {}

/// Row `r` of `w` as f32 for a gemm tile: f16 and bf16 rows through `half`'s slice conversion
/// (F16C where the CPU has it; exact either way, as every f16 and bf16 value is an f32), the
/// other types through the reference dequantizer. Per value, the reference's f16 conversion is a
/// call and a feature check: it took 15% of a 1B f16 prompt's time.
fn expand_row(w: &Matrix, r: usize, dst: &mut [f32]) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    const CHUNK: usize = 256;
    if !matches!(w.ty, WeightType::F16 | WeightType::BF16) || w.layout != Layout::Rows {
        return w.dequantize_row(r, dst);
    }
    let row = &w.data[r * w.row_bytes..(r + 1) * w.row_bytes];
    let mut bits = [0u16; CHUNK];
    for (out, bytes) in dst.chunks_mut(CHUNK).zip(row.chunks(2 * CHUNK)) {
        let bits = &mut bits[..out.len()];
        for (b, pair) in bits.iter_mut().zip(bytes.chunks_exact(2)) {
            *b = u16::from_le_bytes([pair[0], pair[1]]);
        }
        if w.ty == WeightType::F16 {
            bits.reinterpret_cast::<half::f16>().convert_to_f32_slice(out);
        } else {
            bits.reinterpret_cast::<half::bf16>().convert_to_f32_slice(out);
        }
    }
}

/// `y = x · [W0; W1; ...]ᵀ` through f32 tiles of up to `GEMM_TILE_ROWS` rows and gemm, the
/// tiles spread over the pool. Shapes were checked by the caller.
fn gemm_tiles(ws: &[&Matrix], input: DenseInput<'_>, t: usize, total_rows: usize, y: &mut [f32]) {
    let threads = pool::global().threads();
    let tile = total_rows.div_ceil(2 * threads).clamp(GEMM_TILE_ROWS.0, GEMM_TILE_ROWS.1);
    // (matrix, first row, rows, output column) of every tile.
    let mut tiles = Vec::new();
    let mut base = 0;
    for w in ws {
        for r0 in (0..w.rows).step_by(tile) {
            tiles.push((*w, r0, tile.min(w.rows - r0), base + r0));
        }
        base += w.rows;
    }
    let out = Out(y.as_mut_ptr());
    let tiles = &tiles;
    let task = move |task: usize| {
        let out = out;
        let (w, r0, n, col) = tiles[task];
        let cols = w.cols;
        let x = input.for_type(w.ty);
        TILE.with(|buf| {
            let mut buf = buf.borrow_mut();
            // f32 rows are used in place when aligned for f32 (the allocator's usual 16 bytes).
            let direct = w.ty == WeightType::F32 && (w.data.as_ptr() as usize).is_multiple_of(std::mem::align_of::<f32>());
            let rhs: *const f32 = if direct {
                // SAFETY: aligned (checked), and rows r0..r0+n lie inside data (Matrix::new).
                unsafe { (w.data.as_ptr() as *const f32).add(r0 * cols) }
            } else {
                buf.resize(n * cols, 0.0);
                for (i, dst) in buf.chunks_exact_mut(cols).enumerate() {
                    expand_row(w, r0 + i, dst);
                }
                buf.as_ptr()
            };
            // SAFETY: dst is y's columns col..col+n of all t rows (row stride `total_rows`), in
            // bounds (y.len() == t * total_rows, checked by the caller) and written by this task only; lhs is
            // x (t, cols) row-major; rhs is the tile read as (cols, n) with column stride cols.
            unsafe {
                gemm::gemm(
                    t,
                    n,
                    cols,
                    out.0.add(col),
                    1,
                    total_rows as isize,
                    false,
                    x.as_ptr(),
                    1,
                    cols as isize,
                    rhs,
                    cols as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            };
        });
    };
    pool::global().run(tiles.len(), &task);
}

#[allow(clippy::too_many_arguments)]
fn run(
    ws: &[&Matrix],
    isa: Supported,
    input: DenseInput<'_>,
    xq: [&[BlockQ8]; 3],
    xi: [I16Acts<'_>; 2],
    t: usize,
    cols: usize,
    total_rows: usize,
    y: &mut [f32],
) {
    // Tasks of whole rows sized to ~64 KB of weight traffic x tokens, and at least 4 per thread
    // so a descheduled thread holds back little.
    let threads = pool::global().threads();
    let avg_row_bytes = ws.iter().map(|w| w.row_bytes * w.rows).sum::<usize>() / total_rows;
    let mut rows_per_task = (64 * 1024 / (avg_row_bytes * t).max(1)).max(1);
    if total_rows.div_ceil(rows_per_task) < 4 * threads {
        rows_per_task = total_rows.div_ceil(4 * threads).max(1);
    }
    // Whole groups of 8 per task, so interleaved matrices split on group boundaries.
    let rows_per_task = rows_per_task.next_multiple_of(quant::interleave::GROUP);
    let n_tasks = total_rows.div_ceil(rows_per_task);
    let out = Out(y.as_mut_ptr());
    let blocks = cols / 32;
    let task = move |task: usize| {
        let out = out;
        let start = task * rows_per_task;
        let end = (start + rows_per_task).min(total_rows);
        let mut r = start;
        // Walk the fused matrices to find where this task's rows live.
        let mut base = 0;
        for w in ws {
            let (lo, hi) = (r.max(base), end.min(base + w.rows));
            let mut global = lo;
            // The activations in this matrix's format (empty for types that take f32 or int16).
            let format = w.ty.activation_format();
            let xq = format.filter(|f| f.is_q8()).map_or(&[][..], |f| xq[f.index()]);
            let xi = xi[(format == Some(ActivationFormat::I16Nf4)) as usize];
            while global < hi {
                let local = global - base;
                if w.layout == Layout::Interleaved8 && isa.isa() >= Isa::Avx2 && local % 8 == 0 && global + 8 <= hi {
                    let group = w.group(local / 8);
                    let put8 = |tok: usize, v: &[f32; 8]| {
                        // SAFETY: as `put` below, for the 8 rows global..global+8 of this task.
                        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), out.0.add(tok * total_rows + global), 8) };
                    };
                    let act = |tok: usize| &xq[tok * blocks..(tok + 1) * blocks];
                    let mut tok = 0;
                    if quant::has_group_x8(isa, w.ty) {
                        while tok + 8 <= t {
                            let v = quant::dot_q8_group_x8(isa, w.ty, group, std::array::from_fn(|n| act(tok + n)));
                            (0..8).for_each(|n| put8(tok + n, &v[n]));
                            tok += 8;
                        }
                    }
                    while tok + 4 <= t {
                        let v = quant::dot_q8_group_x4(isa, w.ty, group, [act(tok), act(tok + 1), act(tok + 2), act(tok + 3)]);
                        (0..4).for_each(|n| put8(tok + n, &v[n]));
                        tok += 4;
                    }
                    for tok in tok..t {
                        put8(tok, &quant::dot_q8_group(isa, w.ty, group, act(tok)));
                    }
                    global += 8;
                    continue;
                }
                let row = w.row(local);
                let row = &row[..];
                let put = |tok: usize, v: f32| {
                    // SAFETY: (tok, global) is in bounds (y.len() == t * total_rows, checked) and
                    // written by this task only (tasks own disjoint row ranges).
                    unsafe { *out.0.add(tok * total_rows + global) = v };
                };
                if format.is_some_and(|f| !f.is_q8()) {
                    let act = |tok: usize| &xi.q[tok * cols..(tok + 1) * cols];
                    let mut tok = 0;
                    while tok + 4 <= t {
                        let v = quant::dot_i16_x4(isa, w.ty, row, [act(tok), act(tok + 1), act(tok + 2), act(tok + 3)], [0, 1, 2, 3].map(|n| xi.s[tok + n]));
                        (0..4).for_each(|n| put(tok + n, v[n]));
                        tok += 4;
                    }
                    for tok in tok..t {
                        put(tok, quant::dot_i16(isa, w.ty, row, act(tok), xi.s[tok]));
                    }
                } else if format.is_some() {
                    let act = |tok: usize| &xq[tok * blocks..(tok + 1) * blocks];
                    let mut tok = 0;
                    while tok + 4 <= t {
                        let v = quant::dot_q8_x4(isa, w.ty, row, [act(tok), act(tok + 1), act(tok + 2), act(tok + 3)]);
                        (0..4).for_each(|n| put(tok + n, v[n]));
                        tok += 4;
                    }
                    for tok in tok..t {
                        put(tok, quant::dot_q8(isa, w.ty, row, act(tok)));
                    }
                } else {
                    for tok in 0..t {
                        put(tok, quant::dot_dense(isa, w.ty, row, &input.for_type(w.ty)[tok * cols..(tok + 1) * cols]));
                    }
                }
                global += 1;
            }
            r = r.max(hi);
            base += w.rows;
        }
    };
    pool::global().run(n_tasks, &task);
}
