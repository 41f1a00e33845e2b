//! Portable int8 reference kernels, bit-exact with TFLite Micro's reference integer kernels.
//!
//! Kernels are free functions over plain slices. They never allocate and never panic; their
//! shape preconditions (documented under `# Shapes`) are checked once by
//! [`crate::Model::from_bytes`], and a call that breaks them gives unspecified output values (a
//! `debug_assert!` fires in debug builds) rather than a panic.
//!
//! Convolution and dense layers accumulate in `i32`,
//! `acc = bias[c] + Σ w * (x - input_zero_point)`, with wrapping addition (the C reference's
//! two's complement behaviour; no real model comes near it), then requantise each output
//! channel with [`crate::quant::multiply_by_quantized_multiplier`], add the output zero point and
//! clamp to the fused activation range ([`QRequant`]).

mod conv2d;
mod dense;
mod pool;

pub use conv2d::{Conv2dParams, conv2d_i8};
pub use dense::dense_i8;
pub use pool::{Pool2dParams, avg_pool2d_i8, max_pool2d_i8};

use crate::quant::multiply_by_quantized_multiplier;

/// Per-output-channel requantisation of a conv or dense layer, read in place from a model file.
///
/// Channel `c` turns its `i32` accumulator into an output as
/// `clamp(multiply_by_quantized_multiplier(acc, multipliers[c], shifts[c]) + output_zero_point,
/// act_min, act_max)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QRequant<'a> {
    /// `i32` biases, little endian, 4 bytes per channel.
    pub bias: &'a [u8],
    /// `i32` Q0.31 multipliers, little endian, 4 bytes per channel.
    pub multipliers: &'a [u8],
    /// Shifts (positive = left), one per channel.
    pub shifts: &'a [i8],
    /// Zero point of the output tensor.
    pub output_zero_point: i32,
    /// Lower clamp (the fused activation's minimum).
    pub act_min: i8,
    /// Upper clamp (the fused activation's maximum).
    pub act_max: i8,
}

impl QRequant<'_> {
    /// Number of output channels described (the shortest of the three arrays).
    pub fn channels(&self) -> usize {
        (self.bias.len() / 4)
            .min(self.multipliers.len() / 4)
            .min(self.shifts.len())
    }

    /// `(bias, multiplier, shift)` of each channel in order.
    fn iter(&self) -> impl Iterator<Item = (i32, i32, i32)> + '_ {
        self.bias
            .chunks_exact(4)
            .zip(self.multipliers.chunks_exact(4))
            .zip(self.shifts)
            .map(|((b, m), &s)| (le_i32(b), le_i32(m), i32::from(s)))
    }

    /// The output value for accumulator `acc` (bias already added) with a channel's multiplier
    /// and shift.
    #[inline]
    fn output(&self, acc: i32, multiplier: i32, shift: i32) -> i8 {
        let out = multiply_by_quantized_multiplier(acc, multiplier, shift)
            .saturating_add(self.output_zero_point);
        clamp_i8(out, self.act_min, self.act_max)
    }
}

/// The little-endian `i32` in a 4-byte chunk (0 for any other length, which cannot happen with
/// `chunks_exact(4)`).
#[inline]
pub(crate) fn le_i32(chunk: &[u8]) -> i32 {
    match *chunk {
        [a, b, c, d] => i32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// `x` clamped to `[lo, hi]` (to `hi` if `lo > hi`), as `i8`.
#[inline]
#[allow(clippy::cast_possible_truncation)] // in [-128, 127] after the clamp: exact
pub(crate) fn clamp_i8(x: i32, lo: i8, hi: i8) -> i8 {
    x.max(i32::from(lo)).min(i32::from(hi)) as i8
}

/// `Σ w * (x - zero_point)` over two equally long rows, wrapping on overflow.
///
/// A plain zipped reduction so the compiler can vectorise it. With `zero_point` in
/// `[-128, 127]` neither the subtraction nor the product can overflow; they are written as
/// wrapping operations so that overflow checks (on in test builds) do not block vectorisation.
#[inline]
fn dot_i8(weights: &[i8], input: &[i8], zero_point: i32) -> i32 {
    weights.iter().zip(input).fold(0_i32, |acc, (&w, &x)| {
        acc.wrapping_add(i32::from(w).wrapping_mul(i32::from(x).wrapping_sub(zero_point)))
    })
}

/// Helpers shared by the kernels' property tests.
#[cfg(test)]
pub(crate) mod test_util {
    use crate::quant::multiply_by_quantized_multiplier;
    use proptest::prelude::*;

    /// Owned per-channel requantisation data for tests, decoded and as file bytes.
    #[derive(Debug, Clone)]
    pub struct OwnedRequant {
        pub bias: Vec<i32>,
        pub multipliers: Vec<i32>,
        pub shifts: Vec<i8>,
        pub output_zero_point: i32,
        pub act_min: i8,
        pub act_max: i8,
        bias_bytes: Vec<u8>,
        multiplier_bytes: Vec<u8>,
    }

    impl OwnedRequant {
        pub fn as_requant(&self) -> super::QRequant<'_> {
            super::QRequant {
                bias: &self.bias_bytes,
                multipliers: &self.multiplier_bytes,
                shifts: &self.shifts,
                output_zero_point: self.output_zero_point,
                act_min: self.act_min,
                act_max: self.act_max,
            }
        }
    }

    /// Random requantisation for `channels` channels: biases small or anywhere in `i32`,
    /// multipliers 0 or in `[2^30, 2^31)`, shifts in `[-31, 30]` (mostly realistic), any output
    /// zero point and activation range.
    pub fn arb_requant(channels: usize) -> impl Strategy<Value = OwnedRequant> {
        let bias = prop_oneof![3 => -100_000_i32..100_000, 1 => any::<i32>()];
        let multiplier = prop_oneof![8 => (1_i32 << 30)..=i32::MAX, 1 => Just(0)];
        let shift = prop_oneof![8 => -12_i8..=2, 1 => -31_i8..=30];
        (
            proptest::collection::vec(bias, channels),
            proptest::collection::vec(multiplier, channels),
            proptest::collection::vec(shift, channels),
            -128_i32..=127,
            any::<i8>(),
            any::<i8>(),
        )
            .prop_map(|(bias, multipliers, shifts, output_zero_point, a, b)| {
                OwnedRequant {
                    bias_bytes: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
                    multiplier_bytes: multipliers.iter().flat_map(|m| m.to_le_bytes()).collect(),
                    bias,
                    multipliers,
                    shifts,
                    output_zero_point,
                    act_min: a.min(b),
                    act_max: a.max(b),
                }
            })
    }

    /// Requantise one accumulator the plain way: widen, add the zero point, clamp.
    pub fn naive_requant(acc: i32, multiplier: i32, shift: i8, out_zp: i32, act: (i8, i8)) -> i8 {
        let scaled = multiply_by_quantized_multiplier(acc, multiplier, i32::from(shift));
        let v = (i64::from(scaled) + i64::from(out_zp)).clamp(i64::from(act.0), i64::from(act.1));
        i8::try_from(v).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_i8_bounds() {
        assert_eq!(clamp_i8(1000, -128, 127), 127);
        assert_eq!(clamp_i8(-1000, -128, 127), -128);
        assert_eq!(clamp_i8(5, -3, 100), 5);
        assert_eq!(clamp_i8(-5, -3, 100), -3);
        assert_eq!(clamp_i8(0, 10, 5), 5); // inverted range: hi wins, no panic
    }

    #[test]
    fn le_i32_reads_little_endian() {
        assert_eq!(le_i32(&[0x78, 0x56, 0x34, 0x12]), 0x1234_5678);
        assert_eq!(le_i32(&[0xff, 0xff, 0xff, 0xff]), -1);
        assert_eq!(le_i32(&[1, 2, 3]), 0);
    }

    #[test]
    fn dot_subtracts_zero_point() {
        // 1*(3-1) + -2*(-1-1) + 127*(127-1) = 2 + 4 + 16002
        assert_eq!(dot_i8(&[1, -2, 127], &[3, -1, 127], 1), 16_008);
    }
}
