//! Test accuracy against model size, ours beside the published numbers.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{ChartError, GREY, INK, TRAIN, coord, font, px, render, text_size};

/// Picture size of [`accuracy_vs_size`].
const SIZE: (u32, u32) = (1200, 760);
/// Height of the title band (title, subtitle, key).
const TITLE_BAND: u32 = 96;
/// Radius of the markers.
const MARKER: i32 = 6;
/// Size of the id labels.
const LABEL_FONT: f64 = 15.0;
/// Colour of the published markers.
const PUBLISHED: RGBColor = RGBColor(90, 90, 90);

/// One model of a study: its size, our test accuracy and the one the study published.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyPoint {
    /// Model id (`s5-cnn`).
    pub id: String,
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates per image.
    pub macs: u64,
    /// Our test accuracy, in percent.
    pub ours: f64,
    /// The study's published test accuracy in percent, if it gave one.
    pub published: Option<f64>,
}

/// Which size goes on the x axis of [`accuracy_vs_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Trainable parameters.
    Params,
    /// Multiply-accumulates per image.
    Macs,
}

impl Size {
    fn of(self, point: &StudyPoint) -> u64 {
        match self {
            Self::Params => point.params,
            Self::Macs => point.macs,
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Self::Params => ("parameters", "trainable parameters (log scale)"),
            Self::Macs => (
                "multiply-accumulates",
                "multiply-accumulates per image (log scale)",
            ),
        }
    }
}

/// Draws the test accuracy of `points` against their size `x` (on a log scale) to `path` (PNG,
/// 1200 x 760) under `title` (e.g. "S5: test accuracy against parameters"): ours as filled markers, the published numbers as hollow ones joined to ours by a
/// thin line, each model labelled with its id. Labels are placed clear of every marker and of
/// each other where the plot has room (further out with a leader line when it is crowded).
///
/// # Errors
///
/// [`ChartError::Empty`] without points, [`ChartError::BadInput`] for a size of 0 (no place on
/// a log scale) or a non-finite accuracy, [`ChartError::Io`] if the file cannot be written.
pub fn accuracy_vs_size(
    points: &[StudyPoint],
    x: Size,
    title: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if points.is_empty() {
        return Err(ChartError::empty(path, "no models"));
    }
    for p in points {
        if x.of(p) == 0 {
            return Err(ChartError::bad_input(
                path,
                format!("{}: {} is 0", p.id, x.words().0),
            ));
        }
        if !p.ours.is_finite() || p.published.is_some_and(|v| !v.is_finite()) {
            return Err(ChartError::bad_input(
                path,
                format!("{}: accuracy is not a finite number", p.id),
            ));
        }
    }
    let sizes: Vec<f64> = points.iter().map(|p| x.of(p) as f64).collect();
    let lo = sizes.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = sizes.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let accuracies = points
        .iter()
        .flat_map(|p| std::iter::once(p.ours).chain(p.published));
    let a_lo = accuracies.clone().fold(f64::INFINITY, f64::min);
    let a_hi = accuracies.fold(f64::NEG_INFINITY, f64::max);
    let pad = ((a_hi - a_lo) * 0.12).max(1.0);
    let (y0, y1) = ((a_lo - pad).max(0.0), (a_hi + pad).min(100.0));
    let (x0, x1) = log_bounds(lo, hi);
    let x_desc = x.words().1;

    render(path, SIZE, |root| {
        let (top, body) = root.split_vertically(TITLE_BAND);
        top.draw(&Text::new(
            title.to_string(),
            (24, 14),
            font(26.0).color(&INK),
        ))?;
        let any_published = points.iter().any(|p| p.published.is_some());
        top.draw(&Text::new(
            format!(
                "{} model{}; {}",
                points.len(),
                if points.len() == 1 { "" } else { "s" },
                if any_published {
                    "a thin line joins our accuracy to the one the study published"
                } else {
                    "no published accuracy to compare with"
                }
            ),
            (24, 48),
            font(15.0).color(&GREY),
        ))?;
        draw_key(&top, (28, 80), any_published)?;

        let mut chart = ChartBuilder::on(&body)
            .margin_left(16)
            .margin_right(36)
            .margin_top(8)
            .margin_bottom(14)
            .x_label_area_size(58)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (x0..x1).log_scale().with_key_points(log_ticks(x0, x1)),
                y0..y1,
            )?;
        // Whole percents, or tenths when the range is narrow.
        let decimals = if y1 - y0 < 4.0 { 1 } else { 0 };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("test accuracy %")
            .x_labels(30)
            .y_labels(10)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| format!("{v:.decimals$}"))
            .label_style(font(15.0).color(&INK))
            .axis_desc_style(font(17.0).color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(222, 222, 222))
            .axis_style(GREY)
            .draw()?;

        // Labels are placed in pixels around our markers, clear of every marker; leader lines
        // go under the markers, labels on top of everything.
        let ours: Vec<(i32, i32)> = points
            .iter()
            .zip(&sizes)
            .map(|(p, &s)| chart.backend_coord(&(s, p.ours)))
            .collect();
        let mut obstacles: Vec<Rect> = ours.iter().map(|&c| Rect::around(c, MARKER + 2)).collect();
        for (p, &s) in points.iter().zip(&sizes) {
            if let Some(v) = p.published {
                obstacles.push(Rect::around(chart.backend_coord(&(s, v)), MARKER + 2));
            }
        }
        let (xr, yr) = chart.plotting_area().get_pixel_range();
        let bounds = Rect {
            x0: xr.start + 2,
            y0: yr.start + 2,
            x1: xr.end - 2,
            y1: yr.end - 2,
        };
        let boxes: Vec<(i32, i32, u32, u32)> = ours
            .iter()
            .zip(points)
            .map(|(&(mx, my), p)| {
                let (w, h) = text_size(&p.id, LABEL_FONT);
                (mx, my, w + 6, h + 6)
            })
            .collect();
        let placed = place_labels(&boxes, &obstacles, bounds);

        for (placement, &(mx, my)) in placed.iter().zip(&ours) {
            if placement.leader {
                let end = placement.rect.nearest_to((mx, my));
                root.draw(&PathElement::new(
                    [(mx, my), end],
                    RGBColor(150, 150, 150).stroke_width(1),
                ))?;
            }
        }
        for (p, &s) in points.iter().zip(&sizes) {
            if let Some(published) = p.published {
                chart.draw_series(std::iter::once(PathElement::new(
                    [(s, p.ours), (s, published)],
                    RGBColor(170, 170, 170).stroke_width(1),
                )))?;
            }
        }
        chart.draw_series(
            points
                .iter()
                .zip(&sizes)
                .filter_map(|(p, &s)| p.published.map(|v| hollow_marker((s, v))))
                .flatten(),
        )?;
        chart.draw_series(
            points
                .iter()
                .zip(&sizes)
                .map(|(p, &s)| Circle::new((s, p.ours), MARKER, TRAIN.filled())),
        )?;
        let centre = Pos::new(HPos::Center, VPos::Center);
        for (placement, p) in placed.iter().zip(points) {
            let r = placement.rect;
            root.draw(&Rectangle::new(
                [(r.x0, r.y0), (r.x1, r.y1)],
                WHITE.mix(0.85).filled(),
            ))?;
            root.draw(&Text::new(
                p.id.clone(),
                ((r.x0 + r.x1) / 2, (r.y0 + r.y1) / 2),
                font(LABEL_FONT).color(&INK).pos(centre),
            ))?;
        }
        Ok(())
    })
}

/// A published number's marker: a ring two pixels wide with a white inside (a disc in a disc,
/// which plotters draws without the gaps of its stroked circles, and which hides the line
/// joining it to ours).
fn hollow_marker<C: Clone>(at: C) -> [Circle<C, i32>; 2] {
    [
        Circle::new(at.clone(), MARKER, PUBLISHED.filled()),
        Circle::new(at, MARKER - 2, WHITE.filled()),
    ]
}

/// The key: a filled marker for ours, a hollow one for published (if any point has one).
fn draw_key(area: &crate::Area<'_>, (x, y): (i32, i32), published: bool) -> crate::DrawResult {
    let left = Pos::new(HPos::Left, VPos::Center);
    area.draw(&Circle::new((x, y), MARKER, TRAIN.filled()))?;
    let ours = "ours: float test accuracy";
    area.draw(&Text::new(
        ours,
        (x + 14, y),
        font(15.0).color(&INK).pos(left),
    ))?;
    if !published {
        return Ok(());
    }
    let next = x + 14 + coord(text_size(ours, 15.0).0) + 36;
    for disc in hollow_marker((next, y)) {
        area.draw(&disc)?;
    }
    area.draw(&Text::new(
        "published by the study",
        (next + 14, y),
        font(15.0).color(&INK).pos(left),
    ))?;
    Ok(())
}

/// The x range for sizes from `lo` to `hi`: from and to a tick (1, 2 or 5 times a power of
/// ten), with room beside the outermost models for their labels.
fn log_bounds(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = (lo / 1.3, hi * 1.3);
    let ticks = log_ticks(
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );
    let x0 = ticks
        .iter()
        .copied()
        .filter(|&t| t <= lo)
        .fold(lo, |_, t| t);
    let x1 = ticks.iter().copied().find(|&t| t >= hi).unwrap_or(hi);
    (x0, x1)
}

/// The ticks of a log axis from `x0` to `x1`: 1, 2 and 5 times each power of ten in range.
fn log_ticks(x0: f64, x1: f64) -> Vec<f64> {
    let (lo, hi) = (x0.log10().floor(), x1.log10().ceil());
    let mut ticks = Vec::new();
    let mut power = 10f64.powf(lo);
    while power <= 10f64.powf(hi) * 1.001 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * power;
            if v >= x0 * 0.999 && v <= x1 * 1.001 {
                ticks.push(v);
            }
        }
        power *= 10.0;
    }
    ticks
}

/// A tick label on the log axis, shortened with k, M and G.
fn tick_label(v: f64) -> String {
    let (value, suffix) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if value >= 1.0 {
        format!("{value:.0}{suffix}")
    } else {
        format!("{value}{suffix}")
    }
}

/// A rectangle in pixels, both corners inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Rect {
    fn around((x, y): (i32, i32), r: i32) -> Self {
        Self {
            x0: x - r,
            y0: y - r,
            x1: x + r,
            y1: y + r,
        }
    }

    fn overlap(&self, other: &Rect) -> i64 {
        let w = self.x1.min(other.x1) - self.x0.max(other.x0);
        let h = self.y1.min(other.y1) - self.y0.max(other.y0);
        if w > 0 && h > 0 {
            i64::from(w) * i64::from(h)
        } else {
            0
        }
    }

    fn inside(&self, bounds: &Rect) -> bool {
        self.x0 >= bounds.x0 && self.y0 >= bounds.y0 && self.x1 <= bounds.x1 && self.y1 <= bounds.y1
    }

    /// The point of the rectangle's edge nearest to `p`.
    fn nearest_to(&self, (x, y): (i32, i32)) -> (i32, i32) {
        (x.clamp(self.x0, self.x1), y.clamp(self.y0, self.y1))
    }
}

/// Where a label went, and whether it is far enough from its marker to need a leader line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    rect: Rect,
    leader: bool,
}

/// Distances from the marker at which labels are tried, nearest first; beyond the first a
/// leader line joins label and marker.
const RINGS: [f64; 5] = [9.0, 22.0, 40.0, 62.0, 90.0];
/// Directions tried on each ring, as unit steps: right, left, up, down, then the diagonals.
const DIRECTIONS: [(f64, f64); 8] = [
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, -1.0),
    (0.0, 1.0),
    (0.7, -0.7),
    (0.7, 0.7),
    (-0.7, -0.7),
    (-0.7, 0.7),
];

/// Places one label of size `(w, h)` per marker `(x, y, w, h)`, greedily in order: the first
/// candidate (nearest ring first, then by direction) inside `bounds` that overlaps no obstacle
/// and no label placed before; if none is free, the candidate with the least overlap.
fn place_labels(
    labels: &[(i32, i32, u32, u32)],
    obstacles: &[Rect],
    bounds: Rect,
) -> Vec<Placement> {
    let mut placed: Vec<Placement> = Vec::with_capacity(labels.len());
    for &(mx, my, w, h) in labels {
        let (w, h) = (f64::from(w), f64::from(h));
        let mut best: Option<(i64, Placement)> = None;
        'search: for (ring, &d) in RINGS.iter().enumerate() {
            for &(dx, dy) in &DIRECTIONS {
                // The label's side nearest the marker sits at distance d in this direction.
                let cx = f64::from(mx) + dx * (d + w / 2.0);
                let cy = f64::from(my) + dy * (d + h / 2.0);
                let rect = Rect {
                    x0: px(cx - w / 2.0),
                    y0: px(cy - h / 2.0),
                    x1: px(cx + w / 2.0),
                    y1: px(cy + h / 2.0),
                };
                if !rect.inside(&bounds) {
                    continue;
                }
                let overlap: i64 = obstacles
                    .iter()
                    .chain(placed.iter().map(|p| &p.rect))
                    .map(|o| rect.overlap(o))
                    .sum();
                let candidate = Placement {
                    rect,
                    leader: ring > 0,
                };
                if best.is_none_or(|(o, _)| overlap < o) {
                    best = Some((overlap, candidate));
                }
                if overlap == 0 {
                    break 'search;
                }
            }
        }
        // No candidate inside the plot at all (a label wider than the plot): right of the marker.
        let (_, placement) = best.unwrap_or((
            0,
            Placement {
                rect: Rect {
                    x0: mx + 9,
                    y0: my - px(h / 2.0),
                    x1: mx + 9 + px(w),
                    y1: my + px(h / 2.0),
                },
                leader: false,
            },
        ));
        placed.push(placement);
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, unwritable};

    fn point(id: &str, params: u64, macs: u64, ours: f64, published: Option<f64>) -> StudyPoint {
        StudyPoint {
            id: id.into(),
            params,
            macs,
            ours,
            published,
        }
    }

    /// Models like the studies': two with the very same size and nearly the same accuracy, a
    /// cluster of small ones, and models without a published number.
    pub(crate) fn points() -> Vec<StudyPoint> {
        vec![
            point("s3-cnn-base", 3_730, 117_912, 84.45, Some(86.0)),
            point("s3-lenet-base", 44_426, 281_640, 89.25, Some(90.1)),
            point("s3-mlp-base", 109_386, 109_184, 86.30, Some(87.0)),
            point("s3-mlp-tuned", 242_762, 242_304, 87.92, Some(89.0)),
            point("s4-ann", 59_850, 59_648, 88.20, Some(88.0)),
            point("s4-cnn1", 591_786, 911_104, 90.95, Some(91.5)),
            point("s4-cnn2", 591_786, 911_104, 90.66, Some(91.2)),
            point("s5-ann", 235_146, 234_752, 88.08, Some(85.0)),
            point("s5-cnn", 421_642, 4_241_152, 92.23, Some(90.0)),
            point("tiny-resnet", 5_066, 931_552, 79.84, None),
        ]
    }

    #[test]
    fn the_log_axis_runs_from_tick_to_tick() {
        // 3730 / 1.3 = 2869 and 591786 * 1.3 = 769322.
        assert_eq!(log_bounds(3_730.0, 591_786.0), (2e3, 1e6));
        assert_eq!(log_bounds(1_100.0, 800_000.0), (500.0, 2e6));
        assert_eq!(log_bounds(5_000.0, 5_000.0), (2e3, 1e4));
    }

    #[test]
    fn log_ticks_are_one_two_and_five_times_powers_of_ten() {
        assert_eq!(log_ticks(1e3, 1e5), vec![1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5]);
        assert_eq!(log_ticks(100.0, 1e3), vec![100.0, 200.0, 500.0, 1e3]);
        assert_eq!(tick_label(1000.0), "1k");
        assert_eq!(tick_label(2e5), "200k");
        assert_eq!(tick_label(5e6), "5M");
        assert_eq!(tick_label(1e9), "1G");
        assert_eq!(tick_label(10.0), "10");
    }

    #[test]
    fn labels_avoid_markers_and_each_other() {
        let bounds = Rect {
            x0: 0,
            y0: 0,
            x1: 400,
            y1: 300,
        };
        // Three markers on top of one another.
        let markers = [(200, 150), (200, 152), (201, 150)];
        let obstacles: Vec<Rect> = markers.iter().map(|&m| Rect::around(m, 8)).collect();
        let labels: Vec<_> = markers.iter().map(|&(x, y)| (x, y, 60, 20)).collect();
        let placed = place_labels(&labels, &obstacles, bounds);
        for (i, a) in placed.iter().enumerate() {
            assert!(a.rect.inside(&bounds));
            for o in &obstacles {
                assert_eq!(a.rect.overlap(o), 0, "label {i} on a marker");
            }
            for b in &placed[..i] {
                assert_eq!(a.rect.overlap(&b.rect), 0, "label {i} on another");
            }
        }
        // The first goes right of its marker, the second left of it.
        assert_eq!((placed[0].rect.x0, placed[0].leader), (209, false));
        assert_eq!((placed[1].rect.x1, placed[1].leader), (191, false));
    }

    #[test]
    fn draws_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for (x, name) in [(Size::Params, "params.png"), (Size::Macs, "macs.png")] {
            let path = dir.path().join(name);
            accuracy_vs_size(&points(), x, "test accuracy", &path).unwrap();
            assert_png(&path, SIZE.0, SIZE.1);
        }
        let one = dir.path().join("one.png");
        accuracy_vs_size(&points()[..1], Size::Params, "one", &one).unwrap();
        assert_png(&one, SIZE.0, SIZE.1);
    }

    #[test]
    fn bad_points_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = accuracy_vs_size(&[], Size::Params, "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let zero = [point("z", 0, 1, 80.0, None)];
        let err = accuracy_vs_size(&zero, Size::Params, "t", &path).unwrap_err();
        assert!(err.to_string().contains("z: parameters is 0"), "{err}");
        let nan = [point("n", 1, 1, f64::NAN, None)];
        let err = accuracy_vs_size(&nan, Size::Macs, "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");

        let bad = unwritable(dir.path());
        let err = accuracy_vs_size(&points(), Size::Macs, "t", &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }
}
