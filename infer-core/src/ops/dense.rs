//! Fully connected layer with per-channel int8 weights ([`dense_i8`]).

use serde::{Deserialize, Serialize};

use crate::format::{Activation, ChannelQuant, QParams, TensorId};
use crate::spec::DenseGeometry;
#[cfg(feature = "dense")]
use {
    super::common::{channel_quant, check_len, le_f32},
    super::{Context, TensorInfo},
    crate::error::{Buffer, Dimension, Error, Extent},
    crate::kernels::{QRequant, dense_i8},
    crate::spec::TensorShape,
};

/// A fully connected layer in the file: `[out_dim, in_dim]` int8 weights, one scale per output,
/// an output quantisation and a fused activation. Its input must be flat (after a `Flatten`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseDef<B> {
    /// The input tensor (a flat vector of `geometry.in_dim` features).
    pub input: TensorId,
    /// Input and output features.
    pub geometry: DenseGeometry,
    /// `i8` weights `[out_dim, in_dim]`.
    pub weights: B,
    /// Per-channel scales, bias and requantisation.
    pub quant: ChannelQuant<B>,
    /// Output quantisation.
    pub output: QParams,
    /// Fused activation.
    pub activation: Activation,
}

/// A validated fully connected layer.
#[cfg(feature = "dense")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QDense<'a> {
    pub(crate) input: TensorId,
    input_qparams: QParams,
    geometry: DenseGeometry,
    weights: &'a [i8],
    weight_scales: &'a [u8],
    requant: QRequant<'a>,
}

#[cfg(feature = "dense")]
pub(crate) fn prepare<'a>(
    def: &DenseDef<&'a [u8]>,
    cx: &Context<'_>,
) -> Result<(QDense<'a>, TensorInfo), Error> {
    let op = cx.op;
    let input = cx.tensor(def.input)?;
    let TensorShape::Flat(in_dim) = input.shape else {
        return Err(Error::ExpectedFlat { op });
    };
    let geometry = def.geometry;
    if geometry.in_dim != in_dim {
        return Err(Error::ShapeMismatch {
            op,
            expected: geometry.in_dim,
            got: in_dim,
        });
    }
    if geometry.out_dim == 0 {
        return Err(Error::ZeroDimension {
            op,
            what: Dimension::OutFeatures,
        });
    }
    let shape = geometry
        .output(input.shape)
        .ok_or(cx.too_large(Extent::Output))?;
    let out_dim = usize::try_from(geometry.out_dim).map_err(|_| cx.too_large(Extent::Output))?;
    let weights_len = usize::try_from(in_dim)
        .ok()
        .and_then(|n| n.checked_mul(out_dim));
    check_len(op, Buffer::Weights, weights_len, def.weights.len())?;
    let requant = channel_quant(
        op,
        out_dim,
        &def.quant,
        input.qparams,
        def.output,
        def.activation,
    )?;
    let q = QDense {
        input: def.input,
        input_qparams: input.qparams,
        geometry,
        weights: bytemuck::cast_slice(def.weights),
        weight_scales: def.quant.weight_scales,
        requant,
    };
    Ok((
        q,
        TensorInfo {
            shape,
            qparams: def.output,
        },
    ))
}

#[cfg(feature = "dense")]
impl<'a> QDense<'a> {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// Quantisation of the input.
    pub fn input_qparams(&self) -> QParams {
        self.input_qparams
    }

    /// Input and output features.
    pub fn geometry(&self) -> DenseGeometry {
        self.geometry
    }

    /// The int8 weights, `[out_dim, in_dim]`.
    pub fn weights(&self) -> &'a [i8] {
        self.weights
    }

    /// The weight scale of each output (symmetric, zero point 0).
    pub fn weight_scales(&self) -> impl Iterator<Item = f32> + 'a {
        self.weight_scales.chunks_exact(4).map(le_f32)
    }

    /// Biases, requantisation multipliers and shifts, output zero point and clamp.
    pub fn requant(&self) -> QRequant<'a> {
        self.requant
    }

    /// Multiply-accumulates per inference, `in_dim * out_dim`.
    pub fn macs(&self) -> u64 {
        u64::from(self.geometry.in_dim).saturating_mul(u64::from(self.geometry.out_dim))
    }

    /// Bytes of parameters the kernel reads.
    pub fn param_bytes(&self) -> usize {
        self.weights.len()
            + self.requant.bias.len()
            + self.requant.multipliers.len()
            + self.requant.shifts.len()
    }

    pub(crate) fn invoke(&self, input: &[i8], output: &mut [i8], work: &mut [i8]) {
        dense_i8(
            input,
            self.input_qparams.zero_point,
            self.weights,
            &self.requant,
            output,
            work,
        );
    }
}
