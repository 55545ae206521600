//! The build script of executables that link libtorch through backend-torch (torch-only,
//! framework-parity): an rpath to `$LIBTORCH/lib` and the CUDA link switch, see `link.rs`.
include!("link.rs");

fn main() {
    link_libtorch();
}
