//! The steps of the main job for one model: train (and record the float report), load an
//! already trained model, export (quantise, verify, record the int8 report), and the summary
//! table. `main.rs` is only the command line around them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use fashion_mnist::splits::{SplitError, Splits};
use fashion_mnist::{Dataset, NUM_CLASSES, Split};
use model_report::markdown::summary_table;
use model_report::model_set::{self, Member, NewSet, SetError};
use model_report::optimizer::OptimizerConfig;
use model_report::{
    FloatReport, ForestOptions, ForestReport, Metrics, ModelReport, ReportError, TrainOptions,
};

use crate::arch::{Arch, ArchError};
use crate::export::{self, ExportError};
use crate::forest::{self, Forest, ForestError};
use crate::net::{Net, NetError};
use crate::progress::{Event, Progress};
use crate::train::{self, Control, Outcome, TrainError};

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The architecture is invalid.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// Building, training or running the float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// The data could not be split as the recipe asks.
    #[error(transparent)]
    Split(#[from] SplitError),
    /// Quantising or verifying the export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Reading or writing a report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A model's files could not be replaced as a set.
    #[error(transparent)]
    Set(#[from] SetError),
    /// The trained network is not worth exporting (`--force` exports it anyway).
    #[error("{id}: {why}; not exported (--force exports it anyway)")]
    NotSane {
        /// Model id.
        id: String,
        /// What is wrong.
        why: String,
    },
    /// Fitting a random forest failed.
    #[error(transparent)]
    Forest(#[from] ForestError),
    /// A study's accuracy charts could not be drawn.
    #[error(transparent)]
    StudyChart(#[from] crate::study_charts::StudyChartError),
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Trained weights to export are missing or unreadable.
    #[error("loading {path} (train it first: trainer train -m {id}): {source}")]
    NotTrained {
        /// The weights file.
        path: PathBuf,
        /// Model id.
        id: String,
        /// The cause.
        source: Box<NetError>,
    },
    /// The layer list could not be recorded in the report.
    #[error("recording the layers: {0}")]
    Layers(#[from] serde_json::Error),
    /// A report could not be serialised.
    #[error("{id}: serialising the report: {source}")]
    ReportJson {
        /// Model id.
        id: String,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Changes to a model's recipe from the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    /// Epochs.
    pub epochs: Option<usize>,
    /// Mini-batch size.
    pub batch_size: Option<usize>,
    /// Optimizer (with PyTorch's defaults unless `learning_rate` is given too).
    pub optimizer: Option<OptimizerConfig>,
    /// Learning rate.
    pub learning_rate: Option<f64>,
    /// Train on only the first N images of the training split.
    pub train_limit: Option<usize>,
    /// Trees of a random forest.
    pub trees: Option<usize>,
}

/// Settings shared by the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Changes to each model's recipe.
    pub overrides: Overrides,
    /// Seed for initialisation, split, shuffling, dropout, augmentation and calibration.
    pub seed: u64,
    /// Where models and reports are written.
    pub out_dir: PathBuf,
    /// Where training checkpoints are written (`<id>.ckpt`).
    pub checkpoint_dir: PathBuf,
    /// Continue interrupted runs from their checkpoints.
    pub resume: bool,
    /// Write the checkpoint within an epoch after this long ([`train::Control::save_every`]).
    pub checkpoint_every: Option<std::time::Duration>,
    /// Where progress goes (bars and metrics tables only in [`Progress::Bars`]).
    pub progress: Progress,
    /// Training images that calibrate activation ranges (as many more choose the method).
    pub calibration_images: usize,
    /// Export even a model that fails [`sanity`].
    pub force: bool,
}

impl Settings {
    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.out_dir.join(format!("{id}.{ext}"))
    }

    /// The checkpoint of model `id`'s run.
    pub fn checkpoint(&self, id: &str) -> PathBuf {
        self.checkpoint_dir.join(format!("{id}.ckpt"))
    }

    /// The options a run of `arch` uses: its recipe with the overrides.
    pub fn options(&self, arch: &Arch) -> TrainOptions {
        let r = &arch.recipe;
        let o = &self.overrides;
        let mut optimizer = o.optimizer.unwrap_or(r.optimizer);
        if let Some(lr) = o.learning_rate {
            optimizer = optimizer.with_lr(lr);
        }
        TrainOptions {
            epochs: o.epochs.unwrap_or(r.epochs),
            batch_size: o.batch_size.unwrap_or(r.batch_size),
            optimizer,
            schedule: r.schedule,
            split: r.split,
            augmentation: r.augmentation,
            seed: self.seed,
            train_limit: o.train_limit,
            grad_clip: r.grad_clip,
        }
    }
}

/// The training, validation and test images of a run with `options`.
pub fn splits(dataset: &Dataset, options: &TrainOptions) -> Result<Splits, PipelineError> {
    let mut splits = options.split.apply(dataset, options.seed)?;
    if let Some(n) = options.train_limit {
        splits.train = splits.train.head(n);
    }
    Ok(splits)
}

/// The seed of a model's initial weights: the run's seed mixed with the model's id, so two
/// models of the same layers (S4's cnn1 and cnn2) start apart.
pub fn init_seed(id: &str, seed: u64) -> u64 {
    // FNV-1a over the id, then the seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes().chain(seed.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A trained network with its report and its float predictions on the test set.
pub struct Trained {
    /// The network.
    pub net: Net,
    /// Its report (float part filled in).
    pub report: ModelReport,
    /// Float predictions on the test set.
    pub predictions: Vec<u8>,
    /// The images it was trained and is tested on.
    pub data: Dataset,
}

/// How [`train_one`] ended.
pub enum TrainResult {
    /// Training finished: the weights and float report are written.
    Done(Box<Trained>),
    /// Stopped early (Ctrl-C); the checkpoint holds the state.
    Stopped {
        /// Epochs completed.
        epochs_done: usize,
        /// Batches of the next epoch completed.
        batches: usize,
        /// The checkpoint.
        checkpoint: PathBuf,
    },
}

/// Trains one model with its recipe and the overrides, saves its weights and float report.
pub fn train_one(
    arch: &Arch,
    dataset: &Dataset,
    s: &Settings,
    stop: Option<&AtomicBool>,
) -> Result<TrainResult, PipelineError> {
    let options = s.options(arch);
    let splits = splits(dataset, &options)?;
    let net = Net::new(arch, init_seed(arch.id, s.seed), &Device::Cpu)?;
    let param_count = arch.param_count()?;
    std::fs::create_dir_all(&s.out_dir).map_err(|source| PipelineError::Io {
        path: s.out_dir.clone(),
        source,
    })?;
    tracing::info!(
        "training {} ({param_count} params) for {} epochs on {} images ({} validation, {} test), {} lr {}, batch {}",
        arch.id,
        options.epochs,
        splits.train.len(),
        splits.validation.as_ref().map_or(0, Split::len),
        splits.test.len(),
        options.optimizer.name(),
        options.optimizer.lr(),
        options.batch_size,
    );
    if options.batch_size < 16 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
        tracing::warn!(
            "{}: batches of {} train several times faster on one thread: set RAYON_NUM_THREADS=1",
            arch.id,
            options.batch_size
        );
    }
    let checkpoint = s.checkpoint(arch.id);
    let control = Control {
        progress: s.progress,
        checkpoint: Some(checkpoint.clone()),
        resume: s.resume,
        save_every: s.checkpoint_every,
        stop,
        max_batches: None,
    };
    let history = match train::train(
        &net,
        &splits.train,
        splits.validation.as_ref(),
        &options,
        &control,
    )? {
        Outcome::Finished(h) => h,
        Outcome::Stopped {
            epochs_done,
            batches,
        } => {
            return Ok(TrainResult::Stopped {
                epochs_done,
                batches,
                checkpoint,
            });
        }
    };
    let predictions = train::predict(&net, &splits.test, 500)?;
    let test = Metrics::new(&splits.test.labels, &predictions, NUM_CLASSES);
    s.progress.emit(&Event::Test {
        model: arch.id,
        precision: "float",
        accuracy: test.accuracy,
    });
    if s.progress.human() {
        eprintln!("{}: float test metrics\n{test}", arch.id);
    }
    let weights = net.to_safetensors(&s.file(arch.id, "safetensors"))?;
    let safetensors_bytes = weights.len() as u64;
    let report = ModelReport {
        id: arch.id.to_string(),
        description: arch.description.to_string(),
        layers: serde_json::to_value(&arch.layers)?,
        float: FloatReport {
            options,
            train_images: splits.train.len(),
            validation_images: splits.validation.as_ref().map_or(0, Split::len),
            param_count,
            history,
            test,
            safetensors_bytes,
            provenance: Some(crate::provenance::current(s.seed)),
        },
        int8: None,
        firmware: None,
    };
    // A new float network: an `.fmq` of the earlier one would no longer belong to it.
    write_set(s, &report, Member::Remove, Member::Write(weights))?;
    Ok(TrainResult::Done(Box::new(Trained {
        net,
        report,
        predictions,
        data: Dataset {
            train: splits.train,
            test: splits.test,
        },
    })))
}

/// Loads trained weights and their report, re-evaluating the float model on its test images
/// so the report describes the network as this build computes it.
pub fn load_trained(
    arch: &Arch,
    dataset: &Dataset,
    s: &Settings,
) -> Result<Trained, PipelineError> {
    let weights = s.file(arch.id, "safetensors");
    let net =
        Net::load(arch, &weights, &Device::Cpu).map_err(|source| PipelineError::NotTrained {
            path: weights.clone(),
            id: arch.id.to_string(),
            source: Box::new(source),
        })?;
    let mut report = ModelReport::read(&s.file(arch.id, "json"))?;
    let splits = splits(dataset, &report.float.options)?;
    let predictions = train::predict(&net, &splits.test, 500)?;
    report.float.test = Metrics::new(&splits.test.labels, &predictions, NUM_CLASSES);
    Ok(Trained {
        net,
        report,
        predictions,
        data: Dataset {
            train: splits.train,
            test: splits.test,
        },
    })
}

/// Float test accuracy a model must beat to be exported: twice chance (10 classes).
pub const MIN_EXPORT_ACCURACY: f64 = 2.0 / NUM_CLASSES as f64;

/// Why a trained network is not worth exporting, if it is not: a weight or bias that is not
/// finite, or float test accuracy at chance level (under [`MIN_EXPORT_ACCURACY`]).
pub fn sanity(net: &Net, report: &ModelReport) -> Result<(), PipelineError> {
    let fail = |why: String| PipelineError::NotSane {
        id: net.arch.id.to_string(),
        why,
    };
    for (path, values) in net.tensors_as_vecs()? {
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(fail(format!("tensor {path} holds {bad}")));
        }
    }
    let accuracy = report.float.test.accuracy;
    if accuracy.is_nan() || accuracy < MIN_EXPORT_ACCURACY {
        return Err(fail(format!(
            "float test accuracy {:.2}% is at chance level (under {:.0}%)",
            100.0 * accuracy,
            100.0 * MIN_EXPORT_ACCURACY
        )));
    }
    Ok(())
}

/// Quantises, writes and verifies the `.fmq`, and records the int8 report; refuses a model
/// that fails [`sanity`] unless `s.force`.
pub fn export_one(trained: Trained, s: &Settings) -> Result<ModelReport, PipelineError> {
    let Trained {
        net,
        mut report,
        predictions,
        data,
    } = trained;
    if s.force {
        if let Err(e) = sanity(&net, &report) {
            tracing::warn!("exporting anyway (--force): {e}");
        }
    } else {
        sanity(&net, &report)?;
    }
    tracing::info!("quantising and verifying {}", net.arch.id);
    let export::Exported { bytes, int8 } =
        export::export(&net, &data, &predictions, s.calibration_images, s.seed)?;
    tracing::info!(
        "{}: int8 test accuracy {:.2}% (float {:.2}%), agreement {:.2}%",
        net.arch.id,
        100.0 * int8.test.accuracy,
        100.0 * report.float.test.accuracy,
        100.0 * int8.agreement
    );
    s.progress.emit(&Event::Exported {
        model: net.arch.id,
        path: &s.file(net.arch.id, "fmq").display().to_string(),
        int8_accuracy: int8.test.accuracy,
        float_accuracy: report.float.test.accuracy,
        agreement: int8.agreement,
    });
    if s.progress.human() {
        eprintln!(
            "{}: int8 test metrics (infer-core)\n{}",
            net.arch.id, int8.test
        );
    }
    report.int8 = Some(int8);
    write_set(s, &report, Member::Write(bytes), Member::Keep)?;
    Ok(report)
}

/// Replaces the model's files in the output folder as one set ([`model_set`]): `report` as its
/// JSON, with `fmq` and `safetensors`.
fn write_set(
    s: &Settings,
    report: &ModelReport,
    fmq: Member,
    safetensors: Member,
) -> Result<(), PipelineError> {
    let json = report
        .to_bytes()
        .map_err(|source| PipelineError::ReportJson {
            id: report.id.clone(),
            source,
        })?;
    model_set::replace(
        &s.out_dir,
        &NewSet {
            id: report.id.clone(),
            json,
            fmq,
            safetensors,
        },
    )?;
    Ok(())
}

/// The settings a fit of `forest` uses: its study's with the overrides that apply to a forest
/// (trees, training images, seed).
pub fn forest_options(forest: &Forest, s: &Settings) -> ForestOptions {
    ForestOptions {
        trees: s.overrides.trees.unwrap_or(forest.options.trees),
        train_limit: s.overrides.train_limit,
        seed: s.seed,
        ..forest.options
    }
}

/// Fits `forest` on the official training images, evaluates it on the test images and writes
/// its report (`<out_dir>/forests/<id>.json`).
pub fn fit_forest(
    forest: &Forest,
    dataset: &Dataset,
    s: &Settings,
) -> Result<ForestReport, PipelineError> {
    let options = forest_options(forest, s);
    let report =
        forest::train_and_evaluate(forest, &options, &dataset.train, &dataset.test, s.progress)?;
    tracing::info!(
        "{}: test accuracy {:.2}%, {} trees fitted in {:.1} s on {} threads",
        forest.id,
        100.0 * report.test.accuracy,
        options.trees,
        report.fit_seconds,
        report.threads
    );
    if s.progress.human() {
        eprintln!("{}: test metrics\n{}", forest.id, report.test);
    }
    report.write(&ForestReport::path(&s.out_dir, forest.id))?;
    Ok(report)
}

/// Writes `<dir>/summary.md` from the reports in `dir` and returns the table.
pub fn write_summary(dir: &Path) -> Result<String, PipelineError> {
    let table = summary_table(&ModelReport::read_dir(dir)?);
    let path = dir.join("summary.md");
    let text = format!(
        "# Exported models\n\nGenerated by `trainer report` from `*.json` in this folder.\n\n{table}"
    );
    model_report::atomic::write(&path, text.as_bytes())
        .map_err(|source| PipelineError::Io { path, source })?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(accuracy: f64) -> ModelReport {
        let mut test = Metrics::new(&[0, 1], &[0, 1], NUM_CLASSES);
        test.accuracy = accuracy;
        ModelReport {
            id: "s5-ann".into(),
            description: String::new(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options: TrainOptions::plain(1, 64, OptimizerConfig::sgd(0.01), 1),
                train_images: 2,
                validation_images: 0,
                param_count: 0,
                history: Vec::new(),
                test,
                safetensors_bytes: 0,
                provenance: None,
            },
            int8: None,
            firmware: None,
        }
    }

    #[test]
    fn chance_accuracy_and_non_finite_weights_are_refused() {
        let arch = crate::arch::by_id("s5-ann").unwrap();
        let net = Net::new(&arch, 1, &Device::Cpu).unwrap();
        assert!(sanity(&net, &report(0.85)).is_ok());
        let e = sanity(&net, &report(0.1)).unwrap_err().to_string();
        assert!(e.contains("chance") && e.contains("--force"), "{e}");
        assert!(sanity(&net, &report(f64::NAN)).is_err());
        // One weight turned into NaN.
        let mut values = net.tensors_as_vecs().unwrap();
        let path = values.keys().next().unwrap().clone();
        if let Some(v) = values.get_mut(&path) {
            v[0] = f32::NAN;
        }
        let shapes = net.tensors();
        let fresh = values
            .into_iter()
            .map(|(k, v)| {
                let t = candle_core::Tensor::from_vec(v, shapes[&k].shape(), &Device::Cpu);
                (k, t.unwrap())
            })
            .collect();
        net.set_tensors(&fresh, "test").unwrap();
        let e = sanity(&net, &report(0.85)).unwrap_err().to_string();
        assert!(e.contains(&path) && e.contains("NaN"), "{e}");
    }
}
