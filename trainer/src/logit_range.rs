//! The int8 range of the logits, chosen so that as many calibration images as possible keep
//! their float top-1 class after the logits are rounded to int8.
//!
//! The logits need not be represented everywhere: clamping a logit below its image's top-1, or
//! a top-1 above every competitor, never changes the argmax. The narrowest safe-looking range,
//! `[smallest top-1, largest runner-up]`, gives the competing logits the finest scale, but it
//! can be wrong both ways. At its ends: when many images share nearly the same logits (a
//! network whose hidden units are all off for them outputs its bias), their top two can round
//! to the same int8 value and the lower index wins. And as a whole: a few images with two huge
//! logits stretch the ceiling, coarsening the step for every other image; clamping those few
//! (their top two saturate together) can keep many more. So the range is searched over the
//! pairs of candidate ends: a grid from the narrowest range out to the observed extremes, and
//! the quantiles of the images' top-1 and runner-up logits inside it, each pair scored by the
//! images whose argmax survives int8 rounding (ties going to the lowest index, as
//! infer-core's argmax does).

use infer_core::format::QParams;

use crate::quantize::activation_qparams;

/// Grid points per end of the range (the narrowest end included).
const STEPS: usize = 33;

/// The chosen range of the logits of `rows` (one row per calibration image), or `None` when
/// there are no rows or the narrowest range is empty (a single class, or one image whose
/// top-1 equals its runner-up).
pub fn choose(rows: &[Vec<f32>]) -> Option<(f32, f32)> {
    let (mut floor, mut ceiling) = (f32::INFINITY, f32::NEG_INFINITY);
    let (mut lowest, mut highest) = (f32::INFINITY, f32::NEG_INFINITY);
    for row in rows {
        let (top1, top2) = top_two(row);
        floor = floor.min(top1);
        ceiling = ceiling.max(top2);
        for &v in row {
            lowest = lowest.min(v);
            highest = highest.max(v);
        }
    }
    let proper = floor < ceiling && lowest.is_finite() && highest.is_finite();
    if !proper {
        return None;
    }
    let float_top: Vec<usize> = rows.iter().map(|r| argmax(r.iter().copied())).collect();
    let (mut tops, mut runners_up): (Vec<f32>, Vec<f32>) = rows.iter().map(|r| top_two(r)).unzip();
    tops.sort_by(f32::total_cmp);
    runners_up.sort_by(f32::total_cmp);
    let inside = || quantiles(&tops).chain(quantiles(&runners_up));
    let lows: Vec<f32> = grid(floor, lowest).chain(inside()).collect();
    let highs: Vec<f32> = grid(ceiling, highest).chain(inside()).collect();
    let mut best = ((floor, ceiling), kept(rows, &float_top, floor, ceiling));
    for &lo in &lows {
        for &hi in highs.iter().filter(|&&hi| hi > lo) {
            let score = kept(rows, &float_top, lo, hi);
            if score > best.1 {
                best = ((lo, hi), score);
            }
        }
    }
    Some(best.0)
}

/// `STEPS` quantiles (nearest rank, the extremes included) of the finite values of `sorted`,
/// which is in ascending order.
fn quantiles(sorted: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let finite: &[f32] = {
        let start = sorted.partition_point(|v| !v.is_finite() && *v < 0.0);
        let end = sorted.partition_point(|v| v.is_finite() || *v < 0.0);
        sorted.get(start..end).unwrap_or_default()
    };
    let last = finite.len().saturating_sub(1);
    (0..STEPS).filter_map(move |i| finite.get(i * last / (STEPS - 1)).copied())
}

/// `STEPS` points from `from` to `to` (both included).
fn grid(from: f32, to: f32) -> impl Iterator<Item = f32> {
    #[allow(clippy::cast_precision_loss)] // STEPS is tiny
    (0..STEPS).map(move |i| from + (to - from) * i as f32 / (STEPS - 1) as f32)
}

/// How many rows keep their float top-1 (`float_top`) when rounded to int8 over `[lo, hi]`.
fn kept(rows: &[Vec<f32>], float_top: &[usize], lo: f32, hi: f32) -> usize {
    let q = activation_qparams(lo, hi);
    rows.iter()
        .zip(float_top)
        .filter(|(row, top)| argmax(row.iter().map(|&v| quantize(v, q))) == **top)
        .count()
}

/// `v` rounded to int8 under `q` (as a float, for the comparison).
fn quantize(v: f32, q: QParams) -> f32 {
    #[allow(clippy::cast_precision_loss)] // a zero point is in [-128, 127]
    ((v / q.scale).round() + q.zero_point as f32).clamp(-128.0, 127.0)
}

/// Index of the first largest value.
fn argmax(values: impl Iterator<Item = f32>) -> usize {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// The largest and second-largest value of `row` (`-inf` where missing).
pub fn top_two(row: &[f32]) -> (f32, f32) {
    row.iter()
        .fold((f32::NEG_INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            if v > a { (v, a) } else { (a, b.max(v)) }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_two_finds_the_runner_up() {
        assert_eq!(top_two(&[1.0, 5.0, 3.0, 5.0]), (5.0, 5.0));
        assert_eq!(top_two(&[4.0, -1.0, 2.0]), (4.0, 2.0));
    }

    #[test]
    fn argmax_takes_the_lowest_index_on_ties() {
        assert_eq!(argmax([1.0, 5.0, 5.0].into_iter()), 1);
        assert_eq!(argmax([].into_iter()), 0);
    }

    #[test]
    fn well_separated_logits_keep_the_narrowest_range() {
        let rows = vec![
            vec![10.0, 0.0, -5.0],
            vec![-5.0, 8.0, 1.0],
            vec![2.0, 0.0, 9.0],
        ];
        // floor: smallest top-1 is 8, ceiling: largest runner-up is 2 -> empty, so None
        assert_eq!(choose(&rows), None);
        let rows = vec![vec![1.0, 0.5, -5.0], vec![-5.0, 8.0, 7.0]];
        assert_eq!(choose(&rows), Some((1.0, 7.0)));
    }

    #[test]
    fn a_crowd_of_near_ties_moves_the_range() {
        // Many images output (almost) the same logits, 0.1 apart, near the narrowest range's
        // floor; one image stretches the ceiling so the step is ~0.39 and the crowd's top two
        // round together at [floor, ceiling]; the chosen range must separate them.
        let mut rows = vec![vec![1.2, 1.3, -40.0]; 50];
        rows.push(vec![0.0, 100.0, 99.0]);
        let narrow = (1.3_f32, 99.0_f32);
        let top: Vec<usize> = rows.iter().map(|r| argmax(r.iter().copied())).collect();
        let (lo, hi) = choose(&rows).expect("a proper range");
        assert!(kept(&rows, &top, lo, hi) > kept(&rows, &top, narrow.0, narrow.1));
        assert_eq!(kept(&rows, &top, lo, hi), rows.len());
    }

    #[test]
    fn a_few_images_with_huge_logits_are_given_up_for_the_crowd() {
        // 50 images whose top two are 0.05 apart between 1 and 1.5, and two whose top two
        // (99.9 and 100) stretch the largest runner-up to 99.9: any range reaching it has a
        // step of at least 0.39 and ties most of the crowd, wherever the rounding boundaries
        // fall. Clamping near 1.5 keeps the crowd and loses the two.
        let mut rows: Vec<Vec<f32>> = (0..50u8)
            .map(|i| {
                let base = 1.0 + f32::from(i) * 0.01;
                vec![base, base + 0.05, -40.0]
            })
            .collect();
        rows.extend([vec![0.0, 99.9, 100.0], vec![0.0, 99.9, 100.0]]);
        let top: Vec<usize> = rows.iter().map(|r| argmax(r.iter().copied())).collect();
        let (lo, hi) = choose(&rows).expect("a proper range");
        assert!(hi < 99.9, "{hi}");
        assert_eq!(kept(&rows, &top, lo, hi), 50);
    }

    #[test]
    fn quantiles_skip_missing_runners_up() {
        let v = [f32::NEG_INFINITY, 1.0, 2.0, 3.0];
        let q: Vec<f32> = quantiles(&v).collect();
        assert_eq!(q.first(), Some(&1.0));
        assert_eq!(q.last(), Some(&3.0));
        assert!(q.iter().all(|x| x.is_finite()));
        assert_eq!(quantiles(&[]).count(), 0);
    }
}
