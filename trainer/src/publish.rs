//! `trainer publish`: copies finished runs from the run folder (`runs/`, where `run`, `train`,
//! `export` and `study` write by default) into the published folder (`models/`), each model's
//! `.fmq`, `.json` and `.safetensors` as one verified set ([`model_report::model_set`]), and
//! regenerates what is derived from the published folder ([`regenerate`]: its `summary.md`, the
//! README's results table, the model pages, the index and the study reports).
//!
//! A model's `firmware` record (what `firmware-sim device` measured on the Cortex-M4 under QEMU)
//! is carried over when the published `.fmq` is byte for byte the one it was measured on, and
//! dropped otherwise: publish does not build firmware. [`Published::next_steps`] gives the
//! commands that measure it again and, for an int8 file small enough to commit, record the new
//! golden logits.

use std::path::{Path, PathBuf};

use fashion_mnist::Dataset;
use model_report::markdown::RESULTS;
use model_report::model_set::{self, Member, NewSet, SetError};
use model_report::{COMMITTED_MODEL_LIMIT, ForestReport, ModelReport, ReportError};

use crate::arch;
use crate::model_pages::{self, PagesError};
use crate::pipeline::{PipelineError, write_summary};
use crate::study::is_optimizer_variant;
use crate::zoo;

/// The run folder: where the per-model commands write by default. Not committed.
pub const RUNS: &str = "runs";

/// The published folder: the committed models the README, the reports and the tests describe.
pub const MODELS: &str = "models";

/// Why a publication failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A report could not be read or written.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A model's set could not be replaced (or does not verify).
    #[error(transparent)]
    Set(#[from] SetError),
    /// The run is not one to publish.
    #[error("{path}: the run of {id} is not finished: {why}")]
    Unfinished {
        /// The run's report.
        path: PathBuf,
        /// Model id.
        id: String,
        /// What is missing.
        why: String,
    },
    /// The id is not a model of the zoo.
    #[error("{path}: `{id}` is not a model of the zoo (trainer list)")]
    Unknown {
        /// The run's report.
        path: PathBuf,
        /// The id.
        id: String,
    },
    /// Nothing to publish.
    #[error("{0}: no runs to publish")]
    Nothing(PathBuf),
    /// A report could not be serialised.
    #[error("{id}: serialising the report: {source}")]
    Json {
        /// Model id.
        id: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// The summary could not be written.
    #[error(transparent)]
    Summary(#[from] PipelineError),
    /// The pages could not be written.
    #[error(transparent)]
    Pages(#[from] PagesError),
}

/// What [`publish`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// Networks published, by id.
    pub models: Vec<String>,
    /// Random forests published, by id.
    pub forests: Vec<String>,
    /// Networks whose `firmware` record was carried over (same `.fmq`).
    pub firmware_kept: Vec<String>,
    /// Networks with a new `.fmq`: no `firmware` record until `firmware-sim device` runs.
    pub new_int8: Vec<String>,
    /// Those of `new_int8` whose `.fmq` is under [`COMMITTED_MODEL_LIMIT`]: the parity test
    /// checks their logits against golden files, which must be recorded again. (A larger file
    /// is not committed, and the parity test skips it.)
    pub new_golden: Vec<String>,
}

impl Published {
    /// The commands to run after publishing into `to` (with `readme` as the README), for the
    /// models with a new `.fmq`; empty if there are none.
    pub fn next_steps(&self, to: &Path, readme: &Path) -> Vec<String> {
        if self.new_int8.is_empty() {
            return Vec::new();
        }
        let models: Vec<String> = self.new_int8.iter().map(|id| format!("-m {id}")).collect();
        let mut steps = vec![format!(
            "cargo run --release -p firmware-sim -- device --models-dir {} {} --update-json --update-readme {}",
            to.display(),
            models.join(" "),
            readme.display()
        )];
        if !self.new_golden.is_empty() {
            steps.push(format!(
                "GOLDEN_RECORD=1 PARITY_ONLY={} cargo test --release -p parity-tests --test parity",
                self.new_golden.join(",")
            ));
        }
        steps
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PublishError + '_ {
    move |source| PublishError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads `path`, `None` if it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PublishError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// The ids of every network report (`*.json`) and random forest report (`forests/*.json`)
/// in `from`.
fn every_run(from: &Path) -> Result<Vec<String>, PublishError> {
    let mut ids: Vec<String> = ModelReport::read_dir(from)?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let forests = from.join(model_report::forest::FOREST_DIR);
    if forests.is_dir() {
        for entry in std::fs::read_dir(&forests).map_err(io(&forests))? {
            let path = entry.map_err(io(&forests))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                ids.push(ForestReport::read(&path)?.id);
            }
        }
    }
    Ok(ids)
}

/// Publishes the runs `ids` (every run in `from` if `None`) from `from` into `to`: first
/// recovers both folders from interrupted writers, then replaces each network's set and copies
/// each forest's report. Regenerating the derived files is [`regenerate`]'s job.
pub fn publish(ids: Option<&[String]>, from: &Path, to: &Path) -> Result<Published, PublishError> {
    for dir in [from, to] {
        let recovered = model_set::recover(dir)?;
        for id in &recovered.rolled_forward {
            tracing::info!(
                "{id}: completed its interrupted replacement in {}",
                dir.display()
            );
        }
        for path in &recovered.removed {
            tracing::info!("removed {}, left by an interrupted export", path.display());
        }
    }
    let ids = match ids {
        Some(ids) => ids.to_vec(),
        None => every_run(from)?,
    };
    if ids.is_empty() {
        return Err(PublishError::Nothing(from.to_path_buf()));
    }
    let mut published = Published::default();
    for id in &ids {
        if zoo::forest_by_id(id).is_some() {
            publish_forest(id, from, to)?;
            published.forests.push(id.clone());
        } else {
            publish_model(id, from, to, &mut published)?;
        }
    }
    Ok(published)
}

/// Copies the report of random forest `id`.
fn publish_forest(id: &str, from: &Path, to: &Path) -> Result<(), PublishError> {
    let path = ForestReport::path(from, id);
    let report = ForestReport::read(&path)?;
    if report.id != id {
        return Err(PublishError::Unknown {
            path,
            id: report.id,
        });
    }
    let target = ForestReport::path(to, id);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    report.write(&target)?;
    tracing::info!("published {}", target.display());
    Ok(())
}

/// Replaces network `id`'s set in `to` with its run in `from`.
fn publish_model(
    id: &str,
    from: &Path,
    to: &Path,
    published: &mut Published,
) -> Result<(), PublishError> {
    let file = |dir: &Path, ext: &str| dir.join(format!("{id}.{ext}"));
    let json = file(from, "json");
    let mut report = ModelReport::read(&json)?;
    let unfinished = |why: String| PublishError::Unfinished {
        path: json.clone(),
        id: id.to_string(),
        why,
    };
    let arch = arch::by_id(id).map_err(|_| PublishError::Unknown {
        path: json.clone(),
        id: id.to_string(),
    })?;
    let options = &report.float.options;
    if report.float.history.len() != options.epochs {
        return Err(unfinished(format!(
            "{} of {} epochs trained (trainer run -m {id} --resume)",
            report.float.history.len(),
            options.epochs
        )));
    }
    let exported = arch.deployable() && !is_optimizer_variant(id);
    if exported && report.int8.is_none() {
        return Err(unfinished(format!(
            "not exported yet (trainer export -m {id})"
        )));
    }
    if let Some(n) = options.train_limit {
        tracing::warn!("{id}: publishing a run on only the first {n} training images");
    }
    let fmq = read_optional(&file(from, "fmq"))?;
    let weights = read_optional(&file(from, "safetensors"))?;

    // The firmware record describes one `.fmq`: kept for the very same file, dropped otherwise.
    let old_report = ModelReport::read(&file(to, "json")).ok();
    let old_fmq = read_optional(&file(to, "fmq"))?;
    report.firmware = None;
    if let Some(fmq) = &fmq {
        if old_fmq.as_ref() == Some(fmq) {
            if let Some(firmware) = old_report.and_then(|r| r.firmware) {
                report.firmware = Some(firmware);
                published.firmware_kept.push(id.to_string());
            }
        } else {
            published.new_int8.push(id.to_string());
            if (fmq.len() as u64) < COMMITTED_MODEL_LIMIT {
                published.new_golden.push(id.to_string());
            }
        }
    }
    let member = |bytes: Option<Vec<u8>>| bytes.map_or(Member::Remove, Member::Write);
    let set = NewSet {
        id: id.to_string(),
        json: report.to_bytes().map_err(|source| PublishError::Json {
            id: id.to_string(),
            source,
        })?,
        fmq: member(fmq),
        safetensors: member(weights),
    };
    model_set::replace(to, &set)?;
    tracing::info!("published {id} into {}", to.display());
    published.models.push(id.to_string());
    Ok(())
}

/// Regenerates what is derived from the published folder `to`: `<to>/summary.md`, the results
/// table of `readme`, and every model page, the index and the study reports in `reports`
/// (with their pictures). Returns the files written.
pub fn regenerate(
    to: &Path,
    readme: &Path,
    reports: &Path,
    dataset: &Dataset,
) -> Result<Vec<PathBuf>, PublishError> {
    let table = write_summary(to)?;
    RESULTS.update_file(readme, &table)?;
    let mut written = vec![to.join("summary.md"), readme.to_path_buf()];
    written.extend(model_pages::write_all(to, reports, dataset)?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_name_the_models_with_a_new_int8_file() {
        let mut p = Published::default();
        assert!(
            p.next_steps(Path::new("models"), Path::new("README.md"))
                .is_empty()
        );
        p.new_int8 = vec!["s5-ann".into(), "s5-cnn".into()];
        p.new_golden = p.new_int8.clone();
        let steps = p.next_steps(Path::new("models"), Path::new("README.md"));
        assert_eq!(
            steps,
            [
                "cargo run --release -p firmware-sim -- device --models-dir models -m s5-ann -m s5-cnn --update-json --update-readme README.md",
                "GOLDEN_RECORD=1 PARITY_ONLY=s5-ann,s5-cnn cargo test --release -p parity-tests --test parity",
            ]
        );
    }

    #[test]
    fn next_steps_record_no_golden_logits_for_an_int8_file_too_large_to_commit() {
        let p = Published {
            new_int8: vec!["s1-resnet34".into()],
            ..Published::default()
        };
        let steps = p.next_steps(Path::new("models"), Path::new("README.md"));
        assert_eq!(
            steps,
            [
                "cargo run --release -p firmware-sim -- device --models-dir models -m s1-resnet34 --update-json --update-readme README.md",
            ]
        );
    }
}
