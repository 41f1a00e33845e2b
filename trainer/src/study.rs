//! `trainer study` and `trainer list`: train a study's models with its recipes (skipping those
//! already trained with the same settings), and write its report, `reports/<study>.md` and
//! `.csv`, our measured numbers beside the published ones, from the models' JSON reports, with
//! its accuracy charts ([`study_charts`]).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use fashion_mnist::Dataset;
use fashion_mnist::splits::SplitPlan;
use model_report::{ForestReport, ModelReport};

use crate::arch::{Arch, ArchError};
use crate::forest::Forest;
use crate::pipeline::{
    self, PipelineError, Settings, TrainResult, export_one, load_trained, train_one,
};
use crate::study_charts;
use crate::zoo::{self, OPTIMIZER_STUDY, Study};

/// Points below the published accuracy beyond which a report row must explain the gap.
pub const EXPLAIN_BELOW: f64 = 1.5;

/// Whether `arch` is one of the optimizer-study runs of `s2-m6` (trained and reported, not
/// exported: the study compares optimizers, and `s2-m6` itself is the deployable one).
pub fn is_optimizer_variant(id: &str) -> bool {
    OPTIMIZER_STUDY
        .iter()
        .any(|r| r.id == id && r.id != "s2-m6")
}

fn describe_split(split: &SplitPlan) -> String {
    match *split {
        SplitPlan::Full => "all 60k".into(),
        SplitPlan::Holdout { validation_percent } => {
            format!(
                "{}/{validation_percent}",
                100 - u32::from(validation_percent)
            )
        }
        SplitPlan::Pooled {
            train_percent,
            validation_percent,
        } => format!(
            "pooled {train_percent}/{validation_percent}/{}",
            100 - u32::from(train_percent) - u32::from(validation_percent)
        ),
    }
}

/// The `trainer list` table: every model with its study, size, cost and recipe (the networks,
/// then the random forests).
pub fn list_table(archs: &[Arch], forests: &[Forest]) -> Result<String, ArchError> {
    let mut out = String::from(
        "| id | study | params | MACs | input | optimizer | lr | epochs | batch | split | augmented | int8 |\n\
         |---|---|---:|---:|---|---|---:|---:|---:|---|---|---|\n",
    );
    for a in archs {
        let r = &a.recipe;
        let input = a
            .layers
            .first()
            .and_then(|l| l.output(a.input))
            .filter(|_| {
                matches!(
                    a.layers.first(),
                    Some(crate::layers::Layer::PadReplicate(_))
                )
            })
            .unwrap_or(a.input);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.id,
            a.study.key(),
            a.param_count()?,
            a.macs()?,
            shape_text(input),
            r.optimizer.name(),
            r.optimizer.lr(),
            r.epochs,
            r.batch_size,
            describe_split(&r.split),
            if r.augmentation.is_some() {
                "yes"
            } else {
                "no"
            },
            if is_optimizer_variant(a.id) {
                "not exported (optimizer study)"
            } else if !a.deployable() {
                "no (no int8 recurrent op)"
            } else {
                "yes"
            },
        );
    }
    for f in forests {
        let _ = writeln!(
            out,
            "| {} | {} | - | - | 1x28x28 raw pixels | random forest, {} trees | - | - | - | all 60k | no | no (not a network) |",
            f.id,
            f.study.key(),
            f.options.trees,
        );
    }
    Ok(out)
}

fn shape_text(s: infer_core::spec::TensorShape) -> String {
    match s.image() {
        Some(i) => format!("{}x{}x{}", i.channels, i.height, i.width),
        None => s.len().to_string(),
    }
}

/// Whether `dir/<id>.json` records a finished run of `arch` with exactly `settings`' options
/// (and its int8 export, unless the model is not exported).
fn done(arch: &Arch, settings: &Settings) -> Option<ModelReport> {
    let path = settings.out_dir.join(format!("{}.json", arch.id));
    let report = ModelReport::read(&path).ok()?;
    let options = settings.options(arch);
    (report.float.options == options && report.float.history.len() == options.epochs)
        .then_some(report)
}

/// Trains and exports every model of `study` not yet done with these settings. Returns `false`
/// if stopped by `stop` (the checkpoint holds the state).
pub fn run(
    study: Study,
    dataset: &Dataset,
    settings: &Settings,
    stop: &AtomicBool,
) -> Result<bool, PipelineError> {
    let models = study.models();
    for (i, arch) in models.iter().enumerate() {
        let export = !is_optimizer_variant(arch.id) && arch.deployable();
        let prefix = format!("[{}/{}] {}", i + 1, models.len(), arch.id);
        match done(arch, settings) {
            Some(r) if r.int8.is_some() || !export => {
                tracing::info!("{prefix}: already trained with these settings, skipped");
                continue;
            }
            Some(_) => {
                tracing::info!("{prefix}: trained, exporting");
                let trained = load_trained(arch, dataset, settings)?;
                export_one(trained, settings)?;
                continue;
            }
            None => tracing::info!("{prefix}: training"),
        }
        match train_one(arch, dataset, settings, Some(stop))? {
            TrainResult::Done(trained) => {
                if export {
                    export_one(*trained, settings)?;
                }
            }
            TrainResult::Stopped { .. } => return Ok(false),
        }
    }
    for forest in study.forests() {
        let path = ForestReport::path(&settings.out_dir, forest.id);
        let done = ForestReport::read(&path)
            .is_ok_and(|r| r.options == pipeline::forest_options(&forest, settings));
        if done {
            tracing::info!("{}: already fitted with these settings, skipped", forest.id);
        } else {
            pipeline::fit_forest(&forest, dataset, settings)?;
        }
    }
    Ok(true)
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// One row of a study table.
struct Row {
    cells: Vec<String>,
}

const COLUMNS: [&str; 13] = [
    "id",
    "params",
    "MACs",
    "epochs",
    "s/epoch",
    "test acc %",
    "macro precision",
    "macro recall",
    "macro F1",
    "int8 acc %",
    "published %",
    "diff (pts)",
    "note",
];

/// The study's published test accuracy of `arch` in percent (`~90` where it gave only a rough
/// number), or what it said instead.
pub fn published_text(arch: &Arch) -> String {
    arch.published.test_accuracy.map_or_else(
        || arch.published.text.to_string(),
        |p| {
            if arch.published.approximate {
                format!("~{p}")
            } else {
                format!("{p}")
            }
        },
    )
}

fn row(arch: &Arch, report: Option<&ModelReport>) -> Result<Row, ArchError> {
    let published = published_text(arch);
    let mut cells = vec![
        arch.id.to_string(),
        arch.param_count()?.to_string(),
        arch.macs()?.to_string(),
    ];
    let Some(r) = report else {
        cells.extend(["not trained".to_string()]);
        cells.extend(std::iter::repeat_n(String::new(), 6));
        cells.extend([published, String::new(), arch.reading.to_string()]);
        return Ok(Row { cells });
    };
    let f = &r.float;
    let secs = f.history.iter().map(|e| e.seconds).sum::<f64>() / f.history.len().max(1) as f64;
    let ours = 100.0 * f.test.accuracy;
    let diff = arch.published.test_accuracy.map(|p| ours - p);
    let note = note(arch.id, diff);
    cells.extend([
        f.options.epochs.to_string(),
        format!("{secs:.1}"),
        format!("{ours:.2}"),
        format!("{:.4}", f.test.macro_precision),
        format!("{:.4}", f.test.macro_recall),
        format!("{:.4}", f.test.macro_f1),
        r.int8
            .as_ref()
            .map_or_else(|| "-".to_string(), |q| pct(q.test.accuracy)),
        published,
        diff.map_or_else(String::new, |d| format!("{d:+.2}")),
        note,
    ]);
    Ok(Row { cells })
}

/// A random forest's row: no parameters, MACs, epochs or int8; the seconds column holds the
/// time to fit every tree.
fn forest_row(forest: &Forest, report: Option<&ForestReport>) -> Row {
    let published = forest
        .published
        .test_accuracy
        .map_or_else(|| forest.published.text.to_string(), |p| format!("{p}"));
    let mut cells = vec![forest.id.to_string(), "-".into(), "-".into()];
    let Some(r) = report else {
        cells.push("not trained".into());
        cells.extend(std::iter::repeat_n(String::new(), 6));
        cells.extend([published, String::new(), forest.reading.to_string()]);
        return Row { cells };
    };
    let ours = 100.0 * r.test.accuracy;
    let diff = forest.published.test_accuracy.map(|p| ours - p);
    cells.extend([
        "-".into(),
        format!("fit {:.1}", r.fit_seconds),
        format!("{ours:.2}"),
        format!("{:.4}", r.test.macro_precision),
        format!("{:.4}", r.test.macro_recall),
        format!("{:.4}", r.test.macro_f1),
        "not a network".into(),
        published,
        diff.map_or_else(String::new, |d| format!("{d:+.2}")),
        note(forest.id, diff),
    ]);
    Row { cells }
}

/// The note of a row: where ours is more than [`EXPLAIN_BELOW`] points below the published
/// number, or above it, the recorded explanation ([`zoo::notes`]).
pub fn note(id: &str, diff: Option<f64>) -> String {
    let explained = zoo::notes::explanation(id);
    match (diff, explained) {
        (Some(d), Some(text)) if d.abs() > EXPLAIN_BELOW => text.to_string(),
        (Some(d), None) if d < -EXPLAIN_BELOW => {
            "below the published number: not yet explained".into()
        }
        (Some(d), None) if d > EXPLAIN_BELOW => {
            "above the published number: not yet explained".into()
        }
        (None, Some(text)) => text.to_string(),
        (Some(_), _) | (None, None) => String::new(),
    }
}

/// The reports of `study`'s models found in `models_dir`, by model.
pub(crate) fn reports(study: Study, models_dir: &Path) -> Vec<(Arch, Option<ModelReport>)> {
    study
        .models()
        .into_iter()
        .map(|a| {
            let r = ModelReport::read(&models_dir.join(format!("{}.json", a.id))).ok();
            (a, r)
        })
        .collect()
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn csv_escape(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The Markdown and CSV reports of `study` from the JSON reports in `models_dir`.
pub fn render(study: Study, models_dir: &Path) -> Result<(String, String), ArchError> {
    let models = reports(study, models_dir);
    let main: Vec<_> = models
        .iter()
        .filter(|(a, _)| !is_optimizer_variant(a.id))
        .collect();
    let mut md = format!(
        "# {}\n\nGenerated by `trainer study {}` from `models/<id>.json`; do not edit by hand.\n\n{}\n\n",
        study.title(),
        study.key(),
        study.summary()
    );
    md += "Test accuracy, macro precision, recall and F1 are of the float model on the study's test images; int8 is the exported model run by infer-core on the same images. ";
    md += &format!(
        "`diff` is ours minus the published number (`~`: the study gave it only roughly); a note explains every gap of more than {EXPLAIN_BELOW} points. \
         Seconds per epoch are the wall-clock mean on the 2-core machine that trained the model, often beside another run: rough costs, not a benchmark (see `bench/` for those).\n\n"
    );
    md += &format!(
        "| {} |\n|{}\n",
        COLUMNS.join(" | "),
        "---|".repeat(COLUMNS.len())
    );
    let mut csv = COLUMNS.join(",") + "\n";
    let mut rows = Vec::new();
    for (arch, report) in &main {
        rows.push(row(arch, report.as_ref())?);
    }
    let forests = study.forests();
    for forest in &forests {
        let report = ForestReport::read(&ForestReport::path(models_dir, forest.id)).ok();
        rows.push(forest_row(forest, report.as_ref()));
    }
    for r in &rows {
        md += &format!(
            "| {} |\n",
            r.cells
                .iter()
                .map(|c| md_escape(c))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        csv += &(r
            .cells
            .iter()
            .map(|c| csv_escape(c))
            .collect::<Vec<_>>()
            .join(",")
            + "\n");
    }
    md += "\n## Models\n\n";
    for (arch, _) in &main {
        md += &format!(
            "- `{}`: {}. Our reading: {} Published: {}.\n",
            arch.id, arch.description, arch.reading, arch.published.text
        );
    }
    for f in &forests {
        md += &format!(
            "- `{}`: {}. Our reading: {} Published: {}. Fitted with {} (`models/{}/{}.json`); its seconds column is the time to fit every tree.\n",
            f.id,
            f.description,
            f.reading,
            f.published.text,
            crate::forest::LIBRARY,
            model_report::forest::FOREST_DIR,
            f.id
        );
    }
    if study == Study::S2 {
        md += &optimizer_table(models_dir);
    }
    md += &pictures(study, &models)?;
    Ok((md, csv))
}

/// S2's optimizer study: first- and last-epoch train and validation loss and accuracy of
/// `s2-m6` under each optimizer, beside the study's final validation accuracy, with a note on
/// every gap of more than [`EXPLAIN_BELOW`] points (as in the main table).
fn optimizer_table(models_dir: &Path) -> String {
    let mut md = String::from(
        "\n## Optimizer study on s2-m6\n\nEach optimizer with Keras' default hyper-parameters (see above), the rest of s2-m6's recipe unchanged. Epoch 1 and the last epoch; validation on the held-out 20%.\n\n\
         | optimizer | run | epochs | train loss (1st) | train acc % (1st) | val loss (1st) | val acc % (1st) | train loss (last) | train acc % (last) | val loss (last) | val acc % (last) | published val acc % | diff (pts) | note |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for run in OPTIMIZER_STUDY {
        let report = ModelReport::read(&models_dir.join(format!("{}.json", run.id))).ok();
        let h = report.as_ref().map(|r| &r.float.history);
        let (first, last) = match h {
            Some(h) if !h.is_empty() => (h.first(), h.last()),
            _ => (None, None),
        };
        let cells = |e: Option<&model_report::EpochStats>| match e {
            Some(e) => format!(
                "{:.4} | {} | {} | {}",
                e.loss,
                pct(e.accuracy),
                e.val_loss.map_or_else(|| "-".into(), |v| format!("{v:.4}")),
                e.val_accuracy.map_or_else(|| "-".into(), pct)
            ),
            None => "not trained | | | ".into(),
        };
        let diff = last
            .and_then(|e| e.val_accuracy)
            .map(|v| 100.0 * v - run.published_final_val_accuracy);
        let note = note(run.id, diff);
        let diff = diff.map_or_else(String::new, |d| format!("{d:+.2}"));
        md += &format!(
            "| {} | `{}` | {} | {} | {} | {} | {diff} | {note} |\n",
            run.name,
            run.id,
            h.map_or(0, Vec::len),
            cells(first),
            cells(last),
            run.published_final_val_accuracy,
        );
    }
    md
}

/// The links to `study`'s accuracy charts and to the pages of its trained models
/// (`trainer report --reports`); nothing if none is trained.
fn pictures(study: Study, models: &[(Arch, Option<ModelReport>)]) -> Result<String, ArchError> {
    let trained: Vec<&str> = models
        .iter()
        .filter(|(_, r)| r.is_some())
        .map(|(a, _)| a.id)
        .collect();
    if trained.is_empty() {
        return Ok(String::new());
    }
    let mut md = String::from("\n## Pictures\n\n");
    let points = study_charts::points_of(models)?;
    if points.is_empty() {
        md += "No model of the study's table is trained yet.\n\n";
    } else {
        md += if points.iter().any(|p| p.published.is_some()) {
            "Float test accuracy against size, ours (filled) beside the published number (hollow):\n\n"
        } else {
            "Float test accuracy against size (nothing published to compare with):\n\n"
        };
        for (size, suffix) in study_charts::AXES {
            md += &format!(
                "![{}]({})\n\n",
                study_charts::title(study, size),
                study_charts::file_name(study, suffix)
            );
        }
    }
    md += &format!(
        "Each model's page (settings, training curves, confusion matrices, per-class table, \
         predictions; all pages: [index](index.md)): {}.\n",
        trained
            .iter()
            .map(|id| format!("[{id}]({id}.md)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(md)
}

/// Writes `reports/<study>.md` and `.csv` and returns their paths.
pub fn write_reports(
    study: Study,
    models_dir: &Path,
    reports_dir: &Path,
) -> Result<Vec<PathBuf>, PipelineError> {
    let (md, csv) = render(study, models_dir)?;
    std::fs::create_dir_all(reports_dir).map_err(|source| PipelineError::Io {
        path: reports_dir.to_path_buf(),
        source,
    })?;
    let mut written = Vec::new();
    for (ext, text) in [("md", md), ("csv", csv)] {
        let path = reports_dir.join(format!("{}.{ext}", study.key()));
        model_report::atomic::write(&path, text.as_bytes()).map_err(|source| {
            PipelineError::Io {
                path: path.clone(),
                source,
            }
        })?;
        written.push(path);
    }
    written.extend(study_charts::write(study, models_dir, reports_dir)?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_has_every_model() {
        let table = list_table(&crate::arch::all(), &zoo::forests()).unwrap();
        for a in crate::arch::all() {
            assert!(table.contains(&format!("| {} |", a.id)), "{}", a.id);
        }
        assert!(
            table.contains("| s3-alexnet-base | s3 | 394634 |"),
            "{table}"
        );
        assert!(table.contains("3x32x32"));
    }

    #[test]
    fn a_study_without_results_says_not_trained() {
        let dir = tempfile::tempdir().unwrap();
        let (md, csv) = render(Study::S5, dir.path()).unwrap();
        assert!(md.contains("| s5-cnn |"), "{md}");
        assert!(md.contains("not trained"));
        assert_eq!(csv.lines().count(), 3);
    }

    #[test]
    fn the_optimizer_table_reads_first_and_last_epochs() {
        use model_report::{EpochStats, FloatReport, Metrics, TrainOptions};
        let dir = tempfile::tempdir().unwrap();
        let epoch = |epoch, val_accuracy| EpochStats {
            epoch,
            learning_rate: 1e-3,
            loss: 1.0 / epoch as f64,
            accuracy: 0.5,
            val_loss: Some(0.25),
            val_accuracy: Some(val_accuracy),
            seconds: 1.0,
        };
        let report = ModelReport {
            id: "s2-m6-sgd".into(),
            description: String::new(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options: TrainOptions::plain(
                    2,
                    128,
                    model_report::optimizer::OptimizerConfig::sgd(0.01),
                    42,
                ),
                train_images: 4,
                validation_images: 2,
                param_count: 1,
                history: vec![epoch(1, 0.5), epoch(2, 0.9)],
                test: Metrics::new(&[0, 1], &[0, 1], 2),
                safetensors_bytes: 0,
                provenance: None,
            },
            int8: None,
            firmware: None,
        };
        report.write(&dir.path().join("s2-m6-sgd.json")).unwrap();
        let table = optimizer_table(dir.path());
        // First epoch: loss 1, val 50%; last: loss 0.5, val 90%, 2.15 points above 87.85.
        assert!(
            table.contains("| SGD | `s2-m6-sgd` | 2 | 1.0000 | 50.00 | 0.2500 | 50.00 | 0.5000 | 50.00 | 0.2500 | 90.00 | 87.85 | +2.15 |"),
            "{table}"
        );
        assert!(
            table.contains("| Adam | `s2-m6` | 0 | not trained"),
            "{table}"
        );
    }

    #[test]
    fn gaps_need_explanations() {
        // Small gaps need no note; large ones show the recorded explanation.
        let arch = crate::arch::by_id("s5-cnn").unwrap();
        assert_eq!(note(arch.id, Some(-0.5)), "");
        assert_eq!(
            note(arch.id, Some(3.0)),
            zoo::notes::explanation("s5-cnn").unwrap()
        );
        let unexplained = crate::arch::by_id("s4-cnn3").unwrap();
        assert!(note(unexplained.id, Some(-3.0)).contains("not yet explained"));
        assert!(note(unexplained.id, Some(3.0)).contains("not yet explained"));
    }
}
