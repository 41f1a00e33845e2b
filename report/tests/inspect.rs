//! `inspect` on committed models: its totals are infer-core's and the model report's, its JSON
//! carries the same, and a corrupt file is an error that names the file.

use std::path::{Path, PathBuf};

use infer_core::Model;
use model_report::inspect::{InspectError, Inspection};
use model_report::{HOST_MAX_OPS, ModelReport};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// Checks the inspection of `models/<id>.fmq` against infer-core and `models/<id>.json`.
fn check(id: &str) -> Inspection {
    let path = models_dir().join(format!("{id}.fmq"));
    let bytes = std::fs::read(&path).unwrap();
    let inspection = Inspection::of_file(&path).unwrap();
    let model = Model::<HOST_MAX_OPS>::from_bytes(&bytes).unwrap();
    let report = ModelReport::read(&path.with_extension("json")).unwrap();
    let int8 = report.int8.as_ref().unwrap();
    let t = &inspection.totals;

    assert_eq!(inspection.id, id);
    assert_eq!(t.model_bytes, bytes.len());
    assert_eq!(u64::try_from(t.model_bytes).unwrap(), int8.model_bytes);
    assert_eq!(t.scratch_bytes, model.scratch_len());
    assert_eq!(t.scratch_bytes, int8.scratch_bytes);
    assert_eq!(t.macs, model.macs());
    assert_eq!(t.macs, int8.macs);
    assert_eq!(t.ops, model.ops().len());
    assert_eq!(inspection.ops.len(), t.ops);
    assert_eq!(
        inspection.ops.iter().map(|o| o.macs).sum::<u64>(),
        int8.macs
    );
    assert_eq!(t.param_bytes, model.param_bytes());
    assert_eq!(inspection.tensors.len(), t.ops + 1);
    assert_eq!(
        inspection.header.format_version,
        infer_core::format::VERSION
    );
    assert_eq!(
        usize::try_from(inspection.header.payload_bytes).unwrap() + 16,
        bytes.len()
    );
    assert_eq!(
        inspection.header.crc32,
        u32::from_le_bytes(bytes[12..16].try_into().unwrap())
    );
    // The input mapping is the file's, and folds in the dataset's normalisation.
    let q = model.input_qparams();
    assert_eq!(
        (inspection.input.scale, inspection.input.zero_point),
        (q.scale, q.zero_point)
    );
    assert!((inspection.input.mean - fashion_mnist::PIXEL_MEAN).abs() < 0.002);
    assert!((inspection.input.std - fashion_mnist::PIXEL_STD).abs() < 1e-4);

    // Every placed block lies in the scratch buffer, and blocks alive at a common step are
    // disjoint: the plan as infer-core made it.
    let blocks: Vec<_> = inspection
        .tensors
        .iter()
        .filter(|t| t.storage == "block")
        .map(|t| (t.offset.unwrap(), t.bytes, t.lifetime.unwrap()))
        .collect();
    for (i, &(offset, bytes, [first, last])) in blocks.iter().enumerate() {
        assert!(offset + bytes <= t.scratch_bytes);
        for &(o2, b2, [f2, l2]) in &blocks[i + 1..] {
            let meet = first <= l2 && f2 <= last;
            assert!(!meet || offset + bytes <= o2 || o2 + b2 <= offset);
        }
    }

    // The JSON carries the same, field by field.
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&inspection).unwrap()).unwrap();
    assert_eq!(json["id"], id);
    assert_eq!(json["totals"]["model_bytes"], bytes.len());
    assert_eq!(json["totals"]["scratch_bytes"], int8.scratch_bytes);
    assert_eq!(json["totals"]["macs"], int8.macs);
    assert_eq!(json["totals"]["ops"], model.ops().len());
    assert_eq!(json["ops"].as_array().unwrap().len(), model.ops().len());
    assert_eq!(json["header"]["crc32"], inspection.header.crc32);
    assert_eq!(json["input"]["zero_point"], q.zero_point);
    for (o, j) in model.ops().iter().zip(json["ops"].as_array().unwrap()) {
        assert_eq!(j["kind"], o.kind().name());
        assert_eq!(j["macs"], o.op().macs());
    }

    // The text report names the model and has a row per op and per tensor.
    let text = inspection.to_string();
    assert!(text.contains(&format!("model   {id}")));
    assert!(text.lines().count() > t.ops * 2);
    inspection
}

#[test]
fn s5_cnn_totals_are_infer_cores_and_the_reports() {
    let i = check("s5-cnn");
    // No BatchNorm to fold: the int8 parameters (weights and biases) are the float network's.
    let report = ModelReport::read(&models_dir().join("s5-cnn.json")).unwrap();
    assert_eq!(i.totals.params, report.float.param_count);
    // conv-relu-pool twice: each conv runs fused with the pooling after it.
    let fused = i
        .ops
        .iter()
        .filter(|o| o.runs == "fused with next max pool")
        .count();
    assert_eq!(fused, 2);
    assert!(
        i.ops
            .iter()
            .all(|o| (o.kind == "Conv2d" || o.kind == "Dense") == o.weight_scales.is_some())
    );
}

#[test]
fn tiny_resnet_totals_are_infer_cores_and_the_reports() {
    let i = check("tiny-resnet");
    // The residual block's input stays alive until its Add reads it.
    let add = i.ops.iter().find(|o| o.kind == "Add").unwrap();
    let skip = add.inputs.iter().copied().min().unwrap();
    let tensor = &i.tensors[usize::from(skip)];
    assert!(tensor.lifetime.unwrap()[1] >= add.index);
}

#[test]
fn a_corrupt_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(models_dir().join("tiny-resnet.fmq")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    let path = dir.path().join("corrupt.fmq");
    std::fs::write(&path, &bytes).unwrap();
    let err = Inspection::of_file(&path).unwrap_err();
    assert!(matches!(
        err,
        InspectError::Invalid {
            reason: infer_core::Error::Checksum { .. },
            ..
        }
    ));
    let message = err.to_string();
    assert!(message.contains("corrupt.fmq"), "{message}");

    for bytes in [&b""[..], b"FMQ8", b"not a model file at all"] {
        std::fs::write(&path, bytes).unwrap();
        let message = Inspection::of_file(&path).unwrap_err().to_string();
        assert!(message.contains("corrupt.fmq"), "{message}");
    }
    let missing = dir.path().join("missing.fmq");
    let message = Inspection::of_file(&missing).unwrap_err().to_string();
    assert!(message.contains("missing.fmq"), "{message}");
}
