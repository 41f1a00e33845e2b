//! gemmlowp's `SaturatingRoundingDoublingHighMul` and `RoundingDivideByPOT` and TFLite's
//! `MultiplyByQuantizedMultiplier`, written from their definitions in `i64` (the kernels use the
//! bit-twiddling forms in [`crate::quant`]).

/// `round(a * b / 2^31)`: the exact product plus `2^30` (product `>= 0`) or `1 - 2^30`
/// (product `< 0`), divided by `2^31` truncating toward zero; `i32::MIN * i32::MIN` saturates
/// to `i32::MAX`.
pub(super) fn srdhm(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let product = i64::from(a) * i64::from(b);
    let nudge = if product >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    let high = (product + nudge) / (1_i64 << 31);
    // |product| <= 2^62 - 2^31 here, so |high| < 2^31.
    i32::try_from(high).unwrap_or(i32::MAX)
}

/// `x / 2^exponent` rounded half away from zero, `exponent` clamped to `[0, 31]`: the exact
/// magnitude `|x| / d` rounds to `floor((2|x| + d) / (2d))`.
pub(super) fn rdbpot(x: i32, exponent: i32) -> i32 {
    let d = 1_i64 << exponent.clamp(0, 31);
    let magnitude = (2 * i64::from(x).abs() + d) / (2 * d);
    let rounded = if x < 0 { -magnitude } else { magnitude };
    // |rounded| <= |x| when d >= 1, so it fits.
    i32::try_from(rounded).unwrap_or(0)
}

/// TFLite's (double-rounding) `MultiplyByQuantizedMultiplier`: `x * 2^max(shift, 0)` in `i32`
/// (wrapping, as the C code does in practice), then [`srdhm`] by `multiplier`, then [`rdbpot`]
/// by `max(-shift, 0)`; `shift` clamped to `[-31, 31]`.
pub(super) fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let shift = shift.clamp(-31, 31);
    let left = shift.max(0).unsigned_abs();
    rdbpot(srdhm(x.wrapping_shl(left), multiplier), -shift)
}

/// `x` clamped to `[lo, hi]` as TFLite writes it, `min(hi, max(lo, x))` (so `hi` wins when
/// `lo > hi`).
pub(super) fn clamp(x: i64, lo: i8, hi: i8) -> i8 {
    let clamped = x.max(i64::from(lo)).min(i64::from(hi));
    i8::try_from(clamped).unwrap_or(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant;

    #[test]
    fn agree_with_quant_on_edges() {
        let values = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30),
            -12_345,
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            12_345,
            1 << 30,
            i32::MAX - 1,
            i32::MAX,
        ];
        for a in values {
            for b in values {
                assert_eq!(
                    srdhm(a, b),
                    quant::saturating_rounding_doubling_high_mul(a, b)
                );
            }
            for e in -2..=33 {
                assert_eq!(rdbpot(a, e), quant::rounding_divide_by_pot(a, e), "{a} {e}");
            }
            for shift in -33..=33 {
                assert_eq!(
                    multiply_by_quantized_multiplier(a, 1_431_655_765, shift),
                    quant::multiply_by_quantized_multiplier(a, 1_431_655_765, shift),
                    "{a} {shift}"
                );
            }
        }
    }
}
