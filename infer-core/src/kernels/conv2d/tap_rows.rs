//! The tap-rows strategy: one widened input row per filter tap, shared by every filter.

use super::*;

/// Fills `rows[t][j]` with the input under tap `t` of the filter for convolution output
/// `(y, x_first + j)`, as `x - zero_point` (0 outside the input or past the row's end).
#[inline(never)] // one call per row segment (and its own entry in profiles)
pub(super) fn tap_rows(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    y: usize,
    x_first: usize,
    rows: &mut [[i16; COLS]],
) {
    let plane = g.height * g.width;
    let y0 = y * g.stride; // window top, in padded coordinates
    let (ky_lo, ky_hi) = in_bounds(y0, g.pad_top, g.kernel_h, g.height);
    let x_end = (x_first + COLS).min(g.out_w);
    let windows = rows.chunks_exact_mut((g.kernel_h * g.kernel_w).max(1));
    for (in_plane, window) in input.chunks_exact(plane.max(1)).zip(windows) {
        for (tap, row) in window.iter_mut().enumerate() {
            let (ky, kx) = (tap / g.kernel_w.max(1), tap % g.kernel_w.max(1));
            *row = [0; COLS];
            if ky < ky_lo || ky >= ky_hi {
                continue;
            }
            let (x_lo, x_hi) = column_range(g, kx, x_first, x_end);
            if x_lo >= x_hi {
                continue;
            }
            let in_row = (y0 + ky - g.pad_top) * g.width;
            let src = in_plane.get(in_row..in_row + g.width).unwrap_or_default();
            let src = src
                .get(x_lo * g.stride + kx - g.pad_left..)
                .unwrap_or_default();
            let dst = row
                .get_mut(x_lo - x_first..x_hi - x_first)
                .unwrap_or_default();
            if g.stride == 1 {
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = i16::from(s) - zero_point;
                }
            } else {
                for (d, &s) in dst.iter_mut().zip(src.iter().step_by(g.stride)) {
                    *d = i16::from(s) - zero_point;
                }
            }
        }
    }
}

/// Output columns `[x_lo, x_hi)` within `[x_first, x_end)` whose input column
/// `x * stride + kx - padding` is inside the row.
#[inline]
pub(super) fn column_range(
    g: &Geometry,
    kx: usize,
    x_first: usize,
    x_end: usize,
) -> (usize, usize) {
    let x_lo = g
        .pad_left
        .saturating_sub(kx)
        .div_ceil(g.stride.max(1))
        .max(x_first);
    let x_hi = (g.width + g.pad_left)
        .saturating_sub(kx)
        .div_ceil(g.stride.max(1))
        .min(x_end);
    (x_lo, x_hi)
}

/// `acc[j] = Σ_t filter[t] * rows[t][j]` (both factors fit in 16 bits, so on x86 the products
/// are `pmaddwd`s).
///
/// Common filter sizes (3x3 and 5x5 on one channel) get a fixed number of taps: with the tap
/// loop unrolled, the compiler vectorises each tap over the columns, where for an unknown count
/// it would rather vectorise across taps (with gathers, much slower).
#[inline(never)] // kept small and out of line so that it vectorises
pub(super) fn dot_tap_rows(filter: &[i8], rows: &[[i16; COLS]], acc: &mut [i32; COLS]) {
    if let (Ok(filter), Ok(rows)) = (<&[_; 9]>::try_from(filter), <&[_; 9]>::try_from(rows)) {
        return dot_taps(filter, rows, acc);
    }
    if let (Ok(filter), Ok(rows)) = (<&[_; 25]>::try_from(filter), <&[_; 25]>::try_from(rows)) {
        return dot_taps(filter, rows, acc);
    }
    for (&w, row) in filter.iter().zip(rows) {
        dot_tap(acc, w, row);
    }
}

/// [`dot_tap_rows`] for `N` taps.
#[inline(always)]
pub(super) fn dot_taps<const N: usize>(
    filter: &[i8; N],
    rows: &[[i16; COLS]; N],
    acc: &mut [i32; COLS],
) {
    for (&w, row) in filter.iter().zip(rows) {
        dot_tap(acc, w, row);
    }
}

/// `acc[j] += w * row[j]`.
#[inline(always)]
pub(super) fn dot_tap(acc: &mut [i32; COLS], w: i8, row: &[i16; COLS]) {
    let w = i32::from(w);
    for (a, &x) in acc.iter_mut().zip(row) {
        *a = a.wrapping_add(w.wrapping_mul(i32::from(x)));
    }
}
