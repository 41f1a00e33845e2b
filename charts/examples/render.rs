//! Draws every chart of `model-charts` for a folder of model reports:
//!
//! ```text
//! cargo run -p model-charts --example render -- MODELS OUT [REPORTS]
//! ```
//!
//! For each `MODELS/<id>.json`: `OUT/<id>-curves.png`, `OUT/<id>-confusion.png` (float and int8
//! side by side, or float alone before export), `OUT/<id>-confused.png` (the ten most confused
//! pairs, float), and, when `MODELS/<id>.fmq` and the Fashion-MNIST test set are there,
//! `OUT/<id>-predictions.png` (the first 32 test images through the int8 model). Then
//! `OUT/accuracy-vs-params.png` and `OUT/accuracy-vs-macs.png` for all models, with the
//! published accuracies read from the study reports `REPORTS/*.csv` (default: `MODELS/../reports`,
//! if it exists). Reports that do not parse are skipped with a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fashion_mnist::CLASS_NAMES;
use model_charts::{Size, StudyPoint};
use model_report::ModelReport;

/// Images in each prediction grid.
const GRID_IMAGES: usize = 32;

fn main() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let (models, out) = match args.as_slice() {
        [models, out] | [models, out, _] => (models, out),
        _ => bail!("usage: render MODELS OUT [REPORTS]"),
    };
    let reports_dir = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| models.join("..").join("reports"));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let reports = read_reports(models)?;
    if reports.is_empty() {
        bail!("{}: no model report parsed", models.display());
    }
    let published = read_published(&reports_dir)?;
    // The test set, if it can be found; prediction grids are skipped without it.
    let test = fashion_mnist::load_test(None)
        .map_err(|e| eprintln!("no prediction grids: {e}"))
        .ok();

    let mut written = Vec::new();
    for report in &reports {
        let id = &report.id;
        let path = out.join(format!("{id}-curves.png"));
        model_charts::training_curves(report, &path)?;
        written.push(path);

        let path = out.join(format!("{id}-confusion.png"));
        match &report.int8 {
            Some(int8) => model_charts::confusion_pair(&report.float.test, &int8.test, id, &path)?,
            None => model_charts::confusion_matrix(
                &report.float.test,
                &format!("{id}: confusion on the test set (float)"),
                &path,
            )?,
        }
        written.push(path);

        let path = out.join(format!("{id}-confused.png"));
        let title = format!("{id}: the classes it confuses most (float)");
        match model_charts::most_confused_chart(&report.float.test, 10, &title, &path) {
            Ok(()) => written.push(path),
            Err(model_charts::ChartError::Empty { .. }) => eprintln!("{id}: no mistakes to chart"),
            Err(e) => return Err(e.into()),
        }

        let fmq = models.join(format!("{id}.fmq"));
        if let (Some(test), true) = (&test, fmq.exists()) {
            let path = out.join(format!("{id}-predictions.png"));
            match predict(&fmq, &test.head(GRID_IMAGES)) {
                Ok(predictions) => {
                    model_charts::prediction_grid(
                        test,
                        &CLASS_NAMES,
                        &predictions,
                        GRID_IMAGES,
                        &path,
                    )?;
                    written.push(path);
                }
                Err(e) => eprintln!("{id}: no prediction grid: {e:#}"),
            }
        }
    }

    let points: Vec<StudyPoint> = reports
        .iter()
        .map(|r| StudyPoint {
            id: r.id.clone(),
            params: u64::try_from(r.float.param_count).unwrap_or(u64::MAX),
            macs: r.int8.as_ref().map_or(0, |i| i.macs),
            ours: 100.0 * r.float.test.accuracy,
            published: published.get(&r.id).copied(),
        })
        .collect();
    let path = out.join("accuracy-vs-params.png");
    model_charts::accuracy_vs_size(
        &points,
        Size::Params,
        "Test accuracy against parameters",
        &path,
    )?;
    written.push(path);
    // MACs are recorded at export: models not yet exported have none.
    let exported: Vec<StudyPoint> = points.into_iter().filter(|p| p.macs > 0).collect();
    if !exported.is_empty() {
        let path = out.join("accuracy-vs-macs.png");
        model_charts::accuracy_vs_size(
            &exported,
            Size::Macs,
            "Test accuracy against multiply-accumulates",
            &path,
        )?;
        written.push(path);
    }

    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Every report in `dir` that parses, sorted by id; the others are named on stderr.
fn read_reports(dir: &Path) -> Result<Vec<ModelReport>> {
    let mut reports = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            match ModelReport::read(&path) {
                Ok(report) => reports.push(report),
                Err(e) => eprintln!("skipped: {e}"),
            }
        }
    }
    reports.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(reports)
}

/// The published accuracy of each model id, from the `published %` column of the study reports
/// `dir/*.csv` (`91.2` or `~90`; text such as "not reported" is no number). An absent folder
/// gives none.
fn read_published(dir: &Path) -> Result<HashMap<String, f64>> {
    let mut published = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(published);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "csv") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        let header = csv_cells(lines.next().unwrap_or(""));
        let (Some(id_col), Some(pub_col)) = (
            header.iter().position(|h| h == "id"),
            header.iter().position(|h| h == "published %"),
        ) else {
            continue;
        };
        for line in lines {
            let cells = csv_cells(line);
            if let (Some(id), Some(value)) = (cells.get(id_col), cells.get(pub_col)) {
                if let Ok(v) = value.trim().trim_start_matches('~').parse::<f64>() {
                    published.insert(id.clone(), v);
                }
            }
        }
    }
    Ok(published)
}

/// The cells of one CSV line (RFC 4180 quoting: `"a, b"`, `""` for a quote inside quotes).
fn csv_cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cells.last_mut().expect("one cell at least").push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => cells.push(String::new()),
            (c, _) => cells.last_mut().expect("one cell at least").push(c),
        }
    }
    cells
}

/// The int8 model's predicted class of every image of `split`.
fn predict(fmq: &Path, split: &fashion_mnist::Split) -> Result<Vec<u8>> {
    let bytes = std::fs::read(fmq).with_context(|| format!("reading {}", fmq.display()))?;
    let model = infer_core::Model::<64>::from_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", fmq.display()))?;
    let mut scratch = vec![0i8; model.scratch_len()];
    let eval = model_report::evaluate_int8_any(&model, split, &mut scratch, 0)
        .map_err(|e| anyhow::anyhow!("{}: {e}", fmq.display()))?;
    Ok(eval.predictions)
}
