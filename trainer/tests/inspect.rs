//! `trainer inspect` prints `model-report`'s inspection, the same report as
//! `firmware-sim inspect`, for every committed model file; a corrupt file fails with its name.

use std::path::{Path, PathBuf};
use std::process::Command;

use model_report::inspect::Inspection;

fn models() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "fmq"))
        .collect();
    files.sort();
    files
}

fn trainer_inspect(path: &Path, json: bool) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
    cmd.arg("inspect").arg(path);
    if json {
        cmd.arg("--json");
    }
    cmd.output().unwrap()
}

#[test]
fn every_committed_model_inspects_as_the_shared_report() {
    let files = models();
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let expected = Inspection::of_file(&path).unwrap();
        let text = trainer_inspect(&path, false);
        assert!(text.status.success(), "{}: {:?}", path.display(), text);
        assert_eq!(
            String::from_utf8(text.stdout).unwrap(),
            expected.to_string()
        );
        let json = trainer_inspect(&path, true);
        assert!(json.status.success(), "{}: {:?}", path.display(), json);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        // Through text both ways, so that f32 scales compare as printed.
        let expected: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&expected).unwrap()).unwrap();
        assert_eq!(json, expected);
    }
}

#[test]
fn a_corrupt_file_fails_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.fmq");
    std::fs::write(&path, b"").unwrap();
    let out = trainer_inspect(&path, false);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("broken.fmq"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
