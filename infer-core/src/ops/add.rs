//! Element-wise addition of two tensors of the same shape ([`add_i8`]), each with its own
//! quantisation, as TensorFlow Lite Micro's ADD: both inputs rescaled to a common scale with
//! `left_shift = 20`, summed, requantised to the output, with an optional fused ReLU. The
//! residual connection of a ResNet block.

use serde::{Deserialize, Serialize};

use crate::format::{Activation, QParams, TensorId};
#[cfg(feature = "add")]
use {
    super::common::{activation_range, valid_qparams},
    super::{Context, TensorInfo},
    crate::error::Error,
    crate::kernels::{AddParams, add_i8},
    crate::spec::add_output,
};

/// An addition in the file. The requantisation is derived from the three tensors' scales at
/// load, as TFLM's ADD derives it in its Prepare.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddDef {
    /// The two input tensors (same shape).
    pub inputs: [TensorId; 2],
    /// Output quantisation.
    pub output: QParams,
    /// Fused activation.
    pub activation: Activation,
}

/// A validated addition.
#[cfg(feature = "add")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QAdd {
    pub(crate) inputs: [TensorId; 2],
    params: AddParams,
}

#[cfg(feature = "add")]
pub(crate) fn prepare(def: &AddDef, cx: &Context<'_>) -> Result<(QAdd, TensorInfo), Error> {
    let [a, b] = def.inputs;
    let (a, b) = (cx.tensor(a)?, cx.tensor(b)?);
    let shape = add_output(a.shape, b.shape).ok_or(Error::InputShapesDiffer { op: cx.op })?;
    if !valid_qparams(def.output) {
        return Err(Error::BadQuantParams { op: cx.op });
    }
    let (act_min, act_max) = activation_range(def.activation, def.output);
    let params = AddParams::new(a.qparams, b.qparams, def.output, act_min, act_max)
        .ok_or(Error::BadQuantParams { op: cx.op })?;
    let q = QAdd {
        inputs: def.inputs,
        params,
    };
    Ok((
        q,
        TensorInfo {
            shape,
            qparams: def.output,
        },
    ))
}

#[cfg(feature = "add")]
impl QAdd {
    /// The two input tensors.
    pub fn inputs(&self) -> [TensorId; 2] {
        self.inputs
    }

    /// The integer rescaling of both inputs and the output, and the output clamp.
    pub fn params(&self) -> AddParams {
        self.params
    }

    pub(crate) fn invoke(&self, a: &[i8], b: &[i8], output: &mut [i8]) {
        add_i8(a, b, &self.params, output);
    }
}
