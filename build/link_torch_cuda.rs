//! Build script shared by both crates: when the libtorch that torch-sys found has CUDA
//! (PyPI's torch does), link libtorch_cuda explicitly with `--no-as-needed`. No symbol of it is
//! referenced directly, so the linker would otherwise drop it and `tch::Cuda::is_available()`
//! would be false even on a GPU machine. The flag pair is self-contained, so its position on the
//! link line does not matter. With a CPU-only libtorch nothing is added.
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        if Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
}
