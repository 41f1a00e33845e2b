//! `trainer`: train, quantise, export and verify the deployable Fashion-MNIST models.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use fashion_mnist as data;
use model_report::markdown::RESULTS;
use trainer::arch::{self, Arch};
use trainer::pipeline::{Settings, export_one, load_trained, train_one, write_summary};

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
    /// Print the selected architectures (every one by default) as JSON: id, description, input
    /// shape, layers, training settings, trainable parameters. `bench/torch_models.py` builds
    /// its PyTorch twins from this.
    Describe,
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

impl Common {
    fn settings(&self) -> Settings {
        Settings {
            epochs: self.epochs,
            seed: self.seed,
            out_dir: self.out_dir.clone(),
            train_limit: self.train_limit,
            quiet: self.quiet,
            calibration_images: self.calibration_images,
        }
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let common = cli.common;
    let archs = selected(&common)?;
    let command = cli.command.unwrap_or(Command::Run);
    if let Command::Describe = command {
        let mut out = Vec::with_capacity(archs.len());
        for arch in &archs {
            let mut value = serde_json::to_value(arch)?;
            value["param_count"] = serde_json::json!(arch.param_count()?);
            out.push(value);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if let Command::Report { update_readme } = &command {
        let table = write_summary(&common.out_dir)?;
        print!("{table}");
        if let Some(readme) = update_readme {
            RESULTS.update_file(readme, &table)?;
        }
        return Ok(());
    }
    let dataset = data::load(common.data_dir.as_deref())?;
    let settings = common.settings();
    for arch in &archs {
        match command {
            Command::Train => {
                train_one(arch, &dataset, &settings)?;
            }
            Command::Run => {
                let trained = train_one(arch, &dataset, &settings)?;
                export_one(trained, &dataset, &settings)?;
            }
            Command::Export => {
                let trained = load_trained(arch, &dataset, &settings)?;
                export_one(trained, &dataset, &settings)?;
            }
            Command::Report { .. } | Command::Describe => unreachable!("handled above"),
        }
    }
    println!("{}", write_summary(&common.out_dir)?);
    Ok(())
}
