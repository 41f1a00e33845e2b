//! Loads the fuzzer's bytes as a model file and, when they load, runs one inference.
//!
//! The header's payload length and CRC-32 are recomputed first, so that a mutation of the
//! payload reaches the decoder and the op validation instead of stopping at the checksum (the
//! header checks themselves are unit-tested in `infer-core/src/model.rs`). The target fails
//! (panics) if `Model::from_bytes` or `predict_raw` panics, if a loaded model's prediction is not
//! a class below `num_classes`, or if `predict_raw` refuses a scratch buffer and input of the
//! lengths the model states.
//!
//! Two bounds keep each run short, and neither hides a panic: a model whose scratch buffer or
//! input exceeds [`MEMORY_LIMIT`] is given a buffer of that size and must refuse it with the
//! matching error (as a device with that much RAM would), and a model whose inference takes
//! more than [`WORK_LIMIT`] steps ([`work`]) is only loaded.

#![no_main]

use infer_core::format::{CRC, HEADER_LEN};
use infer_core::ops::QOp;
use infer_core::{Error, Model};
use libfuzzer_sys::fuzz_target;

/// Largest scratch buffer and input the target allocates, in bytes.
const MEMORY_LIMIT: usize = 1 << 22;

/// Most steps ([`work`]) of a model the target runs: tiny-resnet (0.93 M multiply-accumulates)
/// and the small committed models run; the larger CNNs take milliseconds per inference, which
/// would slow the fuzzer down a hundredfold.
const WORK_LIMIT: u64 = 2_000_000;

/// Ops the loaded model type holds: more than the reference models use, as a ResNet would.
const MAX_OPS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    if let Some((header, payload)) = bytes.split_first_chunk_mut::<HEADER_LEN>() {
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        header[8..12].copy_from_slice(&len.to_le_bytes());
        header[12..16].copy_from_slice(&CRC.checksum(payload).to_le_bytes());
    }
    let Ok(model) = Model::<MAX_OPS>::from_bytes(&bytes) else {
        return;
    };
    if work(&model) > WORK_LIMIT {
        return;
    }
    let input_len = model.input_len().min(MEMORY_LIMIT);
    let pixels: Vec<u8> = (0..input_len).map(|i| (i.wrapping_mul(37) % 251) as u8).collect();
    let mut scratch = vec![0_i8; model.scratch_len().min(MEMORY_LIMIT)];
    let result = model.predict_raw(&pixels, &mut scratch);
    if model.input_len() > MEMORY_LIMIT {
        assert!(matches!(result, Err(Error::InputLength { .. })), "{result:?}");
    } else if model.scratch_len() > MEMORY_LIMIT {
        assert!(matches!(result, Err(Error::ScratchTooSmall { .. })), "{result:?}");
    } else {
        let prediction = result.expect("a loaded model runs on buffers of its stated lengths");
        assert!(prediction.class < model.num_classes());
        assert_eq!(prediction.logits.len(), model.num_classes());
    }
});

/// The steps of one inference, roughly: the multiply-accumulates, plus for every op one step
/// per output element and, for a pooling, per window element.
fn work(model: &Model<'_, MAX_OPS>) -> u64 {
    let per_op = model.ops().iter().map(|op| {
        let out = u64::try_from(op.output().shape.len()).unwrap_or(u64::MAX);
        let window = match op.op() {
            QOp::MaxPool2d(p) => u64::from(p.geometry().kernel).pow(2),
            QOp::AvgPool2d(p) => u64::from(p.geometry().kernel).pow(2),
            _ => 1,
        };
        out.saturating_mul(window)
    });
    per_op.fold(model.macs(), u64::saturating_add)
}
