//! The pair-rows strategy: interleaved `i16` input rows, so adjacent taps multiply-add
//! adjacent values (`pmaddwd` on x86).

use super::*;

/// Fills `rows` with one interleaved row per input channel `c` and input row `r` under the
/// window of convolution rows `y..y + span` (stride 1), `row_len` values each, for the row
/// segment from column `x_first`: with `v[j] = x[c, y + r - padding, x_first + j - padding]
/// - zero_point` (0 outside the input), `row[2j] = v[j]` and `row[2j + 1] = v[j + 1]`.
///
/// The pair of taps `(ky, 2q)` and `(ky, 2q + 1)` then reads its inputs for the segment's
/// columns `j` as the adjacent values `row[4q + 2j]`, `row[4q + 2j + 1]` of row `r = ky`.
#[inline(never)] // one call per row segment (and its own entry in profiles)
pub(super) fn pair_rows(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    y: usize,
    x_first: usize,
    rows: &mut [i16],
) {
    let plane = g.height * g.width;
    let row_len = g.pair_row_len();
    let window_rows = rows.len() / (g.in_ch * row_len).max(1);
    // Columns j of v inside the input: x_first + j - padding in [0, width).
    let j_lo = g.pad_left.saturating_sub(x_first);
    let j_hi = (g.width + g.pad_left)
        .saturating_sub(x_first)
        .min(row_len / 2);
    let channels = input.chunks_exact(plane.max(1));
    for (in_plane, rows) in channels.zip(rows.chunks_exact_mut((window_rows * row_len).max(1))) {
        for (r, row) in rows.chunks_exact_mut(row_len.max(1)).enumerate() {
            row.fill(0);
            let Some(in_y) = (y + r)
                .checked_sub(g.pad_top)
                .filter(|&in_y| in_y < g.height)
            else {
                continue;
            };
            if j_lo >= j_hi {
                continue;
            }
            let start = in_y * g.width + x_first + j_lo - g.pad_left;
            let src = in_plane
                .get(start..start + (j_hi - j_lo))
                .unwrap_or_default();
            let pairs = as_chunks_mut::<_, 2>(row);
            for (d, &s) in pairs.iter_mut().skip(j_lo).zip(src) {
                d[0] = i16::from(s) - zero_point;
            }
            for j in 1..pairs.len() {
                pairs[j - 1][1] = pairs[j][0];
            }
        }
    }
}

/// Writes the weights of `filter` into `pairs` as the tap pairs of [`pair_rows`]: channel by
/// channel, row by row, two adjacent taps at a time (an odd row's last tap with a zero).
pub(super) fn weight_pairs(filter: &[i8], kernel_w: usize, pairs: &mut [[i16; 2]]) {
    let taps = filter
        .chunks_exact(kernel_w.max(1))
        .flat_map(|row| row.chunks(2));
    for (p, taps) in pairs.iter_mut().zip(taps) {
        *p = [0, 1].map(|i| i16::from(taps.get(i).copied().unwrap_or(0)));
    }
}

/// [`conv_rows`] with the pair-rows strategy in a buffer on the stack.
#[inline(never)] // the buffer is only on the stack while this runs
pub(super) fn conv_pair_rows_on_stack(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
) {
    let mut buf = [0_i16; PAIRS_ON_STACK];
    let len = g
        .pair_rows_len(weights.len() / g.taps().max(1))
        .unwrap_or(0);
    let rows = Rows::Pairs(buf.get_mut(..len).unwrap_or_default());
    conv_rows(input, g, zero_point, weights, requant, output, rows);
}

/// `acc[j] += Σ_p w_p[0] * rows[o_p + 2j] + w_p[1] * rows[o_p + 2j + 1]` for each pair `p` of
/// `weights` ([`weight_pairs`]) and `offsets`: one `pmaddwd` per four columns
/// on x86.
///
/// The two products of a pair are summed on their own, then added to the accumulator: written
/// as one sum, the compiler reassociates the accumulator between the two products and no
/// longer finds the multiply-add of adjacent pairs.
#[inline(never)] // kept small and out of line so that it vectorises
pub(super) fn dot_pair_rows(
    weights: &[[i16; 2]],
    offsets: &[usize],
    rows: &[i16],
    acc: &mut [i32; COLS],
) {
    for (&w, &at) in weights.iter().zip(offsets) {
        let w: [i16; 2 * COLS] = bytemuck::cast([bytemuck::cast::<_, u32>(w); COLS]);
        let x = rows
            .get(at..)
            .and_then(|x| x.first_chunk::<{ 2 * COLS }>())
            .unwrap_or(&[0; 2 * COLS]);
        let mut sums = [0_i32; COLS];
        for ((s, x), w) in sums
            .iter_mut()
            .zip(as_chunks::<_, 2>(x).0)
            .zip(as_chunks::<_, 2>(&w).0)
        {
            // The odd product first: the other order gives extra shuffles on x86.
            *s = i32::from(x[1]) * i32::from(w[1]) + i32::from(x[0]) * i32::from(w[0]);
        }
        for (a, &s) in acc.iter_mut().zip(&sums) {
            *a = a.wrapping_add(s);
        }
    }
}
