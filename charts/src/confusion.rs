//! Confusion matrices as heat maps, and the class pairs a model confuses most.

use std::path::Path;

use model_report::Metrics;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{Area, ChartError, DrawResult, GREY, INK, class_name, coord, font, render, text_size};

/// Side of one cell of the heat map, in pixels.
const CELL: u32 = 60;
/// Size of the class names on both axes.
const LABEL_FONT: f64 = 16.0;
/// Size of the counts in the cells (smaller when a count does not fit).
const COUNT_FONT: f64 = 16.0;
/// Size of the axis titles ("true", "predicted").
const AXIS_FONT: f64 = 18.0;
/// Outer margin.
const MARGIN: u32 = 20;
/// Height of a panel's title band (title and subtitle).
const PANEL_TITLE: u32 = 70;
/// Width (left) or height (bottom) kept for an axis title.
const AXIS_TITLE: u32 = 34;
/// Gap between the class names and the grid.
const GAP: u32 = 8;
/// Height of the band above the two panels of [`confusion_pair`].
const PAIR_TITLE: u32 = 56;

/// The light end of the colour scale (a zero share).
const LIGHT: (f64, f64, f64) = (247.0, 251.0, 255.0);
/// Intermediate stops of the colour scale (matplotlib's "Blues").
const STOPS: [(f64, f64, f64); 5] = [
    LIGHT,
    (198.0, 219.0, 239.0),
    (107.0, 174.0, 214.0),
    (33.0, 113.0, 181.0),
    (8.0, 48.0, 107.0),
];

/// Size of a panel's title.
const TITLE_FONT: f64 = 22.0;
/// Size of a panel's subtitle.
const SUBTITLE_FONT: f64 = 14.0;

/// A panel's title and subtitle, with their sizes.
fn headings(metrics: &Metrics, title: &str) -> [(String, f64); 2] {
    [
        (title.to_string(), TITLE_FONT),
        (
            format!(
                "accuracy {:.2}% of {} images; shade: share of the true class (square-root scale)",
                100.0 * metrics.accuracy,
                metrics.count
            ),
            SUBTITLE_FONT,
        ),
    ]
}

/// Where the parts of one heat-map panel go, for `classes` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Classes (rows and columns).
    classes: u32,
    /// Width of the widest class name (the row labels; the height of the rotated column labels).
    label: u32,
    /// Width of the widest heading.
    heading: u32,
}

impl Layout {
    fn new<'t>(classes: usize, headings: impl IntoIterator<Item = &'t (String, f64)>) -> Self {
        let label = (0..classes)
            .map(|c| text_size(&class_name(c), LABEL_FONT).0)
            .max()
            .unwrap_or(0);
        let heading = headings
            .into_iter()
            .map(|(text, size)| text_size(text, *size).0)
            .max()
            .unwrap_or(0);
        Self {
            classes: u32::try_from(classes).unwrap_or(u32::MAX),
            label,
            heading,
        }
    }

    /// Left edge of the grid.
    fn grid_x(&self) -> u32 {
        MARGIN + AXIS_TITLE + self.label + GAP
    }

    /// Top edge of the grid.
    fn grid_y(&self) -> u32 {
        PANEL_TITLE
    }

    /// Side of the grid.
    fn grid(&self) -> u32 {
        self.classes * CELL
    }

    /// Size of the whole panel: the grid and its labels, or the headings if they are wider.
    fn size(&self) -> (u32, u32) {
        (
            (self.grid_x() + self.grid() + 2 * MARGIN).max(self.heading + 2 * MARGIN),
            self.grid_y() + self.grid() + GAP + self.label + GAP + AXIS_TITLE + MARGIN,
        )
    }
}

/// Size in pixels of [`confusion_pair`]'s picture, two panels of `layout`.
fn pair_size(layout: &Layout) -> (u32, u32) {
    let (w, h) = layout.size();
    (2 * w, h + PAIR_TITLE)
}

/// Checks that `metrics.confusion` is a non-empty square matrix.
fn check(metrics: &Metrics, path: &Path) -> Result<usize, ChartError> {
    let n = metrics.confusion.len();
    if n == 0 {
        return Err(ChartError::empty(path, "an empty confusion matrix"));
    }
    if let Some((row, r)) = metrics
        .confusion
        .iter()
        .enumerate()
        .find(|(_, r)| r.len() != n)
    {
        return Err(ChartError::bad_input(
            path,
            format!("confusion matrix row {row} has {} cells, not {n}", r.len()),
        ));
    }
    Ok(n)
}

/// Draws `metrics.confusion` (`[true][predicted]` counts) as a heat map to `path` (PNG): each
/// cell shows its count and is shaded by its share of the true class's images (on a
/// square-root scale, so that small confusions show), with white counts on dark cells. Class
/// names (Fashion-MNIST's; `class <c>` beyond ten) label the rows ("true") and, rotated, the
/// columns ("predicted"). `title` heads the picture, above the accuracy.
///
/// For ten classes the picture is about 770 x 860 pixels.
///
/// # Errors
///
/// [`ChartError::Empty`] for an empty matrix, [`ChartError::BadInput`] for one that is not
/// square, [`ChartError::Io`] if the file cannot be written.
pub fn confusion_matrix(metrics: &Metrics, title: &str, path: &Path) -> Result<(), ChartError> {
    let n = check(metrics, path)?;
    let headings = headings(metrics, title);
    let layout = Layout::new(n, &headings);
    render(path, layout.size(), |root| {
        draw_matrix(root, &layout, metrics, &headings)
    })
}

/// Draws the float and int8 confusion matrices of model `id` side by side to `path` (PNG), each
/// as [`confusion_matrix`] draws it, under one title.
///
/// # Errors
///
/// As [`confusion_matrix`]; also [`ChartError::BadInput`] if the two matrices differ in size.
pub fn confusion_pair(
    float: &Metrics,
    int8: &Metrics,
    id: &str,
    path: &Path,
) -> Result<(), ChartError> {
    let n = check(float, path)?;
    if check(int8, path)? != n {
        return Err(ChartError::bad_input(
            path,
            format!(
                "the float matrix has {n} classes, the int8 one {}",
                int8.confusion.len()
            ),
        ));
    }
    let float_headings = headings(float, "float");
    let int8_headings = headings(int8, "int8");
    let layout = Layout::new(n, float_headings.iter().chain(&int8_headings));
    render(path, pair_size(&layout), |root| {
        let (top, body) = root.split_vertically(PAIR_TITLE);
        top.draw(&Text::new(
            format!("{id}: confusion on the test set, float and int8"),
            (coord(MARGIN), 16),
            font(26.0).color(&INK),
        ))?;
        let (left, right) = body.split_horizontally(layout.size().0);
        draw_matrix(&left, &layout, float, &float_headings)?;
        draw_matrix(&right, &layout, int8, &int8_headings)
    })
}

/// The colour of a cell holding `share` (0 to 1) of its row.
fn shade(share: f64) -> RGBColor {
    let segments = STOPS.len() - 1;
    let t = share.clamp(0.0, 1.0).sqrt() * segments as f64;
    // The segment t falls in: how many inner stops it has passed.
    let i = (1..segments).filter(|&i| t >= i as f64).count();
    let f = t - i as f64;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    let mix = |x: f64, y: f64| channel(x + (y - x) * f);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A colour channel from a float in 0..=255.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to 0..=255 first
fn channel(v: f64) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Whether text on `background` should be white (dark cells) rather than dark.
fn needs_light_text(background: RGBColor) -> bool {
    // Relative luminance with sRGB's weights, on the 0..255 values.
    let RGBColor(r, g, b) = background;
    0.2126 * f64::from(r) + 0.7152 * f64::from(g) + 0.0722 * f64::from(b) < 140.0
}

/// Draws one heat-map panel in the top-left corner of `area`.
fn draw_matrix(
    area: &Area<'_>,
    layout: &Layout,
    metrics: &Metrics,
    [(title, title_size), (subtitle, subtitle_size)]: &[(String, f64); 2],
) -> DrawResult {
    let n = metrics.confusion.len();
    let (gx, gy) = (coord(layout.grid_x()), coord(layout.grid_y()));
    let cell = coord(CELL);
    let grid = coord(layout.grid());

    area.draw(&Text::new(
        title.clone(),
        (coord(MARGIN), 12),
        font(*title_size).color(&INK),
    ))?;
    area.draw(&Text::new(
        subtitle.clone(),
        (coord(MARGIN), 42),
        font(*subtitle_size).color(&GREY),
    ))?;

    let centre = Pos::new(HPos::Center, VPos::Center);
    for (t, row) in metrics.confusion.iter().enumerate() {
        let total: u32 = row.iter().sum();
        let y = gy + coord_of(t) * cell;
        for (p, &count) in row.iter().enumerate() {
            let x = gx + coord_of(p) * cell;
            let share = if total == 0 {
                0.0
            } else {
                f64::from(count) / f64::from(total)
            };
            let background = shade(share);
            // Filled rectangles cover [left, right): two white pixels part the cells.
            area.draw(&Rectangle::new(
                [(x + 1, y + 1), (x + cell - 1, y + cell - 1)],
                background.filled(),
            ))?;
            let text = count.to_string();
            let colour = if count == 0 {
                RGBColor(175, 175, 175)
            } else if needs_light_text(background) {
                WHITE
            } else {
                INK
            };
            let size = fitting_size(&text, COUNT_FONT, CELL - 8);
            area.draw(&Text::new(
                text,
                (x + cell / 2, y + cell / 2),
                font(size).color(&colour).pos(centre),
            ))?;
        }
    }
    // A frame around the grid.
    area.draw(&Rectangle::new(
        [(gx - 1, gy - 1), (gx + grid, gy + grid)],
        GREY.stroke_width(1),
    ))?;

    // Row labels, right-aligned against the grid; column labels rotated to read upwards,
    // ending just below the grid.
    let right = Pos::new(HPos::Right, VPos::Center);
    let label_x = gx - coord(GAP);
    let label_y = gy + grid + coord(GAP);
    for c in 0..n {
        let name = class_name(c);
        let mid = coord_of(c) * cell + cell / 2;
        area.draw(&Text::new(
            name.clone(),
            (label_x, gy + mid),
            font(LABEL_FONT).color(&INK).pos(right),
        ))?;
        area.draw(&Text::new(
            name,
            (gx + mid, label_y),
            font(LABEL_FONT)
                .color(&INK)
                .pos(right)
                .transform(FontTransform::Rotate270),
        ))?;
    }

    // Axis titles: "true" along the rows, "predicted" under the column labels.
    area.draw(&Text::new(
        "true class",
        (coord(MARGIN + AXIS_TITLE / 2), gy + grid / 2),
        font(AXIS_FONT)
            .color(&INK)
            .pos(centre)
            .transform(FontTransform::Rotate270),
    ))?;
    area.draw(&Text::new(
        "predicted class",
        (
            gx + grid / 2,
            label_y + coord(layout.label + GAP + AXIS_TITLE / 2),
        ),
        font(AXIS_FONT).color(&INK).pos(centre),
    ))?;
    Ok(())
}

/// A class index as a coordinate.
fn coord_of(c: usize) -> i32 {
    i32::try_from(c).unwrap_or(i32::MAX)
}

/// The largest size up to `size` at which `text` fits in `width` pixels.
fn fitting_size(text: &str, size: f64, width: u32) -> f64 {
    let mut size = size;
    while size > 6.0 && text_size(text, size).0 > width {
        size -= 1.0;
    }
    size
}

/// The `top_n` largest off-diagonal cells of `metrics.confusion`, as `(true, predicted, count)`,
/// largest first (ties in row-then-column order); cells with a zero count are left out, so
/// fewer than `top_n` may come back.
///
/// ```
/// # use model_report::Metrics;
/// // true 0 predicted 1 twice, true 1 predicted 0 once
/// let m = Metrics::new(&[0, 0, 0, 1, 1], &[0, 1, 1, 0, 1], 2);
/// assert_eq!(model_charts::most_confused(&m, 5), vec![(0, 1, 2), (1, 0, 1)]);
/// ```
pub fn most_confused(metrics: &Metrics, top_n: usize) -> Vec<(usize, usize, u32)> {
    let mut pairs: Vec<(usize, usize, u32)> = metrics
        .confusion
        .iter()
        .enumerate()
        .flat_map(|(t, row)| {
            row.iter()
                .enumerate()
                .filter(move |&(p, &count)| p != t && count > 0)
                .map(move |(p, &count)| (t, p, count))
        })
        .collect();
    pairs.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    pairs.truncate(top_n);
    pairs
}

/// Width of [`most_confused_chart`]'s picture.
const BAR_WIDTH: u32 = 900;
/// Height of one bar's row.
const BAR_ROW: u32 = 38;
/// Height of the title band of the bar chart.
const BAR_TITLE: u32 = 84;
/// Width kept right of the longest bar for its count.
const BAR_VALUE: u32 = 150;

/// Size of [`most_confused_chart`]'s picture for `bars` bars.
fn bars_size(bars: usize) -> (u32, u32) {
    let bars = u32::try_from(bars).unwrap_or(u32::MAX);
    (BAR_WIDTH, BAR_TITLE + bars * BAR_ROW + MARGIN)
}

/// Draws the [`most_confused`] pairs of `metrics` as horizontal bars to `path` (PNG, 900 pixels
/// wide, 38 per bar): each bar is labelled "true → predicted" and ends in its count and its
/// share of the true class's images.
///
/// # Errors
///
/// [`ChartError::Empty`] if the matrix has no confusion at all (or `top_n` is 0),
/// [`ChartError::BadInput`] if it is not square, [`ChartError::Io`] if the file cannot be
/// written.
pub fn most_confused_chart(
    metrics: &Metrics,
    top_n: usize,
    title: &str,
    path: &Path,
) -> Result<(), ChartError> {
    check(metrics, path)?;
    let pairs = most_confused(metrics, top_n);
    if pairs.is_empty() {
        return Err(ChartError::empty(path, "no misclassified images"));
    }
    let labels: Vec<String> = pairs
        .iter()
        .map(|&(t, p, _)| format!("{} → {}", class_name(t), class_name(p)))
        .collect();
    let label_w = labels
        .iter()
        .map(|l| text_size(l, LABEL_FONT).0)
        .max()
        .unwrap_or(0);
    let max = pairs[0].2;
    let bar_x = MARGIN + label_w + GAP + 4;
    let bar_span = BAR_WIDTH.saturating_sub(bar_x + BAR_VALUE).max(10);

    render(path, bars_size(pairs.len()), |root| {
        root.draw(&Text::new(
            title.to_string(),
            (coord(MARGIN), 14),
            font(24.0).color(&INK),
        ))?;
        root.draw(&Text::new(
            format!(
                "the {} in {} images: true class → predicted class, count (share of the true \
                 class)",
                if pairs.len() == 1 {
                    "most frequent mistake".to_string()
                } else {
                    format!("{} most frequent mistakes", pairs.len())
                },
                metrics.count
            ),
            (coord(MARGIN), 48),
            font(15.0).color(&GREY),
        ))?;
        let right = Pos::new(HPos::Right, VPos::Center);
        let left = Pos::new(HPos::Left, VPos::Center);
        for (i, (&(t, _, count), label)) in pairs.iter().zip(&labels).enumerate() {
            let y = coord(BAR_TITLE) + coord_of(i) * coord(BAR_ROW);
            let mid = y + coord(BAR_ROW) / 2;
            root.draw(&Text::new(
                label.clone(),
                (coord(MARGIN + label_w), mid),
                font(LABEL_FONT).color(&INK).pos(right),
            ))?;
            let len = u64::from(bar_span) * u64::from(count) / u64::from(max.max(1));
            let end = coord(bar_x) + i32::try_from(len).unwrap_or(i32::MAX).max(2);
            root.draw(&Rectangle::new(
                [(coord(bar_x), y + 6), (end, y + coord(BAR_ROW) - 6)],
                RGBColor(33, 113, 181).filled(),
            ))?;
            let total: u32 = metrics.confusion[t].iter().sum();
            let share = 100.0 * f64::from(count) / f64::from(total.max(1));
            root.draw(&Text::new(
                format!("{count}  ({share:.1}%)"),
                (end + 8, mid),
                font(LABEL_FONT).color(&INK).pos(left),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, unwritable};

    /// A hand-made three-class matrix: rows are true classes.
    fn metrics() -> Metrics {
        let confusion = vec![vec![50, 3, 7], vec![0, 60, 0], vec![7, 12, 41]];
        Metrics {
            count: 180,
            accuracy: 151.0 / 180.0,
            macro_precision: 0.0,
            macro_recall: 0.0,
            macro_f1: 0.0,
            per_class_accuracy: vec![50.0 / 60.0, 1.0, 41.0 / 60.0],
            confusion,
        }
    }

    /// Ten classes with a strong diagonal, a few large confusions and many empty cells, like a
    /// trained model's.
    fn ten_classes() -> Metrics {
        let mut labels = Vec::new();
        let mut predictions = Vec::new();
        for t in 0..10u8 {
            for i in 0..1000u32 {
                labels.push(t);
                let wrong = match t {
                    6 => 260,
                    0 | 2 | 4 => 120,
                    _ => 25,
                };
                predictions.push(if i < wrong {
                    [6, 3, 4, 0, 2, 7, 0, 9, 6, 7][usize::from(t)]
                } else {
                    t
                });
            }
        }
        Metrics::new(&labels, &predictions, 10)
    }

    #[test]
    fn most_confused_sorts_off_diagonal_cells_and_breaks_ties_by_position() {
        let m = metrics();
        assert_eq!(
            most_confused(&m, 10),
            vec![(2, 1, 12), (0, 2, 7), (2, 0, 7), (0, 1, 3)]
        );
        assert_eq!(most_confused(&m, 2), vec![(2, 1, 12), (0, 2, 7)]);
        assert_eq!(most_confused(&m, 0), vec![]);
    }

    #[test]
    fn shades_run_from_light_to_dark_and_dark_cells_get_white_text() {
        assert_eq!(shade(0.0), RGBColor(247, 251, 255));
        assert_eq!(shade(1.0), RGBColor(8, 48, 107));
        assert!(!needs_light_text(shade(0.0)));
        assert!(needs_light_text(shade(0.9)));
        // sqrt scale: a 1/16 share is already a quarter of the way along.
        assert_eq!(shade(1.0 / 16.0), RGBColor(198, 219, 239));
    }

    #[test]
    fn every_class_name_fits_the_label_band_and_headings_widen_narrow_panels() {
        let layout = Layout::new(10, &headings(&ten_classes(), "t"));
        let widest = fashion_mnist::CLASS_NAMES
            .iter()
            .map(|n| text_size(n, LABEL_FONT).0)
            .max()
            .unwrap();
        assert_eq!(layout.label, widest);
        assert!(widest > 50 && widest < 150, "{widest}");
        // Ten classes: the grid is wider than the headings.
        assert_eq!(layout.size().0, layout.grid_x() + 10 * CELL + 2 * MARGIN);
        // Three: the subtitle is.
        let narrow = Layout::new(3, &headings(&metrics(), "t"));
        assert_eq!(narrow.size().0, narrow.heading + 2 * MARGIN);
    }

    #[test]
    fn draws_a_matrix_a_pair_and_the_bar_chart() {
        let dir = tempfile::tempdir().unwrap();
        let m = ten_classes();
        let one = dir.path().join("matrix.png");
        confusion_matrix(&m, "demo (float)", &one).unwrap();
        let (w, h) = Layout::new(10, &headings(&m, "demo (float)")).size();
        assert_png(&one, w, h);

        let pair = dir.path().join("pair.png");
        confusion_pair(&m, &m, "demo", &pair).unwrap();
        let (w, h) = Layout::new(10, &headings(&m, "float")).size();
        assert_png(&pair, 2 * w, h + PAIR_TITLE);

        let bars = dir.path().join("bars.png");
        most_confused_chart(&m, 8, "demo: most confused", &bars).unwrap();
        assert_png(&bars, BAR_WIDTH, bars_size(8).1);

        let small = dir.path().join("small.png");
        confusion_matrix(&metrics(), "three classes", &small).unwrap();
        let (w, h) = Layout::new(3, &headings(&metrics(), "three classes")).size();
        assert_png(&small, w, h);
    }

    #[test]
    fn bad_matrices_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut m = metrics();
        m.confusion[1].pop();
        let err = confusion_matrix(&m, "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");
        m.confusion.clear();
        let err = confusion_matrix(&m, "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = confusion_pair(&metrics(), &ten_classes(), "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");
        let perfect = Metrics::new(&[0, 1], &[0, 1], 2);
        let err = most_confused_chart(&perfect, 5, "t", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        assert!(!path.exists());

        let bad = unwritable(dir.path());
        for err in [
            confusion_matrix(&metrics(), "t", &bad).unwrap_err(),
            confusion_pair(&metrics(), &metrics(), "t", &bad).unwrap_err(),
            most_confused_chart(&metrics(), 3, "t", &bad).unwrap_err(),
        ] {
            assert!(matches!(err, ChartError::Io { .. }), "{err}");
        }
    }
}
