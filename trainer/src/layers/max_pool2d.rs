//! Max pooling: the largest value of each window. Square window, no padding; in int8 the output shares the input's quantisation.

use candle_core::Tensor;
use infer_core::format::{MaxPool2dDef, OpDef};
use infer_core::spec::{Pool2dGeometry, TensorShape};
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// Max pooling over `kernel x kernel` windows every `stride` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxPool2d {
    /// Window side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

impl MaxPool2d {
    /// The shared geometry (`None` if a value does not fit the model format).
    pub fn geometry(&self) -> Option<Pool2dGeometry> {
        Some(Pool2dGeometry {
            kernel: u8::try_from(self.kernel).ok()?,
            stride: u8::try_from(self.stride).ok()?,
        })
    }
}

impl LayerOps for MaxPool2d {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        self.geometry()?.output(input)
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        Ok(crate::ops::max_pool2d(x, self.kernel, self.stride)?)
    }

    fn pooling(&self) -> Option<crate::ops::Pooling> {
        Some(crate::ops::Pooling::Max {
            kernel: self.kernel,
            stride: self.stride,
        })
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let geometry = self
            .geometry()
            .ok_or(LowerError::TooLarge("pool geometry"))?;
        lw.emit_same_quant(
            params.path(),
            |input| OpDef::MaxPool2d(MaxPool2dDef { input, geometry }),
            self,
        )
    }
}
