//! A whole convolution block as one op: `pool(relu(conv(x) + b))`.
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
//! Values are bit-identical to the unfused `conv2d → relu → max_pool2d / avg_pool2d` (the
//! same matmul, and ReLU commutes with max), and so are gradients, up to the order of float
//! additions in the bias sum.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Storage, Tensor};

use super::conv::{self, Conv};
use super::{OpError, f32_data, pool};

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

/// The fused op; `act` is filled by the forward pass when a gradient may be asked for.
struct Block {
    conv: Conv,
    pool: Option<Pooling>,
    /// Whether any argument is tracked, i.e. whether to keep the activation.
    keep: bool,
    /// `relu(conv(x) + b)` as `[out_ch, batch·oh·ow]`.
    act: Mutex<Option<Vec<f32>>>,
}

impl Block {
    const NAME: &'static str = "conv2d-relu-pool";

    fn poisoned() -> candle_core::Error {
        OpError::shape(Self::NAME, "activation store poisoned by a panic".into())
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
        bs: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (mut act, g, bias) = self
            .conv
            .product(Self::NAME, (xs, xl), (ws, wl), (bs, bl))?;
        let out_ch = bias.len();
        let (n, bn) = (g.positions(), g.batch * g.positions());
        for (row, &b) in act.chunks_exact_mut(bn.max(1)).zip(bias) {
            row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        }
        let plane = |o: usize, b: usize| &act[(o * g.batch + b) * n..][..n];
        let (y, shape) = match self.pool {
            None => {
                let mut y = Vec::with_capacity(act.len());
                for b in 0..g.batch {
                    (0..out_ch).for_each(|o| y.extend_from_slice(plane(o, b)));
                }
                (y, Shape::from((g.batch, out_ch, g.oh, g.ow)))
            }
            Some(p) => {
                let pg = p.geom((g.batch, out_ch, g.oh, g.ow))?;
                let pn = pg.out_plane();
                let mut y = vec![0f32; g.batch * out_ch * pn];
                for (bo, out) in y.chunks_exact_mut(pn.max(1)).enumerate() {
                    let src = plane(bo % out_ch, bo / out_ch);
                    match p {
                        Pooling::Max { .. } => pg.max_plane(src, out),
                        Pooling::Avg { .. } => pg.avg_plane(src, out),
                    }
                }
                (y, pg.out_shape())
            }
        };
        if self.keep {
            *self.act.lock().map_err(|_| Self::poisoned())? = Some(act);
        }
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = Self::NAME;
        let geom = self.conv.geom(x.dims(), w.dims())?;
        let out_ch = w.dim(0)?;
        let (batch, n) = (geom.batch, geom.positions());
        let guard = self.act.lock().map_err(|_| Self::poisoned())?;
        let act = guard.as_ref().ok_or_else(|| {
            OpError::shape(
                op,
                "backward without a forward pass that kept its activation".into(),
            )
        })?;
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
        let mut g = vec![0f32; act.len()];
        let planes = g.chunks_exact_mut(n.max(1)).zip(act.chunks_exact(n.max(1)));
        match self.pool {
            None => {
                for (ob, (dplane, aplane)) in planes.enumerate() {
                    let (o, b) = (ob / batch, ob % batch);
                    let gplane = &dy[(b * out_ch + o) * n..][..n];
                    for ((d, &a), &gv) in dplane.iter_mut().zip(aplane).zip(gplane) {
                        *d = if a > 0.0 { gv } else { 0.0 };
                    }
                }
            }
            Some(p) => {
                let pg = p.geom((batch, out_ch, geom.oh, geom.ow))?;
                let pn = pg.out_plane();
                for (ob, (dplane, aplane)) in planes.enumerate() {
                    let (o, b) = (ob / batch, ob % batch);
                    let gplane = &dy[(b * out_ch + o) * pn..][..pn];
                    match p {
                        Pooling::Max { .. } => pg.max_plane_bwd(aplane, gplane, dplane),
                        Pooling::Avg { .. } => pg.avg_plane_bwd(gplane, dplane),
                    }
                    for (d, &a) in dplane.iter_mut().zip(aplane) {
                        *d = if a > 0.0 { *d } else { 0.0 };
                    }
                }
            }
        }
        drop(guard);
        let g = Tensor::from_vec(g, (out_ch, batch * n), x.device())?;
        conv::grads(geom, x, w, b, &g)
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
        pool,
        keep: x.track_op() || weight.track_op() || bias.track_op(),
        act: Mutex::new(None),
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, assert_same_grads, random, random_var};
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

    const CASES: [Case; 7] = [
        ((3, 1, 28, 28), 8, 3, 1, 1, MAX2),
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
