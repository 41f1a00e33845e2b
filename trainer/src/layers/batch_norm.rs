//! Batch normalisation over the channels of an image (or the features of a vector), as
//! PyTorch's `BatchNorm2d`/`BatchNorm1d`: in training each batch is normalised by its own mean
//! and (biased) variance and the running statistics move towards them (momentum 0.1, unbiased
//! variance); in evaluation the running statistics are used. It is never an int8 op: at export
//! it folds into the conv or dense layer right before it (`w' = w * s`, `b' = (b - mean) * s +
//! beta`, `s = gamma / sqrt(var + eps)`).

use candle_core::Tensor;
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use super::{Init, LayerOps, ParamSpec, values};
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// Weight of the newest batch in the running statistics (PyTorch's default).
pub const MOMENTUM: f64 = 0.1;
/// Added to the variance before the square root (PyTorch's default).
pub const EPS: f64 = 1e-5;

/// Batch normalisation with a learned scale (`weight`) and shift (`bias`) per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchNorm;

/// The channel count of `input` and the shape a per-channel vector broadcasts as.
fn channels(input: TensorShape) -> usize {
    match input {
        TensorShape::Image(s) => usize::from(s.channels),
        TensorShape::Flat(n) => usize::try_from(n).unwrap_or(usize::MAX),
    }
}

impl LayerOps for BatchNorm {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        Some(input)
    }

    fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        let c = channels(input);
        let spec = |name: &str, fill: f32, trainable: bool| ParamSpec {
            name: name.to_string(),
            shape: vec![c],
            init: Init::Fill(fill),
            trainable,
        };
        vec![
            spec("weight", 1.0, true),
            spec("bias", 0.0, true),
            spec("running_mean", 0.0, false),
            spec("running_var", 1.0, false),
        ]
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let (gamma, beta) = (params.get("weight")?, params.get("bias")?);
        let (running_mean, running_var) = (params.get("running_mean")?, params.get("running_var")?);
        if cx.mode.is_train() {
            // Normalised by the batch's own statistics in one op (`ops::batch_norm_train`);
            // the running statistics follow them without gradients (PyTorch: the unbiased
            // variance).
            let (y, mean, var) = crate::ops::batch_norm_train(x, gamma, beta, EPS)?;
            let count = x.elem_count() / mean.len().max(1);
            follow_batch(params, mean, var, count)?;
            return Ok(y);
        }
        // Evaluation: the affine map of the running statistics, per channel `[1, c, 1, 1]`
        // (images) or `[1, c]` (vectors).
        let c = x.dim(1)?;
        let per_channel = |t: &Tensor| -> Result<Tensor, NetError> {
            Ok(if x.rank() == 4 {
                t.reshape((1, c, 1, 1))?
            } else {
                t.reshape((1, c))?
            })
        };
        let scale = gamma
            .as_tensor()
            .div(&(running_var.as_tensor() + EPS)?.sqrt()?)?;
        let shift = (beta.as_tensor() - running_mean.as_tensor().mul(&scale)?)?;
        Ok(x.broadcast_mul(&per_channel(&scale)?)?
            .broadcast_add(&per_channel(&shift)?)?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let (scale, shift) = folded(params)?;
        lw.fold_affine(params.path(), &scale, &shift)
    }
}

/// Moves the running statistics of the layer at `params` towards a training batch's: `mean`
/// and biased `var` per channel, each over `count` values (PyTorch: momentum
/// [`MOMENTUM`], the unbiased variance). Shared by [`BatchNorm::forward`] and the fused conv
/// blocks, which normalise inside their own op (see `Net::forward`).
pub(crate) fn follow_batch(
    params: &Params<'_>,
    mean: Vec<f32>,
    var: Vec<f32>,
    count: usize,
) -> Result<(), NetError> {
    let (running_mean, running_var) = (params.get("running_mean")?, params.get("running_var")?);
    let (c, device) = (mean.len(), running_mean.device());
    let mean = Tensor::from_vec(mean, c, device)?;
    let unbiased =
        (Tensor::from_vec(var, c, device)? * (count as f64 / (count.max(2) - 1) as f64))?;
    running_mean.set(&((running_mean.as_tensor() * (1.0 - MOMENTUM))? + (mean * MOMENTUM)?)?)?;
    running_var.set(&((running_var.as_tensor() * (1.0 - MOMENTUM))? + (unbiased * MOMENTUM)?)?)?;
    Ok(())
}

/// The evaluation-mode map `y = x * scale[c] + shift[c]`: `scale = gamma / sqrt(var + eps)`,
/// `shift = beta - mean * scale`.
pub fn folded(params: &Params<'_>) -> Result<(Vec<f32>, Vec<f32>), NetError> {
    let gamma = values(params.get("weight")?)?;
    let beta = values(params.get("bias")?)?;
    let mean = values(params.get("running_mean")?)?;
    let var = values(params.get("running_var")?)?;
    let mut scale = Vec::with_capacity(gamma.len());
    let mut shift = Vec::with_capacity(gamma.len());
    for (((&g, &b), &m), &v) in gamma.iter().zip(&beta).zip(&mean).zip(&var) {
        #[allow(clippy::cast_possible_truncation)] // folded weights are f32 like the rest
        let s = (f64::from(g) / (f64::from(v) + EPS).sqrt()) as f32;
        scale.push(s);
        shift.push(b - m * s);
    }
    Ok((scale, shift))
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::net::{Mode, Store};

    #[test]
    fn training_normalises_the_batch_and_moves_the_running_statistics() {
        // Values computed by hand (PyTorch's BatchNorm2d gives the same): channel 0 holds
        // 1, 3 (mean 2, biased var 1), channel 1 holds 0, 4 (mean 2, var 4).
        let dev = Device::Cpu;
        let mut store = Store::default();
        let input = TensorShape::Flat(2);
        crate::net::init_layers(
            &mut store,
            &[crate::layers::Layer::BatchNorm(BatchNorm)],
            input,
            "",
            &mut ChaCha8Rng::seed_from_u64(0),
            &dev,
        )
        .unwrap();
        let x = Tensor::new(&[[1.0f32, 0.0], [3.0, 4.0]], &dev).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut cx = Forward::new(Mode::Train(&mut rng));
        let y: Vec<Vec<f32>> = BatchNorm
            .forward(&x, &store.at("0"), &mut cx)
            .unwrap()
            .to_vec2()
            .unwrap();
        // (x - mean) / sqrt(var + 1e-5): +-1 / sqrt(1 + 1e-5) and +-2 / sqrt(4 + 1e-5).
        let a = 1.0 / (1.0f32 + 1e-5).sqrt();
        let b = 2.0 / (4.0f32 + 1e-5).sqrt();
        for (got, want) in y.concat().iter().zip([-a, -b, a, b]) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
        // running_mean = 0.9 * 0 + 0.1 * 2; running_var = 0.9 * 1 + 0.1 * (unbiased 2, 8).
        let rm = store
            .at("0")
            .get("running_mean")
            .unwrap()
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        let rv = store
            .at("0")
            .get("running_var")
            .unwrap()
            .as_tensor()
            .to_vec1::<f32>()
            .unwrap();
        assert!(
            (rm[0] - 0.2).abs() < 1e-6 && (rm[1] - 0.2).abs() < 1e-6,
            "{rm:?}"
        );
        assert!(
            (rv[0] - 1.1).abs() < 1e-6 && (rv[1] - 1.7).abs() < 1e-6,
            "{rv:?}"
        );
        // Evaluation uses the running statistics.
        let y = BatchNorm
            .forward(&x, &store.at("0"), &mut Forward::new(Mode::Eval))
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let want = (1.0 - 0.2) / (1.1f32 + 1e-5).sqrt();
        assert!((y[0][0] - want).abs() < 1e-6);
    }

    #[test]
    fn a_folded_convolution_equals_conv_then_batch_norm() {
        use crate::layers::{Conv2d, Layer};
        use infer_core::spec::Shape;
        let dev = Device::Cpu;
        let layers = [
            Layer::Conv2d(Conv2d {
                out_ch: 3,
                kernel: 3,
                stride: 1,
                padding: 1,
            }),
            Layer::BatchNorm(BatchNorm),
        ];
        let input = TensorShape::Image(Shape {
            channels: 2,
            height: 5,
            width: 5,
        });
        let mut store = Store::default();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        crate::net::init_layers(&mut store, &layers, input, "", &mut rng, &dev).unwrap();
        // Train a few batches so the running statistics and the affine are not trivial.
        let x = crate::ops::test_util::random(&[4, 2, 5, 5], 9);
        for _ in 0..3 {
            let mut cx = Forward::new(Mode::Train(&mut rng));
            crate::net::run_layers(&store, &layers, "", &x, &mut cx).unwrap();
        }
        let bn = store.at("1");
        bn.get("weight")
            .unwrap()
            .set(&Tensor::new(&[0.5f32, -1.5, 2.0], &dev).unwrap())
            .unwrap();
        bn.get("bias")
            .unwrap()
            .set(&Tensor::new(&[0.1f32, 0.2, -0.3], &dev).unwrap())
            .unwrap();
        let want =
            crate::net::run_layers(&store, &layers, "", &x, &mut Forward::new(Mode::Eval)).unwrap();
        let (scale, shift) = folded(&bn).unwrap();
        let w = store.at("0").get("weight").unwrap().as_tensor();
        let b = store.at("0").get("bias").unwrap().as_tensor();
        let s = Tensor::new(scale.as_slice(), &dev).unwrap();
        let w = w.broadcast_mul(&s.reshape((3, 1, 1, 1)).unwrap()).unwrap();
        let b = (b.mul(&s).unwrap() + Tensor::new(shift.as_slice(), &dev).unwrap()).unwrap();
        let got = crate::ops::conv2d(&x, &w, Some(&b), 1, 1).unwrap();
        crate::ops::test_util::assert_close(&got, &want, 1e-5, "folded conv");
    }
}
