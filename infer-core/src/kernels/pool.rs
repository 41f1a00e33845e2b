//! 2-D max and average pooling (no padding).

use super::{as_chunks, clamp_i8};
use crate::format::Shape;

/// Geometry of a square 2-D pooling window without padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pool2dParams {
    /// Window height and width.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
}

impl Pool2dParams {
    /// Output `(height, width)` for an input of `height x width`:
    /// `(in - kernel) / stride + 1` in each direction (trailing rows and columns that do not
    /// fill a window are dropped, TFLite's `VALID` padding).
    ///
    /// `None` if the kernel or stride is zero or the window is larger than the input.
    pub fn output_size(&self, height: usize, width: usize) -> Option<(usize, usize)> {
        let dim = |input: usize| crate::spec::window_len(input, 0, 0, self.kernel, self.stride);
        Some((dim(height)?, dim(width)?))
    }
}

/// The rows of one pooling window, each a contiguous slice of `kernel` inputs.
struct Window<'p> {
    plane: &'p [i8],
    start: usize,
    rows_left: usize,
    kernel: usize,
    width: usize,
}

impl<'p> Iterator for Window<'p> {
    type Item = &'p [i8];

    #[inline]
    fn next(&mut self) -> Option<&'p [i8]> {
        self.rows_left = self.rows_left.checked_sub(1)?;
        let row = self
            .plane
            .get(self.start..self.start + self.kernel)
            .unwrap_or_default();
        self.start += self.width;
        Some(row)
    }
}

/// Applies `reduce` to every window of every channel, writing one output per window.
#[inline]
fn pool_windows(
    input: &[i8],
    input_shape: Shape,
    params: &Pool2dParams,
    output: &mut [i8],
    mut reduce: impl FnMut(Window<'_>) -> i8,
) {
    let (height, width) = (
        usize::from(input_shape.height),
        usize::from(input_shape.width),
    );
    let Some((out_h, out_w)) = params.output_size(height, width) else {
        debug_assert!(false, "pool: window larger than input");
        return;
    };
    let Pool2dParams { kernel, stride } = *params;
    debug_assert_eq!(
        input.len(),
        usize::from(input_shape.channels) * height * width
    );
    debug_assert_eq!(
        output.len(),
        usize::from(input_shape.channels) * out_h * out_w
    );
    let in_planes = input.chunks_exact((height * width).max(1));
    let out_planes = output.chunks_exact_mut((out_h * out_w).max(1));
    for (in_plane, out_plane) in in_planes.zip(out_planes) {
        for (out_y, out_row) in out_plane.chunks_exact_mut(out_w.max(1)).enumerate() {
            for (out_x, out) in out_row.iter_mut().enumerate() {
                *out = reduce(Window {
                    plane: in_plane,
                    start: out_y * stride * width + out_x * stride,
                    rows_left: kernel,
                    kernel,
                    width,
                });
            }
        }
    }
}

/// 2x2 windows with stride 2, the common case, as straight loops over pairs of input rows
/// that the compiler vectorises: `reduce(top_left, top_right, bottom_left, bottom_right)`.
#[inline(always)]
fn pool_2x2(
    input: &[i8],
    input_shape: Shape,
    output: &mut [i8],
    reduce: impl Fn(i8, i8, i8, i8) -> i8,
) {
    let (height, width) = (
        usize::from(input_shape.height),
        usize::from(input_shape.width),
    );
    let (out_h, out_w) = (height / 2, width / 2);
    debug_assert_eq!(
        input.len(),
        usize::from(input_shape.channels) * height * width
    );
    debug_assert_eq!(
        output.len(),
        usize::from(input_shape.channels) * out_h * out_w
    );
    let in_planes = input.chunks_exact((height * width).max(1));
    let out_planes = output.chunks_exact_mut((out_h * out_w).max(1));
    for (in_plane, out_plane) in in_planes.zip(out_planes) {
        // Pairs of input rows (a trailing odd row is dropped).
        let row_pairs = in_plane.chunks_exact((2 * width).max(1));
        for (rows, out_row) in row_pairs.zip(out_plane.chunks_exact_mut(out_w.max(1))) {
            let (top, bottom) = rows.split_at(width);
            let top = as_chunks::<_, 2>(top).0;
            let bottom = as_chunks::<_, 2>(bottom).0;
            for (o, (&[a, b], &[c, d])) in out_row.iter_mut().zip(top.iter().zip(bottom)) {
                *o = reduce(a, b, c, d);
            }
        }
    }
}

/// 2-D max pooling, int8 (TFLite's `MaxPool` with `VALID` padding and no fused activation).
///
/// ```text
/// output[c, y, x] = max_{ky, kx < kernel} input[c, y*stride + ky, x*stride + kx]
/// ```
///
/// Rounding: none; the output shares the input's scale and zero point.
///
/// # Shapes
///
/// - `input`: `[channels, height, width]` (`input_shape`)
/// - `output`: `[channels, out_h, out_w]` with `(out_h, out_w) =
///   params.output_size(height, width)`
///
/// # Example
///
/// ```
/// use infer_core::format::Shape;
/// use infer_core::kernels::{Pool2dParams, max_pool2d_i8};
///
/// let input = [1, -2, 3, 0, -5, 6, -7, 8, 9, 10, -11, 12, 13, 14, 15, -16];
/// let shape = Shape { channels: 1, height: 4, width: 4 };
/// let mut out = [0_i8; 4];
/// max_pool2d_i8(&input, shape, &Pool2dParams { kernel: 2, stride: 2 }, &mut out);
/// assert_eq!(out, [6, 8, 14, 15]);
/// ```
pub fn max_pool2d_i8(input: &[i8], input_shape: Shape, params: &Pool2dParams, output: &mut [i8]) {
    if params.kernel == 2 && params.stride == 2 {
        pool_2x2(input, input_shape, output, |a, b, c, d| {
            a.max(b).max(c.max(d))
        });
        return;
    }
    pool_windows(input, input_shape, params, output, |rows| {
        rows.fold(i8::MIN, |m, row| row.iter().fold(m, |m, &v| m.max(v)))
    });
}

/// 2-D average pooling, int8 (TFLite's `AveragePool` with `VALID` padding and no fused
/// activation).
///
/// ```text
/// output[c, y, x] = clamp(round(Σ_{ky, kx < kernel} input[c, y*stride + ky, x*stride + kx] / n))
/// ```
///
/// with `n = kernel * kernel` (every window is in bounds) and the clamp to `[-128, 127]`.
///
/// Rounding: half away from zero, in integers: `(sum + n/2) / n` for a positive sum,
/// `(sum - n/2) / n` otherwise, with truncating division. The output shares the input's scale
/// and zero point.
///
/// # Shapes
///
/// - `input`: `[channels, height, width]` (`input_shape`)
/// - `output`: `[channels, out_h, out_w]` with `(out_h, out_w) =
///   params.output_size(height, width)`
///
/// # Example
///
/// ```
/// use infer_core::format::Shape;
/// use infer_core::kernels::{Pool2dParams, avg_pool2d_i8};
///
/// // Windows: [1, 2, 3, 4] (2.5), [-1, -2, -3, -4] (-2.5), [1, 1, 1, 2] (1.25), [0, 0, 0, -2] (-0.5)
/// let input = [1, 2, -1, -2, 3, 4, -3, -4, 1, 1, 0, 0, 1, 2, 0, -2];
/// let shape = Shape { channels: 1, height: 4, width: 4 };
/// let mut out = [0_i8; 4];
/// avg_pool2d_i8(&input, shape, &Pool2dParams { kernel: 2, stride: 2 }, &mut out);
/// assert_eq!(out, [3, -3, 1, -1]);
/// ```
pub fn avg_pool2d_i8(input: &[i8], input_shape: Shape, params: &Pool2dParams, output: &mut [i8]) {
    if params.kernel == 2 && params.stride == 2 {
        pool_2x2(input, input_shape, output, |a, b, c, d| {
            // Round half away from zero: (sum + 2) / 4 or (sum - 2) / 4, truncating.
            let sum = i16::from(a) + i16::from(b) + i16::from(c) + i16::from(d);
            let avg = (sum + if sum > 0 { 2 } else { -2 }) / 4;
            clamp_i8(i32::from(avg), i8::MIN, i8::MAX)
        });
        return;
    }
    // kernel <= u16::MAX in any valid call (it is at most the input height).
    let count = i32::try_from(params.kernel.saturating_mul(params.kernel))
        .unwrap_or(i32::MAX)
        .max(1);
    pool_windows(input, input_shape, params, output, |rows| {
        let sum = rows.fold(0_i32, |acc, row| {
            row.iter()
                .fold(acc, |acc, &v| acc.saturating_add(i32::from(v)))
        });
        let avg = if sum > 0 {
            (sum + count / 2) / count
        } else {
            (sum - count / 2) / count
        };
        clamp_i8(avg, i8::MIN, i8::MAX)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    #[test]
    fn output_size() {
        let p = |kernel, stride| Pool2dParams { kernel, stride };
        assert_eq!(p(2, 2).output_size(28, 28), Some((14, 14)));
        assert_eq!(p(2, 2).output_size(7, 7), Some((3, 3)));
        assert_eq!(p(3, 1).output_size(3, 5), Some((1, 3)));
        assert_eq!(p(3, 2).output_size(2, 5), None);
        assert_eq!(p(0, 2).output_size(2, 5), None);
        assert_eq!(p(2, 0).output_size(2, 5), None);
    }

    #[test]
    fn max_hand_computed_two_channels_overlapping() {
        // 2 channels of 3x3, kernel 2, stride 1 (overlapping windows).
        let input = [
            1, 2, 3, //
            4, 5, 6, //
            7, 8, 9, //
            -128, -128, -128, //
            -128, -127, -128, //
            -128, -128, -128,
        ];
        let shape = Shape {
            channels: 2,
            height: 3,
            width: 3,
        };
        let mut out = [0_i8; 8];
        max_pool2d_i8(
            &input,
            shape,
            &Pool2dParams {
                kernel: 2,
                stride: 1,
            },
            &mut out,
        );
        assert_eq!(out, [5, 6, 8, 9, -127, -127, -127, -127]);
    }

    #[test]
    fn avg_hand_computed_rounding_and_extremes() {
        // kernel 3 (n = 9, no ties possible), stride 3 on 1x3x6: two windows.
        // Window 0: 127 * 9 = 1143 / 9 = 127. Window 1: -128*8 + 4 = -1020 / 9 = -113.33 -> -113.
        let mut input = [127_i8; 18];
        for row in 0..3 {
            for col in 3..6 {
                input[row * 6 + col] = -128;
            }
        }
        input[17] = 4;
        let shape = Shape {
            channels: 1,
            height: 3,
            width: 6,
        };
        let mut out = [0_i8; 2];
        avg_pool2d_i8(
            &input,
            shape,
            &Pool2dParams {
                kernel: 3,
                stride: 3,
            },
            &mut out,
        );
        assert_eq!(out, [127, -113]);

        // kernel 2 (n = 4): quarters round to the nearest integer.
        let input = [1, 1, -1, -1, 1, 0, -1, 0, 1, 1, -1, -1, 0, 0, 0, 0];
        let shape = Shape {
            channels: 1,
            height: 2,
            width: 8,
        };
        let mut out = [0_i8; 4];
        avg_pool2d_i8(
            &input,
            shape,
            &Pool2dParams {
                kernel: 2,
                stride: 2,
            },
            &mut out,
        );
        // row0 = [1, 1, -1, -1, 1, 0, -1, 0], row1 = [1, 1, -1, -1, 0, 0, 0, 0]
        // cols 0-1: 1+1+1+1 = 4 -> 1; cols 2-3: -4 -> -1; cols 4-5: 1 -> 0.25 -> 0;
        // cols 6-7: -1 -> -0.25 -> 0
        assert_eq!(out, [1, -1, 0, 0]);

        let input = [1, 1, -1, -1, 1, 1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut out = [0_i8; 4];
        avg_pool2d_i8(
            &input,
            shape,
            &Pool2dParams {
                kernel: 2,
                stride: 2,
            },
            &mut out,
        );
        // Ties (n = 4, sums of +-2) round half away from zero in both directions.
        // row0 = [1, 1, -1, -1, 1, 1, -1, -1], row1 = zeros:
        // sums 2 -> 0.5 -> 1; -2 -> -0.5 -> -1; 2 -> 1; -2 -> -1
        assert_eq!(out, [1, -1, 1, -1]);
    }

    /// The reference pooling of `[c, h, w]` values.
    fn naive_pool(
        input: &[i8],
        (c, h, w): (usize, usize, usize),
        kernel: usize,
        stride: usize,
        avg: bool,
    ) -> Vec<i8> {
        let shape = Shape {
            channels: u16::try_from(c).unwrap(),
            height: u16::try_from(h).unwrap(),
            width: u16::try_from(w).unwrap(),
        };
        let params = Pool2dParams { kernel, stride };
        let (oh, ow) = params.output_size(h, w).unwrap();
        let mut out = vec![0_i8; c * oh * ow];
        if avg {
            reference::avg_pool2d_i8(input, shape, &params, &mut out);
        } else {
            reference::max_pool2d_i8(input, shape, &params, &mut out);
        }
        out
    }

    fn arb_case() -> impl Strategy<Value = ((usize, usize, usize), usize, usize, Vec<i8>)> {
        (
            (1_usize..4, 1_usize..10, 1_usize..10),
            1_usize..5,
            1_usize..4,
        )
            .prop_filter("window fits", |((_, h, w), k, _)| k <= h && k <= w)
            .prop_flat_map(|(dims, k, s)| {
                let (c, h, w) = dims;
                (
                    Just(dims),
                    Just(k),
                    Just(s),
                    proptest::collection::vec(any::<i8>(), c * h * w),
                )
            })
    }

    proptest! {
        /// The 2x2, stride 2 fast path, on odd and even sizes.
        #[test]
        fn two_by_two_matches_naive(
            (dims, input) in (1_usize..4, 2_usize..12, 2_usize..12).prop_flat_map(|(c, h, w)| {
                (Just((c, h, w)), proptest::collection::vec(any::<i8>(), c * h * w))
            }),
        ) {
            let (c, h, w) = dims;
            let shape = Shape {
                channels: u16::try_from(c).unwrap(),
                height: u16::try_from(h).unwrap(),
                width: u16::try_from(w).unwrap(),
            };
            let params = Pool2dParams { kernel: 2, stride: 2 };
            for avg in [false, true] {
                let want = naive_pool(&input, dims, 2, 2, avg);
                let mut out = vec![0_i8; want.len()];
                if avg {
                    avg_pool2d_i8(&input, shape, &params, &mut out);
                } else {
                    max_pool2d_i8(&input, shape, &params, &mut out);
                }
                prop_assert_eq!(out, want);
            }
        }

        #[test]
        fn max_matches_naive((dims, k, s, input) in arb_case()) {
            let (c, h, w) = dims;
            let shape = Shape {
                channels: u16::try_from(c).unwrap(),
                height: u16::try_from(h).unwrap(),
                width: u16::try_from(w).unwrap(),
            };
            let want = naive_pool(&input, dims, k, s, false);
            let mut out = vec![0_i8; want.len()];
            max_pool2d_i8(&input, shape, &Pool2dParams { kernel: k, stride: s }, &mut out);
            prop_assert_eq!(out, want);
        }

        #[test]
        fn avg_matches_naive((dims, k, s, input) in arb_case()) {
            let (c, h, w) = dims;
            let shape = Shape {
                channels: u16::try_from(c).unwrap(),
                height: u16::try_from(h).unwrap(),
                width: u16::try_from(w).unwrap(),
            };
            let want = naive_pool(&input, dims, k, s, true);
            let mut out = vec![0_i8; want.len()];
            avg_pool2d_i8(&input, shape, &Pool2dParams { kernel: k, stride: s }, &mut out);
            prop_assert_eq!(out, want);
        }
    }
}
