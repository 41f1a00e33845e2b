//! `firmware-sim`: every `.fmq` in a folder through infer-core over the 10k test set.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use firmware_sim::{SCRATCH_CAPACITY, describe, model_files, run_model};

/// Run exported models through infer-core as firmware would, over the full test set, and check
/// their int8 accuracy against the float accuracy the trainer recorded.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
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

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let test = trainer::data::load_test(cli.data_dir.as_deref())?;
    // One fixed-size buffer for every model, as a firmware image would reserve statically.
    let mut scratch = [0i8; SCRATCH_CAPACITY];
    let mut runs = Vec::new();
    let mut failed = false;
    for path in model_files(&cli.models)? {
        match run_model(&path, &test, &mut scratch) {
            Ok(run) => {
                failed |= !run.passes();
                if !cli.json {
                    println!("{}", describe(&run));
                }
                runs.push(run);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                failed = true;
            }
        }
    }
    if cli.json {
        println!("{}", serde_json::json!({ "models": runs }));
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
