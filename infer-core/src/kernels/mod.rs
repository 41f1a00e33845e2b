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
//!
//! The other kernels:
//!
//! - [`add_i8`]: the int8 `ADD` of two tensors with their own quantisation (residual
//!   connections), parameters from [`AddParams::new`];
//! - [`leaky_relu_i8`]: the int8 `LEAKY_RELU`, parameters from [`LeakyReluParams::new`];
//! - [`max_pool2d_i8`], [`avg_pool2d_i8`] and [`global_avg_pool_i8`]: pooling, the output
//!   sharing the input's quantisation.
//!
//! [`crate::reference`] holds a plain scalar loop for each kernel (the fused
//! `conv2d_max_pool2d_i8` is checked against its reference convolution and max pooling in
//! turn), against which the kernels are checked bit for bit.
//!
//! # How the kernels are fast without `unsafe` or intrinsics
//!
//! The hot loops are written so that the compiler's auto-vectoriser finds the int8 idioms of
//! each target (`pmaddwd` on x86, `smlal`/`sdot`-like sequences elsewhere) in portable code:
//!
//! - Dot products run over fixed-size chunks (`&[i8; 32]` weights against `&[i16; 32]` or
//!   `&[i8; 32]` inputs) into an array of 16 `i32` partial sums that is only added up at
//!   the end. The sum is the same in any order: `i32` addition
//!   wraps, and wrapping addition is associative and commutative, so the partial sums give
//!   exactly the accumulator of the sequential reference loop.
//! - Each loaded input chunk is reused across several outputs (weight rows in `dense_i8`,
//!   patches in `conv2d_i8`).
//! - `x - input_zero_point` is formed once per input element in `i16` (it lies in
//!   `[-255, 255]`) rather than once per multiply-accumulate.
//! - Requantisation constants are decoded once per channel, and requantisation runs on rows of
//!   outputs of one channel, in a form the compiler vectorises.
//!
//! # Convolution strategies
//!
//! Four strategies, chosen per call from the filter size and the working space the caller
//! lends, with identical results:
//!
//! - **im2col + dot products** for large filters (`in_ch * kernel_h * kernel_w >=`
//!   [`IM2COL_MIN_TAPS`]) when `work` holds at least four patches: a tile of output
//!   positions is unrolled into patches (`i16` values `x - input_zero_point`, 0 at padded
//!   cells, each the filter's length rounded up to whole chunks), then each filter row is dotted
//!   with four patches at a time, so each weight chunk is loaded and widened once for
//!   several outputs. Fused with pooling, the patches are ordered window by
//!   window, so each group of four is one pooling window.
//! - **Pair rows** for small filters with stride 1 on targets with SIMD: for a row segment of
//!   32 output columns, each input row under the window is widened once into an interleaved
//!   `i16` row (`v[j], v[j + 1]` side by side), in `work` or, if it is too short, a 2 KB stack
//!   buffer. Two horizontally adjacent taps of a filter then multiply-add adjacent values
//!   (`pmaddwd` on x86: four output columns per instruction) with the output columns in
//!   vector lanes; an odd kernel row's last tap pairs with a zero weight. The pair sums are
//!   formed before they are added to the accumulator, the order in which the compiler finds
//!   the instruction.
//! - **Tap rows** for small filters elsewhere (such as on the Cortex-M4) when `work` holds
//!   them: for a row segment of 32 output columns, each filter tap's inputs are widened once
//!   into a row of `i16`, shared by every filter; a filter then accumulates tap by tap with the
//!   output columns in vector lanes.
//! - **Direct**, the same with the inputs read from the input tensor, when there is no room.
//!
//! Fusing the max pooling saves the requantisation of three outputs in four: requantisation
//! is monotone (non-decreasing) in the accumulator when the multiplier is non-negative and
//! neither the bias addition nor the left shift can wrap for any accumulator the layer can
//! produce (checked per channel: `(|bias| + taps * 128 * 255) << left_shift < 2^31`), so the
//! maximum of the requantised outputs is the requantisation of the maximum accumulator.
//! Channels that fail the check requantise all four and take the maximum.
//!
//! The idle part of [`crate::Model`]'s scratch buffer is lent as `work`; with the widened,
//! padded input also stored there, im2col copies whole window rows without bounds tests.

mod add;
mod conv2d;
mod dense;
mod global_avg_pool;
mod leaky_relu;
mod pool;

use conv2d::align_64;

pub use add::{ADD_LEFT_SHIFT, AddParams, add_i8};
pub use conv2d::{Conv2dParams, IM2COL_MIN_TAPS, conv2d_i8, conv2d_max_pool2d_i8, conv2d_work_len};
pub use dense::dense_i8;
pub use global_avg_pool::{GLOBAL_AVG_POOL_I32_MAX_LEN, global_avg_pool_i8};
pub use leaky_relu::{LeakyReluParams, leaky_relu_i8};
pub use pool::{Pool2dParams, avg_pool2d_i8, max_pool2d_i8};

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
    /// Zero point of the output tensor, in `[-128, 127]`.
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

    /// The decoded requantisation of each channel in order.
    pub(crate) fn channel_iter(&self) -> impl Iterator<Item = ChannelRequant> + '_ {
        self.iter()
            .map(|(bias, multiplier, shift)| ChannelRequant::new(self, bias, multiplier, shift))
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
    /// and shift, the plain way (the reference for [`ChannelRequant`]).
    #[cfg(test)]
    fn output(&self, acc: i32, multiplier: i32, shift: i32) -> i8 {
        let out = crate::quant::multiply_by_quantized_multiplier(acc, multiplier, shift)
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

/// Whether the target has integer SIMD the compiler can use for the dot products.
const SIMD: bool = cfg!(any(
    all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse2"
    ),
    all(target_arch = "aarch64", target_feature = "neon"),
    all(target_arch = "arm", target_feature = "neon"),
    all(target_arch = "wasm32", target_feature = "simd128"),
));

/// Elements per chunk of the dot-product inner loops: 32 `i8` values (two 128-bit vectors or
/// one 256-bit one; with 16 the compiler vectorises badly for AVX2) with SIMD, 4 on scalar
/// targets such as the Cortex-M4 (a chunk's weights then stay in registers while they are
/// used for several outputs).
pub(crate) const CHUNK: usize = if SIMD { 32 } else { 4 };

/// Number of `i32` partial sums a dot product keeps: 16 with SIMD (the partial sums live in
/// vector registers and the compiler turns the loop into widening multiply-adds: `pmaddwd` on
/// x86), one on scalar targets (where more accumulators would spill to the stack).
pub(crate) const LANES: usize = if SIMD { 16 } else { 1 };

/// The partial sums of one dot product.
pub(crate) type Acc = [i32; LANES];

/// `acc += w * x` element-wise over one chunk, folding the [`CHUNK`] products into the
/// [`LANES`] partial sums. `|w * x| <= 128 * 32768`, so only the additions can wrap; they do so
/// explicitly.
#[inline(always)]
pub(crate) fn mac_chunk<X: Copy + Into<i32>>(acc: &mut Acc, w: &[i8; CHUNK], x: &[X; CHUNK]) {
    for (j, (&w, &x)) in w.iter().zip(x).enumerate() {
        let lane = &mut acc[j % LANES];
        *lane = lane.wrapping_add(i32::from(w).wrapping_mul(x.into()));
    }
}

/// The total of the partial sums (wrapping).
#[inline(always)]
pub(crate) fn hsum(acc: &Acc) -> i32 {
    acc.iter().fold(0_i32, |s, &a| s.wrapping_add(a))
}

/// `slice` as whole arrays of `N` and the remainder (`<[T]>::as_chunks`, stable only from
/// Rust 1.88, after our MSRV).
#[inline(always)]
pub(crate) fn as_chunks<T: bytemuck::Pod, const N: usize>(slice: &[T]) -> (&[[T; N]], &[T])
where
    [T; N]: bytemuck::Pod,
{
    let (head, tail) = slice.split_at(slice.len() - slice.len() % N.max(1));
    (bytemuck::try_cast_slice(head).unwrap_or_default(), tail)
}

/// The whole arrays of `N` at the start of `slice` (`<[T]>::as_chunks_mut().0`).
#[inline(always)]
pub(crate) fn as_chunks_mut<T: bytemuck::Pod, const N: usize>(slice: &mut [T]) -> &mut [[T; N]]
where
    [T; N]: bytemuck::Pod,
{
    let whole = slice.len() - slice.len() % N.max(1);
    let head = slice.get_mut(..whole).unwrap_or_default();
    bytemuck::try_cast_slice_mut(head).unwrap_or_default()
}

/// A weight row's last `len % CHUNK` values, zero-padded to a full chunk (all zeros if the
/// row is a whole number of chunks).
#[inline]
pub(crate) fn tail_chunk(row: &[i8]) -> [i8; CHUNK] {
    let mut tail = [0_i8; CHUNK];
    let rest = as_chunks::<i8, CHUNK>(row).1;
    for (t, &w) in tail.iter_mut().zip(rest) {
        *t = w;
    }
    tail
}

/// The requantisation of one output channel with its constants decoded: bit-exact with
/// `clamp(multiply_by_quantized_multiplier(bias + dot, multiplier, shift) + output_zero_point,
/// act_min, act_max)`, in fewer operations, and in a form the compiler vectorises over a row of
/// outputs of the channel ([`ChannelRequant::output_row`]).
///
/// With `a = (bias + dot) << left_shift` (wrapping) and a multiplier `m >= 0` (every valid model;
/// a negative one takes a plain 64-bit path):
///
/// - gemmlowp's `SaturatingRoundingDoublingHighMul(a, m)` adds `2^30` to the 64-bit product for
///   a non-negative product and `1 - 2^30` for a negative one, then divides by `2^31`
///   truncating toward zero. For a negative product `p`, `trunc((p + 1 - 2^30) / 2^31)` is
///   `ceil(...)`, which is `floor((p + 1 - 2^30 + 2^31 - 1) / 2^31) = floor((p + 2^30) / 2^31)`,
///   the same as the non-negative case: so it is `(p + 2^30) >> 31` (arithmetic shift) for
///   every product but the saturating `i32::MIN * i32::MIN`.
/// - That product is formed unsigned, as `u32 x u32 -> u64` (one `pmuludq` on x86):
///   `a * m = (a as u32) * m - 2^32 * m * [a < 0]`, so
///   `(a * m + 2^30) >> 31 = (((a as u32) * m + 2^30) >> 31) - 2 * m * [a < 0]`, exact in
///   wrapping `u32` arithmetic because the result fits in `i32`.
/// - `RoundingDivideByPOT` is gemmlowp's mask-and-threshold form, which cannot overflow.
/// - The result is saturated to `i16` before the output zero point is added (saturating, in
///   `i16`) and the clamp: anything outside `i16` is clamped to `act_min` or `act_max` either
///   way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelRequant {
    /// The channel's bias.
    pub bias: i32,
    multiplier: i32,
    left_shift: u32,
    right_shift: u32,
    /// `2^right_shift - 1`.
    mask: i32,
    zero_point: i16,
    act_min: i16,
    act_max: i16,
}

impl ChannelRequant {
    /// The constants of one channel (`shift` is clamped to `[-31, 31]`, as in
    /// [`crate::quant::multiply_by_quantized_multiplier`]).
    #[inline]
    pub(crate) fn new(requant: &QRequant<'_>, bias: i32, multiplier: i32, shift: i32) -> Self {
        let right_shift = (-shift).clamp(0, 31).unsigned_abs();
        Self {
            bias,
            multiplier,
            left_shift: shift.clamp(0, 31).unsigned_abs(),
            right_shift,
            mask: i32::MAX >> (31 - right_shift),
            // In [-128, 127] for a valid model (outside, the outputs are unspecified).
            zero_point: i16::try_from(requant.output_zero_point.clamp(-32768, 32767)).unwrap_or(0),
            act_min: i16::from(requant.act_min),
            act_max: i16::from(requant.act_max),
        }
    }

    /// The output for a dot product `dot` (the bias is added here, wrapping).
    #[inline(always)]
    pub(crate) fn output(&self, dot: i32) -> i8 {
        let a = self.bias.wrapping_add(dot).wrapping_shl(self.left_shift);
        let high = if self.multiplier >= 0 {
            self.high_mul(a)
        } else {
            let t = (i64::from(a) * i64::from(self.multiplier) + (1 << 30)) >> 31;
            i32::try_from(t).unwrap_or(i32::MAX)
        };
        self.finish(high)
    }

    /// `output[i] = self.output(dots[i])` for the shorter of the two slices, vectorised.
    #[inline(always)]
    pub(crate) fn output_row(&self, dots: &[i32], output: &mut [i8]) {
        if self.multiplier >= 0 {
            for (o, &dot) in output.iter_mut().zip(dots) {
                let a = self.bias.wrapping_add(dot).wrapping_shl(self.left_shift);
                *o = self.finish(self.high_mul(a));
            }
        } else {
            for (o, &dot) in output.iter_mut().zip(dots) {
                *o = self.output(dot);
            }
        }
    }

    /// Whether [`ChannelRequant::output`] is monotone (non-decreasing) over dot products in
    /// `[-dot_bound, dot_bound]`: the multiplier is non-negative and neither the bias addition
    /// nor the left shift can wrap there. Then `max(output(a), output(b)) = output(max(a, b))`.
    pub(crate) fn is_monotone(&self, dot_bound: u64) -> bool {
        let reach = u64::from(self.bias.unsigned_abs()).saturating_add(dot_bound);
        self.multiplier >= 0 && reach <= (i32::MAX.unsigned_abs() >> self.left_shift).into()
    }

    /// `SaturatingRoundingDoublingHighMul(a, multiplier)` for a non-negative multiplier.
    #[inline(always)]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_possible_wrap,
        clippy::cast_sign_loss
    )] // mod 2^32 on purpose
    fn high_mul(&self, a: i32) -> i32 {
        let m = self.multiplier.unsigned_abs();
        let p = u64::from(a as u32) * u64::from(m);
        let correction = if a < 0 { m.wrapping_shl(1) } else { 0 };
        (((p + (1 << 30)) >> 31) as u32).wrapping_sub(correction) as i32
    }

    /// `RoundingDivideByPOT`, the zero point and the clamp.
    #[inline(always)]
    #[allow(clippy::cast_possible_truncation)] // clamped to the i16 / i8 range first: exact
    fn finish(&self, high: i32) -> i8 {
        let remainder = high & self.mask;
        let threshold = (self.mask >> 1) + i32::from(high < 0);
        let rounded = (high >> self.right_shift) + i32::from(remainder > threshold);
        let narrow = rounded.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        // As `clamp_i8`: `act_max` wins if the range is inverted.
        narrow
            .saturating_add(self.zero_point)
            .max(self.act_min)
            .min(self.act_max) as i8
    }
}

/// Helpers shared by the kernels' property tests.
#[cfg(test)]
pub(crate) mod test_util {
    use proptest::prelude::*;

    /// Owned per-channel requantisation data for tests, decoded and as file bytes.
    #[derive(Debug, Clone)]
    pub struct OwnedRequant {
        pub bias: Vec<i32>,
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
                    shifts,
                    output_zero_point,
                    act_min: a.min(b),
                    act_max: a.max(b),
                }
            })
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
    fn lane_sums_add_up() {
        let w: [i8; CHUNK] = core::array::from_fn(|j| i8::try_from(j).unwrap() - 8);
        let x: [i16; CHUNK] = core::array::from_fn(|j| 255 - 30 * i16::try_from(j).unwrap());
        let mut acc = [0; LANES];
        mac_chunk(&mut acc, &w, &x);
        mac_chunk(&mut acc, &w, &x);
        let want: i32 = w
            .iter()
            .zip(&x)
            .map(|(&w, &x)| 2 * i32::from(w) * i32::from(x))
            .sum();
        assert_eq!(hsum(&acc), want);
        assert_eq!(tail_chunk(&[1, 2, 3]), {
            let mut t = [0; CHUNK];
            t[..3].copy_from_slice(&[1, 2, 3]);
            t
        });
        assert_eq!(tail_chunk(&[1; CHUNK]), [0; CHUNK]);
    }

    #[test]
    fn channel_requant_edge_cases() {
        // (dot, multiplier, shift) around the rounding boundaries and the extremes.
        let cases = [
            (0, 1 << 30, 0),
            (-3, 1 << 30, 0),  // -1.5: SRDHM ties toward zero
            (3, 1 << 30, 0),   // 1.5 -> 2
            (-3, 1 << 30, -1), // RDBPOT ties away from zero
            (-5, 1 << 30, -2),
            (5, 1 << 30, -2),
            (i32::MIN, i32::MAX, 0),
            (i32::MAX, i32::MAX, 0),
            (i32::MIN, i32::MAX, -31),
            (i32::MAX, i32::MAX, -31),
            (-(1 << 30), i32::MAX, -31),
            (1 << 30, i32::MAX, -31),
            (i32::MIN, i32::MIN, 0), // the saturating product
            (i32::MIN, i32::MIN, -31),
            (i32::MAX, 1 << 30, 31),
            (12_345, 0, 5),
        ];
        for zp in [-128, -3, 0, 127] {
            for (dot, m, shift) in cases {
                let rq = QRequant {
                    bias: &[],
                    multipliers: &[],
                    shifts: &[],
                    output_zero_point: zp,
                    act_min: -128,
                    act_max: 127,
                };
                let ch = ChannelRequant::new(&rq, 0, m, shift);
                let want = clamp_i8(
                    crate::quant::multiply_by_quantized_multiplier(dot, m, shift)
                        .saturating_add(zp),
                    -128,
                    127,
                );
                assert_eq!(
                    ch.output(dot),
                    want,
                    "dot {dot} m {m} shift {shift} zp {zp}"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn channel_requant_matches_reference(
            bias in proptest::prelude::any::<i32>(),
            dot in proptest::prop_oneof![
                proptest::prelude::any::<i32>(),
                -100_000_i32..100_000,
            ],
            multiplier in proptest::prop_oneof![
                (1_i32 << 30)..=i32::MAX,
                proptest::prelude::any::<i32>(),
            ],
            shift in -40_i32..40,
            zp in -128_i32..=127,
            (a, b) in (proptest::prelude::any::<i8>(), proptest::prelude::any::<i8>()),
        ) {
            let rq = QRequant {
                bias: &[],
                multipliers: &[],
                shifts: &[],
                output_zero_point: zp,
                act_min: a.min(b),
                act_max: a.max(b),
            };
            let ch = ChannelRequant::new(&rq, bias, multiplier, shift);
            let want = rq.output(bias.wrapping_add(dot), multiplier, shift);
            proptest::prop_assert_eq!(ch.output(dot), want);
            let mut row = [0_i8; 7];
            ch.output_row(&[dot; 7], &mut row);
            proptest::prop_assert_eq!(row, [want; 7]);
        }
    }
}
