//! 2-D convolution.

use super::QRequant;
use crate::format::Shape;

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
    /// Padding on every side.
    pub padding: usize,
}

impl Conv2dParams {
    /// Output `(height, width)` for an input of `height x width`:
    /// `(in + 2 * padding - kernel) / stride + 1` in each direction.
    ///
    /// `None` if the kernel or stride is zero or the kernel is larger than the padded input.
    pub fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        let dim = |input: usize, kernel: usize| {
            if kernel == 0 || self.stride == 0 {
                return None;
            }
            let padded = input.checked_add(self.padding.checked_mul(2)?)?;
            Some(padded.checked_sub(kernel)? / self.stride + 1)
        };
        Some((dim(height, self.kernel_h)?, dim(width, self.kernel_w)?))
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
/// The accumulator is `i32` with wrapping addition. Positions outside the input are skipped
/// (the same as padding with the input zero point).
///
/// Rounding: requantisation only, as in [`crate::quant::multiply_by_quantized_multiplier`].
///
/// # Shapes
///
/// - `input`: `[in_ch, height, width]` (`input_shape`), NCHW without the N
/// - `weights`: `[out_ch, in_ch, kernel_h, kernel_w]`
/// - `requant`: `out_ch` channels
/// - `output`: `[out_ch, out_h, out_w]` with `(out_h, out_w) =
///   params.output_size(height, width)`
///
/// # Example
///
/// ```
/// use infer_core::format::Shape;
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
/// let params = Conv2dParams { kernel_h: 2, kernel_w: 2, stride: 1, padding: 1 };
/// let shape = Shape { channels: 1, height: 2, width: 2 };
/// let mut out = [0_i8; 9];
/// conv2d_i8(&[1, 2, 3, 4], shape, 0, &[1, 1, 1, 1], &params, &requant, &mut out);
/// assert_eq!(out, [1, 3, 2, 4, 10, 6, 3, 7, 4]);
/// ```
pub fn conv2d_i8(
    input: &[i8],
    input_shape: Shape,
    input_zero_point: i32,
    weights: &[i8],
    params: &Conv2dParams,
    requant: &QRequant<'_>,
    output: &mut [i8],
) {
    let (in_ch, height, width) = (
        usize::from(input_shape.channels),
        usize::from(input_shape.height),
        usize::from(input_shape.width),
    );
    let Conv2dParams {
        kernel_h,
        kernel_w,
        stride,
        padding,
    } = *params;
    let Some((out_h, out_w)) = params.output_size(height, width) else {
        debug_assert!(false, "conv2d_i8: kernel larger than padded input");
        return;
    };
    let plane = height * width;
    let kernel_plane = kernel_h * kernel_w;
    debug_assert_eq!(input.len(), in_ch * plane);
    debug_assert_eq!(output.len() % (out_h * out_w).max(1), 0);
    debug_assert_eq!(
        weights.len(),
        output.len() / (out_h * out_w).max(1) * in_ch * kernel_plane
    );
    debug_assert_eq!(requant.channels(), output.len() / (out_h * out_w).max(1));

    let filters = weights.chunks_exact((in_ch * kernel_plane).max(1));
    let out_planes = output.chunks_exact_mut((out_h * out_w).max(1));
    for ((filter, out_plane), (bias, multiplier, shift)) in
        filters.zip(out_planes).zip(requant.iter())
    {
        for (out_y, out_row) in out_plane.chunks_exact_mut(out_w.max(1)).enumerate() {
            let y0 = out_y * stride; // window top, in padded coordinates
            let (ky_lo, ky_hi) = in_bounds(y0, padding, kernel_h, height);
            // A tile of output columns at a time, accumulating one kernel tap over the whole
            // tile: the inner loop runs over contiguous inputs (stride 1) and vectorises.
            for (tile, out_tile) in out_row.chunks_mut(TILE).enumerate() {
                let x_first = tile * TILE;
                let mut acc = [bias; TILE];
                let acc = acc.get_mut(..out_tile.len()).unwrap_or_default();
                let x_end = x_first + acc.len();
                for kx in 0..kernel_w {
                    // Output column x reads input column x * stride + kx - padding; keep the
                    // columns of this tile for which that is inside the row.
                    let x_lo = padding.saturating_sub(kx).div_ceil(stride).max(x_first);
                    let x_hi = (width + padding)
                        .saturating_sub(kx)
                        .div_ceil(stride)
                        .min(x_end);
                    if x_lo >= x_hi {
                        continue;
                    }
                    let acc = acc
                        .get_mut(x_lo - x_first..x_hi - x_first)
                        .unwrap_or_default();
                    let in_start = x_lo * stride + kx - padding;
                    let channels = input
                        .chunks_exact(plane.max(1))
                        .zip(filter.chunks_exact(kernel_plane.max(1)));
                    for (in_plane, kernel) in channels {
                        for ky in ky_lo..ky_hi {
                            let in_y = y0 + ky - padding;
                            let inputs =
                                in_plane.get(in_y * width + in_start..).unwrap_or_default();
                            let w = i32::from(kernel.get(ky * kernel_w + kx).copied().unwrap_or(0));
                            if stride == 1 {
                                tap(acc, inputs.iter(), w, input_zero_point);
                            } else {
                                tap(acc, inputs.iter().step_by(stride), w, input_zero_point);
                            }
                        }
                    }
                }
                for (out, &a) in out_tile.iter_mut().zip(acc.iter()) {
                    *out = requant.output(a, multiplier, shift);
                }
            }
        }
    }
}

/// Output columns per tile in [`conv2d_i8`] (its `i32` accumulators live on the stack).
const TILE: usize = 32;

/// `acc[j] += w * (inputs[j] - zero_point)` for each accumulator, wrapping (no overflow is
/// possible in the product with `zero_point` in `[-128, 127]`; wrapping operations keep overflow
/// checks from blocking vectorisation).
#[inline]
fn tap<'x>(acc: &mut [i32], inputs: impl Iterator<Item = &'x i8>, w: i32, zero_point: i32) {
    for (a, &x) in acc.iter_mut().zip(inputs) {
        *a = a.wrapping_add(w.wrapping_mul(i32::from(x).wrapping_sub(zero_point)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{OwnedRequant, arb_requant, naive_requant};
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
            padding: pad,
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
            padding: 1,
        };
        let shape = Shape {
            channels: 1,
            height: 3,
            width: 3,
        };
        let mut out = [0_i8; 4];
        conv2d_i8(&input, shape, 1, &kernel, &params, &rq, &mut out);
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
            padding: 0,
        };
        let shape = Shape {
            channels: 2,
            height: 2,
            width: 2,
        };
        let mut out = [0_i8; 8];
        conv2d_i8(&input, shape, 0, &weights, &params, &rq, &mut out);
        // out0 acc = [1, 2, 3, 4] * 0.5 = [0.5, 1, 1.5, 2] -> [1, 1, 2, 2], + 5
        // out1 acc = 1 + [-3, -6, -9, -12] = [-2, -5, -8, -11] * 0.5
        //   = [-1, -2.5, -4, -5.5] -> [-1, -2, -4, -5] (negative ties toward zero), + 5
        assert_eq!(out, [6, 6, 7, 7, 4, 3, 1, 0]);
    }

    /// The textbook loop over every output and every kernel tap, with explicit bounds checks.
    fn naive_conv(
        input: &[i8],
        (in_ch, h, w): (usize, usize, usize),
        zp: i32,
        weights: &[i8],
        (kh, kw, stride, pad): (usize, usize, usize, usize),
        rq: &OwnedRequant,
    ) -> Vec<i8> {
        let out_ch = rq.bias.len();
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (w + 2 * pad - kw) / stride + 1;
        let mut out = vec![0_i8; out_ch * oh * ow];
        for o in 0..out_ch {
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = rq.bias[o];
                    for i in 0..in_ch {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                // Padded coordinates minus the padding; None = above/left.
                                let (Some(iy), Some(ix)) = (
                                    (y * stride + ky).checked_sub(pad),
                                    (x * stride + kx).checked_sub(pad),
                                ) else {
                                    continue;
                                };
                                if iy >= h || ix >= w {
                                    continue;
                                }
                                let wv = i32::from(weights[((o * in_ch + i) * kh + ky) * kw + kx]);
                                let xv = i32::from(input[(i * h + iy) * w + ix]);
                                acc = acc.wrapping_add(wv * (xv - zp));
                            }
                        }
                    }
                    out[(o * oh + y) * ow + x] = naive_requant(
                        acc,
                        rq.multipliers[o],
                        rq.shifts[o],
                        rq.output_zero_point,
                        (rq.act_min, rq.act_max),
                    );
                }
            }
        }
        out
    }

    /// `((in_ch, h, w), (kh, kw, stride, padding), input, weights, requant)`
    type Case = (
        (usize, usize, usize),
        (usize, usize, usize, usize),
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
            (1_usize..5, 1_usize..5, 1_usize..4, 0_usize..3),
            1_usize..5,
        )
            .prop_filter(
                "kernel fits the padded input",
                |((_, h, w), (kh, kw, _, p), _)| *kh <= h + 2 * p && *kw <= w + 2 * p,
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
        let mut out = vec![0_i8; rq.bias.len() * oh * ow];
        conv2d_i8(
            &input,
            shape,
            zp,
            &weights,
            &params,
            &rq.as_requant(),
            &mut out,
        );
        let want = naive_conv(&input, dims, zp, &weights, geo, &rq);
        prop_assert_eq!(out, want);
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
