//! Fully connected layer.

use super::{Acc, CHUNK, LANES, QRequant, as_chunks, as_chunks_mut, clamp_i8, hsum, mac_chunk};

/// Output rows computed together: each input chunk is loaded and widened once for all of them.
const ROWS: usize = 4;

/// Whether to widen the whole input once before the dot products (see [`dense_i8`]).
const WIDEN_ONCE: bool = cfg!(target_feature = "avx2");

/// Inputs widened on the stack when `work` is too short (with [`WIDEN_ONCE`] only).
const STACK_INPUT: usize = 1024;

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
/// The accumulator is `i32` with wrapping addition (summed in any order: the result is the
/// same).
///
/// `work` is scratch space the kernel may overwrite; its length only affects speed (on AVX2
/// targets, with `2 * in_dim + 63` bytes the input is widened once into it instead of once per
/// four rows; [`Model`](crate::Model) lends the part of its scratch buffer the layer does not
/// use).
///
/// Rounding: requantisation only, as in [`crate::quant::multiply_by_quantized_multiplier`]
/// (ties in the high multiply round away from zero for positive and toward zero for negative
/// products, the final power-of-two division rounds half away from zero).
///
/// # Shapes
///
/// - `input`: `[in_dim]`, `in_dim > 0`, quantised with `input_zero_point` in `[-128, 127]`
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
/// dense_i8(&[10, -5], -1, &[1, 2, -3, 4], &requant, &mut out, &mut []);
/// // acc0 = 7 + 11 - 8 = 10 -> 5 + 3; acc1 = -33 - 16 = -49 -> -24.5 -> -24, + 3
/// assert_eq!(out, [8, -21]);
/// ```
pub fn dense_i8(
    input: &[i8],
    input_zero_point: i32,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
    work: &mut [i8],
) {
    let in_dim = input.len();
    debug_assert!(in_dim > 0, "dense_i8: empty input");
    debug_assert_eq!(Some(weights.len()), in_dim.checked_mul(output.len()));
    debug_assert_eq!(requant.channels(), output.len());
    debug_assert!((-128..=127).contains(&input_zero_point));
    let zero_point = i16::from(clamp_i8(input_zero_point, i8::MIN, i8::MAX));
    let (x_chunks, x_tail) = as_chunks::<_, CHUNK>(input);
    // With AVX2 the input's whole chunks are widened once (`x - zero_point`), into `work` or
    // failing that a small stack buffer, if they fit: the compiler vectorises the in-loop
    // widening badly there (5x slower). With SSE2 widening in the loop is faster (and on
    // scalar targets it makes no difference).
    let mut stack = [0_i16; if WIDEN_ONCE { STACK_INPUT } else { 0 }];
    let wide_len = x_chunks.len() * CHUNK;
    let wide = if !WIDEN_ONCE {
        None
    } else if let Some(wide) =
        super::align_64(bytemuck::pod_align_to_mut::<i8, i16>(work).1).get_mut(..wide_len)
    {
        Some(wide)
    } else {
        stack.get_mut(..wide_len)
    };
    let wide = wide.map(|wide| {
        for (w, &x) in wide.iter_mut().zip(input) {
            *w = i16::from(x) - zero_point;
        }
        &*as_chunks_mut::<_, CHUNK>(wide)
    });
    let input = match wide {
        Some(wide) => Input::Wide(wide),
        None => Input::Narrow(x_chunks, zero_point),
    };
    // Each row's whole chunks go to a vectorised kernel, its last `in_dim % CHUNK` weights
    // to a scalar loop.
    let dot = |row: &[i8], chunk_dot: i32| {
        chunk_dot.wrapping_add(tail_dot(as_chunks::<_, CHUNK>(row).1, x_tail, zero_point))
    };
    let mut channels = requant.channel_iter();
    // Saturating: a block of ROWS rows longer than `usize` counts is never whole, and then every
    // row goes through the remainder loop below.
    let mut blocks = weights.chunks_exact(in_dim.saturating_mul(ROWS).max(1));
    let mut out_blocks = output.chunks_exact_mut(ROWS);
    for (block, out) in (&mut blocks).zip(&mut out_blocks) {
        let mut rows = block.chunks_exact(in_dim.max(1));
        let rows: [&[i8]; ROWS] = core::array::from_fn(|_| rows.next().unwrap_or_default());
        let w = rows.map(|r| as_chunks::<_, CHUNK>(r).0);
        let dots = match input {
            Input::Wide(x) => dot4_wide(w, x),
            Input::Narrow(x, zero_point) => dot4_chunks(w, x, zero_point),
        };
        for ((o, row), (d, channel)) in out
            .iter_mut()
            .zip(rows)
            .zip(dots.into_iter().zip(&mut channels))
        {
            *o = channel.output(dot(row, d));
        }
    }
    let rows = blocks.remainder().chunks_exact(in_dim.max(1));
    for (o, (row, channel)) in out_blocks
        .into_remainder()
        .iter_mut()
        .zip(rows.zip(channels))
    {
        let d = dot1_chunks(as_chunks::<_, CHUNK>(row).0, x_chunks, zero_point);
        *o = channel.output(dot(row, d));
    }
}

/// The input of [`dense_i8`]'s dot products: widened once, or widened chunk by chunk.
#[derive(Clone, Copy)]
enum Input<'a> {
    /// `x - zero_point` for each whole chunk.
    Wide(&'a [[i16; CHUNK]]),
    /// The input's whole chunks and its zero point.
    Narrow(&'a [[i8; CHUNK]], i16),
}

/// [`dot4_chunks`] with the input already widened (`x - zero_point`).
#[inline(never)]
fn dot4_wide(w: [&[[i8; CHUNK]]; ROWS], x: &[[i16; CHUNK]]) -> [i32; ROWS] {
    let n = x.len();
    let [w0, w1, w2, w3] = w;
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (w0.get(..n), w1.get(..n), w2.get(..n), w3.get(..n))
    else {
        debug_assert!(false, "dense_i8: row shorter than the input");
        return [0; ROWS];
    };
    let mut acc: [Acc; ROWS] = [[0; LANES]; ROWS];
    let [a0, a1, a2, a3] = &mut acc;
    for ((((x, w0), w1), w2), w3) in x.iter().zip(w0).zip(w1).zip(w2).zip(w3) {
        mac_chunk(a0, w0, x);
        mac_chunk(a1, w1, x);
        mac_chunk(a2, w2, x);
        mac_chunk(a3, w3, x);
    }
    acc.map(|a| hsum(&a))
}

// The two kernels below are kept out of line on purpose: inlined into a larger function, the
// compiler's vectoriser sometimes gives up on them (and the code is then scalar).

/// `Σ w[i] * (x[i] - zero_point)` over the chunks of `x` for four weight rows (each at least
/// as long as `x`; a shorter one gives 0s), each input chunk widened once for the four.
#[inline(never)]
fn dot4_chunks(w: [&[[i8; CHUNK]]; ROWS], x: &[[i8; CHUNK]], zero_point: i16) -> [i32; ROWS] {
    let n = x.len();
    let [w0, w1, w2, w3] = w;
    let (Some(w0), Some(w1), Some(w2), Some(w3)) =
        (w0.get(..n), w1.get(..n), w2.get(..n), w3.get(..n))
    else {
        debug_assert!(false, "dense_i8: row shorter than the input");
        return [0; ROWS];
    };
    let mut acc: [Acc; ROWS] = [[0; LANES]; ROWS];
    for (i, x) in x.iter().enumerate() {
        // In [-255, 255]: exact in i16.
        let x: [i16; CHUNK] = core::array::from_fn(|j| i16::from(x[j]) - zero_point);
        let [a0, a1, a2, a3] = &mut acc;
        mac_chunk(a0, &w0[i], &x);
        mac_chunk(a1, &w1[i], &x);
        mac_chunk(a2, &w2[i], &x);
        mac_chunk(a3, &w3[i], &x);
    }
    acc.map(|a| hsum(&a))
}

/// [`dot4_chunks`] for one row.
#[inline(never)]
fn dot1_chunks(w: &[[i8; CHUNK]], x: &[[i8; CHUNK]], zero_point: i16) -> i32 {
    let mut acc: Acc = [0; LANES];
    for (w, x) in w.iter().zip(x) {
        let x: [i16; CHUNK] = core::array::from_fn(|j| i16::from(x[j]) - zero_point);
        mac_chunk(&mut acc, w, &x);
    }
    hsum(&acc)
}

/// `Σ w[i] * (x[i] - zero_point)` over the shorter of the two (the rows' last few elements).
#[inline(never)]
fn tail_dot(w: &[i8], x: &[i8], zero_point: i16) -> i32 {
    w.iter().zip(x).fold(0_i32, |s, (&w, &x)| {
        s.wrapping_add(i32::from(w) * i32::from(i16::from(x) - zero_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::arb_requant;
    use crate::reference;
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
        dense_i8(&input, 2, &weights, &requant, &mut out, &mut []);
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
        dense_i8(&input, 2, &weights, &no_relu, &mut out, &mut []);
        assert_eq!(out, [67, -112]);
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
            let mut want = vec![0_i8; out_dim];
            reference::dense_i8(&input, zp, &weights, &rq.as_requant(), &mut want);
            // Without working space, and with room to widen the input (misaligned too).
            for work_len in [0, 200, 201] {
                let mut out = vec![0_i8; out_dim];
                let mut work = vec![0x55_i8; work_len];
                dense_i8(&input, zp, &weights, &rq.as_requant(), &mut out, &mut work);
                prop_assert_eq!(&out, &want, "work {}", work_len);
            }
        }
    }
}
