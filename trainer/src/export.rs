//! Export: calibrate, quantise, write `<id>.fmq`, then verify the file through infer-core on the
//! test set and record the int8 metrics in the model's report.

use std::path::{Path, PathBuf};

use infer_core::Model;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use fashion_mnist::{Dataset, PIXELS, Split};
use infer_core::format::OwnedModel;
use model_report::{HOST_MAX_OPS, Int8Report, agreement, evaluate_int8_any};

use crate::net::{Net, NetError};
use crate::quantize::{ActivationStats, QuantizeError, RANGE_CANDIDATES};
use crate::train;

/// Errors while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Quantisation failed.
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    /// The float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// infer-core rejected the file we just wrote.
    #[error("infer-core rejects the exported {id}: {error}")]
    Rejected {
        /// Model id.
        id: String,
        /// infer-core's error.
        error: infer_core::Error,
    },
}

/// How many test images get their int8 logits recorded in the report.
pub const GOLDEN_IMAGES: usize = 8;

/// `n` training images chosen uniformly without replacement by a generator seeded with `seed`.
pub fn calibration_set(train: &Split, n: usize, seed: u64) -> Split {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = n.min(train.len());
    let mut idx: Vec<usize> = (0..train.len()).collect();
    idx.shuffle(&mut rng);
    idx.truncate(n);
    idx.sort_unstable();
    let mut images = Vec::with_capacity(n * PIXELS);
    for &i in &idx {
        images.extend_from_slice(train.image(i));
    }
    Split {
        images,
        labels: idx.iter().map(|&i| train.labels[i]).collect(),
    }
}

/// Splits a set into its even- and odd-indexed images.
fn split_alternate(set: &Split) -> (Split, Split) {
    let pick = |parity: usize| {
        let idx: Vec<usize> = (0..set.len()).filter(|i| i % 2 == parity).collect();
        Split {
            images: idx
                .iter()
                .flat_map(|&i| set.image(i).iter().copied())
                .collect(),
            labels: idx.iter().map(|&i| set.labels[i]).collect(),
        }
    };
    (pick(0), pick(1))
}

/// The quantised model [`quantize_best`] chose, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrated {
    /// The chosen model.
    pub model: OwnedModel,
    /// Name of the chosen range method.
    pub method: String,
    /// Every candidate with its agreement on the selection images.
    pub candidates: Vec<(String, f64)>,
}

/// Quantises `net` with every [`RANGE_CANDIDATES`] method, each with and without bias
/// correction, and keeps the one whose int8
/// predictions agree best with float on `selection` (held-out training images, never the test
/// set); the earlier candidate wins ties.
pub fn quantize_best(
    net: &Net,
    stats: &ActivationStats,
    selection: &Split,
) -> Result<Calibrated, ExportError> {
    let float_pred = train::predict(net, selection, 500)?;
    let mut best: Option<(OwnedModel, String, f64)> = None;
    let mut tried = Vec::new();
    let candidates = RANGE_CANDIDATES
        .iter()
        .flat_map(|&m| [(m, false), (m, true)]);
    for (method, correct) in candidates {
        let corrected = correct.then_some(stats);
        let qmodel = crate::lower::lower(net, &stats.ranges(method), corrected)
            .map_err(QuantizeError::from)?;
        let bytes = qmodel.to_bytes().map_err(QuantizeError::from)?;
        let rejected = |error| ExportError::Rejected {
            id: net.arch.id.to_string(),
            error,
        };
        let model = Model::<HOST_MAX_OPS>::from_bytes(&bytes).map_err(rejected)?;
        let mut scratch = vec![0i8; model.scratch_len()];
        let pred = evaluate_int8_any(&model, selection, &mut scratch, 0)
            .map_err(rejected)?
            .predictions;
        let agree = agreement(&float_pred, &pred);
        let name = if correct {
            format!("{method} + bias correction")
        } else {
            method.to_string()
        };
        tried.push((name.clone(), agree));
        if best.as_ref().is_none_or(|b| agree > b.2) {
            best = Some((qmodel, name, agree));
        }
    }
    let (model, method, _) = best.ok_or(QuantizeError::NoCalibrationImages)?;
    Ok(Calibrated {
        model,
        method,
        candidates: tried,
    })
}

/// Quantises `net`, writes `<out_dir>/<id>.fmq`, verifies it on the test set and returns the
/// int8 record. `float_pred` are the float network's predictions on the test set.
///
/// `calibration_images` seeded training images calibrate the activation ranges; as many other
/// training images choose the range method ([`quantize_best`]).
pub fn export(
    net: &Net,
    dataset: &Dataset,
    float_pred: &[u8],
    out_dir: &Path,
    calibration_images: usize,
    seed: u64,
) -> Result<Int8Report, ExportError> {
    let id = net.arch.id;
    let both = calibration_set(&dataset.train, 2 * calibration_images, seed);
    let (calib, selection) = split_alternate(&both);
    let stats = ActivationStats::collect(net, &calib, 250)?;
    let chosen = quantize_best(net, &stats, &selection)?;
    let bytes = chosen.model.to_bytes().map_err(QuantizeError::from)?;
    let path = out_dir.join(format!("{id}.fmq"));
    std::fs::write(&path, &bytes).map_err(|source| ExportError::Io {
        path: path.clone(),
        source,
    })?;
    let rejected = |error| ExportError::Rejected {
        id: id.to_string(),
        error,
    };
    let model = Model::<HOST_MAX_OPS>::from_bytes(&bytes).map_err(rejected)?;
    let mut scratch = vec![0i8; model.scratch_len()];
    let int8 =
        evaluate_int8_any(&model, &dataset.test, &mut scratch, GOLDEN_IMAGES).map_err(rejected)?;
    Ok(Int8Report {
        calibration_images: calib.len(),
        calibration_method: chosen.method,
        calibration_candidates: chosen.candidates,
        agreement: agreement(float_pred, &int8.predictions),
        test: int8.metrics,
        model_bytes: bytes.len() as u64,
        scratch_bytes: model.scratch_len(),
        macs: model.macs(),
        golden_logits: int8.logits,
    })
}
