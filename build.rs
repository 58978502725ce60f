//! Links the `vpd` binary (and every test binary of this package) against
//! libtorch so that it runs without `LD_LIBRARY_PATH` and can use CUDA.
//!
//! torch-sys declares `links = "tch"` and passes its libtorch `lib/` folder
//! to direct dependents as `DEP_TCH_LIBTORCH_LIB`. From it we add:
//! - an rpath to that folder (the pip wheel's own rpath then resolves the
//!   CUDA runtime libraries that `libtorch_cpu.so` needs);
//! - `-Wl,--no-as-needed -ltorch_cuda` when the library exists: nothing in
//!   the Rust code refers to a symbol of `libtorch_cuda.so`, so with the
//!   default `--as-needed` the linker drops it and `Cuda::is_available()`
//!   answers false even on a GPU machine (tch-rs issues 907 and 980).
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        println!("cargo:warning=torch-sys did not report its libtorch folder; no rpath added");
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-env=VPD_LIBTORCH_LIB={}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
