//! Global average pooling: the mean of each channel of an image, a vector of one value per
//! channel (the ResNets' head). In int8 the output shares the input's quantisation.

use candle_core::Tensor;
use infer_core::format::{GlobalAvgPoolDef, OpDef};
use infer_core::spec::{TensorShape, global_avg_pool_output};
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// `[c, h, w]` to `[c]`, each the mean of its channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GlobalAvgPool;

impl LayerOps for GlobalAvgPool {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        global_avg_pool_output(input)
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        Ok(x.mean((2, 3))?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        lw.emit_same_quant(
            params.path(),
            |input| OpDef::GlobalAvgPool(GlobalAvgPoolDef { input }),
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
    fn each_channel_becomes_its_mean() {
        let x = Tensor::new(
            &[[[[1.0f32, 2.0], [3.0, 6.0]], [[-1.0, -1.0], [0.0, 2.0]]]],
            &Device::Cpu,
        )
        .unwrap();
        let store = Store::default();
        let y: Vec<Vec<f32>> = GlobalAvgPool
            .forward(&x, &store.at("0"), &mut Forward::new(Mode::Eval))
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(y, [[3.0, 0.0]]);
    }
}
