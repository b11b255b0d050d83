//! What every crate that links tch needs in its `build.rs` (see
//! `shared/spec/tch.md`): call [`link_libtorch`] from `fn main`.

use std::path::Path;

/// Puts libtorch's directory on the rpath of the calling crate's binaries,
/// tests and benches, so they run with no LD_LIBRARY_PATH (torch-sys sets
/// none), and with feature `cuda` keeps libtorch_cuda linked.
///
/// The calling crate must depend on `torch-sys` directly: only direct
/// dependents receive `DEP_TCH_LIBTORCH_LIB`.
pub fn link_libtorch() {
    // torch-sys has `links = "tch"`, so it reaches us as DEP_TCH_LIBTORCH_LIB.
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    // Feature `cuda`: rustc links with --as-needed, which drops
    // libtorch_cuda.so (nothing references it by symbol), and then tch sees
    // no GPU. Keeping it needs the full wheel's CUDA libraries (cuBLAS,
    // cuDNN, ...) at load time, so with the minimal CPU install (as under
    // `--all-features` in tests/run.sh) we warn instead of producing test
    // binaries that cannot start.
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        let cudnn = Path::new(&dir).join("../../nvidia/cudnn");
        println!("cargo:rerun-if-changed={}", cudnn.display());
        if cudnn.exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        } else {
            println!(
                "cargo:warning=feature cuda: no CUDA libraries next to {dir} (minimal libtorch install); building CPU-only"
            );
        }
    }
}
