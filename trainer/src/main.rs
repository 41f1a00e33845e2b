//! `trainer`: train the reference-study Fashion-MNIST models, quantise them to int8, export
//! them for infer-core, and reproduce the studies' tables.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use fashion_mnist as data;
use model_report::inspect::Inspection;
use model_report::markdown::RESULTS;
use model_report::optimizer::OptimizerConfig;
use model_report::output::print_line;
use trainer::arch::{self, Arch};
use trainer::forest::Forest;
use trainer::model_pages;
use trainer::pipeline::{
    Overrides, Settings, TrainResult, export_one, fit_forest, load_trained, train_one,
    write_summary,
};
use trainer::progress::Progress;
use trainer::publish::{self, MODELS, RUNS};
use trainer::study;
use trainer::zoo::Study;

/// Training allocates and frees tensors of several MiB every step; glibc's malloc hands those
/// straight back to the kernel and faults them in again, zeroed, on the next step (half the CPU
/// time of a CNN epoch went to page faults). mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set by Ctrl-C: training stops after the current batch and writes its checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

/// Train the reference Fashion-MNIST models on the CPU, quantise them to int8 and export them
/// for infer-core. Without a subcommand: `run` on the deployable models.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

/// Which models a command works on.
#[derive(Debug, clap::Args, Clone)]
struct Select {
    /// Model id (repeatable); `trainer list` describes them. Default: the deployable models
    /// (s5-ann, s5-cnn, s3-lenet-base, tiny-resnet), or every model for `list` and `describe`.
    #[arg(long = "model", short = 'm', value_name = "ID", value_parser = model_ids())]
    models: Vec<String>,
}

/// How a model is trained: the study's recipe unless overridden.
#[derive(Debug, clap::Args, Clone)]
struct Training {
    /// Epochs (default: the study's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: Option<u64>,
    /// Mini-batch size (default: the study's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Optimizer: sgd, adam, adamw, rmsprop, adagrad, adadelta, adamax or nadam, with
    /// PyTorch's defaults (default: the study's).
    #[arg(long, value_parser = parse_optimizer)]
    optimizer: Option<OptimizerConfig>,
    /// Learning rate (default: the study's, or the --optimizer's default).
    #[arg(long, value_parser = parse_lr)]
    lr: Option<f64>,
    /// Train on only the first N images of the training split (smoke runs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    train_limit: Option<u64>,
    /// Trees of a random forest (`s1-rf`; default: the study's).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    trees: Option<u64>,
    /// Where training checkpoints are written (one `<id>.ckpt` per model, after every epoch).
    #[arg(long, default_value = "checkpoints")]
    checkpoint_dir: PathBuf,
    /// Continue interrupted runs from their checkpoints (same settings only).
    #[arg(long)]
    resume: bool,
    /// Also write the checkpoint within an epoch every this many minutes (0: after every
    /// batch), so that a run killed without warning loses at most that much work.
    #[arg(long, value_name = "MINUTES", default_value_t = Training::DEFAULT_CHECKPOINT_MINUTES, value_parser = parse_minutes)]
    checkpoint_every: f64,
}

/// How a trained model is quantised.
#[derive(Debug, clap::Args, Clone)]
struct Quantising {
    /// Export even a network whose float accuracy is at chance level or whose weights are not
    /// all finite (refused otherwise).
    #[arg(long)]
    force: bool,
    /// Training images used to calibrate activation ranges (as many more choose the range
    /// method).
    #[arg(long, default_value_t = Quantising::DEFAULT_IMAGES, value_parser = calibration_count)]
    calibration_images: usize,
}

/// Where the work reads and writes, and how it reports.
#[derive(Debug, clap::Args, Clone)]
struct Io {
    /// Seed for initialisation, split, shuffling, dropout, augmentation and calibration.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder with the Fashion-MNIST IDX gzip files.
    #[arg(long, env = "FASHION_MNIST_DIR")]
    data_dir: Option<PathBuf>,
    /// Where models and their reports are written [default: runs; `study --report-only`:
    /// models]. `trainer publish` copies finished runs into `models/`.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// How a command reports progress and messages.
#[derive(Debug, clap::Args, Clone, Copy)]
struct Output {
    /// No progress bars, per-epoch lines or information messages (warnings and errors only).
    #[arg(long, short)]
    quiet: bool,
    /// Progress as one JSON object per line on standard output (events `start`, `batch`,
    /// `epoch`, `test`, `exported`: model, epoch, batch, loss, accuracy, ETA in seconds), for
    /// scripts; messages stay on standard error.
    #[arg(long)]
    json_lines: bool,
}

/// Options of `run` (train, export, verify).
#[derive(Debug, clap::Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    select: Select,
    #[command(flatten)]
    training: Training,
    #[command(flatten)]
    quantising: Quantising,
    #[command(flatten)]
    io: Io,
}

/// Options of `train`.
#[derive(Debug, clap::Args, Clone)]
struct TrainArgs {
    #[command(flatten)]
    select: Select,
    #[command(flatten)]
    training: Training,
    #[command(flatten)]
    io: Io,
}

/// Options of `export`.
#[derive(Debug, clap::Args, Clone)]
struct ExportArgs {
    #[command(flatten)]
    select: Select,
    #[command(flatten)]
    quantising: Quantising,
    #[command(flatten)]
    io: Io,
}

/// The model ids, for `-m`'s check and help.
fn model_ids() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(trainer::zoo::ids())
}

fn parse_optimizer(s: &str) -> Result<OptimizerConfig, String> {
    OptimizerConfig::by_name(s).ok_or_else(|| {
        let names: Vec<_> = OptimizerConfig::defaults()
            .iter()
            .map(|o| o.name())
            .collect();
        format!("unknown optimizer `{s}` (known: {})", names.join(", "))
    })
}

/// `--calibration-images`: at least one, at most the 60,000 training images.
fn calibration_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=fashion_mnist::TRAIN_COUNT).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a number of training images from 1 to {}",
            fashion_mnist::TRAIN_COUNT
        )),
    }
}

fn parse_lr(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive learning rate")),
    }
}

fn parse_minutes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=Training::MAX_CHECKPOINT_MINUTES).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}` is not a number of minutes from 0 to {}",
            Training::MAX_CHECKPOINT_MINUTES
        )),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, export and verify (the default).
    Run(RunArgs),
    /// Train only: write `<id>.safetensors` and `<id>.json` with float metrics.
    Train(TrainArgs),
    /// Quantise and verify models already trained into the output folder.
    Export(ExportArgs),
    /// List every model: study, parameters, MACs, input, optimizer, epochs, batch, split, and
    /// whether it exports to int8.
    List(Select),
    /// Print the selected architectures (every one by default) as JSON: id, study, layers,
    /// recipe, published numbers, trainable parameters. `bench/torch_models.py` builds its
    /// PyTorch twins from this.
    Describe(Select),
    /// Train a study's models with its settings (skipping those already trained with the same
    /// settings) and write `reports/<study>.md` and `.csv` beside the published numbers.
    Study {
        /// The study.
        #[arg(value_parser = ["s1", "s2", "s3", "s4", "s5", "demo", "all"])]
        study: String,
        /// Only rewrite the reports from the recorded results; train nothing.
        #[arg(long)]
        report_only: bool,
        /// Folder of the study reports [default: `<out-dir>/reports`; with --report-only:
        /// reports].
        #[arg(long)]
        reports_dir: Option<PathBuf>,
        #[command(flatten)]
        training: Training,
        #[command(flatten)]
        quantising: Quantising,
        #[command(flatten)]
        io: Io,
    },
    /// Explore the dataset: write the pictures `reports/data/*.png` and the page
    /// `reports/data.md` (class counts per split, sample and mean images, PCA).
    Data {
        /// Folder of the reports.
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
        /// Seed of the validation splits and the PCA picture's sample.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Folder with the Fashion-MNIST IDX gzip files.
        #[arg(long, env = "FASHION_MNIST_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Print the results table from `<out-dir>/*.json`; optionally rewrite README's copy and
    /// the per-model pages.
    Report {
        /// Folder of the model reports (`<id>.json`).
        #[arg(long, default_value = "models")]
        out_dir: PathBuf,
        /// Replace the text between `<!-- results:begin -->` and `<!-- results:end -->` in
        /// this file with the table.
        #[arg(long)]
        update_readme: Option<PathBuf>,
        /// Also write every model's page and pictures, the index and the study reports into
        /// this folder (`reports` if given without a value).
        #[arg(long, num_args = 0..=1, default_missing_value = "reports")]
        reports: Option<PathBuf>,
        /// Folder with the Fashion-MNIST IDX gzip files (for the pages' prediction grids).
        #[arg(long, env = "FASHION_MNIST_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Copy finished runs into the published folder, each model's .fmq, .json and .safetensors
    /// as one verified set (firmware records kept only for an unchanged .fmq), then regenerate
    /// its summary, the README's results table, the model pages and the study reports.
    Publish {
        /// Model id to publish (repeatable).
        #[arg(long = "model", short = 'm', value_name = "ID", value_parser = model_ids(),
              required_unless_present = "all")]
        models: Vec<String>,
        /// Publish every run in --from.
        #[arg(long, conflicts_with = "models")]
        all: bool,
        /// The run folder.
        #[arg(long, default_value = RUNS)]
        from: PathBuf,
        /// The published folder.
        #[arg(long, default_value = MODELS)]
        to: PathBuf,
        /// The README whose results table is regenerated.
        #[arg(long, default_value = "README.md")]
        readme: PathBuf,
        /// Folder of the model pages and study reports, regenerated.
        #[arg(long, default_value = "reports")]
        reports: PathBuf,
        /// Folder with the Fashion-MNIST IDX gzip files (for the pages' prediction grids).
        #[arg(long, env = "FASHION_MNIST_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Describe a model file: header, input mapping, ops, tensors and the scratch plan, flash
    /// and RAM (the same report as `firmware-sim inspect`).
    Inspect {
        /// The model file (`.fmq`).
        model: PathBuf,
        /// Print JSON instead of the text tables.
        #[arg(long)]
        json: bool,
    },
}

/// The selected networks (the deployable ones by default).
fn selected(select: &Select) -> Result<Vec<Arch>> {
    if select.models.is_empty() {
        return Ok(arch::deployable());
    }
    select
        .models
        .iter()
        .filter(|id| trainer::zoo::forest_by_id(id).is_none())
        .map(|id| arch::by_id(id).map_err(Into::into))
        .collect()
}

/// The selected random forests (none by default).
fn selected_forests(select: &Select) -> Vec<Forest> {
    select
        .models
        .iter()
        .filter_map(|id| trainer::zoo::forest_by_id(id))
        .collect()
}

fn to_usize(v: Option<u64>) -> Option<usize> {
    v.map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

/// The pipeline's settings from a command's option groups (`None`: the group's defaults).
fn settings(training: Option<&Training>, quantising: Option<&Quantising>, io: &Io) -> Settings {
    let default_training;
    let training = match training {
        Some(t) => t,
        None => {
            default_training = Training::default();
            &default_training
        }
    };
    Settings {
        overrides: Overrides {
            epochs: to_usize(training.epochs),
            batch_size: to_usize(training.batch),
            optimizer: training.optimizer,
            learning_rate: training.lr,
            train_limit: to_usize(training.train_limit),
            trees: to_usize(training.trees),
        },
        seed: io.seed,
        out_dir: io.out_dir.clone().unwrap_or_else(|| PathBuf::from(RUNS)),
        checkpoint_dir: training.checkpoint_dir.clone(),
        resume: training.resume,
        checkpoint_every: Some(Duration::from_secs_f64(60.0 * training.checkpoint_every)),
        progress: Progress::from_flags(io.output.quiet, io.output.json_lines),
        force: quantising.is_some_and(|q| q.force),
        calibration_images: quantising.map_or(Quantising::DEFAULT_IMAGES, |q| q.calibration_images),
    }
}

impl Default for Training {
    fn default() -> Self {
        Self {
            epochs: None,
            batch: None,
            optimizer: None,
            lr: None,
            train_limit: None,
            trees: None,
            checkpoint_dir: PathBuf::from("checkpoints"),
            resume: false,
            checkpoint_every: Self::DEFAULT_CHECKPOINT_MINUTES,
        }
    }
}

impl Training {
    /// `--checkpoint-every`'s default: a checkpoint of s1-resnet34 (about 250 MB with its
    /// Adam state) takes about a second to write, and an epoch of it about 40 minutes.
    const DEFAULT_CHECKPOINT_MINUTES: f64 = 10.0;
    /// `--checkpoint-every`'s largest value, a week (far beyond any epoch).
    const MAX_CHECKPOINT_MINUTES: f64 = 7.0 * 24.0 * 60.0;
}

impl Quantising {
    /// `--calibration-images`' default.
    const DEFAULT_IMAGES: usize = 2000;
}

/// What the per-model commands do with each model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Train only.
    Train,
    /// Train, then export.
    Run,
    /// Export what is trained.
    Export,
}

/// Messages go to standard error through `tracing`: information and up by default, warnings
/// and errors only with `-q`; `RUST_LOG` (e.g. `RUST_LOG=debug`) overrides both.
fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}

/// mimalloc's option for how long freed pages wait before they go back to the kernel, and
/// the value the trainer runs with: never. mimalloc's default (1 s) still let the kernel zero
/// fresh pages for about 6% of a 2-thread `s5-cnn` epoch, and without purging that epoch took
/// 10–20% less time (`bench/README.md`). mimalloc reads its options from the environment
/// before `main` runs, and setting one from Rust needs `unsafe` FFI, which the workspace
/// forbids: so the trainer starts itself once more with the variable set, unless the caller
/// set it (any value, which then wins).
const PURGE_DELAY: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "-1");

/// Replaces this process by the same program with [`PURGE_DELAY`] set, keeping its arguments,
/// `argv[0]` and PID (so Ctrl-C and exit codes are unchanged). Returns only if the variable
/// is already set or the re-execution failed (then the trainer runs on, with mimalloc's
/// default, after a warning).
#[cfg(unix)]
fn with_allocator_options() {
    use std::os::unix::process::CommandExt;
    let (name, value) = PURGE_DELAY;
    if std::env::var_os(name).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).env(name, value).exec();
    eprintln!(
        "warning: could not restart with {name}={value} ({err}); running with mimalloc's default"
    );
}

/// Stack of the pool threads the trainer runs on (Linux's default for a main thread).
const MAIN_STACK: usize = 8 << 20;

/// Elsewhere the trainer runs with mimalloc's default.
#[cfg(not(unix))]
fn with_allocator_options() {}

fn main() -> std::process::ExitCode {
    with_allocator_options();
    // The whole command runs on a worker of the pool that also runs the matmuls and the ops'
    // loops: with the pool's default size (RAYON_NUM_THREADS, else one per core) exactly that
    // many threads compute, instead of the main thread plus as many pool workers competing
    // for the cores (`s5-cnn`, 2 threads: −18% per epoch, `bench/README.md`). Workers get
    // the main thread's usual stack, for candle's recursive walk of deep backward graphs.
    let outcome = rayon::ThreadPoolBuilder::new()
        .stack_size(MAIN_STACK)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|pool| pool.install(run));
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            model_report::output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let quiet = match &cli.command {
        None => cli.run.io.output.quiet,
        Some(Command::Run(a)) => a.io.output.quiet,
        Some(Command::Train(a)) => a.io.output.quiet,
        Some(Command::Export(a)) => a.io.output.quiet,
        Some(Command::Study { io, .. }) => io.output.quiet,
        Some(
            Command::List(_)
            | Command::Describe(_)
            | Command::Report { .. }
            | Command::Inspect { .. }
            | Command::Publish { .. }
            | Command::Data { .. },
        ) => false,
    };
    init_logging(quiet);
    match cli.command {
        None => per_model(
            &cli.run.select,
            &settings(
                Some(&cli.run.training),
                Some(&cli.run.quantising),
                &cli.run.io,
            ),
            cli.run.io.data_dir.as_deref(),
            Step::Run,
        ),
        Some(Command::Run(a)) => per_model(
            &a.select,
            &settings(Some(&a.training), Some(&a.quantising), &a.io),
            a.io.data_dir.as_deref(),
            Step::Run,
        ),
        Some(Command::Train(a)) => per_model(
            &a.select,
            &settings(Some(&a.training), None, &a.io),
            a.io.data_dir.as_deref(),
            Step::Train,
        ),
        Some(Command::Export(a)) => per_model(
            &a.select,
            &settings(None, Some(&a.quantising), &a.io),
            a.io.data_dir.as_deref(),
            Step::Export,
        ),
        Some(Command::List(select)) => {
            let forests = if select.models.is_empty() {
                trainer::zoo::forests()
            } else {
                selected_forests(&select)
            };
            print_line(study::list_table(&listed(&select)?, &forests)?.trim_end());
            Ok(())
        }
        Some(Command::Describe(select)) => describe(&listed(&select)?),
        Some(Command::Report {
            out_dir,
            update_readme,
            reports,
            data_dir,
        }) => {
            let table = write_summary(&out_dir)?;
            print_line(table.trim_end());
            if let Some(readme) = update_readme {
                RESULTS.update_file(&readme, &table)?;
            }
            if let Some(dir) = reports {
                let dataset = data::load(data_dir.as_deref())?;
                let written = model_pages::write_all(&out_dir, &dir, &dataset)?;
                tracing::info!("wrote {} files into {}", written.len(), dir.display());
            }
            Ok(())
        }
        Some(Command::Study {
            study,
            report_only,
            reports_dir,
            training,
            quantising,
            mut io,
        }) => {
            // Rewriting the reports alone is about the published models; training goes to the
            // run folder, and its reports beside it.
            if report_only && io.out_dir.is_none() {
                io.out_dir = Some(PathBuf::from(MODELS));
            }
            let settings = settings(Some(&training), Some(&quantising), &io);
            let reports_dir = reports_dir.unwrap_or_else(|| {
                if report_only {
                    PathBuf::from("reports")
                } else {
                    settings.out_dir.join("reports")
                }
            });
            run_study(
                &settings,
                io.data_dir.as_deref(),
                &study,
                report_only,
                &reports_dir,
            )
        }
        Some(Command::Publish {
            models,
            all,
            from,
            to,
            readme,
            reports,
            data_dir,
        }) => {
            let ids = (!all).then_some(models.as_slice());
            let published = publish::publish(ids, &from, &to)?;
            let dataset = data::load(data_dir.as_deref())?;
            let written = publish::regenerate(&to, &readme, &reports, &dataset)?;
            tracing::info!(
                "published {} models and {} forests into {}; regenerated {} files",
                published.models.len(),
                published.forests.len(),
                to.display(),
                written.len()
            );
            let steps = published.next_steps(&to, &readme);
            if !steps.is_empty() {
                let golden = if published.new_golden.is_empty() {
                    String::new()
                } else {
                    format!(
                        " and the golden logits of {} are stale",
                        published.new_golden.join(", ")
                    )
                };
                print_line(&format!(
                    "{} have a new .fmq: their firmware records were dropped{golden} (the tests \
                     fail until this is redone). Next, with qemu-system-arm installed:",
                    published.new_int8.join(", ")
                ));
                for step in steps {
                    print_line(&format!("    {step}"));
                }
            }
            Ok(())
        }
        Some(Command::Inspect { model, json }) => {
            let inspection = Inspection::of_file(&model)?;
            if json {
                print_line(&serde_json::to_string_pretty(&inspection)?);
            } else {
                print_line(inspection.to_string().trim_end());
            }
            Ok(())
        }
        Some(Command::Data {
            reports_dir,
            seed,
            data_dir,
        }) => {
            let dataset = data::load(data_dir.as_deref())?;
            let exploration = trainer::explore::explore(&dataset, seed)?;
            for path in exploration.write(&dataset, &reports_dir)? {
                tracing::info!("wrote {}", path.display());
            }
            Ok(())
        }
    }
}

/// The models `list` and `describe` show: the selected ones, or every one.
fn listed(select: &Select) -> Result<Vec<Arch>> {
    if select.models.is_empty() {
        Ok(arch::all())
    } else {
        selected(select)
    }
}

fn describe(archs: &[Arch]) -> Result<()> {
    let mut out = Vec::with_capacity(archs.len());
    for arch in archs {
        let mut value = serde_json::to_value(arch)?;
        value["param_count"] = serde_json::json!(arch.param_count()?);
        value["macs"] = serde_json::json!(arch.macs()?);
        out.push(value);
    }
    print_line(&serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Checks the output folder, finishes the model sets an interrupted run left in it, and installs
/// the Ctrl-C handler, before any long work.
fn prepare(settings: &Settings) -> Result<()> {
    for (dir, what) in [
        (&settings.out_dir, "output folder"),
        (&settings.checkpoint_dir, "checkpoint folder"),
    ] {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the {what} {}", dir.display()))?;
        // Written to before any long work, not after it: a folder we cannot write is an error
        // now, not after an hour of training.
        tempfile::tempfile_in(dir)
            .with_context(|| format!("the {what} {} is not writable", dir.display()))?;
        for leftover in model_report::atomic::clean_leftovers(dir) {
            tracing::info!(
                "removed {}, left by an interrupted write",
                leftover.display()
            );
        }
    }
    log_recovery(&settings.out_dir)?;
    let out_dir = settings.out_dir.clone();
    ctrlc::set_handler(move || {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint of the current batch");
            // A model's files being replaced are finished first; a set not yet committed is
            // removed, and the old one stays.
            let _commits = model_report::model_set::hold_commits();
            let _ = model_report::model_set::recover(&out_dir);
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: stopping after this batch and writing the checkpoint (again to quit now)"
        );
    })
    .context("installing the Ctrl-C handler")?;
    Ok(())
}

/// Finishes the model sets interrupted writers left in `dir` ([`model_report::model_set`]) and
/// says what it did.
fn log_recovery(dir: &Path) -> Result<()> {
    let recovered = model_report::model_set::recover(dir)?;
    for id in &recovered.rolled_forward {
        tracing::info!("{id}: completed the replacement of its files that a run left unfinished");
    }
    for path in &recovered.removed {
        tracing::info!("removed {}, left by an interrupted export", path.display());
    }
    Ok(())
}

fn run_study(
    settings: &Settings,
    data_dir: Option<&Path>,
    which: &str,
    report_only: bool,
    reports_dir: &Path,
) -> Result<()> {
    let studies: Vec<Study> =
        if which == "all" {
            Study::ALL
                .into_iter()
                .filter(|s| *s != Study::Demo)
                .collect()
        } else {
            vec![Study::by_key(which).with_context(|| {
                format!("unknown study `{which}` (known: s1, s2, s3, s4, s5, all)")
            })?]
        };
    if report_only {
        for s in studies {
            for path in study::write_reports(s, &settings.out_dir, reports_dir)? {
                tracing::info!("wrote {}", path.display());
            }
        }
        return Ok(());
    }
    prepare(settings)?;
    let dataset = data::load(data_dir)?;
    for s in studies {
        let finished = study::run(s, &dataset, settings, &STOP)?;
        for path in study::write_reports(s, &settings.out_dir, reports_dir)? {
            tracing::info!("wrote {}", path.display());
        }
        if !finished {
            bail!(
                "stopped; continue with `trainer study {} --resume`",
                s.key()
            );
        }
    }
    Ok(())
}

fn per_model(
    select: &Select,
    settings: &Settings,
    data_dir: Option<&Path>,
    step: Step,
) -> Result<()> {
    let archs = selected(select)?;
    let forests = selected_forests(select);
    prepare(settings)?;
    let dataset = data::load(data_dir)?;
    for forest in &forests {
        match step {
            Step::Train | Step::Run => {
                fit_forest(forest, &dataset, settings)?;
            }
            Step::Export => {
                tracing::info!("{}: a random forest has no int8 export", forest.id);
            }
        }
    }
    for arch in &archs {
        let trained = match step {
            Step::Train | Step::Run => match train_one(arch, &dataset, settings, Some(&STOP))? {
                TrainResult::Done(t) => *t,
                TrainResult::Stopped {
                    epochs_done,
                    batches,
                    checkpoint,
                } => bail!(
                    "{}: stopped after {epochs_done} epochs and {batches} batches; the state is in {}; continue with --resume",
                    arch.id,
                    checkpoint.display()
                ),
            },
            Step::Export => load_trained(arch, &dataset, settings)?,
        };
        if step == Step::Train {
            continue;
        }
        if !arch.deployable() {
            tracing::info!(
                "{}: not exported: its recurrent layers have no int8 op",
                arch.id
            );
            continue;
        }
        export_one(trained, settings)?;
    }
    let summary = write_summary(&settings.out_dir)?;
    // Standard output carries only JSON lines in that mode; the table is in summary.md.
    if settings.progress != Progress::JsonLines {
        print_line(&summary);
    }
    Ok(())
}
