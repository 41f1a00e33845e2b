//! The int8 logits of the committed models on all 10,000 test images, bit for bit.
//!
//! `tests/golden/<id>.logits.gz` holds, gzip-compressed, the logits (`i8`, row-major
//! `[10_000, classes]`) that infer-core gave for `models/<id>.fmq` when the expectation was
//! recorded. They were recorded once, before the model format moved from the layer chain (v1)
//! to the graph (v2), so this test proves that re-exporting the models as v2 changed no logit.
//! A model whose logits are meant to change (a retrained model) is re-recorded with
//! `GOLDEN_RECORD=1 cargo test --release -p parity-tests --test golden`.

use std::io::{Read, Write};
use std::path::PathBuf;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use infer_core::Model;
use trainer::data;

const MODELS: [&str; 3] = ["s5-ann", "s5-cnn", "s3-lenet-base"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The logits of every test image, concatenated.
fn logits(id: &str, test: &data::Split) -> Vec<u8> {
    let bytes = std::fs::read(root().join(format!("models/{id}.fmq"))).unwrap();
    let model: Model = Model::from_bytes(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let mut out = Vec::new();
    for i in 0..test.len() {
        let p = model.predict_raw(test.image(i), &mut scratch).unwrap();
        out.extend(p.logits.iter().map(|&l| l.to_ne_bytes()[0]));
    }
    out
}

#[test]
fn committed_models_give_the_recorded_logits_on_the_whole_test_set() {
    let test = data::load_test(None).expect("Fashion-MNIST test split (see README)");
    let record = std::env::var_os("GOLDEN_RECORD").is_some();
    for id in MODELS {
        let path = root().join(format!("tests/golden/{id}.logits.gz"));
        let got = logits(id, &test);
        if record {
            let mut gz = GzEncoder::new(Vec::new(), Compression::best());
            gz.write_all(&got).unwrap();
            std::fs::write(&path, gz.finish().unwrap()).unwrap();
        }
        let mut expected = Vec::new();
        GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut expected)
            .unwrap();
        assert_eq!(got.len(), expected.len(), "{id}: number of logits");
        let classes = got.len() / test.len();
        let differing: Vec<usize> = (0..test.len())
            .filter(|&i| {
                got[i * classes..(i + 1) * classes] != expected[i * classes..(i + 1) * classes]
            })
            .collect();
        assert!(
            differing.is_empty(),
            "{id}: {} of {} images give other logits than recorded, first: {:?}",
            differing.len(),
            test.len(),
            &differing[..differing.len().min(10)]
        );
        println!(
            "{id}: {} logits over {} images identical",
            got.len(),
            test.len()
        );
    }
}
