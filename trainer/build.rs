//! Records the build for the model reports' provenance (`trainer/src/provenance.rs`): the
//! compiler as `rustc -V` prints it, the target triple, and the versions of the crates that do
//! the arithmetic (candle-core, candle-nn, gemm) as the workspace's `Cargo.lock` pins them.

use std::path::Path;
use std::process::Command;

/// The crates whose versions are recorded, and the environment variable of each.
const CRATES: [(&str, &str); 3] = [
    ("candle-core", "TRAINER_CANDLE_CORE_VERSION"),
    ("candle-nn", "TRAINER_CANDLE_NN_VERSION"),
    ("gemm", "TRAINER_GEMM_VERSION"),
];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let lock_path = Path::new(&manifest).join("../Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock_path.display());
    println!("cargo::rerun-if-env-changed=RUSTC");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = Command::new(&rustc)
        .arg("-V")
        .output()
        .unwrap_or_else(|e| panic!("running `{rustc} -V`: {e}"));
    assert!(output.status.success(), "`{rustc} -V` failed");
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    println!("cargo::rustc-env=TRAINER_RUSTC={version}");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    println!("cargo::rustc-env=TRAINER_TARGET={target}");

    let lock = std::fs::read_to_string(&lock_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", lock_path.display()));
    for (name, var) in CRATES {
        let versions = locked_versions(&lock, name);
        assert!(
            !versions.is_empty(),
            "{}: no package `{name}`",
            lock_path.display()
        );
        println!("cargo::rustc-env={var}={}", versions.join(" "));
    }
}

/// The versions of package `name` in a `Cargo.lock` (one `[[package]]` table per package, with
/// `name = "..."` and `version = "..."` lines), in file order.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let quoted = |line: &str, key: &str| -> Option<String> {
        let value = line
            .strip_prefix(key)?
            .trim_start()
            .strip_prefix('=')?
            .trim();
        Some(value.strip_prefix('"')?.strip_suffix('"')?.to_string())
    };
    lock.split("[[package]]")
        .filter(|table| {
            table
                .lines()
                .any(|l| quoted(l, "name").as_deref() == Some(name))
        })
        .filter_map(|table| table.lines().find_map(|l| quoted(l, "version")))
        .collect()
}
