//! The scratch plan: where each tensor lives in the caller's scratch buffer.
//!
//! Every tensor that holds data gets a [`Buffer`] alive from the step that writes it to the last
//! step that reads it. [`place`] lays the buffers out greedily, largest first, each at the lowest
//! offset where it overlaps no buffer alive at the same time (TensorFlow Lite Micro's greedy
//! planner works the same way). The plan is computed once, at load, from the graph alone, so
//! [`crate::Model::scratch_len`] is exact and the same on every machine.

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

/// The buffers of a graph's tensors: tensor 0 (the input) and the output of each op, `N` ops at
/// most (a [`crate::Model`]'s `MAX_OPS`, so that its plan takes stack in proportion to it). The
/// buffers of ops a model does not have, like those of tensors without memory of their own,
/// keep size 0 and take no part in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buffers<const N: usize> {
    /// Tensor 0's.
    input: Buffer,
    /// Tensor `i + 1`'s (op `i`'s output).
    outputs: [Buffer; N],
}

impl<const N: usize> Buffers<N> {
    /// `N + 1` empty buffers.
    pub fn new() -> Self {
        Self {
            input: Buffer::default(),
            outputs: [Buffer::default(); N],
        }
    }

    /// The buffer of tensor `t`.
    pub fn get(&self, t: usize) -> Option<&Buffer> {
        match t.checked_sub(1) {
            None => Some(&self.input),
            Some(i) => self.outputs.get(i),
        }
    }

    /// The buffer of tensor `t`, to change.
    pub fn get_mut(&mut self, t: usize) -> Option<&mut Buffer> {
        match t.checked_sub(1) {
            None => Some(&mut self.input),
            Some(i) => self.outputs.get_mut(i),
        }
    }

    /// Every buffer, in tensor order.
    fn iter(&self) -> impl Iterator<Item = &Buffer> + Clone {
        core::iter::once(&self.input).chain(&self.outputs)
    }

    /// Places every buffer (sets its `offset`) and returns the bytes the plan needs: `None` if
    /// a buffer would end past `usize::MAX` (possible on 32-bit targets, where two tensors of
    /// 2^31 bytes alive together do not fit).
    ///
    /// Order: by size, largest first (ties: lowest index first), so the result depends only on
    /// the buffers. Each goes at the lowest offset among 0 and the ends of the already placed
    /// buffers it meets in time, where it collides with none of them.
    pub fn place(&mut self) -> Option<usize> {
        // Placing order: `(Reverse(size), index)` ascending. The buffers placed before one are
        // exactly those ordered before it, so no bookkeeping is needed.
        let key = |t: usize, b: &Buffer| (core::cmp::Reverse(b.size), t);
        let mut total = 0;
        let mut last = None;
        loop {
            // The next buffer in placing order.
            let pick = self
                .iter()
                .enumerate()
                .filter(|&(t, b)| last.is_none_or(|l| key(t, b) > l))
                .min_by_key(|&(t, b)| key(t, b));
            let Some((i, &this)) = pick else { break };
            let this_key = key(i, &this);
            last = Some(this_key);
            if this.size == 0 {
                break; // so are all the buffers after it
            }
            let placed = |j: usize, other: &Buffer| key(j, other) < this_key;
            let fits = |offset: usize| {
                self.iter().enumerate().all(|(j, other)| {
                    !placed(j, other)
                        || other.size == 0
                        || !this.meets(other)
                        || !this.collides(offset, other)
                })
            };
            let mut best = if fits(0) { Some(0) } else { None };
            for (j, other) in self.iter().enumerate() {
                let candidate = other.end();
                if placed(j, other)
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
            if let Some(b) = self.get_mut(i) {
                b.offset = offset;
                total = total.max(offset.checked_add(b.size)?);
            }
        }
        Some(total)
    }

    /// The largest run of bytes in `[0, total)` that no buffer alive at `step` (other than
    /// tensor `except`'s) occupies: `(offset, len)`.
    pub fn largest_gap(&self, step: usize, total: usize, except: Option<usize>) -> (usize, usize) {
        let live = |j: usize, b: &Buffer| {
            Some(j) != except && b.size > 0 && b.first <= step && step <= b.last
        };
        let live_buffers = self.iter().enumerate().filter(|&(j, b)| live(j, b));
        let mut best = (0, 0);
        // Each gap starts at 0 or at the end of a live buffer, and runs to the next live start.
        let starts = core::iter::once(0).chain(live_buffers.clone().map(|(_, b)| b.end()));
        for start in starts {
            let inside = live_buffers
                .clone()
                .any(|(_, b)| b.offset <= start && start < b.end());
            if inside || start >= total {
                continue;
            }
            let end = live_buffers
                .clone()
                .filter(|&(_, b)| b.offset >= start)
                .map(|(_, b)| b.offset)
                .fold(total, usize::min);
            if end - start > best.1 {
                best = (start, end - start);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffers<const N: usize>(input: Buffer, outputs: [Buffer; N]) -> Buffers<N> {
        Buffers { input, outputs }
    }

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
        let mut b = buffers(
            buf(784, 0, 0),
            [
                buf(3456, 0, 1),
                buf(864, 1, 2),
                buf(1024, 2, 3),
                buf(256, 3, 3),
            ],
        );
        let total = b.place().unwrap();
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

    #[test]
    fn unused_slots_change_nothing() {
        // A model type with room for more ops than the model has: the empty buffers after the
        // last op take no part.
        let ops = [buf(3456, 0, 1), buf(864, 1, 2), buf(1024, 2, 3)];
        let mut exact = buffers(buf(784, 0, 0), ops);
        let mut roomy = buffers(
            buf(784, 0, 0),
            [ops[0], ops[1], ops[2], Buffer::default(), Buffer::default()],
        );
        assert_eq!(exact.place(), roomy.place());
        for t in 0..4 {
            assert_eq!(exact.get(t), roomy.get(t));
            assert_eq!(
                exact.largest_gap(t, 4320, None),
                roomy.largest_gap(t, 4320, None)
            );
        }
    }

    #[test]
    fn a_residual_input_stays_alive() {
        // x (100) is read at steps 0 and 2 (the add); the block's convs write 100 each.
        let mut b = buffers(
            buf(100, 0, 2),
            [buf(100, 0, 1), buf(100, 1, 2), buf(100, 2, 2)],
        );
        let total = b.place().unwrap();
        assert_eq!(total, 300);
        assert_eq!(b.largest_gap(2, total, None), (0, 0));
        assert_eq!(b.largest_gap(0, total, None).1, 100);
    }

    #[test]
    fn gaps_skip_live_buffers() {
        let mut b = buffers(buf(10, 0, 0), [buf(30, 0, 0), buf(5, 1, 1)]);
        let total = b.place().unwrap();
        assert_eq!(total, 40);
        assert_eq!(b.largest_gap(1, total, None), (5, 35));
        assert_eq!(b.largest_gap(0, total, Some(1)).1, 30);
    }
}
