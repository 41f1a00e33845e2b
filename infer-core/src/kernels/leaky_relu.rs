//! Int8 LeakyReLU (TFLite's int8 `LEAKY_RELU`).

use super::clamp_i8;
use crate::format::QParams;
use crate::quant::{multiply_by_quantized_multiplier, try_quantize_multiplier};

/// The integer parameters of an int8 LeakyReLU, as TFLite Micro's `CalculateOpDataLeakyRelu`
/// derives them: two Q0.31 multipliers with their shifts (positive = left), one for
/// non-negative inputs (`s_in / s_out`) and one for negative inputs (`s_in * alpha / s_out`).
///
/// Build it with [`LeakyReluParams::new`]; a hand-made value must keep the zero points in
/// `[-128, 127]` and the shifts in `[-31, 30]` (otherwise the outputs are unspecified, but
/// [`leaky_relu_i8`] still does not panic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LeakyReluParams {
    /// Zero point of the input.
    pub input_zero_point: i32,
    /// Zero point of the output.
    pub output_zero_point: i32,
    /// Q0.31 multiplier for inputs at or above the zero point, `s_in / s_out`.
    pub output_multiplier_identity: i32,
    /// Shift (positive = left) of the identity multiplier.
    pub output_shift_identity: i32,
    /// Q0.31 multiplier for inputs below the zero point, `s_in * alpha / s_out`.
    pub output_multiplier_alpha: i32,
    /// Shift (positive = left) of the alpha multiplier.
    pub output_shift_alpha: i32,
}

impl LeakyReluParams {
    /// The parameters of `y = x >= 0 ? x : alpha * x` from `input` to `output`, exactly as
    /// TFLite Micro's `CalculateOpDataLeakyRelu`: the real multipliers are formed in **`f32`**
    /// (`s_in * alpha / s_out`, left to right, and `s_in / s_out`), then widened to `f64` and
    /// quantised with [`try_quantize_multiplier`] (TFLite's `QuantizeMultiplier`). Forming them
    /// in `f64` instead changes the low bits of the multipliers.
    ///
    /// `None` for a scale that is not finite and positive, a zero point outside `[-128, 127]`,
    /// an `alpha` that is negative or not finite (TFLite's usual `alpha` is in `(0, 1)`; 0
    /// gives a ReLU), or a multiplier that cannot be represented (`>= 2^30` or not finite).
    ///
    /// ```
    /// use infer_core::format::QParams;
    /// use infer_core::kernels::LeakyReluParams;
    ///
    /// let q = |scale, zero_point| QParams { scale, zero_point };
    /// let p = LeakyReluParams::new(q(0.5, -10), q(0.25, 3), 0.25).unwrap();
    /// // identity 0.5 / 0.25 = 2 = 0.5 * 2^2; alpha 0.5 * 0.25 / 0.25 = 0.5 * 2^0.
    /// assert_eq!((p.output_multiplier_identity, p.output_shift_identity), (1 << 30, 2));
    /// assert_eq!((p.output_multiplier_alpha, p.output_shift_alpha), (1 << 30, 0));
    /// ```
    pub fn new(input: QParams, output: QParams, alpha: f32) -> Option<Self> {
        let valid = |q: QParams| {
            q.scale.is_finite() && q.scale > 0.0 && (-128..=127).contains(&q.zero_point)
        };
        if !valid(input) || !valid(output) || !alpha.is_finite() || alpha < 0.0 {
            return None;
        }
        let alpha_real = f64::from(input.scale * alpha / output.scale);
        let identity_real = f64::from(input.scale / output.scale);
        let (output_multiplier_alpha, output_shift_alpha) = try_quantize_multiplier(alpha_real)?;
        let (output_multiplier_identity, output_shift_identity) =
            try_quantize_multiplier(identity_real)?;
        Some(Self {
            input_zero_point: input.zero_point,
            output_zero_point: output.zero_point,
            output_multiplier_identity,
            output_shift_identity,
            output_multiplier_alpha,
            output_shift_alpha,
        })
    }

    /// The output for one input value.
    #[inline]
    fn apply(&self, x: i8) -> i8 {
        let value = i32::from(x).wrapping_sub(self.input_zero_point);
        let (multiplier, shift) = if value >= 0 {
            (self.output_multiplier_identity, self.output_shift_identity)
        } else {
            (self.output_multiplier_alpha, self.output_shift_alpha)
        };
        let out = multiply_by_quantized_multiplier(value, multiplier, shift)
            .saturating_add(self.output_zero_point);
        clamp_i8(out, i8::MIN, i8::MAX)
    }
}

/// Inputs from which [`leaky_relu_i8`] first tabulates all 256 outputs and then looks each
/// element up.
const TABLE_MIN_LEN: usize = 256;

/// Element-wise int8 LeakyReLU (TFLite's reference `QuantizeLeakyRelu`).
///
/// With `v = input[i] - zp_in` and `MBQM` =
/// [`crate::quant::multiply_by_quantized_multiplier`]:
///
/// ```text
/// output[i] = clamp(zp_out + MBQM(v, m_identity, shift_identity), -128, 127)   if v >= 0
/// output[i] = clamp(zp_out + MBQM(v, m_alpha, shift_alpha), -128, 127)         if v < 0
/// ```
///
/// Rounding: that of `MultiplyByQuantizedMultiplier` (TFLite's default double rounding: the
/// doubling high multiply rounds to nearest with negative ties toward zero, then the divide by
/// a power of two rounds half away from zero). The clamp is always the full int8 range (TFLite's
/// LeakyReLU has no fused activation). Integer-only: from 256 elements on, the 256 possible
/// outputs are computed once into a table on the stack and looked up.
///
/// # Shapes
///
/// - `input`, `output`: the same number of elements, any layout. Extra elements of the longer
///   slice are ignored (a `debug_assert!` fires in debug builds).
///
/// # Example
///
/// ```
/// use infer_core::format::QParams;
/// use infer_core::kernels::{LeakyReluParams, leaky_relu_i8};
///
/// let q = |scale, zero_point| QParams { scale, zero_point };
/// // Same scale in and out, zero points 0, alpha = 0.25.
/// let params = LeakyReluParams::new(q(0.1, 0), q(0.1, 0), 0.25).unwrap();
/// let mut out = [0_i8; 5];
/// leaky_relu_i8(&[100, 0, -8, -6, -128], &params, &mut out);
/// // -6 * 0.25 = -1.5 -> -2 (half away from zero in the final shift); -128 * 0.25 = -32.
/// assert_eq!(out, [100, 0, -2, -2, -32]);
/// ```
pub fn leaky_relu_i8(input: &[i8], params: &LeakyReluParams, output: &mut [i8]) {
    debug_assert_eq!(input.len(), output.len());
    if input.len() < TABLE_MIN_LEN {
        for (o, &x) in output.iter_mut().zip(input) {
            *o = params.apply(x);
        }
        return;
    }
    // table[b] is the output for the input whose two's complement byte is b.
    let table: [i8; 256] = core::array::from_fn(|b| {
        let byte = u8::try_from(b).unwrap_or(0);
        params.apply(i8::from_le_bytes([byte]))
    });
    for (o, &x) in output.iter_mut().zip(input) {
        let [byte] = x.to_le_bytes();
        *o = table[usize::from(byte)]; // a u8 index into 256 entries: cannot fail
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

    /// The kernel's output, checked against the reference on the same input and on the input
    /// repeated past [`TABLE_MIN_LEN`] (the table path).
    fn run(input: &[i8], params: &LeakyReluParams) -> Vec<i8> {
        let mut out = vec![0_i8; input.len()];
        leaky_relu_i8(input, params, &mut out);
        let mut want = vec![0_i8; input.len()];
        reference::leaky_relu_i8(input, params, &mut want);
        assert_eq!(out, want, "direct path vs reference");
        let long: Vec<i8> = input
            .iter()
            .copied()
            .cycle()
            .take(300 * input.len())
            .collect();
        let mut long_out = vec![0_i8; long.len()];
        leaky_relu_i8(&long, params, &mut long_out);
        let long_want: Vec<i8> = out.iter().copied().cycle().take(long.len()).collect();
        assert_eq!(long_out, long_want, "table path");
        out
    }

    #[test]
    fn params_hand_computed() {
        // identity 0.5 / 0.25 = 2 = 0.5 * 2^2 -> (2^30, 2); alpha 0.5 * 0.25 / 0.25 = 0.5 * 2^0
        // -> (2^30, 0). All exact in f32.
        let p = LeakyReluParams::new(q(0.5, -10), q(0.25, 3), 0.25).unwrap();
        assert_eq!(
            p,
            LeakyReluParams {
                input_zero_point: -10,
                output_zero_point: 3,
                output_multiplier_identity: 1 << 30,
                output_shift_identity: 2,
                output_multiplier_alpha: 1 << 30,
                output_shift_alpha: 0,
            }
        );
        // Equal scales, alpha = 0.1: identity 1 = 0.5 * 2^1 -> (2^30, 1); alpha is f32 0.1 =
        // 13421773 * 2^-27 = (13421773 * 2^7) * 2^-34 -> (1717986944, -3). (The f64 0.1 would
        // give 1717986918.)
        let p = LeakyReluParams::new(q(1.0, 0), q(1.0, 0), 0.1).unwrap();
        assert_eq!(
            (p.output_multiplier_identity, p.output_shift_identity),
            (1 << 30, 1)
        );
        assert_eq!(
            (p.output_multiplier_alpha, p.output_shift_alpha),
            (1_717_986_944, -3)
        );
        // alpha = 0: a ReLU; the alpha multiplier is (0, 0).
        let p = LeakyReluParams::new(q(1.0, 0), q(0.5, 0), 0.0).unwrap();
        assert_eq!(
            (p.output_multiplier_identity, p.output_shift_identity),
            (1 << 30, 2)
        );
        assert_eq!((p.output_multiplier_alpha, p.output_shift_alpha), (0, 0));
    }

    #[test]
    fn params_formed_in_f32_like_tflite() {
        // s_in = 0.1f32 = 13421773 * 2^-27, alpha = 0.3f32 = 5033165 * 2^-24,
        // s_out = 0.7f32 = 11744051 * 2^-24 (exact rational arithmetic on these values):
        // - identity in f32: s_in / s_out rounds to 9586981 * 2^-26 = 0.14285714924..;
        //   as Q0.31: 9586981 * 2^7 = 1227133568, shift -2. In f64 it would be 1227133552.
        // - alpha in f32: s_in * alpha rounds to 1006633 * 2^-25 = 0.030000001192..; divided by
        //   s_out it rounds to 0.04285714402794838 -> (1472560256, -4). In f64: 1472560321.
        let p = LeakyReluParams::new(q(0.1, 0), q(0.7, 0), 0.3).unwrap();
        assert_eq!(
            (p.output_multiplier_identity, p.output_shift_identity),
            (1_227_133_568, -2)
        );
        assert_eq!(
            (p.output_multiplier_alpha, p.output_shift_alpha),
            (1_472_560_256, -4)
        );
        let f64_identity = f64::from(0.1_f32) / f64::from(0.7_f32);
        assert_eq!(
            try_quantize_multiplier(f64_identity),
            Some((1_227_133_552, -2))
        );
    }

    #[test]
    fn params_rejected() {
        let ok = q(0.5, 0);
        assert_eq!(LeakyReluParams::new(ok, ok, -0.1), None);
        assert_eq!(LeakyReluParams::new(ok, ok, f32::NAN), None);
        assert_eq!(LeakyReluParams::new(ok, ok, f32::INFINITY), None);
        assert_eq!(LeakyReluParams::new(q(0.0, 0), ok, 0.1), None);
        assert_eq!(LeakyReluParams::new(ok, q(f32::NAN, 0), 0.1), None);
        assert_eq!(LeakyReluParams::new(q(0.5, 128), ok, 0.1), None);
        assert_eq!(LeakyReluParams::new(ok, q(0.5, -129), 0.1), None);
        // identity 2^30 does not fit in shift 30.
        assert_eq!(
            LeakyReluParams::new(q(1.0, 0), q(libm::ldexpf(1.0, -30), 0), 0.1),
            None
        );
        // s_in / s_out overflows f32.
        assert_eq!(LeakyReluParams::new(q(1e30, 0), q(1e-30, 0), 0.1), None);
        assert!(LeakyReluParams::new(q(0.5, -128), q(0.5, 127), 0.1).is_some());
    }

    #[test]
    fn hand_computed_both_branches() {
        // zp_in = -10, zp_out = 3; identity (2^30, 2): MBQM(v) = SRDHM(4v, 2^30) = 2v exactly;
        // alpha (2^30, 0): MBQM(v) = SRDHM(v, 2^30) = v / 2 rounded, negative ties toward 0.
        // x =    0: v =  10 ->  20 + 3 = 23
        // x =  -10: v =   0 -> identity, 0 + 3 = 3
        // x =  -20: v = -10 ->  -5 + 3 = -2
        // x =  -11: v =  -1 -> -0.5: (-2^30 + 1 - 2^30) / 2^31 = -0.99.. -> 0 -> 3
        // x =  -13: v =  -3 -> -1.5: (-3 * 2^30 + 1 - 2^30) / 2^31 = -1.99.. -> -1 -> 2
        // x =  127: v = 137 -> 274 + 3 -> saturates at 127
        // x = -128: v = -118 -> -59 + 3 = -56
        let p = LeakyReluParams::new(q(0.5, -10), q(0.25, 3), 0.25).unwrap();
        assert_eq!(
            run(&[0, -10, -20, -11, -13, 127, -128], &p),
            [23, 3, -2, 3, 2, 127, -56]
        );

        // Equal scales, zero points 0, alpha = 0.25 -> (2^30, -1): SRDHM(v, 2^30) then
        // RDBPOT(., 1), which rounds half away from zero.
        // v =   -1: SRDHM -> 0 (-0.5 toward 0), RDBPOT -> 0        (real -0.25)
        // v =   -2: SRDHM -> -1, RDBPOT(-1, 1) = -0.5 -> -1        (real -0.5)
        // v =   -3: SRDHM(-3) = -1.99.. -> -1, RDBPOT -> -1        (real -0.75)
        // v =   -6: SRDHM -> -3, RDBPOT(-3, 1) = -1.5 -> -2        (real -1.5)
        // v = -128: -32; v = 127: identity (2^30, 1) -> 127
        let p = LeakyReluParams::new(q(1.0, 0), q(1.0, 0), 0.25).unwrap();
        assert_eq!(
            run(&[-1, -2, -3, -6, -128, 127, 0], &p),
            [0, -1, -1, -2, -32, 127, 0]
        );
    }

    #[test]
    fn saturation_and_zero_point_extremes() {
        // identity 1 / 0.25 = 4 -> (2^30, 3); alpha 1 * 0.5 / 0.25 = 2 -> (2^30, 2).
        // 100 * 4 = 400 -> 127; -100 * 2 = -200 -> -128; 20 * 4 = 80; -20 * 2 = -40.
        let p = LeakyReluParams::new(q(1.0, 0), q(0.25, 0), 0.5).unwrap();
        assert_eq!(run(&[100, -100, 20, -20], &p), [127, -128, 80, -40]);

        // zp_in = 127, zp_out = 127, scales 1, alpha 0.5 -> (2^30, 0), SRDHM(v, 2^30) = v / 2:
        // v = 0 -> 127; v = -1 -> -0.5 -> 0 -> 127; v = -2 -> -1 -> 126;
        // v = -255: (-255 * 2^30 + 1 - 2^30) / 2^31 = -127.99.. -> -127 -> 0.
        let p = LeakyReluParams::new(q(1.0, 127), q(1.0, 127), 0.5).unwrap();
        assert_eq!(run(&[127, 126, 125, -128], &p), [127, 127, 126, 0]);

        // zp_in = -128, zp_out = -128, scales 1: every input is at or above the zero point.
        let p = LeakyReluParams::new(q(1.0, -128), q(1.0, -128), 0.5).unwrap();
        assert_eq!(run(&[127, -128, 0], &p), [127, -128, 0]);

        // alpha = 0 is a ReLU: negative side -> zp_out.
        let p = LeakyReluParams::new(q(1.0, 5), q(1.0, -7), 0.0).unwrap();
        assert_eq!(run(&[4, -128, 5, 6, 127], &p), [-7, -7, -7, -6, 115]);
    }

    /// A scale in about `[2^-10, 2^4)`, log-uniform.
    fn arb_scale() -> impl Strategy<Value = f32> {
        (-10_i32..4, 1.0_f32..2.0).prop_map(|(e, m)| libm::ldexpf(m, e))
    }

    fn arb_qparams() -> impl Strategy<Value = QParams> {
        (arb_scale(), -128_i32..=127).prop_map(|(scale, zero_point)| QParams { scale, zero_point })
    }

    proptest! {
        #[test]
        fn matches_reference_from_qparams(
            input_q in arb_qparams(),
            output_q in arb_qparams(),
            alpha in prop_oneof![4 => 0.0_f32..1.0, 1 => Just(0.0), 1 => 1.0_f32..3.0],
            input in proptest::collection::vec(any::<i8>(), 0..600),
        ) {
            let params = LeakyReluParams::new(input_q, output_q, alpha).unwrap();
            let mut out = vec![0_i8; input.len()];
            leaky_relu_i8(&input, &params, &mut out);
            let mut want = vec![0_i8; input.len()];
            reference::leaky_relu_i8(&input, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        #[test]
        fn matches_reference_raw_params(
            zps in (-128_i32..=127, -128_i32..=127),
            multipliers in proptest::array::uniform2(
                prop_oneof![8 => (1_i32 << 30)..=i32::MAX, 1 => Just(0)],
            ),
            shifts in proptest::array::uniform2(-31_i32..=30),
            input in proptest::collection::vec(any::<i8>(), 0..600),
        ) {
            let params = LeakyReluParams {
                input_zero_point: zps.0,
                output_zero_point: zps.1,
                output_multiplier_identity: multipliers[0],
                output_shift_identity: shifts[0],
                output_multiplier_alpha: multipliers[1],
                output_shift_alpha: shifts[1],
            };
            let mut out = vec![0_i8; input.len()];
            leaky_relu_i8(&input, &params, &mut out);
            let mut want = vec![0_i8; input.len()];
            reference::leaky_relu_i8(&input, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        /// Any parameters at all, however invalid: no panic, and still the reference's outputs
        /// (both wrap the same way), on both paths.
        #[test]
        fn arbitrary_params_do_not_panic(
            fields in proptest::array::uniform6(any::<i32>()),
            input in proptest::collection::vec(any::<i8>(), 0..600),
        ) {
            let params = LeakyReluParams {
                input_zero_point: fields[0],
                output_zero_point: fields[1],
                output_multiplier_identity: fields[2],
                output_shift_identity: fields[3],
                output_multiplier_alpha: fields[4],
                output_shift_alpha: fields[5],
            };
            let mut out = vec![0_i8; input.len()];
            leaky_relu_i8(&input, &params, &mut out);
            let mut want = vec![0_i8; input.len()];
            reference::leaky_relu_i8(&input, &params, &mut want);
            prop_assert_eq!(out, want);
        }

        /// Against the real-valued LeakyReLU: within one step before the clamp.
        #[test]
        fn close_to_real(
            input_q in arb_qparams(),
            output_q in arb_qparams(),
            alpha in 0.0_f32..1.0,
            input in proptest::collection::vec(any::<i8>(), 0..64),
        ) {
            let params = LeakyReluParams::new(input_q, output_q, alpha).unwrap();
            let mut out = vec![0_i8; input.len()];
            leaky_relu_i8(&input, &params, &mut out);
            for (&o, &x) in out.iter().zip(&input) {
                let v = f64::from(input_q.scale) * f64::from(i32::from(x) - input_q.zero_point);
                let y = if v >= 0.0 { v } else { f64::from(alpha) * v };
                let want = (y / f64::from(output_q.scale) + f64::from(output_q.zero_point))
                    .clamp(-128.0, 127.0);
                prop_assert!((f64::from(o) - want).abs() <= 1.0, "got {o}, real {want}");
            }
        }
    }
}
