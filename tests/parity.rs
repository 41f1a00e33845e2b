//! Every committed int8 model on its whole test split (the official 10,000 images, or its own
//! part of the pooled data for S4), bit for bit.
//!
//! For each committed `models/<id>.fmq` (int8 files under `COMMITTED_MODEL_LIMIT`):
//! - firmware-sim's gate: int8 accuracy within 0.5 points of the float accuracy recorded in
//!   `models/<id>.json`, and float/int8 top-1 agreement at least 99% (for the studies' models);
//! - the int8 accuracy, model size and scratch recorded there, reproduced;
//! - every logit of every test image equal to `tests/golden/<id>.logits.gz` (gzip of `i8`,
//!   row-major `[images, classes]`), which was recorded from the same file: any change in
//!   infer-core that moves one logit fails here. A model whose logits are meant to change (a
//!   retrained model) is re-recorded with
//!   `GOLDEN_RECORD=1 cargo test --release -p parity-tests --test parity`
//!   (`PARITY_ONLY=<id>,<id>` checks or records only those models);
//! - where the float weights are committed too (the deployable models), the float network
//!   reproduces the recorded float accuracy and the agreement is measured, not read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::Device;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use infer_core::Model;
use model_report::{ModelReport, agreement, evaluate_int8_any};
use trainer::arch;
use trainer::net::Net;
use trainer::pipeline::splits;
use trainer::train;

/// The ids `PARITY_ONLY` (comma-separated) selects, or every id when it is not set.
fn selected(id: &str) -> bool {
    std::env::var("PARITY_ONLY").map_or(true, |only| only.split(',').any(|o| o.trim() == id))
}

/// Op capacity for loading any committed model.
const MAX_OPS: usize = 64;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn golden_path(id: &str) -> PathBuf {
    root().join(format!("tests/golden/{id}.logits.gz"))
}

fn read_golden(path: &Path) -> Option<Vec<u8>> {
    let gz = std::fs::read(path).ok()?;
    let mut out = Vec::new();
    GzDecoder::new(gz.as_slice()).read_to_end(&mut out).ok()?;
    Some(out)
}

fn check(report: &ModelReport, dataset: &fashion_mnist::Dataset) {
    let id = report.id.as_str();
    let dir = root().join("models");
    let int8_report = report.int8.as_ref().expect("model was exported");
    let test = splits(dataset, &report.float.options).unwrap().test;

    let bytes = std::fs::read(dir.join(format!("{id}.fmq"))).unwrap();
    let model = Model::<MAX_OPS>::from_bytes(&bytes).unwrap();
    let mut scratch = vec![0i8; model.scratch_len()];
    let eval = evaluate_int8_any(&model, &test, &mut scratch, test.len()).unwrap();
    let int8 = &eval.metrics;

    let float_accuracy = report.float.test.accuracy;
    let agree = if dir.join(format!("{id}.safetensors")).exists() {
        let net = Net::load(
            &arch::by_id(id).unwrap(),
            &dir.join(format!("{id}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let float_pred = train::predict(&net, &test, 500).unwrap();
        let float = model_report::Metrics::new(&test.labels, &float_pred, int8.confusion.len());
        assert_eq!(float.accuracy, float_accuracy, "{id}: float drift");
        agreement(&float_pred, &eval.predictions)
    } else {
        int8_report.agreement
    };
    println!(
        "{id}: float {:.2}% int8 {:.2}% agreement {:.2}% on {} images",
        100.0 * float_accuracy,
        100.0 * int8.accuracy,
        100.0 * agree,
        test.len()
    );
    assert!(
        int8.accuracy >= float_accuracy - 0.005,
        "{id}: float {float_accuracy} vs int8 {}",
        int8.accuracy
    );
    // The studies' models agree on at least 99% of the images. The 5,066-parameter demo model
    // falls short (its int8 noise, not its logits' rounding, flips its near-ties; firmware-sim
    // reports it as failing the agreement gate): here it is held to the 0.5-point gate only.
    let demo = arch::by_id(id).is_ok_and(|a| a.study == trainer::zoo::Study::Demo);
    assert!(demo || agree >= 0.99, "{id}: agreement {agree}");
    assert_eq!(int8.accuracy, int8_report.test.accuracy, "{id}: int8 drift");
    assert_eq!(model.scratch_len(), int8_report.scratch_bytes);
    assert_eq!(bytes.len() as u64, int8_report.model_bytes);
    for (i, golden) in int8_report.golden_logits.iter().enumerate() {
        assert_eq!(&eval.logits[i], golden, "{id}: golden logits of image {i}");
    }

    let got: Vec<u8> = eval
        .logits
        .iter()
        .flatten()
        .map(|&l| l.to_ne_bytes()[0])
        .collect();
    let path = golden_path(id);
    if std::env::var_os("GOLDEN_RECORD").is_some() {
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        gz.write_all(&got).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        println!("{id}: recorded {}", path.display());
        return;
    }
    let expected = read_golden(&path).unwrap_or_else(|| {
        panic!(
            "{}: missing; record it with GOLDEN_RECORD=1 cargo test --release -p parity-tests --test parity",
            path.display()
        )
    });
    assert_eq!(got.len(), expected.len(), "{id}: number of logits");
    let classes = int8.confusion.len().max(1);
    let differing: Vec<usize> = got
        .chunks(classes)
        .zip(expected.chunks(classes))
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .collect();
    assert!(
        differing.is_empty(),
        "{id}: {} of {} images give other logits than recorded, first: {:?}",
        differing.len(),
        test.len(),
        &differing[..differing.len().min(10)]
    );
}

#[test]
fn every_committed_model_passes_the_gate_and_gives_the_recorded_logits() {
    let dataset = fashion_mnist::load(None).expect("Fashion-MNIST (see README)");
    let reports: Vec<ModelReport> = ModelReport::read_dir(&root().join("models"))
        .unwrap()
        .into_iter()
        .filter(|r| root().join("models").join(format!("{}.fmq", r.id)).exists())
        // Int8 files of COMMITTED_MODEL_LIMIT or more are not committed (s1-mlp): one left in
        // models/ by a local study run has no golden logits either.
        .filter(|r| {
            r.int8
                .as_ref()
                .is_some_and(|q| q.model_bytes < model_report::COMMITTED_MODEL_LIMIT)
        })
        .filter(|r| selected(&r.id))
        .collect();
    // The models are independent: one worker per core takes the next one (a failing check
    // panics its worker, and the scope re-raises the panic).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(report) =
                    reports.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
                {
                    check(report, &dataset);
                }
            });
        }
    });
    let checked: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    println!("checked {} models: {}", checked.len(), checked.join(", "));
    for id in ["s5-ann", "s5-cnn", "s3-lenet-base"] {
        assert!(!selected(id) || checked.contains(&id), "{id} is committed");
    }
}

#[test]
fn every_golden_file_belongs_to_a_committed_model() {
    for entry in std::fs::read_dir(root().join("tests/golden")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let id = name.trim_end_matches(".logits.gz");
        assert!(
            root().join("models").join(format!("{id}.fmq")).exists(),
            "{name}: no models/{id}.fmq"
        );
    }
}
