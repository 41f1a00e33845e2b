//! Prepares what the firmware embeds, at build time:
//!
//! - `model.fmq`: the exported model `../models/$FIRMWARE_MODEL.fmq` (default `s3-lenet-base`),
//!   validated here by infer-core itself, which also gives the scratch length to reserve;
//! - `images.bin`, `labels.bin`: the first `$FIRMWARE_IMAGES` (default 200) Fashion-MNIST test
//!   images and labels, read from the gzip IDX files in `$FASHION_MNIST_DIR` (default Debian's
//!   `/usr/share/datasets/fashion-mnist`);
//! - `config.rs`: the constants `src/main.rs` includes;
//!
//! and passes the linker scripts (`memory.x`, cortex-m-rt's `link.x`, defmt's `defmt.x`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

const MODEL_ENV: &str = "FIRMWARE_MODEL";
const IMAGES_ENV: &str = "FIRMWARE_IMAGES";
const DATA_ENV: &str = "FASHION_MNIST_DIR";
const DEFAULT_MODEL: &str = "s3-lenet-base";
const DEFAULT_IMAGES: usize = 200;
const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";
const TEST_IMAGES_FILE: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS_FILE: &str = "t10k-labels-idx1-ubyte.gz";
const SIDE: usize = 28;
const TEST_SET_LEN: usize = 10_000;

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    for var in [MODEL_ENV, IMAGES_ENV, DATA_ENV] {
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
    let model = infer_core::Model::from_bytes(&model_bytes).map_err(|e| {
        format!(
            "{}: infer-core rejects the model: {e}",
            model_path.display()
        )
    })?;
    let scratch_len = model.scratch_len();
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
            .filter(|n| (1..=TEST_SET_LEN).contains(n))
            .ok_or_else(|| format!("{IMAGES_ENV}={text:?}: expected 1 to {TEST_SET_LEN}"))?,
        Err(_) => DEFAULT_IMAGES,
    };
    let data_dir = std::env::var_os(DATA_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let images_path = data_dir.join(TEST_IMAGES_FILE);
    let labels_path = data_dir.join(TEST_LABELS_FILE);
    println!("cargo:rerun-if-changed={}", images_path.display());
    println!("cargo:rerun-if-changed={}", labels_path.display());
    let pixels = read_idx(&images_path, 0x0803, &[SIDE, SIDE], images)?;
    let labels = read_idx(&labels_path, 0x0801, &[], images)?;
    fs::write(out_dir.join("images.bin"), &pixels)
        .map_err(|e| format!("writing images.bin: {e}"))?;
    fs::write(out_dir.join("labels.bin"), &labels)
        .map_err(|e| format!("writing labels.bin: {e}"))?;

    let config = format!(
        "/// Id of the embedded model.\n\
         pub const MODEL_ID: &str = {model_id:?};\n\
         /// Length of the embedded `.fmq` file in bytes.\n\
         pub const MODEL_LEN: usize = {model_len};\n\
         /// Scratch bytes the model needs (`Model::scratch_len`), reserved statically.\n\
         pub const SCRATCH_LEN: usize = {scratch_len};\n\
         /// Number of embedded test images.\n\
         pub const IMAGES: usize = {images};\n",
        model_len = model_bytes.len(),
    );
    fs::write(out_dir.join("config.rs"), config).map_err(|e| format!("writing config.rs: {e}"))
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

/// The first `count` items of a gzip IDX file with the given magic and item dimensions.
fn read_idx(path: &Path, magic: u32, dims: &[usize], count: usize) -> Result<Vec<u8>, String> {
    let hint = format!(
        "install the dataset (`apt-get install dataset-fashion-mnist`) or set {DATA_ENV} to the \
         folder holding {TEST_IMAGES_FILE} and {TEST_LABELS_FILE}"
    );
    let file = fs::File::open(path).map_err(|e| format!("{}: {e}; {hint}", path.display()))?;
    let mut reader = GzDecoder::new(file);
    let bad = |what: &str| format!("{}: {what}", path.display());
    let mut header = vec![0_u8; 4 * (2 + dims.len())];
    reader
        .read_exact(&mut header)
        .map_err(|e| bad(&format!("reading the IDX header: {e}")))?;
    let words: Vec<usize> = header
        .chunks_exact(4)
        .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize)
        .collect();
    if words[0] != magic as usize {
        return Err(bad(&format!(
            "magic {:#010x}, expected {magic:#010x}",
            words[0]
        )));
    }
    if words[2..] != *dims {
        return Err(bad(&format!(
            "item shape {:?}, expected {dims:?}",
            &words[2..]
        )));
    }
    if words[1] < count {
        return Err(bad(&format!("{} items, {count} requested", words[1])));
    }
    let mut data = vec![0_u8; count * dims.iter().product::<usize>()];
    reader
        .read_exact(&mut data)
        .map_err(|e| bad(&format!("reading {count} items: {e}")))?;
    Ok(data)
}
