//! `firmware-sim`: every `.fmq` in a folder through infer-core over the 10k test set, or, with
//! `device`, through the Cortex-M4 firmware under QEMU.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use firmware_sim::device::{self, Board, DeviceError, DeviceOptions, ModelNeeds};
use firmware_sim::{SCRATCH_CAPACITY, describe, model_files, run_model};
use model_report::inspect::Inspection;
use model_report::markdown::{FIRMWARE, RESULTS};
use model_report::output::print_line;
use model_report::{FirmwareReport, ModelReport, summary_table};

/// Run exported models through infer-core as firmware would, over the full test set, and check
/// their int8 accuracy against the float accuracy the trainer recorded.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Folder holding `<id>.fmq` and `<id>.json` files.
    #[arg(default_value = "models")]
    models: PathBuf,
    /// Folder with the Fashion-MNIST IDX gzip files.
    #[arg(long, env = "FASHION_MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build `firmware/` for each model, run it on the Cortex-M4 under QEMU (mps2-an386), check
    /// its logits against infer-core on the host, and report flash, RAM and instructions. A
    /// model that cannot fit the board with its test images is reported, not failed; a model
    /// whose files are missing or unreadable, or whose logits differ, fails the run (exit 1)
    /// after the others have run.
    Device(DeviceCli),
    /// Describe a model file: header, input mapping, ops, tensors and the scratch plan, flash
    /// and RAM (the same report as `trainer inspect`).
    Inspect(InspectCli),
}

#[derive(Debug, Args)]
struct InspectCli {
    /// The model file (`.fmq`).
    model: PathBuf,
    /// Print JSON instead of the text tables.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct DeviceCli {
    /// Folder holding `<id>.fmq` and `<id>.json` (inside the repository with `firmware/`).
    #[arg(long, default_value = "models", value_name = "DIR")]
    models_dir: PathBuf,
    /// Model id to run, e.g. `s5-cnn` (repeatable); every `.fmq` in `--models-dir` by default.
    #[arg(short, long = "model")]
    model: Vec<String>,
    /// Test images to embed and run (the first ones of the test set); by default 200 for models
    /// up to 5M MACs, fewer for bigger ones, at least 20 (`device::images_for`).
    #[arg(long)]
    images: Option<usize>,
    /// Firmware runs in flight (builds stay serial: one builds while another runs QEMU).
    #[arg(long, default_value_t = device::DEFAULT_JOBS)]
    jobs: usize,
    /// Folder with the Fashion-MNIST IDX gzip files.
    #[arg(long, env = "FASHION_MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// QEMU time limit per model, in seconds.
    #[arg(long, default_value_t = device::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Also count instructions exactly with this QEMU plugin (a build of
    /// `tools/qemu-insn-count.c`, see `tools/README.md`).
    #[arg(long)]
    plugin: Option<PathBuf>,
    /// Write the measurements into `models/<id>.json`: the `firmware` record, and the model's
    /// `int8.model_bytes` and `int8.scratch_bytes` as infer-core loads it on the host.
    #[arg(long)]
    update_json: bool,
    /// Regenerate the firmware and results tables of this README from `models/*.json`.
    #[arg(long)]
    update_readme: Option<PathBuf>,
}

fn main() -> ExitCode {
    run().unwrap_or_else(|e| {
        model_report::output::print_error(e.as_ref());
        ExitCode::FAILURE
    })
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Device(args)) => device_main(&args),
        Some(Command::Inspect(args)) => {
            let inspection = Inspection::of_file(&args.model)?;
            if args.json {
                print_line(&serde_json::to_string_pretty(&inspection)?);
            } else {
                print_line(inspection.to_string().trim_end());
            }
            Ok(ExitCode::SUCCESS)
        }
        None => sim_main(&cli.models, cli.data_dir.as_deref(), cli.json),
    }
}

/// Writes a device run into the model's report through model-report's one writer: the
/// `firmware` record, and the int8 record's model and scratch sizes as infer-core gives them now
/// (the scratch plan may change with infer-core; the model bytes with the format).
fn record(json: &Path, needs: &ModelNeeds, firmware: FirmwareReport) -> Result<()> {
    let mut report = ModelReport::read(json)?;
    let int8 = report.int8.as_mut().with_context(|| {
        format!(
            "{}: no int8 record (export the model first)",
            json.display()
        )
    })?;
    int8.model_bytes = needs.model_bytes;
    int8.scratch_bytes = needs.scratch_len;
    let fmq = json.with_extension("fmq");
    let bytes = std::fs::read(&fmq).with_context(|| format!("reading {}", fmq.display()))?;
    int8.fmq_crc32 = Some(
        infer_core::format::Header::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", fmq.display()))?
            .crc32,
    );
    report.firmware = Some(firmware);
    report.write(json)?;
    Ok(())
}

/// The test images of the model at `path` when they are not the official test set (a pooled
/// split, recorded in its `.json`), or `None`.
fn test_split_of(
    path: &Path,
    data_dir: Option<&Path>,
    full: &mut Option<fashion_mnist::Dataset>,
) -> Result<Option<fashion_mnist::Split>> {
    let report = model_report::ModelReport::read(&path.with_extension("json"))?;
    let options = report.float.options;
    if !matches!(options.split, fashion_mnist::SplitPlan::Pooled { .. }) {
        return Ok(None);
    }
    if full.is_none() {
        *full = Some(fashion_mnist::load(data_dir)?);
    }
    let Some(dataset) = full.as_ref() else {
        return Ok(None);
    };
    let splits = options
        .split
        .apply(dataset, options.seed)
        .with_context(|| format!("{}: splitting the data as recorded", path.display()))?;
    Ok(Some(splits.test))
}

fn sim_main(models: &Path, data_dir: Option<&Path>, json: bool) -> Result<ExitCode> {
    let test = fashion_mnist::load_test(data_dir)?;
    // Models of a study that pooled all 70,000 images (S4) are tested on their own part of
    // them; the whole dataset is loaded only for those.
    let mut full: Option<fashion_mnist::Dataset> = None;
    // One fixed-size buffer for every model, as a firmware image would reserve statically.
    let mut scratch = vec![0i8; SCRATCH_CAPACITY];
    let mut runs = Vec::new();
    let mut failed = false;
    for path in model_files(models)? {
        let own_test = match test_split_of(&path, data_dir, &mut full) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
                continue;
            }
        };
        match run_model(&path, own_test.as_ref().unwrap_or(&test), &mut scratch) {
            Ok(run) => {
                failed |= !run.passes();
                if !json {
                    print_line(&describe(&run));
                }
                runs.push(run);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    if json {
        print_line(&serde_json::json!({ "models": runs }).to_string());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn device_main(args: &DeviceCli) -> Result<ExitCode> {
    let models = args
        .models_dir
        .canonicalize()
        .with_context(|| format!("model folder {}", args.models_dir.display()))?;
    let root = models
        .parent()
        .filter(|r| r.join("firmware").join("Cargo.toml").is_file())
        .with_context(|| format!("no firmware/ beside {}", models.display()))?
        .to_path_buf();
    let board = Board::read(&root.join("firmware").join("memory.x"))?;
    let ids: Vec<String> = if args.model.is_empty() {
        model_files(&models)?
            .iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect()
    } else {
        args.model.clone()
    };
    let test = fashion_mnist::load_test(args.data_dir.as_deref())?;

    // Every model needs its report (to record into, and for the table); one that is missing or
    // unreadable is an error, and the others still run.
    let mut failed: Vec<String> = Vec::new();
    let mut reports: Vec<ModelReport> = Vec::new();
    let mut runs = Vec::new();
    for id in &ids {
        match ModelReport::read(&models.join(format!("{id}.json"))) {
            Ok(report) => reports.push(report),
            Err(e) => {
                eprintln!("error: {id}: {e}");
                failed.push(id.clone());
                continue;
            }
        }
        runs.push(DeviceOptions {
            images: args.images,
            data_dir: args.data_dir.clone(),
            timeout: Duration::from_secs(args.timeout),
            plugin: args.plugin.clone(),
            ..DeviceOptions::new(&root, id)
        });
    }

    let mut passed = Vec::new();
    let mut not_fitting = Vec::new();
    let mut measured = Vec::new();
    device::run_all(&runs, args.jobs, |opts, result| {
        let id = &opts.model;
        let run = match result {
            Ok(run) => run,
            Err(DeviceError::DoesNotFit { reason, .. }) => {
                print_line(&format!("{id}: does not fit the board, not run: {reason}"));
                not_fitting.push(id.clone());
                return;
            }
            Err(e) => {
                eprintln!("error: {id} on the Cortex-M4: {e}");
                failed.push(id.clone());
                return;
            }
        };
        let host =
            device::host_predictions(&models.join(format!("{id}.fmq")), &test, run.images.len());
        let mismatches = match &host {
            Ok(host) => device::mismatches(&run, host),
            Err(e) => {
                eprintln!("error: {id} on the host: {e}");
                failed.push(id.clone());
                return;
            }
        };
        print_line(&device::describe(&run, mismatches.len()));
        for (i, d, h) in mismatches.iter().take(5) {
            eprintln!(
                "  image {i}: device {:?} {:?}, host {h:?}",
                d.class, d.logits
            );
        }
        if mismatches.is_empty() {
            passed.push(id.clone());
        } else {
            failed.push(id.clone());
        }
        if args.update_json {
            let json = models.join(format!("{id}.json"));
            if let Err(e) = record(&json, &run.needs, run.report()) {
                eprintln!("error: {id}: {e:#}");
                failed.push(id.clone());
            }
        }
        measured.push((id.clone(), run.report()));
    });

    // The table of this run: the records just measured, the reasons of the others.
    for report in &mut reports {
        report.firmware = measured
            .iter()
            .find(|(id, _)| *id == report.id)
            .map(|(_, firmware)| firmware.clone());
    }
    print_line(&format!("\n{}", device::readme_section(&reports, &board)));
    print_line(&format!(
        "{} of {} models identical to the host on the Cortex-M4; not fitting the board: {}{}; \
         failed: {}{}",
        passed.len(),
        ids.len(),
        not_fitting.len(),
        list(&not_fitting),
        failed.len(),
        list(&failed),
    ));
    if let Some(readme) = &args.update_readme {
        let reports = ModelReport::read_dir(&models)?;
        FIRMWARE.update_file(readme, &device::readme_section(&reports, &board))?;
        // `--update-json` also changes the int8 sizes the results table shows.
        RESULTS.update_file(readme, &summary_table(&reports))?;
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// ` (a, b)`, or nothing for an empty list.
fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(" ({})", ids.join(", "))
    }
}
