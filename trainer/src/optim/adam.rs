//! Adam's and AdamW's update of one parameter as one parallel pass over its values, instead
//! of a dozen candle tensor ops (each a single-threaded pass that allocates its result, plus a
//! zero-filled tensor per parameter and step).
//!
//! Every value is computed with the `f32` operations, in the order, that the tensor ops
//! perform: a product with an `f64` scalar is candle's affine map `x · (s as f32) + 0`, and the
//! `+ 0` is kept, since it turns `-0` into `+0` as candle's does. So the result is bit for bit
//! what the tensor formulation gives (`fused_adam_equals_the_tensor_ops_bit_for_bit` below),
//! which itself follows `torch.optim.Adam` (`../optim.rs`).

use candle_core::{Result, Storage, Tensor};
use rayon::prelude::*;

use crate::ops::f32_data;

/// The name errors carry.
const OP: &str = "adam step";

/// Values per rayon task: small parameters (biases) run in one piece.
const MIN_LEN: usize = 1 << 14;

/// One step's hyper-parameters (the `f64` scalars of the tensor formulation).
#[derive(Debug, Clone, Copy)]
pub(super) struct Step {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Weight decay: an L2 penalty on the gradient (Adam) or a decay of the weight (AdamW).
    pub weight_decay: f64,
    /// Whether the weight decay is decoupled (AdamW).
    pub decoupled: bool,
    /// The step number, from 1.
    pub t: f64,
}

/// The affine map of candle's `tensor * scalar`: `x · s + 0` in `f32`.
#[inline(always)]
fn scale(x: f32, s: f32) -> f32 {
    x * s + 0.0
}

/// `f64` scalar to `f32`, as candle converts an affine map's coefficients.
#[allow(clippy::cast_possible_truncation)] // candle's own `T::from_f64` for f32
fn narrow(v: f64) -> f32 {
    v as f32
}

/// The contiguous `f32` values of a CPU tensor, read under its storage lock.
fn read<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(candle_core::Error::Msg(format!(
            "{OP}: the tensor is not on the CPU"
        )));
    };
    f(f32_data(OP, cpu, layout)?)
}

/// The new parameter and moments `(p, m, v)` from the parameter `p`, its gradient `g` and the
/// moments of the last step (`None` on the first: zeros). All of `p`'s shape.
pub(super) fn step(
    p: &Tensor,
    g: &Tensor,
    m: Option<&Tensor>,
    v: Option<&Tensor>,
    s: Step,
) -> Result<(Tensor, Tensor, Tensor)> {
    for (what, t) in [
        ("gradient", Some(g)),
        ("first moment", m),
        ("second moment", v),
    ] {
        if let Some(t) = t
            && t.dims() != p.dims()
        {
            return Err(candle_core::Error::Msg(format!(
                "{OP}: {what} {:?} for a parameter {:?}",
                t.dims(),
                p.dims()
            )));
        }
    }
    let (g, zeros) = (g.contiguous()?, Tensor::zeros(0, p.dtype(), p.device())?);
    let (m, v) = (
        m.map(Tensor::contiguous).transpose()?,
        v.map(Tensor::contiguous).transpose()?,
    );
    let c1 = narrow(1.0 - s.beta1);
    let (b2, c2) = (narrow(s.beta2), narrow(1.0 - s.beta2));
    let inv_bc2 = narrow(1.0 / (1.0 - s.beta2.powf(s.t)).sqrt());
    let step_size = narrow(s.lr / (1.0 - s.beta1.powf(s.t)));
    let eps = narrow(s.eps);
    let decay = narrow(1.0 - s.lr * s.weight_decay);
    let l2 = narrow(s.weight_decay);
    let (decays, penalises) = (
        s.decoupled && s.weight_decay != 0.0,
        !s.decoupled && s.weight_decay != 0.0,
    );
    let p = p.contiguous()?;
    let (new_p, (new_m, new_v)): (Vec<f32>, (Vec<f32>, Vec<f32>)) = read(&p, |p| {
        read(&g, |g| {
            read(m.as_ref().unwrap_or(&zeros), |m| {
                read(v.as_ref().unwrap_or(&zeros), |v| {
                    // The first step's moments are zeros, as the tensor formulation's
                    // `zeros_like`.
                    let old = |state: &[f32], i: usize| state.get(i).copied().unwrap_or(0.0);
                    Ok(p.par_iter()
                        .zip(g)
                        .enumerate()
                        .with_min_len(MIN_LEN)
                        .map(|(i, (&p, &g))| {
                            let (m, v) = (old(m, i), old(v, i));
                            let (p, g) = if decays {
                                (scale(p, decay), g)
                            } else if penalises {
                                (p, g + scale(p, l2))
                            } else {
                                (p, g)
                            };
                            let m = m + scale(g - m, c1);
                            let v = scale(v, b2) + scale(g * g, c2);
                            let denom = scale(v.sqrt(), inv_bc2) * 1.0 + eps;
                            (p - scale(m / denom, step_size), (m, v))
                        })
                        .unzip())
                })
            })
        })
    })?;
    let shape = p.shape();
    Ok((
        Tensor::from_vec(new_p, shape, p.device())?,
        Tensor::from_vec(new_m, shape, p.device())?,
        Tensor::from_vec(new_v, shape, p.device())?,
    ))
}
