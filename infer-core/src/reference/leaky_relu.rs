//! Reference int8 LeakyReLU.

use super::fixed_point::{clamp, multiply_by_quantized_multiplier};
use crate::kernels::LeakyReluParams;

/// Element-wise int8 LeakyReLU, one element at a time, as TFLite's reference
/// `QuantizeLeakyRelu`: see [`crate::kernels::leaky_relu_i8`] for the equation, shapes and
/// rounding. Elements beyond the shorter slice are left alone.
pub fn leaky_relu_i8(input: &[i8], params: &LeakyReluParams, output: &mut [i8]) {
    let p = params;
    for i in 0..input.len().min(output.len()) {
        let Some(&x) = input.get(i) else {
            return;
        };
        // In i32 as TFLite (no overflow for zero points in [-128, 127]).
        let value = i32::from(x).wrapping_sub(p.input_zero_point);
        let scaled = if value >= 0 {
            multiply_by_quantized_multiplier(
                value,
                p.output_multiplier_identity,
                p.output_shift_identity,
            )
        } else {
            multiply_by_quantized_multiplier(value, p.output_multiplier_alpha, p.output_shift_alpha)
        };
        let unclamped = i64::from(p.output_zero_point) + i64::from(scaled);
        if let Some(o) = output.get_mut(i) {
            *o = clamp(unclamped, i8::MIN, i8::MAX);
        }
    }
}
