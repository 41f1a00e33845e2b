//! The steps of the main job for one model: train (and record the float report), load an
//! already trained model, export (quantise, verify, record the int8 report), and the summary
//! table. `main.rs` is only the command line around them.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use candle_core::Device;
use fashion_mnist::splits::{SplitError, Splits};
use fashion_mnist::{Dataset, NUM_CLASSES, Split};
use model_report::markdown::summary_table;
use model_report::optimizer::OptimizerConfig;
use model_report::{FloatReport, Metrics, ModelReport, ReportError, TrainOptions};

use crate::arch::{Arch, ArchError};
use crate::export::{self, ExportError};
use crate::net::{Net, NetError};
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
    /// No progress bars or metrics tables.
    pub quiet: bool,
    /// Training images that calibrate activation ranges (as many more choose the method).
    pub calibration_images: usize,
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
    eprintln!(
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
        eprintln!(
            "{}: batches of {} train several times faster on one thread: set RAYON_NUM_THREADS=1",
            arch.id, options.batch_size
        );
    }
    let checkpoint = s.checkpoint(arch.id);
    let control = Control {
        quiet: s.quiet,
        checkpoint: Some(checkpoint.clone()),
        resume: s.resume,
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
    if !s.quiet {
        eprintln!("{}: float test metrics\n{test}", arch.id);
    }
    let weights = s.file(arch.id, "safetensors");
    net.save(&weights)?;
    let safetensors_bytes = std::fs::metadata(&weights)
        .map_err(|source| PipelineError::Io {
            path: weights.clone(),
            source,
        })?
        .len();
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
        },
        int8: None,
        firmware: None,
    };
    report.write(&s.file(arch.id, "json"))?;
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

/// Quantises, writes and verifies the `.fmq`, and records the int8 report.
pub fn export_one(trained: Trained, s: &Settings) -> Result<ModelReport, PipelineError> {
    let Trained {
        net,
        mut report,
        predictions,
        data,
    } = trained;
    eprintln!("quantising and verifying {}", net.arch.id);
    let int8 = export::export(
        &net,
        &data,
        &predictions,
        &s.out_dir,
        s.calibration_images,
        s.seed,
    )?;
    eprintln!(
        "{}: int8 test accuracy {:.2}% (float {:.2}%), agreement {:.2}%",
        net.arch.id,
        100.0 * int8.test.accuracy,
        100.0 * report.float.test.accuracy,
        100.0 * int8.agreement
    );
    if !s.quiet {
        eprintln!(
            "{}: int8 test metrics (infer-core)\n{}",
            net.arch.id, int8.test
        );
    }
    report.int8 = Some(int8);
    report.write(&s.file(net.arch.id, "json"))?;
    Ok(report)
}

/// Writes `<dir>/summary.md` from the reports in `dir` and returns the table.
pub fn write_summary(dir: &Path) -> Result<String, PipelineError> {
    let table = summary_table(&ModelReport::read_dir(dir)?);
    let path = dir.join("summary.md");
    let text = format!(
        "# Exported models\n\nGenerated by `trainer report` from `*.json` in this folder.\n\n{table}"
    );
    std::fs::write(&path, text).map_err(|source| PipelineError::Io { path, source })?;
    Ok(table)
}
