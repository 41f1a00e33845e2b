//! Reference int8 addition.

use super::fixed_point::{clamp, rdbpot, srdhm};
use crate::kernels::AddParams;

/// Element-wise int8 addition, one element at a time, as TFLite Micro's reference
/// `AddFunc`: see [`crate::kernels::add_i8`] for the equation, shapes and rounding. Elements
/// beyond the shortest slice are left alone.
pub fn add_i8(input1: &[i8], input2: &[i8], params: &AddParams, output: &mut [i8]) {
    let p = params;
    let left_shift = p.left_shift.clamp(0, 31).unsigned_abs();
    let n = input1.len().min(input2.len()).min(output.len());
    for i in 0..n {
        let (Some(&x1), Some(&x2)) = (input1.get(i), input2.get(i)) else {
            return;
        };
        // (x - zero_point) * 2^left_shift, in i32 as TFLite (no overflow for valid params).
        let shifted1 = i32::from(x1)
            .wrapping_sub(p.input1_zero_point)
            .wrapping_shl(left_shift);
        let shifted2 = i32::from(x2)
            .wrapping_sub(p.input2_zero_point)
            .wrapping_shl(left_shift);
        // MultiplyByQuantizedMultiplierSmallerThanOneExp: the shift is a right shift.
        let scaled1 = rdbpot(
            srdhm(shifted1, p.input1_multiplier),
            p.input1_shift.saturating_neg(),
        );
        let scaled2 = rdbpot(
            srdhm(shifted2, p.input2_multiplier),
            p.input2_shift.saturating_neg(),
        );
        let raw_sum = scaled1.wrapping_add(scaled2);
        let scaled_sum = rdbpot(
            srdhm(raw_sum, p.output_multiplier),
            p.output_shift.saturating_neg(),
        );
        let raw_output = i64::from(scaled_sum) + i64::from(p.output_zero_point);
        if let Some(o) = output.get_mut(i) {
            *o = clamp(raw_output, p.act_min, p.act_max);
        }
    }
}
