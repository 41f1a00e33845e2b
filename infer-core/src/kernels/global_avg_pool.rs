//! Global average pooling: one average per channel over the whole plane.

use crate::format::Shape;

/// The most values summed in one `i32`: `128 * 2^23 = 2^30`, so neither the sum nor the
/// rounding offset added to it can overflow. Larger planes are summed in blocks of this many
/// values, and the block sums are added in `i64`.
pub const GLOBAL_AVG_POOL_I32_MAX_LEN: usize = 1 << 23;

/// The sum of a plane of at most [`GLOBAL_AVG_POOL_I32_MAX_LEN`] values.
#[inline]
fn block_sum(block: &[i8]) -> i32 {
    // |sum| <= 128 * 2^23 = 2^30 for a block this long: the additions cannot overflow.
    block.iter().fold(0_i32, |sum, &v| sum + i32::from(v))
}

/// `sum / count` rounded half away from zero: `(sum + count/2) / count` for a positive sum,
/// `(sum - count/2) / count` otherwise, with truncating division (as
/// [`crate::kernels::avg_pool2d_i8`]). The result lies between the smallest and largest value
/// averaged, so it is an int8 value.
#[inline]
fn rounded_mean<T>(sum: T, count: T) -> Option<i8>
where
    T: Copy
        + PartialOrd
        + From<i8>
        + core::ops::Add<Output = T>
        + core::ops::Sub<Output = T>
        + core::ops::Div<Output = T>,
    i8: TryFrom<T>,
{
    let zero = T::from(0_i8);
    let half = count / T::from(2_i8);
    let mean = if sum > zero {
        (sum + half) / count
    } else {
        (sum - half) / count
    };
    i8::try_from(mean).ok()
}

/// Global average pooling, int8: TFLite's `AveragePool` with a window the size of the input
/// plane (and so one output per channel), no padding, no fused activation.
///
/// ```text
/// output[c] = round(Σ_{y < height, x < width} input[c, y, x] / (height * width))
/// ```
///
/// Rounding: half away from zero, in integers, exactly as [`crate::kernels::avg_pool2d_i8`]:
/// `(sum + n/2) / n` for a positive sum, `(sum - n/2) / n` otherwise, with `n = height * width`
/// and truncating division. The output shares the input's scale and zero point.
///
/// Overflow: planes of up to [`GLOBAL_AVG_POOL_I32_MAX_LEN`] (`2^23`) values are summed and
/// divided in `i32` (`|sum| <= 2^30`); larger ones (up to `65535 * 65535`, the largest a
/// [`Shape`] describes) are summed in `i32` blocks of `2^23` values added in `i64`, and
/// divided in `i64`. No sum can overflow.
///
/// # Shapes
///
/// - `input`: `[channels, height, width]` (`input_shape`)
/// - `output`: `[channels]`
///
/// A plane with no values (`height` or `width` 0) averages to 0. Channels missing from a short
/// `input` or `output` are skipped (a `debug_assert!` fires in debug builds).
///
/// # Example
///
/// ```
/// use infer_core::format::Shape;
/// use infer_core::kernels::global_avg_pool_i8;
///
/// // Two channels of 2x2: [1, 2, 3, 4] (2.5) and [-1, -2, -3, -3] (-2.25).
/// let input = [1, 2, 3, 4, -1, -2, -3, -3];
/// let shape = Shape { channels: 2, height: 2, width: 2 };
/// let mut out = [0_i8; 2];
/// global_avg_pool_i8(&input, shape, &mut out);
/// assert_eq!(out, [3, -2]);
/// ```
pub fn global_avg_pool_i8(input: &[i8], input_shape: Shape, output: &mut [i8]) {
    let channels = usize::from(input_shape.channels);
    // At most 65535^2 < 2^32: fits in usize on 32-bit targets too.
    let plane = usize::from(input_shape.height) * usize::from(input_shape.width);
    debug_assert_eq!(input.len(), channels.saturating_mul(plane));
    debug_assert_eq!(output.len(), channels);
    let outputs = output.iter_mut().take(channels);
    if plane == 0 {
        outputs.for_each(|o| *o = 0);
        return;
    }
    let planes = input.chunks_exact(plane);
    if plane <= GLOBAL_AVG_POOL_I32_MAX_LEN {
        // plane <= 2^23 fits in i32.
        let count = i32::try_from(plane).unwrap_or(i32::MAX);
        for (o, values) in outputs.zip(planes) {
            *o = rounded_mean(block_sum(values), count).unwrap_or(0);
        }
    } else {
        let count = i64::try_from(plane).unwrap_or(i64::MAX);
        for (o, values) in outputs.zip(planes) {
            let sum: i64 = values
                .chunks(GLOBAL_AVG_POOL_I32_MAX_LEN)
                .map(|block| i64::from(block_sum(block)))
                .sum();
            *o = rounded_mean(sum, count).unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    fn shape(channels: u16, height: u16, width: u16) -> Shape {
        Shape {
            channels,
            height,
            width,
        }
    }

    fn pool(input: &[i8], s: Shape) -> Vec<i8> {
        let mut out = vec![0x55_i8; usize::from(s.channels)];
        global_avg_pool_i8(input, s, &mut out);
        let mut want = vec![0x55_i8; usize::from(s.channels)];
        reference::global_avg_pool_i8(input, s, &mut want);
        assert_eq!(out, want, "kernel vs reference");
        out
    }

    #[test]
    fn hand_computed_rounding() {
        // 2x2 planes (n = 4): sums 10 (2.5 -> 3), -10 (-2.5 -> -3), 5 (1.25 -> 1),
        // -5 (-1.25 -> -1), 2 (0.5 -> 1), -2 (-0.5 -> -1), 1 (0.25 -> 0), -1 (-0.25 -> 0),
        // 3 (0.75 -> 1), -3 (-0.75 -> -1).
        let input = [
            1, 2, 3, 4, //
            -1, -2, -3, -4, //
            1, 1, 1, 2, //
            -1, -1, -1, -2, //
            1, 1, 0, 0, //
            -1, -1, 0, 0, //
            1, 0, 0, 0, //
            -1, 0, 0, 0, //
            1, 1, 1, 0, //
            -1, -1, -1, 0,
        ];
        assert_eq!(
            pool(&input, shape(10, 2, 2)),
            [3, -3, 1, -1, 1, -1, 0, 0, 1, -1]
        );
        // 1x3 planes (n = 3, odd: no ties): sums 1 (0.33 -> 0), 2 (0.67 -> 1), -2 (-0.67 -> -1),
        // -4 (-1.33 -> -1).
        assert_eq!(
            pool(&[1, 0, 0, 1, 1, 0, -1, -1, 0, -2, -2, 0], shape(4, 1, 3)),
            [0, 1, -1, -1]
        );
        // 1x1 planes: the identity.
        assert_eq!(pool(&[-128, 0, 127], shape(3, 1, 1)), [-128, 0, 127]);
    }

    #[test]
    fn extremes() {
        // 28x28 planes of 127 and of -128: 127 * 784 / 784 and -128 * 784 / 784.
        let mut input = vec![127_i8; 784];
        input.extend([-128_i8; 784]);
        assert_eq!(pool(&input, shape(2, 28, 28)), [127, -128]);
        // Half 127, half -128 over n = 784: sum = -392, mean -0.5 -> -1.
        let input: Vec<i8> = (0..784)
            .map(|i| if i % 2 == 0 { 127 } else { -128 })
            .collect();
        assert_eq!(pool(&input, shape(1, 28, 28)), [-1]);
        // 127 * 300 - 128 * 484 = -23852, / 784 = -30.42 -> -30.
        let input: Vec<i8> = (0..784).map(|i| if i < 300 { 127 } else { -128 }).collect();
        assert_eq!(pool(&input, shape(1, 28, 28)), [-30]);
    }

    #[test]
    fn empty_plane_and_no_channels() {
        assert_eq!(pool(&[], shape(3, 0, 5)), [0, 0, 0]);
        assert_eq!(pool(&[], shape(2, 4, 0)), [0, 0]);
        assert_eq!(pool(&[], shape(0, 4, 4)), Vec::<i8>::new());
    }

    #[test]
    fn planes_beyond_the_i32_block() {
        // 4096 * 2049 = 8392704 > 2^23 = 8388608 values: the i64 path.
        let (h, w) = (4096_u16, 2049_u16);
        let n = usize::from(h) * usize::from(w);
        assert!(n > GLOBAL_AVG_POOL_I32_MAX_LEN);
        // All 127 (sum 127 n, beyond i32 for the whole plane) and all -128.
        assert_eq!(pool(&vec![127_i8; n], shape(1, h, w)), [127]);
        assert_eq!(pool(&vec![-128_i8; n], shape(1, h, w)), [-128]);
        // Alternating 127, -128 (n even): sum = -n / 2, mean -0.5 -> -1.
        let alternating: Vec<i8> = (0..n)
            .map(|i| if i % 2 == 0 { 127 } else { -128 })
            .collect();
        assert_eq!(pool(&alternating, shape(1, h, w)), [-1]);
        // The first 2^23 values 100, the other 4096 values 0: sum = 100 * 2^23,
        // mean = 838860800 / 8392704 = 99.95 -> 100.
        let mut mostly: Vec<i8> = vec![100_i8; GLOBAL_AVG_POOL_I32_MAX_LEN];
        mostly.resize(n, 0);
        assert_eq!(pool(&mostly, shape(1, h, w)), [100]);
        // The largest plane of the i32 path: exactly 2^23 values of -128.
        let (h, w) = (4096_u16, 2048_u16);
        let n = usize::from(h) * usize::from(w);
        assert_eq!(n, GLOBAL_AVG_POOL_I32_MAX_LEN);
        assert_eq!(pool(&vec![-128_i8; n], shape(1, h, w)), [-128]);
    }

    proptest! {
        #[test]
        fn matches_reference(
            (dims, input) in (0_u16..5, 0_u16..12, 0_u16..12).prop_flat_map(|(c, h, w)| {
                let len = usize::from(c) * usize::from(h) * usize::from(w);
                (Just((c, h, w)), proptest::collection::vec(any::<i8>(), len))
            }),
        ) {
            let s = shape(dims.0, dims.1, dims.2);
            let mut out = vec![0_i8; usize::from(s.channels)];
            global_avg_pool_i8(&input, s, &mut out);
            let mut want = vec![1_i8; usize::from(s.channels)];
            reference::global_avg_pool_i8(&input, s, &mut want);
            prop_assert_eq!(out, want);
        }

        /// The same as average pooling with a window the size of the plane.
        #[test]
        fn matches_avg_pool2d_with_whole_window(
            (side, input) in (1_u16..10).prop_flat_map(|side| {
                let len = 3 * usize::from(side) * usize::from(side);
                (Just(side), proptest::collection::vec(any::<i8>(), len))
            }),
        ) {
            let s = shape(3, side, side);
            let mut out = [0_i8; 3];
            global_avg_pool_i8(&input, s, &mut out);
            let mut want = [0_i8; 3];
            let params = crate::kernels::Pool2dParams { kernel: usize::from(side), stride: 1 };
            crate::kernels::avg_pool2d_i8(&input, s, &params, &mut want);
            prop_assert_eq!(out, want);
        }
    }
}
