//! Integer requantisation, bit-exact with TensorFlow Lite for Microcontrollers' reference
//! kernels (and so with CMSIS-NN) and gemmlowp's fixed-point primitives.
//!
//! A real multiplier `M` (in practice `input_scale * weight_scale / output_scale`) is stored as a
//! Q0.31 `multiplier` in `[2^30, 2^31)` and a power-of-two `shift`, so that
//! `M ≈ multiplier * 2^(shift - 31)`. The device applies it to an `i32` accumulator with
//! [`multiply_by_quantized_multiplier`]: integers only, two roundings (one in
//! [`saturating_rounding_doubling_high_mul`], one in [`rounding_divide_by_pot`]).
//!
//! The host derives `(multiplier, shift)` with [`quantize_multiplier`], the only function here
//! that uses floating point; [`crate::Model::from_bytes`] re-derives every multiplier from the
//! stored scales with the same function and rejects files that disagree.
//!
//! ```
//! use infer_core::quant::{multiply_by_quantized_multiplier, quantize_multiplier};
//!
//! let (m, s) = quantize_multiplier(0.25);
//! assert_eq!((m, s), (1 << 30, -1));
//! assert_eq!(multiply_by_quantized_multiplier(100, m, s), 25);
//! assert_eq!(multiply_by_quantized_multiplier(102, m, s), 26); // 25.5 rounds away from zero
//! ```

/// Smallest shift [`quantize_multiplier`] produces (smaller ones flush the multiplier to zero).
pub const MIN_SHIFT: i32 = -31;
/// Largest shift the requantisation supports (TFLite's `shift <= 30`).
pub const MAX_SHIFT: i32 = 30;

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: `round(a * b / 2^31)` in `i32`.
///
/// The 64-bit product plus a nudge of `2^30` (if `a * b >= 0`) or `1 - 2^30` (if negative) is
/// divided by `2^31` truncating toward zero, which rounds ties away from zero except for negative
/// ties, which round toward zero (as gemmlowp does). The one product that overflows,
/// `i32::MIN * i32::MIN`, saturates to `i32::MAX`.
///
/// ```
/// use infer_core::quant::saturating_rounding_doubling_high_mul as srdhm;
///
/// assert_eq!(srdhm(1 << 30, 1 << 30), 1 << 29); // 0.5 * 0.5 = 0.25 in Q0.31
/// assert_eq!(srdhm(i32::MIN, i32::MIN), i32::MAX);
/// ```
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = i64::from(a) * i64::from(b);
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // |ab| <= 2^62 - 2^31 here, so `ab + nudge` cannot overflow and the quotient fits in i32.
    let high = (ab + nudge) / (1_i64 << 31);
    i32::try_from(high).unwrap_or(i32::MAX)
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent`, rounding half away from zero.
///
/// `exponent` must be in `[0, 31]`; values outside are clamped to that range.
///
/// ```
/// use infer_core::quant::rounding_divide_by_pot;
///
/// assert_eq!(rounding_divide_by_pot(3, 1), 2);
/// assert_eq!(rounding_divide_by_pot(-3, 1), -2);
/// assert_eq!(rounding_divide_by_pot(5, 2), 1);
/// ```
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31).unsigned_abs();
    // 2^exponent - 1, for exponent in [0, 31].
    let mask = i32::MAX >> (31 - exponent);
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier`: `acc * multiplier * 2^(shift - 31)`, rounded.
///
/// With `left_shift = max(shift, 0)` and `right_shift = max(-shift, 0)`:
///
/// `rounding_divide_by_pot(saturating_rounding_doubling_high_mul(acc << left_shift, multiplier), right_shift)`
///
/// The left shift wraps on overflow (two's complement, as the C reference does in practice);
/// `shift` must be in `[-31, 31]` and is clamped to that range.
///
/// ```
/// use infer_core::quant::multiply_by_quantized_multiplier;
///
/// // 0.75 = (3 << 29) * 2^(0 - 31)
/// assert_eq!(multiply_by_quantized_multiplier(10, 3 << 29, 0), 8); // 7.5 -> 8
/// // With shift <= 0 ties are decided by the doubling high multiply: negative ties go toward 0.
/// assert_eq!(multiply_by_quantized_multiplier(-10, 3 << 29, 0), -7); // -7.5 -> -7
/// // 1.5 = (3 << 29) * 2^(1 - 31)
/// assert_eq!(multiply_by_quantized_multiplier(10, 3 << 29, 1), 15);
/// ```
#[inline]
pub fn multiply_by_quantized_multiplier(acc: i32, multiplier: i32, shift: i32) -> i32 {
    let left_shift = shift.clamp(0, 31).unsigned_abs();
    let right_shift = -shift.clamp(-31, 0);
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(acc.wrapping_shl(left_shift), multiplier),
        right_shift,
    )
}

/// TFLite's `QuantizeMultiplier`, checked: the Q0.31 `(multiplier, shift)` of a real
/// multiplier, or `None` if it cannot be represented.
///
/// `real = q * 2^shift` with `q` in `[0.5, 1)` (`frexp`), `multiplier = round(q * 2^31)`
/// (half away from zero); if that rounds up to `2^31` it becomes `2^30` and `shift` grows by one.
/// `0` gives `(0, 0)`, and so does a `real` so small that `shift < -31` (flush to zero).
///
/// Returns `None` for a negative or non-finite `real` or one whose shift would exceed
/// [`MAX_SHIFT`] (`real >= 2^30` or just under it).
///
/// ```
/// use infer_core::quant::try_quantize_multiplier;
///
/// assert_eq!(try_quantize_multiplier(0.5), Some((1 << 30, 0)));
/// assert_eq!(try_quantize_multiplier(f64::NAN), None);
/// ```
pub fn try_quantize_multiplier(real: f64) -> Option<(i32, i32)> {
    if !real.is_finite() || real < 0.0 {
        return None;
    }
    if real == 0.0 {
        return Some((0, 0));
    }
    let (q, mut shift) = libm::frexp(real);
    // q in [0.5, 1), so q * 2^31 is in [2^30, 2^31] after rounding: exact in i64.
    #[allow(clippy::cast_possible_truncation)]
    let mut q_fixed = libm::round(q * 2_147_483_648.0) as i64;
    if q_fixed == 1 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < MIN_SHIFT {
        return Some((0, 0));
    }
    if shift > MAX_SHIFT {
        return None;
    }
    Some((i32::try_from(q_fixed).ok()?, shift))
}

/// TFLite's `QuantizeMultiplier`: the Q0.31 `(multiplier, shift)` with
/// `real ≈ multiplier * 2^(shift - 31)`. The trainer writes multipliers with this function.
///
/// Bit-exact with TFLite for every `real` in `[0, 2^30)` (see [`try_quantize_multiplier`] for
/// the steps). Outside that range it saturates instead of failing: a `real` too large to
/// represent gives `(i32::MAX, MAX_SHIFT)`, and a negative or NaN `real` gives `(0, 0)`.
/// [`crate::Model::from_bytes`] rejects files whose scales lead to either case, so use
/// [`try_quantize_multiplier`] to detect them when writing.
///
/// ```
/// use infer_core::quant::quantize_multiplier;
///
/// assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
/// assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
/// assert_eq!(quantize_multiplier(0.0), (0, 0));
/// ```
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    match try_quantize_multiplier(real) {
        Some(m) => m,
        None if real > 0.0 => (i32::MAX, MAX_SHIFT),
        None => (0, 0),
    }
}

/// TFLite's `QuantizeMultiplierSmallerThanOneExp`, checked: the Q0.31 `(multiplier, shift)` of
/// a real multiplier in `(0, 1)`, with `shift <= 0` (a pure right shift). The int8 `ADD`
/// kernel's three multipliers are formed with it ([`crate::kernels::AddParams::new`]).
///
/// The steps are those of [`try_quantize_multiplier`]; TFLite then aborts (`TFLITE_CHECK`)
/// unless `0 < real < 1` and the resulting shift is `<= 0`, which only fails for a `real` just
/// under 1 whose multiplier rounds up to `2^31` and carries into `shift = 1`. Here each of those
/// cases gives `None`. A `real` below `2^-32` flushes to `(0, 0)`, as in TFLite.
///
/// ```
/// use infer_core::quant::try_quantize_multiplier_smaller_than_one;
///
/// assert_eq!(try_quantize_multiplier_smaller_than_one(0.25), Some((1 << 30, -1)));
/// assert_eq!(try_quantize_multiplier_smaller_than_one(1.0), None);
/// ```
pub fn try_quantize_multiplier_smaller_than_one(real: f64) -> Option<(i32, i32)> {
    if real.is_nan() || real <= 0.0 || real >= 1.0 {
        return None;
    }
    let (multiplier, shift) = try_quantize_multiplier(real)?;
    (shift <= 0).then_some((multiplier, shift))
}

/// The multiplier [`crate::Model::from_bytes`] expects for one output channel:
/// `f64(input_scale) * f64(weight_scale) / f64(output_scale)`, as TFLite's
/// `PopulateConvolutionQuantizationParams` computes it, quantised with
/// [`try_quantize_multiplier`].
///
/// ```
/// use infer_core::quant::channel_multiplier;
///
/// assert_eq!(channel_multiplier(0.5, 0.25, 0.125), Some((1 << 30, 1)));
/// ```
pub fn channel_multiplier(
    input_scale: f32,
    weight_scale: f32,
    output_scale: f32,
) -> Option<(i32, i32)> {
    let real = f64::from(input_scale) * f64::from(weight_scale) / f64::from(output_scale);
    try_quantize_multiplier(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_divide_by_pot_table() {
        // (x, exponent, expected): x / 2^exponent rounded half away from zero.
        let table = [
            (0, 0, 0),
            (7, 0, 7),
            (-7, 0, -7),
            (3, 1, 2),
            (-3, 1, -2),
            (1, 1, 1),
            (-1, 1, -1),
            (2, 1, 1),
            (-2, 1, -1),
            (5, 2, 1),
            (-5, 2, -1),
            (6, 2, 2),
            (-6, 2, -2),
            (7, 2, 2),
            (-7, 2, -2),
            (10, 2, 3),
            (-10, 2, -3),
            (9, 2, 2),
            (-9, 2, -2),
            (i32::MAX, 31, 1),
            (i32::MIN, 31, -1),
            (1 << 30, 31, 1),     // exactly 0.5 -> 1
            (-(1 << 30), 31, -1), // exactly -0.5 -> -1
            ((1 << 30) - 1, 31, 0),
            (i32::MAX, 1, 1 << 30),
            (i32::MIN, 1, -(1 << 30)),
        ];
        for (x, e, want) in table {
            assert_eq!(rounding_divide_by_pot(x, e), want, "x={x} e={e}");
        }
    }

    #[test]
    fn rounding_divide_by_pot_matches_wide_rounding() {
        // Reference: exact rational x / 2^e rounded half away from zero, in i64.
        for e in 0..=31 {
            for x in [
                -1000, -513, -512, -511, -3, -2, -1, 0, 1, 2, 3, 511, 512, 513, 1000,
            ] {
                let d = 1_i64 << e;
                let x64 = i64::from(x);
                let q = x64.abs() / d;
                let r = x64.abs() % d;
                let mag = if 2 * r >= d { q + 1 } else { q };
                let want = if x < 0 { -mag } else { mag };
                assert_eq!(i64::from(rounding_divide_by_pot(x, e)), want, "x={x} e={e}");
            }
        }
    }

    #[test]
    fn srdhm_saturates_only_min_times_min() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // -1 * -1 in Q0.31 would be +1 (not representable); i32::MIN * (i32::MIN + 1) is fine.
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN + 1),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            i32::MIN + 1
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MAX, i32::MAX),
            i32::MAX - 1
        );
    }

    #[test]
    fn srdhm_hand_computed() {
        // (a, b, expected) with expected = (a*b + nudge) / 2^31 truncated, worked by hand.
        let table = [
            (0, 12345, 0),
            (1 << 30, 1 << 30, 1 << 29), // 2^60 / 2^31 = 2^29 exactly
            (1 << 30, -(1 << 30), -(1 << 29)),
            (1, 1 << 30, 1),          // (2^30 + 2^30) / 2^31 = 1: 0.5 rounds up
            (-1, 1 << 30, 0),         // (-2^30 + 1 - 2^30) / 2^31 = -0.99.. -> 0: -0.5 rounds to 0
            (1, (1 << 30) - 1, 0),    // (2^30 - 1 + 2^30) / 2^31 < 1
            (3, 1 << 30, 2),          // 1.5 -> 2
            (-3, 1 << 30, -1),        // -1.5 -> -1 (negative tie toward zero)
            (100, 1_610_612_736, 75), // 100 * 0.75 = 75
            (-100, 1_610_612_736, -75),
            (101, 1_610_612_736, 76),     // 75.75 -> 76
            (-101, 1_610_612_736, -76),   // -75.75 -> -76
            (i32::MAX, 1 << 30, 1 << 30), // (2^61 - 2^30 + 2^30) / 2^31 = 2^30
        ];
        for (a, b, want) in table {
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                want,
                "a={a} b={b}"
            );
            assert_eq!(
                saturating_rounding_doubling_high_mul(b, a),
                want,
                "commuted"
            );
        }
    }

    #[test]
    fn multiply_by_quantized_multiplier_cases() {
        let half = 1 << 30; // 0.5 in Q0.31
        // shift 0: x * 0.5
        assert_eq!(multiply_by_quantized_multiplier(7, half, 0), 4); // 3.5 -> 4
        assert_eq!(multiply_by_quantized_multiplier(-7, half, 0), -3); // SRDHM: -3.5 -> -3
        // shift 1: x * 1.0
        assert_eq!(multiply_by_quantized_multiplier(-7, half, 1), -7);
        // shift -2: x * 0.125, the rounding happens in RoundingDivideByPOT:
        // SRDHM(12, 2^30) = 6, then 6 / 4 = 1.5 -> 2.
        assert_eq!(multiply_by_quantized_multiplier(12, half, -2), 2);
        assert_eq!(multiply_by_quantized_multiplier(-12, half, -2), -2);
        // Left shift wraps like the C reference: (2^30 << 1) = i32::MIN, * 0.5 = -2^30.
        assert_eq!(
            multiply_by_quantized_multiplier(1 << 30, half, 1),
            -(1 << 30)
        );
        // zero multiplier: always zero
        assert_eq!(multiply_by_quantized_multiplier(123_456, 0, 0), 0);
        // A realistic requant: M = 0.0123 on acc = 5001 -> 61.5123 -> 62.
        let (m, s) = quantize_multiplier(0.0123);
        assert_eq!(multiply_by_quantized_multiplier(5001, m, s), 62);
        assert_eq!(multiply_by_quantized_multiplier(-5001, m, s), -62);
        assert_eq!(multiply_by_quantized_multiplier(4999, m, s), 61); // 61.4877
    }

    #[test]
    fn quantize_multiplier_table() {
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(0.75), (3 << 29, 0));
        assert_eq!(quantize_multiplier(2.0), (1 << 30, 2));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        // 1/3 = 0.666.. * 2^-1: round(0.666.. * 2^31) = 1431655765
        assert_eq!(quantize_multiplier(1.0 / 3.0), (1_431_655_765, -1));
        // Just under a power of two: q rounds up to 2^31 and carries into the shift.
        let just_under_one = 1.0 - f64::EPSILON;
        assert_eq!(quantize_multiplier(just_under_one), (1 << 30, 1));
        let just_under_quarter = 0.25 * (1.0 - 1e-12);
        assert_eq!(quantize_multiplier(just_under_quarter), (1 << 30, -1));
        // Just above 2^31 - 0.5 (in units of the last place) no carry happens.
        let no_carry = (2_147_483_647.0 - 0.6) / 2_147_483_648.0;
        assert_eq!(quantize_multiplier(no_carry), (i32::MAX - 1, 0));
        // Tiny: 2^-32 = 0.5 * 2^-31 is the smallest that survives; 2^-33 flushes.
        assert_eq!(quantize_multiplier(libm::ldexp(1.0, -32)), (1 << 30, -31));
        assert_eq!(quantize_multiplier(libm::ldexp(1.0, -33)), (0, 0));
        assert_eq!(quantize_multiplier(1e-300), (0, 0));
        assert_eq!(quantize_multiplier(f64::MIN_POSITIVE / 4.0), (0, 0)); // subnormal
        // Largest representable: just under 2^30.
        assert_eq!(quantize_multiplier(libm::ldexp(1.0, 29)), (1 << 30, 30));
        assert_eq!(try_quantize_multiplier(libm::ldexp(1.0, 30)), None);
        assert_eq!(
            quantize_multiplier(libm::ldexp(1.0, 30)),
            (i32::MAX, MAX_SHIFT)
        );
        // Rejected inputs.
        assert_eq!(try_quantize_multiplier(-0.5), None);
        assert_eq!(try_quantize_multiplier(f64::INFINITY), None);
        assert_eq!(try_quantize_multiplier(f64::NAN), None);
        assert_eq!(quantize_multiplier(-0.5), (0, 0));
        assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
    }

    #[test]
    fn quantize_multiplier_smaller_than_one_table() {
        // (real, expected): multiplier = round(q * 2^31) with real = q * 2^shift, q in [0.5, 1).
        let table = [
            (0.5, Some((1 << 30, 0))),
            (0.25, Some((1 << 30, -1))),
            (0.75, Some((3 << 29, 0))), // 0.75 * 2^31 = 1610612736
            // 1/3 = 0.666.. * 2^-1: round(0.666.. * 2^31) = round(1431655765.33) = 1431655765
            (1.0 / 3.0, Some((1_431_655_765, -1))),
            // 0.1 = 0.8 * 2^-3: round(0.8000000000000000444 * 2^31) = round(1717986918.4)
            (0.1, Some((1_717_986_918, -3))),
            // 2^-20 (the ADD output multiplier for equal scales 0.5 and output 1):
            // 0.5 * 2^-19 -> (2^30, -19)
            (libm::ldexp(1.0, -20), Some((1 << 30, -19))),
            // Smallest that survives: 2^-32 = 0.5 * 2^-31; 2^-33 flushes to zero (accepted).
            (libm::ldexp(1.0, -32), Some((1 << 30, -31))),
            (libm::ldexp(1.0, -33), Some((0, 0))),
            // Just under 1: q * 2^31 rounds to 2^31, carries into shift 1: TFLite's CHECK fails.
            (1.0 - f64::EPSILON, None),
            // Just under 1 without the carry: 1 - 2^-31 = (2^31 - 1) * 2^-31.
            (1.0 - libm::ldexp(1.0, -31), Some((i32::MAX, 0))),
            // Outside (0, 1).
            (1.0, None),
            (1.5, None),
            (0.0, None),
            (-0.25, None),
            (f64::NAN, None),
            (f64::INFINITY, None),
        ];
        for (real, want) in table {
            assert_eq!(
                try_quantize_multiplier_smaller_than_one(real),
                want,
                "real={real}"
            );
        }
    }

    #[test]
    fn quantize_multiplier_round_trips() {
        // multiplier * 2^(shift - 31) is within half a unit of the last place of the real value.
        for i in 1..2000 {
            let real = f64::from(i) * 0.000_731;
            let (m, s) = quantize_multiplier(real);
            assert!((1 << 30..=i32::MAX).contains(&m), "real={real} m={m}");
            let back = f64::from(m) * libm::ldexp(1.0, s - 31);
            let ulp = libm::ldexp(1.0, s - 31);
            assert!((back - real).abs() <= ulp / 2.0, "real={real} back={back}");
        }
    }
}
