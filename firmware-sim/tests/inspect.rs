//! `firmware-sim inspect` on every committed model file (text and JSON), and on a corrupt one.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn inspect(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_committed_model_inspects() {
    let files = models();
    assert!(files.len() > 10, "{files:?}");
    for path in files {
        let text = inspect(&[path.as_os_str()]);
        assert!(text.status.success(), "{}: {:?}", path.display(), text);
        let text = String::from_utf8(text.stdout).unwrap();
        let json = inspect(&[path.as_os_str(), "--json".as_ref()]);
        assert!(json.status.success(), "{}: {:?}", path.display(), json);
        let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(json["totals"]["model_bytes"], bytes, "{}", path.display());
        let id = json["id"].as_str().unwrap();
        assert_eq!(Some(id), path.file_stem().and_then(|s| s.to_str()));
        assert!(text.starts_with(&format!("model   {id}\n")), "{text}");
    }
}

#[test]
fn a_corrupt_file_fails_with_its_name() {
    let dir = std::env::temp_dir().join(format!("firmware-sim-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.fmq");
    std::fs::write(&path, b"FMQ8 but nothing else").unwrap();
    let out = inspect(&[path.as_os_str()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("broken.fmq"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
