//! Test-only crate: see `tests/`. It is the one place both frameworks are linked together.
