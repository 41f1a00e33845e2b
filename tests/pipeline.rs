//! Smoke run of the whole pipeline on a small real subset: train each deployable architecture
//! for one epoch on a few hundred images (the loss must fall), export it, and run the export
//! through firmware-sim exactly as the binary does.

use candle_core::Device;
use fashion_mnist as data;
use model_report::{FloatReport, Metrics, ModelReport, TrainOptions};
use trainer::arch;
use trainer::export;
use trainer::net::Net;
use trainer::train;

#[test]
fn one_epoch_on_a_subset_lowers_the_loss_and_exports() {
    let full = data::load(None).expect("Fashion-MNIST (see README)");
    let dataset = data::Dataset {
        train: full.train.head(384),
        test: full.test.head(500),
    };
    let out = tempfile::tempdir().unwrap();
    for arch in arch::deployable() {
        let net = Net::new(&arch, 1, &Device::Cpu).unwrap();
        let before = train::evaluate_loss(&net, &dataset.train, 128).unwrap();
        let options = TrainOptions {
            epochs: 1,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 1,
        };
        let history = train::train(&net, &dataset.train, &options, true).unwrap();
        let after = train::evaluate_loss(&net, &dataset.train, 128).unwrap();
        println!("{}: loss {before:.4} -> {after:.4}", arch.id);
        assert!(after < before, "{}: loss {before} -> {after}", arch.id);

        let float_pred = train::predict(&net, &dataset.test, 250).unwrap();
        let int8 = export::export(&net, &dataset, &float_pred, out.path(), 64, 1).unwrap();
        let float = Metrics::new(&dataset.test.labels, &float_pred, 10);
        let report = ModelReport {
            id: arch.id.into(),
            description: arch.description.into(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options,
                train_images: dataset.train.len(),
                param_count: arch.param_count().unwrap(),
                history,
                test: float,
                safetensors_bytes: 0,
            },
            int8: Some(int8.clone()),
            firmware: None,
        };
        report
            .write(&out.path().join(format!("{}.json", arch.id)))
            .unwrap();

        let mut scratch = [0i8; firmware_sim::SCRATCH_CAPACITY];
        let run = firmware_sim::run_model(
            &out.path().join(format!("{}.fmq", arch.id)),
            &dataset.test,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(run.int8_accuracy, int8.test.accuracy, "{}", arch.id);
        assert_eq!(run.scratch_bytes, int8.scratch_bytes);
    }
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
