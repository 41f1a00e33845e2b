//! Owned model definitions for writers (feature `alloc`): the trainer builds an [`OwnedModel`]
//! and serialises it through the borrowed [`ModelDef`] view, so the bytes it writes are exactly
//! what [`crate::Model::from_bytes`] reads.

use alloc::string::String;
use alloc::vec::Vec;

use crate::format::{
    Activation, ChannelQuant, Conv2dDef, DenseDef, Header, LayerDef, MAX_LAYERS, ModelDef,
    Pool2dDef, QParams, Shape,
};

/// Why an [`OwnedModel`] cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// More than [`MAX_LAYERS`] layers.
    TooManyLayers,
    /// The payload is longer than `u32::MAX` bytes.
    TooLarge,
    /// postcard failed to serialise.
    Serialize,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooManyLayers => write!(f, "more than {MAX_LAYERS} layers"),
            Self::TooLarge => write!(f, "payload longer than u32::MAX bytes"),
            Self::Serialize => write!(f, "postcard serialisation failed"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Owned [`ChannelQuant`]: little-endian per-output-channel arrays.
#[derive(Debug, Clone, PartialEq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OwnedChannelQuant {
    /// `f32` weight scales, 4 bytes each.
    pub weight_scales: Vec<u8>,
    /// `i32` biases, 4 bytes each.
    pub bias: Vec<u8>,
    /// `i32` Q0.31 multipliers, 4 bytes each.
    pub multipliers: Vec<u8>,
    /// `i8` shifts, 1 byte each.
    pub shifts: Vec<u8>,
}

impl OwnedChannelQuant {
    /// Appends one output channel.
    pub fn push(&mut self, weight_scale: f32, bias: i32, multiplier: i32, shift: i8) {
        self.weight_scales.extend(weight_scale.to_le_bytes());
        self.bias.extend(bias.to_le_bytes());
        self.multipliers.extend(multiplier.to_le_bytes());
        self.shifts.extend(shift.to_le_bytes());
    }

    /// The borrowed view.
    pub fn view(&self) -> ChannelQuant<'_> {
        ChannelQuant {
            weight_scales: &self.weight_scales,
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
        }
    }
}

/// Owned [`LayerDef`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OwnedLayer {
    /// See [`Conv2dDef`]; `weights` are `i8` as bytes.
    Conv2d {
        /// Input channels.
        in_ch: u16,
        /// Output channels.
        out_ch: u16,
        /// Kernel height.
        kernel_h: u8,
        /// Kernel width.
        kernel_w: u8,
        /// Stride.
        stride: u8,
        /// Padding.
        padding: u8,
        /// `[out_ch, in_ch, kernel_h, kernel_w]` weights.
        weights: Vec<u8>,
        /// Per-channel data.
        quant: OwnedChannelQuant,
        /// Output quantisation.
        output: QParams,
        /// Fused activation.
        activation: Activation,
    },
    /// See [`DenseDef`]; `weights` are `i8` as bytes.
    Dense {
        /// Input features.
        in_dim: u32,
        /// Output features.
        out_dim: u32,
        /// `[out_dim, in_dim]` weights.
        weights: Vec<u8>,
        /// Per-channel data.
        quant: OwnedChannelQuant,
        /// Output quantisation.
        output: QParams,
        /// Fused activation.
        activation: Activation,
    },
    /// Max pooling.
    MaxPool2d(Pool2dDef),
    /// Average pooling.
    AvgPool2d(Pool2dDef),
    /// Flatten.
    Flatten,
}

impl OwnedLayer {
    /// The borrowed view.
    pub fn view(&self) -> LayerDef<'_> {
        match self {
            Self::Conv2d {
                in_ch,
                out_ch,
                kernel_h,
                kernel_w,
                stride,
                padding,
                weights,
                quant,
                output,
                activation,
            } => LayerDef::Conv2d(Conv2dDef {
                in_ch: *in_ch,
                out_ch: *out_ch,
                kernel_h: *kernel_h,
                kernel_w: *kernel_w,
                stride: *stride,
                padding: *padding,
                weights,
                quant: quant.view(),
                output: *output,
                activation: *activation,
            }),
            Self::Dense {
                in_dim,
                out_dim,
                weights,
                quant,
                output,
                activation,
            } => LayerDef::Dense(DenseDef {
                in_dim: *in_dim,
                out_dim: *out_dim,
                weights,
                quant: quant.view(),
                output: *output,
                activation: *activation,
            }),
            Self::MaxPool2d(p) => LayerDef::MaxPool2d(*p),
            Self::AvgPool2d(p) => LayerDef::AvgPool2d(*p),
            Self::Flatten => LayerDef::Flatten,
        }
    }
}

/// Owned [`ModelDef`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OwnedModel {
    /// Model id.
    pub id: String,
    /// Input shape.
    pub input_shape: Shape,
    /// Input quantisation (raw pixels enter as `pixel - 128`).
    pub input: QParams,
    /// Layers in order.
    pub layers: Vec<OwnedLayer>,
}

impl OwnedModel {
    /// The borrowed view that is serialised.
    ///
    /// # Errors
    /// [`EncodeError::TooManyLayers`] past [`MAX_LAYERS`].
    pub fn def(&self) -> Result<ModelDef<'_>, EncodeError> {
        let mut layers = heapless::Vec::new();
        for layer in &self.layers {
            layers
                .push(layer.view())
                .map_err(|_| EncodeError::TooManyLayers)?;
        }
        Ok(ModelDef {
            id: &self.id,
            input_shape: self.input_shape,
            input: self.input,
            layers,
        })
    }

    /// The complete model file: [`Header`] then the postcard payload.
    ///
    /// # Errors
    /// See [`EncodeError`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let payload = postcard::to_allocvec(&self.def()?).map_err(|_| EncodeError::Serialize)?;
        let header = Header::for_payload(&payload).ok_or(EncodeError::TooLarge)?;
        let mut out = Vec::with_capacity(crate::format::HEADER_LEN + payload.len());
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }
}
