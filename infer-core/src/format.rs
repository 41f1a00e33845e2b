//! The model file format: the one definition shared by the writer (the trainer) and the reader
//! ([`crate::Model::from_bytes`]).
//!
//! A model file (`.fmq`) is a fixed 16-byte [`Header`] followed by a payload, the
//! [postcard](https://docs.rs/postcard) encoding of a [`ModelDef`]: the model id, the input
//! shape and quantisation, then a list of ops ([`OpDef`]) forming a graph.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"FMQ8"` |
//! | 4 | 2 | format version, little endian ([`VERSION`]) |
//! | 6 | 2 | reserved, zero |
//! | 8 | 4 | payload length in bytes, little endian |
//! | 12 | 4 | CRC-32 (ISO-HDLC, as zlib) of the payload, little endian |
//! | 16 | n | payload |
//!
//! # The graph (format version 2)
//!
//! Tensors are numbered by [`TensorId`]: tensor 0 is the model input, and op `i` (0-based)
//! produces tensor `i + 1`. Each op names its input tensor(s) by id, and may only name tensors
//! made before it (ids up to `i`), so the list is in topological order and a residual block is
//! expressible: an [`OpDef::Add`] takes the block's input and its last convolution's output.
//! The model's output is the last op's tensor. Version 1 files (a chain of layers) are refused
//! with [`crate::Error::FormatV1`]: re-export them.
//!
//! # One set of types for reader and writer
//!
//! Every op definition is generic over its byte storage `B`: the reader decodes
//! `OpDef<&[u8]>` in place from the file (no allocator), the writer builds `OpDef<Vec<u8>>`
//! ([`OwnedModel`], feature `alloc`). Both encode to the same bytes: postcard writes a byte
//! array as its length and then the bytes, whether it is a slice or a vector.
//!
//! Multi-byte values inside byte arrays are little endian. Layouts follow candle: activations
//! NCHW, conv weights `[out_ch, in_ch, kh, kw]`, dense weights `[out_dim, in_dim]`, flatten
//! channel-major.

use serde::{Deserialize, Serialize};

pub use crate::ops::{
    AddDef, AvgPool2dDef, Conv2dDef, DenseDef, FlattenDef, GlobalAvgPoolDef, LeakyReluDef,
    MaxPool2dDef, OpDef, OpKind,
};
pub use crate::spec::{Padding, Shape, TensorShape};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"FMQ8";
/// The format version this crate reads and writes.
pub const VERSION: u16 = 2;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;

/// Longest model id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Whether `id` is a valid model id: 1 to [`MAX_ID_LEN`] ASCII letters, digits, `-`, `_` or
/// `.` (safe to print and to use as a file name).
pub fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The CRC-32 used over the payload (ISO-HDLC, the zlib/PNG polynomial).
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// The fixed header in front of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// CRC-32 of the payload.
    pub crc32: u32,
}

impl Header {
    /// The header for `payload`, at the current [`VERSION`].
    ///
    /// Returns `None` if the payload is longer than `u32::MAX` bytes.
    pub fn for_payload(payload: &[u8]) -> Option<Self> {
        Some(Self {
            version: VERSION,
            payload_len: u32::try_from(payload.len()).ok()?,
            crc32: CRC.checksum(payload),
        })
    }

    /// Reads the header of a model file and checks it against the payload after it: magic,
    /// version, reserved bytes, payload length and CRC (the header checks of
    /// [`crate::Model::from_bytes`], which a tool can report before loading the ops).
    ///
    /// ```
    /// use infer_core::format::Header;
    ///
    /// let payload = [1_u8, 2, 3];
    /// let mut file = Header::for_payload(&payload).unwrap().to_bytes().to_vec();
    /// file.extend_from_slice(&payload);
    /// let header = Header::from_bytes(&file)?;
    /// assert_eq!((header.version, header.payload_len), (2, 3));
    /// file[16] ^= 1;
    /// assert!(matches!(Header::from_bytes(&file), Err(infer_core::Error::Checksum { .. })));
    /// # Ok::<(), infer_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`crate::Error::Truncated`], [`crate::Error::BadMagic`], [`crate::Error::FormatV1`],
    /// [`crate::Error::UnsupportedVersion`], [`crate::Error::Reserved`],
    /// [`crate::Error::PayloadLength`], [`crate::Error::Checksum`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::Error> {
        let payload = crate::model::check_header(bytes)?;
        let field = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes)
        };
        Ok(Self {
            version: VERSION,
            payload_len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            crc32: field(12),
        })
    }

    /// The 16 header bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.payload_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.crc32.to_le_bytes());
        out
    }
}

/// Quantisation parameters of a tensor: `real = (q - zero_point) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QParams {
    /// Size of one quantisation step; finite and > 0.
    pub scale: f32,
    /// The int8 value that represents real 0, in `[-128, 127]`.
    pub zero_point: i32,
}

impl QParams {
    /// The real value of `q`: `(q - zero_point) * scale`, in `f32`.
    ///
    /// ```
    /// use infer_core::format::QParams;
    ///
    /// let q = QParams { scale: 0.5, zero_point: -3 };
    /// assert_eq!(q.dequantize(5), 4.0);
    /// ```
    pub fn dequantize(self, q: i8) -> f32 {
        let steps = i64::from(q) - i64::from(self.zero_point);
        steps as f32 * self.scale
    }
}

/// Activation fused into an op as an output clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Activation {
    /// No activation: clamp to `[-128, 127]`.
    None,
    /// ReLU: clamp to `[max(-128, zero_point), 127]`.
    Relu,
    /// ReLU6: clamp to `[max(-128, zero_point), min(127, quantize(6.0))]`.
    Relu6,
}

/// Number of a tensor in the graph: 0 is the model input, `i + 1` the output of op `i`.
pub type TensorId = u16;

/// Per-output-channel quantisation data of conv and dense ops.
///
/// Every array holds one little-endian entry per output channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChannelQuant<B> {
    /// `f32` weight scales (symmetric, zero point 0), 4 bytes each.
    pub weight_scales: B,
    /// `i32` biases at scale `input_scale * weight_scale[c]`, 4 bytes each.
    pub bias: B,
    /// `i32` Q0.31 requantisation multipliers, 4 bytes each, derived from the scales.
    pub multipliers: B,
    /// `i8` requantisation shifts (positive = left), 1 byte each.
    pub shifts: B,
}

impl<B: AsRef<[u8]>> ChannelQuant<B> {
    /// The borrowed view.
    pub fn view(&self) -> ChannelQuant<&[u8]> {
        ChannelQuant {
            weight_scales: self.weight_scales.as_ref(),
            bias: self.bias.as_ref(),
            multipliers: self.multipliers.as_ref(),
            shifts: self.shifts.as_ref(),
        }
    }
}

#[cfg(feature = "alloc")]
impl ChannelQuant<alloc::vec::Vec<u8>> {
    /// Appends one output channel.
    pub fn push(&mut self, weight_scale: f32, bias: i32, multiplier: i32, shift: i8) {
        self.weight_scales.extend(weight_scale.to_le_bytes());
        self.bias.extend(bias.to_le_bytes());
        self.multipliers.extend(multiplier.to_le_bytes());
        self.shifts.extend(shift.to_le_bytes());
    }
}

/// A whole quantised model: the postcard payload of a `.fmq` file.
///
/// The writer uses [`OwnedModel`] (`ModelDef<String, Vec<OpDef<Vec<u8>>>>`, feature `alloc`).
/// The reader decodes the same fields in place: `id` as `&str` and, since postcard writes a list
/// as its length followed by its elements, `ops` as its length (`u64`) followed by one
/// [`OpDef`] at a time ([`crate::Model::from_bytes`]), so no list of ops is ever held whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDef<S, O> {
    /// Model id, e.g. `s5-cnn`.
    pub id: S,
    /// Input image shape.
    pub input_shape: Shape,
    /// Quantisation of the int8 input. Raw u8 pixels map to the input as `q = pixel - 128`, so
    /// this records the normalisation folded into the model:
    /// `real = (pixel - 128 - zero_point) * scale`.
    pub input: QParams,
    /// The ops, in topological order (see the [module docs](self)).
    pub ops: O,
}

/// The owned model a writer builds (feature `alloc`).
#[cfg(feature = "alloc")]
pub type OwnedModel = ModelDef<alloc::string::String, alloc::vec::Vec<OpDef<alloc::vec::Vec<u8>>>>;

/// Why an [`OwnedModel`] cannot be encoded.
#[cfg(feature = "alloc")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// More ops than a [`TensorId`] can number.
    TooManyOps,
    /// The payload is longer than `u32::MAX` bytes.
    TooLarge,
    /// postcard failed to serialise.
    Serialize,
}

#[cfg(feature = "alloc")]
impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyOps => write!(f, "more than {} ops", TensorId::MAX - 1),
            Self::TooLarge => write!(f, "payload longer than u32::MAX bytes"),
            Self::Serialize => write!(f, "postcard serialisation failed"),
        }
    }
}

#[cfg(feature = "alloc")]
impl core::error::Error for EncodeError {}

#[cfg(feature = "alloc")]
impl OwnedModel {
    /// The complete model file: [`Header`] then the postcard payload.
    ///
    /// # Errors
    /// See [`EncodeError`].
    pub fn to_bytes(&self) -> Result<alloc::vec::Vec<u8>, EncodeError> {
        self.encode()
    }

    /// Decodes a model file (header, CRC, payload) into the owned types, so that a tool can
    /// read or rewrite a model without adding postcard itself. The ops are not validated: load
    /// the file with [`crate::Model::from_bytes`] for that.
    ///
    /// # Errors
    /// The header errors of [`crate::Model::from_bytes`], [`crate::Error::Decode`] and
    /// [`crate::Error::TrailingBytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, crate::Error> {
        let payload = crate::model::check_header(bytes)?;
        let (model, rest) =
            postcard::take_from_bytes::<Self>(payload).map_err(|_| crate::Error::Decode)?;
        if !rest.is_empty() {
            return Err(crate::Error::TrailingBytes(rest.len()));
        }
        Ok(model)
    }

    fn encode(&self) -> Result<alloc::vec::Vec<u8>, EncodeError> {
        if self.ops.len() >= usize::from(TensorId::MAX) {
            return Err(EncodeError::TooManyOps);
        }
        let payload = postcard::to_allocvec(self).map_err(|_| EncodeError::Serialize)?;
        let header = Header::for_payload(&payload).ok_or(EncodeError::TooLarge)?;
        let mut out = alloc::vec::Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}
