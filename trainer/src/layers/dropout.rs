//! Inverted dropout: in training, zero each element with probability `p` and scale the rest by
//! `1 / (1 - p)`; the identity in evaluation and in int8 (it vanishes at export).

use candle_core::Tensor;
use infer_core::spec::TensorShape;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, Mode, NetError, Params};

/// Dropout with drop probability `p`; masks come from the network's seeded generator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dropout {
    /// Probability of zeroing an element.
    pub p: f32,
}

impl LayerOps for Dropout {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        (0.0..1.0).contains(&self.p).then_some(input)
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let Mode::Train(rng) = &mut cx.mode else {
            return Ok(x.clone());
        };
        let keep = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rng.random::<f32>() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        Ok(x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        lw.pass_through(params.path());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::net::Store;

    #[test]
    fn dropout_keeps_expectation_and_zeroes_about_p() {
        let dev = Device::Cpu;
        let x = Tensor::ones(10_000, DType::F32, &dev).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let store = Store::default();
        let mut cx = Forward::new(Mode::Train(&mut rng));
        let y: Vec<f32> = Dropout { p: 0.25 }
            .forward(&x, &store.at("0"), &mut cx)
            .unwrap()
            .to_vec1()
            .unwrap();
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        assert!((2300..2700).contains(&zeros), "{zeros}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    }
}
