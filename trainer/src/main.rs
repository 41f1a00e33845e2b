//! `trainer`: train the reference-study Fashion-MNIST models, quantise them to int8, export
//! them for infer-core, and reproduce the studies' tables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use fashion_mnist as data;
use model_report::markdown::RESULTS;
use model_report::optimizer::OptimizerConfig;
use trainer::arch::{self, Arch};
use trainer::pipeline::{
    Overrides, Settings, TrainResult, export_one, load_trained, train_one, write_summary,
};
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
/// for infer-core.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, clap::Args, Clone)]
struct Common {
    /// Model id to process (repeatable; `trainer list` shows them); default: the deployable
    /// models (s5-ann, s5-cnn, s3-lenet-base, tiny-resnet).
    #[arg(long = "model", short = 'm', global = true)]
    models: Vec<String>,
    /// Epochs (default: the study's).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    epochs: Option<u64>,
    /// Mini-batch size (default: the study's).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Optimizer: sgd, adam, adamw, rmsprop, adagrad, adadelta, adamax or nadam, with
    /// PyTorch's defaults (default: the study's).
    #[arg(long, global = true, value_parser = parse_optimizer)]
    optimizer: Option<OptimizerConfig>,
    /// Learning rate (default: the study's, or the --optimizer's default).
    #[arg(long, global = true, value_parser = parse_lr)]
    lr: Option<f64>,
    /// Train on only the first N images of the training split (smoke runs).
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    train_limit: Option<u64>,
    /// Seed for initialisation, split, shuffling, dropout, augmentation and calibration.
    #[arg(long, default_value_t = 42, global = true)]
    seed: u64,
    /// Folder with the Fashion-MNIST IDX gzip files.
    #[arg(long, env = "FASHION_MNIST_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Where models and their reports are written.
    #[arg(long, default_value = "models", global = true)]
    out_dir: PathBuf,
    /// Where training checkpoints are written (one `<id>.ckpt` per model, after every epoch).
    #[arg(long, default_value = "checkpoints", global = true)]
    checkpoint_dir: PathBuf,
    /// Continue interrupted runs from their checkpoints (same settings only).
    #[arg(long, global = true)]
    resume: bool,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Training images used to calibrate activation ranges (as many more choose the range
    /// method).
    #[arg(long, default_value_t = 2000, global = true)]
    calibration_images: usize,
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

fn parse_lr(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive learning rate")),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, export and verify (the default).
    Run,
    /// Train only: write `<id>.safetensors` and `<id>.json` with float metrics.
    Train,
    /// Quantise and verify models already trained into the output folder.
    Export,
    /// List every model: study, parameters, MACs, input, optimizer, epochs, batch, split, and
    /// whether it exports to int8.
    List,
    /// Print the selected architectures (every one by default) as JSON: id, study, layers,
    /// recipe, published numbers, trainable parameters. `bench/torch_models.py` builds its
    /// PyTorch twins from this.
    Describe,
    /// Train a study's models with its settings (skipping those already trained with the same
    /// settings) and write `reports/<study>.md` and `.csv` beside the published numbers.
    Study {
        /// s1, s2, s3, s4, s5 or all.
        study: String,
        /// Only rewrite the reports from the recorded results; train nothing.
        #[arg(long)]
        report_only: bool,
        /// Folder of the study reports.
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
    },
    /// Explore the dataset: write the pictures `reports/data/*.png` and the page
    /// `reports/data.md` (class counts per split, sample and mean images, PCA).
    Data {
        /// Folder of the reports.
        #[arg(long, default_value = "reports")]
        reports_dir: PathBuf,
    },
    /// Print the results table from `<out-dir>/*.json`; optionally rewrite README's copy.
    Report {
        /// Replace the text between `<!-- results:begin -->` and `<!-- results:end -->` in
        /// this file with the table.
        #[arg(long)]
        update_readme: Option<PathBuf>,
    },
}

fn selected(common: &Common) -> Result<Vec<Arch>> {
    if common.models.is_empty() {
        return Ok(arch::deployable());
    }
    common
        .models
        .iter()
        .map(|id| arch::by_id(id).map_err(Into::into))
        .collect()
}

fn to_usize(v: Option<u64>) -> Option<usize> {
    v.map(|v| usize::try_from(v).unwrap_or(usize::MAX))
}

impl Common {
    fn settings(&self) -> Settings {
        Settings {
            overrides: Overrides {
                epochs: to_usize(self.epochs),
                batch_size: to_usize(self.batch),
                optimizer: self.optimizer,
                learning_rate: self.lr,
                train_limit: to_usize(self.train_limit),
            },
            seed: self.seed,
            out_dir: self.out_dir.clone(),
            checkpoint_dir: self.checkpoint_dir.clone(),
            resume: self.resume,
            quiet: self.quiet,
            calibration_images: self.calibration_images,
        }
    }
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = cli.common;
    match cli.command.unwrap_or(Command::Run) {
        Command::List => {
            print!("{}", study::list_table(&listed(&common)?)?);
            Ok(())
        }
        Command::Describe => describe(&listed(&common)?),
        Command::Report { update_readme } => {
            let table = write_summary(&common.out_dir)?;
            print!("{table}");
            if let Some(readme) = update_readme {
                RESULTS.update_file(&readme, &table)?;
            }
            Ok(())
        }
        Command::Study {
            study,
            report_only,
            reports_dir,
        } => run_study(&common, &study, report_only, &reports_dir),
        Command::Data { reports_dir } => {
            let dataset = data::load(common.data_dir.as_deref())?;
            let exploration = trainer::explore::explore(&dataset, common.seed)?;
            for path in exploration.write(&dataset, &reports_dir)? {
                eprintln!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Run => per_model(&common, Step::Run),
        Command::Train => per_model(&common, Step::Train),
        Command::Export => per_model(&common, Step::Export),
    }
}

/// The models `list` and `describe` show: the selected ones, or every one.
fn listed(common: &Common) -> Result<Vec<Arch>> {
    if common.models.is_empty() {
        Ok(arch::all())
    } else {
        selected(common)
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
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// Checks the output folder and installs the Ctrl-C handler, before any long work.
fn prepare(common: &Common) -> Result<Settings> {
    std::fs::create_dir_all(&common.out_dir)
        .with_context(|| format!("creating the output folder {}", common.out_dir.display()))?;
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: exiting without a checkpoint of the current batch");
            std::process::exit(130);
        }
        eprintln!(
            "\nCtrl-C: stopping after this batch and writing the checkpoint (again to quit now)"
        );
    })
    .context("installing the Ctrl-C handler")?;
    Ok(common.settings())
}

fn run_study(common: &Common, which: &str, report_only: bool, reports_dir: &Path) -> Result<()> {
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
            for path in study::write_reports(s, &common.out_dir, reports_dir)? {
                eprintln!("wrote {}", path.display());
            }
        }
        return Ok(());
    }
    let settings = prepare(common)?;
    let dataset = data::load(common.data_dir.as_deref())?;
    for s in studies {
        let finished = study::run(s, &dataset, &settings, &STOP)?;
        for path in study::write_reports(s, &settings.out_dir, reports_dir)? {
            eprintln!("wrote {}", path.display());
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

fn per_model(common: &Common, step: Step) -> Result<()> {
    let archs = selected(common)?;
    let settings = prepare(common)?;
    let dataset = data::load(common.data_dir.as_deref())?;
    for arch in &archs {
        let trained = match step {
            Step::Train | Step::Run => match train_one(arch, &dataset, &settings, Some(&STOP))? {
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
            Step::Export => load_trained(arch, &dataset, &settings)?,
        };
        if step == Step::Train {
            continue;
        }
        if !arch.deployable() {
            eprintln!(
                "{}: not exported: its recurrent layers have no int8 op",
                arch.id
            );
            continue;
        }
        export_one(trained, &settings)?;
    }
    println!("{}", write_summary(&common.out_dir)?);
    Ok(())
}
