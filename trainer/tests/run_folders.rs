//! The main job writes into the run folder, never into `models/`, so the tests that check the
//! committed models and the README against each other still pass after it; `trainer publish`
//! copies a finished run into `models/` as one verified set, regenerates what is derived from
//! it, and keeps a firmware record only for the `.fmq` it was measured on.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model_report::markdown::RESULTS;
use model_report::{ModelReport, model_set, summary_table};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The trainer run in `dir`, so that its default folders are `dir`'s.
fn trainer(dir: &Path, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "trainer {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Every file of `dir` with its bytes, by name.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_main_job_leaves_models_alone_and_publish_copies_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (work, models, runs) = (
        dir.path(),
        dir.path().join("models"),
        dir.path().join("runs"),
    );
    std::fs::create_dir(&models).unwrap();
    for ext in ["fmq", "json", "safetensors"] {
        let name = format!("s5-ann.{ext}");
        std::fs::copy(root().join("models").join(&name), models.join(&name)).unwrap();
    }
    std::fs::copy(root().join("README.md"), work.join("README.md")).unwrap();
    let committed = snapshot(&models);
    let committed_report = ModelReport::read(&models.join("s5-ann.json")).unwrap();
    assert!(committed_report.firmware.is_some());

    // The main job (no subcommand) with its default folders, on two batches.
    let args = [
        "-m",
        "s5-ann",
        "--epochs",
        "1",
        "--train-limit",
        "128",
        "--calibration-images",
        "50",
        "-q",
    ];
    trainer(work, &args);
    assert!(
        snapshot(&models) == committed,
        "the main job changed models/"
    );
    model_set::verify(&runs, "s5-ann").unwrap();
    for ext in ["fmq", "json", "safetensors"] {
        assert!(
            runs.join(format!("s5-ann.{ext}")).exists(),
            "runs/s5-ann.{ext}"
        );
    }

    // Publishing it: the run's set in models/, the README and pages regenerated, and the
    // commands that redo what publish cannot.
    let output = trainer(work, &["publish", "-m", "s5-ann"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for ext in ["fmq", "json", "safetensors"] {
        let name = format!("s5-ann.{ext}");
        assert!(
            std::fs::read(runs.join(&name)).unwrap() == std::fs::read(models.join(&name)).unwrap(),
            "models/{name} is not the run's"
        );
    }
    model_set::verify(&models, "s5-ann").unwrap();
    let names: Vec<String> = snapshot(&models).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "s5-ann.fmq",
            "s5-ann.json",
            "s5-ann.safetensors",
            "summary.md"
        ]
    );
    assert!(
        stdout.contains(
            "cargo run --release -p firmware-sim -- device --models-dir models -m s5-ann \
             --update-json --update-readme README.md"
        ) && stdout.contains("GOLDEN_RECORD=1 PARITY_ONLY=s5-ann"),
        "{stdout}"
    );
    let readme = std::fs::read_to_string(work.join("README.md")).unwrap();
    let table = summary_table(&ModelReport::read_dir(&models).unwrap());
    assert_eq!(RESULTS.replace(&readme, &table).unwrap(), readme);
    assert!(readme != std::fs::read_to_string(root().join("README.md")).unwrap());
    assert!(work.join("reports/s5-ann.md").exists());
    assert!(work.join("reports/index.md").exists());

    // A firmware record measured on this very .fmq survives publishing the same run again.
    let firmware = committed_report.firmware.unwrap();
    ModelReport::update_firmware(&models.join("s5-ann.json"), firmware.clone()).unwrap();
    let output = trainer(work, &["publish", "--all"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("firmware-sim"), "{stdout}");
    let republished = ModelReport::read(&models.join("s5-ann.json")).unwrap();
    assert_eq!(republished.firmware, Some(firmware));
    model_set::verify(&models, "s5-ann").unwrap();
}

#[test]
fn publish_refuses_an_unfinished_run_and_keeps_the_published_set() {
    let dir = tempfile::tempdir().unwrap();
    let (work, models) = (dir.path(), dir.path().join("models"));
    std::fs::create_dir(&models).unwrap();
    for ext in ["fmq", "json", "safetensors"] {
        let name = format!("s5-ann.{ext}");
        std::fs::copy(root().join("models").join(&name), models.join(&name)).unwrap();
    }
    let committed = snapshot(&models);
    // Trained, not exported.
    trainer(
        work,
        &[
            "train",
            "-m",
            "s5-ann",
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "-q",
        ],
    );
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .current_dir(work)
        .args(["publish", "-m", "s5-ann"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("runs/s5-ann.json")
            && stderr.contains("not exported yet (trainer export -m s5-ann)"),
        "{stderr}"
    );
    assert!(
        snapshot(&models) == committed,
        "a refused publish changed models/"
    );
}
