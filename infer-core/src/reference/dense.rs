//! Reference fully connected layer.

use super::requant;
use crate::kernels::QRequant;

/// Fully connected int8 layer, per-output-channel requantisation: one output at a time, one
/// weight at a time. See [`crate::kernels::dense_i8`] for the equation, shapes and rounding;
/// this takes the same arguments less the `work` buffer.
///
/// `in_dim` is `input.len()`; outputs beyond `output` or `requant`'s channels are left alone,
/// weights beyond `weights` count as 0.
pub fn dense_i8(
    input: &[i8],
    input_zero_point: i32,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
) {
    let in_dim = input.len();
    for (o, out) in output.iter_mut().enumerate().take(requant.channels()) {
        let mut acc = requant::bias(requant, o);
        for (i, &x) in input.iter().enumerate() {
            let weight = weights.get(o * in_dim + i).map_or(0, |&w| i32::from(w));
            let centred = i32::from(x) - input_zero_point;
            acc = acc.wrapping_add(weight.wrapping_mul(centred));
        }
        *out = requant::output(requant, o, acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // As the kernel's doc example: multiplier 0.5, bias [7, 0], zero points -1 and 3.
        let half = (1_i32 << 30).to_le_bytes();
        let mut multipliers = [0; 8];
        multipliers[..4].copy_from_slice(&half);
        multipliers[4..].copy_from_slice(&half);
        let requant = QRequant {
            bias: &[7, 0, 0, 0, 0, 0, 0, 0],
            multipliers: &multipliers,
            shifts: &[0, 0],
            output_zero_point: 3,
            act_min: -128,
            act_max: 127,
        };
        let mut out = [0_i8; 2];
        dense_i8(&[10, -5], -1, &[1, 2, -3, 4], &requant, &mut out);
        // acc0 = 7 + 11 - 8 = 10 -> 5 + 3; acc1 = -33 - 16 = -49 -> -24.5 -> -24, + 3
        assert_eq!(out, [8, -21]);
    }
}
