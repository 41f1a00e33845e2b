//! Fully connected layer with bias over a flat input.

use candle_core::Tensor;
use infer_core::spec::{DenseGeometry, TensorShape};
use serde::{Deserialize, Serialize};

use super::{LayerOps, ParamSpec, values};
use crate::lower::{Linear, LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// `y = W x + b`; weight `[out_dim, in_dim]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dense {
    /// Output features.
    pub out_dim: usize,
}

impl Dense {
    fn geometry(&self, input: TensorShape) -> Option<DenseGeometry> {
        Some(DenseGeometry {
            in_dim: input.flat()?,
            out_dim: u32::try_from(self.out_dim).ok()?,
        })
    }
}

impl LayerOps for Dense {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        self.geometry(input)?.output(input)
    }

    fn macs(&self, input: TensorShape) -> u64 {
        (input.len() * self.out_dim) as u64
    }

    fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        let in_dim = input.len();
        vec![
            ParamSpec::uniform("weight", vec![self.out_dim, in_dim], in_dim),
            ParamSpec::uniform("bias", vec![self.out_dim], in_dim),
        ]
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let (w, b) = (params.get("weight")?, params.get("bias")?);
        Ok(x.matmul(&w.t()?)?.broadcast_add(b)?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let geometry = self
            .geometry(lw.current_shape())
            .ok_or(LowerError::TooLarge("dense geometry"))?;
        let weight = values(params.get("weight")?)?;
        let bias = values(params.get("bias")?)?;
        lw.open_linear(params.path(), Linear::Dense(geometry), weight, bias)
    }
}
