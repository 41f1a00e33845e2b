//! The per-model pages of `trainer report --reports`: for every `models/<id>.json`, a page
//! `reports/<id>.md` with its pictures in `reports/<id>/` (training curves, float and int8
//! confusion matrices, the pairs it confuses most, a grid of test images through the int8 model),
//! and `reports/index.md`, one row per model of the registry (trained or not) linking the pages
//! and the study reports.
//!
//! Every number comes from the model's JSON report or from the model registry ([`crate::zoo`]):
//! the recipe, the metrics, the published accuracy, the firmware record. Pages and pictures are
//! deterministic: the same reports give the same bytes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fashion_mnist::splits::{SplitError, SplitPlan};
use fashion_mnist::{CLASS_NAMES, Dataset, Split};
use model_charts::ChartError;
use model_report::{COMMITTED_MODEL_LIMIT, HOST_MAX_OPS, Metrics, ModelReport, ReportError};

use crate::arch::{self, Arch, ArchError};
use crate::pipeline::PipelineError;
use crate::study::{self, is_optimizer_variant};
use crate::zoo::{OPTIMIZER_STUDY, Study};

/// The command that writes the pages, named in every page and in the staleness test.
pub const COMMAND: &str = "cargo run --release -p trainer -- report --reports reports";

/// The index page's file name, in the reports folder.
pub const INDEX: &str = "index.md";

/// Test images in each prediction grid.
pub const GRID_IMAGES: usize = 32;

/// Class pairs in each most-confused chart.
pub const CONFUSED_PAIRS: usize = 10;

/// The pictures of each model page, in `reports/<id>/`, in the order the page shows them.
pub const PICTURES: [&str; 4] = ["curves", "confusion", "confused", "predictions"];

/// Why the pages could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PagesError {
    /// A model report could not be read.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A model of the registry is not a valid network.
    #[error(transparent)]
    Arch(#[from] ArchError),
    /// A picture could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The test images of a model's split could not be made.
    #[error("{id}: splitting the dataset as its report says: {source}")]
    Split {
        /// Model id.
        id: String,
        /// The cause.
        source: SplitError,
    },
    /// An int8 model file could not be read or loaded.
    #[error("{}: {problem}", path.display())]
    Model {
        /// The `.fmq` file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// A page or folder could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A study report could not be written.
    #[error(transparent)]
    Study(#[from] Box<PipelineError>),
}

/// Whether a model's page has a prediction grid, and why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grid {
    /// Drawn from `models/<id>.fmq` through infer-core.
    Drawn,
    /// The model has no int8 record: it was not exported.
    NotExported,
    /// The int8 file is too large to be committed ([`COMMITTED_MODEL_LIMIT`]).
    NotCommitted,
    /// The int8 record exists but `models/<id>.fmq` does not.
    Missing,
}

impl Grid {
    /// The grid of `report`'s model, given the folder of its `.fmq` file.
    pub fn of(report: &ModelReport, models_dir: &Path) -> Self {
        match &report.int8 {
            None => Self::NotExported,
            Some(q) if q.model_bytes >= COMMITTED_MODEL_LIMIT => Self::NotCommitted,
            Some(_) if models_dir.join(format!("{}.fmq", report.id)).is_file() => Self::Drawn,
            Some(_) => Self::Missing,
        }
    }
}

/// Writes every model page with its pictures, the index, and every study report (Markdown, CSV
/// and charts, as `trainer study <s> --report-only` does) into `reports_dir`, from the reports
/// and int8 files in `models_dir`; `dataset` gives the prediction grids' test images. Returns the
/// paths written.
pub fn write_all(
    models_dir: &Path,
    reports_dir: &Path,
    dataset: &Dataset,
) -> Result<Vec<PathBuf>, PagesError> {
    create_dir(reports_dir)?;
    let reports = ModelReport::read_dir(models_dir)?;
    let mut written = Vec::new();
    for report in &reports {
        written.extend(write_model(report, models_dir, reports_dir, dataset)?);
    }
    let path = reports_dir.join(INDEX);
    write_text(&path, &index(&reports)?)?;
    written.push(path);
    for s in Study::ALL {
        written.extend(study::write_reports(s, models_dir, reports_dir).map_err(Box::new)?);
    }
    Ok(written)
}

/// Writes `report`'s pictures into `reports_dir/<id>/` and its page `reports_dir/<id>.md`.
fn write_model(
    report: &ModelReport,
    models_dir: &Path,
    reports_dir: &Path,
    dataset: &Dataset,
) -> Result<Vec<PathBuf>, PagesError> {
    let id = &report.id;
    let dir = reports_dir.join(id);
    create_dir(&dir)?;
    let picture = |name: &str| dir.join(format!("{name}.png"));
    let mut written = Vec::new();

    let path = picture("curves");
    model_charts::training_curves(report, &path)?;
    written.push(path);

    let path = picture("confusion");
    match &report.int8 {
        Some(int8) => model_charts::confusion_pair(&report.float.test, &int8.test, id, &path)?,
        None => model_charts::confusion_matrix(
            &report.float.test,
            &format!("{id}: confusion on the test set (float; not exported to int8)"),
            &path,
        )?,
    }
    written.push(path);

    if has_mistakes(&report.float.test) {
        let path = picture("confused");
        let title = format!("{id}: the classes it confuses most (float)");
        model_charts::most_confused_chart(&report.float.test, CONFUSED_PAIRS, &title, &path)?;
        written.push(path);
    }

    let grid = Grid::of(report, models_dir);
    if grid == Grid::Drawn {
        let images = test_split(report, dataset)?.head(GRID_IMAGES);
        let fmq = models_dir.join(format!("{id}.fmq"));
        let predictions = predict(&fmq, &images)?;
        let path = picture("predictions");
        model_charts::prediction_grid(&images, &CLASS_NAMES, &predictions, GRID_IMAGES, &path)?;
        written.push(path);
    }

    let arch = arch::by_id(id).ok();
    let path = reports_dir.join(format!("{id}.md"));
    write_text(&path, &page(report, arch.as_ref(), grid)?)?;
    written.push(path);
    Ok(written)
}

/// Whether `metrics` has a misclassified image (else there is no most-confused chart).
fn has_mistakes(metrics: &Metrics) -> bool {
    !model_charts::most_confused(metrics, 1).is_empty()
}

/// The test images of `report`'s run: its split applied with its seed, as training did.
fn test_split(report: &ModelReport, dataset: &Dataset) -> Result<Split, PagesError> {
    let options = &report.float.options;
    let splits = options
        .split
        .apply(dataset, options.seed)
        .map_err(|source| PagesError::Split {
            id: report.id.clone(),
            source,
        })?;
    Ok(splits.test)
}

/// The class infer-core predicts for every image of `images` with the int8 model in `fmq`.
fn predict(fmq: &Path, images: &Split) -> Result<Vec<u8>, PagesError> {
    let model_error = |problem: String| PagesError::Model {
        path: fmq.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(fmq).map_err(|e| model_error(format!("cannot read: {e}")))?;
    let model = infer_core::Model::<HOST_MAX_OPS>::from_bytes(&bytes)
        .map_err(|e| model_error(format!("not a valid int8 model: {e}")))?;
    let mut scratch = vec![0i8; model.scratch_len()];
    let eval = model_report::evaluate_int8_any(&model, images, &mut scratch, 0)
        .map_err(|e| model_error(format!("inference failed: {e}")))?;
    Ok(eval.predictions)
}

fn create_dir(dir: &Path) -> Result<(), PagesError> {
    std::fs::create_dir_all(dir).map_err(|source| PagesError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_text(path: &Path, text: &str) -> Result<(), PagesError> {
    model_report::atomic::write(path, text.as_bytes()).map_err(|source| PagesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A percentage with two decimals from a fraction.
fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// Text safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The optimizer's rule and its settings other than the learning rate, as recorded
/// (`adam: beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0`).
fn optimizer_text(report: &ModelReport) -> String {
    let optimizer = &report.float.options.optimizer;
    let settings = serde_json::to_value(optimizer)
        .ok()
        .and_then(|v| v.as_object().and_then(|o| o.values().next().cloned()))
        .and_then(|v| v.as_object().cloned())
        .map(|fields| {
            fields
                .iter()
                .filter(|(k, _)| k.as_str() != "lr")
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    if settings.is_empty() {
        optimizer.name().to_string()
    } else {
        format!("{}: {settings}", optimizer.name())
    }
}

/// How the run divided the images, with the counts its report recorded.
fn split_text(report: &ModelReport) -> String {
    let f = &report.float;
    let counts = format!(
        "{} training, {} validation, {} test images",
        f.train_images, f.validation_images, f.test.count
    );
    match f.options.split {
        SplitPlan::Full => {
            format!("all training images, no validation; the official test images ({counts})")
        }
        SplitPlan::Holdout { validation_percent } => format!(
            "{}/{validation_percent} stratified hold-out of the training images; the official \
             test images ({counts})",
            100 - u32::from(validation_percent)
        ),
        SplitPlan::Pooled {
            train_percent,
            validation_percent,
        } => format!(
            "all 70,000 images pooled and split {train_percent}/{validation_percent}/{} \
             (stratified; {counts})",
            100 - u32::from(train_percent) - u32::from(validation_percent)
        ),
    }
}

/// The Markdown page of `report`, with the registry's facts from `arch` where the model is in
/// it, and its prediction grid as `grid` says.
pub fn page(report: &ModelReport, arch: Option<&Arch>, grid: Grid) -> Result<String, ArchError> {
    let id = &report.id;
    let f = &report.float;
    let int8 = report.int8.as_ref();
    let mut md = format!("# {id}\n\n");
    let _ = writeln!(
        md,
        "Generated by `{COMMAND}` from `models/{id}.json` and the model registry (`trainer \
         describe`); do not edit by hand. [All models](index.md)."
    );
    md += "\n";
    match arch {
        Some(a) => {
            let _ = writeln!(
                md,
                "{}. Study: [{}]({}.md). Our reading of what the study left open: {}\n",
                report.description,
                a.study.title(),
                a.study.key(),
                a.reading
            );
        }
        None => {
            let _ = writeln!(md, "{}. Not in the model registry.\n", report.description);
        }
    }

    // Settings.
    let o = &f.options;
    md += "## Settings\n\n| setting | value |\n|---|---|\n";
    let augmentation = o.augmentation.map_or_else(
        || "none".to_string(),
        |a| {
            format!(
                "rotation ±{}°, shift ±{}% of the side, zoom ±{}%, {}",
                a.rotation_degrees,
                100.0 * a.shift,
                100.0 * a.zoom,
                if a.horizontal_flip {
                    "horizontal flips"
                } else {
                    "no flips"
                }
            )
        },
    );
    let schedule = o.schedule.map_or_else(
        || "constant".to_string(),
        |s| format!("times {} every {} epochs", s.gamma, s.step_size),
    );
    let rows = [
        ("optimizer", optimizer_text(report)),
        ("learning rate", o.optimizer.lr().to_string()),
        ("learning-rate schedule", schedule),
        ("batch", o.batch_size.to_string()),
        ("epochs", o.epochs.to_string()),
        ("split", split_text(report)),
        ("augmentation", augmentation),
        ("seed", o.seed.to_string()),
        (
            "gradient clipping",
            o.grad_clip
                .map_or_else(|| "none".to_string(), |c| format!("global L2 norm {c}")),
        ),
        (
            "training images used",
            o.train_limit.map_or_else(
                || "all of the split".to_string(),
                |n| format!("the first {n}"),
            ),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {} |", cell(&value));
    }
    // Recorded since reports carry it: what built and ran the training and the export.
    let built = [
        ("trained with", f.provenance.as_ref()),
        (
            "quantised with",
            report.int8.as_ref().and_then(|q| q.provenance.as_ref()),
        ),
    ];
    for (name, provenance) in built {
        if let Some(p) = provenance {
            let _ = writeln!(md, "| {name} | {} |", cell(&p.summary()));
        }
    }

    // Metrics.
    md += "\n## Results\n\nOn the model's test images: float through candle, int8 (the exported \
           `.fmq`) through infer-core.\n\n| | float | int8 |\n|---|---:|---:|\n";
    let both = |name: &str, float: String, q: Option<String>| {
        format!(
            "| {name} | {float} | {} |\n",
            q.unwrap_or_else(|| "-".into())
        )
    };
    md += &both(
        "test accuracy %",
        pct(f.test.accuracy),
        int8.map(|q| pct(q.test.accuracy)),
    );
    for (name, get) in [
        (
            "macro precision",
            (|m: &Metrics| m.macro_precision) as fn(&Metrics) -> f64,
        ),
        ("macro recall", |m: &Metrics| m.macro_recall),
        ("macro F1", |m: &Metrics| m.macro_f1),
    ] {
        md += &both(
            name,
            format!("{:.4}", get(&f.test)),
            int8.map(|q| format!("{:.4}", get(&q.test))),
        );
    }
    md += &both(
        "test images",
        f.test.count.to_string(),
        int8.map(|q| q.test.count.to_string()),
    );
    md += &both(
        "same class as float %",
        "-".into(),
        int8.map(|q| pct(q.agreement)),
    );
    md += &both("parameters", f.param_count.to_string(), None::<String>);
    let float_macs = arch.map(Arch::macs).transpose()?;
    md += &both(
        "multiply-accumulates per image",
        float_macs.map_or_else(|| "-".into(), |m| m.to_string()),
        int8.map(|q| q.macs.to_string()),
    );
    md += &both(
        "file bytes",
        format!("{} (safetensors)", f.safetensors_bytes),
        int8.map(|q| format!("{} (.fmq)", q.model_bytes)),
    );
    md += &both(
        "scratch bytes",
        "-".into(),
        int8.map(|q| q.scratch_bytes.to_string()),
    );
    md += &both(
        "calibration",
        "-".into(),
        int8.map(|q| {
            format!(
                "{}, {} training images",
                cell(&q.calibration_method),
                q.calibration_images
            )
        }),
    );
    md += "\n";
    match arch {
        Some(a) => {
            let ours = 100.0 * f.test.accuracy;
            let diff = a.published.test_accuracy.map(|p| ours - p);
            let _ = write!(md, "What the study published: {}.", a.published.text);
            if let Some(d) = diff {
                let _ = write!(
                    md,
                    " Ours (float) minus its test accuracy ({}%): {d:+.2} points.",
                    study::published_text(a)
                );
            }
            md += &optimizer_run(report, a.id);
            let note = study::note(a.id, diff);
            if !note.is_empty() {
                let _ = write!(md, " {note}");
            }
            md += "\n";
        }
        None => md += "Not in the registry: no published number.\n",
    }

    // Pictures.
    md += "\n## Training curves\n\n";
    let _ = writeln!(md, "![{id}: training curves]({id}/curves.png)");
    md += "\n## Confusion matrix\n\nRows: true class; columns: predicted class; counts of test images.\n\n";
    let _ = writeln!(md, "![{id}: confusion matrices]({id}/confusion.png)");

    md += &class_table(report);

    md += "\n## Most confused classes\n\n";
    if has_mistakes(&f.test) {
        let _ = writeln!(md, "![{id}: most confused classes]({id}/confused.png)");
    } else {
        md += "The float model classifies every test image correctly: nothing to chart.\n";
    }

    md += "\n## Predictions\n\n";
    md += &match grid {
        Grid::Drawn => format!(
            "The first {GRID_IMAGES} of the model's test images through the int8 model \
             (`models/{id}.fmq`, infer-core): true / predicted class, mistakes in red.\n\n\
             ![{id}: predictions]({id}/predictions.png)\n"
        ),
        Grid::NotExported => format!(
            "No prediction grid: the model is not exported to int8 ({}).\n",
            not_exported_reason(arch)
        ),
        Grid::NotCommitted => format!(
            "No prediction grid: the int8 file (`models/{id}.fmq`, {} bytes) is {} bytes or more \
             and not committed, so a grid could not be checked from a fresh checkout.\n",
            int8.map_or(0, |q| q.model_bytes),
            COMMITTED_MODEL_LIMIT
        ),
        Grid::Missing => format!("No prediction grid: `models/{id}.fmq` is missing.\n"),
    };

    md += &firmware_section(report);
    Ok(md)
}

/// For a run of S2's optimizer study: its last validation accuracy beside the study's.
fn optimizer_run(report: &ModelReport, id: &str) -> String {
    let Some(run) = OPTIMIZER_STUDY.iter().find(|r| r.id == id) else {
        return String::new();
    };
    let last = report.float.history.last();
    match last.and_then(|e| e.val_accuracy.map(|v| (e.epoch, 100.0 * v))) {
        Some((epoch, ours)) => format!(
            " The study's final validation accuracy with {}: {}%; ours after epoch {epoch}: \
             {ours:.2}% ({:+.2} points).",
            run.name,
            run.published_final_val_accuracy,
            ours - run.published_final_val_accuracy
        ),
        None => format!(
            " The study's final validation accuracy with {}: {}%; this run has no validation \
             accuracy.",
            run.name, run.published_final_val_accuracy
        ),
    }
}

/// Why a model has no int8 record.
fn not_exported_reason(arch: Option<&Arch>) -> &'static str {
    match arch {
        Some(a) if is_optimizer_variant(a.id) => {
            "a run of S2's optimizer study, trained and reported only"
        }
        Some(a) if !a.deployable() => "its recurrent layers have no int8 op",
        Some(_) => "not exported yet",
        None => "not in the registry",
    }
}

/// Precision, recall and F1 of each class from `confusion[true][predicted]`.
fn per_class(metrics: &Metrics) -> Vec<(u32, f64, f64, f64)> {
    let m = &metrics.confusion;
    let ratio = |a: u32, b: u32| {
        if b == 0 {
            0.0
        } else {
            f64::from(a) / f64::from(b)
        }
    };
    (0..m.len())
        .map(|c| {
            let tp = m[c].get(c).copied().unwrap_or(0);
            let actual: u32 = m[c].iter().sum();
            let predicted: u32 = m.iter().filter_map(|row| row.get(c)).sum();
            let (p, r) = (ratio(tp, predicted), ratio(tp, actual));
            let f1 = if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            };
            (actual, p, r, f1)
        })
        .collect()
}

/// The per-class table: images, accuracy (recall), precision and F1, float and int8.
fn class_table(report: &ModelReport) -> String {
    let float = per_class(&report.float.test);
    let int8 = report.int8.as_ref().map(|q| per_class(&q.test));
    let mut md = String::from(
        "\n## Per class\n\nA class's accuracy is its recall: the share of its test images \
         predicted as it. Precision: the share of the images predicted as the class that are \
         of it.\n\n",
    );
    md += "| class | images | accuracy % | precision % | F1 | int8 accuracy % | int8 precision % | int8 F1 |\n\
           |---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (c, &(images, p, r, f1)) in float.iter().enumerate() {
        let name = CLASS_NAMES
            .get(c)
            .map_or_else(|| format!("class {c}"), |n| (*n).to_string());
        let q = int8.as_ref().and_then(|q| q.get(c)).map_or_else(
            || "- | - | -".to_string(),
            |&(_, qp, qr, qf1)| format!("{} | {} | {qf1:.4}", pct(qr), pct(qp)),
        );
        let _ = writeln!(
            md,
            "| {name} | {images} | {} | {} | {f1:.4} | {q} |",
            pct(r),
            pct(p)
        );
    }
    md
}

/// The Cortex-M4 figures, where the report has a firmware record.
fn firmware_section(report: &ModelReport) -> String {
    let Some(fw) = &report.firmware else {
        return "\n## On the Cortex-M4\n\nNo firmware record (`firmware-sim device --update-json` \
                has not run this model on the board).\n"
            .to_string();
    };
    let mut md = format!(
        "\n## On the Cortex-M4\n\n`{}` on `{}`, {}; {} test images, accuracy {}%.\n\n\
         | figure | value |\n|---|---:|\n",
        fw.target,
        cell(&fw.machine),
        cell(&fw.profile),
        fw.images,
        pct(fw.accuracy)
    );
    let rows = [
        (
            "flash: code and constants, bytes",
            fw.flash_code_bytes.to_string(),
        ),
        ("flash: model, bytes", fw.flash_model_bytes.to_string()),
        (
            "flash: total, bytes",
            (fw.flash_code_bytes + fw.flash_model_bytes).to_string(),
        ),
        ("RAM: static data, bytes", fw.ram_static_bytes.to_string()),
        ("RAM: scratch, bytes", fw.scratch_bytes.to_string()),
        ("RAM: peak stack, bytes", fw.peak_stack_bytes.to_string()),
        ("RAM: total, bytes", fw.ram_total_bytes.to_string()),
        (
            "instructions per inference (mean)",
            fw.instructions.mean.to_string(),
        ),
        (
            "instructions per inference (min to max)",
            format!("{} to {}", fw.instructions.min, fw.instructions.max),
        ),
    ];
    for (name, value) in rows {
        let _ = writeln!(md, "| {name} | {value} |");
    }
    let _ = writeln!(md, "\nCounted with {}.", cell(&fw.counting));
    md
}

/// The index page: every model of the registry, study by study, then any report of a model not
/// in it; trained models link their pages, the study column its report.
pub fn index(reports: &[ModelReport]) -> Result<String, ArchError> {
    let mut md = format!(
        "# Models\n\nGenerated by `{COMMAND}` from `models/<id>.json` and the model registry; do \
         not edit by hand. One page per trained model (settings, training curves, confusion \
         matrices, per-class table, predictions, firmware figures); accuracies are on each \
         model's test images, float through candle, int8 through infer-core.\n\nStudy reports: "
    );
    md += &Study::ALL
        .iter()
        .map(|s| format!("[{}]({}.md)", s.title(), s.key()))
        .collect::<Vec<_>>()
        .join(", ");
    md += ".\n\n| model | study | params | MACs | float acc % | int8 acc % | published % | diff (pts) |\n\
           |---|---|---:|---:|---:|---:|---:|---:|\n";
    let find = |id: &str| reports.iter().find(|r| r.id == id);
    let registry = arch::all();
    for a in &registry {
        let study = format!("[{}]({}.md)", a.study.key(), a.study.key());
        let published = cell(&study::published_text(a));
        let (params, macs) = (a.param_count()?, a.macs()?);
        match find(a.id) {
            Some(r) => {
                let ours = 100.0 * r.float.test.accuracy;
                let diff = a
                    .published
                    .test_accuracy
                    .map_or_else(String::new, |p| format!("{:+.2}", ours - p));
                let _ = writeln!(
                    md,
                    "| [{id}]({id}.md) | {study} | {params} | {macs} | {ours:.2} | {} | {published} | {diff} |",
                    r.int8
                        .as_ref()
                        .map_or_else(|| "-".into(), |q| pct(q.test.accuracy)),
                    id = a.id,
                );
            }
            None => {
                let _ = writeln!(
                    md,
                    "| {} | {study} | {params} | {macs} | not trained | | {published} | |",
                    a.id
                );
            }
        }
    }
    for r in reports {
        if registry.iter().all(|a| a.id != r.id) {
            let _ = writeln!(
                md,
                "| [{id}]({id}.md) | not in the registry | {} | {} | {} | {} | | |",
                r.float.param_count,
                r.int8
                    .as_ref()
                    .map_or_else(|| "-".into(), |q| q.macs.to_string()),
                pct(r.float.test.accuracy),
                r.int8
                    .as_ref()
                    .map_or_else(|| "-".into(), |q| pct(q.test.accuracy)),
                id = r.id,
            );
        }
    }
    md += "\nMACs are of the float network as the registry describes it (the int8 model's own \
           count, which folds a replicated input into its first layer, is on each page).\n";
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(id: &str) -> ModelReport {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(format!("{id}.json"));
        ModelReport::read(&path).unwrap()
    }

    #[test]
    fn per_class_figures_come_from_the_confusion_matrix() {
        // Labels 0,0,1,1 predicted 0,1,1,1: class 0 P=1 R=.5; class 1 P=2/3 R=1.
        let m = Metrics::new(&[0, 0, 1, 1], &[0, 1, 1, 1], 2);
        let classes = per_class(&m);
        assert_eq!(classes[0], (2, 1.0, 0.5, 2.0 / 3.0));
        assert_eq!(classes[1].0, 2);
        assert!((classes[1].1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(classes[1].2, 1.0);
        // Recall is the report's per-class accuracy.
        assert_eq!(
            classes.iter().map(|c| c.2).collect::<Vec<_>>(),
            m.per_class_accuracy
        );
    }

    #[test]
    fn a_page_has_settings_metrics_pictures_and_the_published_number() {
        let report = committed("s5-cnn");
        let arch = arch::by_id("s5-cnn").unwrap();
        let md = page(&report, Some(&arch), Grid::Drawn).unwrap();
        for needle in [
            "| optimizer | adam: beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.0 |",
            "| learning rate | 0.001 |",
            "| batch | 64 |",
            "| seed | 42 |",
            "80/20 stratified hold-out",
            "48000 training, 12000 validation, 10000 test images",
            "![s5-cnn: training curves](s5-cnn/curves.png)",
            "![s5-cnn: confusion matrices](s5-cnn/confusion.png)",
            "![s5-cnn: most confused classes](s5-cnn/confused.png)",
            "![s5-cnn: predictions](s5-cnn/predictions.png)",
            "| test accuracy % | 92.23 | 92.30 |",
            "What the study published: validation 92.6%, test about 90%.",
            "Ours (float) minus its test accuracy (~90%): +2.23 points.",
            "| Shirt | 1000 |",
            "| instructions per inference (mean) |",
            "[S5: Fashion-MNIST Classification (PyTorch)](s5.md)",
        ] {
            assert!(md.contains(needle), "{needle}\n{md}");
        }
    }

    #[test]
    fn a_page_shows_the_provenance_its_report_records() {
        let mut report = committed("s5-cnn");
        let arch = arch::by_id("s5-cnn").unwrap();
        // The committed reports predate it: no rows.
        let md = page(&report, Some(&arch), Grid::Drawn).unwrap();
        assert!(!md.contains("trained with") && !md.contains("quantised with"));
        let provenance = model_report::Provenance {
            rustc: "rustc 1.95.0 (abc 2026-01-01)".into(),
            target: "x86_64-unknown-linux-gnu".into(),
            crates: [("candle-core".to_string(), "0.11.1".to_string())].into(),
            cpu_features: vec!["avx".into(), "avx2".into()],
            seed: 42,
        };
        report.float.provenance = Some(provenance.clone());
        if let Some(q) = report.int8.as_mut() {
            q.provenance = Some(model_report::Provenance {
                seed: 7,
                ..provenance
            });
        }
        let md = page(&report, Some(&arch), Grid::Drawn).unwrap();
        for needle in [
            "| trained with | rustc 1.95.0 (abc 2026-01-01), x86_64-unknown-linux-gnu, candle-core 0.11.1; CPU features: avx avx2; seed 42 |",
            "| quantised with | rustc 1.95.0 (abc 2026-01-01), x86_64-unknown-linux-gnu, candle-core 0.11.1; CPU features: avx avx2; seed 7 |",
        ] {
            assert!(md.contains(needle), "{needle}\n{md}");
        }
    }

    #[test]
    fn pages_without_int8_or_firmware_say_why() {
        let report = committed("s2-m6-sgd");
        let arch = arch::by_id("s2-m6-sgd").unwrap();
        assert_eq!(
            Grid::of(&report, Path::new("/nonexistent")),
            Grid::NotExported
        );
        let md = page(&report, Some(&arch), Grid::NotExported).unwrap();
        assert!(md.contains("S2's optimizer study"), "{md}");
        assert!(
            md.contains("final validation accuracy with SGD: 87.85%; ours after epoch 20: 92.26% (+4.41 points)"),
            "{md}"
        );
        assert!(md.contains("No firmware record"), "{md}");
        assert!(md.contains("| test accuracy % | 91.45 | - |"), "{md}");
        assert!(!md.contains("predictions.png"));

        // s1-mlp's int8 file is over the commit limit: no grid, whatever is on disk.
        let big = committed("s1-mlp");
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        assert_eq!(Grid::of(&big, &models), Grid::NotCommitted);
    }

    #[test]
    fn the_index_lists_every_registry_model_trained_or_not() {
        let report = committed("s5-cnn");
        let md = index(std::slice::from_ref(&report)).unwrap();
        assert!(
            md.contains("| [s5-cnn](s5-cnn.md) | [s5](s5.md) | 421642 | 4241152 | 92.23 | 92.30 | ~90 | +2.23 |"),
            "{md}"
        );
        assert!(md.contains("| s5-ann | [s5](s5.md) | 235146 |"), "{md}");
        assert!(md.contains("| not trained |"));
        for a in arch::all() {
            assert!(md.contains(&format!("| {}", a.id)) || md.contains(&format!("[{}]", a.id)));
        }
        let mut stranger = report;
        stranger.id = "custom-net".into();
        let md = index(&[stranger]).unwrap();
        assert!(
            md.contains("| [custom-net](custom-net.md) | not in the registry |"),
            "{md}"
        );
    }
}
