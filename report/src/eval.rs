//! The host int8 evaluation loop: an infer-core model over a dataset split, exactly as firmware
//! runs it (one scratch buffer reused for every image), giving the predictions, the logits of the
//! first images and the metrics. The trainer's export check, `firmware-sim` and the tests all
//! score int8 models through [`evaluate_int8`].

use fashion_mnist::{NUM_CLASSES, Split};
use infer_core::Model;

use crate::metrics::Metrics;

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
    let mut predictions = Vec::with_capacity(split.len());
    let mut logits = Vec::with_capacity(keep_logits.min(split.len()));
    for i in 0..split.len() {
        let p = model.predict_raw(split.image(i), scratch)?;
        predictions.push(u8::try_from(p.class).unwrap_or(u8::MAX));
        if i < keep_logits {
            logits.push(p.logits.to_vec());
        }
    }
    let metrics = Metrics::new(&split.labels, &predictions, NUM_CLASSES);
    Ok(Int8Eval {
        predictions,
        logits,
        metrics,
    })
}
