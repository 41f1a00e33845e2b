//! The README's reproducibility promise: on one machine, with one build and one seed, a run
//! gives the same bytes: the `.fmq`, the `.safetensors`, and the JSON but for its timings.

use std::path::Path;

use trainer::arch;
use trainer::pipeline::{Overrides, Settings, TrainResult, export_one, train_one};
use trainer::progress::Progress;

/// `s5-ann` for two batches on a subset, trained and exported into `dir`.
fn run(dataset: &fashion_mnist::Dataset, dir: &Path) {
    let arch = arch::by_id("s5-ann").unwrap();
    let settings = Settings {
        overrides: Overrides {
            epochs: Some(1),
            train_limit: Some(2 * arch.recipe.batch_size),
            ..Overrides::default()
        },
        seed: 7,
        out_dir: dir.join("runs"),
        checkpoint_dir: dir.join("checkpoints"),
        resume: false,
        checkpoint_every: None,
        progress: Progress::Quiet,
        calibration_images: 100,
        force: true,
    };
    let TrainResult::Done(trained) = train_one(&arch, dataset, &settings, None).unwrap() else {
        panic!("stopped");
    };
    export_one(*trained, &settings).unwrap();
}

/// The JSON report without its timings (`float.history[].seconds`).
fn without_timings(path: &Path) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let history = value["float"]["history"].as_array_mut().unwrap();
    assert!(!history.is_empty());
    for epoch in history {
        let seconds = epoch.as_object_mut().unwrap().remove("seconds");
        assert!(seconds.is_some(), "every epoch records its seconds");
    }
    value
}

#[test]
fn a_seeded_run_gives_the_same_bytes_twice() {
    let full = fashion_mnist::load(None).expect("Fashion-MNIST (see README)");
    let dataset = fashion_mnist::Dataset {
        train: full.train.head(2000),
        test: full.test.head(500),
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(&dataset, a.path());
    run(&dataset, b.path());
    for ext in ["fmq", "safetensors"] {
        let file = |dir: &Path| std::fs::read(dir.join(format!("runs/s5-ann.{ext}"))).unwrap();
        assert!(
            file(a.path()) == file(b.path()),
            "s5-ann.{ext} differs between two runs"
        );
    }
    let json = |dir: &Path| without_timings(&dir.join("runs/s5-ann.json"));
    assert_eq!(json(a.path()), json(b.path()));
}
