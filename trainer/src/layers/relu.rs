//! Rectified linear unit, `max(x, 0)`; in int8, a clamp fused into the op before it.

use candle_core::Tensor;
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// `max(x, 0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Relu;

impl LayerOps for Relu {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        Some(input)
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        Ok(x.relu()?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        lw.fuse_relu(params.path())
    }
}
