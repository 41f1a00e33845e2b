//! The im2col strategy: patches of the (widened, padded) input dotted with four at a time per
//! filter row.

use super::*;

/// Where the im2col strategy reads its patches from.
pub(super) enum Source<'a> {
    /// The input tensor, widened and bounds-checked cell by cell.
    Input { input: &'a [i8], zero_point: i16 },
    /// The input already widened, with its padding stored as zeros ([`widen_padded`]).
    Padded(&'a [i16]),
}

/// Writes the input into `padded` as `i16` values `x - zero_point`, each plane surrounded by
/// `padding` zeros: `[in_ch, height + 2 * padding, width + 2 * padding]`.
#[inline(never)] // one call per layer (and its own entry in profiles)
pub(super) fn widen_padded(input: &[i8], g: &Geometry, zero_point: i16, padded: &mut [i16]) {
    padded.fill(0);
    let (padded_h, padded_w) = g.padded_dims();
    let planes = padded.chunks_exact_mut((padded_h * padded_w).max(1));
    for (in_plane, plane) in input.chunks_exact((g.height * g.width).max(1)).zip(planes) {
        let rows = plane
            .chunks_exact_mut(padded_w.max(1))
            .skip(g.pad_top)
            .zip(in_plane.chunks_exact(g.width.max(1)));
        for (row, in_row) in rows {
            let row = row.get_mut(g.pad_left..).unwrap_or_default();
            for (d, &x) in row.iter_mut().zip(in_row) {
                *d = i16::from(x) - zero_point;
            }
        }
    }
}

/// The im2col strategy; `patches` holds a whole number of patches, a multiple of [`PATCHES`].
#[inline(never)] // one call per layer (and its own entry in profiles)
pub(super) fn conv_im2col(
    source: &Source<'_>,
    g: &Geometry,
    weights: &[i8],
    requant: &QRequant<'_>,
    output: &mut [i8],
    patches: &mut [i16],
) {
    let taps = g.taps();
    let patch_len = taps.next_multiple_of(CHUNK);
    let plane = g.rows * g.cols;
    let group = if g.pool { 4 } else { 1 };
    let positions = plane * group;
    // Past the filter's length a patch is zero, so the zero-padded last weight chunk adds
    // nothing there; set once, the tiles below only write the first `taps` values.
    for patch in patches.chunks_exact_mut(patch_len.max(1)) {
        patch.get_mut(taps..).unwrap_or_default().fill(0);
    }
    let tile = patches.len() / patch_len.max(1);
    let dot_bound = g.dot_bound();
    let mut first = 0;
    while first < positions {
        let count = tile.min(positions - first);
        let patches = patches.get_mut(..count * patch_len).unwrap_or_default();
        im2col(source, g, first, patches);
        let patches = as_chunks::<_, CHUNK>(patches).0;
        let mut channels = requant.channel_iter();
        let blocks = weights.chunks(taps.max(1) * FILTERS);
        for (block_index, block) in blocks.enumerate() {
            let block_channels: [Option<ChannelRequant>; FILTERS] =
                core::array::from_fn(|_| channels.next());
            let mut patch_groups = patches.chunks_exact(patch_len / CHUNK * PATCHES);
            // Output element `index` of filter `f` of the block.
            let mut store = |f: usize, index: usize, value: i8| {
                let at = (block_index * FILTERS + f) * plane + index;
                if let Some(out) = output.get_mut(at) {
                    *out = value;
                }
            };
            let mut dots = [[0_i32; PATCHES]; FILTERS];
            let mut position = first;
            for x in &mut patch_groups {
                let mut x = x.chunks_exact(patch_len / CHUNK);
                let x: [&[[i16; CHUNK]]; PATCHES] =
                    core::array::from_fn(|_| x.next().unwrap_or_default());
                dot_filters(block, taps, x, &mut dots);
                for (f, (dots, channel)) in dots.iter().zip(&block_channels).enumerate() {
                    let Some(channel) = channel else { break };
                    if g.pool {
                        let mut out = [0_i8];
                        finish_outputs(channel, true, dot_bound, dots, &mut out);
                        store(f, position / 4, out[0]);
                    } else {
                        let mut out = [0_i8; PATCHES];
                        channel.output_row(dots, &mut out);
                        for (p, &o) in out.iter().enumerate() {
                            store(f, position + p, o);
                        }
                    }
                }
                position += PATCHES;
            }
            // Left-over patches (only without pooling, where groups of four need not divide
            // the output), one at a time.
            let rest = patch_groups.remainder().chunks_exact(patch_len / CHUNK);
            for (p, x) in rest.enumerate() {
                let mut dots = [[0_i32; 1]; FILTERS];
                dot_filters(block, taps, [x], &mut dots);
                for (f, (dots, channel)) in dots.iter().zip(&block_channels).enumerate() {
                    if let Some(channel) = channel {
                        store(f, position + p, channel.output(dots[0]));
                    }
                }
            }
        }
        first += count;
    }
}

/// `dots[f][p] = Σ_i filter_f[i] * x[p][i]` for each filter of `filters` (`taps` weights
/// each, at most `dots.len()` of them) and `N` (1 or [`PATCHES`]) patches, each weight chunk
/// loaded and widened once for all the patches.
#[inline(never)] // one call per group of patches (and its own entry in profiles)
pub(super) fn dot_filters<const N: usize>(
    filters: &[i8],
    taps: usize,
    x: [&[[i16; CHUNK]]; N],
    dots: &mut [[i32; N]],
) {
    let full = taps / CHUNK;
    let x_full = x.map(|p| p.get(..full).unwrap_or_default());
    let x_tail = x.map(|p| p.get(full..).unwrap_or_default());
    for (filter, dots) in filters.chunks_exact(taps.max(1)).zip(dots) {
        let (w, tail) = as_chunks::<_, CHUNK>(filter);
        *dots = dot_patches(w, x_full);
        if !tail.is_empty() {
            let tail = dot_patches(&[tail_chunk(filter)], x_tail);
            for (d, t) in dots.iter_mut().zip(tail) {
                *d = d.wrapping_add(t);
            }
        }
    }
}

/// Writes the patches `first..` (in [`Geometry::position`] order), one per
/// `patches.chunks_exact(patch_len)`: `[in_ch, kernel_h, kernel_w]` values `x - zero_point`,
/// 0 where the window is outside the input.
#[inline(never)] // one call per tile (and its own entry in profiles)
pub(super) fn im2col(source: &Source<'_>, g: &Geometry, first: usize, patches: &mut [i16]) {
    // Window rows of a known width are copied as fixed-size arrays.
    match (source, g.kernel_w) {
        (Source::Padded(padded), 3) => im2col_padded::<3>(padded, g, first, patches),
        (Source::Padded(padded), 5) => im2col_padded::<5>(padded, g, first, patches),
        (Source::Padded(padded), _) => im2col_padded::<0>(padded, g, first, patches),
        (&Source::Input { input, zero_point }, 3) => {
            im2col_rows::<3>(input, g, zero_point, first, patches);
        }
        (&Source::Input { input, zero_point }, 5) => {
            im2col_rows::<5>(input, g, zero_point, first, patches);
        }
        (&Source::Input { input, zero_point }, _) => {
            im2col_rows::<0>(input, g, zero_point, first, patches);
        }
    }
}

/// [`im2col`] from the widened, padded input (no bounds to check: every window row is
/// `kernel_w` contiguous values), for `kernel_w == KW` (any width if `KW == 0`).
#[inline(always)]
pub(super) fn im2col_padded<const KW: usize>(
    padded: &[i16],
    g: &Geometry,
    first: usize,
    patches: &mut [i16],
) {
    let taps = g.taps();
    let patch_len = taps.next_multiple_of(CHUNK);
    let (padded_h, padded_w) = g.padded_dims();
    let plane = padded_h * padded_w;
    let kernel_w = if KW == 0 { g.kernel_w } else { KW };
    let count = patches.len() / patch_len.max(1);
    // Each patch's window corner in the padded plane.
    let mut corners = [0_usize; MAX_TILE];
    for (i, corner) in (first..).zip(corners.iter_mut().take(count)) {
        let (out_y, out_x) = g.position(i);
        *corner = out_y * g.stride * padded_w + out_x * g.stride;
    }
    let corners = corners.get(..count).unwrap_or_default();
    // Window row by window row (channel-major, as in the filters), for every patch.
    let rows = g.in_ch * g.kernel_h;
    for row in 0..rows {
        let (c, ky) = (row / g.kernel_h.max(1), row % g.kernel_h.max(1));
        let base = c * plane + ky * padded_w; // in the padded input, from the corner
        let at = row * kernel_w; // in the patch
        // Four values at once for 3 wide windows (one 8-byte move): the fourth is
        // overwritten by the next window row. Not for the last row, which would spill into
        // the next patch; the padded input has a spare value at its end for the reads.
        let wide = KW == 3 && row + 1 < rows;
        for (patch, &corner) in patches.chunks_exact_mut(patch_len.max(1)).zip(corners) {
            let start = base + corner;
            if wide {
                let src = padded
                    .get(start..start + 4)
                    .and_then(|s| s.first_chunk::<4>());
                let dst = patch
                    .get_mut(at..at + 4)
                    .and_then(|d| d.first_chunk_mut::<4>());
                if let (Some(dst), Some(src)) = (dst, src) {
                    *dst = *src;
                }
            } else if let (Some(dst), Some(src)) = (
                patch.get_mut(at..at + kernel_w),
                padded.get(start..start + kernel_w),
            ) {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// [`im2col`] for `kernel_w == KW` (any width if `KW == 0`).
#[inline(always)]
pub(super) fn im2col_rows<const KW: usize>(
    input: &[i8],
    g: &Geometry,
    zero_point: i16,
    first: usize,
    patches: &mut [i16],
) {
    let taps = g.taps();
    let patch_len = taps.next_multiple_of(CHUNK);
    let plane = g.height * g.width;
    let kernel_w = if KW == 0 { g.kernel_w } else { KW };
    let window_len = (g.kernel_h * kernel_w).max(1);
    for (i, patch) in (first..).zip(patches.chunks_exact_mut(patch_len.max(1))) {
        let (out_y, out_x) = g.position(i);
        let (y0, x0) = (out_y * g.stride, out_x * g.stride); // window corner, padded coordinates
        let (ky_lo, ky_hi) = in_bounds(y0, g.pad_top, g.kernel_h, g.height);
        let (kx_lo, kx_hi) = in_bounds(x0, g.pad_left, kernel_w, g.width);
        let patch = patch.get_mut(..taps).unwrap_or_default();
        let channels = input
            .chunks_exact(plane.max(1))
            .zip(patch.chunks_exact_mut(window_len));
        if KW > 0 && ky_lo == 0 && ky_hi == g.kernel_h && kx_lo == 0 && kx_hi == KW {
            // The whole window is inside the input: copy its rows as arrays.
            let corner = (y0 - g.pad_top) * g.width + x0 - g.pad_left;
            for (in_plane, window) in channels {
                let src = in_plane.get(corner..).unwrap_or_default();
                let rows = window.chunks_exact_mut(KW);
                for (row, src) in rows.zip(src.chunks(g.width.max(1))) {
                    if let (Some(row), Some(src)) =
                        (row.first_chunk_mut::<KW>(), src.first_chunk::<KW>())
                    {
                        *row = src.map(|s| i16::from(s) - zero_point);
                    }
                }
            }
            continue;
        }
        for (in_plane, window) in channels {
            for (ky, row) in window.chunks_exact_mut(kernel_w.max(1)).enumerate() {
                if ky < ky_lo || ky >= ky_hi || kx_lo >= kx_hi {
                    for d in row.iter_mut() {
                        *d = 0;
                    }
                    continue;
                }
                // The in-bounds part of the window row starts at input column
                // x0 + kx_lo - padding.
                let start = (y0 + ky - g.pad_top) * g.width + x0 + kx_lo - g.pad_left;
                let mut src = in_plane.get(start..).unwrap_or_default().iter();
                for (kx, d) in row.iter_mut().enumerate() {
                    // In-bounds taps are contiguous from kx_lo: `src` starts at that column.
                    *d = if kx >= kx_lo && kx < kx_hi {
                        src.next().map_or(0, |&s| i16::from(s) - zero_point)
                    } else {
                        0
                    };
                }
            }
        }
    }
}

/// `Σ w[i] * x[p][i]` over `w.len()` chunks for `N` (1 or [`PATCHES`]) patches at least as
/// long (a shorter one gives 0s), each weight chunk widened once for all of them.
#[inline(always)]
pub(super) fn dot_patches<const N: usize>(w: &[[i8; CHUNK]], x: [&[[i16; CHUNK]]; N]) -> [i32; N] {
    let mut acc: [Acc; N] = [[0; LANES]; N];
    match (x.as_slice(), acc.as_mut_slice()) {
        ([x0, x1, x2, x3], [a0, a1, a2, a3]) => {
            for ((((w, x0), x1), x2), x3) in w.iter().zip(*x0).zip(*x1).zip(*x2).zip(*x3) {
                mac_chunk(a0, w, x0);
                mac_chunk(a1, w, x1);
                mac_chunk(a2, w, x2);
                mac_chunk(a3, w, x3);
            }
        }
        ([x0], [a0]) => {
            for (w, x) in w.iter().zip(*x0) {
                mac_chunk(a0, w, x);
            }
        }
        _ => debug_assert!(false, "dot_patches: unsupported block size"),
    }
    acc.map(|a| hsum(&a))
}
