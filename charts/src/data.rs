//! Pictures of the dataset itself: images per class in each split, sample images of each class,
//! and each class's mean image.

use std::path::Path;

use fashion_mnist::{PIXELS, SIDE, Split};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{
    Area, ChartError, DrawResult, GREY, INK, class_name, coord, font, px, render, text_size,
};

/// Matplotlib's "tab10" palette: the colour of split `i` in [`class_distribution`] and of class
/// `i` in [`crate::pca_scatter`].
pub(crate) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Size of the titles.
const TITLE_FONT: f64 = 26.0;
/// Size of the subtitles.
const SUBTITLE_FONT: f64 = 15.0;
/// Size of class names, legend entries and tick labels.
const LABEL_FONT: f64 = 15.0;
/// Outer margin.
const MARGIN: u32 = 24;

/// Draws `title` and `subtitle` at the top left of `area`.
pub(crate) fn draw_headings(area: &Area<'_>, title: &str, subtitle: &str) -> DrawResult {
    area.draw(&Text::new(
        title.to_string(),
        (coord(MARGIN), 14),
        font(TITLE_FONT).color(&INK),
    ))?;
    area.draw(&Text::new(
        subtitle.to_string(),
        (coord(MARGIN), 50),
        font(SUBTITLE_FONT).color(&GREY),
    ))
}

/// Width the headings need, margins included.
pub(crate) fn headings_width(title: &str, subtitle: &str) -> u32 {
    text_size(title, TITLE_FONT)
        .0
        .max(text_size(subtitle, SUBTITLE_FONT).0)
        + 2 * MARGIN
}

/// Thousands separated by commas, as the pictures write counts: `48000` as `48,000`.
///
/// ```
/// assert_eq!(model_charts::thousands(1_234_567), "1,234,567");
/// ```
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// The images of each class in one split, for [`class_distribution`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCounts {
    /// The split's name in the legend (`train`, `80/20 validation`).
    pub name: String,
    /// Images of each class, by class.
    pub counts: Vec<u64>,
}

/// Picture size of [`class_distribution`].
const DISTRIBUTION: (u32, u32) = (1400, 720);
/// Side of a legend swatch.
const SWATCH: i32 = 14;
/// Space between legend entries.
const ENTRY_GAP: i32 = 34;
/// Height of one legend row.
const LEGEND_ROW: i32 = 26;
/// Top of the legend.
const LEGEND_TOP: i32 = 88;

/// A legend entry of [`class_distribution`]: the split's name, its size, and the count of each
/// class when they are all equal.
fn legend_entry(split: &SplitCounts) -> String {
    let total: u64 = split.counts.iter().sum();
    let first = split.counts.first().copied().unwrap_or(0);
    if split.counts.iter().all(|&c| c == first) {
        format!(
            "{}: {} ({} per class)",
            split.name,
            thousands(total),
            thousands(first)
        )
    } else {
        format!("{}: {}", split.name, thousands(total))
    }
}

/// Places legend entries of the given widths in rows within `width` pixels (from x = 0):
/// the left edge and the row of each.
fn legend_rows(widths: &[u32], width: u32) -> Vec<(i32, i32)> {
    let mut placed = Vec::with_capacity(widths.len());
    let (mut x, mut row) = (0, 0);
    for &w in widths {
        let need = SWATCH + 8 + coord(w);
        if x > 0 && x + need > coord(width) {
            x = 0;
            row += 1;
        }
        placed.push((x, row));
        x += need + ENTRY_GAP;
    }
    placed
}

/// Draws the images of each class in each of `splits` to `path` (PNG, 1400 x 720, wider if the
/// headings need it): one group of
/// bars per class (named under it), one bar per split in the order given, coloured by split; the
/// legend above the plot names each split with its size (and the count of each class when
/// every class has the same).
///
/// # Errors
///
/// [`ChartError::Empty`] without splits or classes, [`ChartError::BadInput`] if the splits do
/// not all count the same number of classes, there are more splits than colours (10), or every
/// count is 0; [`ChartError::Io`] if the file cannot be written.
pub fn class_distribution(
    splits: &[SplitCounts],
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), ChartError> {
    let classes = splits.first().map_or(0, |s| s.counts.len());
    if classes == 0 {
        return Err(ChartError::empty(path, "no splits or no classes"));
    }
    if let Some(s) = splits.iter().find(|s| s.counts.len() != classes) {
        return Err(ChartError::bad_input(
            path,
            format!(
                "split `{}` counts {} classes, the first {classes}",
                s.name,
                s.counts.len()
            ),
        ));
    }
    if splits.len() > PALETTE.len() {
        return Err(ChartError::bad_input(
            path,
            format!("{} splits for {} colours", splits.len(), PALETTE.len()),
        ));
    }
    let max = splits
        .iter()
        .flat_map(|s| &s.counts)
        .copied()
        .max()
        .unwrap_or(0);
    if max == 0 {
        return Err(ChartError::bad_input(path, "every count is 0"));
    }
    let entries: Vec<String> = splits.iter().map(legend_entry).collect();
    let widths: Vec<u32> = entries.iter().map(|e| text_size(e, LABEL_FONT).0).collect();
    let places = legend_rows(&widths, DISTRIBUTION.0 - 2 * MARGIN);
    let rows = places.last().map_or(0, |p| p.1) + 1;
    let band = u32::try_from(LEGEND_TOP + rows * LEGEND_ROW + 6).unwrap_or(0);
    let size = (
        DISTRIBUTION.0.max(headings_width(title, subtitle)),
        DISTRIBUTION.1,
    );
    let groups = classes as f64;
    let y_max = max as f64 * 1.08;
    let bar = 0.8 / splits.len() as f64;

    render(path, size, |root| {
        draw_headings(root, title, subtitle)?;
        let left = Pos::new(HPos::Left, VPos::Center);
        for ((entry, &(x, row)), colour) in entries.iter().zip(&places).zip(PALETTE) {
            let (x, y) = (coord(MARGIN) + x, LEGEND_TOP + row * LEGEND_ROW);
            root.draw(&Rectangle::new(
                [(x, y - SWATCH / 2), (x + SWATCH, y + SWATCH / 2)],
                colour.filled(),
            ))?;
            root.draw(&Text::new(
                entry.clone(),
                (x + SWATCH + 8, y),
                font(LABEL_FONT).color(&INK).pos(left),
            ))?;
        }
        let (_, body) = root.split_vertically(band);
        let mut chart = ChartBuilder::on(&body)
            .margin_left(16)
            .margin_right(30)
            .margin_top(10)
            .margin_bottom(14)
            .x_label_area_size(60)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..groups, 0.0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("class")
            .y_desc("images")
            .y_labels(8)
            // The class names are set under the groups below, not at ticks.
            .x_labels(0)
            .y_label_formatter(&|v| thousands(px(*v).max(0).unsigned_abs().into()))
            .label_style(font(LABEL_FONT).color(&INK))
            .axis_desc_style(font(17.0).color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(225, 225, 225))
            .axis_style(GREY)
            .draw()?;
        let below = Pos::new(HPos::Center, VPos::Top);
        for c in 0..classes {
            let (x, y) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
            root.draw(&Text::new(
                class_name(c),
                (x, y + 10),
                font(LABEL_FONT).color(&INK).pos(below),
            ))?;
        }
        for (s, (split, colour)) in splits.iter().zip(PALETTE).enumerate() {
            chart.draw_series(split.counts.iter().enumerate().map(|(c, &count)| {
                let x0 = c as f64 + 0.1 + s as f64 * bar;
                Rectangle::new([(x0, 0.0), (x0 + bar * 0.9, count as f64)], colour.filled())
            }))?;
        }
        Ok(())
    })
}

/// Each image pixel of [`class_samples`] becomes a `SAMPLE_SCALE` x `SAMPLE_SCALE` square.
const SAMPLE_SCALE: u32 = 3;
/// Side of a scaled sample image.
const SAMPLE: u32 = 28 * SAMPLE_SCALE;
const _: () = assert!(SIDE == 28, "Fashion-MNIST images are 28 pixels square");
/// Space between sample images.
const SAMPLE_GAP: u32 = 6;
/// Height of the title band of [`class_samples`] and [`mean_images`].
const HEADINGS: u32 = 84;

/// Draws `image` (28 x 28 grey values, row after row) with its top left corner at `(x, y)`,
/// each pixel a `scale` x `scale` square.
fn draw_image(
    area: &Area<'_>,
    image: impl Iterator<Item = u8>,
    (x, y): (i32, i32),
    scale: u32,
) -> DrawResult {
    let s = coord(scale);
    for (p, v) in image.enumerate() {
        let (col, row) = (coord_of(p % SIDE), coord_of(p / SIDE));
        let (x, y) = (x + col * s, y + row * s);
        area.draw(&Rectangle::new(
            [(x, y), (x + s, y + s)],
            RGBColor(v, v, v).filled(),
        ))?;
    }
    Ok(())
}

/// An index as a coordinate.
fn coord_of(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// The first `per_class` images of each class of `split`, in split order: `picked[c]` holds
/// class `c`'s indices (fewer if the class has fewer images).
fn first_of_each_class(split: &Split, classes: usize, per_class: usize) -> Vec<Vec<usize>> {
    let mut picked = vec![Vec::with_capacity(per_class); classes];
    for (i, &label) in split.labels.iter().enumerate() {
        if let Some(row) = picked.get_mut(usize::from(label)) {
            if row.len() < per_class {
                row.push(i);
            }
        }
    }
    picked
}

/// Draws the first `per_class` images of each class of `split` to `path` (PNG): one row per
/// class of [`fashion_mnist::CLASS_NAMES`], its name on the left, the images scaled up three
/// times, in split order.
///
/// # Errors
///
/// [`ChartError::Empty`] if `per_class` is 0 or the split has no image of a class,
/// [`ChartError::BadInput`] if the split holds fewer pixels than its labels need,
/// [`ChartError::Io`] if the file cannot be written.
pub fn class_samples(
    split: &Split,
    per_class: usize,
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if per_class == 0 {
        return Err(ChartError::empty(path, "no images per class asked for"));
    }
    if split.images.len() < split.len() * PIXELS {
        return Err(ChartError::bad_input(
            path,
            format!(
                "the split holds {} pixels for {} labels",
                split.images.len(),
                split.len()
            ),
        ));
    }
    let classes = fashion_mnist::NUM_CLASSES;
    let picked = first_of_each_class(split, classes, per_class);
    if let Some(c) = picked.iter().position(Vec::is_empty) {
        return Err(ChartError::bad_input(
            path,
            format!("no image of class {c} ({})", class_name(c)),
        ));
    }
    let label_w = (0..classes)
        .map(|c| text_size(&class_name(c), LABEL_FONT).0)
        .max()
        .unwrap_or(0);
    let columns = picked.iter().map(Vec::len).max().unwrap_or(0);
    let columns = u32::try_from(columns).unwrap_or(u32::MAX);
    let rows = u32::try_from(classes).unwrap_or(u32::MAX);
    let grid_x = MARGIN + label_w + 14;
    let step = SAMPLE + SAMPLE_GAP;
    let size = (
        (grid_x + columns * step - SAMPLE_GAP + MARGIN).max(headings_width(title, subtitle)),
        HEADINGS + rows * step - SAMPLE_GAP + MARGIN,
    );

    render(path, size, |root| {
        draw_headings(root, title, subtitle)?;
        let right = Pos::new(HPos::Right, VPos::Center);
        for (c, row) in picked.iter().enumerate() {
            let y = coord(HEADINGS) + coord_of(c) * coord(step);
            root.draw(&Text::new(
                class_name(c),
                (coord(MARGIN + label_w), y + coord(SAMPLE) / 2),
                font(LABEL_FONT).color(&INK).pos(right),
            ))?;
            for (k, &i) in row.iter().enumerate() {
                let x = coord(grid_x) + coord_of(k) * coord(step);
                draw_image(root, split.image(i).iter().copied(), (x, y), SAMPLE_SCALE)?;
            }
        }
        Ok(())
    })
}

/// Each pixel of [`mean_images`] becomes a `MEAN_SCALE` x `MEAN_SCALE` square.
const MEAN_SCALE: u32 = 4;
/// Side of a scaled mean image.
const MEAN: u32 = 28 * MEAN_SCALE;
/// Mean images per row.
const MEAN_COLUMNS: usize = 5;
/// Height kept under each mean image for its name.
const MEAN_CAPTION: u32 = 32;

/// Draws the mean image of each class to `path` (PNG): `means[c]` is class `c`'s mean, 784
/// values from 0 (black) to 255 (white) row after row, drawn four times enlarged, five to a
/// row, each named under it.
///
/// # Errors
///
/// [`ChartError::Empty`] without images, [`ChartError::BadInput`] if an image does not have
/// 784 values or a value is not a finite number in `0..=255`; [`ChartError::Io`] if the file
/// cannot be written.
pub fn mean_images(
    means: &[Vec<f64>],
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if means.is_empty() {
        return Err(ChartError::empty(path, "no mean images"));
    }
    for (c, image) in means.iter().enumerate() {
        if image.len() != PIXELS {
            return Err(ChartError::bad_input(
                path,
                format!("class {c}: {} values, not {PIXELS}", image.len()),
            ));
        }
        if let Some(v) = image
            .iter()
            .find(|v| !(v.is_finite() && (0.0..=255.0).contains(*v)))
        {
            return Err(ChartError::bad_input(
                path,
                format!("class {c}: value {v} is not in 0..=255"),
            ));
        }
    }
    let cell_w = (0..means.len())
        .map(|c| text_size(&class_name(c), LABEL_FONT).0)
        .max()
        .unwrap_or(0)
        .max(MEAN)
        + 30;
    let cell_h = MEAN + MEAN_CAPTION;
    let columns = means.len().min(MEAN_COLUMNS);
    let rows = means.len().div_ceil(MEAN_COLUMNS);
    let (columns_u, rows_u) = (
        u32::try_from(columns).unwrap_or(u32::MAX),
        u32::try_from(rows).unwrap_or(u32::MAX),
    );
    let size = (
        (2 * MARGIN + columns_u * cell_w).max(headings_width(title, subtitle)),
        HEADINGS + rows_u * cell_h + MARGIN,
    );

    render(path, size, |root| {
        draw_headings(root, title, subtitle)?;
        let below = Pos::new(HPos::Center, VPos::Top);
        for (c, image) in means.iter().enumerate() {
            let left = coord(MARGIN) + coord_of(c % MEAN_COLUMNS) * coord(cell_w);
            let top = coord(HEADINGS) + coord_of(c / MEAN_COLUMNS) * coord(cell_h);
            let centre = left + coord(cell_w) / 2;
            let grey = image.iter().map(|&v| {
                // Checked above: v is in 0..=255.
                u8::try_from(px(v)).unwrap_or(u8::MAX)
            });
            draw_image(root, grey, (centre - coord(MEAN) / 2, top), MEAN_SCALE)?;
            root.draw(&Text::new(
                class_name(c),
                (centre, top + coord(MEAN) + 7),
                font(LABEL_FONT).color(&INK).pos(below),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, png_dimensions, unwritable};
    use fashion_mnist::NUM_CLASSES;

    /// `per_class` images of each class, class `c`'s pixels all `25 c`, labels cycling.
    fn split(per_class: usize) -> Split {
        let labels: Vec<u8> = (0..per_class * NUM_CLASSES)
            .map(|i| u8::try_from(i % NUM_CLASSES).unwrap())
            .collect();
        Split {
            images: labels.iter().flat_map(|&l| [l * 25; PIXELS]).collect(),
            labels,
        }
    }

    fn counts() -> Vec<SplitCounts> {
        vec![
            SplitCounts {
                name: "train".into(),
                counts: vec![6000; 10],
            },
            SplitCounts {
                name: "uneven".into(),
                counts: (0..10).map(|c| 100 * c).collect(),
            },
        ]
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(60_000), "60,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn legend_entries_give_the_size_and_the_even_share() {
        let c = counts();
        assert_eq!(legend_entry(&c[0]), "train: 60,000 (6,000 per class)");
        assert_eq!(legend_entry(&c[1]), "uneven: 4,500");
    }

    #[test]
    fn legend_entries_wrap_into_rows() {
        // Each entry needs 14 + 8 + 100 = 122 pixels and 34 between entries.
        assert_eq!(
            legend_rows(&[100, 100, 100], 300),
            vec![(0, 0), (156, 0), (0, 1)]
        );
        assert_eq!(legend_rows(&[500], 300), vec![(0, 0)]);
    }

    #[test]
    fn first_images_of_each_class_in_split_order() {
        let s = split(3);
        let picked = first_of_each_class(&s, NUM_CLASSES, 2);
        assert_eq!(picked[0], vec![0, 10]);
        assert_eq!(picked[9], vec![9, 19]);
        let all = first_of_each_class(&s, NUM_CLASSES, 5);
        assert_eq!(all[4], vec![4, 14, 24]);
    }

    #[test]
    fn draws_the_three_pictures() {
        let dir = tempfile::tempdir().unwrap();
        let bars = dir.path().join("bars.png");
        class_distribution(&counts(), "Images per class", "two splits", &bars).unwrap();
        assert_png(&bars, DISTRIBUTION.0, DISTRIBUTION.1);

        let samples = dir.path().join("samples.png");
        class_samples(&split(4), 3, "Samples", "three of each", &samples).unwrap();
        let (w, h) = png_dimensions(&samples);
        assert_eq!(
            h,
            HEADINGS + 10 * (SAMPLE + SAMPLE_GAP) - SAMPLE_GAP + MARGIN
        );
        assert!(w > 3 * SAMPLE, "{w}");
        assert_png(&samples, w, h);

        let means = dir.path().join("means.png");
        let images: Vec<Vec<f64>> = (0..10).map(|c| vec![25.5 * f64::from(c); PIXELS]).collect();
        mean_images(&images, "Means", "ten classes", &means).unwrap();
        let (w, h) = png_dimensions(&means);
        assert_eq!(h, HEADINGS + 2 * (MEAN + MEAN_CAPTION) + MARGIN);
        assert_png(&means, w, h);
    }

    #[test]
    fn bad_input_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = class_distribution(&[], "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let mut ragged = counts();
        ragged[1].counts.pop();
        let err = class_distribution(&ragged, "t", "s", &path).unwrap_err();
        assert!(
            err.to_string().contains("`uneven` counts 9 classes"),
            "{err}"
        );
        let mut zeros = counts();
        zeros.truncate(1);
        zeros[0].counts = vec![0; 10];
        let err = class_distribution(&zeros, "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");

        let err = class_samples(&split(2), 0, "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = class_samples(&split(2).head(9), 1, "t", "s", &path).unwrap_err();
        assert!(
            err.to_string().contains("no image of class 9 (Ankle boot)"),
            "{err}"
        );

        let err = mean_images(&[vec![0.0; 3]], "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("3 values"), "{err}");
        let err = mean_images(&[vec![256.0; PIXELS]], "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("256"), "{err}");
        let err = mean_images(&[vec![f64::NAN; PIXELS]], "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");
        assert!(!path.exists());

        let bad = unwritable(dir.path());
        let err = class_distribution(&counts(), "t", "s", &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }
}
