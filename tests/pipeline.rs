//! Smoke run of the whole pipeline for every model of the zoo on a small real subset: a few
//! batches with the model's own optimizer (its training loss falls), float evaluation, int8
//! export, and the export run through firmware-sim exactly as the binary does. The ResNets
//! (hundreds of millions of MACs per image) run on a smaller subset.

use candle_core::Device;
use fashion_mnist as data;
use model_report::{FloatReport, Metrics, ModelReport, TrainOptions};
use trainer::arch;
use trainer::export;
use trainer::net::Net;
use trainer::study::is_optimizer_variant;
use trainer::train::{self, Control, Outcome};

#[test]
fn every_model_trains_evaluates_and_exports_on_a_subset() {
    let full = data::load(None).expect("Fashion-MNIST (see README)");
    let small = data::Dataset {
        train: full.train.head(320),
        test: full.test.head(300),
    };
    let tiny = data::Dataset {
        train: full.train.head(96),
        test: full.test.head(10),
    };
    let out = tempfile::tempdir().unwrap();
    let quiet = Control {
        progress: trainer::progress::Progress::Quiet,
        ..Control::default()
    };
    let mut scratch = vec![0i8; firmware_sim::SCRATCH_CAPACITY];
    let mut trained = 0;
    for arch in arch::all() {
        // The optimizer-study runs are s2-m6 with other optimizers (each rule is checked
        // against PyTorch in trainer's optim tests).
        if is_optimizer_variant(arch.id) {
            continue;
        }
        // Over 100M MACs per image (the ResNets, whose int8 runs on the host dominate this
        // test): 96 training images, 10 test images and 4 calibration images.
        let heavy = arch.macs().unwrap() > 100_000_000;
        let (dataset, calibration) = if heavy { (&tiny, 4) } else { (&small, 64) };
        let net = Net::new(&arch, 1, &Device::Cpu).unwrap();
        let r = &arch.recipe;
        let mut options = TrainOptions::plain(3, r.batch_size.min(32), r.optimizer, 1);
        options.augmentation = r.augmentation;
        let Outcome::Finished(history) =
            train::train(&net, &dataset.train, Some(&dataset.test), &options, &quiet).unwrap()
        else {
            panic!("{}: stopped", arch.id);
        };
        let (first, last) = (history[0].loss, history[2].loss);
        println!("{}: training loss {first:.4} -> {last:.4}", arch.id);
        assert!(last < first, "{}: training loss {first} -> {last}", arch.id);
        assert!(history[2].val_accuracy.is_some());
        trained += 1;
        if !arch.deployable() {
            // Recurrent models: trained and reported, no int8 op to export to.
            let pred = train::predict(&net, &dataset.test, 100).unwrap();
            assert_eq!(pred.len(), dataset.test.len());
            continue;
        }

        let float_pred = train::predict(&net, &dataset.test, 100).unwrap();
        let export::Exported { bytes, int8 } =
            export::export(&net, dataset, &float_pred, calibration, 1).unwrap();
        std::fs::write(out.path().join(format!("{}.fmq", arch.id)), bytes).unwrap();
        let float = Metrics::new(&dataset.test.labels, &float_pred, 10);
        let report = ModelReport {
            id: arch.id.into(),
            description: arch.description.into(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options,
                train_images: dataset.train.len(),
                validation_images: dataset.test.len(),
                param_count: arch.param_count().unwrap(),
                history,
                test: float,
                safetensors_bytes: 0,
                provenance: None,
            },
            int8: Some(int8.clone()),
            firmware: None,
        };
        report
            .write(&out.path().join(format!("{}.json", arch.id)))
            .unwrap();
        let run = firmware_sim::run_model(
            &out.path().join(format!("{}.fmq", arch.id)),
            &dataset.test,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(run.int8_accuracy, int8.test.accuracy, "{}", arch.id);
        assert_eq!(run.scratch_bytes, int8.scratch_bytes);
    }
    assert!(trained >= 29, "{trained} models");
}

#[test]
fn firmware_sim_reports_a_corrupt_model_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.fmq");
    std::fs::write(&path, b"FMQ8 but not really a model").unwrap();
    let test = data::load_test(None).unwrap().head(10);
    let mut scratch = [0i8; 16];
    let err = format!(
        "{:#}",
        firmware_sim::run_model(&path, &test, &mut scratch).unwrap_err()
    );
    assert!(err.contains("broken.fmq"), "{err}");
}

#[test]
fn every_forest_fits_and_evaluates_on_a_subset() {
    // A few trees on 2,000 images; the study's 100 trees on all 60,000 take tens of minutes.
    let full = data::load(None).expect("Fashion-MNIST (see README)");
    let train = full.train.head(2000);
    let test = full.test.head(1000);
    let forests = trainer::zoo::forests();
    assert!(forests.iter().any(|f| f.id == "s1-rf"));
    for forest in &forests {
        let options = model_report::ForestOptions {
            trees: 5,
            ..forest.options
        };
        let report = trainer::forest::train_and_evaluate(
            forest,
            &options,
            &train,
            &test,
            trainer::progress::Progress::Quiet,
        )
        .unwrap();
        // Five trees on 2,000 images already classify most test images (chance: 10%).
        assert!(
            report.test.accuracy > 0.6,
            "{}: {:.3}",
            forest.id,
            report.test.accuracy
        );
        assert_eq!(report.test.count, 1000);
        assert_eq!(report.train_images, 2000);
        let path = model_report::ForestReport::path(std::path::Path::new("unused"), forest.id);
        assert!(path.ends_with(format!("forests/{}.json", forest.id)));
    }
}
