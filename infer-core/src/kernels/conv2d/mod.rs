//! 2-D convolution, alone or fused with the 2x2 max pooling that follows it (strategies: see
//! the [`crate::kernels`] module docs).

use super::{
    Acc, CHUNK, ChannelRequant, LANES, QRequant, SIMD, as_chunks, as_chunks_mut, clamp_i8, hsum,
    mac_chunk, tail_chunk,
};
use crate::format::Shape;
use crate::spec::Padding;

mod direct;
mod im2col;
mod pair_rows;
mod tap_rows;

use direct::*;
use im2col::*;
use pair_rows::*;
use tap_rows::*;

/// Smallest filter (`in_ch * kernel_h * kernel_w`) for which the im2col strategy is used.
pub const IM2COL_MIN_TAPS: usize = 32;

/// Patches each filter row is dotted with at once in the im2col strategy (and the size of a
/// pooling window).
const PATCHES: usize = 4;

/// Most patches unrolled at once in the im2col strategy (their dot products are kept on the
/// stack); a multiple of [`PATCHES`].
const MAX_TILE: usize = 64;

/// Filters whose dot products the im2col strategy computes per call (kept on the stack).
const FILTERS: usize = 16;

/// Output columns per row segment in the pair-rows, tap-rows and direct strategies (their `i32`
/// accumulators are vector lanes on the stack).
const COLS: usize = 32;

/// Most tap pairs per filter in the pair-rows strategy (their offsets are kept on the stack).
const MAX_PAIRS: usize = 32;

/// Values of the stack buffer the pair-rows strategy uses when `work` is too small (enough
/// for a 5x5 single-channel first layer with 40 filters).
const PAIRS_ON_STACK: usize = 1024;

/// Geometry of a 2-D convolution: kernel size, stride and symmetric zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Conv2dParams {
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Zero padding per side.
    pub padding: Padding,
}

impl Conv2dParams {
    /// Output `(height, width)` for an input of `height x width`:
    /// `(in + 2 * padding - kernel) / stride + 1` in each direction.
    ///
    /// `None` if the kernel or stride is zero or the kernel is larger than the padded input.
    pub fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        let p = self.padding;
        let (top, bottom) = (usize::from(p.top), usize::from(p.bottom));
        let (left, right) = (usize::from(p.left), usize::from(p.right));
        let s = self.stride;
        Some((
            crate::spec::window_len(height, top, bottom, self.kernel_h, s)?,
            crate::spec::window_len(width, left, right, self.kernel_w, s)?,
        ))
    }
}

/// The kernel positions `[lo, hi)` along one axis that land inside the input for the output
/// position whose window starts at padded coordinate `start` (`start - padding` in the input).
#[inline]
fn in_bounds(start: usize, padding: usize, kernel: usize, input: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(start).min(kernel);
    let hi = (input + padding).saturating_sub(start).min(kernel);
    (lo, hi.max(lo))
}

/// 2-D convolution, int8, per-output-channel requantisation (TFLite's `ConvPerChannel`, no
/// dilation, same padding on every side).
///
/// For each output channel `o` and output position `(y, x)`, with stride `s` and padding `p`:
///
/// ```text
/// acc = bias[o] + Σ_{i, ky, kx} weights[o, i, ky, kx]
///                               * (input[i, y*s + ky - p, x*s + kx - p] - input_zero_point)
/// output[o, y, x] = clamp(multiply_by_quantized_multiplier(acc, multipliers[o], shifts[o])
///                         + output_zero_point, act_min, act_max)
/// ```
///
/// The accumulator is `i32` with wrapping addition (summed in any order: the result is the
/// same). Positions outside the input are skipped (the same as padding with the input zero
/// point).
///
/// `work` is scratch space the kernel may overwrite. Its length only affects speed (see the
/// [`kernels`](crate::kernels) module docs): at least [`conv2d_work_len`] bytes give the
/// fastest strategy for the layer. [`Model`](crate::Model) lends the part of its scratch
/// buffer the layer does not use.
///
/// Rounding: requantisation only, as in [`crate::quant::multiply_by_quantized_multiplier`].
///
/// # Shapes
///
/// - `input`: `[in_ch, height, width]` (`input_shape`), NCHW without the N, quantised with
///   `input_zero_point` in `[-128, 127]`
/// - `weights`: `[out_ch, in_ch, kernel_h, kernel_w]`
/// - `requant`: `out_ch` channels
/// - `output`: `[out_ch, out_h, out_w]` with `(out_h, out_w) =
///   params.output_size(height, width)`
///
/// # Example
///
/// ```
/// use infer_core::format::{Padding, Shape};
/// use infer_core::kernels::{Conv2dParams, QRequant, conv2d_i8};
///
/// // One 2x2 input channel, one 2x2 kernel of ones, padding 1 (3x3 output), multiplier 1.0.
/// let one = (1_i32 << 30).to_le_bytes(); // 2^30 with shift 1: times 1.0
/// let requant = QRequant {
///     bias: &[0; 4],
///     multipliers: &one,
///     shifts: &[1],
///     output_zero_point: 0,
///     act_min: -128,
///     act_max: 127,
/// };
/// let params = Conv2dParams { kernel_h: 2, kernel_w: 2, stride: 1, padding: Padding::uniform(1) };
/// let shape = Shape { channels: 1, height: 2, width: 2 };
/// let mut out = [0_i8; 9];
/// conv2d_i8(&[1, 2, 3, 4], shape, 0, &[1, 1, 1, 1], &params, &requant, &mut out, &mut []);
/// assert_eq!(out, [1, 3, 2, 4, 10, 6, 3, 7, 4]);
/// ```
#[allow(clippy::too_many_arguments)] // the operands of one convolution, as in TFLite
pub fn conv2d_i8(
    input: &[i8],
    input_shape: Shape,
    input_zero_point: i32,
    weights: &[i8],
    params: &Conv2dParams,
    requant: &QRequant<'_>,
    output: &mut [i8],
    work: &mut [i8],
) {
    let op = Conv {
        input_shape,
        params,
        pool: false,
        im2col_min_taps: IM2COL_MIN_TAPS,
        pair_rows: SIMD,
    };
    op.run(input, input_zero_point, weights, requant, output, work);
}

/// [`conv2d_i8`] followed by 2x2 max pooling with stride 2 ([`super::max_pool2d_i8`] with
/// `kernel = stride = 2`), without storing the convolution's output.
///
/// ```text
/// output[o, y, x] = max_{dy, dx < 2} conv[o, 2y + dy, 2x + dx]
/// ```
///
/// Bit-exact with the two kernels one after the other (see the [`kernels`](crate::kernels)
/// module docs for why pooling the accumulators is exact), and faster: three requantisations
/// in four are saved, and so is the pass over the convolution's output.
///
/// # Shapes
///
/// As [`conv2d_i8`], except `output`: `[out_ch, out_h / 2, out_w / 2]` (a trailing odd row or
/// column of the convolution is dropped, as `VALID` pooling does).
///
/// # Example
///
/// ```
/// use infer_core::format::{Padding, Shape};
/// use infer_core::kernels::{Conv2dParams, QRequant, conv2d_max_pool2d_i8};
///
/// // A 1x1 kernel of 1 (the identity) on a 2x4 input, pooled to 1x2, multiplier 1.0.
/// let one = (1_i32 << 30).to_le_bytes();
/// let requant = QRequant {
///     bias: &[0; 4],
///     multipliers: &one,
///     shifts: &[1],
///     output_zero_point: 0,
///     act_min: -128,
///     act_max: 127,
/// };
/// let params = Conv2dParams { kernel_h: 1, kernel_w: 1, stride: 1, padding: Padding::uniform(0) };
/// let shape = Shape { channels: 1, height: 2, width: 4 };
/// let mut out = [0_i8; 2];
/// let input = [1, -2, 3, 0, -5, 6, -7, 8];
/// conv2d_max_pool2d_i8(&input, shape, 0, &[1], &params, &requant, &mut out, &mut []);
/// assert_eq!(out, [6, 8]);
/// ```
#[allow(clippy::too_many_arguments)] // the operands of one convolution, as in TFLite
pub fn conv2d_max_pool2d_i8(
    input: &[i8],
    input_shape: Shape,
    input_zero_point: i32,
    weights: &[i8],
    params: &Conv2dParams,
    requant: &QRequant<'_>,
    output: &mut [i8],
    work: &mut [i8],
) {
    let op = Conv {
        input_shape,
        params,
        pool: true,
        im2col_min_taps: IM2COL_MIN_TAPS,
        pair_rows: SIMD,
    };
    op.run(input, input_zero_point, weights, requant, output, work);
}

/// Bytes of `work` with which [`conv2d_i8`] (or, with `pool`, [`conv2d_max_pool2d_i8`]) takes
/// its fastest strategy for this layer at full speed: for a large filter, the widened and
/// padded input and a tile of 64 patches; for a small one, the tap rows (with SIMD, the pair
/// rows usually need less, and fall back to a stack buffer without it).
///
/// `None` if the window does not fit the padded input, or if this length or any size the
/// kernel computes for the layer (taps, padded input, patches, rows) overflows `usize` on this
/// target: [`crate::Model::from_bytes`] refuses such a layer ([`crate::Error::TooLarge`]), so
/// the kernels' own arithmetic cannot overflow.
///
/// ```
/// use infer_core::format::{Padding, Shape};
/// use infer_core::kernels::{Conv2dParams, conv2d_work_len};
///
/// let params = Conv2dParams { kernel_h: 3, kernel_w: 3, stride: 1, padding: Padding::uniform(1) };
/// let shape = Shape { channels: 1, height: 28, width: 28 };
/// assert!(conv2d_work_len(shape, &params, false).is_some());
/// // 65535 channels of 1x65535 padded by one row: 2^33 padded values overflow 32 bits.
/// let wide = Shape { channels: 65535, height: 1, width: 65535 };
/// let pad = Conv2dParams { kernel_h: 1, kernel_w: 1, stride: 1, padding: Padding { top: 1, ..Padding::default() } };
/// assert_eq!(conv2d_work_len(wide, &pad, false).is_none(), usize::BITS == 32);
/// ```
pub fn conv2d_work_len(input_shape: Shape, params: &Conv2dParams, pool: bool) -> Option<usize> {
    let g = Geometry::new(input_shape, params, pool)?;
    let values = if g.taps >= IM2COL_MIN_TAPS {
        g.padded_len
            .checked_add(1)?
            .checked_next_multiple_of(32)?
            .checked_add(g.tile_len)?
    } else {
        g.rows_len
    };
    // Plus up to 63 bytes skipped to align the buffer.
    values.checked_mul(2)?.checked_add(63)
}

/// One convolution call: the operation and how to run it.
struct Conv<'p> {
    input_shape: Shape,
    params: &'p Conv2dParams,
    /// Fused 2x2 max pooling with stride 2.
    pool: bool,
    /// Smallest filter for the im2col strategy (a parameter for tests).
    im2col_min_taps: usize,
    /// Whether the pair-rows strategy may be used (otherwise tap rows; a parameter for tests).
    pair_rows: bool,
}

impl Conv<'_> {
    fn run(
        &self,
        input: &[i8],
        input_zero_point: i32,
        weights: &[i8],
        requant: &QRequant<'_>,
        output: &mut [i8],
        work: &mut [i8],
    ) {
        let Some(g) = Geometry::new(self.input_shape, self.params, self.pool) else {
            debug_assert!(false, "conv2d_i8: kernel larger than padded input");
            return;
        };
        let plane = g.rows * g.cols;
        debug_assert_eq!(input.len(), g.in_ch * g.height * g.width);
        if plane > 0 {
            debug_assert_eq!(output.len() % plane, 0);
            debug_assert_eq!(weights.len(), output.len() / plane * g.taps());
            debug_assert_eq!(requant.channels(), output.len() / plane);
        }
        debug_assert!((-128..=127).contains(&input_zero_point));
        let zero_point = i16::from(clamp_i8(input_zero_point, i8::MIN, i8::MAX));

        let taps = g.taps();
        let patch_len = taps.next_multiple_of(CHUNK);
        let buf = align_64(bytemuck::pod_align_to_mut::<i8, i16>(work).1);
        // Whole groups of patches that fit in `len` values, up to MAX_TILE.
        let patches_in = |len: usize| {
            let n = (len / patch_len.max(1)).min(MAX_TILE);
            n - n % PATCHES
        };
        let padded_len = g.padded_len();
        let rows_len = g.rows_len;
        let out_ch = weights.len() / taps.max(1);
        let pairs_len = g.pair_rows_len(out_ch).filter(|_| self.pair_rows);
        if taps >= self.im2col_min_taps && patches_in(buf.len().saturating_sub(padded_len)) > 0 {
            let (padded, rest) = buf.split_at_mut(padded_len.min(buf.len()));
            let patches = patches_in(rest.len());
            let rest = rest.get_mut(..patches * patch_len).unwrap_or_default();
            widen_padded(input, &g, zero_point, padded);
            let source = Source::Padded(padded);
            conv_im2col(&source, &g, weights, requant, output, rest);
        } else if taps >= self.im2col_min_taps && patches_in(buf.len()) > 0 {
            let patches = patches_in(buf.len());
            let buf = buf.get_mut(..patches * patch_len).unwrap_or_default();
            let source = Source::Input { input, zero_point };
            conv_im2col(&source, &g, weights, requant, output, buf);
        } else if let Some(len) = pairs_len.filter(|&len| len <= buf.len()) {
            let rows = Rows::Pairs(buf.get_mut(..len).unwrap_or_default());
            conv_rows(input, &g, zero_point, weights, requant, output, rows);
        } else if pairs_len.is_some_and(|len| len <= PAIRS_ON_STACK) {
            conv_pair_rows_on_stack(input, &g, zero_point, weights, requant, output);
        } else if buf.len() >= rows_len {
            let rows = Rows::Taps(buf.get_mut(..rows_len).unwrap_or_default());
            conv_rows(input, &g, zero_point, weights, requant, output, rows);
        } else {
            conv_rows(
                input,
                &g,
                zero_point,
                weights,
                requant,
                output,
                Rows::Direct,
            );
        }
    }
}

/// The part of `buf` from its first 64-byte-aligned element on (vector loads from patches
/// then never straddle two cache lines).
pub(crate) fn align_64(buf: &mut [i16]) -> &mut [i16] {
    let misalignment = buf.as_ptr().addr() % 64;
    let skip = (64 - misalignment) % 64 / 2;
    let len = buf.len();
    buf.get_mut(skip.min(len)..).unwrap_or_default()
}

/// The dimensions of one convolution call.
struct Geometry {
    in_ch: usize,
    height: usize,
    width: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    /// Zero rows above and columns left of the input (the window's offset).
    pad_top: usize,
    pad_left: usize,
    /// Zero rows below and columns right of the input.
    pad_bottom: usize,
    pad_right: usize,
    /// Columns of the convolution's output.
    out_w: usize,
    /// Fused 2x2 max pooling.
    pool: bool,
    /// Rows and columns of the kernel's output (pooled if `pool`).
    rows: usize,
    cols: usize,
    /// Weights per filter: `in_ch * kernel_h * kernel_w`.
    taps: usize,
    /// Values of the widened, padded copy of the input ([`widen_padded`]), rounded up to 64
    /// bytes (so that the patches after it stay aligned).
    padded_len: usize,
    /// Values of a full tile of patches in the im2col strategy, `MAX_TILE` patches of `taps`
    /// rounded up to [`CHUNK`].
    tile_len: usize,
    /// Values of the tap rows ([`tap_rows`]): `taps * COLS`, twice when pooling.
    rows_len: usize,
}

impl Geometry {
    /// The geometry of a call, with every size the kernels derive from it computed in checked
    /// arithmetic: `None` if the window does not fit or a size overflows `usize`.
    fn new(input: Shape, params: &Conv2dParams, pool: bool) -> Option<Self> {
        let (height, width) = (usize::from(input.height), usize::from(input.width));
        let (out_h, out_w) = params.output_size(height, width)?;
        let (rows, cols) = if pool {
            (out_h / 2, out_w / 2)
        } else {
            (out_h, out_w)
        };
        let in_ch = usize::from(input.channels);
        let p = params.padding;
        let padded_h = height
            .checked_add(usize::from(p.top))?
            .checked_add(usize::from(p.bottom))?;
        let padded_w = width
            .checked_add(usize::from(p.left))?
            .checked_add(usize::from(p.right))?;
        let padded_len = in_ch
            .checked_mul(padded_h)?
            .checked_mul(padded_w)?
            .checked_next_multiple_of(32)?;
        let taps = in_ch
            .checked_mul(params.kernel_h)?
            .checked_mul(params.kernel_w)?;
        let patch_len = taps.checked_next_multiple_of(CHUNK)?;
        let tile_len = patch_len.checked_mul(MAX_TILE)?;
        let span = if pool { 2 } else { 1 };
        let rows_len = taps.checked_mul(COLS)?.checked_mul(span)?;
        // The im2col strategy's blocks of filters, and the pair-rows strategy's input rows.
        taps.checked_mul(FILTERS)?;
        params
            .kernel_w
            .checked_add(COLS)?
            .checked_mul(2)?
            .checked_mul(params.kernel_h.checked_add(span - 1)?)?
            .checked_mul(in_ch)?;
        // Output positions: `out_h * out_w` (the pooled output is smaller).
        out_h.checked_mul(out_w)?;
        Some(Self {
            in_ch,
            height,
            width,
            kernel_h: params.kernel_h,
            kernel_w: params.kernel_w,
            stride: params.stride,
            pad_top: usize::from(params.padding.top),
            pad_left: usize::from(params.padding.left),
            pad_bottom: usize::from(params.padding.bottom),
            pad_right: usize::from(params.padding.right),
            out_w,
            pool,
            rows,
            cols,
            taps,
            padded_len,
            tile_len,
            rows_len,
        })
    }

    /// Values of the widened, padded copy of the input ([`widen_padded`]), rounded up to 64
    /// bytes (so that the patches after it stay aligned).
    fn padded_len(&self) -> usize {
        self.padded_len
    }

    /// Rows and columns of the input with its padding.
    fn padded_dims(&self) -> (usize, usize) {
        (
            self.height + self.pad_top + self.pad_bottom,
            self.width + self.pad_left + self.pad_right,
        )
    }

    /// Pairs of horizontally adjacent taps per filter in the pair-rows strategy:
    /// `in_ch * kernel_h * ceil(kernel_w / 2)` (an odd row's last tap pairs with a zero weight).
    fn tap_pairs(&self) -> usize {
        self.in_ch * self.kernel_h * self.kernel_w.div_ceil(2)
    }

    /// Values of one interleaved input row of the pair-rows strategy ([`pair_rows`]).
    fn pair_row_len(&self) -> usize {
        2 * (COLS + self.kernel_w)
    }

    /// Values of `work` the pair-rows strategy needs for `out_ch` filters: one interleaved row
    /// per input channel and input row under the window of one (or, pooling, two) convolution
    /// rows, then the filters' weight pairs. `None` where the strategy does not apply (stride
    /// other than 1, or more than [`MAX_PAIRS`] pairs).
    /// (Checked: `None` too if the length overflows `usize`, and then the other strategies
    /// run.)
    fn pair_rows_len(&self, out_ch: usize) -> Option<usize> {
        let span = if self.pool { 2 } else { 1 };
        let rows = self.in_ch * (self.kernel_h + span - 1) * self.pair_row_len();
        if self.stride != 1 || self.tap_pairs() > MAX_PAIRS {
            return None;
        }
        rows.checked_add(out_ch.checked_mul(self.tap_pairs())?.checked_mul(2)?)
    }

    /// Weights per filter: `in_ch * kernel_h * kernel_w`.
    fn taps(&self) -> usize {
        self.taps
    }

    /// Largest `|Σ w * (x - zero_point)|` of one output: `taps * 128 * 255`.
    fn dot_bound(&self) -> u64 {
        u64::try_from(self.taps())
            .unwrap_or(u64::MAX)
            .saturating_mul(128 * 255)
    }

    /// The convolution output position `(y, x)` of patch `i` in the im2col strategy: row-major
    /// over the output, or pooling window by window (four patches each, row-major within).
    #[inline]
    fn position(&self, i: usize) -> (usize, usize) {
        if self.pool {
            let (window, q) = (i / 4, i % 4);
            let (wy, wx) = (window / self.cols.max(1), window % self.cols.max(1));
            (2 * wy + q / 2, 2 * wx + q % 2)
        } else {
            (i / self.out_w.max(1), i % self.out_w.max(1))
        }
    }
}

/// Requantises `dots` into `output`, taking the maximum of each group of four first when
/// pooling.
#[inline]
fn finish_outputs(
    channel: &ChannelRequant,
    pool: bool,
    dot_bound: u64,
    dots: &[i32],
    output: &mut [i8],
) {
    if !pool {
        channel.output_row(dots, output);
    } else if channel.is_monotone(dot_bound) {
        let mut maxima = [0_i32; MAX_TILE / 4];
        let windows = as_chunks::<_, 4>(dots).0;
        for (m, &[a, b, c, d]) in maxima.iter_mut().zip(windows) {
            *m = a.max(b).max(c.max(d));
        }
        channel.output_row(maxima.get(..windows.len()).unwrap_or_default(), output);
    } else {
        for (o, w) in output.iter_mut().zip(as_chunks::<_, 4>(dots).0) {
            *o = w
                .map(|d| channel.output(d))
                .into_iter()
                .max()
                .unwrap_or(i8::MIN);
        }
    }
}

/// Where the row strategies ([`conv_rows`]) take their inputs from.
enum Rows<'a> {
    /// Room for interleaved input rows ([`pair_rows`]).
    Pairs(&'a mut [i16]),
    /// Room for one widened row per tap ([`tap_rows`]): `taps * COLS` values, twice when
    /// pooling.
    Taps(&'a mut [i16]),
    /// No room: the inputs are read from the input tensor.
    Direct,
}

/// The pair-rows strategy, the tap-rows strategy and the direct one: per row segment of up to
/// [`COLS`] output columns, each filter accumulates with the columns in vector lanes, one or
/// (pooling) two convolution rows at a time.
#[inline(never)] // one call per layer (and its own entry in profiles)
fn conv_rows(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
    rows: Rows<'_>,
) {
    let taps = g.taps();
    let plane = g.rows * g.cols;
    let span = if g.pool { 2 } else { 1 }; // convolution rows and columns per output
    let dot_bound = g.dot_bound();
    let tap_pairs = g.tap_pairs();
    let (mut rows, pair_weights) = match rows {
        Rows::Pairs(buf) => {
            let rows_len = g.in_ch * (g.kernel_h + span - 1) * g.pair_row_len();
            let (rows, pairs) = buf.split_at_mut(rows_len.min(buf.len()));
            let pairs = as_chunks_mut::<_, 2>(pairs);
            for (filter, pairs) in weights
                .chunks_exact(taps.max(1))
                .zip(pairs.chunks_exact_mut(tap_pairs.max(1)))
            {
                weight_pairs(filter, g.kernel_w, pairs);
            }
            (Rows::Pairs(rows), &*pairs)
        }
        rows => (rows, &[][..]),
    };
    // Pair rows: where each tap pair's inputs start, for the first convolution row of a
    // segment (one interleaved row further down for the second).
    let row_len = g.pair_row_len();
    let mut offsets = [0_usize; MAX_PAIRS];
    let pair_offsets = (0..g.in_ch)
        .flat_map(|c| (0..g.kernel_h).map(move |ky| c * (g.kernel_h + span - 1) + ky))
        .flat_map(|row| (0..g.kernel_w.div_ceil(2)).map(move |q| row * row_len + 4 * q));
    for (o, at) in offsets.iter_mut().zip(pair_offsets) {
        *o = at;
    }
    let offsets = offsets.get(..g.tap_pairs()).unwrap_or_default();
    for out_y in 0..g.rows {
        let mut x_first = 0; // first convolution column of the segment
        while x_first < g.cols * span {
            let n = COLS.min(g.cols * span - x_first);
            match rows {
                Rows::Pairs(ref mut rows) => {
                    pair_rows(input, g, zero_point, out_y * span, x_first, rows)
                }
                Rows::Taps(ref mut rows) => {
                    let rows = as_chunks_mut::<_, COLS>(rows);
                    for (r, rows) in rows.chunks_exact_mut(taps.max(1)).take(span).enumerate() {
                        tap_rows(input, g, zero_point, out_y * span + r, x_first, rows);
                    }
                }
                Rows::Direct => {}
            }
            let filters = weights.chunks_exact(taps.max(1));
            let planes = output.chunks_exact_mut(plane.max(1));
            for (f, ((filter, out_plane), channel)) in
                filters.zip(planes).zip(requant.channel_iter()).enumerate()
            {
                let mut acc = [[0_i32; COLS]; 2];
                for (r, acc) in acc.iter_mut().take(span).enumerate() {
                    match rows {
                        Rows::Pairs(ref rows) => {
                            let rows = rows.get(r * row_len..).unwrap_or_default();
                            let pairs = pair_weights
                                .get(f * tap_pairs..(f + 1) * tap_pairs)
                                .unwrap_or_default();
                            dot_pair_rows(pairs, offsets, rows, acc);
                        }
                        Rows::Taps(ref rows) => {
                            let rows = as_chunks::<_, COLS>(rows).0;
                            let rows = rows.get(r * taps..(r + 1) * taps).unwrap_or_default();
                            dot_tap_rows(filter, rows, acc);
                        }
                        Rows::Direct => {
                            direct_row(input, g, zero_point, filter, out_y * span + r, x_first, acc)
                        }
                    }
                }
                let out_start = out_y * g.cols + x_first / span;
                let out = out_plane
                    .get_mut(out_start..out_start + n / span)
                    .unwrap_or_default();
                if g.pool && channel.is_monotone(dot_bound) {
                    // Pool the accumulators, then requantise once per window.
                    let [top, bottom] = &acc;
                    let mut maxima = [0_i32; COLS / 2];
                    let pairs = as_chunks::<_, 2>(top)
                        .0
                        .iter()
                        .zip(as_chunks::<_, 2>(bottom).0);
                    for (m, (&[a, b], &[c, d])) in maxima.iter_mut().zip(pairs) {
                        *m = a.max(b).max(c.max(d));
                    }
                    channel.output_row(maxima.get(..n / 2).unwrap_or_default(), out);
                } else if g.pool {
                    let [top, bottom] = &acc;
                    let pairs = as_chunks::<_, 2>(top)
                        .0
                        .iter()
                        .zip(as_chunks::<_, 2>(bottom).0);
                    for (o, (&[a, b], &[c, d])) in out.iter_mut().zip(pairs) {
                        let [a, b, c, d] = [a, b, c, d].map(|v| channel.output(v));
                        *o = a.max(b).max(c.max(d));
                    }
                } else {
                    finish_outputs(
                        &channel,
                        false,
                        dot_bound,
                        acc[0].get(..n).unwrap_or_default(),
                        out,
                    );
                }
            }
            x_first += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Pool2dParams;
    use crate::kernels::test_util::{OwnedRequant, arb_requant};
    use crate::reference;
    use proptest::prelude::*;

    fn one_channel_requant<'a>(bias: &'a [u8], multiplier: &'a [u8]) -> QRequant<'a> {
        QRequant {
            bias,
            multipliers: multiplier,
            shifts: &[1],
            output_zero_point: 0,
            act_min: -128,
            act_max: 127,
        }
    }

    #[test]
    fn output_size() {
        let p = |k, s, pad| Conv2dParams {
            kernel_h: k,
            kernel_w: k,
            stride: s,
            padding: Padding::uniform(pad),
        };
        assert_eq!(p(3, 1, 0).output_size(28, 28), Some((26, 26)));
        assert_eq!(p(3, 1, 1).output_size(28, 28), Some((28, 28)));
        assert_eq!(p(3, 2, 1).output_size(28, 28), Some((14, 14)));
        assert_eq!(p(5, 2, 0).output_size(28, 27), Some((12, 12)));
        assert_eq!(p(5, 1, 0).output_size(4, 28), None);
        assert_eq!(p(5, 1, 1).output_size(3, 3), Some((1, 1)));
        assert_eq!(p(0, 1, 0).output_size(3, 3), None);
        assert_eq!(p(1, 0, 0).output_size(3, 3), None);
    }

    #[test]
    fn hand_computed_stride_padding_zero_point() {
        // Input 1x3x3 = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], input zero point 1 (so x - zp is
        // 0..=8), kernel 3x3 = [[1, 0, -1], [2, 0, -2], [1, 0, -1]] (Sobel x), stride 2,
        // padding 1: output 2x2 at window centres (0,0), (0,2), (2,0), (2,2).
        // With x - zp = [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and padded cells skipped:
        // (0,0): cells (0,0),(0,1),(1,0),(1,1) weights 0,-2,0,-1 on 0,1,3,4 -> -2 - 4 = -6
        // (0,2): cells (0,1),(0,2),(1,1),(1,2) weights 2,0,1,0 on 1,2,4,5 -> 2 + 4 = 6
        // (2,0): cells (1,0),(1,1),(2,0),(2,1) weights 0,-1,0,-2 on 3,4,6,7 -> -4 - 14 = -18
        // (2,2): cells (1,1),(1,2),(2,1),(2,2) weights 1,0,2,0 on 4,5,7,8 -> 4 + 14 = 18
        // bias 10, multiplier 1.0 (2^30, shift 1), output zero point 0.
        let input = [1_i8, 2, 3, 4, 5, 6, 7, 8, 9];
        let kernel = [1_i8, 0, -1, 2, 0, -2, 1, 0, -1];
        let bias = 10_i32.to_le_bytes();
        let mult = (1_i32 << 30).to_le_bytes();
        let rq = one_channel_requant(&bias, &mult);
        let params = Conv2dParams {
            kernel_h: 3,
            kernel_w: 3,
            stride: 2,
            padding: Padding::uniform(1),
        };
        let shape = Shape {
            channels: 1,
            height: 3,
            width: 3,
        };
        let mut out = [0_i8; 4];
        conv2d_i8(&input, shape, 1, &kernel, &params, &rq, &mut out, &mut []);
        assert_eq!(out, [4, 16, -8, 28]);
    }

    #[test]
    fn hand_computed_two_channels_in_and_out() {
        // Input 2x2x2: channel 0 = [[1, 2], [3, 4]], channel 1 = [[-1, -2], [-3, -4]], zp 0.
        // 1x1 kernels (no padding, stride 1): out0 = 2*c0 + 1*c1 = c0 (since c1 = -c0),
        // out1 = -3*c0 + 0*c1 = -3*c0; multiplier 0.5 (2^30, shift 0): ties round per SRDHM.
        let input = [1_i8, 2, 3, 4, -1, -2, -3, -4];
        let weights = [2_i8, 1, -3, 0];
        let mut bias = [0_u8; 8];
        bias[4..].copy_from_slice(&1_i32.to_le_bytes());
        let mut mult = [0_u8; 8];
        mult[..4].copy_from_slice(&(1_i32 << 30).to_le_bytes());
        mult[4..].copy_from_slice(&(1_i32 << 30).to_le_bytes());
        let rq = QRequant {
            bias: &bias,
            multipliers: &mult,
            shifts: &[0, 0],
            output_zero_point: 5,
            act_min: -128,
            act_max: 127,
        };
        let params = Conv2dParams {
            kernel_h: 1,
            kernel_w: 1,
            stride: 1,
            padding: Padding::uniform(0),
        };
        let shape = Shape {
            channels: 2,
            height: 2,
            width: 2,
        };
        let mut out = [0_i8; 8];
        conv2d_i8(&input, shape, 0, &weights, &params, &rq, &mut out, &mut []);
        // out0 acc = [1, 2, 3, 4] * 0.5 = [0.5, 1, 1.5, 2] -> [1, 1, 2, 2], + 5
        // out1 acc = 1 + [-3, -6, -9, -12] = [-2, -5, -8, -11] * 0.5
        //   = [-1, -2.5, -4, -5.5] -> [-1, -2, -4, -5] (negative ties toward zero), + 5
        assert_eq!(out, [6, 6, 7, 7, 4, 3, 1, 0]);
    }

    /// `((in_ch, h, w), (kh, kw, stride, padding), input, weights, requant)`
    type Case = (
        (usize, usize, usize),
        (usize, usize, usize, Padding),
        Vec<i8>,
        Vec<i8>,
        OwnedRequant,
    );

    /// Random cases with images of `1..4` channels, `height` rows and `width` columns.
    fn arb_case(
        height: core::ops::Range<usize>,
        width: core::ops::Range<usize>,
    ) -> impl Strategy<Value = Case> {
        (
            (1_usize..4, height, width),
            (
                1_usize..5,
                1_usize..5,
                1_usize..4,
                (0_u8..3, 0_u8..3, 0_u8..3, 0_u8..3).prop_map(|(top, bottom, left, right)| {
                    Padding {
                        top,
                        bottom,
                        left,
                        right,
                    }
                }),
            ),
            1_usize..5,
        )
            .prop_filter(
                "kernel fits the padded input",
                |((_, h, w), (kh, kw, _, p), _)| {
                    *kh <= h + usize::from(p.top) + usize::from(p.bottom)
                        && *kw <= w + usize::from(p.left) + usize::from(p.right)
                },
            )
            .prop_flat_map(|((c, h, w), geo, out_ch)| {
                let (kh, kw, _, _) = geo;
                (
                    Just((c, h, w)),
                    Just(geo),
                    proptest::collection::vec(any::<i8>(), c * h * w),
                    proptest::collection::vec(any::<i8>(), out_ch * c * kh * kw),
                    arb_requant(out_ch),
                )
            })
    }

    fn check_case((dims, geo, input, weights, rq): Case, zp: i32) -> Result<(), TestCaseError> {
        let (c, h, w) = dims;
        let (kh, kw, stride, padding) = geo;
        let shape = Shape {
            channels: u16::try_from(c).unwrap(),
            height: u16::try_from(h).unwrap(),
            width: u16::try_from(w).unwrap(),
        };
        let params = Conv2dParams {
            kernel_h: kh,
            kernel_w: kw,
            stride,
            padding,
        };
        let (oh, ow) = params.output_size(h, w).unwrap();
        let out_ch = rq.bias.len();
        let mut want = vec![0_i8; out_ch * oh * ow];
        reference::conv2d_i8(
            &input,
            shape,
            zp,
            &weights,
            &params,
            &rq.as_requant(),
            &mut want,
        );
        let conv_shape = Shape {
            channels: u16::try_from(out_ch).unwrap(),
            height: u16::try_from(oh).unwrap(),
            width: u16::try_from(ow).unwrap(),
        };
        let mut want_pooled = vec![0_i8; out_ch * (oh / 2) * (ow / 2)];
        if oh >= 2 && ow >= 2 {
            let pool = Pool2dParams {
                kernel: 2,
                stride: 2,
            };
            reference::max_pool2d_i8(&want, conv_shape, &pool, &mut want_pooled);
        }
        let taps = c * kh * kw;
        let patch_bytes = 2 * taps.next_multiple_of(CHUNK);
        let padded_len = Geometry::new(shape, &params, false).unwrap().padded_len();
        // (work bytes, smallest filter for im2col): direct; tap rows (for one and two rows);
        // im2col with one group of patches, with 5 (a group and a remainder, or one pooling
        // window and a spare patch), with more than MAX_TILE; the same from a misaligned buffer.
        let runs = [
            (0, usize::MAX),
            (2 * taps * COLS, usize::MAX),
            (4 * taps * COLS + 1, usize::MAX),
            (4 * patch_bytes, 0),
            (5 * patch_bytes + 1, 0),
            (2 * padded_len + 4 * patch_bytes + 64, 0),
            (100_000, 0),
            (100_001, 0),
        ];
        let runs = runs
            .into_iter()
            .map(|(len, min_taps)| (len, min_taps, false));
        // Pair rows (where they apply): in `work` (exactly, and misaligned), on the stack.
        let pairs_len = |pool| {
            let g = Geometry::new(shape, &params, pool).unwrap();
            2 * g.pair_rows_len(out_ch).unwrap_or(0)
        };
        let pair_runs = [false, true].map(|pool| (pairs_len(pool), usize::MAX, true));
        let pair_runs = [
            (0, usize::MAX, true),
            pair_runs[0],
            pair_runs[1],
            (pair_runs[1].0 + 65, usize::MAX, true),
        ];
        let runs: Vec<_> = runs.chain(pair_runs).collect();
        for pool in [false, true] {
            for &(work_len, im2col_min_taps, pair_rows) in &runs {
                let (want, len) = if pool {
                    (&want_pooled, out_ch * (oh / 2) * (ow / 2))
                } else {
                    (&want, out_ch * oh * ow)
                };
                let mut out = vec![0_i8; len];
                let mut work = vec![0x55_i8; work_len];
                let work = work.get_mut(work_len % 2..).unwrap();
                let conv = Conv {
                    input_shape: shape,
                    params: &params,
                    pool,
                    im2col_min_taps,
                    pair_rows,
                };
                conv.run(&input, zp, &weights, &rq.as_requant(), &mut out, work);
                prop_assert_eq!(
                    &out,
                    want,
                    "pool {} work {} min_taps {} pair rows {}",
                    pool,
                    work_len,
                    im2col_min_taps,
                    pair_rows
                );
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn matches_naive(case in arb_case(1..9, 1..9), zp in -128_i32..=127) {
            check_case(case, zp)?;
        }

        /// Rows wider than one tile of output columns (TILE = 32).
        #[test]
        fn matches_naive_on_wide_rows(case in arb_case(1..4, 30..100), zp in -128_i32..=127) {
            check_case(case, zp)?;
        }
    }
}
