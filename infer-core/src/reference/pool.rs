//! Reference 2-D max and average pooling.

use crate::format::Shape;
use crate::kernels::Pool2dParams;

/// Calls `reduce` with the values of every window (channel by channel, row-major) and writes
/// what it returns; nothing if the kernel or stride is zero or the window does not fit.
fn pool(
    input: &[i8],
    input_shape: Shape,
    params: &Pool2dParams,
    output: &mut [i8],
    reduce: impl Fn(&mut dyn Iterator<Item = i8>) -> i8,
) {
    let channels = usize::from(input_shape.channels);
    let (h, w) = (
        usize::from(input_shape.height),
        usize::from(input_shape.width),
    );
    let Pool2dParams { kernel: k, stride } = *params;
    if k == 0 || stride == 0 || k > h || k > w {
        return;
    }
    let (out_h, out_w) = ((h - k) / stride + 1, (w - k) / stride + 1);
    for c in 0..channels {
        for y in 0..out_h {
            for x in 0..out_w {
                let mut window = (0..k * k).filter_map(|t| {
                    let (ky, kx) = (t / k, t % k);
                    input
                        .get((c * h + y * stride + ky) * w + x * stride + kx)
                        .copied()
                });
                if let Some(out) = output.get_mut((c * out_h + y) * out_w + x) {
                    *out = reduce(&mut window);
                }
            }
        }
    }
}

/// 2-D max pooling, int8: the largest value of each window. See
/// [`crate::kernels::max_pool2d_i8`] for the equation and shapes.
pub fn max_pool2d_i8(input: &[i8], input_shape: Shape, params: &Pool2dParams, output: &mut [i8]) {
    pool(input, input_shape, params, output, |window| {
        window.max().unwrap_or(i8::MIN)
    });
}

/// 2-D average pooling, int8: the exact mean of each window (summed in `i64`) rounded half
/// away from zero. See [`crate::kernels::avg_pool2d_i8`] for the equation and shapes.
pub fn avg_pool2d_i8(input: &[i8], input_shape: Shape, params: &Pool2dParams, output: &mut [i8]) {
    pool(input, input_shape, params, output, |window| {
        let (mut sum, mut n) = (0_i64, 0_i64);
        for v in window {
            sum += i64::from(v);
            n += 1;
        }
        let n = n.max(1);
        // |sum| / n rounded half away from zero: floor((2|sum| + n) / (2n)).
        let magnitude = (2 * sum.abs() + n) / (2 * n);
        let mean = if sum < 0 { -magnitude } else { magnitude };
        // The mean of int8 values is an int8 value.
        i8::try_from(mean).unwrap_or(0)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        let shape = Shape {
            channels: 1,
            height: 4,
            width: 4,
        };
        let two = Pool2dParams {
            kernel: 2,
            stride: 2,
        };
        let input = [1, -2, 3, 0, -5, 6, -7, 8, 9, 10, -11, 12, 13, 14, 15, -16];
        let mut out = [0_i8; 4];
        max_pool2d_i8(&input, shape, &two, &mut out);
        assert_eq!(out, [6, 8, 14, 15]);
        // Windows [1, 2, 3, 4] (2.5), [-1, -2, -3, -4] (-2.5), [1, 1, 1, 2] (1.25),
        // [0, 0, 0, -2] (-0.5): ties away from zero.
        let input = [1, 2, -1, -2, 3, 4, -3, -4, 1, 1, 0, 0, 1, 2, 0, -2];
        avg_pool2d_i8(&input, shape, &two, &mut out);
        assert_eq!(out, [3, -3, 1, -1]);
        // Overlapping 3x3 windows, stride 1: 2x2 outputs of 9 values each.
        let input: [i8; 16] = core::array::from_fn(|i| i8::try_from(i).unwrap());
        let three = Pool2dParams {
            kernel: 3,
            stride: 1,
        };
        max_pool2d_i8(&input, shape, &three, &mut out);
        assert_eq!(out, [10, 11, 14, 15]);
        avg_pool2d_i8(&input, shape, &three, &mut out);
        assert_eq!(out, [5, 6, 9, 10]);
    }
}
