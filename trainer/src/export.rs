//! Export: calibrate, quantise, write `<id>.fmq`, then verify the file through infer-core on the
//! test set and record the int8 metrics in the model's report.

use infer_core::Model;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use fashion_mnist::{Dataset, PIXELS, Split};
use infer_core::format::OwnedModel;
use model_report::{HOST_MAX_OPS, Int8Report, agreement, evaluate_int8_parallel};

use crate::centring::Centring;
use crate::lower::Ranges;
use crate::net::{Net, NetError};
use crate::quantize::{ActivationStats, QuantizeError, RANGE_CANDIDATES, RangeMethod};
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

/// How many training images, per calibration image, are drawn as candidates for the selection
/// images ([`hardest`]).
pub const SELECTION_POOL: usize = 4;

/// Two disjoint sets of training images, drawn uniformly without replacement by a generator
/// seeded with `seed`: `n` calibration images and `pool` others (fewer if the split is small).
pub fn calibration_and_pool(train: &Split, n: usize, pool: usize, seed: u64) -> (Split, Split) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx: Vec<usize> = (0..train.len()).collect();
    idx.shuffle(&mut rng);
    let n = n.min(idx.len());
    let (calib, rest) = idx.split_at(n);
    let rest = rest.get(..pool.min(rest.len())).unwrap_or_default();
    (subset(train, calib), subset(train, rest))
}

/// The images of `set` at `indices`, in ascending index order.
fn subset(set: &Split, indices: &[usize]) -> Split {
    let mut idx = indices.to_vec();
    idx.sort_unstable();
    let mut images = Vec::with_capacity(idx.len() * PIXELS);
    for &i in &idx {
        images.extend_from_slice(set.image(i));
    }
    Split {
        images,
        labels: idx.iter().map(|&i| set.labels[i]).collect(),
    }
}

/// The `n` images of `pool` on which `net`'s two largest logits are closest: the images whose
/// class quantisation noise decides. Candidates are ranked on these rather than on random
/// training images, on which a network that fits its training set is more confident than on
/// the test set, so that nearly every candidate agrees on them and their ranking is noise.
pub fn hardest(net: &Net, pool: &Split, n: usize) -> Result<Split, ExportError> {
    let mut margins: Vec<(f32, usize)> = Vec::with_capacity(pool.len());
    let all: Vec<usize> = (0..pool.len()).collect();
    for idx in all.chunks(500) {
        let x = train::images_tensor(pool, idx, None, &candle_core::Device::Cpu)?;
        let logits = net
            .forward(&x, crate::net::Mode::Eval)?
            .to_vec2::<f32>()
            .map_err(NetError::from)?;
        for (&i, row) in idx.iter().zip(&logits) {
            let (a, b) = crate::logit_range::top_two(row);
            margins.push((a - b, i));
        }
    }
    margins.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    let chosen: Vec<usize> = margins.iter().take(n).map(|&(_, i)| i).collect();
    Ok(subset(pool, &chosen))
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

/// One float network export may quantise: the trained one or its logit-centred copy
/// ([`crate::centring`]), with its activation statistics.
pub struct Variant<'n> {
    /// The float network (the same predictions as the trained one).
    pub net: &'n Net,
    /// Its activation statistics on the calibration images.
    pub stats: &'n ActivationStats,
    /// Appended to the method's name (`""`, or `" + centred logits"`).
    pub label: &'static str,
}

/// Below this estimated agreement on the pool the selection images were picked from (the
/// images outside the selection counted as agreeing: their top two logits are further apart),
/// [`quantize_best`] refines the chosen candidate's ranges layer by layer.
pub const REFINE_BELOW: f64 = 0.995;

/// The shrinks the refinement tries per trace point: factors for the low and the high end of
/// the range (toward zero): both ends, then each end alone (a LeakyReLU's input, say, needs its
/// negative end far less than its positive one).
const REFINE_SHRINKS: [(f32, f32); 9] = [
    (0.85, 0.85),
    (0.7, 0.7),
    (0.5, 0.5),
    (0.7, 1.0),
    (0.5, 1.0),
    (0.3, 1.0),
    (1.0, 0.85),
    (1.0, 0.7),
    (1.0, 0.5),
];

/// A refinement step is kept only if at least this many more selection images agree.
const REFINE_MIN_GAIN: usize = 2;

/// The refinement runs only with at least this many selection images: on fewer, a gain of
/// `REFINE_MIN_GAIN` images is noise (and the pipeline's smoke runs stay fast).
pub const REFINE_MIN_IMAGES: usize = 500;

/// Multiply-accumulates the refinement may spend (trials times selection images times the
/// model's MACs): under ten minutes on one core; a large model gets fewer trials, spent on its
/// first layers.
const REFINE_BUDGET_MACS: u64 = 1_000_000_000_000;

/// A quantised candidate and how many selection images it classifies as the float network does.
struct Scored {
    model: OwnedModel,
    bytes: Vec<u8>,
    agreeing: usize,
}

/// Lowers `net` with `ranges` (the model and its bytes; agreement not yet counted).
fn lower_candidate(
    net: &Net,
    ranges: &Ranges,
    corrected: Option<&ActivationStats>,
) -> Result<Scored, ExportError> {
    let model = crate::lower::lower(net, ranges, corrected).map_err(QuantizeError::from)?;
    let bytes = model.to_bytes().map_err(QuantizeError::from)?;
    Ok(Scored {
        model,
        bytes,
        agreeing: 0,
    })
}

/// Counts the images of `selection` on which `candidate` agrees with `float_pred`.
fn score(
    id: &str,
    mut candidate: Scored,
    float_pred: &[u8],
    selection: &Split,
) -> Result<Scored, ExportError> {
    let rejected = |error| ExportError::Rejected {
        id: id.to_string(),
        error,
    };
    let pred = {
        let loaded = Model::<HOST_MAX_OPS>::from_bytes(&candidate.bytes).map_err(rejected)?;
        evaluate_int8_parallel(&loaded, selection, rayon::current_num_threads(), 0)
            .map_err(rejected)?
            .predictions
    };
    candidate.agreeing = float_pred.iter().zip(&pred).filter(|(a, b)| a == b).count();
    Ok(candidate)
}

/// Quantises every variant with every [`RANGE_CANDIDATES`] method, each with and without bias
/// correction, and keeps the one whose int8 predictions agree best with `float_pred` (the
/// trained network's predictions) on `selection` (held-out training images, never the test
/// set); the earlier candidate wins ties.
///
/// `population` is the number of images the selection was picked from ([`hardest`]). If the
/// best candidate's disagreements make up more than `1 - REFINE_BELOW` of them (and there are
/// at least [`REFINE_MIN_IMAGES`] selection images), its ranges are refined:
/// trace point by trace point in forward order, each range is shrunk by the factors
/// `REFINE_SHRINKS` (of the range as refined so far), and a shrink is kept when at least
/// `REFINE_MIN_GAIN` more selection images agree, within a budget of `REFINE_BUDGET_MACS`.
/// A model whose errors come from one coarse layer (a wide range set by rare values) gains
/// there; the others are left as they were, and fast to export.
pub fn quantize_best(
    variants: &[Variant<'_>],
    float_pred: &[u8],
    selection: &Split,
    population: usize,
) -> Result<Calibrated, ExportError> {
    let mut best: Option<(Scored, String, usize, RangeMethod, bool)> = None;
    let mut tried = Vec::new();
    let fraction = |agreeing: usize| agreeing as f64 / selection.len().max(1) as f64;
    let candidates = variants.iter().enumerate().flat_map(|(i, _)| {
        RANGE_CANDIDATES
            .iter()
            .flat_map(move |&m| [(i, m, false), (i, m, true)])
    });
    for (index, method, correct) in candidates {
        let Some(variant) = variants.get(index) else {
            continue;
        };
        let corrected = correct.then_some(variant.stats);
        let lowered = lower_candidate(variant.net, &variant.stats.ranges(method), corrected)?;
        let scored = score(variant.net.arch.id, lowered, float_pred, selection)?;
        let correction = if correct { " + bias correction" } else { "" };
        let name = format!("{method}{correction}{}", variant.label);
        tracing::info!(
            "{}: {name} agrees with float on {:.2}% of the selection",
            variant.net.arch.id,
            100.0 * fraction(scored.agreeing)
        );
        tried.push((name.clone(), fraction(scored.agreeing)));
        if best.as_ref().is_none_or(|b| scored.agreeing > b.0.agreeing) {
            best = Some((scored, name, index, method, correct));
        }
    }
    let (mut scored, mut method_name, index, method, correct) =
        best.ok_or(QuantizeError::NoCalibrationImages)?;
    if let Some(variant) = variants.get(index) {
        let disagreeing = selection.len().saturating_sub(scored.agreeing);
        let estimate = 1.0 - disagreeing as f64 / population.max(selection.len()).max(1) as f64;
        if estimate < REFINE_BELOW && selection.len() >= REFINE_MIN_IMAGES {
            let id = variant.net.arch.id;
            let per_trial = variant
                .net
                .arch
                .macs()
                .unwrap_or(u64::MAX)
                .saturating_mul(selection.len() as u64)
                .max(1);
            let mut trials_left = REFINE_BUDGET_MACS / per_trial;
            tracing::info!(
                "{id}: refining ranges (estimated agreement {:.2}%, at most {trials_left} trials)",
                100.0 * estimate
            );
            let corrected = correct.then_some(variant.stats);
            let mut ranges = variant.stats.ranges(method);
            let mut current = scored;
            let mut refined = 0;
            'paths: for path in variant.stats.paths() {
                for (low, high) in REFINE_SHRINKS {
                    let Some(&(lo, hi)) = ranges.get(path) else {
                        break;
                    };
                    let mut trial = ranges.clone();
                    trial.insert(path.clone(), (lo * low, hi * high));
                    let lowered = lower_candidate(variant.net, &trial, corrected)?;
                    if lowered.bytes == current.bytes {
                        continue; // this end sets no quantisation here
                    }
                    if trials_left == 0 {
                        break 'paths;
                    }
                    trials_left -= 1;
                    let candidate = score(id, lowered, float_pred, selection)?;
                    if candidate.agreeing >= current.agreeing + REFINE_MIN_GAIN {
                        tracing::info!(
                            "{id}: shrinking {path} by ({low}, {high}) lifts agreement to {:.2}%",
                            100.0 * fraction(candidate.agreeing)
                        );
                        current = candidate;
                        ranges = trial;
                        refined += 1;
                    }
                }
            }
            scored = current;
            if refined > 0 {
                method_name = format!("{method_name}, {refined} ranges refined");
                tried.push((method_name.clone(), fraction(scored.agreeing)));
            }
        }
    }
    Ok(Calibrated {
        model: scored.model,
        method: method_name,
        candidates: tried,
    })
}

/// What [`export`] produced: the model file and its int8 record.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The `.fmq` file's bytes, verified through infer-core.
    pub bytes: Vec<u8>,
    /// The int8 record of the model's report.
    pub int8: Int8Report,
}

/// Quantises `net`, verifies the model file on the test set through infer-core and returns it
/// with its int8 record (the caller writes it, with the model's other files:
/// [`model_report::model_set`]). `float_pred` are the float network's predictions on the test
/// set.
///
/// `calibration_images` seeded training images calibrate the activation ranges; as many other
/// training images choose the range method ([`quantize_best`]).
pub fn export(
    net: &Net,
    dataset: &Dataset,
    float_pred: &[u8],
    calibration_images: usize,
    seed: u64,
) -> Result<Exported, ExportError> {
    let id = net.arch.id;
    let (calib, pool) = calibration_and_pool(
        &dataset.train,
        calibration_images,
        SELECTION_POOL.saturating_mul(calibration_images),
        seed,
    );
    let selection = hardest(net, &pool, calibration_images)?;
    let stats = ActivationStats::collect(net, &calib, 250)?;
    let centred = match Centring::fit(net, &calib, 250)? {
        Some(centring) => {
            let centred = centring.apply(net)?;
            let stats = ActivationStats::collect(&centred, &calib, 250)?;
            Some((centred, stats))
        }
        None => None,
    };
    let mut variants = vec![Variant {
        net,
        stats: &stats,
        label: "",
    }];
    if let Some((net, stats)) = &centred {
        variants.push(Variant {
            net,
            stats,
            label: " + centred logits",
        });
    }
    let selection_pred = train::predict(net, &selection, 500)?;
    let chosen = quantize_best(&variants, &selection_pred, &selection, pool.len())?;
    let bytes = chosen.model.to_bytes().map_err(QuantizeError::from)?;
    let rejected = |error| ExportError::Rejected {
        id: id.to_string(),
        error,
    };
    let model = Model::<HOST_MAX_OPS>::from_bytes(&bytes).map_err(rejected)?;
    let threads = rayon::current_num_threads();
    let int8 =
        evaluate_int8_parallel(&model, &dataset.test, threads, GOLDEN_IMAGES).map_err(rejected)?;
    let int8 = Int8Report {
        calibration_images: calib.len(),
        calibration_method: chosen.method,
        calibration_candidates: chosen.candidates,
        agreement: agreement(float_pred, &int8.predictions),
        test: int8.metrics,
        model_bytes: bytes.len() as u64,
        fmq_crc32: infer_core::format::Header::from_bytes(&bytes)
            .ok()
            .map(|h| h.crc32),
        scratch_bytes: model.scratch_len(),
        macs: model.macs(),
        golden_logits: int8.logits,
        provenance: Some(crate::provenance::current(seed)),
    };
    drop(model);
    Ok(Exported { bytes, int8 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, build};

    /// `n` images, image `i` filled with the value `i` (so each is recognisable).
    fn numbered(n: u8) -> Split {
        Split {
            images: (0..n).flat_map(|i| [i; PIXELS]).collect(),
            labels: (0..n).map(|i| i % 10).collect(),
        }
    }

    #[test]
    fn calibration_and_pool_are_disjoint_seeded_draws() {
        let train = numbered(50);
        let (calib, pool) = calibration_and_pool(&train, 10, 30, 7);
        assert_eq!((calib.len(), pool.len()), (10, 30));
        let ids = |s: &Split| -> Vec<u8> { (0..s.len()).map(|i| s.image(i)[0]).collect() };
        let (c, p) = (ids(&calib), ids(&pool));
        assert!(c.iter().all(|i| !p.contains(i)), "{c:?} {p:?}");
        assert!(c.windows(2).all(|w| w[0] < w[1]), "ascending order");
        assert_eq!(calibration_and_pool(&train, 10, 30, 7), (calib, pool));
        // A small split gives what it has.
        let (calib, pool) = calibration_and_pool(&train, 40, 30, 7);
        assert_eq!((calib.len(), pool.len()), (40, 10));
    }

    #[test]
    fn hardest_picks_the_closest_top_two() {
        let arch = Arch::custom("hardest-test", build::MNIST_INPUT, build::mlp(&[16, 10]));
        let net = Net::new(&arch, 3, &candle_core::Device::Cpu).expect("a network");
        let pool = numbered(40);
        let picked = hardest(&net, &pool, 5).expect("runs");
        assert_eq!(picked.len(), 5);
        let margin = |s: &Split, i: usize| -> f32 {
            let x = train::images_tensor(s, &[i], None, &candle_core::Device::Cpu).expect("x");
            let row = net.forward(&x, crate::net::Mode::Eval).expect("forward");
            let row: Vec<f32> = row.flatten_all().expect("flat").to_vec1().expect("row");
            let (a, b) = crate::logit_range::top_two(&row);
            a - b
        };
        let worst_picked = (0..5).map(|i| margin(&picked, i)).fold(0.0, f32::max);
        let chosen: Vec<u8> = (0..5).map(|i| picked.image(i)[0]).collect();
        for i in (0..40).filter(|i| !chosen.contains(&u8::try_from(*i).unwrap_or(0))) {
            assert!(margin(&pool, i) >= worst_picked, "image {i}");
        }
    }
}
