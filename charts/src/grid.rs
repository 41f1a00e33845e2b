//! A grid of test images with their true and predicted classes.

use std::path::Path;

use fashion_mnist::{PIXELS, SIDE, Split};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{ChartError, GREY, INK, RED, coord, font, render, text_size};

/// Each image pixel becomes a `SCALE` x `SCALE` square.
const SCALE: u32 = 3;
/// Side of a scaled image.
const IMAGE: u32 = 28 * SCALE;
const _: () = assert!(SIDE == 28, "Fashion-MNIST images are 28 pixels square");
/// Images per row (fewer if there are fewer images).
const COLUMNS: usize = 8;
/// Size of the captions.
const CAPTION_FONT: f64 = 14.0;
/// Height kept under each image for its caption.
const CAPTION: u32 = 26;
/// Space around each cell's content.
const PAD: u32 = 10;
/// Outer margin.
const MARGIN: u32 = 20;
/// Height of the title band.
const TITLE: u32 = 80;
/// Width of the frame around a misclassified image.
const FRAME: u32 = 3;

/// Width of one cell: the widest caption any two of `names` can make, or the image.
fn cell_width(names: &[&str]) -> u32 {
    let widest = names
        .iter()
        .map(|n| text_size(n, CAPTION_FONT).0)
        .max()
        .unwrap_or(0);
    let caption = 2 * widest + text_size(" / ", CAPTION_FONT).0;
    caption.max(IMAGE + 2 * FRAME) + 2 * PAD
}

/// Height of one cell.
const CELL_H: u32 = IMAGE + 2 * FRAME + CAPTION + 2 * PAD;

/// Columns and rows of a grid of `count` images.
fn shape(count: usize) -> (u32, u32) {
    let columns = count.clamp(1, COLUMNS);
    let rows = count.div_ceil(columns).max(1);
    (
        u32::try_from(columns).unwrap_or(u32::MAX),
        u32::try_from(rows).unwrap_or(u32::MAX),
    )
}

/// Size of the title.
const TITLE_FONT: f64 = 24.0;
/// Size of the subtitle.
const SUBTITLE_FONT: f64 = 15.0;

/// The title and subtitle of a grid of `count` images with `mistakes` among them.
fn headings(count: usize, mistakes: usize) -> [(String, f64); 2] {
    let (title, subtitle) = match (count, mistakes) {
        (1, 0) => (
            "The first image".to_string(),
            "classified correctly".to_string(),
        ),
        (1, _) => (
            "The first image".to_string(),
            "misclassified: framed and captioned in red".to_string(),
        ),
        (_, 0) => (
            format!("The first {count} images"),
            format!("all {count} classified correctly"),
        ),
        _ => (
            format!("The first {count} images"),
            format!("{mistakes} of {count} misclassified, framed and captioned in red"),
        ),
    };
    [
        (format!("{title}: true / predicted class"), TITLE_FONT),
        (subtitle, SUBTITLE_FONT),
    ]
}

/// Size of [`prediction_grid`]'s picture for `count` images captioned with `names`, under
/// `headings` (the grid widens if they are wider than its cells).
fn grid_size(names: &[&str], count: usize, headings: &[(String, f64)]) -> (u32, u32) {
    let (columns, rows) = shape(count);
    let heading = headings
        .iter()
        .map(|(text, size)| text_size(text, *size).0)
        .max()
        .unwrap_or(0);
    (
        2 * MARGIN + (columns * cell_width(names)).max(heading),
        TITLE + rows * CELL_H + MARGIN,
    )
}

/// Draws the first `count` images of `split` to `path` (PNG), eight to a row, each scaled up
/// three times and captioned "true / predicted" with the class names `labels` (indexed by
/// class, e.g. [`fashion_mnist::CLASS_NAMES`]); `predictions[i]` is the predicted class of
/// image `i`. Misclassified images get a red frame and a red caption; the title counts them.
/// To show other images, pass a [`Split::select`]ion and its predictions.
///
/// `count` is capped at the number of predictions.
///
/// # Errors
///
/// [`ChartError::Empty`] if there is nothing to show (`count` or `predictions` is 0),
/// [`ChartError::BadInput`] if there are more predictions than images, the split holds fewer
/// pixels than its labels need, or a label or prediction has no name in `labels`;
/// [`ChartError::Io`] if the file cannot be written.
pub fn prediction_grid(
    split: &Split,
    labels: &[&str],
    predictions: &[u8],
    count: usize,
    path: &Path,
) -> Result<(), ChartError> {
    let count = count.min(predictions.len());
    if count == 0 {
        return Err(ChartError::empty(path, "no images to show"));
    }
    if predictions.len() > split.len() {
        return Err(ChartError::bad_input(
            path,
            format!(
                "{} predictions for {} images",
                predictions.len(),
                split.len()
            ),
        ));
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
    let name = |class: u8, what: &str, i: usize| {
        labels.get(usize::from(class)).copied().ok_or_else(|| {
            ChartError::bad_input(
                path,
                format!(
                    "image {i}: {what} class {class} has no name ({} names)",
                    labels.len()
                ),
            )
        })
    };
    let mut captions = Vec::with_capacity(count);
    for (i, (&truth, &predicted)) in split.labels.iter().zip(predictions).take(count).enumerate() {
        captions.push((
            format!(
                "{} / {}",
                name(truth, "true", i)?,
                name(predicted, "predicted", i)?
            ),
            truth != predicted,
        ));
    }
    let mistakes = captions.iter().filter(|(_, wrong)| *wrong).count();
    let cell_w = cell_width(labels);
    let columns = count.clamp(1, COLUMNS);
    let [(title, title_size), (subtitle, subtitle_size)] = headings(count, mistakes);
    let size = grid_size(labels, count, &headings(count, mistakes));

    render(path, size, |root| {
        root.draw(&Text::new(
            title,
            (coord(MARGIN), 14),
            font(title_size).color(&INK),
        ))?;
        root.draw(&Text::new(
            subtitle,
            (coord(MARGIN), 48),
            font(subtitle_size).color(&GREY),
        ))?;
        let caption_pos = Pos::new(HPos::Center, VPos::Top);
        for (i, (caption, wrong)) in captions.into_iter().enumerate() {
            let i32_of = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
            let (column, row) = (i32_of(i % columns), i32_of(i / columns));
            let left = coord(MARGIN) + column * coord(cell_w);
            let top = coord(TITLE) + row * coord(CELL_H);
            let centre = left + coord(cell_w) / 2;
            let x0 = centre - coord(IMAGE) / 2;
            let y0 = top + coord(PAD + FRAME);
            if wrong {
                let f = coord(FRAME);
                // Filled rectangles cover [left, right) x [top, bottom).
                root.draw(&Rectangle::new(
                    [
                        (x0 - f, y0 - f),
                        (x0 + coord(IMAGE) + f, y0 + coord(IMAGE) + f),
                    ],
                    RED.filled(),
                ))?;
            }
            for (p, &value) in split.image(i).iter().enumerate() {
                let (px, py) = (i32_of(p % SIDE), i32_of(p / SIDE));
                let s = coord(SCALE);
                let (x, y) = (x0 + px * s, y0 + py * s);
                root.draw(&Rectangle::new(
                    [(x, y), (x + s, y + s)],
                    RGBColor(value, value, value).filled(),
                ))?;
            }
            let colour = if wrong { RED } else { INK };
            root.draw(&Text::new(
                caption,
                (centre, y0 + coord(IMAGE + FRAME) + 7),
                font(CAPTION_FONT).color(&colour).pos(caption_pos),
            ))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, unwritable};
    use fashion_mnist::CLASS_NAMES;

    /// `n` synthetic images: a diagonal gradient whose brightness varies with the index, labels
    /// cycling through the ten classes.
    fn split(n: usize) -> Split {
        let mut images = Vec::with_capacity(n * PIXELS);
        for i in 0..n {
            for p in 0..PIXELS {
                let (x, y) = (p % SIDE, p / SIDE);
                images.push(u8::try_from((x + y) * 4 + i * 7 % 40).unwrap_or(255));
            }
        }
        Split {
            images,
            labels: (0..n).map(|i| u8::try_from(i % 10).unwrap()).collect(),
        }
    }

    #[test]
    fn the_grid_wraps_at_eight_columns() {
        assert_eq!(shape(1), (1, 1));
        assert_eq!(shape(8), (8, 1));
        assert_eq!(shape(9), (8, 2));
        assert_eq!(shape(32), (8, 4));
    }

    #[test]
    fn draws_captioned_images_with_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grid.png");
        let s = split(20);
        // Every third image is wrong: predicted as the next class.
        let predictions: Vec<u8> = s
            .labels
            .iter()
            .enumerate()
            .map(|(i, &l)| if i % 3 == 0 { (l + 1) % 10 } else { l })
            .collect();
        prediction_grid(&s, &CLASS_NAMES, &predictions, 12, &path).unwrap();
        let (w, h) = grid_size(&CLASS_NAMES, 12, &headings(12, 4));
        assert_eq!(w, 2 * MARGIN + 8 * cell_width(&CLASS_NAMES));
        assert_eq!(h, TITLE + 2 * CELL_H + MARGIN);
        assert_png(&path, w, h);

        // More images asked for than predicted: as many as there are predictions. One image
        // is narrower than the title, which sets the width.
        let one = dir.path().join("one.png");
        prediction_grid(&s, &CLASS_NAMES, &predictions[..1], 50, &one).unwrap();
        let (w, h) = grid_size(&CLASS_NAMES, 1, &headings(1, 1));
        assert!(w > 2 * MARGIN + cell_width(&CLASS_NAMES));
        assert_png(&one, w, h);
    }

    #[test]
    fn bad_input_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let s = split(4);
        let err = prediction_grid(&s, &CLASS_NAMES, &[], 4, &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = prediction_grid(&s, &CLASS_NAMES, &[0; 5], 4, &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");
        let err = prediction_grid(&s, &CLASS_NAMES[..2], &[0, 1, 2, 3], 4, &path).unwrap_err();
        assert!(
            err.to_string().contains("true class 2 has no name"),
            "{err}"
        );
        assert!(!path.exists());

        let bad = unwritable(dir.path());
        let err = prediction_grid(&s, &CLASS_NAMES, &[0, 1, 2, 3], 4, &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }
}
