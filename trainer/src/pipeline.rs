//! The steps of the main job for one model: train (and record the float report), load an
//! already trained model, export (quantise, verify, record the int8 report), and the summary
//! table. `main.rs` is only the command line around them.

use std::path::{Path, PathBuf};

use candle_core::Device;
use fashion_mnist::{Dataset, NUM_CLASSES};
use model_report::markdown::summary_table;
use model_report::{FloatReport, Metrics, ModelReport, ReportError, TrainOptions};

use crate::arch::{Arch, ArchError};
use crate::export::{self, ExportError};
use crate::net::{Net, NetError};
use crate::train;

/// Why a pipeline step failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The architecture is invalid.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// Building, training or running the float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Quantising or verifying the export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Reading or writing a report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
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

/// Settings shared by the steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Epochs (default: the model's own setting).
    pub epochs: Option<usize>,
    /// Seed for initialisation, shuffling, dropout and calibration.
    pub seed: u64,
    /// Where models and reports are written.
    pub out_dir: PathBuf,
    /// Train on only the first N training images.
    pub train_limit: Option<usize>,
    /// No progress bars or metrics tables.
    pub quiet: bool,
    /// Training images that calibrate activation ranges (as many more choose the method).
    pub calibration_images: usize,
}

impl Settings {
    fn file(&self, id: &str, ext: &str) -> PathBuf {
        self.out_dir.join(format!("{id}.{ext}"))
    }
}

/// A trained network with its report and its float predictions on the test set.
pub struct Trained {
    /// The network.
    pub net: Net,
    /// Its report (float part filled in).
    pub report: ModelReport,
    /// Float predictions on the test set.
    pub predictions: Vec<u8>,
}

/// Trains one model, saves its weights and float report.
pub fn train_one(arch: &Arch, dataset: &Dataset, s: &Settings) -> Result<Trained, PipelineError> {
    let train_split = match s.train_limit {
        Some(n) => dataset.train.head(n),
        None => dataset.train.clone(),
    };
    let options = TrainOptions {
        epochs: s.epochs.unwrap_or(arch.settings.epochs),
        batch_size: arch.settings.batch_size,
        learning_rate: arch.settings.learning_rate,
        seed: s.seed,
    };
    let net = Net::new(arch, s.seed, &Device::Cpu)?;
    let param_count = arch.param_count()?;
    eprintln!(
        "training {} ({param_count} params) for {} epochs on {} images",
        arch.id,
        options.epochs,
        train_split.len()
    );
    let history = train::train(&net, &train_split, &options, s.quiet)?;
    let predictions = train::predict(&net, &dataset.test, 500)?;
    let test = Metrics::new(&dataset.test.labels, &predictions, NUM_CLASSES);
    if !s.quiet {
        eprintln!("{}: float test metrics\n{test}", arch.id);
    }
    std::fs::create_dir_all(&s.out_dir).map_err(|source| PipelineError::Io {
        path: s.out_dir.clone(),
        source,
    })?;
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
            train_images: train_split.len(),
            param_count,
            history,
            test,
            safetensors_bytes,
        },
        int8: None,
        firmware: None,
    };
    report.write(&s.file(arch.id, "json"))?;
    Ok(Trained {
        net,
        report,
        predictions,
    })
}

/// Loads trained weights and their report, re-evaluating the float model on the test set so the
/// report describes the network as this build computes it.
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
    let predictions = train::predict(&net, &dataset.test, 500)?;
    report.float.test = Metrics::new(&dataset.test.labels, &predictions, NUM_CLASSES);
    Ok(Trained {
        net,
        report,
        predictions,
    })
}

/// Quantises, writes and verifies the `.fmq`, and records the int8 report.
pub fn export_one(
    trained: Trained,
    dataset: &Dataset,
    s: &Settings,
) -> Result<ModelReport, PipelineError> {
    let Trained {
        net,
        mut report,
        predictions,
    } = trained;
    eprintln!("quantising and verifying {}", net.arch.id);
    let int8 = export::export(
        &net,
        dataset,
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
