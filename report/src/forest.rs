//! The report of a random forest, `models/forests/<id>.json`: what was fitted, how long it
//! took and its test metrics. A forest is not a network (no epochs, no int8 export), so it has
//! its own record beside the networks' [`crate::ModelReport`]s, in a folder of its own that
//! readers of `models/*.json` never see.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::metrics::Metrics;

/// The folder of the forest reports inside a models folder.
pub const FOREST_DIR: &str = "forests";

/// How a forest was fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForestOptions {
    /// Trees.
    pub trees: usize,
    /// Pixels drawn at random as split candidates at every node.
    pub features_per_split: usize,
    /// Fewest samples a node needs to be split.
    pub min_samples_split: usize,
    /// Seed of the bootstrap samples and the feature draws.
    pub seed: u64,
    /// Training on only the first N training images (smoke runs).
    #[serde(default)]
    pub train_limit: Option<usize>,
}

/// A fitted forest's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestReport {
    /// Model id.
    pub id: String,
    /// What the model is.
    pub description: String,
    /// The crate and version whose decision trees were fitted.
    pub library: String,
    /// Settings used.
    pub options: ForestOptions,
    /// Training images used.
    pub train_images: usize,
    /// Wall-clock seconds of fitting every tree.
    pub fit_seconds: f64,
    /// Threads that fitted trees side by side.
    pub threads: usize,
    /// Wall-clock seconds of classifying the test images.
    pub predict_seconds: f64,
    /// Metrics on the test images.
    pub test: Metrics,
}

impl ForestReport {
    /// The report of forest `id` in the models folder `models_dir`.
    pub fn path(models_dir: &Path, id: &str) -> PathBuf {
        models_dir.join(FOREST_DIR).join(format!("{id}.json"))
    }

    /// Reads a report.
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        crate::schema::read_json(path)
    }

    /// Writes the report as pretty JSON (creating its folder), atomically.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        crate::schema::write_json(path, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let report = ForestReport {
            id: "s1-rf".into(),
            description: "a forest".into(),
            library: "smartcore 0.7.0".into(),
            options: ForestOptions {
                trees: 3,
                features_per_split: 28,
                min_samples_split: 2,
                seed: 42,
                train_limit: Some(100),
            },
            train_images: 100,
            fit_seconds: 1.5,
            threads: 2,
            predict_seconds: 0.25,
            test: Metrics::new(&[0, 1, 1], &[0, 1, 0], 2),
        };
        let path = ForestReport::path(dir.path(), "s1-rf");
        assert!(path.ends_with("forests/s1-rf.json"));
        report.write(&path).unwrap();
        assert_eq!(ForestReport::read(&path).unwrap(), report);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[test]
    fn a_missing_or_broken_report_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        let e = ForestReport::read(&path).unwrap_err().to_string();
        assert!(e.contains("x.json"), "{e}");
        std::fs::write(&path, "{}").unwrap();
        let e = ForestReport::read(&path).unwrap_err().to_string();
        assert!(
            e.contains("x.json") && e.contains("not a model report"),
            "{e}"
        );
    }
}
