//! LeakyReLU, `x` for `x >= 0` and `alpha * x` below; in int8 an op of its own (TensorFlow
//! Lite Micro's LEAKY_RELU), with its output quantised from its calibrated range.

use candle_core::Tensor;
use infer_core::format::{LeakyReluDef, OpDef};
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// LeakyReLU with slope `alpha` below zero.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LeakyRelu {
    /// Slope below zero, in `[0, 1)` (PyTorch's default is 0.01).
    pub alpha: f32,
}

impl LayerOps for LeakyRelu {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        (0.0..1.0).contains(&self.alpha).then_some(input)
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        // max(x, alpha * x) for alpha in [0, 1).
        Ok(x.maximum(&(x * f64::from(self.alpha))?)?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let alpha = self.alpha;
        lw.emit_requantized(
            params.path(),
            |input, output| {
                OpDef::LeakyRelu(LeakyReluDef {
                    input: input.id,
                    alpha,
                    output,
                })
            },
            self,
        )
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::net::{Mode, Store};

    #[test]
    fn negative_values_are_scaled_by_alpha() {
        let x = Tensor::new(&[-2.0f32, -0.5, 0.0, 3.0], &Device::Cpu).unwrap();
        let store = Store::default();
        let y: Vec<f32> = LeakyRelu { alpha: 0.1 }
            .forward(&x, &store.at("0"), &mut Forward::new(Mode::Eval))
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y, [-0.2, -0.05, 0.0, 3.0]);
    }
}
