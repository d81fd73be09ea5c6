//! Compiles the eBPF programs in `bpf/` with clang (Debian's `clang` and `libbpf-dev`) into
//! `$OUT_DIR`, where the crate includes them.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = std::env::var("FLOTILLA_BPF_CLANG").unwrap_or_else(|_| "clang".into());
    // With -target bpf, clang does not search the multiarch directory that holds <asm/types.h>.
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| format!("{}-linux-gnu", std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into())));
    const PROGRAMS: &[&str] = &["policy", "proxy", "service"];
    for program in PROGRAMS {
        let source = format!("bpf/{program}.c");
        println!("cargo:rerun-if-changed={source}");
        let object = out.join(format!("{program}.o"));
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-I/usr/include/{multiarch}"))
            .args(["-c", &source, "-o"])
            .arg(&object)
            .status()
            .unwrap_or_else(|e| panic!("running {clang} to compile {source}: {e}; install clang and libbpf-dev (scripts/deps.sh does)"));
        assert!(status.success(), "{clang} could not compile {source} ({status}); it needs clang and libbpf-dev (scripts/deps.sh installs both)");
    }
    println!("cargo:rerun-if-env-changed=FLOTILLA_BPF_CLANG");
}
