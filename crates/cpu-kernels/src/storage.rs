//! Where a [`crate::Matrix`] keeps its bytes: anonymous memory that the kernel is asked to back
//! with 2 MiB pages (`madvise(MADV_HUGEPAGE)`, through memmap2), not a `Vec` on 4 KiB pages.
//!
//! Why: batch-1 decode streams every weight once per token, far more than the caches hold. With
//! 4 KiB pages that is a TLB miss and a page walk every 4 KiB, and the hardware prefetchers stop
//! at each page boundary; 2 MiB pages remove both. Systems whose transparent huge pages are
//! `madvise` (the common default) give them only to memory that asks. Where the advice is refused
//! or the mapping fails, the bytes are simply on small pages: speed changes, results do not.

use std::ops::{Deref, DerefMut};

/// Zero-initialised bytes, on huge pages where the system grants them.
pub(crate) enum Storage {
    /// An anonymous mapping advised `MADV_HUGEPAGE`.
    Mapped(memmap2::MmapMut),
    /// Ordinary heap memory (empty buffers, or a mapping refused).
    Heap(Vec<u8>),
}

impl Storage {
    /// Huge pages are worth asking for only for buffers of at least one of them.
    const HUGE: usize = 2 << 20;

    /// `len` zero bytes.
    pub(crate) fn zeroed(len: usize) -> Storage {
        if len >= Self::HUGE {
            if let Ok(map) = memmap2::MmapMut::map_anon(len) {
                #[cfg(target_os = "linux")]
                let _ = map.advise(memmap2::Advice::HugePage); // advice only: refused means small pages
                return Storage::Mapped(map);
            }
        }
        Storage::Heap(vec![0; len])
    }

    /// A copy of `bytes`.
    pub(crate) fn copy_of(bytes: &[u8]) -> Storage {
        let mut s = Storage::zeroed(bytes.len());
        s.copy_from_slice(bytes);
        s
    }
}

impl Deref for Storage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Heap(v) => v,
        }
    }
}

impl DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut [u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Heap(v) => v,
        }
    }
}

impl Clone for Storage {
    fn clone(&self) -> Storage {
        Storage::copy_of(self)
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Storage::Mapped(_) => "mapped",
            Storage::Heap(_) => "heap",
        };
        write!(f, "Storage({kind}, {} bytes)", self.len())
    }
}
