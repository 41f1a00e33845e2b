//! Pictures of a principal component analysis of the images: the images on the first two
//! components, and the share of the variance each component explains.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::data::{PALETTE, draw_headings, headings_width};
use crate::{Area, ChartError, DrawResult, GREY, INK, TRAIN, VALIDATION, class_name, font, render};

/// Picture size of [`pca_scatter`].
const SCATTER: (u32, u32) = (1200, 900);
/// Width of the legend at the right of [`pca_scatter`].
const LEGEND: u32 = 190;
/// Height of the title band.
const HEADINGS: u32 = 84;
/// Radius of a point.
const POINT: i32 = 2;
/// Opacity of a point.
const POINT_ALPHA: f64 = 0.6;
/// Size of legend entries and tick labels.
const LABEL_FONT: f64 = 15.0;
/// Size of axis titles.
const AXIS_FONT: f64 = 17.0;

/// A range covering `values` with 4% to spare on each side (one unit if they are all equal).
fn padded(values: impl Iterator<Item = f64> + Clone) -> std::ops::Range<f64> {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let pad = if hi > lo { (hi - lo) * 0.04 } else { 1.0 };
    (lo - pad)..(hi + pad)
}

/// Draws `points` (each image's coordinates on the first two components) to `path` (PNG, 1200 x
/// 900), coloured by their class in `labels`, with a legend of the class names at the right;
/// `explained` (the share of the variance of each of the two components, in `0..=1`) labels the
/// axes. Points are drawn in the order given, translucent, so pass them shuffled for no class
/// to hide the others systematically.
///
/// # Errors
///
/// [`ChartError::Empty`] without points, [`ChartError::BadInput`] if there are not as many
/// labels as points, a label has no colour (10 classes at most), or a coordinate or share is
/// not a finite number; [`ChartError::Io`] if the file cannot be written.
pub fn pca_scatter(
    points: &[(f64, f64)],
    labels: &[u8],
    explained: [f64; 2],
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if points.is_empty() {
        return Err(ChartError::empty(path, "no points"));
    }
    if labels.len() != points.len() {
        return Err(ChartError::bad_input(
            path,
            format!("{} labels for {} points", labels.len(), points.len()),
        ));
    }
    if let Some(&l) = labels.iter().find(|&&l| usize::from(l) >= PALETTE.len()) {
        return Err(ChartError::bad_input(
            path,
            format!("class {l} has no colour ({} colours)", PALETTE.len()),
        ));
    }
    if points.iter().any(|(x, y)| !x.is_finite() || !y.is_finite())
        || explained.iter().any(|e| !e.is_finite())
    {
        return Err(ChartError::bad_input(
            path,
            "a value is not a finite number",
        ));
    }
    let classes = labels.iter().copied().max().map_or(0, usize::from) + 1;
    let xs = padded(points.iter().map(|p| p.0));
    let ys = padded(points.iter().map(|p| p.1));
    let size = (SCATTER.0.max(headings_width(title, subtitle)), SCATTER.1);

    render(path, size, |root| {
        draw_headings(root, title, subtitle)?;
        let (_, body) = root.split_vertically(HEADINGS);
        let (plot, legend) = body.split_horizontally(size.0 - LEGEND);
        let mut chart = ChartBuilder::on(&plot)
            .margin_left(16)
            .margin_right(16)
            .margin_top(10)
            .margin_bottom(14)
            .x_label_area_size(58)
            .y_label_area_size(76)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "first principal component ({:.1}% of the variance)",
                100.0 * explained[0]
            ))
            .y_desc(format!(
                "second principal component ({:.1}% of the variance)",
                100.0 * explained[1]
            ))
            .x_labels(10)
            .y_labels(10)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(LABEL_FONT).color(&INK))
            .axis_desc_style(font(AXIS_FONT).color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(230, 230, 230))
            .axis_style(GREY)
            .draw()?;
        chart.draw_series(points.iter().zip(labels).map(|(&p, &l)| {
            Circle::new(p, POINT, PALETTE[usize::from(l)].mix(POINT_ALPHA).filled())
        }))?;
        draw_class_legend(&legend, classes)
    })
}

/// The class legend of [`pca_scatter`]: a disc in each class's colour and its name.
fn draw_class_legend(area: &Area<'_>, classes: usize) -> DrawResult {
    let left = Pos::new(HPos::Left, VPos::Center);
    area.draw(&Text::new(
        "class",
        (8, 22),
        font(AXIS_FONT).color(&INK).pos(left),
    ))?;
    for (c, colour) in PALETTE.iter().enumerate().take(classes) {
        let y = 56 + i32::try_from(c).unwrap_or(0) * 28;
        area.draw(&Circle::new((16, y), 7, colour.filled()))?;
        area.draw(&Text::new(
            class_name(c),
            (32, y),
            font(LABEL_FONT).color(&INK).pos(left),
        ))?;
    }
    Ok(())
}

/// Picture size of [`pca_variance`].
const VARIANCE: (u32, u32) = (1400, 640);
/// Height of the title band and key of [`pca_variance`].
const VARIANCE_HEADINGS: u32 = 112;
/// Colour of the 90% and 95% marks.
const MARK: RGBColor = RGBColor(200, 30, 30);

/// The fewest leading components whose shares add up to at least `fraction`, if they do.
fn components_for(ratios: &[f64], fraction: f64) -> Option<usize> {
    let mut sum = 0.0;
    ratios
        .iter()
        .position(|r| {
            sum += r;
            sum >= fraction
        })
        .map(|k| k + 1)
}

/// Draws the share of the variance each principal component explains to `path` (PNG, 1400 x
/// 640), from `ratios` (every component's share, largest first, adding up to 1): on the left,
/// the first `shown` components, each one's share as a bar and the running total as a line on
/// its own axis at the right; on the right, the running total over every component, with the
/// number of components that reach 90% and 95% of the variance marked.
///
/// # Errors
///
/// [`ChartError::Empty`] without ratios or with `shown` 0, [`ChartError::BadInput`] if a share
/// is negative or not a finite number or they add up to more than 1 (beyond rounding);
/// [`ChartError::Io`] if the file cannot be written.
pub fn pca_variance(
    ratios: &[f64],
    shown: usize,
    title: &str,
    subtitle: &str,
    path: &Path,
) -> Result<(), ChartError> {
    if ratios.is_empty() || shown == 0 {
        return Err(ChartError::empty(path, "no components"));
    }
    if let Some(r) = ratios.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        return Err(ChartError::bad_input(
            path,
            format!("share {r} is not a finite number at least 0"),
        ));
    }
    let total: f64 = ratios.iter().sum();
    if total > 1.0 + 1e-9 {
        return Err(ChartError::bad_input(
            path,
            format!("the shares add up to {total}, more than 1"),
        ));
    }
    let shown = shown.min(ratios.len());
    let cumulative: Vec<f64> = ratios
        .iter()
        .scan(0.0, |sum, r| {
            *sum += r;
            Some(100.0 * *sum)
        })
        .collect();
    let marks: Vec<(f64, usize)> = [0.90, 0.95]
        .into_iter()
        .filter_map(|f| components_for(ratios, f).map(|k| (100.0 * f, k)))
        .collect();
    let size = (VARIANCE.0.max(headings_width(title, subtitle)), VARIANCE.1);
    let top = 100.0 * ratios[0] * 1.1;

    render(path, size, |root| {
        draw_headings(root, title, subtitle)?;
        draw_variance_key(root, shown)?;
        let (_, body) = root.split_vertically(VARIANCE_HEADINGS);
        let panels = body.split_evenly((1, 2));

        // Left: the first `shown` components, bars and running total.
        let n = shown as f64;
        let mut left = ChartBuilder::on(&panels[0])
            .caption(
                format!("the first {shown} components"),
                font(18.0).color(&INK),
            )
            .margin_left(16)
            .margin_right(16)
            .margin_top(6)
            .margin_bottom(14)
            .x_label_area_size(52)
            .y_label_area_size(70)
            .right_y_label_area_size(70)
            .build_cartesian_2d(0.5..n + 0.5, 0.0..top)?
            .set_secondary_coord(0.5..n + 0.5, 0.0..100.0);
        left.configure_mesh()
            .x_desc("component")
            .y_desc("share of the variance, each (%)")
            .x_labels(11)
            .y_labels(8)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(LABEL_FONT).color(&INK))
            .axis_desc_style(font(AXIS_FONT).color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(230, 230, 230))
            .axis_style(GREY)
            .draw()?;
        left.configure_secondary_axes()
            .y_desc("running total (%)")
            .y_labels(11)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(LABEL_FONT).color(&VALIDATION))
            .axis_desc_style(font(AXIS_FONT).color(&VALIDATION))
            .axis_style(GREY)
            .draw()?;
        left.draw_series(ratios.iter().take(shown).enumerate().map(|(k, r)| {
            let x = k as f64 + 1.0;
            Rectangle::new([(x - 0.38, 0.0), (x + 0.38, 100.0 * r)], TRAIN.filled())
        }))?;
        left.draw_secondary_series(LineSeries::new(
            cumulative
                .iter()
                .take(shown)
                .enumerate()
                .map(|(k, &c)| (k as f64 + 1.0, c)),
            VALIDATION.stroke_width(3),
        ))?;

        // Right: the running total over every component, with the 90% and 95% marks.
        let all = ratios.len() as f64;
        let mut right = ChartBuilder::on(&panels[1])
            .caption(
                format!("all {} components: running total", ratios.len()),
                font(18.0).color(&INK),
            )
            .margin_left(16)
            .margin_right(30)
            .margin_top(6)
            .margin_bottom(14)
            .x_label_area_size(52)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..all, 0.0..100.0)?;
        right
            .configure_mesh()
            .x_desc("components")
            .y_desc("variance explained (%)")
            .x_labels(10)
            .y_labels(11)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(LABEL_FONT).color(&INK))
            .axis_desc_style(font(AXIS_FONT).color(&INK))
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(230, 230, 230))
            .axis_style(GREY)
            .draw()?;
        for &(percent, k) in &marks {
            let x = k as f64;
            let dashes = |from: (f64, f64), to: (f64, f64)| {
                DashedLineSeries::new([from, to], 6, 4, MARK.stroke_width(1))
            };
            right.draw_series(dashes((0.0, percent), (x, percent)))?;
            right.draw_series(dashes((x, 0.0), (x, percent)))?;
        }
        right.draw_series(LineSeries::new(
            cumulative
                .iter()
                .enumerate()
                .map(|(k, &c)| (k as f64 + 1.0, c)),
            VALIDATION.stroke_width(3),
        ))?;
        // The labels of the marks, right of each corner, the lower one further down so that
        // they never overlap.
        let place = Pos::new(HPos::Left, VPos::Top);
        for (i, &(percent, k)) in marks.iter().enumerate() {
            let (x, y) = right.backend_coord(&(k as f64, percent));
            let drop = 10 + 26 * i32::try_from(marks.len() - 1 - i).unwrap_or(0);
            root.draw(&Text::new(
                format!("{percent:.0}% with {k} components"),
                (x + 8, y + drop),
                font(LABEL_FONT).color(&MARK).pos(place),
            ))?;
        }
        Ok(())
    })
}

/// The key of [`pca_variance`], under its subtitle: bars, the running total, the marks.
fn draw_variance_key(area: &Area<'_>, shown: usize) -> DrawResult {
    let left = Pos::new(HPos::Left, VPos::Center);
    let y = 92;
    let mut x = 28;
    area.draw(&Rectangle::new(
        [(x, y - 7), (x + 14, y + 7)],
        TRAIN.filled(),
    ))?;
    let bars = format!("share of each of the first {shown} components (left axis)");
    area.draw(&Text::new(
        bars.clone(),
        (x + 22, y),
        font(LABEL_FONT).color(&INK).pos(left),
    ))?;
    x += 22 + crate::coord(crate::text_size(&bars, LABEL_FONT).0) + 36;
    area.draw(&PathElement::new(
        [(x, y), (x + 30, y)],
        VALIDATION.stroke_width(3),
    ))?;
    let line = "running total (right axis; all components on the right)";
    area.draw(&Text::new(
        line,
        (x + 38, y),
        font(LABEL_FONT).color(&INK).pos(left),
    ))?;
    x += 38 + crate::coord(crate::text_size(line, LABEL_FONT).0) + 36;
    // Dashed, as the marks are: three dashes of six pixels.
    for dash in 0..3 {
        let from = x + dash * 12;
        area.draw(&PathElement::new(
            [(from, y), (from + 6, y)],
            MARK.stroke_width(1),
        ))?;
    }
    area.draw(&Text::new(
        "components reaching 90% and 95%",
        (x + 38, y),
        font(LABEL_FONT).color(&INK).pos(left),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, unwritable};

    /// Shares halving from component to component, the last taking the remainder.
    fn ratios(n: usize) -> Vec<f64> {
        let mut r: Vec<f64> = (1..=n)
            .map(|k| 0.5f64.powi(i32::try_from(k).unwrap()))
            .collect();
        let rest = 1.0 - r.iter().sum::<f64>();
        if let Some(last) = r.last_mut() {
            *last += rest;
        }
        r
    }

    #[test]
    fn counts_components_to_a_share() {
        let r = ratios(10);
        // 1/2, 3/4, 7/8, 15/16 = 0.9375, 31/32 = 0.96875
        assert_eq!(components_for(&r, 0.5), Some(1));
        assert_eq!(components_for(&r, 0.9), Some(4));
        assert_eq!(components_for(&r, 0.95), Some(5));
        assert_eq!(components_for(&[0.1, 0.2], 0.9), None);
    }

    #[test]
    fn draws_the_scatter_and_the_variance() {
        let dir = tempfile::tempdir().unwrap();
        let scatter = dir.path().join("scatter.png");
        let points: Vec<(f64, f64)> = (0..200)
            .map(|i| {
                let a = f64::from(i) * 0.1;
                (a.cos() * a, a.sin() * a)
            })
            .collect();
        let labels: Vec<u8> = (0..200).map(|i| u8::try_from(i % 10).unwrap()).collect();
        pca_scatter(&points, &labels, [0.3, 0.2], "PCA", "spiral", &scatter).unwrap();
        assert_png(&scatter, SCATTER.0, SCATTER.1);

        let variance = dir.path().join("variance.png");
        pca_variance(&ratios(30), 10, "Variance", "halving", &variance).unwrap();
        assert_png(&variance, VARIANCE.0, VARIANCE.1);
        // More shown than there are: all of them.
        pca_variance(&ratios(3), 50, "Variance", "three", &variance).unwrap();
        assert_png(&variance, VARIANCE.0, VARIANCE.1);
    }

    #[test]
    fn bad_input_and_unwritable_paths_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let err = pca_scatter(&[], &[], [0.1, 0.1], "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = pca_scatter(&[(0.0, 0.0)], &[0, 1], [0.1, 0.1], "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("2 labels for 1 points"), "{err}");
        let err = pca_scatter(&[(0.0, 0.0)], &[10], [0.1, 0.1], "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("class 10 has no colour"), "{err}");
        let err = pca_scatter(&[(f64::NAN, 0.0)], &[1], [0.1, 0.1], "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::BadInput { .. }), "{err}");

        let err = pca_variance(&[], 5, "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = pca_variance(&[0.5], 0, "t", "s", &path).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");
        let err = pca_variance(&[0.5, -0.1], 2, "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("-0.1"), "{err}");
        let err = pca_variance(&[0.7, 0.7], 2, "t", "s", &path).unwrap_err();
        assert!(err.to_string().contains("more than 1"), "{err}");
        assert!(!path.exists());

        let bad = unwritable(dir.path());
        let err = pca_variance(&ratios(5), 5, "t", "s", &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
        let err = pca_scatter(&[(0.0, 1.0)], &[3], [0.1, 0.1], "t", "s", &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }
}
