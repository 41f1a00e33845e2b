//! Element-wise addition of two int8 tensors with their own quantisation (TFLite's int8 `ADD`
//! without broadcasting): the residual connection.

use super::clamp_i8;
use crate::format::QParams;
use crate::quant::{
    rounding_divide_by_pot, saturating_rounding_doubling_high_mul,
    try_quantize_multiplier_smaller_than_one,
};

/// The left shift TFLite applies to int8 `ADD` inputs before rescaling them (20 for int8, 15 for
/// int16): `255 << 20 < 2^28`, so the rescaled inputs and their sum stay well inside `i32` while
/// keeping 20 fractional bits.
pub const ADD_LEFT_SHIFT: i32 = 20;

/// The integer parameters of an int8 addition, as TFLite Micro's `CalculateOpDataAdd` derives
/// them from the two input and the output quantisations.
///
/// Each multiplier is Q0.31 in `[2^30, 2^31)` (or 0) with a non-positive `shift`: it scales by
/// `multiplier * 2^(shift - 31)`, a real factor below 1. Build it with [`AddParams::new`]; a
/// hand-made value must keep the zero points in `[-128, 127]`, the shifts in `[-31, 0]` and
/// `left_shift` in `[0, 23]` (otherwise the outputs are unspecified, but [`add_i8`] still does
/// not panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddParams {
    /// Zero point of the first input.
    pub input1_zero_point: i32,
    /// Q0.31 multiplier of the first input, `s1 / (2 * max(s1, s2))`.
    pub input1_multiplier: i32,
    /// Shift (`<= 0`, a right shift) of the first input's multiplier.
    pub input1_shift: i32,
    /// Zero point of the second input.
    pub input2_zero_point: i32,
    /// Q0.31 multiplier of the second input, `s2 / (2 * max(s1, s2))`.
    pub input2_multiplier: i32,
    /// Shift (`<= 0`, a right shift) of the second input's multiplier.
    pub input2_shift: i32,
    /// Q0.31 multiplier of the sum, `2 * max(s1, s2) / (2^left_shift * s_out)`.
    pub output_multiplier: i32,
    /// Shift (`<= 0`, a right shift) of the output multiplier.
    pub output_shift: i32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// Left shift applied to both inputs first ([`ADD_LEFT_SHIFT`]).
    pub left_shift: i32,
    /// Lower clamp (the fused activation's minimum).
    pub act_min: i8,
    /// Upper clamp (the fused activation's maximum).
    pub act_max: i8,
}

impl AddParams {
    /// The parameters of `output = input1 + input2` with the given quantisations and output
    /// clamp (`[-128, 127]` for no activation, `[max(-128, output.zero_point), 127]` for a fused
    /// ReLU), exactly as TFLite Micro's `CalculateOpDataAdd`:
    ///
    /// - `left_shift = 20`;
    /// - `twice_max = 2 * f64(max(s1, s2))` (the maximum taken in `f32`);
    /// - `m1 = f64(s1) / twice_max`, `m2 = f64(s2) / twice_max`,
    ///   `m_out = twice_max / (2^20 * f64(s_out))`, all in `f64`;
    /// - each quantised with
    ///   [`try_quantize_multiplier_smaller_than_one`](crate::quant::try_quantize_multiplier_smaller_than_one)
    ///   (TFLite's `QuantizeMultiplierSmallerThanOneExp`).
    ///
    /// `None` where TFLite would fail a check: a scale that is not finite and positive, a zero
    /// point outside `[-128, 127]`, `act_min > act_max`, or a multiplier that is not below 1
    /// (`m_out >= 1`, that is `s_out <= 2 * max(s1, s2) / 2^20`, or a multiplier that rounds up
    /// to 1).
    ///
    /// ```
    /// use infer_core::format::QParams;
    /// use infer_core::kernels::AddParams;
    ///
    /// let q = |scale, zero_point| QParams { scale, zero_point };
    /// let p = AddParams::new(q(0.5, 0), q(0.25, 0), q(1.0, 0), -128, 127).unwrap();
    /// // twice_max = 1: m1 = 0.5, m2 = 0.25 = 0.5 * 2^-1, m_out = 2^-20 = 0.5 * 2^-19.
    /// assert_eq!((p.input1_multiplier, p.input1_shift), (1 << 30, 0));
    /// assert_eq!((p.input2_multiplier, p.input2_shift), (1 << 30, -1));
    /// assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, -19));
    /// ```
    pub fn new(
        input1: QParams,
        input2: QParams,
        output: QParams,
        act_min: i8,
        act_max: i8,
    ) -> Option<Self> {
        let valid_scale = |q: QParams| q.scale.is_finite() && q.scale > 0.0;
        let valid_zero_point = |q: QParams| (-128..=127).contains(&q.zero_point);
        let all = [input1, input2, output];
        if !all.iter().all(|&q| valid_scale(q) && valid_zero_point(q)) || act_min > act_max {
            return None;
        }
        let twice_max = 2.0 * f64::from(input1.scale.max(input2.scale));
        let m1 = f64::from(input1.scale) / twice_max;
        let m2 = f64::from(input2.scale) / twice_max;
        let m_out = twice_max / (f64::from(1_u32 << ADD_LEFT_SHIFT) * f64::from(output.scale));
        let (input1_multiplier, input1_shift) = try_quantize_multiplier_smaller_than_one(m1)?;
        let (input2_multiplier, input2_shift) = try_quantize_multiplier_smaller_than_one(m2)?;
        let (output_multiplier, output_shift) = try_quantize_multiplier_smaller_than_one(m_out)?;
        Some(Self {
            input1_zero_point: input1.zero_point,
            input1_multiplier,
            input1_shift,
            input2_zero_point: input2.zero_point,
            input2_multiplier,
            input2_shift,
            output_multiplier,
            output_shift,
            output_zero_point: output.zero_point,
            left_shift: ADD_LEFT_SHIFT,
            act_min,
            act_max,
        })
    }
}

/// TFLite's `MultiplyByQuantizedMultiplierSmallerThanOneExp`:
/// `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, multiplier), -shift)`.
#[inline(always)]
fn scale_down(x: i32, multiplier: i32, right_shift: i32) -> i32 {
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x, multiplier),
        right_shift,
    )
}

/// Element-wise int8 addition (TFLite Micro's reference int8 `ADD`, same shapes, no
/// broadcasting).
///
/// With `L = params.left_shift` (20) and `scale(x, m, s) =
/// RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), -s)`:
///
/// ```text
/// a = scale((input1[i] - zp1) << L, m1, shift1)
/// b = scale((input2[i] - zp2) << L, m2, shift2)
/// output[i] = clamp(scale(a + b, m_out, shift_out) + zp_out, act_min, act_max)
/// ```
///
/// Rounding: three roundings per element, each that of
/// [`crate::quant::multiply_by_quantized_multiplier`] with a non-positive shift (the doubling
/// high multiply rounds to nearest with negative ties toward zero, the divide by a power of two
/// rounds half away from zero). Integer-only; the arithmetic is done in `i32` and cannot
/// overflow for parameters from [`AddParams::new`] (`|x - zp| <= 255`, so every intermediate is
/// below `2^28` in magnitude); with hand-made out-of-range parameters it wraps.
///
/// # Shapes
///
/// - `input1`, `input2`, `output`: the same number of elements, any layout (the shapes must be
///   equal; there is no broadcasting). Extra elements of a longer slice are ignored (a
///   `debug_assert!` fires in debug builds).
///
/// # Example
///
/// ```
/// use infer_core::format::QParams;
/// use infer_core::kernels::{AddParams, add_i8};
///
/// let q = |scale, zero_point| QParams { scale, zero_point };
/// // 0.5 * x1 + 0.25 * x2 in steps of 1.0, fused ReLU (act_min = output zero point = 0).
/// let params = AddParams::new(q(0.5, 0), q(0.25, 0), q(1.0, 0), 0, 127).unwrap();
/// let mut out = [0_i8; 4];
/// add_i8(&[3, 1, -1, 127], &[5, 0, 0, 127], &params, &mut out);
/// // 1.5 + 1.25 = 2.75 -> 3; 0.5 -> 1 (ties away from zero); -0.5 -> -1 -> ReLU 0; 95.25 -> 95
/// assert_eq!(out, [3, 1, 0, 95]);
/// ```
pub fn add_i8(input1: &[i8], input2: &[i8], params: &AddParams, output: &mut [i8]) {
    debug_assert_eq!(input1.len(), output.len());
    debug_assert_eq!(input2.len(), output.len());
    let AddParams {
        input1_zero_point: zp1,
        input1_multiplier: m1,
        input2_zero_point: zp2,
        input2_multiplier: m2,
        output_multiplier: m_out,
        output_zero_point: zp_out,
        act_min,
        act_max,
        ..
    } = *params;
    // Decoded once: the shift amounts as `rounding_divide_by_pot` and `wrapping_shl` take them.
    let left_shift = params.left_shift.clamp(0, 31).unsigned_abs();
    let (shift1, shift2, shift_out) = (
        params.input1_shift.saturating_neg(),
        params.input2_shift.saturating_neg(),
        params.output_shift.saturating_neg(),
    );
    for ((o, &x1), &x2) in output.iter_mut().zip(input1).zip(input2) {
        let a = i32::from(x1).wrapping_sub(zp1).wrapping_shl(left_shift);
        let b = i32::from(x2).wrapping_sub(zp2).wrapping_shl(left_shift);
        let sum = scale_down(a, m1, shift1).wrapping_add(scale_down(b, m2, shift2));
        let out = scale_down(sum, m_out, shift_out).saturating_add(zp_out);
        *o = clamp_i8(out, act_min, act_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    fn q(scale: f32, zero_point: i32) -> QParams {
        QParams { scale, zero_point }
    }

    fn add(x1: &[i8], x2: &[i8], params: &AddParams) -> Vec<i8> {
        let mut out = vec![0_i8; x1.len()];
        add_i8(x1, x2, params, &mut out);
        let mut want = vec![0_i8; x1.len()];
        reference::add_i8(x1, x2, params, &mut want);
        assert_eq!(out, want, "kernel vs reference");
        out
    }

    #[test]
    fn params_hand_computed() {
        // s1 = 0.5, s2 = 0.25, s_out = 1: twice_max = 1; m1 = 0.5 = 0.5 * 2^0 -> (2^30, 0);
        // m2 = 0.25 = 0.5 * 2^-1 -> (2^30, -1); m_out = 1 / 2^20 = 0.5 * 2^-19 -> (2^30, -19).
        let p = AddParams::new(q(0.5, -3), q(0.25, 10), q(1.0, 5), -128, 127).unwrap();
        assert_eq!(
            p,
            AddParams {
                input1_zero_point: -3,
                input1_multiplier: 1 << 30,
                input1_shift: 0,
                input2_zero_point: 10,
                input2_multiplier: 1 << 30,
                input2_shift: -1,
                output_multiplier: 1 << 30,
                output_shift: -19,
                output_zero_point: 5,
                left_shift: 20,
                act_min: -128,
                act_max: 127,
            }
        );

        // Equal scales 1, 1, 1: m1 = m2 = 0.5 -> (2^30, 0); m_out = 2 / 2^20 = 0.5 * 2^-18.
        let p = AddParams::new(q(1.0, 0), q(1.0, 0), q(1.0, 0), 0, 127).unwrap();
        assert_eq!((p.input1_multiplier, p.input1_shift), (1 << 30, 0));
        assert_eq!((p.input2_multiplier, p.input2_shift), (1 << 30, 0));
        assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, -18));

        // s_out = 0.75: m_out = 1 / (2^20 * 0.75) = (2/3) * 2^-19;
        // round((2/3) * 2^31) = round(1431655765.33) = 1431655765.
        let p = AddParams::new(q(0.5, 0), q(0.25, 0), q(0.75, 0), -128, 127).unwrap();
        assert_eq!((p.output_multiplier, p.output_shift), (1_431_655_765, -19));

        // s1 = 0.3, s2 = 0.1 (f32): twice_max = 2 * f64(0.3f32) = 0.600000023841857910156250;
        // m1 = 0.5 exactly -> (2^30, 0); m2 = f64(0.1f32) / twice_max
        // = 0.100000001490116119384765625 / 0.60000002384185791015625 = 0.16666666252745538..
        // = 0.66666665010982.. * 2^-2 -> round(1431655729.78) = 1431655730 (checked with exact
        // rational arithmetic from the two f32 values).
        let p = AddParams::new(q(0.3, 0), q(0.1, 0), q(0.05, 0), -128, 127).unwrap();
        assert_eq!((p.input1_multiplier, p.input1_shift), (1 << 30, 0));
        assert_eq!((p.input2_multiplier, p.input2_shift), (1_431_655_730, -2));
    }

    #[test]
    fn params_rejected() {
        let ok = q(0.5, 0);
        // m_out = 2 * 0.5 / (2^20 * s_out) >= 1 for s_out <= 2^-20.
        let tiny = q(libm::ldexpf(1.0, -20), 0);
        assert_eq!(AddParams::new(ok, ok, tiny, -128, 127), None);
        assert!(AddParams::new(ok, ok, q(libm::ldexpf(1.0, -19), 0), -128, 127).is_some());
        assert_eq!(AddParams::new(q(0.0, 0), ok, ok, -128, 127), None);
        assert_eq!(AddParams::new(ok, q(f32::NAN, 0), ok, -128, 127), None);
        assert_eq!(AddParams::new(ok, ok, q(f32::INFINITY, 0), -128, 127), None);
        assert_eq!(AddParams::new(ok, ok, q(-1.0, 0), -128, 127), None);
        assert_eq!(AddParams::new(q(0.5, 128), ok, ok, -128, 127), None);
        assert_eq!(AddParams::new(ok, q(0.5, -129), ok, -128, 127), None);
        assert_eq!(AddParams::new(ok, ok, q(0.5, 300), -128, 127), None);
        assert_eq!(AddParams::new(ok, ok, ok, 5, 4), None);
        // Zero-point extremes are fine.
        assert!(AddParams::new(q(0.5, -128), q(0.5, 127), q(0.5, -128), -128, 127).is_some());
    }

    #[test]
    fn hand_computed_with_zero_points() {
        // s1 = 0.5, zp1 = -3; s2 = 0.25, zp2 = 10; s_out = 0.75, zp_out = 5.
        // Multipliers (above): m1 = (2^30, 0), m2 = (2^30, -1), m_out = (1431655765, -19).
        // x1 = 7, x2 = 2: real 0.5 * 10 + 0.25 * (-8) = 5 - 2 = 3 -> 3 / 0.75 = 4 -> 4 + 5 = 9.
        //   a = 10 << 20 = 10485760, SRDHM(a, 2^30) = a / 2 = 5242880 (exact);
        //   b = -8 << 20 = -8388608, SRDHM = -4194304, RDBPOT(., 1) = -2097152;
        //   sum = 3145728 = 3 * 2^20; SRDHM(sum, 1431655765) = (3 * 1431655765 * 2^20 + 2^30)
        //   / 2^31 = (4294967295 + 1024) / 2048 = 2097152.49.. -> 2097152; RDBPOT(., 19) = 4.
        // x1 = -3, x2 = 10: both real 0 -> zp_out = 5.
        // x1 = -2, x2 = 10: real 0.5 -> 0.5 / 0.75 = 0.67 -> 1 -> 6.
        // x1 = -4, x2 = 11: real -0.5 + 0.25 = -0.25 -> -0.33 -> 0 -> 5.
        // x1 = -4, x2 = 8: real -0.5 - 0.5 = -1 -> -1.33 -> -1 -> 4.
        let p = AddParams::new(q(0.5, -3), q(0.25, 10), q(0.75, 5), -128, 127).unwrap();
        assert_eq!(
            add(&[7, -3, -2, -4, -4], &[2, 10, 10, 11, 8], &p),
            [9, 5, 6, 5, 4]
        );
    }

    #[test]
    fn ties_round_away_from_zero() {
        // s1 = s2 = 0.5, s_out = 1: twice_max = 1, m1 = m2 = 0.5 -> (2^30, 0),
        // m_out = 2^-20 -> (2^30, -19). (x1 + x2) / 2 exactly at the last step:
        // sum = (x1 + x2) << 19, SRDHM -> (x1 + x2) << 18, RDBPOT(., 19) = round((x1 + x2) / 2).
        let p = AddParams::new(q(0.5, 0), q(0.5, 0), q(1.0, 0), -128, 127).unwrap();
        // 1/2 -> 1, -1/2 -> -1, 3/2 -> 2, -3/2 -> -2, (2 + 1)/2 -> 2, (-2 - 1)/2 -> -2.
        assert_eq!(
            add(&[1, -1, 3, -3, 2, -2], &[0, 0, 0, 0, 1, -1], &p),
            [1, -1, 2, -2, 2, -2]
        );
    }

    #[test]
    fn saturation_and_relu_clamp() {
        // All scales 1, zero points 0: m1 = m2 = (2^30, 0), m_out = (2^30, -18):
        // out = x1 + x2 exactly, then clamped.
        let p = AddParams::new(q(1.0, 0), q(1.0, 0), q(1.0, 0), -128, 127).unwrap();
        assert_eq!(
            add(
                &[127, -128, 100, -100, 5, -5],
                &[127, -128, 27, -28, 2, 2],
                &p
            ),
            [127, -128, 127, -128, 7, -3]
        );
        // Fused ReLU: act_min = zp_out = 0.
        let relu = AddParams::new(q(1.0, 0), q(1.0, 0), q(1.0, 0), 0, 127).unwrap();
        assert_eq!(
            add(&[-5, 5, -128, 127], &[2, -5, 127, 127], &relu),
            [0, 0, 0, 127]
        );
        // Fused ReLU with output zero point -20: act_min = -20 (real 0), real -3 -> -20.
        let relu = AddParams::new(q(1.0, 0), q(1.0, 0), q(1.0, -20), -20, 127).unwrap();
        assert_eq!(add(&[-5, 5, 100], &[2, -1, 100], &relu), [-20, -16, 127]);
        // Zero-point extremes: zp1 = -128, zp2 = 127, zp_out = -128 (scales 1):
        // (x1 + 128) + (x2 - 127) - 128: 255 - 255 - 128, 0 + 0 - 128, 128 - 127 - 128,
        // 255 + 0 - 128.
        let ext = AddParams::new(q(1.0, -128), q(1.0, 127), q(1.0, -128), -128, 127).unwrap();
        assert_eq!(
            add(&[127, -128, 0, 127], &[-128, 127, 0, 127], &ext),
            [-128, -128, -127, 127]
        );
    }

    /// A scale in about `[2^-12, 2^4)`, log-uniform.
    fn arb_scale() -> impl Strategy<Value = f32> {
        (-12_i32..4, 1.0_f32..2.0).prop_map(|(e, m)| libm::ldexpf(m, e))
    }

    fn arb_qparams() -> impl Strategy<Value = QParams> {
        (arb_scale(), -128_i32..=127).prop_map(|(scale, zero_point)| QParams { scale, zero_point })
    }

    fn arb_inputs() -> impl Strategy<Value = (Vec<i8>, Vec<i8>)> {
        (0_usize..80).prop_flat_map(|n| {
            (
                proptest::collection::vec(any::<i8>(), n),
                proptest::collection::vec(any::<i8>(), n),
            )
        })
    }

    proptest! {
        #[test]
        fn matches_reference_from_qparams(
            (q1, q2, q_out) in (arb_qparams(), arb_qparams(), arb_qparams()),
            (a, b) in (any::<i8>(), any::<i8>()),
            (x1, x2) in arb_inputs(),
        ) {
            let params = AddParams::new(q1, q2, q_out, a.min(b), a.max(b));
            // 2 * 2^4 / 2^20 < 2^-12: every output scale in range is valid.
            prop_assert!(params.is_some());
            let params = params.unwrap();
            let mut out = vec![0_i8; x1.len()];
            add_i8(&x1, &x2, &params, &mut out);
            let mut want = vec![0_i8; x1.len()];
            reference::add_i8(&x1, &x2, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        #[test]
        fn matches_reference_raw_params(
            zps in (-128_i32..=127, -128_i32..=127, -128_i32..=127),
            multipliers in proptest::array::uniform3(
                prop_oneof![8 => (1_i32 << 30)..=i32::MAX, 1 => Just(0)],
            ),
            shifts in proptest::array::uniform3(-31_i32..=0),
            (a, b) in (any::<i8>(), any::<i8>()),
            (x1, x2) in arb_inputs(),
        ) {
            let params = AddParams {
                input1_zero_point: zps.0,
                input1_multiplier: multipliers[0],
                input1_shift: shifts[0],
                input2_zero_point: zps.1,
                input2_multiplier: multipliers[1],
                input2_shift: shifts[1],
                output_multiplier: multipliers[2],
                output_shift: shifts[2],
                output_zero_point: zps.2,
                left_shift: ADD_LEFT_SHIFT,
                act_min: a.min(b),
                act_max: a.max(b),
            };
            let mut out = vec![0_i8; x1.len()];
            add_i8(&x1, &x2, &params, &mut out);
            let mut want = vec![0_i8; x1.len()];
            reference::add_i8(&x1, &x2, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        /// Any parameters at all, however invalid: no panic, and still the reference's outputs
        /// (both wrap the same way).
        #[test]
        fn arbitrary_params_do_not_panic(
            fields in proptest::array::uniform10(any::<i32>()),
            (a, b) in (any::<i8>(), any::<i8>()),
            (x1, x2) in arb_inputs(),
        ) {
            let params = AddParams {
                input1_zero_point: fields[0],
                input1_multiplier: fields[1],
                input1_shift: fields[2],
                input2_zero_point: fields[3],
                input2_multiplier: fields[4],
                input2_shift: fields[5],
                output_multiplier: fields[6],
                output_shift: fields[7],
                output_zero_point: fields[8],
                left_shift: fields[9],
                act_min: a,
                act_max: b,
            };
            let mut out = vec![0_i8; x1.len()];
            add_i8(&x1, &x2, &params, &mut out);
            let mut want = vec![0_i8; x1.len()];
            reference::add_i8(&x1, &x2, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        /// Against the real-valued sum: within one step of `round((s1 (x1 - zp1) + s2 (x2 -
        /// zp2)) / s_out) + zp_out` before the clamp (the three fixed-point roundings).
        #[test]
        fn close_to_real_sum(
            (q1, q2, q_out) in (arb_qparams(), arb_qparams(), arb_qparams()),
            (x1, x2) in arb_inputs(),
        ) {
            let params = AddParams::new(q1, q2, q_out, -128, 127).unwrap();
            let mut out = vec![0_i8; x1.len()];
            add_i8(&x1, &x2, &params, &mut out);
            for ((&o, &a), &b) in out.iter().zip(&x1).zip(&x2) {
                let real = f64::from(q1.scale) * f64::from(i32::from(a) - q1.zero_point)
                    + f64::from(q2.scale) * f64::from(i32::from(b) - q2.zero_point);
                let want = (real / f64::from(q_out.scale) + f64::from(q_out.zero_point))
                    .clamp(-128.0, 127.0);
                prop_assert!((f64::from(o) - want).abs() <= 1.0, "got {o}, real {want}");
            }
        }
    }
}
