//! Release builds for Linux link gw-gateway with `hot-text.ld`, a linker script that places
//! the functions the gateway runs (found by `benches/load/hot-text.sh`) ahead of the rest of
//! its code: the kernel maps code 64 KiB around each page a process touches, so gathering
//! them keeps about 6 MB less of the binary resident (benches/README.md). GNU ld and LLD
//! read the script; `GW_HOT_TEXT=0` links with the linker's default layout instead (for a
//! linker without `INSERT` in its linker scripts, such as mold).

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=hot-text.ld");
    println!("cargo::rerun-if-env-changed=GW_HOT_TEXT");
    let enabled = env::var("GW_HOT_TEXT").as_deref() != Ok("0");
    let linux = env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    // `release` for the release and bench profiles and the profiles that inherit them.
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    if !(enabled && linux && release) {
        return;
    }
    let script = Path::new(&dir).join("hot-text.ld");
    if !script.is_file() {
        return;
    }
    // Through the compiler driver (`cc`), which is how rustc calls the linker on Linux;
    // `-Xlinker` passes the path as it is (`-Wl,` would split it at commas).
    for arg in ["-Xlinker", "-T", "-Xlinker"] {
        println!("cargo::rustc-link-arg-bins={arg}");
    }
    println!("cargo::rustc-link-arg-bins={}", script.display());
}
