//! The scratch plan: where each tensor lives in the caller's scratch buffer.
//!
//! Every tensor that holds data gets a [`Buffer`] alive from the step that writes it to the last
//! step that reads it. [`place`] lays the buffers out greedily, largest first, each at the lowest
//! offset where it overlaps no buffer alive at the same time (TensorFlow Lite Micro's greedy
//! planner works the same way). Where that needs more than the most bytes alive during one step
//! (which can happen even for a chain: dense layers of 9, 2, 8 and 10 outputs), it tries a
//! two-ended layout, buffers in the order they are made alternating between the bottom and the
//! top of that many bytes, which fits every chain, and keeps it if everything fits. The plan is
//! computed once, at load, from the graph alone, so [`crate::Model::scratch_len`] is exact and
//! the same on every machine.

/// One block of scratch: its size, the steps `first..=last` during which it holds data, and
/// (once placed) its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Buffer {
    /// Bytes (0: needs no memory).
    pub size: usize,
    /// First step that uses it.
    pub first: usize,
    /// Last step that uses it.
    pub last: usize,
    /// Offset in the scratch buffer, set by [`place`].
    pub offset: usize,
}

impl Buffer {
    /// Whether the two buffers are alive during a common step.
    fn meets(&self, other: &Self) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// Whether `[offset, offset + size)` overlaps `other`'s placed bytes.
    fn collides(&self, offset: usize, other: &Self) -> bool {
        offset < other.offset.saturating_add(other.size)
            && other.offset < offset.saturating_add(self.size)
    }

    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.offset.saturating_add(self.size)
    }
}

/// Places every buffer (sets its `offset`) and returns the bytes the plan needs: the greedy
/// layout ([`place_greedy`]) or, if that needs more than [`peak`] bytes, the two-ended one
/// ([`place_two_ended`]) when it fits in [`peak`].
pub(crate) fn place(buffers: &mut [Buffer]) -> usize {
    let greedy = place_greedy(buffers);
    let peak = peak(buffers);
    if greedy <= peak {
        return greedy;
    }
    let mut offsets = [0_usize; MAX_BUFFERS];
    for (o, b) in offsets.iter_mut().zip(buffers.iter()) {
        *o = b.offset;
    }
    if place_two_ended(buffers, peak) {
        return peak;
    }
    for (b, &o) in buffers.iter_mut().zip(offsets.iter()) {
        b.offset = o;
    }
    greedy
}

/// The most bytes alive during one step: no plan needs fewer.
fn peak(buffers: &[Buffer]) -> usize {
    let last = buffers.iter().map(|b| b.last).max().unwrap_or(0);
    (0..=last)
        .map(|step| {
            buffers
                .iter()
                .filter(|b| b.first <= step && step <= b.last)
                .fold(0_usize, |sum, b| sum.saturating_add(b.size))
        })
        .max()
        .unwrap_or(0)
}

/// Lays the buffers out in `[0, total)` in the order they are made (by first step; among
/// buffers made in the same step the longest-lived first), each at the end of `[0, total)`
/// opposite to the last placed buffer it meets in time (the bottom if it meets none): at the
/// lowest offset that fits at the bottom, the highest at the top, or failing that the other
/// end. A chain then ping-pongs between the two ends. Returns whether every buffer fits.
fn place_two_ended(buffers: &mut [Buffer], total: usize) -> bool {
    let n = buffers.len().min(MAX_BUFFERS);
    let mut order = [0_usize; MAX_BUFFERS];
    let order = order.get_mut(..n).unwrap_or_default();
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    order.sort_unstable_by_key(|&i| {
        buffers
            .get(i)
            .map_or((usize::MAX, 0, i), |b| (b.first, usize::MAX - b.last, i))
    });
    // Whether each buffer is placed, and at the top.
    let mut placed = [false; MAX_BUFFERS];
    let mut top = [false; MAX_BUFFERS];
    for (k, &i) in order.iter().enumerate() {
        let Some(&this) = buffers.get(i) else {
            return false;
        };
        if this.size == 0 {
            continue;
        }
        let placed_meeting = || {
            order
                .get(..k)
                .unwrap_or_default()
                .iter()
                .filter_map(|&j| Some((j, buffers.get(j)?)))
                .filter(|&(j, b)| placed.get(j) == Some(&true) && b.size > 0 && this.meets(b))
        };
        let fits = |offset: usize| {
            offset
                .checked_add(this.size)
                .is_some_and(|end| end <= total)
                && placed_meeting().all(|(_, b)| !this.collides(offset, b))
        };
        let bottom = core::iter::once(0)
            .chain(placed_meeting().map(|(_, b)| b.end()))
            .filter(|&o| fits(o))
            .min();
        let top_offset = total
            .checked_sub(this.size)
            .into_iter()
            .chain(placed_meeting().filter_map(|(_, b)| b.offset.checked_sub(this.size)))
            .filter(|&o| fits(o))
            .max();
        let want_top = placed_meeting()
            .next_back()
            .is_some_and(|(j, _)| top.get(j) != Some(&true));
        let choice = if want_top {
            top_offset.map(|o| (o, true)).or(bottom.map(|o| (o, false)))
        } else {
            bottom.map(|o| (o, false)).or(top_offset.map(|o| (o, true)))
        };
        let Some((offset, at_top)) = choice else {
            return false;
        };
        if let (Some(b), Some(p), Some(t)) = (buffers.get_mut(i), placed.get_mut(i), top.get_mut(i))
        {
            b.offset = offset;
            *p = true;
            *t = at_top;
        }
    }
    true
}

/// The greedy layout: places every buffer (sets its `offset`) and returns the bytes it needs.
///
/// Order: by size, largest first (ties: lowest index first), so the result depends only on the
/// buffers. Each goes at the lowest offset among 0 and the ends of the already placed buffers
/// it meets in time, where it collides with none of them.
fn place_greedy(buffers: &mut [Buffer]) -> usize {
    let n = buffers.len();
    let mut total = 0;
    // Buffers placed so far are those with index in `placed` order; track with a flag each.
    let mut done = [false; 256];
    let done = done.get_mut(..n).unwrap_or_default();
    for _ in 0..n {
        // The largest unplaced buffer.
        let mut pick = None;
        for (i, b) in buffers.iter().enumerate() {
            let Some(&false) = done.get(i) else { continue };
            if pick.is_none_or(|p: usize| buffers.get(p).is_some_and(|q| b.size > q.size)) {
                pick = Some(i);
            }
        }
        let Some(i) = pick else { break };
        if let Some(d) = done.get_mut(i) {
            *d = true;
        }
        let Some(&this) = buffers.get(i) else { break };
        if this.size == 0 {
            continue;
        }
        let fits = |offset: usize| {
            buffers
                .iter()
                .zip(done.iter())
                .enumerate()
                .all(|(j, (other, &placed))| {
                    j == i
                        || !placed
                        || other.size == 0
                        || !this.meets(other)
                        || !this.collides(offset, other)
                })
        };
        let mut best = if fits(0) { Some(0) } else { None };
        for (j, (other, &placed)) in buffers.iter().zip(done.iter()).enumerate() {
            let candidate = other.end();
            if j != i
                && placed
                && other.size > 0
                && this.meets(other)
                && best.is_none_or(|b| candidate < b)
                && fits(candidate)
            {
                best = Some(candidate);
            }
        }
        // A candidate always exists: the end of the highest buffer it meets.
        let offset = best.unwrap_or(total);
        if let Some(b) = buffers.get_mut(i) {
            b.offset = offset;
            total = total.max(b.end());
        }
    }
    total
}

/// The largest run of bytes in `[0, total)` that no buffer alive at `step` (other than
/// `except`) occupies: `(offset, len)`.
pub(crate) fn largest_gap(
    buffers: &[Buffer],
    step: usize,
    total: usize,
    except: Option<usize>,
) -> (usize, usize) {
    let live =
        |j: usize, b: &Buffer| Some(j) != except && b.size > 0 && b.first <= step && step <= b.last;
    let mut best = (0, 0);
    // Each gap starts at 0 or at the end of a live buffer, and runs to the next live start.
    let starts = core::iter::once(0).chain(
        buffers
            .iter()
            .enumerate()
            .filter(|&(j, b)| live(j, b))
            .map(|(_, b)| b.end()),
    );
    for start in starts {
        let inside = buffers
            .iter()
            .enumerate()
            .any(|(j, b)| live(j, b) && b.offset <= start && start < b.end());
        if inside || start >= total {
            continue;
        }
        let end = buffers
            .iter()
            .enumerate()
            .filter(|&(j, b)| live(j, b) && b.offset >= start)
            .map(|(_, b)| b.offset)
            .fold(total, usize::min);
        if end - start > best.1 {
            best = (start, end - start);
        }
    }
    best
}

/// Most buffers [`place`] takes (its bookkeeping is a fixed array).
pub(crate) const MAX_BUFFERS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(size: usize, first: usize, last: usize) -> Buffer {
        Buffer {
            size,
            first,
            last,
            offset: 0,
        }
    }

    #[test]
    fn a_chain_ping_pongs() {
        // input 784 -> 3456 -> 864 -> 1024 -> 256: each step reads one and writes the next.
        let mut b = [
            buf(784, 0, 0),
            buf(3456, 0, 1),
            buf(864, 1, 2),
            buf(1024, 2, 3),
            buf(256, 3, 3),
        ];
        let total = place(&mut b);
        assert_eq!(total, 3456 + 864);
        for (i, x) in b.iter().enumerate() {
            for y in b.iter().skip(i + 1) {
                assert!(
                    !x.meets(y) || x.end() <= y.offset || y.end() <= x.offset,
                    "{x:?} {y:?}"
                );
            }
        }
    }

    /// No two buffers alive at the same time overlap, and all lie below `total`.
    fn assert_disjoint(b: &[Buffer], total: usize) {
        for (i, x) in b.iter().enumerate() {
            assert!(x.end() <= total, "{x:?} beyond {total}");
            for y in b.iter().skip(i + 1) {
                assert!(
                    x.size == 0
                        || y.size == 0
                        || !x.meets(y)
                        || x.end() <= y.offset
                        || y.end() <= x.offset,
                    "{x:?} {y:?}"
                );
            }
        }
    }

    #[test]
    fn any_chain_needs_only_its_largest_step() {
        // A flattened 1-pixel input read at step 1, then dense layers of 9, 2, 8, 10 and 1
        // outputs: largest first, 10 and 9 both go at 0 (they never meet), 8 above 10, and 2
        // (between 9 and 8 in time) finds no room below 18.
        let mut b = [
            buf(1, 0, 1),
            buf(9, 1, 2),
            buf(2, 2, 3),
            buf(8, 3, 4),
            buf(10, 4, 5),
            buf(1, 5, 5),
        ];
        let total = place(&mut b);
        assert_eq!(total, 18);
        assert_disjoint(&b, total);
        // A conv (784 -> 3136) fused with its pooling (784): the input, the fused kernel's
        // work (3136 - 784) and the pooled output at step 0, then dense layers.
        let mut b = [
            buf(784, 0, 0),
            buf(2352, 0, 0),
            buf(784, 0, 1),
            buf(100, 1, 2),
            buf(700, 2, 3),
            buf(10, 3, 3),
        ];
        let total = place(&mut b);
        assert_eq!(total, 3920);
        assert_disjoint(&b, total);
    }

    #[test]
    fn a_residual_input_stays_alive() {
        // x (100) is read at steps 0 and 2 (the add); the block's convs write 100 each.
        let mut b = [
            buf(100, 0, 2),
            buf(100, 0, 1),
            buf(100, 1, 2),
            buf(100, 2, 2),
        ];
        let total = place(&mut b);
        assert_eq!(total, 300);
        assert_eq!(largest_gap(&b, 2, total, None), (0, 0));
        assert_eq!(largest_gap(&b, 0, total, None).1, 100);
    }

    #[test]
    fn gaps_skip_live_buffers() {
        let mut b = [buf(10, 0, 0), buf(30, 0, 0), buf(5, 1, 1)];
        let total = place(&mut b);
        assert_eq!(total, 40);
        assert_eq!(largest_gap(&b, 1, total, None), (5, 35));
        assert_eq!(largest_gap(&b, 0, total, Some(1)).1, 30);
    }
}
