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
//! # Example
//!
//! ```
//! # use infer_core::format::*;
//! # use infer_core::quant::channel_multiplier;
//! # // A tiny model: Flatten, then Dense(784 -> 10) whose class 3 sums the pixels.
//! # let input = QParams { scale: 1.0 / 255.0, zero_point: -128 };
//! # let output = QParams { scale: 0.1, zero_point: 0 };
//! # let (m, s) = channel_multiplier(input.scale, 0.01, output.scale).unwrap();
//! # let mut weights = vec![0_u8; 10 * 784];
//! # weights[3 * 784..4 * 784].fill(1);
//! # let weight_scales: Vec<u8> = (0..10).flat_map(|_| 0.01_f32.to_le_bytes()).collect();
//! # let multipliers: Vec<u8> = (0..10).flat_map(|_| m.to_le_bytes()).collect();
//! # let shifts = vec![s.to_le_bytes()[0]; 10];
//! # let dense = DenseDef {
//! #     input: 1,
//! #     geometry: infer_core::spec::DenseGeometry { in_dim: 784, out_dim: 10 },
//! #     weights: &weights[..],
//! #     quant: ChannelQuant {
//! #         weight_scales: &weight_scales[..],
//! #         bias: &[0; 40][..],
//! #         multipliers: &multipliers[..],
//! #         shifts: &shifts[..],
//! #     },
//! #     output,
//! #     activation: Activation::None,
//! # };
//! # // Written with borrowed bytes (the same encoding as `OwnedModel`, feature `alloc`).
//! # let def = ModelDef {
//! #     id: "doc",
//! #     input_shape: Shape { channels: 1, height: 28, width: 28 },
//! #     input,
//! #     ops: vec![OpDef::Flatten(FlattenDef { input: 0 }), OpDef::Dense(dense)],
//! # };
//! # let payload = postcard::to_allocvec(&def).unwrap();
//! # let mut file = Header::for_payload(&payload).unwrap().to_bytes().to_vec();
//! # file.extend_from_slice(&payload);
//! # let model_bytes: &[u8] = &file;
//! use infer_core::Model;
//!
//! // `model_bytes` would usually be `include_bytes!("../models/s5-cnn.fmq")`.
//! let model: Model = Model::from_bytes(model_bytes)?;
//! let mut scratch = [0_i8; 1024];
//! assert!(model.scratch_len() <= scratch.len());
//!
//! let pixels = [255_u8; 28 * 28]; // one 28x28 grey image, row-major
//! let prediction = model.predict(&pixels, &mut scratch)?;
//! assert_eq!(prediction.class, 3);
//! // Dequantise a logit: (q - zero_point) * scale.
//! let score = model.output_qparams().dequantize(prediction.logits[3]);
//! assert!((score - 7.8).abs() < 1e-5);
//! # Ok::<(), infer_core::Error>(())
//! ```
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

pub use error::Error;
pub use model::{DEFAULT_MAX_OPS, IMAGE_LEN, IMAGE_SHAPE, MAX_CLASSES, Model, ModelOp, Prediction};
