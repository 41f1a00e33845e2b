//! Winograd's minimal filtering F(m×m, 3×3) for the convolutions with 3×3 kernels and stride 1:
//! the forward product, the input gradient and the weight gradient of such a layer in `α²`
//! matmuls of `α = m + 2` transformed tiles each, instead of one matmul over `im2col` columns.
//!
//! A tile of `m×m` outputs needs an `α×α` patch `d` of the (zero-padded) input. With the
//! transforms `Bᵀ` (`α×α`), `G` (`α×3`) and `Aᵀ` (`m×α`) of Lavin and Gray's construction,
//!
//! `Y = Aᵀ [ Σ_c (G W[k,c] Gᵀ) ⊙ (Bᵀ d_c B) ] A`,
//!
//! so for each of the `α²` tile positions `ξ` the sum over input channels is one matmul
//! `M[ξ] = U[ξ] · V[ξ]` of the transformed weights `U[ξ]` (`[out_ch, in_ch]`) and the
//! transformed patches `V[ξ]` (`[in_ch, tiles]`). F(4×4, 3×3) does 36 products per 16 outputs
//! where the direct convolution does 144: a quarter of the multiply-adds (a little more where the
//! image side is not a multiple of 4).
//!
//! The backward pass follows from `Y` being bilinear in `U` and `V`: with `Ŷ = A dY Aᵀ` per tile
//! (`α×α`),
//!
//! - the patch gradients are `dV[ξ] = U[ξ]ᵀ · Ŷ[ξ]`, and `B dV Bᵀ` is scatter-added onto the
//!   input gradient (neighbouring patches overlap by two rows and columns);
//! - the weight gradients are `dU[ξ] = Ŷ[ξ] · V[ξ]ᵀ` (a sum over every tile of the batch), and
//!   `dW = Gᵀ dU G`.
//!
//! The results equal the `im2col` path's up to rounding (the transforms' constants are not
//! powers of two for F(4×4, 3×3)); the tests check all three against a direct convolution in
//! `f64`, and `conv.rs`'s against candle's. Each value is computed in the same order whatever
//! the thread count, so a run is as reproducible as before.
//!
//! A training forward pass keeps its transformed weights and input patches ([`Kept`]), and the
//! backward pass computes both gradients together ([`Layer::grads`]), so that no weight, input
//! or output gradient is transformed twice.

use candle_core::{CpuStorage, Layout, Result};
use rayon::prelude::*;

use super::conv::{Geom, batched_gemm};
use super::min_items;

/// One tile size of the algorithm: `M×M` outputs from an `A×A` input patch (`A = M + 2`), with
/// its three transforms.
trait Tile<const M: usize, const P: usize> {
    /// The input transform `Bᵀ`.
    const BT: [[f32; P]; P];
    /// The filter transform `G`.
    const G: [[f32; 3]; P];
    /// The output transform `Aᵀ`.
    const AT: [[f32; P]; M];
    /// `B`.
    const B: [[f32; P]; P] = transpose(Self::BT);
    /// `Gᵀ`.
    const GT: [[f32; P]; 3] = transpose(Self::G);
    /// `A`.
    const A: [[f32; M]; P] = transpose(Self::AT);
}

/// F(2×2, 3×3): 16 products per 4 outputs (direct: 36); transforms of 0, ±1 and ½. Only the
/// tests use it, as a second check of the generic transforms: on `s1-resnet18` it trained no
/// faster than F(4×4, 3×3) (fewer transform operations, 1.8x the multiply-adds).
#[cfg(test)]
struct F2;

#[cfg(test)]
impl Tile<2, 4> for F2 {
    const BT: [[f32; 4]; 4] = [
        [1., 0., -1., 0.],
        [0., 1., 1., 0.],
        [0., -1., 1., 0.],
        [0., 1., 0., -1.],
    ];
    const G: [[f32; 3]; 4] = [
        [1., 0., 0.],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0., 0., 1.],
    ];
    const AT: [[f32; 4]; 2] = [[1., 1., 1., 0.], [0., 1., -1., -1.]];
}

/// F(4×4, 3×3): 36 products per 16 outputs (direct: 144).
struct F4;

impl Tile<4, 6> for F4 {
    const BT: [[f32; 6]; 6] = [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ];
    const G: [[f32; 3]; 6] = [
        [1. / 4., 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6.],
        [1. / 24., -1. / 12., 1. / 6.],
        [0., 0., 1.],
    ];
    const AT: [[f32; 6]; 4] = [
        [1., 1., 1., 1., 1., 0.],
        [0., 1., -1., 2., -2., 0.],
        [0., 1., 1., 4., 4., 0.],
        [0., 1., -1., 8., -8., 1.],
    ];
}

const fn transpose<const R: usize, const C: usize>(a: [[f32; C]; R]) -> [[f32; R]; C] {
    let mut t = [[0f32; R]; C];
    let mut i = 0;
    while i < R {
        let mut j = 0;
        while j < C {
            t[j][i] = a[i][j];
            j += 1;
        }
        i += 1;
    }
    t
}

/// Tiles (or channels) transformed together, one per SIMD lane.
const L: usize = 8;

/// One value of `L` tiles.
type Lanes = [f32; L];

/// `acc += a · x` lane by lane; nothing for `a = 0` (most of the transforms' entries).
#[inline(always)]
fn madd(acc: &mut Lanes, a: f32, x: &Lanes) {
    if a != 0.0 {
        acc.iter_mut().zip(x).for_each(|(o, v)| *o += a * v);
    }
}

/// `a · d` of a constant matrix `a` and a matrix of lane vectors.
#[inline(always)]
fn left<const R: usize, const K: usize, const C: usize>(
    a: &[[f32; K]; R],
    d: &[[Lanes; C]; K],
) -> [[Lanes; C]; R] {
    let mut out = [[[0f32; L]; C]; R];
    for (orow, arow) in out.iter_mut().zip(a) {
        for (&x, drow) in arow.iter().zip(d) {
            for (o, v) in orow.iter_mut().zip(drow) {
                madd(o, x, v);
            }
        }
    }
    out
}

/// `d · b` of a matrix of lane vectors and a constant matrix `b`.
#[inline(always)]
fn right<const R: usize, const K: usize, const C: usize>(
    d: &[[Lanes; K]; R],
    b: &[[f32; C]; K],
) -> [[Lanes; C]; R] {
    let mut out = [[[0f32; L]; C]; R];
    for (orow, drow) in out.iter_mut().zip(d) {
        for (v, brow) in drow.iter().zip(b) {
            for (o, &x) in orow.iter_mut().zip(brow) {
                madd(o, x, v);
            }
        }
    }
    out
}

/// `dst[..count] = lanes[..count]`, as two vector moves for a full group (a `copy_from_slice`
/// of a run-time length is a call to `memmove`, which cost an eighth of a ResNet step).
#[inline(always)]
fn store(dst: &mut [f32], lanes: &Lanes, count: usize) {
    match <&mut Lanes>::try_from(&mut dst[..count]) {
        Ok(full) => *full = *lanes,
        Err(_) => dst
            .iter_mut()
            .zip(&lanes[..count])
            .for_each(|(d, v)| *d = *v),
    }
}

/// `lanes[..count] = src[..count]` (the lanes beyond stay as they are), as [`store`].
#[inline(always)]
fn load(lanes: &mut Lanes, src: &[f32], count: usize) {
    match <&Lanes>::try_from(&src[..count]) {
        Ok(full) => *lanes = *full,
        Err(_) => lanes
            .iter_mut()
            .zip(&src[..count])
            .for_each(|(d, v)| *d = *v),
    }
}

/// Runs `f` compiled for the widest SIMD instruction set this CPU has (AVX2 on x86-64 where
/// present; the crate itself is built for the baseline SSE2). Used around each parallel piece
/// of the transforms, whose lane loops then use 256-bit vectors. Plain multiplies and adds are
/// never fused, so the values are the same on every CPU.
#[inline(always)]
fn wide<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// The groups `(first, count)` of at most `L` consecutive items of `0..len`.
fn groups(len: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..len).step_by(L).map(move |t0| (t0, L.min(len - t0)))
}

/// Which tile size a layer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Variant {
    /// F(2×2, 3×3) (tests only).
    #[cfg(test)]
    F2,
    /// F(4×4, 3×3).
    F4,
}

/// The fewest input channels for which the Winograd path is used. A judgement, not measured
/// layer by layer: the `α²` matmuls' inner dimension is the input channel count, and below
/// this it is too thin for gemm's blocking (the first conv of a network has 1 to 3).
const MIN_IN_CH: usize = 16;

impl Variant {
    /// The variant for a convolution of geometry `g`, or `None` where the `im2col` path
    /// applies (a kernel other than 3×3, a stride other than 1, few input channels).
    pub(super) fn choose(g: &Geom) -> Option<Self> {
        (g.kernel == 3 && g.stride == 1 && g.padding <= 2 && g.in_ch >= MIN_IN_CH)
            .then_some(Self::F4)
    }
}

/// How many images one piece of a batch holds: as many as keep its transformed tiles (of the
/// wider side, input or output channels) within `bytes`, so that they are still in the cache
/// when the matmuls read them, but at least `min_tiles` tiles (columns of each matmul).
#[derive(Debug, Clone, Copy)]
pub(super) struct Pieces {
    bytes: usize,
    min_tiles: usize,
}

impl Pieces {
    /// The training ops' pieces: 4 MiB of tiles, at least 256 of them.
    pub(super) const DEFAULT: Self = Self {
        bytes: 4 << 20,
        min_tiles: 256,
    };
}

/// Tiles of a layer, or of a piece of its batch: `th×tw` tiles of `m×m` outputs per image.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// The geometry; its batch is the piece's.
    g: Geom,
    out_ch: usize,
    m: usize,
    th: usize,
    tw: usize,
    /// The piece's first column in a channel-major output (gradient) row.
    col0: usize,
    /// The length of a channel-major row: the whole batch's `batch·oh·ow`.
    row_len: usize,
}

impl Plan {
    fn new(g: &Geom, out_ch: usize, m: usize) -> Self {
        Self {
            g: *g,
            out_ch,
            m,
            th: g.oh.div_ceil(m),
            tw: g.ow.div_ceil(m),
            col0: 0,
            row_len: g.batch * g.positions(),
        }
    }

    /// The pieces of the batch, `(first image, plan of the piece)`, sized by `pieces` and
    /// spread evenly.
    fn pieces(&self, pieces: Pieces) -> impl Iterator<Item = (usize, Plan)> + use<> {
        let per_image = (self.th * self.tw).max(1);
        let channels = self.g.in_ch.max(self.out_ch).max(1);
        let bytes = per_image * (self.m + 2) * (self.m + 2) * channels * size_of::<f32>();
        let images = (pieces.bytes / bytes).max(pieces.min_tiles.div_ceil(per_image));
        let batch = self.g.batch;
        let count = (batch / images.max(1)).max(1);
        let whole = *self;
        (0..count).map(move |i| {
            let (lo, hi) = (i * batch / count, (i + 1) * batch / count);
            let piece = Plan {
                g: whole.g.with_batch(hi - lo),
                col0: lo * whole.g.positions(),
                ..whole
            };
            (lo, piece)
        })
    }

    /// Tiles of the whole batch.
    fn tiles(&self) -> usize {
        self.g.batch * self.th * self.tw
    }

    /// The `count` tiles from `first` on (tiles are numbered image by image, row by row), as
    /// `(image, tile row, tile column)`.
    fn tiles_from(
        &self,
        first: usize,
        count: usize,
    ) -> impl Iterator<Item = (usize, usize, usize)> + use<> {
        let (th, tw) = (self.th, self.tw);
        let start = (first / (th * tw), first / tw % th, first % tw);
        std::iter::successors(Some(start), move |&(b, ty, tx)| {
            Some(if tx + 1 < tw {
                (b, ty, tx + 1)
            } else if ty + 1 < th {
                (b, ty + 1, 0)
            } else {
                (b + 1, 0, 0)
            })
        })
        .take(count)
    }

    /// Where the input patch of tile `(ty, tx)` starts, if it lies wholly inside the image
    /// (no padding to fill in).
    fn inner_patch(&self, ty: usize, tx: usize, side: usize) -> Option<(usize, usize)> {
        let r0 = (ty * self.m).checked_sub(self.g.padding)?;
        let c0 = (tx * self.m).checked_sub(self.g.padding)?;
        (r0 + side <= self.g.h && c0 + side <= self.g.w).then_some((r0, c0))
    }

    /// Whether every output of tile `(ty, tx)` lies inside the output image.
    fn inner_tile(&self, ty: usize, tx: usize) -> bool {
        (ty + 1) * self.m <= self.g.oh && (tx + 1) * self.m <= self.g.ow
    }

    /// Adds lane `l` of the `P×P` patch `d` of tile `(ty, tx)` onto its place in `plane`,
    /// leaving out what lies in the padding.
    #[inline(always)]
    fn add_patch<const P: usize>(
        &self,
        plane: &mut [f32],
        d: &[[Lanes; P]; P],
        l: usize,
        (ty, tx): (usize, usize),
    ) {
        let g = &self.g;
        if let Some((r0, c0)) = self.inner_patch(ty, tx, P) {
            for (i, drow) in d.iter().enumerate() {
                let dst = &mut plane[(r0 + i) * g.w + c0..][..P];
                dst.iter_mut().zip(drow).for_each(|(o, val)| *o += val[l]);
            }
            return;
        }
        for (i, drow) in d.iter().enumerate() {
            let Some(r) = self.input_at(ty, i, g.h) else {
                continue;
            };
            for (j, val) in drow.iter().enumerate() {
                if let Some(col) = self.input_at(tx, j, g.w) {
                    plane[r * g.w + col] += val[l];
                }
            }
        }
    }

    /// The input row (or column) of patch offset `i` in tile row (or column) `t`, if inside
    /// the image of side `side`.
    fn input_at(&self, t: usize, i: usize, side: usize) -> Option<usize> {
        (t * self.m + i)
            .checked_sub(self.g.padding)
            .filter(|&r| r < side)
    }
}

/// `G W Gᵀ` of every `(out_ch, in_ch)` kernel, as `[out_ch][α²][in_ch]`.
fn weights<const M: usize, const P: usize, T: Tile<M, P>>(p: &Plan, w: &[f32]) -> Vec<f32> {
    let (k, c) = (p.out_ch, p.g.in_ch);
    let mut u = vec![0f32; k * P * P * c];
    u.par_chunks_exact_mut((P * P * c).max(1))
        .enumerate()
        .for_each(|(ko, dst)| {
            wide(|| {
                for (c0, count) in groups(c) {
                    let mut kernel = [[[0f32; L]; 3]; 3];
                    for (l, ci) in (c0..c0 + count).enumerate() {
                        let src = &w[(ko * c + ci) * 9..][..9];
                        for (tap, &val) in src.iter().enumerate() {
                            kernel[tap / 3][tap % 3][l] = val;
                        }
                    }
                    let v = right(&left(&T::G, &kernel), &T::GT);
                    for (xi, lanes) in v.iter().flatten().enumerate() {
                        store(&mut dst[xi * c + c0..], lanes, count);
                    }
                }
            })
        });
    u
}

/// `Bᵀ d B` of every input patch, as `[in_ch][α²][tiles]`.
fn patches<const M: usize, const P: usize, T: Tile<M, P>>(p: &Plan, x: &[f32]) -> Vec<f32> {
    let (g, n) = (&p.g, p.tiles());
    let hw = g.h * g.w;
    let mut v = vec![0f32; g.in_ch * P * P * n];
    v.par_chunks_exact_mut((P * P * n).max(1))
        .enumerate()
        .for_each(|(ci, dst)| {
            wide(|| {
                for (t0, count) in groups(n) {
                    let mut d = [[[0f32; L]; P]; P];
                    for (l, (b, ty, tx)) in p.tiles_from(t0, count).enumerate() {
                        let plane = &x[(b * g.in_ch + ci) * hw..][..hw];
                        if let Some((r0, c0)) = p.inner_patch(ty, tx, P) {
                            for (i, row) in d.iter_mut().enumerate() {
                                let src = &plane[(r0 + i) * g.w + c0..][..P];
                                row.iter_mut().zip(src).for_each(|(val, &v)| val[l] = v);
                            }
                            continue;
                        }
                        for (i, row) in d.iter_mut().enumerate() {
                            let Some(r) = p.input_at(ty, i, g.h) else {
                                continue;
                            };
                            for (j, val) in row.iter_mut().enumerate() {
                                if let Some(c) = p.input_at(tx, j, g.w) {
                                    val[l] = plane[r * g.w + c];
                                }
                            }
                        }
                    }
                    let v = right(&left(&T::BT, &d), &T::B);
                    for (xi, lanes) in v.iter().flatten().enumerate() {
                        store(&mut dst[xi * n + t0..], lanes, count);
                    }
                }
            })
        });
    v
}

/// `A dY Aᵀ` of every output tile of the channel-major gradient `dy` (`[out_ch, batch·oh·ow]`),
/// as `[out_ch][α²][tiles]`; outputs beyond the image's edge count as zero.
fn grad_tiles<const M: usize, const P: usize, T: Tile<M, P>>(p: &Plan, dy: &[f32]) -> Vec<f32> {
    let (g, n) = (&p.g, p.tiles());
    let mut yh = vec![0f32; p.out_ch * P * P * n];
    yh.par_chunks_exact_mut((P * P * n).max(1))
        .enumerate()
        .with_min_len(min_items(P * P * n))
        .for_each(|(ko, dst)| {
            wide(|| {
                let row = &dy[ko * p.row_len + p.col0..][..g.batch * g.positions()];
                for (t0, count) in groups(n) {
                    let mut d = [[[0f32; L]; M]; M];
                    for (l, (b, ty, tx)) in p.tiles_from(t0, count).enumerate() {
                        let image = &row[b * g.positions()..][..g.positions()];
                        if p.inner_tile(ty, tx) {
                            for (i, drow) in d.iter_mut().enumerate() {
                                let src = &image[(ty * M + i) * g.ow + tx * M..][..M];
                                drow.iter_mut().zip(src).for_each(|(val, &v)| val[l] = v);
                            }
                            continue;
                        }
                        for (i, drow) in d.iter_mut().enumerate() {
                            let r = ty * M + i;
                            if r >= g.oh {
                                break;
                            }
                            for (j, val) in drow.iter_mut().enumerate() {
                                let c = tx * M + j;
                                if c >= g.ow {
                                    break;
                                }
                                val[l] = image[r * g.ow + c];
                            }
                        }
                    }
                    let v = right(&left(&T::A, &d), &T::AT);
                    for (xi, lanes) in v.iter().flatten().enumerate() {
                        store(&mut dst[xi * n + t0..], lanes, count);
                    }
                }
            })
        });
    yh
}

/// The `α²` products `lhs[ξ] · rhs[ξ]` (each `[rows, cols]`) of two batched operands, each
/// its values and a layout over them (`[α², rows, inner]`, `[α², inner, cols]`).
///
/// One matmul per `ξ`, the `α²` of them spread over the threads: on 2 threads this ran the
/// shapes of `s1-resnet18`'s layers 1.1–1.6x faster than one batched matmul, which splits
/// each small product between the threads (`bench/README.md`). Each product is the same
/// gemm call either way, so the values are the same bit for bit.
fn products(
    op: &'static str,
    (lhs, lhs_l): (&CpuStorage, Layout),
    (rhs, rhs_l): (&CpuStorage, Layout),
    (b, m, n, k): (usize, usize, usize, usize),
) -> Result<Vec<Vec<f32>>> {
    // gemm reads through the layouts: each operand must hold every position its layout names.
    for (data, layout) in [(lhs, &lhs_l), (rhs, &rhs_l)] {
        let len = data.as_slice::<f32>()?.len();
        let last: usize = layout
            .dims()
            .iter()
            .zip(layout.stride())
            .map(|(d, s)| d.saturating_sub(1) * s)
            .sum();
        if len <= last {
            return Err(super::OpError::shape(
                op,
                format!("{len} values do not hold the product operand {layout:?}"),
            ));
        }
    }
    let at = |l: &Layout, i: usize, rows: usize, cols: usize| {
        let stride = l.stride();
        let batch_stride = stride.first().copied().unwrap_or(0);
        Layout::new(
            (1, rows, cols).into(),
            stride.to_vec(),
            l.start_offset() + i * batch_stride,
        )
    };
    (0..b)
        .into_par_iter()
        .map(|i| {
            let (l, r) = (at(&lhs_l, i, m, k), at(&rhs_l, i, k, n));
            batched_gemm(op, (lhs, &l), (rhs, &r), (1, m, n, k))
        })
        .collect()
}

/// What a training forward pass keeps for [`Layer::grads`]: the transformed weights `U` and
/// the transformed input patches `V` of each piece of the batch, so that the backward pass
/// does not transform the same weight and input again.
pub(super) struct Kept {
    /// `U`, `[out_ch][α²][in_ch]`.
    u: CpuStorage,
    /// `V` of each piece, in order, `[in_ch][α²][tiles]`.
    v: Vec<CpuStorage>,
}

/// Which gradients [`Layer::grads`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Wanted {
    /// The input gradient.
    pub(super) input: bool,
    /// The weight gradient.
    pub(super) weight: bool,
}

/// One Winograd layer: what its three products need besides their tensors.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layer {
    /// The op, for errors.
    pub(super) op: &'static str,
    /// The tile size.
    pub(super) variant: Variant,
    /// How the batch is split.
    pub(super) pieces: Pieces,
    /// The convolution (3×3, stride 1).
    pub(super) geom: Geom,
    /// Output channels.
    pub(super) out_ch: usize,
}

impl Layer {
    /// The Winograd layer for a convolution of geometry `geom` (as [`Variant::choose`] picks,
    /// in [`Pieces::DEFAULT`]), or `None` where the `im2col` path applies.
    pub(super) fn for_conv(op: &'static str, geom: &Geom, out_ch: usize) -> Option<Self> {
        Variant::choose(geom).map(|variant| Self {
            op,
            variant,
            pieces: Pieces::DEFAULT,
            geom: *geom,
            out_ch,
        })
    }

    /// The forward product `W ⊛ x` as channel-major `[out_ch, batch·oh·ow]`, from `x`
    /// (`[batch, in_ch, h, w]`) and the weight (`[out_ch, in_ch, 3, 3]`); with `keep`, also
    /// what [`Self::grads`] can reuse.
    pub(super) fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        keep: bool,
    ) -> Result<(Vec<f32>, Option<Kept>)> {
        match self.variant {
            #[cfg(test)]
            Variant::F2 => forward_with::<2, 4, F2>(self, x, w, keep),
            Variant::F4 => forward_with::<4, 6, F4>(self, x, w, keep),
        }
    }

    /// The `wanted` gradients from the input `x`, the weight `w` and the channel-major output
    /// gradient `dy` (`[out_ch, batch·oh·ow]`), reusing what the forward pass `kept` (which
    /// must come from this layer with the same `x` and `w`): in one buffer, the input
    /// gradient (`[batch, in_ch, h, w]`) if wanted, then the weight gradient
    /// (`[out_ch, in_ch·9]`) if wanted, so that one candle op can return both. Each piece's
    /// transformed output gradient serves both products. The same values, bit for bit, with
    /// or without `kept`.
    pub(super) fn grads(
        &self,
        (x, w, dy): (&[f32], &[f32], &[f32]),
        kept: Option<&Kept>,
        wanted: Wanted,
    ) -> Result<Vec<f32>> {
        match self.variant {
            #[cfg(test)]
            Variant::F2 => grads_with::<2, 4, F2>(self, (x, w, dy), kept, wanted),
            Variant::F4 => grads_with::<4, 6, F4>(self, (x, w, dy), kept, wanted),
        }
    }
}

fn forward_with<const M: usize, const P: usize, T: Tile<M, P>>(
    l: &Layer,
    x: &[f32],
    w: &[f32],
    keep: bool,
) -> Result<(Vec<f32>, Option<Kept>)> {
    let (op, g, out_ch) = (l.op, &l.geom, l.out_ch);
    let whole = Plan::new(g, out_ch, M);
    let (a2, k, c) = (P * P, out_ch, g.in_ch);
    let u = CpuStorage::F32(weights::<M, P, T>(&whole, w));
    let mut y = vec![0f32; k * whole.row_len];
    let mut kept_v = Vec::new();
    for (b0, p) in whole.pieces(l.pieces) {
        let (pg, n) = (&p.g, p.tiles());
        let x = &x[b0 * g.image_len()..][..pg.batch * g.image_len()];
        let v = CpuStorage::F32(patches::<M, P, T>(&p, x));
        // M[ξ] = U[ξ] · V[ξ]: U[ξ] rows of stride α²·in_ch, V[ξ] rows of stride α²·tiles.
        let u_l = Layout::new((a2, k, c).into(), vec![c, a2 * c, 1], 0);
        let v_l = Layout::new((a2, c, n).into(), vec![n, a2 * n, 1], 0);
        let mm = products(op, (&u, u_l), (&v, v_l), (a2, k, n, c))?;
        if keep {
            kept_v.push(v);
        }
        y.par_chunks_exact_mut(whole.row_len.max(1))
            .enumerate()
            .with_min_len(min_items(n * M * M))
            .for_each(|(ko, row)| {
                wide(|| {
                    let row = &mut row[p.col0..][..pg.batch * pg.positions()];
                    for (t0, count) in groups(n) {
                        let mut s = [[[0f32; L]; P]; P];
                        for (xi, lanes) in s.iter_mut().flatten().enumerate() {
                            load(lanes, &mm[xi][ko * n + t0..], count);
                        }
                        let o = right(&left(&T::AT, &s), &T::A);
                        for (l, (b, ty, tx)) in p.tiles_from(t0, count).enumerate() {
                            let image = &mut row[b * pg.positions()..][..pg.positions()];
                            if p.inner_tile(ty, tx) {
                                for (i, orow) in o.iter().enumerate() {
                                    let dst = &mut image[(ty * M + i) * pg.ow + tx * M..][..M];
                                    dst.iter_mut().zip(orow).for_each(|(d, val)| *d = val[l]);
                                }
                                continue;
                            }
                            for (i, orow) in o.iter().enumerate() {
                                let r = ty * M + i;
                                if r >= pg.oh {
                                    break;
                                }
                                for (j, val) in orow.iter().enumerate() {
                                    let col = tx * M + j;
                                    if col >= pg.ow {
                                        break;
                                    }
                                    image[r * pg.ow + col] = val[l];
                                }
                            }
                        }
                    }
                })
            });
    }
    let kept = keep.then_some(Kept { u, v: kept_v });
    Ok((y, kept))
}

/// `kept`'s storage, checked to hold `len` values.
fn kept_values<'a>(
    op: &'static str,
    what: &str,
    s: &'a CpuStorage,
    len: usize,
) -> Result<&'a CpuStorage> {
    let have = s.as_slice::<f32>()?.len();
    if have != len {
        return Err(super::OpError::shape(
            op,
            format!("the forward pass kept {have} values of {what}, expected {len}"),
        ));
    }
    Ok(s)
}

fn grads_with<const M: usize, const P: usize, T: Tile<M, P>>(
    l: &Layer,
    (x, w, dy): (&[f32], &[f32], &[f32]),
    kept: Option<&Kept>,
    wanted: Wanted,
) -> Result<Vec<f32>> {
    let (op, g, out_ch) = (l.op, &l.geom, l.out_ch);
    let whole = Plan::new(g, out_ch, M);
    let (a2, k, c) = (P * P, out_ch, g.in_ch);
    let pieces: Vec<(usize, Plan)> = whole.pieces(l.pieces).collect();
    if let Some(kept) = kept
        && kept.v.len() != pieces.len()
    {
        return Err(super::OpError::shape(
            op,
            format!(
                "the forward pass kept {} pieces of patches, expected {}",
                kept.v.len(),
                pieces.len()
            ),
        ));
    }
    let fresh_u;
    let u = match (wanted.input, kept) {
        (false, _) => None,
        (true, Some(kept)) => Some(kept_values(op, "weights", &kept.u, a2 * k * c)?),
        (true, None) => {
            fresh_u = CpuStorage::F32(weights::<M, P, T>(&whole, w));
            Some(&fresh_u)
        }
    };
    let dx_len = if wanted.input {
        g.batch * g.image_len()
    } else {
        0
    };
    let dw_len = if wanted.weight { k * c * 9 } else { 0 };
    let mut out = vec![0f32; dx_len + dw_len];
    let (dx, dw) = out.split_at_mut(dx_len);
    let mut du = wanted.weight.then(|| vec![vec![0f32; k * c]; a2]);
    for (i, (b0, p)) in pieces.into_iter().enumerate() {
        let n = p.tiles();
        let yh = CpuStorage::F32(grad_tiles::<M, P, T>(&p, dy));
        let yh_l = Layout::new((a2, k, n).into(), vec![n, a2 * n, 1], 0);
        if let Some(u) = u {
            // dV[ξ] = U[ξ]ᵀ · Ŷ[ξ], U[ξ]ᵀ a transposed view of U.
            let ut_l = Layout::new((a2, c, k).into(), vec![c, 1, a2 * c], 0);
            let dv = products(op, (u, ut_l), (&yh, yh_l.clone()), (a2, c, n, k))?;
            let dx = &mut dx[b0 * g.image_len()..][..p.g.batch * g.image_len()];
            scatter_patch_grads::<M, P, T>(&p, &dv, dx);
        }
        if let Some(du) = du.as_mut() {
            let fresh_v;
            let v = match kept.and_then(|kept| kept.v.get(i)) {
                Some(v) => kept_values(op, "patches", v, c * a2 * n)?,
                None => {
                    let x = &x[b0 * g.image_len()..][..p.g.batch * g.image_len()];
                    fresh_v = CpuStorage::F32(patches::<M, P, T>(&p, x));
                    &fresh_v
                }
            };
            // dU[ξ] = Ŷ[ξ] · V[ξ]ᵀ, V[ξ]ᵀ a transposed view of V; summed over the pieces in
            // order.
            let vt_l = Layout::new((a2, n, c).into(), vec![n, 1, a2 * n], 0);
            let part = products(op, (&yh, yh_l), (v, vt_l), (a2, k, c, n))?;
            du.par_iter_mut()
                .zip(&part)
                .for_each(|(d, q)| d.iter_mut().zip(q).for_each(|(d, q)| *d += q));
        }
    }
    if let Some(du) = du {
        weight_from_tiles::<M, P, T>(&du, c, dw);
    }
    Ok(out)
}

/// Adds the patch gradients `dv` (`[α²][in_ch][tiles]` of the piece `p`), transformed back
/// (`B dV Bᵀ`), onto the piece's input gradient `dx` (`[batch, in_ch, h, w]`).
///
/// The lanes hold tiles of one plane where an image has at least `L` of them, and channels of
/// one tile where it has fewer (sides 7 and 4 of a ResNet, 4 and 1 tiles): one tile per plane
/// in eight lanes wasted seven, and channels in lanes took a fifth to a quarter of the time at
/// side 4 and about 0.6x at side 7, but 1.0–1.25x as long at sides 28 and 14
/// (`scatter_timing`). Both add the same values in the same order, bit for bit.
fn scatter_patch_grads<const M: usize, const P: usize, T: Tile<M, P>>(
    p: &Plan,
    dv: &[Vec<f32>],
    dx: &mut [f32],
) {
    if p.th * p.tw < L {
        scatter_by_channels::<M, P, T>(p, dv, dx);
    } else {
        scatter_by_tiles::<M, P, T>(p, dv, dx);
    }
}

/// [`scatter_patch_grads`] with `L` tiles of one plane (image and channel) per lane vector:
/// each task one plane, whose tiles are read as whole vectors.
fn scatter_by_tiles<const M: usize, const P: usize, T: Tile<M, P>>(
    p: &Plan,
    dv: &[Vec<f32>],
    dx: &mut [f32],
) {
    let (g, n) = (&p.g, p.tiles());
    let (c, hw) = (g.in_ch, g.h * g.w);
    dx.par_chunks_exact_mut(hw.max(1))
        .enumerate()
        .with_min_len(min_items(hw))
        .for_each(|(bc, plane)| {
            wide(|| {
                let (b, ci) = (bc / c, bc % c);
                let per_image = p.th * p.tw;
                for (t0, count) in groups(per_image) {
                    let t0 = b * per_image + t0;
                    let mut s = [[[0f32; L]; P]; P];
                    for (xi, lanes) in s.iter_mut().flatten().enumerate() {
                        load(lanes, &dv[xi][ci * n + t0..], count);
                    }
                    let d = right(&left(&T::B, &s), &T::BT);
                    for (l, (_, ty, tx)) in p.tiles_from(t0, count).enumerate() {
                        p.add_patch(plane, &d, l, (ty, tx));
                    }
                }
            })
        });
}

/// [`scatter_patch_grads`] with `L` channels of one tile per lane vector: each task `L` planes
/// of one image, whose values are gathered one by one.
fn scatter_by_channels<const M: usize, const P: usize, T: Tile<M, P>>(
    p: &Plan,
    dv: &[Vec<f32>],
    dx: &mut [f32],
) {
    let (g, n) = (&p.g, p.tiles());
    let (c, hw) = (g.in_ch, g.h * g.w);
    let per_image = p.th * p.tw;
    // A task: up to L planes (channels) of one image.
    dx.par_chunks_exact_mut((c * hw).max(1))
        .enumerate()
        .flat_map(|(b, image)| {
            image
                .par_chunks_mut((L * hw).max(1))
                .enumerate()
                .map(move |(group, planes)| (b, group * L, planes))
        })
        .for_each(|(b, c0, planes)| {
            wide(|| {
                let count = L.min(c - c0);
                for t in 0..per_image {
                    let (ty, tx) = (t / p.tw, t % p.tw);
                    let tile = b * per_image + t;
                    let mut s = [[[0f32; L]; P]; P];
                    for (xi, lanes) in s.iter_mut().flatten().enumerate() {
                        for (l, v) in lanes[..count].iter_mut().enumerate() {
                            *v = dv[xi][(c0 + l) * n + tile];
                        }
                    }
                    let d = right(&left(&T::B, &s), &T::BT);
                    for (l, plane) in planes.chunks_exact_mut(hw.max(1)).enumerate() {
                        p.add_patch(plane, &d, l, (ty, tx));
                    }
                }
            })
        });
}

/// `dW = Gᵀ dU G` of the summed tile products `du` (`[α²][out_ch][in_ch]`) into `dw`
/// (`[out_ch, in_ch·9]`).
fn weight_from_tiles<const M: usize, const P: usize, T: Tile<M, P>>(
    du: &[Vec<f32>],
    c: usize,
    dw: &mut [f32],
) {
    dw.par_chunks_exact_mut((c * 9).max(1))
        .enumerate()
        .for_each(|(ko, dst)| {
            wide(|| {
                for (c0, count) in groups(c) {
                    let mut s = [[[0f32; L]; P]; P];
                    for (xi, lanes) in s.iter_mut().flatten().enumerate() {
                        load(lanes, &du[xi][ko * c + c0..], count);
                    }
                    let d = right(&left(&T::GT, &s), &T::G);
                    for (tap, lanes) in d.iter().flatten().enumerate() {
                        for (l, &val) in lanes[..count].iter().enumerate() {
                            dst[(c0 + l) * 9 + tap] = val;
                        }
                    }
                }
            })
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::values;

    /// The direct convolution in `f64`: the channel-major output, the input gradient and the
    /// weight gradient for the channel-major output gradient `dy`.
    fn direct(
        g: &Geom,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        out_ch: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (c, n) = (g.in_ch, g.positions());
        let mut y = vec![0f64; out_ch * g.batch * n];
        let mut dx = vec![0f64; x.len()];
        let mut dw = vec![0f64; w.len()];
        for k in 0..out_ch {
            for b in 0..g.batch {
                for (r, col) in (0..g.oh).flat_map(|r| (0..g.ow).map(move |col| (r, col))) {
                    let o = k * g.batch * n + b * n + r * g.ow + col;
                    for ci in 0..c {
                        for (ki, kj) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
                            let (Some(ir), Some(ic)) = (
                                (r + ki).checked_sub(g.padding).filter(|&v| v < g.h),
                                (col + kj).checked_sub(g.padding).filter(|&v| v < g.w),
                            ) else {
                                continue;
                            };
                            let xi = ((b * c + ci) * g.h + ir) * g.w + ic;
                            let wi = (k * c + ci) * 9 + ki * 3 + kj;
                            y[o] += f64::from(w[wi]) * f64::from(x[xi]);
                            dx[xi] += f64::from(w[wi]) * f64::from(dy[o]);
                            dw[wi] += f64::from(x[xi]) * f64::from(dy[o]);
                        }
                    }
                }
            }
        }
        (y, dx, dw)
    }

    fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (f64::from(*a) - b).abs() <= tol * scale,
                "{what}: element {i}: {a} vs {b} (scale {scale})"
            );
        }
    }

    /// The input and weight gradients of a [`Layer::grads`] result with both.
    fn split<T>(both: &[T], dx_len: usize) -> (&[T], &[T]) {
        both.split_at(dx_len)
    }

    /// Both gradients.
    const BOTH: Wanted = Wanted {
        input: true,
        weight: true,
    };

    /// A layer's geometry (3×3, stride 1) with seeded input, weight and channel-major output
    /// gradient, drawn with seeds `seed`, `seed + 1` and `seed + 2`.
    fn case(
        (batch, in_ch, out_ch, side): (usize, usize, usize, usize),
        padding: usize,
        seed: u64,
    ) -> (Geom, Vec<f32>, Vec<f32>, Vec<f32>) {
        let g = Geom::new("test", (batch, in_ch, side, side), 3, 1, padding).unwrap();
        let x = values(&[batch, in_ch, side, side], seed);
        let w = values(&[out_ch, in_ch, 3, 3], seed + 1);
        let dy = values(&[out_ch, batch * g.positions()], seed + 2);
        (g, x, w, dy)
    }

    /// Pieces of one image each.
    const ONE_IMAGE: Pieces = Pieces {
        bytes: 0,
        min_tiles: 1,
    };

    #[test]
    fn pieces_of_images_give_the_whole_batch_values() {
        // Forward and input gradient bit for bit (each tile is computed alone); the weight
        // gradient sums the pieces' products in order, so it may round differently.
        let (batch, in_ch, out_ch, side) = (5, 16, 6, 9);
        let (g, x, w, dy) = case((batch, in_ch, out_ch, side), 1, 4);
        let layer = |pieces| Layer {
            op: "test",
            variant: Variant::F4,
            pieces,
            geom: g,
            out_ch,
        };
        let (all, one) = (layer(Pieces::DEFAULT), layer(ONE_IMAGE));
        assert!(all.forward(&x, &w, false).unwrap().0 == one.forward(&x, &w, false).unwrap().0);
        let (all, one) = (
            all.grads((&x, &w, &dy), None, BOTH).unwrap(),
            one.grads((&x, &w, &dy), None, BOTH).unwrap(),
        );
        let ((all_dx, all_dw), (one_dx, one)) = (split(&all, x.len()), split(&one, x.len()));
        assert!(all_dx == one_dx);
        let all: Vec<f64> = all_dw.iter().copied().map(f64::from).collect();
        assert_close(one, &all, 1e-5, "weight gradient");
    }

    #[test]
    fn both_tile_sizes_match_the_direct_convolution() {
        // Sides that are and are not multiples of the tile, padding 1 ("same") and 0.
        for variant in [Variant::F2, Variant::F4] {
            for (side, padding) in [(8, 1), (7, 1), (4, 1), (5, 0), (9, 2), (14, 1)] {
                let (batch, in_ch, out_ch) = (2, 16, 5);
                let g = Geom::new("test", (batch, in_ch, side, side), 3, 1, padding).unwrap();
                let x = values(&[batch, in_ch, side, side], 1);
                let w = values(&[out_ch, in_ch, 3, 3], 2);
                let dy = values(&[out_ch, batch * g.positions()], 3);
                let (y, dx, dw) = direct(&g, &x, &w, &dy, out_ch);
                let what = format!("{variant:?}, side {side}, padding {padding}");
                // The whole batch at once, and one image per piece.
                for pieces in [Pieces::DEFAULT, ONE_IMAGE] {
                    let what = format!("{what}, {pieces:?}");
                    let layer = Layer {
                        op: "test",
                        variant,
                        pieces,
                        geom: g,
                        out_ch,
                    };
                    let (got, _) = layer.forward(&x, &w, false).unwrap();
                    assert_close(&got, &y, 1e-5, &format!("{what}: forward"));
                    let both = layer.grads((&x, &w, &dy), None, BOTH).unwrap();
                    let (got_dx, got_dw) = split(&both, x.len());
                    let what = format!("{what}: gradient of the");
                    assert_close(got_dx, &dx, 1e-5, &format!("{what} input"));
                    assert_close(got_dw, &dw, 1e-5, &format!("{what} weight"));
                }
            }
        }
    }

    #[test]
    fn what_the_forward_pass_kept_gives_the_same_gradients_bit_for_bit() {
        let (batch, in_ch, out_ch, side) = (3, 16, 7, 10);
        let (g, x, w, dy) = case((batch, in_ch, out_ch, side), 1, 7);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        for variant in [Variant::F2, Variant::F4] {
            for pieces in [Pieces::DEFAULT, ONE_IMAGE] {
                let layer = Layer {
                    op: "test",
                    variant,
                    pieces,
                    geom: g,
                    out_ch,
                };
                let (y, kept) = layer.forward(&x, &w, true).unwrap();
                let (plain, none) = layer.forward(&x, &w, false).unwrap();
                assert!(y == plain && none.is_none());
                let kept = kept.unwrap();
                let both = bits(&layer.grads((&x, &w, &dy), None, BOTH).unwrap());
                let (dx, dw) = split(&both, x.len());
                for (input, weight) in [(true, true), (true, false), (false, true)] {
                    let wanted = Wanted { input, weight };
                    let want = [if input { dx } else { &[] }, if weight { dw } else { &[] }];
                    for k in [None, Some(&kept)] {
                        let what =
                            format!("{variant:?}, {pieces:?}, {wanted:?}, kept {}", k.is_some());
                        let got = layer.grads((&x, &w, &dy), k, wanted).unwrap();
                        assert!(bits(&got) == want.concat(), "{what}");
                    }
                }
            }
        }
    }

    #[test]
    fn both_scatter_orders_give_the_same_input_gradient_bit_for_bit() {
        // 20 channels: two full lane vectors of channels and a partial one.
        for (side, padding) in [(4, 1), (7, 1), (9, 0), (12, 2)] {
            let (batch, c) = (3, 20);
            let g = Geom::new("test", (batch, c, side, side), 3, 1, padding).unwrap();
            let p = Plan::new(&g, 5, 4);
            let dv: Vec<Vec<f32>> = (0..36).map(|i| values(&[c * p.tiles()], i)).collect();
            let mut by_tiles = vec![0f32; batch * g.image_len()];
            let mut by_channels = by_tiles.clone();
            scatter_by_tiles::<4, 6, F4>(&p, &dv, &mut by_tiles);
            scatter_by_channels::<4, 6, F4>(&p, &dv, &mut by_channels);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&by_tiles) == bits(&by_channels),
                "side {side}, padding {padding}"
            );
        }
    }

    #[test]
    fn rejects_what_another_split_of_the_batch_kept() {
        let (batch, in_ch, out_ch, side) = (3, 16, 4, 6);
        let (g, x, w, dy) = case((batch, in_ch, out_ch, side), 1, 1);
        let layer = |pieces| Layer {
            op: "test",
            variant: Variant::F4,
            pieces,
            geom: g,
            out_ch,
        };
        let (_, kept) = layer(ONE_IMAGE).forward(&x, &w, true).unwrap();
        let err = layer(Pieces::DEFAULT)
            .grads((&x, &w, &dy), kept.as_ref(), BOTH)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("kept 3 pieces of patches, expected 1"),
            "{err}"
        );
    }

    #[test]
    fn chosen_only_for_3x3_stride_1_with_enough_channels() {
        let geom = |in_ch, kernel, stride| {
            Geom::new("test", (2, in_ch, 14, 14), kernel, stride, 1).unwrap()
        };
        assert_eq!(Variant::choose(&geom(64, 3, 1)), Some(Variant::F4));
        assert_eq!(Variant::choose(&geom(64, 3, 2)), None);
        assert_eq!(Variant::choose(&geom(64, 5, 1)), None);
        assert_eq!(Variant::choose(&geom(MIN_IN_CH - 1, 3, 1)), None);
    }
}

/// The measurement behind [`products`]' choice, on the product shapes of `s1-resnet18`'s
/// layers (`(out_ch, in_ch, tiles of a piece)`), and a check that both ways agree bit for bit:
///
/// ```text
/// RAYON_NUM_THREADS=2 cargo test --release -p trainer --lib products_timing -- --ignored --nocapture
/// ```
#[cfg(test)]
mod products_timing {
    use std::time::Instant;

    use super::*;
    use crate::ops::test_util::values;

    #[test]
    #[ignore = "a timing: run by hand on an idle machine"]
    fn per_tile_position_against_one_batched_matmul() {
        const ROUNDS: usize = 15;
        for (k, c, n) in [
            (64, 64, 441),
            (128, 128, 256),
            (256, 256, 256),
            (512, 512, 64),
        ] {
            let a2 = 36;
            let u = CpuStorage::F32(values(&[a2 * k * c], 1));
            let v = CpuStorage::F32(values(&[a2 * c * n], 2));
            let u_l = Layout::new((a2, k, c).into(), vec![c, a2 * c, 1], 0);
            let v_l = Layout::new((a2, c, n).into(), vec![n, a2 * n, 1], 0);
            let mut ms = [Vec::new(), Vec::new()];
            for _ in 0..ROUNDS {
                let start = Instant::now();
                let batched = batched_gemm("t", (&u, &u_l), (&v, &v_l), (a2, k, n, c)).unwrap();
                ms[0].push(start.elapsed().as_secs_f64() * 1e3);
                let start = Instant::now();
                let each = products("t", (&u, u_l.clone()), (&v, v_l.clone()), (a2, k, n, c));
                ms[1].push(start.elapsed().as_secs_f64() * 1e3);
                assert!(batched == each.unwrap().concat());
            }
            let gmacs = (a2 * k * c * n) as f64 / 1e6;
            let [batched, each] = ms.map(|mut t| {
                t.sort_by(f64::total_cmp);
                t[ROUNDS / 2]
            });
            println!(
                "out {k} in {c} tiles {n}: one batched matmul {batched:.3} ms ({:.1} GMAC/s), \
                 one per tile position {each:.3} ms ({:.1} GMAC/s), ratio {:.2}",
                gmacs / batched,
                gmacs / each,
                batched / each
            );
        }
    }
}

/// The measurement behind [`scatter_patch_grads`]' choice, on `s1-resnet18`'s shapes
/// (`(in_ch, side, images of a piece)`):
///
/// ```text
/// RAYON_NUM_THREADS=1 cargo test --release -p trainer --lib scatter_timing -- --ignored --nocapture
/// ```
#[cfg(test)]
mod scatter_timing {
    use std::time::Instant;

    use super::*;
    use crate::ops::test_util::values;

    #[test]
    #[ignore = "a timing: run by hand on an idle machine"]
    fn tiles_against_channels_in_lanes() {
        for (c, side, batch) in [(64, 28, 9), (128, 14, 16), (256, 7, 64), (512, 4, 64)] {
            let g = Geom::new("t", (batch, c, side, side), 3, 1, 1).unwrap();
            let p = Plan::new(&g, 8, 4);
            let n = p.tiles();
            let dv: Vec<Vec<f32>> = (0..36u64).map(|i| values(&[c * n], i)).collect();
            let mut ms = [Vec::new(), Vec::new()];
            for _ in 0..21 {
                let mut a = vec![0f32; batch * c * side * side];
                let s0 = Instant::now();
                scatter_by_tiles::<4, 6, F4>(&p, &dv, &mut a);
                ms[0].push(s0.elapsed().as_secs_f64() * 1e3);
                let mut b = vec![0f32; batch * c * side * side];
                let s0 = Instant::now();
                scatter_by_channels::<4, 6, F4>(&p, &dv, &mut b);
                ms[1].push(s0.elapsed().as_secs_f64() * 1e3);
                assert!(a == b);
            }
            let [tiles, channels] = ms.map(|mut t| {
                t.sort_by(f64::total_cmp);
                t[10]
            });
            println!(
                "in {c} side {side} images {batch}: tiles in lanes {tiles:.3} ms, \
                 channels in lanes {channels:.3} ms"
            );
        }
    }
}
