//! LeakyReLU ([`leaky_relu_i8`]) as TensorFlow Lite Micro's LEAKY_RELU: `x` for `x >= 0`,
//! `alpha * x` below, requantised from the input's scale to the output's with one multiplier
//! per branch.

use serde::{Deserialize, Serialize};

use crate::format::{QParams, TensorId};
#[cfg(feature = "leaky-relu")]
use {
    super::common::valid_qparams,
    super::{Context, TensorInfo},
    crate::error::Error,
    crate::kernels::{LeakyReluParams, leaky_relu_i8},
};

/// LeakyReLU in the file. The two multipliers are derived from the scales and `alpha` at load,
/// as TFLM derives them in its Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LeakyReluDef {
    /// The input tensor.
    pub input: TensorId,
    /// Slope below zero, in `[0, 1)`.
    pub alpha: f32,
    /// Output quantisation.
    pub output: QParams,
}

/// A validated LeakyReLU.
#[cfg(feature = "leaky-relu")]
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QLeakyRelu {
    pub(crate) input: TensorId,
    alpha: f32,
    params: LeakyReluParams,
}

#[cfg(feature = "leaky-relu")]
pub(crate) fn prepare(
    def: &LeakyReluDef,
    cx: &Context<'_>,
) -> Result<(QLeakyRelu, TensorInfo), Error> {
    let input = cx.tensor(def.input)?;
    if !valid_qparams(def.output) || !(0.0..1.0).contains(&def.alpha) {
        return Err(Error::BadQuantParams { op: cx.op });
    }
    let params = LeakyReluParams::new(input.qparams, def.output, def.alpha)
        .ok_or(Error::BadQuantParams { op: cx.op })?;
    let q = QLeakyRelu {
        input: def.input,
        alpha: def.alpha,
        params,
    };
    Ok((
        q,
        TensorInfo {
            shape: input.shape,
            qparams: def.output,
        },
    ))
}

#[cfg(feature = "leaky-relu")]
impl QLeakyRelu {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// Slope below zero.
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// Zero points and the two requantisation multipliers.
    pub fn params(&self) -> LeakyReluParams {
        self.params
    }

    pub(crate) fn invoke(&self, input: &[i8], output: &mut [i8]) {
        leaky_relu_i8(input, &self.params, output);
    }
}
