//! The per-model JSON report (`models/<id>.json`) and the printed summary table.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::train::{EpochStats, TrainOptions};

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
}

/// What training produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloatReport {
    /// Settings used.
    pub options: TrainOptions,
    /// Training images used.
    pub train_images: usize,
    /// Trainable parameters.
    pub param_count: usize,
    /// Per-epoch loss, accuracy and time.
    pub history: Vec<EpochStats>,
    /// Float metrics on the test set.
    pub test: Metrics,
    /// Size of the safetensors file in bytes.
    pub safetensors_bytes: u64,
}

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
    /// Exact scratch bytes infer-core needs (`Model::scratch_len`).
    pub scratch_bytes: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Int8 logits of the first test images, to catch silent drift in infer-core.
    #[serde(default)]
    pub golden_logits: Vec<Vec<i8>>,
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
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.display().to_string(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ReportError::Json {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes the report as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let io = |source| ReportError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        std::fs::write(path, text + "\n").map_err(io)
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

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// A Markdown table of the reports: float and int8 accuracy, agreement, sizes.
pub fn summary_table(reports: &[ModelReport]) -> String {
    let mut out = String::from(
        "| model | params | epochs | float acc % | int8 acc % | diff (pts) | agreement % | macro F1 (int8) | model bytes | scratch bytes | MACs |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let f = &r.float;
        let (int8, diff, agree, f1, bytes, scratch, macs) = match &r.int8 {
            Some(q) => (
                pct(q.test.accuracy),
                format!("{:+.2}", 100.0 * (q.test.accuracy - f.test.accuracy)),
                pct(q.agreement),
                format!("{:.4}", q.test.macro_f1),
                q.model_bytes.to_string(),
                q.scratch_bytes.to_string(),
                q.macs.to_string(),
            ),
            None => Default::default(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {int8} | {diff} | {agree} | {f1} | {bytes} | {scratch} | {macs} |\n",
            r.id,
            f.param_count,
            f.options.epochs,
            pct(f.test.accuracy),
        );
    }
    out
}

/// Marker before the generated table in README.
pub const README_BEGIN: &str = "<!-- results:begin -->";
/// Marker after the generated table in README.
pub const README_END: &str = "<!-- results:end -->";

/// `text` with everything between [`README_BEGIN`] and [`README_END`] replaced by `table`, or
/// `None` when the markers are missing or out of order.
pub fn replace_between_markers(text: &str, table: &str) -> Option<String> {
    let begin = text.find(README_BEGIN)? + README_BEGIN.len();
    let end = begin + text[begin..].find(README_END)?;
    Some(format!("{}\n{table}{}", &text[..begin], &text[end..]))
}

/// Rewrites the generated table in a README file.
pub fn update_readme(path: &Path, table: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.display().to_string(),
        source,
    };
    let text = std::fs::read_to_string(path).map_err(io)?;
    let new = replace_between_markers(&text, table).ok_or_else(|| {
        io(std::io::Error::other(format!(
            "no {README_BEGIN} ... {README_END} section"
        )))
    })?;
    std::fs::write(path, new).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_delimit_the_generated_table() {
        let text = format!("intro\n{README_BEGIN}\nold\n{README_END}\nrest\n");
        let new = replace_between_markers(&text, "| t |\n").unwrap();
        assert_eq!(
            new,
            format!("intro\n{README_BEGIN}\n| t |\n{README_END}\nrest\n")
        );
        assert_eq!(replace_between_markers("no markers", "x"), None);
    }
}
