//! The firmware-sim binary as a user drives it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // `firmware-sim DIR | head -0` on one small committed model: the reader is gone before the
    // first line.
    let dir = tempfile::tempdir().unwrap();
    for ext in ["fmq", "json"] {
        std::fs::copy(
            models().join(format!("s5-ann.{ext}")),
            dir.path().join(format!("s5-ann.{ext}")),
        )
        .unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
