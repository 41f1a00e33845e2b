//! Average pooling ([`avg_pool2d_i8`]): the mean of each window, rounding half away from zero. The output shares the input's quantisation.

use serde::{Deserialize, Serialize};

use crate::format::TensorId;
use crate::spec::Pool2dGeometry;
#[cfg(feature = "avg-pool2d")]
use {
    super::{Context, TensorInfo},
    crate::error::Error,
    crate::kernels::{Pool2dParams, avg_pool2d_i8},
    crate::spec::Shape,
};

/// Avg pooling in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AvgPool2dDef {
    /// The input tensor (an image).
    pub input: TensorId,
    /// Window and stride.
    pub geometry: Pool2dGeometry,
}

/// A validated avg pooling.
#[cfg(feature = "avg-pool2d")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QAvgPool2d {
    pub(crate) input: TensorId,
    input_shape: Shape,
    pub(crate) geometry: Pool2dGeometry,
}

#[cfg(feature = "avg-pool2d")]
pub(crate) fn prepare(
    def: &AvgPool2dDef,
    cx: &Context<'_>,
) -> Result<(QAvgPool2d, TensorInfo), Error> {
    let (input_shape, output) = super::common::pool_prepare(def.input, def.geometry, cx)?;
    let q = QAvgPool2d {
        input: def.input,
        input_shape,
        geometry: def.geometry,
    };
    Ok((q, output))
}

#[cfg(feature = "avg-pool2d")]
impl QAvgPool2d {
    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// Shape of the input image.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Window and stride.
    pub fn geometry(&self) -> Pool2dGeometry {
        self.geometry
    }

    pub(crate) fn invoke(&self, input: &[i8], output: &mut [i8]) {
        let params = Pool2dParams {
            kernel: usize::from(self.geometry.kernel),
            stride: usize::from(self.geometry.stride),
        };
        avg_pool2d_i8(input, self.input_shape, &params, output);
    }
}
