//! The host int8 evaluation loop: an infer-core model over a dataset split, exactly as firmware
//! runs it (one scratch buffer reused for every image), giving the predictions, the logits of the
//! first images and the metrics. The trainer's export check, `firmware-sim` and the tests all
//! score int8 models through [`evaluate_int8`]; the export's candidate search runs the same loop
//! on several threads ([`evaluate_int8_parallel`]).

use fashion_mnist::{NUM_CLASSES, Split};
use infer_core::Model;

use crate::metrics::Metrics;

/// Op capacity of the models loaded on the host (`Model::<HOST_MAX_OPS>`): a ResNet-34, about
/// 55 ops, loads. (Firmware names its own, smaller capacity.)
pub const HOST_MAX_OPS: usize = 64;

/// What an int8 model did on a split.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Eval {
    /// Predicted class of every image, in order.
    pub predictions: Vec<u8>,
    /// Int8 logits of the first images (as many as asked for, at most the split's length).
    pub logits: Vec<Vec<i8>>,
    /// The predictions scored against the split's labels.
    pub metrics: Metrics,
}

/// Classifies every image of `split` with `model`, reusing the one `scratch` buffer throughout
/// as firmware would, and keeps the logits of the first `keep_logits` images.
///
/// # Errors
///
/// infer-core's error for the first image it rejects: [`infer_core::Error::ScratchTooSmall`]
/// if `scratch` is shorter than [`Model::scratch_len`], [`infer_core::Error::InputLength`] if
/// the model does not take 28x28 images.
pub fn evaluate_int8(
    model: &Model<'_>,
    split: &Split,
    scratch: &mut [i8],
    keep_logits: usize,
) -> Result<Int8Eval, infer_core::Error> {
    evaluate_int8_any(model, split, scratch, keep_logits)
}

/// [`evaluate_int8`] for a model of any op capacity (`Model::<MAX_OPS>`, such as the large one
/// `firmware-sim` loads so that ResNet-sized models fit). `evaluate_int8` takes the default
/// capacity, which is what lets `Model::from_bytes` infer it at the call site.
///
/// # Errors
///
/// As [`evaluate_int8`].
pub fn evaluate_int8_any<const MAX_OPS: usize>(
    model: &Model<'_, MAX_OPS>,
    split: &Split,
    scratch: &mut [i8],
    keep_logits: usize,
) -> Result<Int8Eval, infer_core::Error> {
    let (predictions, logits) = classify(model, split, 0..split.len(), scratch, keep_logits)?;
    Ok(Int8Eval::scored(split, predictions, logits))
}

/// [`evaluate_int8_any`] on `threads` threads at once: the images are cut into that many
/// contiguous runs, each classified with its own scratch buffer of [`Model::scratch_len`]
/// bytes. Every image goes through the same integer code as in the one-buffer loop, so the
/// result is identical to [`evaluate_int8_any`]'s; only the wall time differs. The host's export
/// scores its calibration candidates this way.
///
/// # Errors
///
/// infer-core's error for the first run that fails, as [`evaluate_int8`].
pub fn evaluate_int8_parallel<const MAX_OPS: usize>(
    model: &Model<'_, MAX_OPS>,
    split: &Split,
    threads: usize,
    keep_logits: usize,
) -> Result<Int8Eval, infer_core::Error> {
    let runs = threads.clamp(1, split.len().max(1));
    let per_run = split.len().div_ceil(runs);
    let scratch_len = model.scratch_len();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..runs)
            .map(|run| {
                let start = (run * per_run).min(split.len());
                let end = (start + per_run).min(split.len());
                let keep = keep_logits.saturating_sub(start);
                scope.spawn(move || {
                    let mut scratch = vec![0i8; scratch_len];
                    classify(model, split, start..end, &mut scratch, keep)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<_>>()
    });
    let mut predictions = Vec::with_capacity(split.len());
    let mut logits = Vec::with_capacity(keep_logits.min(split.len()));
    for part in parts {
        let (p, l) = part?;
        predictions.extend(p);
        logits.extend(l);
    }
    Ok(Int8Eval::scored(split, predictions, logits))
}

impl Int8Eval {
    /// The record of `predictions` (and the kept `logits`) on `split`, scored against its labels.
    fn scored(split: &Split, predictions: Vec<u8>, logits: Vec<Vec<i8>>) -> Self {
        let metrics = Metrics::new(&split.labels, &predictions, NUM_CLASSES);
        Self {
            predictions,
            logits,
            metrics,
        }
    }
}

/// Predictions for the images `range` of `split`, one buffer reused throughout, and the logits
/// of the first `keep_logits` of them.
fn classify<const MAX_OPS: usize>(
    model: &Model<'_, MAX_OPS>,
    split: &Split,
    range: std::ops::Range<usize>,
    scratch: &mut [i8],
    keep_logits: usize,
) -> Result<(Vec<u8>, Vec<Vec<i8>>), infer_core::Error> {
    let mut predictions = Vec::with_capacity(range.len());
    let mut logits = Vec::with_capacity(keep_logits.min(range.len()));
    for (n, i) in range.enumerate() {
        let p = model.predict_raw(split.image(i), scratch)?;
        predictions.push(u8::try_from(p.class).unwrap_or(u8::MAX));
        if n < keep_logits {
            logits.push(p.logits.to_vec());
        }
    }
    Ok((predictions, logits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use fashion_mnist::PIXELS;

    /// Three synthetic images (a ramp, all black, all white) with labels 0, 1, 2.
    fn split() -> Split {
        let mut images: Vec<u8> = (0..PIXELS)
            .map(|i| u8::try_from(i % 256).unwrap())
            .collect();
        images.extend([0u8; PIXELS]);
        images.extend([255u8; PIXELS]);
        Split {
            images,
            labels: vec![0, 1, 2],
        }
    }

    fn lenet() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/s3-lenet-base.fmq");
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_loop_is_one_predict_per_image_with_the_first_logits_kept() {
        let bytes = lenet();
        let model = Model::from_bytes(&bytes).unwrap();
        let split = split();
        let mut scratch = vec![0i8; model.scratch_len()];
        let eval = evaluate_int8(&model, &split, &mut scratch, 2).unwrap();
        assert_eq!(eval.predictions.len(), 3);
        assert_eq!(eval.logits.len(), 2);
        for i in 0..split.len() {
            let p = model.predict_raw(split.image(i), &mut scratch).unwrap();
            assert_eq!(usize::from(eval.predictions[i]), p.class, "image {i}");
            if i < 2 {
                assert_eq!(eval.logits[i], p.logits, "image {i}");
            }
        }
        assert_eq!(
            eval.metrics,
            Metrics::new(&split.labels, &eval.predictions, NUM_CLASSES)
        );
        // Asking for more logits than images keeps them all.
        let all = evaluate_int8(&model, &split, &mut scratch, 10).unwrap();
        assert_eq!(all.logits.len(), 3);
    }

    #[test]
    fn the_parallel_loop_gives_the_one_buffer_result_for_any_thread_count() {
        let bytes = lenet();
        let model = Model::from_bytes(&bytes).unwrap();
        let split = split();
        let mut scratch = vec![0i8; model.scratch_len()];
        for keep in [0, 1, 2, 3, 10] {
            let one = evaluate_int8(&model, &split, &mut scratch, keep).unwrap();
            for threads in [0, 1, 2, 3, 8] {
                let many = evaluate_int8_parallel(&model, &split, threads, keep).unwrap();
                assert_eq!(many, one, "{threads} threads, {keep} logits kept");
            }
        }
        let empty = Split {
            images: Vec::new(),
            labels: Vec::new(),
        };
        let none = evaluate_int8_parallel(&model, &empty, 2, 1).unwrap();
        assert!(none.predictions.is_empty() && none.logits.is_empty());
    }

    #[test]
    fn a_short_scratch_buffer_is_infer_cores_error() {
        let bytes = lenet();
        let model = Model::from_bytes(&bytes).unwrap();
        let mut scratch = vec![0i8; model.scratch_len() - 1];
        assert_eq!(
            evaluate_int8(&model, &split(), &mut scratch, 0),
            Err(infer_core::Error::ScratchTooSmall {
                needed: model.scratch_len()
            })
        );
    }
}
