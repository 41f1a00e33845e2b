//! Fully connected layer.

use super::{QRequant, dot_i8};

/// Fully connected int8 layer with per-output-channel requantisation (TFLite's
/// `FullyConnectedPerChannel`).
///
/// For each output `o`:
///
/// ```text
/// acc = bias[o] + Σ_i weights[o, i] * (input[i] - input_zero_point)
/// output[o] = clamp(multiply_by_quantized_multiplier(acc, multipliers[o], shifts[o])
///                   + output_zero_point, act_min, act_max)
/// ```
///
/// The accumulator is `i32` with wrapping addition.
///
/// Rounding: requantisation only, as in [`crate::quant::multiply_by_quantized_multiplier`]
/// (ties in the high multiply round away from zero for positive and toward zero for negative
/// products, the final power-of-two division rounds half away from zero).
///
/// # Shapes
///
/// - `input`: `[in_dim]`, `in_dim > 0`
/// - `weights`: `[out_dim, in_dim]`, row-major
/// - `requant`: `out_dim` channels
/// - `output`: `[out_dim]`
///
/// # Example
///
/// ```
/// use infer_core::kernels::{QRequant, dense_i8};
///
/// let half = (1_i32 << 30).to_le_bytes(); // multiplier 2^30 with shift 0: times 0.5
/// let mut multipliers = [0; 8];
/// multipliers[..4].copy_from_slice(&half);
/// multipliers[4..].copy_from_slice(&half);
/// let requant = QRequant {
///     bias: &[7, 0, 0, 0, 0, 0, 0, 0], // [7, 0]
///     multipliers: &multipliers,
///     shifts: &[0, 0],
///     output_zero_point: 3,
///     act_min: -128,
///     act_max: 127,
/// };
/// let mut out = [0_i8; 2];
/// // input - zero_point = [11, -4]
/// dense_i8(&[10, -5], -1, &[1, 2, -3, 4], &requant, &mut out);
/// // acc0 = 7 + 11 - 8 = 10 -> 5 + 3; acc1 = -33 - 16 = -49 -> -24.5 -> -24, + 3
/// assert_eq!(out, [8, -21]);
/// ```
pub fn dense_i8(
    input: &[i8],
    input_zero_point: i32,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
) {
    let in_dim = input.len();
    debug_assert!(in_dim > 0, "dense_i8: empty input");
    debug_assert_eq!(Some(weights.len()), in_dim.checked_mul(output.len()));
    debug_assert_eq!(requant.channels(), output.len());
    let rows = weights.chunks_exact(in_dim.max(1));
    for ((out, row), (bias, multiplier, shift)) in output.iter_mut().zip(rows).zip(requant.iter()) {
        let acc = bias.wrapping_add(dot_i8(row, input, input_zero_point));
        *out = requant.output(acc, multiplier, shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{OwnedRequant, arb_requant, naive_requant};
    use proptest::prelude::*;

    #[test]
    fn hand_computed() {
        // Multipliers: 0.75 = 3 * 2^29 (shift 0) and 0.25 = 2^30 * 2^-1 (shift -1).
        let mut multipliers = [0_u8; 8];
        multipliers[..4].copy_from_slice(&(3_i32 << 29).to_le_bytes());
        multipliers[4..].copy_from_slice(&(1_i32 << 30).to_le_bytes());
        let mut bias = [0_u8; 8];
        bias[..4].copy_from_slice(&100_i32.to_le_bytes());
        bias[4..].copy_from_slice(&(-6_i32).to_le_bytes());
        let requant = QRequant {
            bias: &bias,
            multipliers: &multipliers,
            shifts: &[0, -1],
            output_zero_point: -10,
            act_min: -10, // fused ReLU
            act_max: 127,
        };
        let input = [5_i8, -3, 0];
        let weights = [2_i8, -1, 4, -7, 127, -128];
        let mut out = [0_i8; 2];
        dense_i8(&input, 2, &weights, &requant, &mut out);
        // x - zp = [3, -5, -2]
        // acc0 = 100 + 6 + 5 - 8 = 103; 103 * 0.75 = 77.25 -> 77; 77 - 10 = 67
        // acc1 = -6 - 21 - 635 + 256 = -406; -406 * 0.25 = -101.5:
        //   SRDHM(-406, 2^30) = -203 exactly, RoundingDivideByPOT(-203, 1) = -101.5 -> -102;
        //   -102 - 10 = -112, clamped by the ReLU to -10.
        assert_eq!(out, [67, -10]);

        let mut out = [0_i8; 2];
        let no_relu = QRequant {
            act_min: -128,
            ..requant
        };
        dense_i8(&input, 2, &weights, &no_relu, &mut out);
        assert_eq!(out, [67, -112]);
    }

    /// The textbook loop: one output at a time, index arithmetic, no slicing tricks.
    fn naive_dense(input: &[i8], zp: i32, weights: &[i8], rq: &OwnedRequant) -> Vec<i8> {
        let in_dim = input.len();
        (0..rq.bias.len())
            .map(|o| {
                let mut acc = rq.bias[o];
                for i in 0..in_dim {
                    let w = i32::from(weights[o * in_dim + i]);
                    acc = acc.wrapping_add(w * (i32::from(input[i]) - zp));
                }
                let act = (rq.act_min, rq.act_max);
                naive_requant(
                    acc,
                    rq.multipliers[o],
                    rq.shifts[o],
                    rq.output_zero_point,
                    act,
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn matches_naive(
            (input, weights, rq) in (1_usize..48, 1_usize..12).prop_flat_map(|(i, o)| (
                proptest::collection::vec(any::<i8>(), i),
                proptest::collection::vec(any::<i8>(), i * o),
                arb_requant(o),
            )),
            zp in -128_i32..=127,
        ) {
            let out_dim = rq.bias.len();
            let mut out = vec![0_i8; out_dim];
            dense_i8(&input, zp, &weights, &rq.as_requant(), &mut out);
            let want = naive_dense(&input, zp, &weights, &rq);
            prop_assert_eq!(out, want);
        }
    }
}
