//! Max and average pooling with direct backward passes.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use rayon::prelude::*;

use super::{OpError, f32_data, min_items, out_size};

/// Geometry of a pooling sweep over `planes` planes of `h × w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geom {
    dims: (usize, usize, usize, usize),
    kernel: usize,
    stride: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(op: &'static str, layout: &Layout, kernel: usize, stride: usize) -> Result<Self> {
        Self::from_dims(op, layout.shape().dims4()?, kernel, stride)
    }

    /// The sweep of `kernel × kernel` windows, `stride` apart, over `[batch, ch, h, w]`.
    pub(super) fn from_dims(
        op: &'static str,
        dims: (usize, usize, usize, usize),
        kernel: usize,
        stride: usize,
    ) -> Result<Self> {
        Ok(Self {
            dims,
            kernel,
            stride,
            oh: out_size(op, dims.2, kernel, stride, 0)?,
            ow: out_size(op, dims.3, kernel, stride, 0)?,
        })
    }

    pub(super) fn planes(&self) -> usize {
        self.dims.0 * self.dims.1
    }

    pub(super) fn in_plane(&self) -> usize {
        self.dims.2 * self.dims.3
    }

    pub(super) fn out_plane(&self) -> usize {
        self.oh * self.ow
    }

    pub(super) fn out_shape(&self) -> Shape {
        (self.dims.0, self.dims.1, self.oh, self.ow).into()
    }

    /// Input row `i·stride + ki` of a plane.
    fn in_row<'a>(&self, plane: &'a [f32], i: usize, ki: usize) -> &'a [f32] {
        let w = self.dims.3;
        &plane[(i * self.stride + ki) * w..][..w]
    }

    /// `out = max over each window` for one plane, scanning the taps of all windows of an output
    /// row together; NaN wins, as in PyTorch.
    pub(super) fn max_plane(&self, plane: &[f32], out: &mut [f32]) {
        let w = self.dims.3;
        if self.kernel == 2 && self.stride == 2 {
            for (i, orow) in out.chunks_exact_mut(self.ow).enumerate() {
                let a = &plane[2 * i * w..][..2 * self.ow];
                let b = &plane[(2 * i + 1) * w..][..2 * self.ow];
                for ((o, a), b) in orow
                    .iter_mut()
                    .zip(a.chunks_exact(2))
                    .zip(b.chunks_exact(2))
                {
                    *o = pick(pick(pick(a[0], a[1]), b[0]), b[1]);
                }
            }
            return;
        }
        for (i, orow) in out.chunks_exact_mut(self.ow).enumerate() {
            orow.fill(f32::NEG_INFINITY);
            for ki in 0..self.kernel {
                let irow = self.in_row(plane, i, ki);
                for kj in 0..self.kernel {
                    for (j, o) in orow.iter_mut().enumerate() {
                        *o = pick(*o, irow[j * self.stride + kj]);
                    }
                }
            }
        }
    }

    /// Adds each output gradient to the first maximum of its window (row-major scan; a NaN
    /// replaces the maximum, as in PyTorch's CPU kernel).
    pub(super) fn max_plane_bwd(&self, plane: &[f32], grad: &[f32], dplane: &mut [f32]) {
        let (w, s) = (self.dims.3, self.stride);
        if self.kernel == 2 && s == 2 {
            // Windows do not overlap, so every input cell is written exactly once. Two
            // branch-free passes per output row (which cell holds the maximum is data-dependent:
            // branches would mispredict): find the winning cell 0..=3 of each window, then
            // write the four cells. Measured 4.6x faster than one pass with an integer index.
            let mut winner = vec![0f32; self.ow];
            for (i, grow) in grad.chunks_exact(self.ow).enumerate() {
                let a = &plane[2 * i * w..][..2 * self.ow];
                let b = &plane[(2 * i + 1) * w..][..2 * self.ow];
                for ((win, a), b) in winner
                    .iter_mut()
                    .zip(a.chunks_exact(2))
                    .zip(b.chunks_exact(2))
                {
                    let (mut m, mut at) = (a[0], 0.0f32);
                    for (v, k) in [(a[1], 1.0f32), (b[0], 2.0), (b[1], 3.0)] {
                        let wins = v > m || v.is_nan();
                        m = if wins { v } else { m };
                        at = if wins { k } else { at };
                    }
                    *win = at;
                }
                let (d0, d1) = dplane[2 * i * w..].split_at_mut(w);
                for (j, (&at, &gv)) in winner.iter().zip(grow).enumerate() {
                    d0[2 * j] = if at == 0.0 { gv } else { 0.0 };
                    d0[2 * j + 1] = if at == 1.0 { gv } else { 0.0 };
                    d1[2 * j] = if at == 2.0 { gv } else { 0.0 };
                    d1[2 * j + 1] = if at == 3.0 { gv } else { 0.0 };
                }
            }
            return;
        }
        let mut max = vec![0f32; self.ow];
        let mut best = vec![0usize; self.ow];
        for (i, grow) in grad.chunks_exact(self.ow).enumerate() {
            max.fill(f32::NEG_INFINITY);
            for (j, b) in best.iter_mut().enumerate() {
                *b = i * s * w + j * s;
            }
            for ki in 0..self.kernel {
                let row0 = (i * s + ki) * w;
                let irow = &plane[row0..row0 + w];
                for kj in 0..self.kernel {
                    for (j, (m, b)) in max.iter_mut().zip(&mut best).enumerate() {
                        let v = irow[j * s + kj];
                        if v > *m || v.is_nan() {
                            *m = v;
                            *b = row0 + j * s + kj;
                        }
                    }
                }
            }
            for (&b, &gv) in best.iter().zip(grow) {
                dplane[b] += gv;
            }
        }
    }

    /// `out = mean over each window` for one plane.
    pub(super) fn avg_plane(&self, plane: &[f32], out: &mut [f32]) {
        let inv = 1.0 / (self.kernel * self.kernel) as f32;
        if self.kernel == 2 && self.stride == 2 {
            let w = self.dims.3;
            for (i, orow) in out.chunks_exact_mut(self.ow).enumerate() {
                let a = &plane[2 * i * w..][..2 * self.ow];
                let b = &plane[(2 * i + 1) * w..][..2 * self.ow];
                for ((o, a), b) in orow
                    .iter_mut()
                    .zip(a.chunks_exact(2))
                    .zip(b.chunks_exact(2))
                {
                    *o = (a[0] + a[1] + b[0] + b[1]) * inv;
                }
            }
            return;
        }
        for (i, orow) in out.chunks_exact_mut(self.ow).enumerate() {
            orow.fill(0.0);
            for ki in 0..self.kernel {
                let irow = self.in_row(plane, i, ki);
                for kj in 0..self.kernel {
                    for (o, &v) in orow.iter_mut().zip(irow[kj..].iter().step_by(self.stride)) {
                        *o += v;
                    }
                }
            }
            orow.iter_mut().for_each(|o| *o *= inv);
        }
    }

    /// Spreads each output gradient as `g/kernel²` over its window.
    pub(super) fn avg_plane_bwd(&self, grad: &[f32], dplane: &mut [f32]) {
        let (w, s) = (self.dims.3, self.stride);
        let inv = 1.0 / (self.kernel * self.kernel) as f32;
        if self.kernel == 2 && s == 2 {
            for (i, grow) in grad.chunks_exact(self.ow).enumerate() {
                let (d0, d1) = dplane[2 * i * w..].split_at_mut(w);
                let cells = d0[..2 * self.ow]
                    .chunks_exact_mut(2)
                    .zip(d1[..2 * self.ow].chunks_exact_mut(2));
                for ((da, db), &gv) in cells.zip(grow) {
                    let v = gv * inv;
                    (da[0], da[1], db[0], db[1]) = (v, v, v, v);
                }
            }
            return;
        }
        for (i, grow) in grad.chunks_exact(self.ow).enumerate() {
            for ki in 0..self.kernel {
                let drow = &mut dplane[(i * s + ki) * w..][..w];
                for kj in 0..self.kernel {
                    for (d, &gv) in drow[kj..].iter_mut().step_by(s).zip(grow) {
                        *d += gv * inv;
                    }
                }
            }
        }
    }
}

/// `v` if it beats the running maximum `m` (or is NaN), else `m`: PyTorch's update rule, in
/// a form the compiler turns into a select.
#[inline]
fn pick(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() { v } else { m }
}

/// Which pooling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Max,
    Avg,
}

/// The forward pooling op; its backward is [`PoolBwd`].
struct Pool {
    kind: Kind,
    kernel: usize,
    stride: usize,
}

impl CustomOp1 for Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max => "max-pool2d",
            Kind::Avg => "avg-pool2d",
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let src = f32_data(self.name(), storage, layout)?;
        let g = Geom::new(self.name(), layout, self.kernel, self.stride)?;
        let (ip, op) = (g.in_plane(), g.out_plane());
        let mut dst = vec![0f32; g.planes() * op];
        dst.par_chunks_exact_mut(op.max(1))
            .zip(src.par_chunks_exact(ip.max(1)))
            .with_min_len(min_items(ip))
            .for_each(|(out, plane)| match self.kind {
                Kind::Max => g.max_plane(plane, out),
                Kind::Avg => g.avg_plane(plane, out),
            });
        Ok((CpuStorage::F32(dst), g.out_shape()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let op = PoolBwd {
            kind: self.kind,
            kernel: self.kernel,
            stride: self.stride,
        };
        Ok(Some(arg.apply_op2_no_bwd(&grad_res.contiguous()?, &op)?))
    }
}

/// Pooling backward: `(input, output gradient) -> input gradient`.
struct PoolBwd {
    kind: Kind,
    kernel: usize,
    stride: usize,
}

impl CustomOp2 for PoolBwd {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max => "max-pool2d-bwd",
            Kind::Avg => "avg-pool2d-bwd",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let src = f32_data(self.name(), s1, l1)?;
        let grad = f32_data(self.name(), s2, l2)?;
        let g = Geom::new(self.name(), l1, self.kernel, self.stride)?;
        if l2.shape() != &g.out_shape() {
            return Err(OpError::shape(
                self.name(),
                format!("gradient {:?}, expected {:?}", l2.dims(), g.out_shape()),
            ));
        }
        let (ip, op) = (g.in_plane(), g.out_plane());
        let mut dst = vec![0f32; src.len()];
        dst.par_chunks_exact_mut(ip.max(1))
            .zip(src.par_chunks_exact(ip.max(1)))
            .zip(grad.par_chunks_exact(op.max(1)))
            .with_min_len(min_items(ip))
            .for_each(|((dplane, plane), gplane)| match self.kind {
                Kind::Max => g.max_plane_bwd(plane, gplane, dplane),
                Kind::Avg => g.avg_plane_bwd(gplane, dplane),
            });
        Ok((CpuStorage::F32(dst), l1.shape().clone()))
    }
}

fn pool(x: &Tensor, kind: Kind, kernel: usize, stride: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Pool {
        kind,
        kernel,
        stride,
    })
}

/// Max pooling over square windows, no padding.
///
/// `y[b, c, i, j] = max_{0 ≤ ki, kj < kernel} x[b, c, i·stride + ki, j·stride + kj]`.
/// Backward sends each `dy[b, c, i, j]` to the first maximum of its window in row-major order
/// (PyTorch's rule; candle's own backward splits it between tied maxima and needs
/// `kernel == stride`); overlapping windows accumulate.
///
/// # Shapes
/// - `x`: `[batch, ch, h, w]`, `f32`
/// - returns `[batch, ch, (h − kernel)/stride + 1, (w − kernel)/stride + 1]`
///
/// # Example
/// ```
/// use candle_core::{Device, Var};
/// // One 2x2 window whose maximum 4 appears twice: the gradient goes to the first one.
/// let x = Var::new(&[[[[1f32, 4.], [4., 2.]]]], &Device::Cpu)?;
/// let y = trainer::ops::max_pool2d(&x, 2, 2)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [4.]);
/// let grads = y.sum_all()?.backward()?;
/// let dx = grads.get(&x).expect("x is a variable").flatten_all()?.to_vec1::<f32>()?;
/// assert_eq!(dx, [0., 1., 0., 0.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    pool(x, Kind::Max, kernel, stride)
}

/// Average pooling over square windows, no padding.
///
/// `y[b, c, i, j] = (1/kernel²) Σ_{0 ≤ ki, kj < kernel} x[b, c, i·stride + ki, j·stride + kj]`.
/// Backward spreads `dy[b, c, i, j] / kernel²` over the window; overlapping windows accumulate.
///
/// # Shapes
/// - `x`: `[batch, ch, h, w]`, `f32`
/// - returns `[batch, ch, (h − kernel)/stride + 1, (w − kernel)/stride + 1]`
///
/// # Example
/// ```
/// use candle_core::{Device, Var};
/// let x = Var::new(&[[[[1f32, 2.], [3., 6.]]]], &Device::Cpu)?;
/// let y = trainer::ops::avg_pool2d(&x, 2, 2)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [3.]);
/// let grads = y.sum_all()?.backward()?;
/// let dx = grads.get(&x).expect("x is a variable").flatten_all()?.to_vec1::<f32>()?;
/// assert_eq!(dx, [0.25; 4]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn avg_pool2d(x: &Tensor, kernel: usize, stride: usize) -> Result<Tensor> {
    pool(x, Kind::Avg, kernel, stride)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{assert_close, grads_of, random_var};
    use candle_core::{Device, Var};

    fn dev() -> Device {
        Device::Cpu
    }

    #[test]
    fn max_pool_of_a_tiny_plane_by_hand() {
        // 3x3 plane, kernel 2, stride 1: windows overlap, the 9 in the centre wins all four and
        // collects all four output gradients.
        let x = Var::new(&[[[[1f32, 2., 3.], [4., 9., 5.], [6., 7., 8.]]]], &dev()).unwrap();
        let y = max_pool2d(&x, 2, 1).unwrap();
        let y4: Vec<Vec<f32>> = y.squeeze(0).unwrap().squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(y4, vec![vec![9., 9.], vec![9., 9.]]);
        let dy = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &dev()).unwrap();
        let grads = y.mul(&dy).unwrap().sum_all().unwrap().backward().unwrap();
        let dx: Vec<Vec<f32>> = grads
            .get(&x)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(
            dx,
            vec![vec![0., 0., 0.], vec![0., 10., 0.], vec![0., 0., 0.]]
        );
    }

    #[test]
    fn max_pool_ties_go_to_the_first_maximum() {
        // All-zero window (what ReLU leaves behind): the gradient goes to the top-left element.
        let x = Var::new(&[[[[0f32, 0.], [0., 0.]]]], &dev()).unwrap();
        let y = max_pool2d(&x, 2, 2).unwrap();
        let grads = y
            .affine(5.0, 0.0)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let dx: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(dx, vec![5., 0., 0., 0.]);
    }

    #[test]
    fn avg_pool_of_a_tiny_plane_by_hand() {
        // 3x3 plane, kernel 2, stride 1: the centre is in all four windows, corners in one.
        let x = Var::new(&[[[[1f32, 2., 3.], [4., 5., 6.], [7., 8., 9.]]]], &dev()).unwrap();
        let y = avg_pool2d(&x, 2, 1).unwrap();
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(yv, vec![3., 4., 6., 7.]);
        let grads = y.sum_all().unwrap().backward().unwrap();
        let dx: Vec<f32> = grads
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(dx, vec![0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
    }

    /// Sizes divisible by the kernel only: for a leftover row or column candle's backward
    /// (an upsample to the input size) routes gradients to the wrong windows.
    #[test]
    fn match_candle_pooling_forward_and_gradients() {
        for (dims, kernel) in [
            ([3, 2, 8, 8], 2),
            ([3, 5, 12, 12], 2),
            ([3, 4, 10, 12], 2),
            ([3, 3, 12, 12], 3),
            ([3, 2, 10, 10], 5),
        ] {
            let x = random_var(&dims, 11);
            let what = format!("{dims:?} k{kernel}");
            for max in [true, false] {
                let (ours, stock) = if max {
                    (
                        max_pool2d(&x, kernel, kernel).unwrap(),
                        x.max_pool2d_with_stride(kernel, kernel).unwrap(),
                    )
                } else {
                    (
                        avg_pool2d(&x, kernel, kernel).unwrap(),
                        x.avg_pool2d_with_stride(kernel, kernel).unwrap(),
                    )
                };
                let what = format!("{what} max={max}");
                assert_close(&ours, &stock, 1e-6, &format!("{what}: forward"));
                let (go, gs) = (grads_of(&ours, 12), grads_of(&stock, 12));
                let stock_dx = gs.get(&x).unwrap();
                // candle 0.11.1's max-pool backward multiplies the routed gradient by
                // avg_pool(mask) = 1/kernel² for a unique maximum instead of dividing by it, so
                // its input gradient is 1/kernel² of the true one (the naive-loop test below
                // pins ours down independently).
                let stock_dx = if max {
                    stock_dx.affine((kernel * kernel) as f64, 0.0).unwrap()
                } else {
                    stock_dx.clone()
                };
                assert_close(go.get(&x).unwrap(), &stock_dx, 1e-5, &format!("{what}: dx"));
            }
        }
    }

    /// Naive reference for overlapping windows (candle's backward needs `kernel == stride`):
    /// loops over every window and accumulates.
    fn reference(
        x: &[f32],
        dims: [usize; 4],
        k: usize,
        s: usize,
        dy: &[f32],
        max: bool,
    ) -> (Vec<f32>, Vec<f32>) {
        let [b, c, h, w] = dims;
        let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
        let mut y = vec![0f32; b * c * oh * ow];
        let mut dx = vec![0f32; x.len()];
        for p in 0..b * c {
            for i in 0..oh {
                for j in 0..ow {
                    let o = p * oh * ow + i * ow + j;
                    let idx = |ki: usize, kj: usize| p * h * w + (i * s + ki) * w + j * s + kj;
                    if max {
                        let mut best = idx(0, 0);
                        for ki in 0..k {
                            for kj in 0..k {
                                if x[idx(ki, kj)] > x[best] {
                                    best = idx(ki, kj);
                                }
                            }
                        }
                        y[o] = x[best];
                        dx[best] += dy[o];
                    } else {
                        for ki in 0..k {
                            for kj in 0..k {
                                y[o] += x[idx(ki, kj)] / (k * k) as f32;
                                dx[idx(ki, kj)] += dy[o] / (k * k) as f32;
                            }
                        }
                    }
                }
            }
        }
        (y, dx)
    }

    #[test]
    fn overlapping_and_gapped_windows_match_a_naive_loop() {
        for (dims, k, s) in [
            ([3, 2, 9, 9], 3, 2),
            ([3, 3, 10, 8], 2, 1),
            ([3, 4, 9, 11], 2, 2),
            ([3, 2, 12, 12], 2, 3),
            ([3, 4, 11, 11], 5, 2),
        ] {
            let x = random_var(&dims, 21);
            for max in [true, false] {
                let y = if max {
                    max_pool2d(&x, k, s)
                } else {
                    avg_pool2d(&x, k, s)
                }
                .unwrap();
                let r = crate::ops::test_util::random(y.dims(), 22);
                let grads = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
                let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
                let rs: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
                let (y_ref, dx_ref) = reference(&xs, dims, k, s, &rs, max);
                let what = format!("{dims:?} k{k} s{s} max={max}");
                assert_close(
                    &y,
                    &Tensor::from_vec(y_ref, y.dims(), &dev()).unwrap(),
                    1e-6,
                    &what,
                );
                assert_close(
                    grads.get(&x).unwrap(),
                    &Tensor::from_vec(dx_ref, &dims, &dev()).unwrap(),
                    1e-5,
                    &what,
                );
            }
        }
    }

    #[test]
    fn rejects_a_window_larger_than_the_plane() {
        let x = random_var(&[1, 1, 3, 3], 1);
        let err = max_pool2d(&x, 4, 4).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
