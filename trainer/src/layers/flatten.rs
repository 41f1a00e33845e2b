//! Flatten `[c, h, w]` to `[c * h * w]`, channel-major.

use candle_core::Tensor;
use infer_core::format::{FlattenDef, OpDef};
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// Flatten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flatten;

impl LayerOps for Flatten {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        input.flattened()
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        Ok(x.flatten_from(1)?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        lw.emit_same_quant(
            params.path(),
            |input| OpDef::Flatten(FlattenDef { input }),
            self,
        )
    }
}
