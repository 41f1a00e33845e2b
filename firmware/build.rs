//! Prepares what the firmware embeds, at build time:
//!
//! - `model.fmq`: the exported model `../models/$FIRMWARE_MODEL.fmq` (default `s3-lenet-base`),
//!   validated here by infer-core itself, which also gives the scratch length to reserve, and
//!   checked against the ops this build links (the `op-*` features);
//! - `images.bin`, `labels.bin`: the first `$FIRMWARE_IMAGES` (default 200) Fashion-MNIST test
//!   images and labels, read and validated by the workspace's `fashion-mnist` crate from
//!   `$FASHION_MNIST_DIR` (default Debian's `/usr/share/datasets/fashion-mnist`);
//! - `config.rs`: the constants `src/main.rs` includes (among them the model's op count, the op
//!   capacity of the firmware's `Model`, so that a large model loads and a small one costs little
//!   RAM);
//!
//! and passes the linker scripts (`memory.x`, cortex-m-rt's `link.x`, defmt's `defmt.x`).

use std::fs;
use std::path::{Path, PathBuf};

use fashion_mnist::{DATA_DIR_ENV, TEST_COUNT, TEST_IMAGES, TEST_LABELS};
use infer_core::Model;
use infer_core::ops::OpKind;

const MODEL_ENV: &str = "FIRMWARE_MODEL";
const IMAGES_ENV: &str = "FIRMWARE_IMAGES";
const DEFAULT_MODEL: &str = "s3-lenet-base";
const DEFAULT_IMAGES: usize = 200;
/// Op capacity the build script loads the model with, to count its ops (the firmware's own
/// `Model` then holds exactly that many).
const HOST_MAX_OPS: usize = 255;

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    for var in [MODEL_ENV, IMAGES_ENV, DATA_DIR_ENV] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=memory.x");

    // Linker scripts: memory.x from OUT_DIR, then cortex-m-rt's link.x (and defmt's table).
    fs::copy(manifest_dir.join("memory.x"), out_dir.join("memory.x"))
        .map_err(|e| format!("copying memory.x: {e}"))?;
    println!("cargo:rustc-link-search={}", out_dir.display());
    println!("cargo:rustc-link-arg-bins=-Tlink.x");
    if std::env::var_os("CARGO_FEATURE_DEFMT").is_some() {
        println!("cargo:rustc-link-arg-bins=-Tdefmt.x");
    }

    let model_id = std::env::var(MODEL_ENV).unwrap_or_else(|_| DEFAULT_MODEL.to_string());
    let models_dir = manifest_dir.join("..").join("models");
    let model_path = models_dir.join(format!("{model_id}.fmq"));
    println!("cargo:rerun-if-changed={}", model_path.display());
    let model_bytes = fs::read(&model_path).map_err(|e| {
        format!(
            "{MODEL_ENV}={model_id}: cannot read {}: {e}; available models: {}",
            model_path.display(),
            available_models(&models_dir)
        )
    })?;
    let model = Model::<HOST_MAX_OPS>::from_bytes(&model_bytes).map_err(|e| {
        format!(
            "{}: infer-core rejects the model: {e}",
            model_path.display()
        )
    })?;
    let scratch_len = model.scratch_len();
    let ops = model.ops().len();
    check_ops_built(&model, &model_path)?;
    if model.input_shape() != infer_core::IMAGE_SHAPE {
        return Err(format!(
            "{}: the firmware feeds 1x28x28 images, the model takes {:?}",
            model_path.display(),
            model.input_shape()
        ));
    }
    fs::write(out_dir.join("model.fmq"), &model_bytes)
        .map_err(|e| format!("writing model.fmq: {e}"))?;

    let images = match std::env::var(IMAGES_ENV) {
        Ok(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=TEST_COUNT).contains(n))
            .ok_or_else(|| format!("{IMAGES_ENV}={text:?}: expected 1 to {TEST_COUNT}"))?,
        Err(_) => DEFAULT_IMAGES,
    };
    // The folder `$FASHION_MNIST_DIR` or Debian's, as everywhere else in the workspace.
    let data_dir = fashion_mnist::find_data_dir(None).map_err(|e| e.to_string())?;
    println!(
        "cargo:rerun-if-changed={}",
        data_dir.join(TEST_IMAGES).display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        data_dir.join(TEST_LABELS).display()
    );
    let test = fashion_mnist::load_test(Some(&data_dir))
        .map_err(|e| e.to_string())?
        .head(images);
    fs::write(out_dir.join("images.bin"), &test.images)
        .map_err(|e| format!("writing images.bin: {e}"))?;
    fs::write(out_dir.join("labels.bin"), &test.labels)
        .map_err(|e| format!("writing labels.bin: {e}"))?;

    let config = format!(
        "/// Id of the embedded model.\n\
         pub const MODEL_ID: &str = {model_id:?};\n\
         /// Length of the embedded `.fmq` file in bytes.\n\
         pub const MODEL_LEN: usize = {model_len};\n\
         /// Scratch bytes the model needs (`Model::scratch_len`), reserved statically.\n\
         pub const SCRATCH_LEN: usize = {scratch_len};\n\
         /// Ops of the model: the op capacity of the firmware's `Model`.\n\
         pub const MAX_OPS: usize = {ops};\n\
         /// Number of embedded test images.\n\
         pub const IMAGES: usize = {images};\n",
        model_len = model_bytes.len(),
    );
    fs::write(out_dir.join("config.rs"), config).map_err(|e| format!("writing config.rs: {e}"))
}

/// The firmware feature that builds an op: `op-<infer-core feature>` (`None`: always built).
fn firmware_feature(kind: OpKind) -> Option<String> {
    kind.feature().map(|f| format!("op-{f}"))
}

/// Checks that every op of the model is built into this firmware (its `op-*` feature is on),
/// so that a missing op fails the build with the features to enable rather than the run.
fn check_ops_built<const N: usize>(model: &Model<'_, N>, path: &Path) -> Result<(), String> {
    let mut missing: Vec<String> = Vec::new();
    for kind in model.ops().iter().map(|op| op.kind()) {
        let Some(feature) = firmware_feature(kind) else {
            continue;
        };
        let var = format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_"));
        if std::env::var_os(var).is_none() && !missing.contains(&feature) {
            missing.push(feature);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: the model uses ops this build leaves out: enable the firmware features {}",
            path.display(),
            missing.join(",")
        ))
    }
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("cargo did not set {name}"))
}

fn available_models(dir: &Path) -> String {
    let mut ids: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "fmq"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    ids.sort();
    if ids.is_empty() {
        format!("none in {}", dir.display())
    } else {
        ids.join(", ")
    }
}
