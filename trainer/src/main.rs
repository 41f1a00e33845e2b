//! `trainer`: train, quantise, export and verify the deployable Fashion-MNIST models.

use std::path::PathBuf;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::{Parser, Subcommand};

use fashion_mnist as data;
use model_report::markdown::{RESULTS, summary_table};
use model_report::{FloatReport, Metrics, ModelReport, TrainOptions};
use trainer::arch::{self, Arch};
use trainer::export;
use trainer::net::Net;
use trainer::train;

/// Training allocates and frees tensors of several MiB every step; glibc's malloc hands those
/// straight back to the kernel and faults them in again, zeroed, on the next step (half the CPU
/// time of a CNN epoch went to page faults). mimalloc keeps and reuses them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Model id to process (repeatable); default: every deployable model.
    #[arg(long = "model", short = 'm', global = true)]
    models: Vec<String>,
    /// Epochs (default: each model's recorded setting).
    #[arg(long, global = true)]
    epochs: Option<usize>,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42, global = true)]
    seed: u64,
    /// Folder with the Fashion-MNIST IDX gzip files.
    #[arg(long, env = "FASHION_MNIST_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Where models and reports are written.
    #[arg(long, default_value = "models", global = true)]
    out_dir: PathBuf,
    /// Train on only the first N training images (smoke runs).
    #[arg(long, global = true)]
    train_limit: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Training images used to calibrate activation ranges (as many more choose the range method).
    #[arg(long, default_value_t = 2000, global = true)]
    calibration_images: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train, export and verify (the default).
    Run,
    /// Train only: write `<id>.safetensors` and `<id>.json` with float metrics.
    Train,
    /// Quantise and verify models already trained into the output folder.
    Export,
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

fn report_path(common: &Common, id: &str) -> PathBuf {
    common.out_dir.join(format!("{id}.json"))
}

/// Trains one model, saves its weights and float report; returns the float test predictions too.
fn train_one(
    arch: &Arch,
    dataset: &data::Dataset,
    common: &Common,
) -> Result<(Net, ModelReport, Vec<u8>)> {
    let train_split = match common.train_limit {
        Some(n) => dataset.train.head(n),
        None => dataset.train.clone(),
    };
    let options = TrainOptions {
        epochs: common.epochs.unwrap_or(arch.settings.epochs),
        batch_size: arch.settings.batch_size,
        learning_rate: arch.settings.learning_rate,
        seed: common.seed,
    };
    let net = Net::new(arch, common.seed, &Device::Cpu)?;
    eprintln!(
        "training {} ({} params) for {} epochs on {} images",
        arch.id,
        arch.param_count()?,
        options.epochs,
        train_split.len()
    );
    let history = train::train(&net, &train_split, &options, common.quiet)?;
    let pred = train::predict(&net, &dataset.test, 500)?;
    let test = Metrics::new(&dataset.test.labels, &pred, data::NUM_CLASSES);
    if !common.quiet {
        eprintln!("{}: float test metrics\n{test}", arch.id);
    }
    std::fs::create_dir_all(&common.out_dir)
        .with_context(|| format!("creating {}", common.out_dir.display()))?;
    let weights = common.out_dir.join(format!("{}.safetensors", arch.id));
    net.save(&weights)
        .with_context(|| format!("writing {}", weights.display()))?;
    let report = ModelReport {
        id: arch.id.to_string(),
        description: arch.description.to_string(),
        layers: serde_json::to_value(&arch.layers)?,
        float: FloatReport {
            options,
            train_images: train_split.len(),
            param_count: arch.param_count()?,
            history,
            test,
            safetensors_bytes: std::fs::metadata(&weights)?.len(),
        },
        int8: None,
        firmware: None,
    };
    report.write(&report_path(common, arch.id))?;
    Ok((net, report, pred))
}

fn export_one(
    net: &Net,
    mut report: ModelReport,
    float_pred: &[u8],
    dataset: &data::Dataset,
    common: &Common,
) -> Result<ModelReport> {
    eprintln!("quantising and verifying {}", net.arch.id);
    let int8 = export::export(
        net,
        dataset,
        float_pred,
        &common.out_dir,
        common.calibration_images,
        common.seed,
    )?;
    eprintln!(
        "{}: int8 test accuracy {:.2}% (float {:.2}%), agreement {:.2}%",
        net.arch.id,
        100.0 * int8.test.accuracy,
        100.0 * report.float.test.accuracy,
        100.0 * int8.agreement
    );
    if !common.quiet {
        eprintln!(
            "{}: int8 test metrics (infer-core)\n{}",
            net.arch.id, int8.test
        );
    }
    report.int8 = Some(int8);
    report.write(&report_path(common, net.arch.id))?;
    Ok(report)
}

/// Loads trained weights and their report, re-evaluating the float model on the test set so the
/// report describes the network as this build computes it; returns the float predictions too.
fn load_trained(
    arch: &Arch,
    dataset: &data::Dataset,
    common: &Common,
) -> Result<(Net, ModelReport, Vec<u8>)> {
    let weights = common.out_dir.join(format!("{}.safetensors", arch.id));
    let net = Net::load(arch, &weights, &Device::Cpu).with_context(|| {
        format!(
            "loading {} (train it first: trainer train -m {})",
            weights.display(),
            arch.id
        )
    })?;
    let mut report = ModelReport::read(&report_path(common, arch.id))?;
    let pred = train::predict(&net, &dataset.test, 500)?;
    report.float.test = Metrics::new(&dataset.test.labels, &pred, data::NUM_CLASSES);
    Ok((net, report, pred))
}

fn write_summary(common: &Common) -> Result<String> {
    let table = summary_table(&ModelReport::read_dir(&common.out_dir)?);
    let path = common.out_dir.join("summary.md");
    std::fs::write(
        &path,
        format!(
            "# Exported models\n\nGenerated by `trainer report` from `*.json` in this folder.\n\n{table}"
        ),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    Ok(table)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = cli.common;
    let archs = selected(&common)?;
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Report { update_readme } = &command {
        let table = write_summary(&common)?;
        print!("{table}");
        if let Some(readme) = update_readme {
            RESULTS.update_file(readme, &table)?;
        }
        return Ok(());
    }
    let dataset = data::load(common.data_dir.as_deref())?;
    for arch in &archs {
        match command {
            Command::Train => {
                train_one(arch, &dataset, &common)?;
            }
            Command::Run => {
                let (net, report, pred) = train_one(arch, &dataset, &common)?;
                export_one(&net, report, &pred, &dataset, &common)?;
            }
            Command::Export => {
                let (net, report, pred) = load_trained(arch, &dataset, &common)?;
                export_one(&net, report, &pred, &dataset, &common)?;
            }
            Command::Report { .. } => unreachable!("handled above"),
        }
    }
    println!("{}", write_summary(&common)?);
    Ok(())
}
