//! Per-channel requantisation read from a [`QRequant`], the plain way.

use super::fixed_point::{clamp, multiply_by_quantized_multiplier};
use crate::kernels::QRequant;

/// The little-endian `i32` at `4 * index` in `bytes` (0 past the end).
fn le_i32_at(bytes: &[u8], index: usize) -> i32 {
    let at = index.saturating_mul(4);
    match bytes.get(at..at.saturating_add(4)) {
        Some(&[a, b, c, d]) => i32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Channel `c`'s bias (0 past the end).
pub(super) fn bias(requant: &QRequant<'_>, c: usize) -> i32 {
    le_i32_at(requant.bias, c)
}

/// Channel `c`'s output for accumulator `acc` (bias included):
/// `clamp(multiply_by_quantized_multiplier(acc, multipliers[c], shifts[c]) + output_zero_point,
/// act_min, act_max)`, the sum in `i64`.
pub(super) fn output(requant: &QRequant<'_>, c: usize, acc: i32) -> i8 {
    let multiplier = le_i32_at(requant.multipliers, c);
    let shift = requant.shifts.get(c).map_or(0, |&s| i32::from(s));
    let scaled = multiply_by_quantized_multiplier(acc, multiplier, shift);
    let unclamped = i64::from(scaled) + i64::from(requant.output_zero_point);
    clamp(unclamped, requant.act_min, requant.act_max)
}
