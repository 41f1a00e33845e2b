//! A whole convolution block as one op: `pool(relu(conv(x) + b))`, or with batch
//! normalisation `pool(relu(bn(conv(x) + b)))`, the ReLU and the pooling optional.
//!
//! Unfused, a block is four graph nodes (conv, ReLU, pool and the activations between them),
//! and candle's backward pass spends a zero-filled buffer and an addition on the gradient of
//! each node, plus four passes (`ge`, `to_dtype`, `mul`, `add`) for ReLU's. On `s5-cnn` those
//! elementwise passes over the 6.4 MB conv1 activation cost more than the conv1 matmul itself.
//! Fused, the block keeps its channel-major activation (the matmul's own output layout, so no
//! transposition either) for its backward pass, which routes the output gradient through the
//! pooling, masks it with ReLU's derivative and feeds it straight to the convolution's
//! gradient products.
//!
//! With batch normalisation (training mode: the batch's own statistics) the block also skips
//! the two NCHW ↔ channel-major transpositions around the normalisation and its own graph
//! node: in the channel-major layout each channel's values are one contiguous row, so the
//! statistics, the normalisation and its backward pass are plain row sweeps. The batch's mean
//! and variance come back to the caller for the running statistics.
//!
//! Values are bit-identical to the unfused `conv2d → [batch_norm_train →] relu → max_pool2d /
//! avg_pool2d` (the same matmul, the same per-channel sums in the same order, and ReLU
//! commutes with max), and so are gradients: exactly with batch normalisation (tested with
//! tolerance 0, and whole training runs give the same weights bit for bit), and without it up
//! to the order of float additions in the bias sum and the ReLU derivative at exactly 0 (0 in
//! the plain block, as in PyTorch; candle's `relu`, which the normalised block follows, takes
//! 1).

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use rayon::prelude::*;

use super::conv::{self, Conv, OnTheWay, Product};
use super::winograd::Kept;
use super::{OpError, PAR_MIN, batch_norm, f32_data, min_items, pool};

/// The pooling that ends a [`conv_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Max pooling over `kernel × kernel` windows `stride` apart, as [`super::max_pool2d`]:
    /// the gradient goes to the first maximum of each window.
    Max {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
    },
    /// Average pooling, as [`super::avg_pool2d`].
    Avg {
        /// Window side.
        kernel: usize,
        /// Step between windows.
        stride: usize,
    },
}

impl Pooling {
    fn geom(self, dims: (usize, usize, usize, usize)) -> Result<pool::Geom> {
        let (Self::Max { kernel, stride } | Self::Avg { kernel, stride }) = self;
        pool::Geom::from_dims(Block::NAME, dims, kernel, stride)
    }
}

/// The statistics a [`conv_bn_block`] normalised its batch with: per channel, the mean and
/// the biased variance over `count` values (batch × positions), for the running statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Per-channel mean.
    pub mean: Vec<f32>,
    /// Per-channel biased variance.
    pub var: Vec<f32>,
    /// Values per channel.
    pub count: usize,
}

/// What the backward pass needs of the normalisation.
struct NormSaved {
    /// `conv(x) + b`, channel-major: the normalisation's input.
    z: Vec<f32>,
    /// The normalisation's output when a ReLU follows (its derivative is read from it).
    pre: Option<Vec<f32>>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    gamma: Vec<f32>,
}

/// What the forward pass keeps for the backward pass.
struct Saved {
    /// The ReLU's output (before pooling) as `[out_ch, batch·oh·ow]`; empty where the
    /// backward pass does not read it (a normalised block without pooling).
    act: Vec<f32>,
    norm: Option<NormSaved>,
    /// A Winograd convolution's transformed weights and input.
    winograd: Option<Arc<Kept>>,
}

/// Batch normalisation inside a block.
struct Norm {
    /// Added to the variance before the square root.
    eps: f64,
    /// Where the forward pass leaves the batch statistics for the caller.
    stats: Arc<Mutex<Option<BatchStats>>>,
}

/// The fused op; `saved` is filled by the forward pass when a gradient may be asked for.
struct Block {
    conv: Conv,
    norm: Option<Norm>,
    pool: Option<Pooling>,
    /// Whether a ReLU follows the convolution (or the normalisation); always so without one.
    relu: bool,
    /// Whether any argument is tracked, i.e. whether to keep the activations.
    keep: bool,
    saved: Mutex<Option<Saved>>,
}

impl Block {
    const NAME: &'static str = "conv2d-relu-pool";

    fn poisoned() -> candle_core::Error {
        OpError::shape(Self::NAME, "activation store poisoned by a panic".into())
    }

    /// Per-channel parameter vectors in the third argument: the bias, then gamma and beta.
    fn groups(&self) -> usize {
        if self.norm.is_some() { 3 } else { 1 }
    }
}

/// ReLU's backward pass over one plane of gradients `d`. A plain block reads the rule from its
/// activation `act` (derivative 0 at 0, as PyTorch). After a batch normalisation it reads the
/// normalised values `pre` and follows candle's `relu` (derivative 1 at 0, and candle's
/// `0 + g·1`, which turns -0 into +0), so that the block stays bit-identical to the layers
/// one by one even where a normalised value is exactly 0.
fn relu_bwd(d: &mut [f32], act: &[f32], pre: Option<&[f32]>) {
    match pre {
        None => {
            for (d, &a) in d.iter_mut().zip(act) {
                *d = if a > 0.0 { *d } else { 0.0 };
            }
        }
        Some(u) => {
            for (d, &u) in d.iter_mut().zip(u) {
                *d = if u >= 0.0 { *d + 0.0 } else { 0.0 };
            }
        }
    }
}

impl CustomOp3 for Block {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let Product {
            yt: mut act,
            geom: g,
            params,
            kept,
        } = self.conv.product(
            Self::NAME,
            (xs, xl),
            (ws, wl),
            (ps, pl),
            (self.groups(), self.keep),
        )?;
        let out_ch = params.len() / self.groups();
        let (bias, affine) = params.split_at(out_ch);
        let (n, bn) = (g.positions(), g.batch * g.positions());
        let rows = bn.max(1);
        // The output images, where the normalisation already made them.
        let mut direct = None;
        let norm_saved = match &self.norm {
            None => {
                act.par_chunks_exact_mut(rows)
                    .zip(bias)
                    .with_min_len(min_items(rows))
                    .for_each(|(row, &b)| row.iter_mut().for_each(|v| *v = (*v + b).max(0.0)));
                None
            }
            Some(norm) => {
                let (gamma, beta) = affine.split_at(out_ch);
                let mut z = act;
                z.par_chunks_exact_mut(rows)
                    .zip(bias)
                    .with_min_len(min_items(rows))
                    .for_each(|(row, &b)| row.iter_mut().for_each(|v| *v += b));
                // Each channel's values are one row: the same sums, in the same order, as the
                // NCHW op's (`batch_norm.rs`).
                let (mean, var): (Vec<f32>, Vec<f32>) = z
                    .par_chunks_exact(rows)
                    .with_min_len(min_items(rows))
                    .map(|row| batch_norm::channel_stats(std::iter::once(row), bn))
                    .unzip();
                let invstd: Vec<f32> = var
                    .iter()
                    .map(|&v| batch_norm::invstd(v, norm.eps))
                    .collect();
                let mut u = vec![0f32; z.len()];
                u.par_chunks_exact_mut(rows)
                    .zip(z.par_chunks_exact(rows))
                    .enumerate()
                    .with_min_len(min_items(rows))
                    .for_each(|(c, (urow, zrow))| {
                        let (scale, shift) =
                            batch_norm::affine(mean[c], invstd[c], gamma[c], beta[c]);
                        for (u, &v) in urow.iter_mut().zip(zrow) {
                            *u = v * scale + shift;
                        }
                    });
                let pre = if self.relu {
                    if self.pool.is_none() {
                        // Nothing reads a separate activation (the backward pass takes ReLU's
                        // rule from `u`): the ReLU goes into the transposition to images.
                        direct = Some(conv::to_images(&u, g.batch, out_ch, n, OnTheWay::Relu));
                        act = Vec::new();
                    } else {
                        act = u
                            .par_iter()
                            .with_min_len(PAR_MIN)
                            .map(|&v| v.max(0.0))
                            .collect();
                    }
                    Some(u)
                } else {
                    act = u;
                    None
                };
                *norm.stats.lock().map_err(|_| Self::poisoned())? = Some(BatchStats {
                    mean: mean.clone(),
                    var,
                    count: bn,
                });
                Some(NormSaved {
                    z,
                    pre,
                    mean,
                    invstd,
                    gamma: gamma.to_vec(),
                })
            }
        };
        let plane = |o: usize, b: usize| &act[(o * g.batch + b) * n..][..n];
        let (y, shape) = match self.pool {
            None => {
                let y = direct
                    .unwrap_or_else(|| conv::to_images(&act, g.batch, out_ch, n, OnTheWay::Copy));
                (y, Shape::from((g.batch, out_ch, g.oh, g.ow)))
            }
            Some(p) => {
                let pg = p.geom((g.batch, out_ch, g.oh, g.ow))?;
                let pn = pg.out_plane();
                let mut y = vec![0f32; g.batch * out_ch * pn];
                y.par_chunks_exact_mut(pn.max(1))
                    .enumerate()
                    .with_min_len(min_items(n))
                    .for_each(|(bo, out)| {
                        let src = plane(bo % out_ch, bo / out_ch);
                        match p {
                            Pooling::Max { .. } => pg.max_plane(src, out),
                            Pooling::Avg { .. } => pg.avg_plane(src, out),
                        }
                    });
                (y, pg.out_shape())
            }
        };
        if self.keep {
            *self.saved.lock().map_err(|_| Self::poisoned())? = Some(Saved {
                act,
                norm: norm_saved,
                winograd: kept.map(Arc::new),
            });
        }
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = Self::NAME;
        let geom = self.conv.geom(x.dims(), w.dims())?;
        let out_ch = w.dim(0)?;
        let (batch, n) = (geom.batch, geom.positions());
        let guard = self.saved.lock().map_err(|_| Self::poisoned())?;
        let saved = guard.as_ref().ok_or_else(|| {
            OpError::shape(
                op,
                "backward without a forward pass that kept its activation".into(),
            )
        })?;
        let act = &saved.act;
        let dy_t = grad_res.contiguous()?;
        let (storage, layout) = dy_t.storage_and_layout();
        let Storage::Cpu(storage) = &*storage else {
            return Err(OpError::shape(
                op,
                "the output gradient is not on the CPU".into(),
            ));
        };
        let dy = f32_data(op, storage, layout)?;
        // The output gradient routed back to the activation, channel-major, times relu'.
        let mut g = vec![0f32; out_ch * batch * n];
        let pre = saved.norm.as_ref().and_then(|ns| ns.pre.as_deref());
        let pooling = match self.pool {
            Some(p) => Some((p, p.geom((batch, out_ch, geom.oh, geom.ow))?)),
            None => None,
        };
        if act.len() != g.len() && (pooling.is_some() || pre.is_none()) {
            return Err(OpError::shape(
                op,
                "the forward pass kept no activation for the pooling or ReLU".into(),
            ));
        }
        g.par_chunks_exact_mut(n.max(1))
            .enumerate()
            .with_min_len(min_items(n))
            .for_each(|(ob, dplane)| {
                let aplane = act.get(ob * n..(ob + 1) * n).unwrap_or_default();
                let (o, b) = (ob / batch, ob % batch);
                match &pooling {
                    None => dplane.copy_from_slice(&dy[(b * out_ch + o) * n..][..n]),
                    Some((p, pg)) => {
                        let pn = pg.out_plane();
                        let gplane = &dy[(b * out_ch + o) * pn..][..pn];
                        match p {
                            Pooling::Max { .. } => pg.max_plane_bwd(aplane, gplane, dplane),
                            Pooling::Avg { .. } => pg.avg_plane_bwd(gplane, dplane),
                        }
                    }
                }
                if self.relu {
                    relu_bwd(dplane, aplane, pre.map(|u| &u[ob * n..][..n]));
                }
            });
        // Through the normalisation, in place: the gradient of its input, and those of gamma
        // and beta (the same sums, in the same order, as `batch_norm`'s backward pass).
        let affine_grads = saved.norm.as_ref().map(|ns| {
            let rows = (batch * n).max(1);
            let per_channel: Vec<(f32, f32)> = g
                .par_chunks_exact_mut(rows)
                .zip(ns.z.par_chunks_exact(rows))
                .enumerate()
                .with_min_len(min_items(rows))
                .map(|(c, (grow, zrow))| {
                    let norm = (ns.mean[c], ns.invstd[c], ns.gamma[c]);
                    let grad =
                        batch_norm::ChannelGrad::new(std::iter::once((zrow, &*grow)), norm, rows);
                    for (gv, &zv) in grow.iter_mut().zip(zrow) {
                        *gv = grad.input(zv, *gv);
                    }
                    (grad.dgamma, grad.dbeta)
                })
                .collect();
            per_channel
                .into_iter()
                .unzip::<f32, f32, Vec<f32>, Vec<f32>>()
        });
        let kept = saved.winograd.clone();
        drop(guard);
        let g = Tensor::from_vec(g, (out_ch, batch * n), x.device())?;
        let (dx, dw, dbias) = conv::grads(geom, (x, w, p), &g, kept)?;
        let dp = match (dbias, affine_grads) {
            (dbias, None) => dbias,
            (Some(dbias), Some((dgamma, dbeta))) => {
                let dgamma = Tensor::from_vec(dgamma, out_ch, x.device())?;
                let dbeta = Tensor::from_vec(dbeta, out_ch, x.device())?;
                Some(Tensor::cat(&[&dbias, &dgamma, &dbeta], 0)?)
            }
            (None, Some(_)) => None,
        };
        Ok((dx, dw, dp))
    }
}

/// `pool(relu(conv2d(x, weight, bias)))` as one op: a convolution (as [`super::conv2d`]),
/// plus bias, ReLU, and optionally a pooling, with one backward pass for all of them.
///
/// Same values as `conv2d` → `relu` → `max_pool2d`/`avg_pool2d` (see the module docs for why
/// it is faster). The ReLU derivative at exactly 0 is taken as 0, as PyTorch does.
///
/// # Shapes
/// - `x`: `[batch, in_ch, h, w]`, `f32`; `weight`: `[out_ch, in_ch, kernel, kernel]`;
///   `bias`: `[out_ch]`
/// - returns `[batch, out_ch, oh, ow]` of the convolution, or of the pooling when there is one
///
/// # Example
/// ```
/// use candle_core::{Device, Tensor};
/// use trainer::ops::{Pooling, conv_block};
/// // 1x1x3x3 image, a 2x2 kernel of ones, bias -20: conv [8, 12, 20, 24] - 20, ReLU
/// // [0, 0, 0, 4], then the max of the one 2x2 window.
/// let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let b = Tensor::new(&[-20f32], &Device::Cpu)?;
/// let y = conv_block(&x, &w, &b, 1, 0, Some(Pooling::Max { kernel: 2, stride: 2 }))?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv_block(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stride: usize,
    padding: usize,
    pool: Option<Pooling>,
) -> Result<Tensor> {
    let block = Block {
        conv: Conv { stride, padding },
        norm: None,
        pool,
        relu: true,
        keep: x.track_op() || weight.track_op() || bias.track_op(),
        saved: Mutex::new(None),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, block)
}

/// What follows the normalisation in a [`conv_bn_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Whether a ReLU follows.
    pub relu: bool,
    /// The pooling that ends the block, if any.
    pub pool: Option<Pooling>,
}

/// The scale and shift of a batch normalisation in training mode: `gamma` and `beta`
/// (`[out_ch]`) and `eps`, added to the variance before the square root.
#[derive(Debug, Clone, Copy)]
pub struct BatchNormArgs<'a> {
    /// Per-channel scale.
    pub gamma: &'a Tensor,
    /// Per-channel shift.
    pub beta: &'a Tensor,
    /// Added to the variance before the square root.
    pub eps: f64,
}

/// `pool(relu(bn(conv2d(x, weight, bias))))` as one op, the normalisation in training mode
/// (by the batch's own mean and biased variance, as [`super::batch_norm_train`]), with one
/// backward pass for all of it; the [`Tail`] says whether the ReLU (absent from a residual
/// body's last convolution) and a pooling follow. Returns the output and the batch
/// statistics, which the caller folds into its running statistics.
///
/// Same values and gradients as `conv2d` → `batch_norm_train` → `relu` → pooling, bit for
/// bit.
///
/// # Shapes
/// As [`conv_block`]; `gamma` and `beta` are `[out_ch]`.
///
/// # Example
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use trainer::ops::{BatchNormArgs, Tail, conv_bn_block};
/// // Two 1x1 images through a 1x1 kernel of ones: the channel holds 1 and 3 (mean 2,
/// // variance 1), normalised to -1 and 1, then ReLU.
/// let dev = Device::Cpu;
/// let x = Tensor::new(&[1f32, 3.], &dev)?.reshape((2, 1, 1, 1))?;
/// let w = Tensor::ones((1, 1, 1, 1), DType::F32, &dev)?;
/// let (b, gamma, beta) = (Tensor::new(&[0f32], &dev)?, Tensor::new(&[1f32], &dev)?, Tensor::new(&[0f32], &dev)?);
/// let bn = BatchNormArgs { gamma: &gamma, beta: &beta, eps: 0.0 };
/// let tail = Tail { relu: true, pool: None };
/// let (y, stats) = conv_bn_block(&x, &w, &b, bn, 1, 0, tail)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [0., 1.]);
/// assert_eq!((stats.mean, stats.var, stats.count), (vec![2.], vec![1.], 2));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv_bn_block(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    bn: BatchNormArgs<'_>,
    stride: usize,
    padding: usize,
    tail: Tail,
) -> Result<(Tensor, BatchStats)> {
    let Tail { relu, pool } = tail;
    let stats = Arc::new(Mutex::new(None));
    let block = Block {
        conv: Conv { stride, padding },
        norm: Some(Norm {
            eps: bn.eps,
            stats: Arc::clone(&stats),
        }),
        pool,
        relu,
        keep: x.track_op()
            || weight.track_op()
            || bias.track_op()
            || bn.gamma.track_op()
            || bn.beta.track_op(),
        saved: Mutex::new(None),
    };
    let params = Tensor::cat(&[bias, bn.gamma, bn.beta], 0)?;
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &params, block)?;
    let stats = stats
        .lock()
        .map_err(|_| Block::poisoned())?
        .take()
        .ok_or_else(|| OpError::shape(Block::NAME, "the forward pass left no statistics".into()))?;
    Ok((y, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    use crate::ops::test_util::{assert_close, assert_same_grads, grads_of, random, random_var};
    use crate::ops::{avg_pool2d, conv2d, max_pool2d};

    /// `(input dims, out_ch, kernel, stride, padding, pooling)`, shapes like our networks'.
    type Case = (
        (usize, usize, usize, usize),
        usize,
        usize,
        usize,
        usize,
        Option<Pooling>,
    );

    const MAX2: Option<Pooling> = Some(Pooling::Max {
        kernel: 2,
        stride: 2,
    });
    const AVG2: Option<Pooling> = Some(Pooling::Avg {
        kernel: 2,
        stride: 2,
    });

    const CASES: [Case; 9] = [
        ((3, 1, 28, 28), 8, 3, 1, 1, MAX2),
        // 3x3, stride 1, 16 input channels: Winograd convolutions, whose backward pass reuses
        // what the block's forward pass kept.
        ((2, 16, 8, 8), 5, 3, 1, 1, None),
        ((2, 16, 9, 9), 4, 3, 1, 0, MAX2),
        ((3, 4, 14, 14), 6, 3, 1, 1, MAX2),
        ((3, 1, 28, 28), 6, 5, 1, 0, AVG2),
        ((3, 6, 12, 12), 5, 5, 1, 0, AVG2),
        ((2, 3, 11, 11), 4, 3, 1, 1, MAX2),
        (
            (2, 3, 12, 12),
            4,
            3,
            1,
            0,
            Some(Pooling::Max {
                kernel: 3,
                stride: 2,
            }),
        ),
        ((2, 3, 9, 9), 4, 3, 2, 1, None),
    ];

    fn unfused(x: &Tensor, w: &Tensor, b: &Tensor, case: &Case) -> Tensor {
        let (_, _, _, stride, padding, pool) = *case;
        let y = conv2d(x, w, Some(b), stride, padding)
            .unwrap()
            .relu()
            .unwrap();
        match pool {
            None => y,
            Some(Pooling::Max { kernel, stride }) => max_pool2d(&y, kernel, stride).unwrap(),
            Some(Pooling::Avg { kernel, stride }) => avg_pool2d(&y, kernel, stride).unwrap(),
        }
    }

    #[test]
    fn matches_the_unfused_ops_forward_and_gradients() {
        for case in &CASES {
            let ((bt, c, h, w), out_ch, kernel, stride, padding, pool) = *case;
            let what =
                format!("{bt}x{c}x{h}x{w} -> {out_ch}, k{kernel} s{stride} p{padding} {pool:?}");
            let x = random_var(&[bt, c, h, w], 1);
            let wt = random_var(&[out_ch, c, kernel, kernel], 2);
            let bias = random_var(&[out_ch], 3);
            let fused = conv_block(&x, &wt, &bias, stride, padding, pool).unwrap();
            let reference = unfused(&x, &wt, &bias, case);
            assert_close(&fused, &reference, 0.0, &format!("{what}: forward"));
            let vars = [("x", &x), ("weight", &wt), ("bias", &bias)];
            assert_same_grads(&fused, &reference, &vars, 4, 1e-5, &what);
        }
    }

    fn unfused_bn(
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        relu: bool,
        case: &Case,
    ) -> (Tensor, Vec<f32>, Vec<f32>) {
        let (_, _, _, stride, padding, pool) = *case;
        let z = conv2d(x, w, Some(b), stride, padding).unwrap();
        let (u, mean, var) = crate::ops::batch_norm_train(&z, gamma, beta, 1e-5).unwrap();
        let y = if relu { u.relu().unwrap() } else { u };
        let y = match pool {
            None => y,
            Some(Pooling::Max { kernel, stride }) => max_pool2d(&y, kernel, stride).unwrap(),
            Some(Pooling::Avg { kernel, stride }) => avg_pool2d(&y, kernel, stride).unwrap(),
        };
        (y, mean, var)
    }

    #[test]
    fn with_batch_norm_matches_the_unfused_ops_bit_for_bit() {
        for (case, relu) in CASES.iter().flat_map(|c| [(c, true), (c, false)]) {
            let ((bt, c, h, w), out_ch, kernel, stride, padding, pool) = *case;
            let what = format!(
                "bn {bt}x{c}x{h}x{w} -> {out_ch}, k{kernel} s{stride} p{padding} relu {relu} {pool:?}"
            );
            let x = random_var(&[bt, c, h, w], 11);
            let wt = random_var(&[out_ch, c, kernel, kernel], 12);
            let bias = random_var(&[out_ch], 13);
            let gamma = random_var(&[out_ch], 14);
            let beta = random_var(&[out_ch], 15);
            let bn = BatchNormArgs {
                gamma: &gamma,
                beta: &beta,
                eps: 1e-5,
            };
            let (fused, stats) =
                conv_bn_block(&x, &wt, &bias, bn, stride, padding, Tail { relu, pool }).unwrap();
            let (reference, mean, var) = unfused_bn(&x, &wt, &bias, &gamma, &beta, relu, case);
            assert_close(&fused, &reference, 0.0, &format!("{what}: forward"));
            assert_eq!((stats.mean, stats.var), (mean, var), "{what}: statistics");
            let z = conv2d(&x, &wt, Some(&bias), stride, padding).unwrap();
            let count = bt * z.dim(2).unwrap() * z.dim(3).unwrap();
            assert_eq!(stats.count, count, "{what}: count");
            let vars = [
                ("x", &x),
                ("weight", &wt),
                ("bias", &bias),
                ("gamma", &gamma),
                ("beta", &beta),
            ];
            assert_same_grads(&fused, &reference, &vars, 16, 0.0, &what);
        }
    }

    #[test]
    fn with_batch_norm_a_normalised_zero_passes_the_gradient_as_candle_relu_does() {
        // A constant image through a convolution without padding: every channel's values
        // equal its mean, so with beta 0 every normalised value is exactly 0, where candle's
        // `relu` takes the derivative 1.
        let dev = candle_core::Device::Cpu;
        let x = Var::from_tensor(&Tensor::ones((2, 1, 6, 6), DType::F32, &dev).unwrap()).unwrap();
        let wt = random_var(&[3, 1, 3, 3], 21);
        let bias = random_var(&[3], 22);
        let gamma = random_var(&[3], 23);
        let beta = Var::from_tensor(&Tensor::zeros(3, DType::F32, &dev).unwrap()).unwrap();
        for pool in [None, MAX2] {
            let case: Case = ((2, 1, 6, 6), 3, 3, 1, 0, pool);
            let bn = BatchNormArgs {
                gamma: &gamma,
                beta: &beta,
                eps: 1e-5,
            };
            let (fused, _) =
                conv_bn_block(&x, &wt, &bias, bn, 1, 0, Tail { relu: true, pool }).unwrap();
            let (reference, _, _) = unfused_bn(&x, &wt, &bias, &gamma, &beta, true, &case);
            let zeros: Vec<f32> = fused.flatten_all().unwrap().to_vec1().unwrap();
            assert!(zeros.iter().all(|&v| v == 0.0), "{pool:?}: {zeros:?}");
            let vars = [("weight", &wt), ("gamma", &gamma), ("beta", &beta)];
            assert_same_grads(&fused, &reference, &vars, 24, 0.0, &format!("{pool:?}"));
            let dbeta = grads_of(&fused, 24).get(&beta).unwrap().abs().unwrap();
            let dbeta: Vec<f32> = dbeta.to_vec1().unwrap();
            assert!(
                dbeta.iter().all(|&v| v > 0.0),
                "{pool:?}: the gradient passed: {dbeta:?}"
            );
        }
    }

    #[test]
    fn with_batch_norm_untracked_arguments_keep_nothing() {
        let (x, wt, bias) = (
            random(&[2, 1, 8, 8], 9),
            random(&[3, 1, 3, 3], 10),
            random(&[3], 11),
        );
        let (gamma, beta) = (random(&[3], 12), random(&[3], 13));
        let bn = BatchNormArgs {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        };
        let (y, stats) = conv_bn_block(
            &x,
            &wt,
            &bias,
            bn,
            1,
            1,
            Tail {
                relu: true,
                pool: MAX2,
            },
        )
        .unwrap();
        assert_eq!(y.dims(), [2, 3, 4, 4]);
        assert_eq!(stats.count, 2 * 8 * 8);
    }

    #[test]
    fn with_batch_norm_rejects_parameters_of_the_wrong_size() {
        let (x, wt, bias) = (
            random(&[2, 1, 8, 8], 9),
            random(&[3, 1, 3, 3], 10),
            random(&[3], 11),
        );
        let (gamma, beta) = (random(&[2], 12), random(&[3], 13));
        let bn = BatchNormArgs {
            gamma: &gamma,
            beta: &beta,
            eps: 1e-5,
        };
        let err = conv_bn_block(
            &x,
            &wt,
            &bias,
            bn,
            1,
            1,
            Tail {
                relu: false,
                pool: None,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("per-channel parameters"), "{err}");
    }

    #[test]
    fn matches_candle_conv_relu_avg_pool() {
        // candle's own ops end to end (its avg-pool backward is right for kernel == stride;
        // its max-pool backward is not, see `pool.rs`).
        let x = random_var(&[3, 2, 12, 12], 5);
        let wt = random_var(&[4, 2, 5, 5], 6);
        let bias = random_var(&[4], 7);
        let fused = conv_block(&x, &wt, &bias, 1, 0, AVG2).unwrap();
        let stock = x
            .conv2d(&wt, 0, 1, 1, 1)
            .unwrap()
            .broadcast_add(&bias.reshape((1, 4, 1, 1)).unwrap())
            .unwrap()
            .relu()
            .unwrap()
            .avg_pool2d(2)
            .unwrap();
        assert_close(&fused, &stock, 1e-5, "forward");
        let vars = [("x", &x), ("weight", &wt), ("bias", &bias)];
        assert_same_grads(&fused, &stock, &vars, 8, 1e-4, "candle");
    }

    #[test]
    fn untracked_arguments_keep_nothing() {
        let x = random(&[2, 1, 8, 8], 9);
        let wt = random(&[3, 1, 3, 3], 10);
        let bias = random(&[3], 11);
        let y = conv_block(&x, &wt, &bias, 1, 1, MAX2).unwrap();
        assert_eq!(y.dims(), [2, 3, 4, 4]);
    }

    #[test]
    fn rejects_a_pool_larger_than_the_activation() {
        let x = random(&[1, 1, 4, 4], 1);
        let wt = random(&[2, 1, 3, 3], 2);
        let bias = random(&[2], 3);
        let pool = Some(Pooling::Max {
            kernel: 3,
            stride: 3,
        });
        let err = conv_block(&x, &wt, &bias, 1, 0, pool)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
