//! Build script shared by both crates.
//!
//! 1. When the libtorch that torch-sys found has CUDA (PyPI's torch does), link libtorch_cuda
//!    explicitly with `--no-as-needed`. No symbol of it is referenced directly, so the linker
//!    would otherwise drop it and `tch::Cuda::is_available()` would be false even on a GPU
//!    machine. The flag pair is self-contained, so its position on the link line does not
//!    matter. With a CPU-only libtorch nothing is added.
//! 2. For a crate with a `csrc/` folder (the `zoology` library): compile its C++ (the fused
//!    selective scan, a libtorch autograd Function) against the same libtorch headers, with the
//!    C++ ABI flag libtorch was built with, into one static library. The kernels are compiled
//!    once per instruction set (generic; on x86-64 also AVX2+FMA and AVX-512) and picked at run
//!    time, so the binary runs on any x86-64 CPU.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").ok();
    if let Some(dir) = &lib {
        if Path::new(dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch_cuda");
            println!("cargo:rustc-link-arg=-Wl,--as-needed");
        }
    }
    let csrc = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("csrc");
    if csrc.is_dir() {
        let lib = lib.expect("DEP_TCH_LIBTORCH_LIB is not set: torch-sys (links = \"tch\") must be a dependency");
        compile_csrc(&csrc, Path::new(&lib));
    }
}

/// `torch._C._GLIBCXX_USE_CXX11_ABI` as torch-sys decides it: `LIBTORCH_CXX11_ABI` if set; with
/// `LIBTORCH_USE_PYTORCH`, asked from the Python that has torch; otherwise 1 (torch-sys's default).
fn cxx11_abi() -> String {
    for v in ["LIBTORCH_CXX11_ABI", "LIBTORCH_USE_PYTORCH", "VIRTUAL_ENV"] {
        println!("cargo:rerun-if-env-changed={v}");
    }
    if let Ok(v) = std::env::var("LIBTORCH_CXX11_ABI") {
        return v;
    }
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
        let out = Command::new(python)
            .args(["-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"])
            .output()
            .unwrap_or_else(|e| panic!("running {python} to read torch's C++ ABI flag: {e}"));
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            s == "0" || s == "1",
            "{python} did not print torch._C._GLIBCXX_USE_CXX11_ABI (stdout {s:?}, stderr {:?})",
            String::from_utf8_lossy(&out.stderr)
        );
        return s;
    }
    "1".to_string()
}

fn compile_csrc(csrc: &Path, lib: &Path) {
    for entry in std::fs::read_dir(csrc).unwrap() {
        println!("cargo:rerun-if-changed={}", entry.unwrap().path().display());
    }
    // libtorch's headers sit beside its lib folder (PyPI: torch/lib and torch/include; a
    // libtorch download: libtorch/lib and libtorch/include)
    let include = lib.parent().expect("libtorch lib folder has a parent").join("include");
    let api = include.join("torch/csrc/api/include");
    assert!(
        include.join("ATen/ATen.h").exists(),
        "libtorch headers not found at {} (next to DEP_TCH_LIBTORCH_LIB={})",
        include.display(),
        lib.display()
    );
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64");
    let base = || {
        let mut b = cc::Build::new();
        b.cpp(true).pic(true).opt_level(3).flag("-std=c++17");
        b
    };
    let kernels = |name: &str, flags: &[&str]| {
        let mut b = base();
        // `omp simd` pragmas only (no OpenMP runtime); no FP traps, so that the branch-free exp
        // and the selects in the kernels vectorise
        b.flag("-fopenmp-simd").flag("-fno-trapping-math");
        for f in flags {
            b.flag(f);
        }
        b.file(csrc.join(format!("scan_kernels_{name}.cpp"))).compile_intermediates()
    };
    let mut objects = kernels("generic", &[]);
    if x86 {
        objects.extend(kernels("avx2", &["-mavx2", "-mfma"]));
        objects.extend(kernels(
            "avx512",
            &["-mavx2", "-mfma", "-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw", "-mprefer-vector-width=512"],
        ));
    }
    let mut glue = base();
    glue.warnings(false)
        .flag("-isystem")
        .flag(include.to_str().unwrap())
        .flag("-isystem")
        .flag(api.to_str().unwrap())
        .define("_GLIBCXX_USE_CXX11_ABI", cxx11_abi().as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        // at::parallel_for is inline; libtorch's CPU backend is OpenMP (torch-sys links gomp)
        .flag("-fopenmp")
        .file(csrc.join("fused.cpp"));
    if x86 {
        glue.define("ZS_HAVE_X86_KERNELS", None);
    }
    glue.objects(&objects).compile("zoology_fused");
}
