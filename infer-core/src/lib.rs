//! `no_std`, allocation-free int8 inference for tiny Fashion-MNIST classifiers.
//!
//! The host trainer quantises a model to int8 and writes it as a `.fmq` file ([`format`]);
//! this crate validates the file once ([`Model::from_bytes`]) and then runs it on a
//! microcontroller with integer-only kernels ([`kernels`]) that are bit-exact with TensorFlow
//! Lite for Microcontrollers' reference kernels (and CMSIS-NN): per-channel symmetric weights,
//! asymmetric activations, Q0.31 requantisation ([`quant`]).
//!
//! The model is read in place (every weight is a slice of the file), and the only working
//! memory is a caller-provided scratch buffer of [`Model::scratch_len`] bytes: no allocator, no
//! `unsafe`, no panics.
//!
//! # Linking it into your binary
//!
//! In your `Cargo.toml`, the op features your models use (all are on by default; see
//! [Features](#features)) and optimisation for infer-core even in debug builds (its kernels are
//! written for the auto-vectoriser and run about 250 times slower unoptimised; a workspace's
//! profile settings do not travel to the crates that depend on it):
//!
//! ```toml
//! [dependencies]
//! infer-core = { path = "../infer-core", default-features = false, features = ["conv2d", "dense", "max-pool2d"] }
//!
//! [profile.dev.package.infer-core]
//! opt-level = 3
//!
//! [profile.release.package.infer-core]
//! opt-level = 3
//! ```
//!
//! Then embed a model file, validate it once, and classify 28x28 grey images in a scratch
//! buffer of [`Model::scratch_len`] bytes (on firmware, a `static mut` array or one carved
//! from a RAM section; its length is also the model's `int8.scratch_bytes` in
//! `models/<id>.json`). This example is a doctest: it embeds the committed `s5-cnn` model and
//! test image 0 of Fashion-MNIST (`tests/data/test-image-0.u8`, its 784 raw pixels, written
//! and checked against the dataset by `tests/fixtures.rs`), and runs with
//! `cargo test -p infer-core --doc`.
//!
//! ```
//! use infer_core::Model;
//!
//! /// The model: flash, read in place (`Model` borrows every weight from it).
//! static MODEL: &[u8] = include_bytes!("../../models/s5-cnn.fmq");
//! /// One 28x28 grey image, row-major raw pixels (a light object on black, as in
//! /// Fashion-MNIST): test image 0, an ankle boot.
//! static IMAGE: &[u8; 784] = include_bytes!("../tests/data/test-image-0.u8");
//! /// The scratch buffer: exactly `Model::scratch_len()` bytes of RAM.
//! const SCRATCH_LEN: usize = 25_872;
//!
//! // Validates header, CRC, every op, shape and quantisation parameter; never panics.
//! let model: Model = Model::from_bytes(MODEL)?;
//! assert_eq!(model.scratch_len(), SCRATCH_LEN);
//!
//! let mut scratch = [0_i8; SCRATCH_LEN];
//! let prediction = model.predict(IMAGE, &mut scratch)?; // can only fail on a short scratch
//! assert_eq!(prediction.class, 9); // ankle boot
//!
//! // The int8 logits, dequantised: real = (q - zero_point) * scale.
//! let logit = model.output_qparams().dequantize(prediction.logits[9]);
//! let confidence = prediction.confidence(model.output_qparams());
//! assert!(logit > 0.0 && confidence > 0.5);
//! # Ok::<(), infer_core::Error>(())
//! ```
//!
//! `examples/classify.rs` does the same for a PNG or PGM photo of any size (grey conversion and
//! resizing documented there):
//! `cargo run -p infer-core --example classify -- photo.png`. To see what a model holds (ops,
//! tensors, the scratch plan, flash and RAM): `firmware-sim inspect models/s5-cnn.fmq`, built
//! on [`Model::ops`] and [`Model::tensors`].
//!
//! # Features
//!
//! - One per op, all on by default: `conv2d`, `dense`, `max-pool2d`, `avg-pool2d`, `add`,
//!   `global-avg-pool`, `leaky-relu` (flatten is always built). Firmware that runs one known
//!   model depends on infer-core with `default-features = false` and the features of that
//!   model's ops, and links no other kernel; a model using an op that is not built fails to load
//!   with [`Error::OpNotBuilt`] ([`ops`] module docs).
//! - `defmt`: implements `defmt::Format` for the public types, for logging on firmware.
//! - `alloc`: [`format::OwnedModel`], the owned model and its encoder, for writers (the
//!   trainer, tests).
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "defmt")]
mod defmt;
pub mod error;
pub mod format;
pub mod kernels;
pub mod model;
pub mod ops;
mod plan;
pub mod quant;
/// Naive scalar reference kernels: the oracle for unit tests, proptests and integration tests.
pub mod reference;
pub mod spec;
pub mod tensors;

pub use error::Error;
pub use model::{DEFAULT_MAX_OPS, IMAGE_LEN, IMAGE_SHAPE, MAX_CLASSES, Model, ModelOp, Prediction};
