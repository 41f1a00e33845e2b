//! A study's accuracy charts, `reports/<study>-accuracy-vs-params.png` and
//! `reports/<study>-accuracy-vs-macs.png`: the float test accuracy of each of its trained models
//! against its size, beside the accuracy the study published. Sizes come from the model
//! registry (as in the study's table), accuracies from `models/<id>.json`.

use std::path::{Path, PathBuf};

use model_charts::{ChartError, Size, StudyPoint};
use model_report::ModelReport;

use crate::arch::{Arch, ArchError};
use crate::study::is_optimizer_variant;
use crate::zoo::Study;

/// Why a study's charts could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum StudyChartError {
    /// A model of the study is not a valid network (its size cannot be counted).
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// Drawing or writing a chart failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// The x axes the charts are drawn against, each with its file-name suffix.
pub const AXES: [(Size, &str); 2] = [(Size::Params, "params"), (Size::Macs, "macs")];

/// The file name of `study`'s chart against `suffix` (`params` or `macs`), relative to the
/// reports folder.
pub fn file_name(study: Study, suffix: &str) -> String {
    format!("{}-accuracy-vs-{suffix}.png", study.key())
}

/// One point per model of `study` (its table's models, not S2's optimizer runs) that has a
/// report in `models_dir`, in the study's order.
pub fn points(study: Study, models_dir: &Path) -> Result<Vec<StudyPoint>, ArchError> {
    points_of(&crate::study::reports(study, models_dir))
}

/// One point per trained model of `models` (a study's models with their reports), leaving
/// out S2's optimizer runs.
pub fn points_of(models: &[(Arch, Option<ModelReport>)]) -> Result<Vec<StudyPoint>, ArchError> {
    let mut points = Vec::new();
    for (arch, report) in models {
        let Some(report) = report else { continue };
        if is_optimizer_variant(arch.id) {
            continue;
        }
        points.push(StudyPoint {
            id: arch.id.to_string(),
            params: u64::try_from(arch.param_count()?).unwrap_or(u64::MAX),
            macs: arch.macs()?,
            ours: 100.0 * report.float.test.accuracy,
            published: arch.published.test_accuracy,
        });
    }
    Ok(points)
}

/// The title of `study`'s chart against `size`.
pub fn title(study: Study, size: Size) -> String {
    let what = match size {
        Size::Params => "parameters",
        Size::Macs => "multiply-accumulates",
    };
    match study {
        Study::Demo => format!("Our own models: test accuracy against {what}"),
        Study::S1 | Study::S2 | Study::S3 | Study::S4 | Study::S5 => format!(
            "{}: test accuracy against {what}, ours and published",
            study.key().to_ascii_uppercase()
        ),
    }
}

/// Draws `study`'s two charts into `reports_dir` from the reports in `models_dir` and returns
/// their paths; none if no model of the study is trained.
pub fn write(
    study: Study,
    models_dir: &Path,
    reports_dir: &Path,
) -> Result<Vec<PathBuf>, StudyChartError> {
    let points = points(study, models_dir)?;
    if points.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = Vec::new();
    for (size, suffix) in AXES {
        let path = reports_dir.join(file_name(study, suffix));
        model_charts::accuracy_vs_size(&points, size, &title(study, size), &path)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrained_studies_have_no_points_and_no_charts() {
        let models = tempfile::tempdir().unwrap();
        let reports = tempfile::tempdir().unwrap();
        assert!(points(Study::S5, models.path()).unwrap().is_empty());
        assert!(
            write(Study::S5, models.path(), reports.path())
                .unwrap()
                .is_empty()
        );
        assert_eq!(std::fs::read_dir(reports.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_trained_study_gets_both_charts() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        let reports = tempfile::tempdir().unwrap();
        let points = points(Study::S5, &models).unwrap();
        assert_eq!(
            points.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ["s5-ann", "s5-cnn"]
        );
        assert_eq!(points[1].published, Some(90.0));
        let written = write(Study::S5, &models, reports.path()).unwrap();
        assert_eq!(written.len(), 2);
        for path in written {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
        }
    }

    #[test]
    fn names_and_titles_say_which_study_and_axis() {
        assert_eq!(file_name(Study::S4, "macs"), "s4-accuracy-vs-macs.png");
        assert_eq!(
            title(Study::S5, Size::Params),
            "S5: test accuracy against parameters, ours and published"
        );
        assert_eq!(
            title(Study::Demo, Size::Macs),
            "Our own models: test accuracy against multiply-accumulates"
        );
    }
}
