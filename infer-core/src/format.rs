//! The model file format: the one definition shared by the writer (the trainer) and the reader
//! ([`crate::Model::from_bytes`]).
//!
//! A model file (`.fmq`) is a fixed 16-byte [`Header`] followed by a payload, the
//! [postcard](https://docs.rs/postcard) encoding of a [`ModelDef`]:
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
//! Every array in the payload is a borrowed byte slice (postcard: varint length + raw bytes) so
//! that a model can be read in place from flash with no allocator. Multi-byte values inside those
//! slices are little endian. Layouts follow candle: activations NCHW, conv weights
//! `[out_ch, in_ch, kh, kw]`, dense weights `[out_dim, in_dim]`, flatten channel-major.

use serde::{Deserialize, Serialize};

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"FMQ8";
/// The format version this crate reads and writes.
pub const VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// Most layers a model may have.
pub const MAX_LAYERS: usize = 32;

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

/// Activation fused into a conv or dense layer as an output clamp.
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

/// Shape of one image or activation tensor (batch size 1), NCHW without the N.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Shape {
    /// Channels.
    pub channels: u16,
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
}

impl Shape {
    /// Number of elements, `channels * height * width`.
    pub const fn len(self) -> usize {
        self.channels as usize * self.height as usize * self.width as usize
    }

    /// Whether the shape holds no element.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Number of elements, or `None` if it overflows `usize` (possible on 32-bit targets).
    pub fn checked_len(self) -> Option<usize> {
        usize::from(self.channels)
            .checked_mul(usize::from(self.height))?
            .checked_mul(usize::from(self.width))
    }
}

/// Per-output-channel quantisation data shared by conv and dense layers.
///
/// Every slice holds one little-endian entry per output channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChannelQuant<'a> {
    /// `f32` weight scales (symmetric, zero point 0), 4 bytes each.
    #[serde(borrow)]
    pub weight_scales: &'a [u8],
    /// `i32` biases at scale `input_scale * weight_scale[c]`, 4 bytes each.
    #[serde(borrow)]
    pub bias: &'a [u8],
    /// `i32` Q0.31 requantisation multipliers, 4 bytes each, derived from the scales.
    #[serde(borrow)]
    pub multipliers: &'a [u8],
    /// `i8` requantisation shifts (positive = left), 1 byte each.
    #[serde(borrow)]
    pub shifts: &'a [u8],
}

/// A 2-D convolution with per-channel int8 weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conv2dDef<'a> {
    /// Input channels.
    pub in_ch: u16,
    /// Output channels.
    pub out_ch: u16,
    /// Kernel height.
    pub kernel_h: u8,
    /// Kernel width.
    pub kernel_w: u8,
    /// Stride in both directions.
    pub stride: u8,
    /// Zero padding on every side.
    pub padding: u8,
    /// `i8` weights `[out_ch, in_ch, kernel_h, kernel_w]`.
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// Per-channel scales, bias and requantisation.
    #[serde(borrow)]
    pub quant: ChannelQuant<'a>,
    /// Output quantisation.
    pub output: QParams,
    /// Fused activation.
    pub activation: Activation,
}

/// A fully connected layer with per-channel int8 weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DenseDef<'a> {
    /// Input features.
    pub in_dim: u32,
    /// Output features.
    pub out_dim: u32,
    /// `i8` weights `[out_dim, in_dim]`.
    #[serde(borrow)]
    pub weights: &'a [u8],
    /// Per-channel scales, bias and requantisation.
    #[serde(borrow)]
    pub quant: ChannelQuant<'a>,
    /// Output quantisation.
    pub output: QParams,
    /// Fused activation.
    pub activation: Activation,
}

/// A 2-D pooling window (no padding). Output shares the input's quantisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pool2dDef {
    /// Window height and width.
    pub kernel: u8,
    /// Stride in both directions.
    pub stride: u8,
}

/// One layer of a quantised model, applied in order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum LayerDef<'a> {
    /// 2-D convolution.
    #[serde(borrow)]
    Conv2d(Conv2dDef<'a>),
    /// Fully connected layer; its input must be flat (`channels * height * width == in_dim`
    /// after a [`LayerDef::Flatten`]).
    #[serde(borrow)]
    Dense(DenseDef<'a>),
    /// Max pooling.
    MaxPool2d(Pool2dDef),
    /// Average pooling (rounding half away from zero).
    AvgPool2d(Pool2dDef),
    /// Flatten `[c, h, w]` to `[c * h * w]`, channel-major; moves no data.
    Flatten,
}

/// A whole quantised model: the postcard payload of a `.fmq` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDef<'a> {
    /// Model id, e.g. `s5-cnn`.
    #[serde(borrow)]
    pub id: &'a str,
    /// Input image shape.
    pub input_shape: Shape,
    /// Quantisation of the int8 input. Raw u8 pixels map to the input as `q = pixel - 128`, so
    /// this records the normalisation folded into the model:
    /// `real = (pixel - 128 - zero_point) * scale`.
    pub input: QParams,
    /// The layers, in order.
    #[serde(borrow)]
    pub layers: heapless::Vec<LayerDef<'a>, MAX_LAYERS>,
}
