//! The direct strategy: taps read straight from the input tensor, when there is no working
//! space.

use super::*;

/// [`dot_tap_rows`] for convolution output row `y`, columns `x_first..`, reading the input
/// directly.
#[allow(clippy::too_many_arguments)]
pub(super) fn direct_row(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    filter: &[i8],
    y: usize,
    x_first: usize,
    acc: &mut [i32; COLS],
) {
    let kernel_plane = g.kernel_h * g.kernel_w;
    let plane = g.height * g.width;
    let y0 = y * g.stride; // window top, in padded coordinates
    let (ky_lo, ky_hi) = in_bounds(y0, g.pad_top, g.kernel_h, g.height);
    let x_end = (x_first + COLS).min(g.out_w);
    for kx in 0..g.kernel_w {
        let (x_lo, x_hi) = column_range(g, kx, x_first, x_end);
        if x_lo >= x_hi {
            continue;
        }
        let acc = acc
            .get_mut(x_lo - x_first..x_hi - x_first)
            .unwrap_or_default();
        let in_start = x_lo * g.stride + kx - g.pad_left;
        let channels = input
            .chunks_exact(plane.max(1))
            .zip(filter.chunks_exact(kernel_plane.max(1)));
        for (in_plane, kernel) in channels {
            for ky in ky_lo..ky_hi {
                let in_y = y0 + ky - g.pad_top;
                let inputs = in_plane
                    .get(in_y * g.width + in_start..)
                    .unwrap_or_default();
                let w = i16::from(kernel.get(ky * g.kernel_w + kx).copied().unwrap_or(0));
                if g.stride == 1 {
                    tap(acc, inputs.iter(), w, zero_point);
                } else {
                    tap(acc, inputs.iter().step_by(g.stride), w, zero_point);
                }
            }
        }
    }
}

/// `acc[j] += w * (inputs[j] - zero_point)` for each accumulator. The product is exact in
/// `i16` (`|w| <= 128`, `|x - zero_point| <= 255`), so it vectorises as a 16-bit multiply
/// (an `i32` product here would be emulated with 32-bit multiplies on SSE2, twice as slow).
#[inline]
pub(super) fn tap<'x>(
    acc: &mut [i32],
    inputs: impl Iterator<Item = &'x i8>,
    w: i16,
    zero_point: i16,
) {
    for (a, &x) in acc.iter_mut().zip(inputs) {
        *a = a.wrapping_add(i32::from(w.wrapping_mul(i16::from(x) - zero_point)));
    }
}
