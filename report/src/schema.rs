//! The per-model JSON report, `models/<id>.json`: written by the trainer (`float`, `int8`) and
//! by `firmware-sim device` (`firmware`), always through [`ModelReport::write`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use fashion_mnist::augment::Augmentation;
use fashion_mnist::splits::SplitPlan;

use crate::metrics::Metrics;
use crate::optimizer::{OptimizerConfig, StepLr};

/// Errors reading or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a valid report.
    #[error("{path}: not a model report: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A Markdown file lacks the markers of a generated section.
    #[error("{path}: no {begin} ... {end} section")]
    MissingSection {
        /// The file.
        path: String,
        /// The opening marker.
        begin: &'static str,
        /// The closing marker.
        end: &'static str,
    },
}

/// How a model was trained.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// Epochs over the training images.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Optimizer and its hyper-parameters.
    pub optimizer: OptimizerConfig,
    /// Step learning-rate schedule, if any.
    #[serde(default)]
    pub schedule: Option<StepLr>,
    /// How the images were divided into training, validation and test sets.
    pub split: SplitPlan,
    /// Augmentation of the training images, if any.
    #[serde(default)]
    pub augmentation: Option<Augmentation>,
    /// Seed of the initialisation, split, shuffling, dropout and augmentation generators.
    pub seed: u64,
    /// Training on only the first N images of the training split (smoke runs).
    #[serde(default)]
    pub train_limit: Option<usize>,
    /// Largest global L2 norm of the gradients; larger ones are scaled down to it before each
    /// step (PyTorch's `clip_grad_norm_`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_clip: Option<f64>,
}

impl TrainOptions {
    /// `epochs` of `optimizer` on all training images in batches of `batch_size`, without
    /// schedule or augmentation.
    pub fn plain(epochs: usize, batch_size: usize, optimizer: OptimizerConfig, seed: u64) -> Self {
        Self {
            epochs,
            batch_size,
            optimizer,
            schedule: None,
            split: SplitPlan::Full,
            augmentation: None,
            seed,
            train_limit: None,
            grad_clip: None,
        }
    }
}

/// What one training epoch did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate of the epoch.
    pub learning_rate: f64,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Training accuracy over the epoch (dropout and augmentation active).
    pub accuracy: f64,
    /// Mean loss on the validation images after the epoch, if the split has them.
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Accuracy on the validation images after the epoch, if the split has them.
    #[serde(default)]
    pub val_accuracy: Option<f64>,
    /// Wall-clock seconds of the epoch's training (without validation).
    pub seconds: f64,
}

/// What training produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatReport {
    /// Settings used.
    pub options: TrainOptions,
    /// Training images used.
    pub train_images: usize,
    /// Validation images evaluated after each epoch.
    #[serde(default)]
    pub validation_images: usize,
    /// Trainable parameters.
    pub param_count: usize,
    /// Per-epoch loss, accuracy and time.
    pub history: Vec<EpochStats>,
    /// Float metrics on the test set.
    pub test: Metrics,
    /// Size of the safetensors file in bytes.
    pub safetensors_bytes: u64,
    /// The build and machine that trained the model, and the seed. Absent from reports written
    /// before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// The build and machine a record was made with: what a reproduction needs to match (the README
/// says what is reproducible across machines).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The compiler, as `rustc -V` prints it.
    pub rustc: String,
    /// The target triple the program was built for.
    pub target: String,
    /// The versions of the crates that do the arithmetic (candle-core, candle-nn, gemm), from
    /// `Cargo.lock` at build time.
    pub crates: BTreeMap<String, String>,
    /// The CPU features detected at run time that the matrix kernels choose between (on
    /// x86-64: avx, avx2, fma, f16c, avx512f, ...); empty where none are probed.
    pub cpu_features: Vec<String>,
    /// The seed of the run.
    pub seed: u64,
}

impl Provenance {
    /// One line: compiler, target, crates, CPU features and seed.
    pub fn summary(&self) -> String {
        let crates: Vec<String> = self
            .crates
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        let features = if self.cpu_features.is_empty() {
            "none probed".to_string()
        } else {
            self.cpu_features.join(" ")
        };
        format!(
            "{}, {}, {}; CPU features: {features}; seed {}",
            self.rustc,
            self.target,
            crates.join(", "),
            self.seed
        )
    }
}

/// Int8 files (`models/<id>.fmq`) of this many bytes or more are not committed (`.gitignore`):
/// whatever is derived from one (firmware runs, prediction grids) cannot be checked from a fresh
/// checkout, so the generated reports say so instead of depending on a local file.
pub const COMMITTED_MODEL_LIMIT: u64 = 1_000_000;

/// What quantisation and verification produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Report {
    /// Training images used for activation calibration.
    pub calibration_images: usize,
    /// How activation ranges were chosen (the best candidate).
    pub calibration_method: String,
    /// Every candidate range method with its float/int8 agreement on held-out training images.
    #[serde(default)]
    pub calibration_candidates: Vec<(String, f64)>,
    /// Int8 metrics on the test set, computed by infer-core.
    pub test: Metrics,
    /// Fraction of test images where float and int8 predict the same class.
    pub agreement: f64,
    /// Size of the `.fmq` file in bytes.
    pub model_bytes: u64,
    /// CRC-32 of the `.fmq`'s payload as its header records it: ties this record to one file
    /// (firmware-sim refuses a `.fmq` whose CRC differs). Absent from records written before
    /// it, which are tied by id, length and int8 accuracy only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmq_crc32: Option<u32>,
    /// Exact scratch bytes infer-core needs (`Model::scratch_len`).
    pub scratch_bytes: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Int8 logits of the first test images, to catch silent drift in infer-core.
    #[serde(default)]
    pub golden_logits: Vec<Vec<i8>>,
    /// The build and machine that quantised the model, and the calibration seed. Absent from
    /// reports written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// Instructions per inference over a batch of images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionCounts {
    /// Mean over the images, rounded to the nearest instruction.
    pub mean: u64,
    /// Fewest for one image.
    pub min: u64,
    /// Most for one image.
    pub max: u64,
}

/// What the Cortex-M4 firmware (`firmware/`) measured for this model under QEMU, written by
/// `firmware-sim device --update-json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirmwareReport {
    /// Rust target of the firmware.
    pub target: String,
    /// The emulated board and CPU.
    pub machine: String,
    /// Cargo profile the firmware was built with.
    pub profile: String,
    /// Test images run (the first ones of the test set).
    pub images: usize,
    /// Accuracy on those images, as a fraction.
    pub accuracy: f64,
    /// Flash for code, read-only data and `.data` initialisers, without model and test images.
    pub flash_code_bytes: u64,
    /// Flash for the embedded `.fmq` model.
    pub flash_model_bytes: u64,
    /// RAM for static data (`.data`, `.bss`, `.uninit`) other than the scratch buffer.
    pub ram_static_bytes: u64,
    /// The statically reserved scratch buffer (`Model::scratch_len`).
    pub scratch_bytes: u64,
    /// Peak stack of the whole run (model loading, inference, reporting), by stack painting.
    pub peak_stack_bytes: u64,
    /// Peak stack during one inference alone (from the top of the stack).
    pub inference_stack_bytes: u64,
    /// `ram_static_bytes + scratch_bytes + peak_stack_bytes`.
    pub ram_total_bytes: u64,
    /// Instructions per inference.
    pub instructions: InstructionCounts,
    /// How instructions were counted.
    pub counting: String,
}

/// The whole report of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// Model id.
    pub id: String,
    /// Architecture summary.
    pub description: String,
    /// Layers, as the trainer describes them.
    pub layers: serde_json::Value,
    /// Training record.
    pub float: FloatReport,
    /// Quantisation record, once exported.
    pub int8: Option<Int8Report>,
    /// Cortex-M4 firmware measurements, once run on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<FirmwareReport>,
}

impl ModelReport {
    /// Reads a report.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        read_json(path)
    }

    /// Writes the report as pretty JSON with a final newline: the one writer of
    /// `models/<id>.json`. Reading a file it wrote and writing it again gives the same bytes.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        write_json(path, self)
    }

    /// The bytes [`ModelReport::write`] writes (pretty JSON with a final newline), for writers
    /// that place the file themselves ([`crate::model_set`]).
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        json_bytes(self)
    }

    /// Sets the `firmware` record of the report at `path`: reads it, replaces the record, and
    /// writes it back through [`ModelReport::write`]. Returns the updated report.
    pub fn update_firmware(path: &Path, firmware: FirmwareReport) -> Result<Self, ReportError> {
        let mut report = Self::read(path)?;
        report.firmware = Some(firmware);
        report.write(path)?;
        Ok(report)
    }

    /// Every `*.json` report in `dir`, sorted by id.
    pub fn read_dir(dir: &Path) -> Result<Vec<Self>, ReportError> {
        let io = |source| ReportError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut reports = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "json") {
                reports.push(Self::read(&path)?);
            }
        }
        reports.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(reports)
    }
}

/// A report read from the JSON file at `path`; errors name the file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ReportError::Json {
        path: path.display().to_string(),
        source,
    })
}

/// Writes `value` to `path` as pretty JSON with a final newline, atomically
/// ([`crate::atomic`]); errors name the file.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    let bytes = json_bytes(value).map_err(|e| io(e.into()))?;
    crate::atomic::write(path, &bytes).map_err(io)
}

/// `value` as pretty JSON with a final newline.
fn json_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ModelReport {
        ModelReport {
            id: "x".into(),
            description: "a test model".into(),
            layers: serde_json::json!(["Flatten", { "Dropout": { "p": 0.2_f32 } }]),
            float: FloatReport {
                options: TrainOptions {
                    epochs: 1,
                    batch_size: 2,
                    optimizer: crate::optimizer::OptimizerConfig::adam(),
                    schedule: None,
                    split: SplitPlan::Full,
                    augmentation: None,
                    seed: 3,
                    train_limit: None,
                    grad_clip: None,
                },
                train_images: 4,
                validation_images: 0,
                param_count: 5,
                history: vec![EpochStats {
                    epoch: 1,
                    learning_rate: 1e-3,
                    loss: 0.429_189_222_167_804_03,
                    accuracy: 0.817_366_666_666_666_7,
                    val_loss: Some(0.5),
                    val_accuracy: Some(0.8),
                    seconds: 2.117_975_022,
                }],
                test: Metrics::new(&[0, 1, 1], &[0, 1, 0], 2),
                safetensors_bytes: 6,
                provenance: None,
            },
            int8: None,
            firmware: None,
        }
    }

    fn firmware(scratch_bytes: u64) -> FirmwareReport {
        FirmwareReport {
            target: "thumbv7em-none-eabihf".into(),
            machine: "board".into(),
            profile: "release".into(),
            images: 2,
            accuracy: 0.905,
            flash_code_bytes: 1,
            flash_model_bytes: 2,
            ram_static_bytes: 3,
            scratch_bytes,
            peak_stack_bytes: 5,
            inference_stack_bytes: 6,
            ram_total_bytes: 12,
            instructions: InstructionCounts {
                mean: 7,
                min: 6,
                max: 8,
            },
            counting: "SysTick".into(),
        }
    }

    #[test]
    fn the_firmware_record_is_set_through_the_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        report().write(&path).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();

        let updated = ModelReport::update_firmware(&path, firmware(4)).unwrap();
        let once = std::fs::read_to_string(&path).unwrap();
        assert_eq!(ModelReport::read(&path).unwrap(), updated);
        assert_eq!(updated.firmware, Some(firmware(4)));
        // Everything before the record is kept byte for byte, floats included; the record comes
        // last.
        let body = before.trim_end().strip_suffix('}').unwrap().trim_end();
        assert!(once.starts_with(body), "{once}");
        assert!(once.contains("\"firmware\": {") && once.ends_with("}\n}\n"));

        ModelReport::update_firmware(&path, firmware(40)).unwrap();
        let twice = std::fs::read_to_string(&path).unwrap();
        assert_eq!(twice.matches("firmware").count(), 1);
        ModelReport::update_firmware(&path, firmware(4)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), once);
    }

    #[test]
    fn a_report_read_and_written_back_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let mut r = report();
        r.firmware = Some(firmware(4));
        r.float.provenance = Some(Provenance {
            rustc: "rustc 1.95.0".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            crates: [("gemm".to_string(), "0.19.0".to_string())].into(),
            cpu_features: vec!["avx2".into()],
            seed: 3,
        });
        r.write(&path).unwrap();
        assert_eq!(ModelReport::read(&path).unwrap(), r);
        let text = std::fs::read_to_string(&path).unwrap();
        ModelReport::read(&path).unwrap().write(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.json");
        std::fs::write(&path, "{").unwrap();
        let msg = ModelReport::read(&path).unwrap_err().to_string();
        assert!(
            msg.contains("broken.json") && msg.contains("not a model report"),
            "{msg}"
        );
    }
}
