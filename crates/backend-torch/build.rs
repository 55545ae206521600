//! Gives executables that link libtorch (this crate's tests, torch-only, framework-parity, which
//! name this script as their `build`) an rpath to `$LIBTORCH/lib`, so they run without
//! LD_LIBRARY_PATH. LIBTORCH comes from .cargo/config.toml (`cargo xtask setup-torch`).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    if let Ok(libtorch) = std::env::var("LIBTORCH") {
        let lib = std::path::Path::new(&libtorch).join("lib");
        let lib = lib.canonicalize().unwrap_or(lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
}
