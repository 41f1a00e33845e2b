//! Batch normalisation in training mode as one op: the batch's per-channel mean and biased
//! variance in one sweep over the NCHW data (each channel's values are `batch` contiguous
//! planes), `y = (x - mean) / sqrt(var + eps) * gamma + beta`, and a backward pass that gets
//! all three gradients from two sweeps:
//!
//! `dbeta = Σ dy`, `dgamma = Σ dy·x̂`, `dx = gamma/σ · (dy - dbeta/n - x̂·dgamma/n)`,
//! with `x̂ = (x - mean)/σ`, `σ = sqrt(var + eps)` and `n` values per channel.
//!
//! Built from candle ops (permute to channels-last, `mean`, `sqr`, broadcasts), the same layer
//! spent about 30% of an `s2-m6` training step in candle's strided reductions (`Map1::map`),
//! the mean and variance forward and the broadcast-gradient sums backward, plus the zeroing of
//! their many temporaries.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::{OpError, f32_data};

const NAME: &str = "batch-norm";

/// `(channels, batch, plane)` of an NCHW (`plane = h·w`) or `[batch, features]` (`plane = 1`)
/// tensor.
fn geometry(dims: &[usize]) -> Result<(usize, usize, usize)> {
    match *dims {
        [b, c] => Ok((c, b, 1)),
        [b, c, h, w] => Ok((c, b, h * w)),
        _ => Err(OpError::shape(
            NAME,
            format!("input {dims:?} should be [batch, channels] or [batch, channels, h, w]"),
        )),
    }
}

/// The values of channel `c` of `data` (`channels` of `batch` planes of `plane`), plane by
/// plane.
fn channel(
    data: &[f32],
    c: usize,
    channels: usize,
    plane: usize,
) -> impl Iterator<Item = &[f32]> + Clone {
    data.chunks_exact(plane.max(1))
        .skip(c)
        .step_by(channels.max(1))
}

/// The contiguous f32 data of a CPU tensor, or an error naming `what`.
fn with_data<T>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<T>) -> Result<T> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        return Err(OpError::shape(NAME, format!("{what} is not on the CPU")));
    };
    f(f32_data(NAME, storage, layout)?)
}

/// Mean and biased variance of one channel's `n` values, given as the slices that hold them
/// in order, accumulated in f64 in that order. The one definition of the statistics: the
/// NCHW op here and the fused conv block (`block.rs`, a contiguous row per channel) both call
/// it, which keeps them bit-identical.
pub(super) fn channel_stats<'a>(
    values: impl Iterator<Item = &'a [f32]> + Clone,
    n: usize,
) -> (f32, f32) {
    let n = n.max(1) as f64;
    let m = values.clone().flatten().map(|&v| f64::from(v)).sum::<f64>() / n;
    let v = values
        .flatten()
        .map(|&v| (f64::from(v) - m).powi(2))
        .sum::<f64>()
        / n;
    #[allow(clippy::cast_possible_truncation)] // statistics are f32 like the tensors
    (m as f32, v as f32)
}

/// `1 / sqrt(var + eps)`, computed in f64 and kept as f32 (as PyTorch).
pub(super) fn invstd(var: f32, eps: f64) -> f32 {
    #[allow(clippy::cast_possible_truncation)]
    let s = (1.0 / (f64::from(var) + eps).sqrt()) as f32;
    s
}

/// The normalisation of one channel as `y = x·scale + shift`.
pub(super) fn affine(mean: f32, invstd: f32, gamma: f32, beta: f32) -> (f32, f32) {
    let scale = invstd * gamma;
    (scale, beta - mean * scale)
}

/// One channel's backward pass: `Σ dy` and `Σ dy·x̂` over its values `x` and gradients `dy`
/// (the slices that hold them, in order; accumulated in f64), which are the gradients of beta
/// and gamma, and the map to each input's gradient.
pub(super) struct ChannelGrad {
    /// `Σ dy`: the gradient of beta.
    pub(super) dbeta: f32,
    /// `Σ dy·x̂`: the gradient of gamma.
    pub(super) dgamma: f32,
    mean: f32,
    invstd: f32,
    k: f32,
    mean_dy: f32,
    mean_dy_xhat: f32,
}

impl ChannelGrad {
    /// The sums of one channel of `n` values normalised by `mean` and `invstd`, scaled by
    /// `gamma`.
    pub(super) fn new<'a>(
        pairs: impl Iterator<Item = (&'a [f32], &'a [f32])>,
        (mean, invstd, gamma): (f32, f32, f32),
        n: usize,
    ) -> Self {
        let (mut sum_dy, mut sum_dy_xhat) = (0f64, 0f64);
        for (xp, gp) in pairs {
            for (&xv, &g) in xp.iter().zip(gp) {
                sum_dy += f64::from(g);
                sum_dy_xhat += f64::from(g * (xv - mean) * invstd);
            }
        }
        #[allow(clippy::cast_possible_truncation)] // gradients are f32
        let (dbeta, dgamma) = (sum_dy as f32, sum_dy_xhat as f32);
        let n = n.max(1) as f32;
        Self {
            dbeta,
            dgamma,
            mean,
            invstd,
            k: gamma * invstd,
            mean_dy: dbeta / n,
            mean_dy_xhat: dgamma / n,
        }
    }

    /// The gradient of the input `x` whose output gradient is `dy`:
    /// `gamma/σ · (dy - Σdy/n - x̂·Σ(dy·x̂)/n)`.
    pub(super) fn input(&self, x: f32, dy: f32) -> f32 {
        self.k * (dy - self.mean_dy - (x - self.mean) * self.invstd * self.mean_dy_xhat)
    }
}

/// Per-channel mean and biased variance of `x` (`[batch, channels]` or NCHW), accumulated in
/// f64.
pub fn batch_stats(x: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let (channels, batch, plane) = geometry(x.dims())?;
    with_data(x, "input", |data| {
        Ok((0..channels)
            .map(|c| channel_stats(channel(data, c, channels, plane), batch * plane))
            .unzip())
    })
}

/// `(x, gamma, beta) → y`, normalised by the given batch statistics (`mean`, `invstd =
/// 1/sqrt(var + eps)`), which must be those of `x` for the gradients to be right.
struct BatchNormOp {
    mean: Vec<f32>,
    invstd: Vec<f32>,
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(NAME, xs, xl)?;
        let gamma = f32_data(NAME, gs, gl)?;
        let beta = f32_data(NAME, bs, bl)?;
        let (channels, _, plane) = geometry(xl.dims())?;
        if [gamma.len(), beta.len(), self.mean.len()] != [channels; 3] {
            return Err(OpError::shape(
                NAME,
                format!(
                    "{channels} channels, but gamma {}, beta {}, statistics {}",
                    gamma.len(),
                    beta.len(),
                    self.mean.len()
                ),
            ));
        }
        let mut y = Vec::with_capacity(x.len());
        for (i, src) in x.chunks_exact(plane.max(1)).enumerate() {
            let c = i % channels;
            let (scale, shift) = affine(self.mean[c], self.invstd[c], gamma[c], beta[c]);
            y.extend(src.iter().map(|&v| v * scale + shift));
        }
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (channels, batch, plane) = geometry(x.dims())?;
        let gamma_v: Vec<f32> = gamma.to_vec1()?;
        let (dx, dgamma, dbeta) = with_data(x, "input", |xd| {
            with_data(dy, "output gradient", |gd| {
                let grads: Vec<ChannelGrad> = (0..channels)
                    .map(|c| {
                        let pairs =
                            channel(xd, c, channels, plane).zip(channel(gd, c, channels, plane));
                        let norm = (self.mean[c], self.invstd[c], gamma_v[c]);
                        ChannelGrad::new(pairs, norm, batch * plane)
                    })
                    .collect();
                let dbeta: Vec<f32> = grads.iter().map(|g| g.dbeta).collect();
                let dgamma: Vec<f32> = grads.iter().map(|g| g.dgamma).collect();
                let mut dx = Vec::with_capacity(xd.len());
                if x.track_op() {
                    for (i, (xp, gp)) in xd
                        .chunks_exact(plane.max(1))
                        .zip(gd.chunks_exact(plane.max(1)))
                        .enumerate()
                    {
                        let grad = &grads[i % channels];
                        dx.extend(xp.iter().zip(gp).map(|(&xv, &g)| grad.input(xv, g)));
                    }
                }
                Ok((dx, dgamma, dbeta))
            })
        })?;
        let dx = if x.track_op() {
            Some(Tensor::from_vec(dx, x.dims(), x.device())?)
        } else {
            None
        };
        let dgamma = if gamma.track_op() {
            Some(Tensor::from_vec(dgamma, channels, x.device())?)
        } else {
            None
        };
        let dbeta = if beta.track_op() {
            Some(Tensor::from_vec(dbeta, channels, x.device())?)
        } else {
            None
        };
        Ok((dx, dgamma, dbeta))
    }
}

/// Batch normalisation of `x` (`[batch, channels]` or NCHW, f32 on the CPU) by its own
/// statistics, with scale `gamma` and shift `beta` (`[channels]`), as one op; also returns the
/// batch mean and biased variance (for the running statistics).
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Vec<f32>, Vec<f32>)> {
    let x = x.contiguous()?;
    let (mean, var) = batch_stats(&x)?;
    let invstd = var.iter().map(|&v| invstd(v, eps)).collect();
    let op = BatchNormOp {
        mean: mean.clone(),
        invstd,
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, mean, var))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, assert_same_grads, random_var};

    /// The same layer from candle ops (the trainer's former implementation).
    fn reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64) -> Tensor {
        let rank = x.rank();
        let c = x.dim(1).unwrap();
        let shape: Vec<usize> = if rank == 4 {
            vec![1, c, 1, 1]
        } else {
            vec![1, c]
        };
        let rows = if rank == 4 {
            x.permute((0, 2, 3, 1)).unwrap().reshape(((), c)).unwrap()
        } else {
            x.clone()
        };
        let mean = rows.mean(0).unwrap();
        let var = rows
            .broadcast_sub(&mean.unsqueeze(0).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean(0)
            .unwrap();
        let scale = gamma.div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
        let shift = (beta - mean.mul(&scale).unwrap()).unwrap();
        x.broadcast_mul(&scale.reshape(shape.as_slice()).unwrap())
            .unwrap()
            .broadcast_add(&shift.reshape(shape.as_slice()).unwrap())
            .unwrap()
    }

    #[test]
    fn matches_candle_ops_forward_and_backward() {
        for (dims, seed) in [
            (vec![4, 3, 5, 6], 1),
            (vec![7, 5], 2),
            (vec![2, 8, 3, 3], 3),
        ] {
            let c = dims[1];
            let x = random_var(&dims, seed);
            let gamma = random_var(&[c], seed + 10);
            let beta = random_var(&[c], seed + 20);
            let (ours, mean, var) = batch_norm_train(&x, &gamma, &beta, 1e-5).unwrap();
            let theirs = reference(&x, &gamma, &beta, 1e-5);
            assert_close(&ours, &theirs, 1e-5, "forward");
            let rows = if dims.len() == 4 {
                x.permute((0, 2, 3, 1)).unwrap().reshape(((), c)).unwrap()
            } else {
                x.as_tensor().clone()
            };
            let m: Vec<f32> = rows.mean(0).unwrap().to_vec1().unwrap();
            assert!(mean.iter().zip(&m).all(|(a, b)| (a - b).abs() < 1e-6));
            assert_eq!(var.len(), c);
            assert_same_grads(
                &ours,
                &theirs,
                &[("x", &x), ("gamma", &gamma), ("beta", &beta)],
                seed + 30,
                1e-4,
                &format!("{dims:?}"),
            );
        }
    }

    #[test]
    fn rejects_other_ranks_and_mismatched_parameters() {
        let x = random_var(&[2, 3, 4], 1);
        let g = random_var(&[3], 2);
        assert!(batch_norm_train(&x, &g, &g, 1e-5).is_err());
        let x = random_var(&[2, 3], 1);
        let g4 = random_var(&[4], 2);
        assert!(batch_norm_train(&x, &g4, &g4, 1e-5).is_err());
    }
}
