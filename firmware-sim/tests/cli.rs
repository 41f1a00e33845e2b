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

#[test]
fn a_model_file_beside_another_models_report_is_refused() {
    // s5-cnn's int8 file under s5-ann's name, beside s5-ann's report (what a copy or an
    // interrupted export can leave): the run fails and names both files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(models().join("s5-cnn.fmq"), dir.path().join("s5-ann.fmq")).unwrap();
    std::fs::copy(models().join("s5-ann.json"), dir.path().join("s5-ann.json")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("s5-ann.fmq")
            && stderr.contains("s5-ann.json")
            && stderr.contains("do not belong together"),
        "{stderr}"
    );
}

#[test]
fn a_report_with_another_files_crc_is_refused() {
    let fmq = models().join("s5-ann.fmq");
    let json = models().join("s5-ann.json");
    let bytes = std::fs::read(&fmq).unwrap();
    let mut report = model_report::ModelReport::read(&json).unwrap();
    let int8 = report.int8.as_mut().unwrap();
    let crc = infer_core::format::Header::from_bytes(&bytes)
        .unwrap()
        .crc32;
    int8.fmq_crc32 = Some(crc);
    firmware_sim::check_pair(&fmq, &bytes, "s5-ann", &json, &report).unwrap();
    report.int8.as_mut().unwrap().fmq_crc32 = Some(crc ^ 1);
    let e = firmware_sim::check_pair(&fmq, &bytes, "s5-ann", &json, &report)
        .unwrap_err()
        .to_string();
    assert!(e.contains("CRC") && e.contains("s5-ann.json"), "{e}");
}
