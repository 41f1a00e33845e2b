//! Global average pooling ([`global_avg_pool_i8`]): the mean of each channel of an image, a
//! flat vector of one value per channel. Average pooling whose window is the whole input
//! (rounding half away from zero over the element count); the output shares the input's
//! quantisation.

use serde::{Deserialize, Serialize};

use crate::format::TensorId;
#[cfg(feature = "global-avg-pool")]
use {
    super::{Context, TensorInfo},
    crate::error::Error,
    crate::kernels::global_avg_pool_i8,
    crate::spec::{Shape, TensorShape, global_avg_pool_output},
};

/// Global average pooling in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GlobalAvgPoolDef {
    /// The input tensor (an image).
    pub input: TensorId,
}

/// A validated global average pooling.
#[cfg(feature = "global-avg-pool")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QGlobalAvgPool {
    pub(crate) input: TensorId,
    input_shape: Shape,
}

#[cfg(feature = "global-avg-pool")]
pub(crate) fn prepare(
    def: &GlobalAvgPoolDef,
    cx: &Context<'_>,
) -> Result<(QGlobalAvgPool, TensorInfo), Error> {
    let input = cx.tensor(def.input)?;
    let TensorShape::Image(input_shape) = input.shape else {
        return Err(Error::ExpectedImage { op: cx.op });
    };
    // Only an empty image has no mean, and no tensor of a model is empty (the input and every
    // window have at least one element).
    let shape = global_avg_pool_output(input.shape).ok_or(Error::ExpectedImage { op: cx.op })?;
    let q = QGlobalAvgPool {
        input: def.input,
        input_shape,
    };
    Ok((
        q,
        TensorInfo {
            shape,
            qparams: input.qparams,
        },
    ))
}

#[cfg(feature = "global-avg-pool")]
impl QGlobalAvgPool {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// Shape of the input image.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    pub(crate) fn invoke(&self, input: &[i8], output: &mut [i8]) {
        global_avg_pool_i8(input, self.input_shape, output);
    }
}
