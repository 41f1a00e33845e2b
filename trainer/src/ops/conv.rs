//! 2-D convolution as `im2col` + matmul, with `col2im` for the input gradient.
//!
//! Layout choice (measured with candle's gemm on 2 cores, conv2 of `s5-cnn`): one wide matmul
//! `[out_ch, in_ch·k²] · [in_ch·k², batch·oh·ow]` beat 64 per-image matmuls by 1.4–1.7x in
//! each of the three products (forward, weight gradient, input gradient); the price is one
//! transposition between `[batch, out_ch, n]` and `[out_ch, batch·n]` each way, which we fuse
//! with the bias add (forward) and the bias gradient (backward). Where the column matrix of
//! the whole batch is large ([`CHUNK_BYTES`]), the forward product and the input gradient run
//! over pieces of several images instead, with the same values bit for bit.
//!
//! Layers with a 3×3 kernel, stride 1 and at least 16 input channels (most of a ResNet's, the
//! later layers of the CNNs) take Winograd's F(4×4, 3×3) instead (`winograd.rs`): all three
//! products with a quarter of the multiply-adds, equal to this path's values up to rounding
//! (the tests below check both paths against candle's own convolution). Their backward pass is
//! one op for both gradients ([`WinogradGrads`]), which reuses what a fused block's forward
//! pass kept.

use std::sync::Arc;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use rayon::prelude::*;

use super::winograd::{Kept, Layer, Wanted};
use super::{OpError, f32_data, min_items, out_size};

/// Geometry of a convolution over a `[batch, in_ch, h, w]` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Geom {
    pub(super) batch: usize,
    pub(super) in_ch: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kernel: usize,
    pub(super) stride: usize,
    pub(super) padding: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(
        op: &'static str,
        (batch, in_ch, h, w): (usize, usize, usize, usize),
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        Ok(Self {
            batch,
            in_ch,
            h,
            w,
            kernel,
            stride,
            padding,
            oh: out_size(op, h, kernel, stride, padding)?,
            ow: out_size(op, w, kernel, stride, padding)?,
        })
    }

    /// Rows of the column matrix: `in_ch·kernel²`.
    fn rows(&self) -> usize {
        self.in_ch * self.kernel * self.kernel
    }

    /// Output positions per image: `oh·ow`.
    pub(super) fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Values of one input image: `in_ch·h·w`.
    pub(super) fn image_len(&self) -> usize {
        self.in_ch * self.h * self.w
    }

    /// The pieces `(first image, images)` of the forward product and the input gradient: as
    /// many images as keep one piece's column matrix within `limit` bytes, spread evenly, but
    /// each with more than 64 columns (gemm treats products of at most 64x64 as small and
    /// blocks their inner dimension differently, which would change the rounding).
    fn pieces(&self, limit: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (batch, n) = (self.batch, self.positions().max(1));
        let per_image = self.rows() * n * std::mem::size_of::<f32>();
        let images = (limit / per_image.max(1)).max(65usize.div_ceil(n));
        let count = (batch / images.max(1)).max(1);
        (0..count).map(move |i| {
            let (lo, hi) = (i * batch / count, (i + 1) * batch / count);
            (lo, hi - lo)
        })
    }

    /// The same geometry over `batch` images (one piece of a chunked product).
    pub(super) fn with_batch(self, batch: usize) -> Self {
        Self { batch, ..self }
    }

    /// The output columns `[lo, hi)` whose input column `ow·stride + kj − padding` lies inside
    /// the image.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let lo = self.padding.saturating_sub(kj).div_ceil(self.stride);
        let hi = (self.w + self.padding)
            .saturating_sub(kj)
            .div_ceil(self.stride)
            .min(self.ow);
        (lo, hi.max(lo))
    }

    /// Decodes a column-matrix row into `(channel, ki, kj)`.
    fn tap(&self, row: usize) -> (usize, usize, usize) {
        let kk = self.kernel * self.kernel;
        (row / kk, row % kk / self.kernel, row % self.kernel)
    }

    /// The input row of output row `oh` for kernel row `ki`, if inside the image.
    fn in_row(&self, oh: usize, ki: usize) -> Option<usize> {
        (oh * self.stride + ki)
            .checked_sub(self.padding)
            .filter(|&r| r < self.h)
    }
}

/// Copies the `(ki, kj)` tap of one input plane into a pre-zeroed segment of `oh·ow` columns.
fn im2col_segment(g: &Geom, plane: &[f32], ki: usize, kj: usize, dst: &mut [f32]) {
    let (lo, hi) = g.valid_cols(kj);
    if lo == hi {
        return;
    }
    for (oh, drow) in dst.chunks_exact_mut(g.ow).enumerate() {
        let Some(ih) = g.in_row(oh, ki) else { continue };
        let srow = &plane[ih * g.w..(ih + 1) * g.w];
        let start = lo * g.stride + kj - g.padding;
        if g.stride == 1 {
            drow[lo..hi].copy_from_slice(&srow[start..start + hi - lo]);
        } else {
            for (d, s) in drow[lo..hi]
                .iter_mut()
                .zip(srow[start..].iter().step_by(g.stride))
            {
                *d = *s;
            }
        }
    }
}

/// Adds a segment of `oh·ow` column gradients back onto the `(ki, kj)` taps of one plane.
fn col2im_segment(g: &Geom, src: &[f32], ki: usize, kj: usize, plane: &mut [f32]) {
    let (lo, hi) = g.valid_cols(kj);
    if lo == hi {
        return;
    }
    for (oh, srow) in src.chunks_exact(g.ow).enumerate() {
        let Some(ih) = g.in_row(oh, ki) else { continue };
        let drow = &mut plane[ih * g.w..(ih + 1) * g.w];
        let start = lo * g.stride + kj - g.padding;
        if g.stride == 1 {
            for (d, s) in drow[start..start + hi - lo].iter_mut().zip(&srow[lo..hi]) {
                *d += *s;
            }
        } else {
            for (d, s) in drow[start..]
                .iter_mut()
                .step_by(g.stride)
                .zip(&srow[lo..hi])
            {
                *d += *s;
            }
        }
    }
}

/// `[batch, in_ch, h, w]` → columns `[in_ch·k², batch·oh·ow]`: row `(c, ki, kj)`, column
/// `(b, i, j)`.
fn im2col_cpu(g: &Geom, src: &[f32]) -> Vec<f32> {
    let (n, hw) = (g.positions(), g.h * g.w);
    let len = (g.batch * n).max(1);
    let mut dst = vec![0f32; g.rows() * g.batch * n];
    dst.par_chunks_exact_mut(len)
        .enumerate()
        .with_min_len(min_items(len))
        .for_each(|(row, dst_row)| {
            let (c, ki, kj) = g.tap(row);
            for (b, seg) in dst_row.chunks_exact_mut(n.max(1)).enumerate() {
                let plane = &src[(b * g.in_ch + c) * hw..][..hw];
                im2col_segment(g, plane, ki, kj, seg);
            }
        });
    dst
}

/// Columns `[in_ch·k², batch·oh·ow]` → scatter-added onto the zeroed images `dst`
/// (`[batch, in_ch, h, w]`).
fn col2im_into(g: &Geom, cols: &[f32], dst: &mut [f32]) {
    let (n, hw) = (g.positions(), g.h * g.w);
    dst.par_chunks_exact_mut(hw.max(1))
        .enumerate()
        .with_min_len(min_items(hw * g.kernel * g.kernel))
        .for_each(|(bc, plane)| {
            let (b, c) = (bc / g.in_ch, bc % g.in_ch);
            for ki in 0..g.kernel {
                for kj in 0..g.kernel {
                    let row = (c * g.kernel + ki) * g.kernel + kj;
                    let seg = &cols[(row * g.batch + b) * n..][..n];
                    col2im_segment(g, seg, ki, kj, plane);
                }
            }
        });
}

/// What [`to_images`] does to each value on the way.
#[derive(Debug, Clone, Copy)]
pub(super) enum OnTheWay<'a> {
    /// Nothing: a copy.
    Copy,
    /// Adds the channel's bias.
    Bias(&'a [f32]),
    /// ReLU, `max(v, 0)`.
    Relu,
}

/// Channel-major `[out_ch, batch·n]` → images `[batch, out_ch, n]`, image by image in
/// parallel, with a per-channel bias or a ReLU on the way: the one transposition out of the
/// matmul's layout, for [`conv2d`] and the fused blocks.
pub(super) fn to_images(
    cm: &[f32],
    batch: usize,
    out_ch: usize,
    n: usize,
    on_the_way: OnTheWay<'_>,
) -> Vec<f32> {
    let mut y = vec![0f32; cm.len()];
    let len = (out_ch * n).max(1);
    y.par_chunks_exact_mut(len)
        .enumerate()
        .with_min_len(min_items(len))
        .for_each(|(b, image)| {
            for (o, dst) in image.chunks_exact_mut(n.max(1)).enumerate() {
                let src = &cm[(o * batch + b) * n..][..n];
                match on_the_way {
                    OnTheWay::Copy => dst.copy_from_slice(src),
                    OnTheWay::Bias(bias) => {
                        let bo = bias[o];
                        dst.iter_mut().zip(src).for_each(|(d, v)| *d = v + bo);
                    }
                    OnTheWay::Relu => dst.iter_mut().zip(src).for_each(|(d, v)| *d = v.max(0.0)),
                }
            }
        });
    y
}

/// `lhs · rhs` with candle's CPU matmul (gemm, multithreaded); the layouts may transpose.
fn gemm(
    op: &'static str,
    lhs: (&CpuStorage, &Layout),
    rhs: (&CpuStorage, &Layout),
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>> {
    batched_gemm(op, lhs, rhs, (1, m, n, k))
}

/// `b` products `lhs[i] · rhs[i]` of `[b, m, k]` and `[b, k, n]` operands (any row, column
/// and batch strides) as `[b, m, n]`, with candle's CPU matmul.
pub(super) fn batched_gemm(
    op: &'static str,
    (lhs, lhs_l): (&CpuStorage, &Layout),
    (rhs, rhs_l): (&CpuStorage, &Layout),
    bmnk: (usize, usize, usize, usize),
) -> Result<Vec<f32>> {
    match lhs.matmul(rhs, bmnk, lhs_l, rhs_l)? {
        CpuStorage::F32(v) => Ok(v),
        other => Err(candle_core::Error::wrap(OpError::DType {
            op,
            got: other.dtype(),
        })),
    }
}

/// Bytes of column matrix that one piece of the forward product or of the input gradient
/// handles at a time. Whole-batch column matrices of the early ResNet layers run to 115 MB
/// (`[576, 64·784]`), those of 500-image evaluation batches to 900 MB; in pieces of a few
/// images the peak memory is lower, at the same training speed in steady state
/// (`bench/README.md`). Every output value is the same sum in the same order either way
/// (gemm blocks the inner dimension by its length alone), so results are bit-identical to one
/// whole-batch product.
const CHUNK_BYTES: usize = 8 << 20;

/// `W · im2col(x)` as `[out_ch, batch·oh·ow]`, in pieces of whole images whose column
/// matrices stay within `limit` bytes.
fn forward_product(
    op: &'static str,
    g: &Geom,
    x: &[f32],
    (ws, w_l): (&CpuStorage, &Layout),
    limit: usize,
) -> Result<Vec<f32>> {
    let (k, n, out_ch) = (g.rows(), g.positions(), w_l.dims()[0]);
    let bn = g.batch * n;
    let mut pieces = g.pieces(limit).peekable();
    if let Some(&(_, images)) = pieces.peek()
        && images == g.batch
    {
        let cols = CpuStorage::F32(im2col_cpu(g, x));
        return gemm(
            op,
            (ws, w_l),
            (&cols, &Layout::contiguous((k, bn))),
            (out_ch, bn, k),
        );
    }
    let mut yt = vec![0f32; out_ch * bn];
    for (b0, images) in pieces {
        let piece = g.with_batch(images);
        let cn = images * n;
        let x_piece = &x[b0 * g.image_len()..][..images * g.image_len()];
        let cols = CpuStorage::F32(im2col_cpu(&piece, x_piece));
        let part = gemm(
            op,
            (ws, w_l),
            (&cols, &Layout::contiguous((k, cn))),
            (out_ch, cn, k),
        )?;
        yt.par_chunks_exact_mut(bn.max(1))
            .zip(part.par_chunks_exact(cn.max(1)))
            .with_min_len(min_items(cn))
            .for_each(|(dst, src)| dst[b0 * n..][..cn].copy_from_slice(src));
    }
    Ok(yt)
}

/// `dx = col2im(Wᵀ · g)` (`Wᵀ` given as the layout `wt_l` over `ws`, `g` channel-major
/// `[out_ch, batch·n]` at `gl`), in pieces of whole images as [`forward_product`].
fn input_grad(
    op: &'static str,
    geom: &Geom,
    (ws, wt_l): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    limit: usize,
) -> Result<Vec<f32>> {
    let (k, n, out_ch) = (geom.rows(), geom.positions(), wt_l.dims()[1]);
    let bn = geom.batch * n;
    let mut dx = vec![0f32; geom.batch * geom.image_len()];
    for (b0, images) in geom.pieces(limit) {
        let piece = geom.with_batch(images);
        let cn = images * n;
        // The piece's columns of g: a view with g's row stride.
        let g_l = Layout::new((out_ch, cn).into(), vec![bn, 1], gl.start_offset() + b0 * n);
        let dcols = gemm(op, (ws, wt_l), (gs, &g_l), (k, cn, out_ch))?;
        let dst = &mut dx[b0 * geom.image_len()..][..images * geom.image_len()];
        col2im_into(&piece, &dcols, dst);
    }
    Ok(dx)
}

/// Sum of a slice in eight independent lanes (a plain `iter().sum()` is one serial chain of
/// float adds, which the compiler may not reorder into SIMD).
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        lanes.iter_mut().zip(c).for_each(|(l, x)| *l += x);
    }
    lanes.iter().sum::<f32>() + tail
}

/// The data of a contiguous `f32` argument with its dims, checked to have `rank` dims.
fn arg<'a>(
    op: &'static str,
    what: &str,
    storage: &'a CpuStorage,
    layout: &'a Layout,
    rank: usize,
) -> Result<(&'a [f32], &'a [usize])> {
    let data = f32_data(op, storage, layout)?;
    if layout.dims().len() != rank {
        return Err(OpError::shape(
            op,
            format!("{what} {:?} should have rank {rank}", layout.dims()),
        ));
    }
    Ok((data, layout.dims()))
}

/// The convolution forward: `(x, weight, bias) → y`. Backward: [`ChannelMajor`] on `dy`, then
/// [`ConvWeightGrad`], [`ConvInputGrad`] (for a Winograd layer [`WinogradGrads`], both in one)
/// and a row sum for the bias.
pub(super) struct Conv {
    pub(super) stride: usize,
    pub(super) padding: usize,
}

impl Conv {
    pub(super) const NAME: &'static str = "conv2d";

    pub(super) fn geom(&self, x: &[usize], w: &[usize]) -> Result<Geom> {
        if x.len() != 4 || w.len() != 4 || w[1] != x[1] || w[2] != w[3] {
            return Err(OpError::shape(
                Self::NAME,
                format!("weight {w:?} does not fit input {x:?} (need [out_ch, in_ch, k, k])"),
            ));
        }
        Geom::new(
            Self::NAME,
            (x[0], x[1], x[2], x[3]),
            w[2],
            self.stride,
            self.padding,
        )
    }
}

/// A convolution's forward product, from [`Conv::product`].
pub(super) struct Product<'a> {
    /// `W · im2col(x)` as `[out_ch, batch·oh·ow]` (no bias).
    pub(super) yt: Vec<f32>,
    /// The geometry.
    pub(super) geom: Geom,
    /// The per-channel parameters: `groups` vectors of `out_ch` values (the bias first).
    pub(super) params: &'a [f32],
    /// What a Winograd layer kept for its backward pass, when asked to.
    pub(super) kept: Option<Kept>,
}

impl Conv {
    /// Checks the arguments of a forward pass and computes `W · im2col(x)` as
    /// `[out_ch, batch·oh·ow]` (no bias): the product shared by [`conv2d`] and the fused
    /// block. Returns it with the geometry and the per-channel parameters: `groups` vectors of
    /// `out_ch` values one after the other (the bias first), e.g. `[bias; gamma; beta]` for a
    /// block with batch normalisation; with `keep`, a Winograd layer also returns what
    /// [`grads`] can reuse.
    pub(super) fn product<'a>(
        &self,
        op: &'static str,
        (xs, xl): (&'a CpuStorage, &'a Layout),
        (ws, wl): (&'a CpuStorage, &'a Layout),
        (bs, bl): (&'a CpuStorage, &'a Layout),
        (groups, keep): (usize, bool),
    ) -> Result<Product<'a>> {
        let (x, xd) = arg(op, "input", xs, xl, 4)?;
        let (_, wd) = arg(op, "weight", ws, wl, 4)?;
        let (bias, bd) = arg(op, "bias", bs, bl, 1)?;
        let g = self.geom(xd, wd)?;
        let out_ch = wd[0];
        if bd != [groups * out_ch] {
            return Err(OpError::shape(
                op,
                format!("per-channel parameters {bd:?}, expected [{groups}·{out_ch}]"),
            ));
        }
        let w_l = Layout::contiguous_with_offset((out_ch, g.rows()), wl.start_offset());
        let (yt, kept) = match Layer::for_conv(op, &g, out_ch) {
            Some(layer) => layer.forward(x, f32_data(op, ws, &w_l)?, keep)?,
            None => (forward_product(op, &g, x, (ws, &w_l), CHUNK_BYTES)?, None),
        };
        Ok(Product {
            yt,
            geom: g,
            params: bias,
            kept,
        })
    }
}

impl CustomOp3 for Conv {
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
        let Product {
            yt,
            geom: g,
            params: bias,
            ..
        } = self.product(Self::NAME, (xs, xl), (ws, wl), (bs, bl), (1, false))?;
        let out_ch = bias.len();
        let y = to_images(&yt, g.batch, out_ch, g.positions(), OnTheWay::Bias(bias));
        Ok((CpuStorage::F32(y), (g.batch, out_ch, g.oh, g.ow).into()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let geom = self.geom(x.dims(), w.dims())?;
        // dy as [out_ch, batch·n], shared by all three gradients.
        let g = grad_res.contiguous()?.apply_op1_no_bwd(&ChannelMajor)?;
        grads(geom, (x, w, b), &g, None)
    }
}

/// The gradients of a convolution's input, weight and bias from its channel-major output
/// gradient `g` (`[out_ch, batch·oh·ow]`), each only for a tracked argument; a Winograd layer
/// reuses what its forward pass `kept`, if anything.
pub(super) fn grads(
    geom: Geom,
    (x, w, b): (&Tensor, &Tensor, &Tensor),
    g: &Tensor,
    kept: Option<Arc<Kept>>,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let db = if b.track_op() {
        Some(g.apply_op1_no_bwd(&RowSum)?)
    } else {
        None
    };
    if let Some(layer) = Layer::for_conv(WinogradGrads::NAME, &geom, w.dim(0)?) {
        let wanted = Wanted {
            input: x.track_op(),
            weight: w.track_op(),
        };
        if !(wanted.input || wanted.weight) {
            return Ok((None, None, db));
        }
        let op = WinogradGrads {
            layer,
            kept,
            wanted,
        };
        let both = x.apply_op3_no_bwd(w, g, &op)?;
        let dx_len = if wanted.input { x.elem_count() } else { 0 };
        let dx = wanted
            .input
            .then(|| both.narrow(0, 0, dx_len)?.reshape(x.shape()))
            .transpose()?;
        let dw = wanted
            .weight
            .then(|| both.narrow(0, dx_len, w.elem_count())?.reshape(w.shape()))
            .transpose()?;
        return Ok((dx, dw, db));
    }
    let dx = if x.track_op() {
        Some(w.apply_op2_no_bwd(g, &ConvInputGrad { geom })?)
    } else {
        None
    };
    let dw = if w.track_op() {
        Some(x.apply_op2_no_bwd(g, &ConvWeightGrad { geom })?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// `(x, weight, g) → [dx; dW]` of a Winograd layer, `g` the channel-major output gradient:
/// both gradients from one transform of `g` per piece (see [`Layer::grads`]), flattened one
/// after the other into one tensor (only the wanted ones).
struct WinogradGrads {
    layer: Layer,
    kept: Option<Arc<Kept>>,
    wanted: Wanted,
}

impl WinogradGrads {
    const NAME: &'static str = "conv2d-winograd-grads";
}

impl CustomOp3 for WinogradGrads {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (op, g, out_ch) = (Self::NAME, &self.layer.geom, self.layer.out_ch);
        let (x, xd) = arg(op, "input", xs, xl, 4)?;
        let (w, wd) = arg(op, "weight", ws, wl, 4)?;
        let (dy, gd) = arg(op, "output gradient", gs, gl, 2)?;
        check_grad(op, g, out_ch, gd)?;
        if xd != [g.batch, g.in_ch, g.h, g.w] || wd != [out_ch, g.in_ch, 3, 3] {
            return Err(OpError::shape(
                op,
                format!("input {xd:?} or weight {wd:?} does not fit {out_ch} channels of {g:?}"),
            ));
        }
        let out = self
            .layer
            .grads((x, w, dy), self.kept.as_deref(), self.wanted)?;
        let len = out.len();
        Ok((CpuStorage::F32(out), len.into()))
    }
}

/// `[batch, out_ch, oh, ow] → [out_ch, batch·oh·ow]`.
struct ChannelMajor;

impl CustomOp1 for ChannelMajor {
    fn name(&self) -> &'static str {
        "conv2d-channel-major"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (dy, d) = arg(self.name(), "output gradient", storage, layout, 4)?;
        let (batch, out_ch, n) = (d[0], d[1], d[2] * d[3]);
        let mut g = vec![0f32; dy.len()];
        let len = (batch * n).max(1);
        g.par_chunks_exact_mut(len)
            .enumerate()
            .with_min_len(min_items(len))
            .for_each(|(o, row)| {
                for (b, dst) in row.chunks_exact_mut(n.max(1)).enumerate() {
                    dst.copy_from_slice(&dy[(b * out_ch + o) * n..][..n]);
                }
            });
        Ok((CpuStorage::F32(g), (out_ch, batch * n).into()))
    }
}

/// `[rows, cols] → [rows]`, the sum of each row.
struct RowSum;

impl CustomOp1 for RowSum {
    fn name(&self) -> &'static str {
        "conv2d-bias-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (g, d) = arg(self.name(), "gradient", storage, layout, 2)?;
        let sums: Vec<f32> = g
            .par_chunks_exact(d[1].max(1))
            .with_min_len(min_items(d[1]))
            .map(sum)
            .collect();
        Ok((CpuStorage::F32(sums), d[0].into()))
    }
}

/// Checks a channel-major output gradient `[out_ch, batch·n]` against the geometry.
fn check_grad(op: &'static str, g: &Geom, out_ch: usize, dims: &[usize]) -> Result<()> {
    if dims != [out_ch, g.batch * g.positions()] {
        return Err(OpError::shape(
            op,
            format!("output gradient {dims:?} does not fit {out_ch} channels of {g:?}"),
        ));
    }
    Ok(())
}

/// `(weight, g) → dx = col2im(Wᵀ · g)`, `g` the channel-major output gradient.
struct ConvInputGrad {
    geom: Geom,
}

impl CustomOp2 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        ws: &CpuStorage,
        wl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (op, g) = (self.name(), &self.geom);
        let (_, wd) = arg(op, "weight", ws, wl, 4)?;
        let (_, gd) = arg(op, "output gradient", gs, gl, 2)?;
        let (k, out_ch) = (g.rows(), wd[0]);
        check_grad(op, g, out_ch, gd)?;
        // Wᵀ as [k, out_ch]: a transposed view of the weight.
        let wt_l = Layout::new((k, out_ch).into(), vec![1, k], wl.start_offset());
        let dx = input_grad(op, g, (ws, &wt_l), (gs, gl), CHUNK_BYTES)?;
        Ok((CpuStorage::F32(dx), (g.batch, g.in_ch, g.h, g.w).into()))
    }
}

/// `(x, g) → dW = g · im2col(x)ᵀ`, `g` the channel-major output gradient.
struct ConvWeightGrad {
    geom: Geom,
}

impl CustomOp2 for ConvWeightGrad {
    fn name(&self) -> &'static str {
        "conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (op, g) = (self.name(), &self.geom);
        let (x, xd) = arg(op, "input", xs, xl, 4)?;
        let (_, gd) = arg(op, "output gradient", gs, gl, 2)?;
        let (k, bn, out_ch) = (g.rows(), g.batch * g.positions(), gd[0]);
        check_grad(op, g, out_ch, gd)?;
        if xd != [g.batch, g.in_ch, g.h, g.w] {
            return Err(OpError::shape(
                op,
                format!("input {xd:?} does not fit {g:?}"),
            ));
        }
        let cols = CpuStorage::F32(im2col_cpu(g, x));
        let order = WeightGradOrder::for_channels(out_ch);
        let dw = weight_grad(op, (&cols, (k, bn)), (gs, gl, out_ch), order)?;
        Ok((
            CpuStorage::F32(dw),
            (out_ch, g.in_ch, g.kernel, g.kernel).into(),
        ))
    }
}

/// Which way round [`weight_grad`] multiplies. Both give the same values bit for bit (each
/// weight gradient is the same sum of the same products in the same order); which is faster
/// depends on the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightGradOrder {
    /// `dW = g · colsᵀ`, `[out_ch, k]` directly.
    Direct,
    /// `dWᵀ = cols · gᵀ` as `[k, out_ch]`, then transposed (small). gemm packs the long
    /// column matrix as its left operand here; for up to 128 output channels of the zoo's
    /// layers this was mostly faster than [`Self::Direct`] (up to 2x), at 256 slower
    /// (`cargo run --release -p trainer --example weight_grad_orders`, `bench/README.md`).
    Transposed,
}

impl WeightGradOrder {
    /// The faster order for a layer of `out_ch` output channels.
    fn for_channels(out_ch: usize) -> Self {
        if out_ch <= 128 {
            Self::Transposed
        } else {
            Self::Direct
        }
    }
}

/// `dW = g · colsᵀ` as `[out_ch, k]`, from the columns `[k, bn]` and the channel-major output
/// gradient `g` (`[out_ch, bn]` at `gl`), multiplied in the given order.
fn weight_grad(
    op: &'static str,
    (cols, (k, bn)): (&CpuStorage, (usize, usize)),
    (gs, gl, out_ch): (&CpuStorage, &Layout, usize),
    order: WeightGradOrder,
) -> Result<Vec<f32>> {
    match order {
        WeightGradOrder::Direct => {
            // im2col(x)ᵀ as [bn, k]: a transposed view of the columns.
            let cols_t = Layout::new((bn, k).into(), vec![1, bn], 0);
            gemm(op, (gs, gl), (cols, &cols_t), (out_ch, k, bn))
        }
        WeightGradOrder::Transposed => {
            // gᵀ as [bn, out_ch]: a transposed view of the gradient.
            let g_t = Layout::new((bn, out_ch).into(), vec![1, bn], gl.start_offset());
            let dw_t = gemm(
                op,
                (cols, &Layout::contiguous((k, bn))),
                (gs, &g_t),
                (k, out_ch, bn),
            )?;
            let mut dw = vec![0f32; out_ch * k];
            for (j, row) in dw_t.chunks_exact(out_ch.max(1)).enumerate() {
                for (o, &v) in row.iter().enumerate() {
                    dw[o * k + j] = v;
                }
            }
            Ok(dw)
        }
    }
}

/// 2-D convolution with optional bias, square kernel, no dilation, one group.
///
/// `y[b, o, i, j] = bias[o] + Σ_{c, ki, kj} weight[o, c, ki, kj] ·
/// x[b, c, i·stride + ki − padding, j·stride + kj − padding]` (zero outside the image),
/// computed as the matmul `W · im2col(x)` over the whole batch (in pieces of images when its
/// columns are large), with
/// `W = weight.reshape((out_ch, in_ch·k²))` and
/// `im2col(x)[(c·k + ki)·k + kj, (b·oh + i)·ow + j] = x[b, c, i·stride + ki − padding, …]`.
/// Backward, with `g = dy` as `[out_ch, batch·oh·ow]`: `dW = g · im2col(x)ᵀ`, `db` = row sums
/// of `g`, `dx = col2im(Wᵀ · g)` (the scatter-add of the column gradient onto the image) —
/// each only for arguments that are tracked, so a network's first conv skips `dx`. Same values
/// as candle's `x.conv2d(weight, padding, stride, 1, 1)` plus bias.
///
/// # Shapes
/// - `x`: `[batch, in_ch, h, w]`, `f32`
/// - `weight`: `[out_ch, in_ch, kernel, kernel]`
/// - `bias`: `[out_ch]`
/// - returns `[batch, out_ch, oh, ow]`, `oh = (h + 2·padding − kernel)/stride + 1` (same for
///   `ow`)
///
/// # Example
/// ```
/// use candle_core::{Device, Tensor};
/// // 1x1x3x3 image, one 2x2 kernel of ones, bias 0.5: each output is its window's sum + 0.5.
/// let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let b = Tensor::new(&[0.5f32], &Device::Cpu)?;
/// let y = trainer::ops::conv2d(&x, &w, Some(&b), 1, 0)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8.5, 12.5, 20.5, 24.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => Tensor::zeros(weight.dim(0)?, x.dtype(), x.device())?,
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias, Conv { stride, padding })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::{
        assert_close, assert_same_grads, grads_of, random, random_var, values,
    };

    #[test]
    fn tiny_case_by_hand() {
        // x = [[1, 2], [3, 4]], padding 1, kernel 2 of [[1, 10], [100, 1000]]: each output is
        // the dot product of the kernel with one 2x2 window of the zero-padded 4x4 image.
        let dev = candle_core::Device::Cpu;
        let x = Tensor::new(&[[[[1f32, 2.], [3., 4.]]]], &dev).unwrap();
        let w = Tensor::new(&[[[[1f32, 10.], [100., 1000.]]]], &dev).unwrap();
        let y = conv2d(&x, &w, None, 1, 1).unwrap();
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(y, [1000., 2100., 200., 3010., 4321., 402., 30., 43., 4.]);
    }

    /// `(input dims, out_ch, kernel, stride, padding)`.
    type Case = ((usize, usize, usize, usize), usize, usize, usize, usize);

    /// Shapes like our networks' (small batch), over kernels 2, 3, 5, padding 0..2, stride 1, 2;
    /// the last two take the Winograd path (3x3, stride 1, 16+ input channels).
    const CASES: [Case; 10] = [
        ((3, 2, 8, 8), 4, 3, 1, 1),
        ((3, 3, 10, 10), 5, 3, 1, 0),
        ((3, 5, 12, 12), 3, 5, 1, 0),
        ((3, 4, 12, 12), 6, 5, 1, 1),
        ((3, 2, 11, 11), 4, 3, 2, 1),
        ((3, 3, 9, 9), 2, 2, 2, 0),
        ((3, 2, 12, 12), 3, 5, 2, 2),
        ((3, 1, 28, 28), 8, 3, 1, 1),
        ((2, 16, 9, 9), 4, 3, 1, 1),
        ((2, 24, 7, 7), 5, 3, 1, 0),
    ];

    #[test]
    fn matches_candle_conv2d_forward_and_gradients() {
        for ((b, c, h, w), out_ch, kernel, stride, padding) in CASES {
            let what = format!("{b}x{c}x{h}x{w} -> {out_ch}, k{kernel} s{stride} p{padding}");
            let x = random_var(&[b, c, h, w], 1);
            let wt = random_var(&[out_ch, c, kernel, kernel], 2);
            let bias = random_var(&[out_ch], 3);
            let ours = conv2d(&x, &wt, Some(&bias), stride, padding).unwrap();
            let stock = x
                .conv2d(&wt, padding, stride, 1, 1)
                .unwrap()
                .broadcast_add(&bias.reshape((1, out_ch, 1, 1)).unwrap())
                .unwrap();
            assert_close(&ours, &stock, 1e-5, &format!("{what}: forward"));
            let vars = [("x", &x), ("weight", &wt), ("bias", &bias)];
            assert_same_grads(&ours, &stock, &vars, 4, 1e-4, &what);
        }
    }

    #[test]
    fn without_bias_and_untracked_input() {
        // The image batch is not a variable: no input gradient is computed or stored.
        let x = random(&[2, 1, 8, 8], 5);
        let wt = random_var(&[3, 1, 3, 3], 6);
        let y = conv2d(&x, &wt, None, 1, 1).unwrap();
        let stock = x.conv2d(&wt, 1, 1, 1, 1).unwrap();
        assert_close(&y, &stock, 1e-5, "forward");
        let (go, gs) = (grads_of(&y, 7), grads_of(&stock, 7));
        assert!(go.get(&x).is_none());
        assert_close(go.get(&wt).unwrap(), gs.get(&wt).unwrap(), 1e-4, "dweight");
    }

    #[test]
    fn products_in_pieces_equal_the_whole_batch_product_bit_for_bit() {
        // 64 input channels: 576 column rows, which gemm splits into two blocks of its inner
        // dimension, as in the real layers.
        let (batch, in_ch, out_ch, side) = (7, 64, 12, 9);
        let x = values(&[batch, in_ch, side, side], 1);
        let ws = CpuStorage::F32(values(&[out_ch, in_ch, 3, 3], 2));
        for (stride, padding) in [(1, 1), (2, 1), (1, 0)] {
            let g = Geom::new("test", (batch, in_ch, side, side), 3, stride, padding).unwrap();
            let (k, bn) = (g.rows(), batch * g.positions());
            let w_l = Layout::contiguous((out_ch, k));
            let wt_l = Layout::new((k, out_ch).into(), vec![1, k], 0);
            let gs = CpuStorage::F32(values(&[out_ch, bn], 3));
            let g_l = Layout::contiguous((out_ch, bn));
            let whole_y = forward_product("test", &g, &x, (&ws, &w_l), usize::MAX).unwrap();
            let whole_dx = input_grad("test", &g, (&ws, &wt_l), (&gs, &g_l), usize::MAX).unwrap();
            let per_image = k * g.positions() * 4;
            // As few images per piece as allowed, pieces of 3 and 4, and everything at once.
            for limit in [0, 3 * per_image + 1, batch * per_image] {
                assert!(
                    forward_product("test", &g, &x, (&ws, &w_l), limit).unwrap() == whole_y,
                    "forward, stride {stride}, padding {padding}, limit {limit}"
                );
                assert!(
                    input_grad("test", &g, (&ws, &wt_l), (&gs, &g_l), limit).unwrap() == whole_dx,
                    "input gradient, stride {stride}, padding {padding}, limit {limit}"
                );
            }
        }
    }

    #[test]
    fn both_weight_gradient_orders_agree_bit_for_bit() {
        // Inner dimensions (batch·positions) from below gemm's small-product limit to several
        // of its blocks; 9 to 576 column rows; 3 to 130 output channels.
        for (out_ch, k, bn) in [(3, 9, 50), (16, 27, 700), (64, 576, 1300), (130, 288, 2100)] {
            let cols = CpuStorage::F32(values(&[k, bn], 5));
            let gs = CpuStorage::F32(values(&[out_ch, bn], 6));
            let gl = Layout::contiguous((out_ch, bn));
            let product =
                |order| weight_grad("test", (&cols, (k, bn)), (&gs, &gl, out_ch), order).unwrap();
            let direct = product(WeightGradOrder::Direct);
            let transposed = product(WeightGradOrder::Transposed);
            assert_eq!(direct.len(), out_ch * k);
            assert!(direct == transposed, "out_ch {out_ch}, k {k}, bn {bn}");
        }
    }

    #[test]
    fn rejects_mismatched_weight() {
        let x = random(&[1, 2, 8, 8], 1);
        let wt = random(&[3, 1, 3, 3], 2);
        let err = conv2d(&x, &wt, None, 1, 1).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
    }
}
