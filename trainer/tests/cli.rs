//! The trainer binary as scripts drive it: `--json-lines` progress on standard output, `-q`
//! silence on standard error.

use std::process::{Command, Output};

fn trainer(args: &[&str]) -> Output {
    let out = tempfile::tempdir().unwrap();
    let path = out.path().to_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([
            "train",
            "-m",
            "s5-ann",
            "--train-limit",
            "256",
            "--epochs",
            "2",
        ])
        .args(["--out-dir", path, "--checkpoint-dir", path])
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

#[test]
fn json_lines_are_the_only_standard_output_and_tell_the_whole_run() {
    let output = trainer(&["--json-lines"]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // 256 images in batches of 64: 4 batches per epoch, reported after the first and the last.
    assert_eq!(
        kinds,
        [
            "start", "batch", "batch", "epoch", "batch", "batch", "epoch", "test"
        ],
        "{stdout}"
    );
    for e in &events {
        assert_eq!(e["model"], "s5-ann");
    }
    let last_epoch = &events[6];
    assert_eq!(last_epoch["epoch"], 2);
    assert_eq!(last_epoch["eta_s"], 0.0);
    assert!(
        last_epoch["val_accuracy"].as_f64().is_some(),
        "{last_epoch}"
    );
    let test = events[7]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&test));
    // Human messages still go to standard error.
    assert!(String::from_utf8_lossy(&output.stderr).contains("training s5-ann"));
}

#[test]
fn without_a_terminal_the_bar_becomes_log_lines() {
    // Standard error is a pipe here, as in `nohup trainer ... > log 2>&1`.
    let output = trainer(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for epoch in ["epoch 1/2", "epoch 2/2"] {
        assert!(
            stderr.contains(&format!("s5-ann {epoch}: batch 4/4, loss ")),
            "{stderr}"
        );
    }
}

#[test]
fn quiet_prints_no_information_messages() {
    let output = trainer(&["-q"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains("epoch"), "{stderr}");
}

fn help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args([subcommand, "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn each_subcommand_shows_only_its_options() {
    let export = help("export");
    assert!(export.contains("--calibration-images"), "{export}");
    for training_only in [
        "--epochs",
        "--optimizer",
        "--resume",
        "--checkpoint-dir",
        "--checkpoint-every",
    ] {
        assert!(
            !export.contains(training_only),
            "{training_only} in\n{export}"
        );
    }
    let train = help("train");
    assert!(train.contains("--epochs") && !train.contains("--calibration-images"));
    let list = help("list");
    assert!(
        !list.contains("--out-dir") && !list.contains("--seed"),
        "{list}"
    );
    let report = help("report");
    assert!(report.contains("--update-readme") && !report.contains("--model"));
    // `-m` lists the valid ids.
    for text in [&export, &train, &list] {
        assert!(
            text.contains("s5-cnn") && text.contains("s1-resnet34"),
            "{text}"
        );
    }
}

#[test]
fn an_unknown_model_id_is_rejected_with_the_valid_ones() {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "-m", "s5-cnnn"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("s5-cnnn") && stderr.contains("s5-cnn,"),
        "{stderr}"
    );
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // `trainer list | head -0`: the reader is gone before the first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn nonsense_counts_are_rejected_before_any_work() {
    for args in [
        ["export", "--calibration-images", "9223372036854775808"],
        ["export", "--calibration-images", "0"],
        ["train", "--epochs", "0"],
        ["train", "--train-limit", "0"],
        ["train", "--checkpoint-every", "-1"],
        ["train", "--checkpoint-every", "NaN"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(args[2]), "{args:?}: {stderr}");
    }
}

#[test]
fn an_output_folder_that_cannot_be_written_fails_before_training() {
    // A file where the folder should be: creating the folder fails at once.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"").unwrap();
    let start = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["train", "-m", "s5-ann", "--out-dir", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("not-a-folder"), "{stderr}");
    assert!(!stderr.contains("training s5-ann"), "{stderr}");
    assert!(start.elapsed().as_secs() < 30);
}

#[test]
fn the_trainer_runs_with_page_purging_off_unless_the_caller_says_otherwise() {
    // mimalloc prints its options at start with MIMALLOC_VERBOSE: the first process has its
    // default, the re-executed one the trainer's setting (see `PURGE_DELAY` in main.rs).
    let options = |purge: Option<&str>| -> String {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_trainer"));
        cmd.arg("list").env("MIMALLOC_VERBOSE", "1");
        match purge {
            Some(v) => cmd.env("MIMALLOC_PURGE_DELAY", v),
            None => cmd.env_remove("MIMALLOC_PURGE_DELAY"),
        };
        let output = cmd.output().expect("trainer runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let purge_delays = |err: &str| -> Vec<String> {
        err.lines()
            .filter(|l| l.contains("option 'purge_delay'"))
            .map(|l| l.trim().to_string())
            .collect()
    };
    let default = purge_delays(&options(None));
    assert_eq!(
        default.last().map(String::as_str),
        Some("option 'purge_delay': -1"),
        "{default:?}"
    );
    let chosen = purge_delays(&options(Some("250")));
    assert_eq!(
        chosen,
        ["option 'purge_delay': 250"],
        "the caller's value, and no restart"
    );
}

/// `trainer train` of s5-cnn on 6,400 images (100 batches) into `dir`, with `extra` options.
fn s5_cnn_run(dir: &std::path::Path, extra: &[&str]) -> Command {
    let path = dir.to_str().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_trainer"));
    command
        .args([
            "train",
            "-m",
            "s5-cnn",
            "--train-limit",
            "6400",
            "--epochs",
            "1",
        ])
        .args(["--out-dir", path, "--checkpoint-dir", path, "-q"])
        .args(extra)
        .env("RAYON_NUM_THREADS", "1");
    command
}

#[test]
fn a_run_killed_mid_epoch_resumes_from_its_last_write_to_the_same_weights() {
    let straight = tempfile::tempdir().unwrap();
    let status = s5_cnn_run(straight.path(), &[]).status().unwrap();
    assert!(status.success());

    // Kill (SIGKILL: no handler runs) as soon as the first in-epoch checkpoint is on disk.
    let killed = tempfile::tempdir().unwrap();
    let checkpoint = killed.path().join("s5-cnn.ckpt");
    let mut child = s5_cnn_run(killed.path(), &["--checkpoint-every", "0"])
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first checkpoint"
        );
        assert!(
            started.elapsed().as_secs() < 120,
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let saved = trainer::checkpoint::Checkpoint::load(&checkpoint).unwrap();
    assert_eq!(saved.progress.epochs_done, 0, "killed within the epoch");
    assert!(
        (1..100).contains(&saved.progress.partial.batches),
        "{} batches done",
        saved.progress.partial.batches
    );
    assert!(!killed.path().join("s5-cnn.safetensors").exists());

    let status = s5_cnn_run(killed.path(), &["--resume"]).status().unwrap();
    assert!(status.success());
    let weights = |dir: &std::path::Path| std::fs::read(dir.join("s5-cnn.safetensors")).unwrap();
    assert!(
        weights(killed.path()) == weights(straight.path()),
        "the resumed run's weights differ from the straight run's"
    );
}
