//! Reference global average pooling.

use crate::format::Shape;

/// Global average pooling, int8: for each channel, the exact mean of its `height * width`
/// values (summed in `i64`) rounded half away from zero. See
/// [`crate::kernels::global_avg_pool_i8`] for the shapes. A channel with no values averages
/// to 0; channels beyond the input or output slice are left alone.
pub fn global_avg_pool_i8(input: &[i8], input_shape: Shape, output: &mut [i8]) {
    let plane = usize::from(input_shape.height) * usize::from(input_shape.width);
    for c in 0..usize::from(input_shape.channels) {
        let mut sum: i64 = 0;
        let start = c.saturating_mul(plane);
        for i in start..start.saturating_add(plane) {
            sum += input.get(i).map_or(0, |&v| i64::from(v));
        }
        let n = i64::try_from(plane).unwrap_or(i64::MAX);
        let mean = if n == 0 {
            0
        } else {
            // |sum| / n rounded half away from zero: floor((2|sum| + n) / (2n)).
            let magnitude = (2 * sum.abs() + n) / (2 * n);
            if sum < 0 { -magnitude } else { magnitude }
        };
        if let Some(o) = output.get_mut(c) {
            // The mean of int8 values is an int8 value.
            *o = i8::try_from(mean).unwrap_or(0);
        }
    }
}
