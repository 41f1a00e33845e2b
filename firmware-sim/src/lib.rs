//! Runs exported `.fmq` models through infer-core exactly as firmware would: the model bytes
//! are validated once by [`infer_core::Model::from_bytes`], and every image is classified with
//! one fixed-size scratch buffer ([`SCRATCH_CAPACITY`] bytes) shared by all models.
//!
//! [`device`] does the same on the Cortex-M4 itself: it builds `firmware/` for a model, runs it
//! under QEMU and checks its logits against these.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fashion_mnist::Split;
use infer_core::Model;
use model_report::{ModelReport, evaluate_int8_any};
use serde::Serialize;

pub mod device;

/// Op capacity of the models loaded on the host (`Model::<MAX_OPS>`): a ResNet-34, about 55
/// ops, loads.
pub const MAX_OPS: usize = model_report::HOST_MAX_OPS;

/// Size of the one scratch buffer shared by every model on the host, as a firmware image would
/// reserve it statically: room for the largest model of the zoo (the board's own limit is
/// checked by `device`, per model).
pub const SCRATCH_CAPACITY: usize = 256 * 1024;

/// Largest accepted drop of int8 accuracy below float accuracy, as a fraction (0.5 points).
pub const MAX_DROP: f64 = 0.005;

/// Smallest accepted top-1 agreement between the int8 model and its float network on the test
/// images, as a fraction (99%). firmware-sim has no float network: it takes the agreement the
/// trainer measured at export (`int8.agreement` in `<id>.json`), once its own int8 accuracy
/// shows that record describes this very file.
pub const MIN_AGREEMENT: f64 = 0.99;

/// The result of one model over the test set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRun {
    /// Model id (from the file).
    pub id: String,
    /// The `.fmq` file.
    #[serde(skip)]
    pub path: PathBuf,
    /// Int8 accuracy through infer-core, as a fraction.
    pub int8_accuracy: f64,
    /// Float accuracy recorded by the trainer in `<id>.json`, as a fraction.
    pub float_accuracy: f64,
    /// The int8 record in `<id>.json`: `(int8 accuracy, top-1 agreement with float)` as the
    /// trainer measured them at export; `None` if the file has no int8 record.
    pub recorded: Option<(f64, f64)>,
    /// Recall of each class under int8.
    #[serde(skip)]
    pub per_class_accuracy: Vec<f64>,
    /// Size of the model file.
    pub model_bytes: usize,
    /// Scratch bytes the model needs.
    pub scratch_bytes: usize,
    /// Mean wall-clock microseconds per inference (single thread, batch 1).
    pub us_per_inference: f64,
}

impl ModelRun {
    /// Why the model fails the gate, or `None` if it passes: int8 accuracy within [`MAX_DROP`]
    /// of float accuracy, and a recorded agreement of at least [`MIN_AGREEMENT`] that belongs
    /// to this file (the recorded int8 accuracy equals the one measured here).
    pub fn failure(&self) -> Option<String> {
        if self.int8_accuracy < self.float_accuracy - MAX_DROP {
            return Some("more than 0.5 pts below float".into());
        }
        match self.recorded {
            None => Some("no int8 record in its JSON (export it with the trainer)".into()),
            Some((accuracy, _)) if accuracy != self.int8_accuracy => Some(format!(
                "its JSON records int8 accuracy {:.2}%, not this file's (re-export it)",
                100.0 * accuracy
            )),
            Some((_, agreement)) if agreement < MIN_AGREEMENT => Some(format!(
                "agrees with float on {:.2}% of test images, under 99%",
                100.0 * agreement
            )),
            Some(_) => None,
        }
    }

    /// Whether the model passes the gate ([`ModelRun::failure`] is `None`).
    pub fn passes(&self) -> bool {
        self.failure().is_none()
    }
}

/// The `.fmq` files in `dir`, sorted by name.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading model folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "fmq"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .fmq model files in {}", dir.display());
    }
    Ok(files)
}

/// Loads `path`, runs it on every test image with `scratch`, and compares with the float
/// accuracy in the `.json` beside it.
pub fn run_model(path: &Path, test: &Split, scratch: &mut [i8]) -> Result<ModelRun> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let model = Model::<MAX_OPS>::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: infer-core rejects the model: {e}", path.display()))?;
    if model.scratch_len() > scratch.len() {
        bail!(
            "{}: needs {} scratch bytes, the firmware buffer holds {}",
            path.display(),
            model.scratch_len(),
            scratch.len()
        );
    }
    let json = path.with_extension("json");
    let report = ModelReport::read(&json)?;
    check_pair(path, &bytes, model.id(), &json, &report)?;
    let start = Instant::now();
    let metrics = evaluate_int8_any(&model, test, scratch, 0)
        .map_err(|e| anyhow::anyhow!("{}: inference failed: {e}", path.display()))?
        .metrics;
    let us = start.elapsed().as_secs_f64() * 1e6 / test.len().max(1) as f64;
    Ok(ModelRun {
        id: model.id().to_string(),
        path: path.to_path_buf(),
        int8_accuracy: metrics.accuracy,
        float_accuracy: report.float.test.accuracy,
        recorded: report.int8.as_ref().map(|r| (r.test.accuracy, r.agreement)),
        per_class_accuracy: metrics.per_class_accuracy,
        model_bytes: bytes.len(),
        scratch_bytes: model.scratch_len(),
        us_per_inference: us,
    })
}

/// The check that a `.fmq` and its JSON belong together (id, length, CRC): the same one the
/// trainer's export runs before it replaces a model's files.
pub use model_report::model_set::check_pair;

/// Human-readable report of one run.
pub fn describe(run: &ModelRun) -> String {
    let per_class: Vec<String> = run
        .per_class_accuracy
        .iter()
        .enumerate()
        .map(|(c, a)| {
            // A model may have more classes than Fashion-MNIST names: those show their number.
            let name = fashion_mnist::CLASS_NAMES
                .get(c)
                .map_or_else(|| format!("class {c}"), |n| (*n).to_string());
            format!("{name} {:.1}", 100.0 * a)
        })
        .collect();
    format!(
        "{id}: int8 {int8:.2}%  float {float:.2}%  diff {diff:+.2} pts  agreement {agree}  \
         {verdict}\n  \
         per-class int8 %: {pc}\n  {us:.1} us/inference, model {mb} bytes, scratch {sb} bytes",
        id = run.id,
        int8 = 100.0 * run.int8_accuracy,
        float = 100.0 * run.float_accuracy,
        diff = 100.0 * (run.int8_accuracy - run.float_accuracy),
        agree = run.recorded.map_or_else(
            || "unrecorded".into(),
            |(_, a)| format!("{:.2}%", 100.0 * a)
        ),
        verdict = run
            .failure()
            .map_or_else(|| "ok".into(), |why| format!("FAIL ({why})")),
        pc = per_class.join(", "),
        us = run.us_per_inference,
        mb = run.model_bytes,
        sb = run.scratch_bytes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(int8: f64, float: f64, recorded: Option<(f64, f64)>) -> ModelRun {
        ModelRun {
            id: "m".into(),
            path: PathBuf::from("m.fmq"),
            int8_accuracy: int8,
            float_accuracy: float,
            recorded,
            per_class_accuracy: Vec::new(),
            model_bytes: 1,
            scratch_bytes: 1,
            us_per_inference: 1.0,
        }
    }

    #[test]
    fn the_gate_checks_accuracy_and_the_recorded_agreement_of_this_file() {
        assert!(run(0.90, 0.902, Some((0.90, 0.995))).passes());
        let too_low = run(0.89, 0.90, Some((0.89, 0.995)));
        assert!(too_low.failure().is_some_and(|w| w.contains("0.5 pts")));
        let disagrees = run(0.90, 0.90, Some((0.90, 0.985)));
        assert!(disagrees.failure().is_some_and(|w| w.contains("98.50%")));
        let stale = run(0.90, 0.90, Some((0.91, 0.995)));
        assert!(stale.failure().is_some_and(|w| w.contains("re-export")));
        assert!(run(0.90, 0.90, None).failure().is_some());
        assert!(describe(&disagrees).contains("FAIL (agrees with float on 98.50%"));
        assert!(describe(&run(0.9, 0.9, Some((0.9, 0.995)))).contains("agreement 99.50%  ok"));
    }
}
