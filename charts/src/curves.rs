//! Training curves: loss and accuracy per epoch, training and validation, side by side.

use std::path::Path;

use model_report::{EpochStats, ModelReport};
use plotters::prelude::*;

use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{
    Area, ChartError, DrawResult, GREY, INK, TEST, TRAIN, VALIDATION, coord, font, render,
    text_size,
};

/// Picture size of [`training_curves`].
const SIZE: (u32, u32) = (1400, 650);
/// Height of the title band (title, subtitle, key).
const TITLE_BAND: u32 = 106;
/// Epochs up to which every point gets a marker.
const MARKERS_UP_TO: usize = 40;
/// Length of the line samples in the key.
const KEY_LINE: i32 = 30;

/// Draws `report`'s training history to `path` (PNG, 1400 x 650): two panels side by side, the
/// loss and the accuracy (in percent) per epoch, each with the training series (solid) and the
/// validation series (dashed) where the history has one; the accuracy panel adds the float test
/// accuracy as a dotted line. The title names the model, a subtitle gives its recipe and test
/// accuracy, and one key under it serves both panels (so it never covers a curve). Points with a
/// non-finite value are left out.
///
/// # Errors
///
/// [`ChartError::Empty`] if the history has no epoch with a finite loss,
/// [`ChartError::Io`] if the file cannot be written, [`ChartError::Draw`] if plotters fails.
pub fn training_curves(report: &ModelReport, path: &Path) -> Result<(), ChartError> {
    let history = &report.float.history;
    let series = Series::from_history(history);
    if series.loss.is_empty() {
        return Err(ChartError::empty(
            path,
            "no epoch with a finite training loss",
        ));
    }
    let float = &report.float;
    let options = &float.options;
    let epochs = history.len();
    let mut subtitle = format!(
        "{} lr {}, batch {}, {epochs} epoch{} on {} training images",
        options.optimizer.name(),
        options.optimizer.lr(),
        options.batch_size,
        if epochs == 1 { "" } else { "s" },
        float.train_images,
    );
    if float.validation_images > 0 {
        subtitle += &format!(", validated on {}", float.validation_images);
    }
    subtitle += &format!("; test accuracy {:.2}% float", 100.0 * float.test.accuracy);
    if let Some(int8) = &report.int8 {
        subtitle += &format!(", {:.2}% int8", 100.0 * int8.test.accuracy);
    }
    let test = Some(100.0 * float.test.accuracy).filter(|a| a.is_finite());
    let validated = !series.val_loss.is_empty() || !series.val_accuracy.is_empty();

    render(path, SIZE, |root| {
        let (top, body) = root.split_vertically(TITLE_BAND);
        top.draw(&Text::new(
            format!("{}: training curves", report.id),
            (24, 14),
            font(28.0).color(&INK),
        ))?;
        top.draw(&Text::new(subtitle, (24, 50), font(17.0).color(&GREY)))?;
        draw_key(&top, (26, 88), validated, test.is_some())?;
        let panels = body.split_evenly((1, 2));
        let loss = Panel {
            caption: "loss",
            y_desc: "cross-entropy loss",
            percent: false,
            train: &series.loss,
            validation: &series.val_loss,
            test: None,
        };
        loss.draw(&panels[0], epochs)?;
        let accuracy = Panel {
            caption: "accuracy",
            y_desc: "accuracy %",
            percent: true,
            train: &series.accuracy,
            validation: &series.val_accuracy,
            test,
        };
        accuracy.draw(&panels[1], epochs)
    })
}

/// The styles of the three series.
fn train_style() -> ShapeStyle {
    TRAIN.stroke_width(3)
}
fn validation_style() -> ShapeStyle {
    VALIDATION.stroke_width(3)
}
fn test_style() -> ShapeStyle {
    TEST.stroke_width(2)
}

/// One key for both panels: a sample of each series' line and its name, left to right from
/// `(x, y)` (the line's height).
fn draw_key(area: &Area<'_>, (x, y): (i32, i32), validated: bool, test: bool) -> DrawResult {
    let left = Pos::new(HPos::Left, VPos::Center);
    let mut x = x;
    let mut item = |name: &str, sample: &dyn Fn(i32) -> DrawResult| -> DrawResult {
        sample(x)?;
        let text_x = x + KEY_LINE + 8;
        area.draw(&Text::new(
            name.to_string(),
            (text_x, y),
            font(17.0).color(&INK).pos(left),
        ))?;
        x = text_x + coord(text_size(name, 17.0).0) + 32;
        Ok(())
    };
    item("training", &|x| {
        area.draw(&PathElement::new(
            [(x, y), (x + KEY_LINE, y)],
            train_style(),
        ))
    })?;
    if validated {
        item("validation", &|x| {
            area.draw(&PathElement::new([(x, y), (x + 11, y)], validation_style()))?;
            area.draw(&PathElement::new(
                [(x + 18, y), (x + KEY_LINE, y)],
                validation_style(),
            ))
        })?;
    }
    if test {
        item("test accuracy (float)", &|x| {
            for dx in (0..KEY_LINE).step_by(8) {
                area.draw(&PathElement::new(
                    [(x + dx, y), (x + dx + 3, y)],
                    test_style(),
                ))?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The finite points of a history, by series; accuracies in percent.
#[derive(Debug, Default, PartialEq)]
struct Series {
    loss: Vec<(f64, f64)>,
    val_loss: Vec<(f64, f64)>,
    accuracy: Vec<(f64, f64)>,
    val_accuracy: Vec<(f64, f64)>,
}

impl Series {
    fn from_history(history: &[EpochStats]) -> Self {
        let mut series = Self::default();
        for stats in history {
            let epoch = stats.epoch as f64;
            let push = |to: &mut Vec<(f64, f64)>, value: Option<f64>| {
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    to.push((epoch, v));
                }
            };
            push(&mut series.loss, Some(stats.loss));
            push(&mut series.val_loss, stats.val_loss);
            push(&mut series.accuracy, Some(100.0 * stats.accuracy));
            push(
                &mut series.val_accuracy,
                stats.val_accuracy.map(|a| 100.0 * a),
            );
        }
        series
    }
}

/// The y range of a panel: from zero (loss) or a little below the lowest value (accuracy) to a
/// little above the highest, never above 100 for an accuracy.
fn y_range(values: impl Iterator<Item = f64> + Clone, percent: bool) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    if percent {
        let span = (hi - lo).max(2.0);
        let lo = ((lo - 0.08 * span) / 2.0).floor() * 2.0;
        let hi = (hi + 0.08 * span).min(100.0);
        (lo.max(0.0), if hi > lo { hi } else { lo + 1.0 })
    } else {
        let hi = if hi > 0.0 { hi * 1.08 } else { 1.0 };
        (lo.min(0.0), hi)
    }
}

/// One panel: training (solid) and validation (dashed) series, an optional test line.
struct Panel<'s> {
    caption: &'static str,
    y_desc: &'static str,
    /// Whether the values are percentages (an accuracy).
    percent: bool,
    train: &'s [(f64, f64)],
    validation: &'s [(f64, f64)],
    test: Option<f64>,
}

impl Panel<'_> {
    fn draw(&self, area: &Area<'_>, epochs: usize) -> DrawResult {
        let values = self
            .train
            .iter()
            .chain(self.validation)
            .map(|&(_, v)| v)
            .chain(self.test);
        let (y0, y1) = y_range(values, self.percent);
        // Half an epoch on either side keeps the end markers inside the plot.
        let (x0, x1) = (0.5, epochs.max(1) as f64 + 0.5);

        let mut chart = ChartBuilder::on(area)
            .caption(self.caption, font(22.0).color(&INK))
            .margin_left(16)
            .margin_right(30)
            .margin_bottom(14)
            .x_label_area_size(56)
            .y_label_area_size(78)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let percent = self.percent;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(self.y_desc)
            .x_labels(epochs.clamp(2, 12))
            .x_label_formatter(&|e| {
                // Epochs are whole; ticks between them stay unlabelled.
                if (e - e.round()).abs() < 1e-9 {
                    format!("{e:.0}")
                } else {
                    String::new()
                }
            })
            .y_labels(8)
            .y_label_formatter(&|v| {
                if percent {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                }
            })
            .label_style(font(16.0).color(&INK))
            .axis_desc_style(font(18.0).color(&INK))
            .light_line_style(RGBColor(244, 244, 244))
            .bold_line_style(RGBColor(222, 222, 222))
            .axis_style(GREY)
            .draw()?;

        if let Some(t) = self.test {
            // Dashes of 3 pixels every 8, as in the key.
            chart.draw_series(DashedLineSeries::new(
                [(x0, t), (x1, t)],
                3,
                5,
                test_style(),
            ))?;
        }
        let markers = epochs <= MARKERS_UP_TO;
        if !self.validation.is_empty() {
            chart.draw_series(DashedLineSeries::new(
                self.validation.iter().copied(),
                11,
                7,
                validation_style(),
            ))?;
            if markers {
                chart.draw_series(
                    self.validation
                        .iter()
                        .map(|&p| Circle::new(p, 4, VALIDATION.filled())),
                )?;
            }
        }
        chart.draw_series(LineSeries::new(self.train.iter().copied(), train_style()))?;
        if markers {
            chart.draw_series(
                self.train
                    .iter()
                    .map(|&p| Circle::new(p, 4, TRAIN.filled())),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_png, unwritable};
    use model_report::optimizer::OptimizerConfig;
    use model_report::{FloatReport, Metrics, TrainOptions};

    fn stats(epoch: usize, loss: f64, val: Option<f64>) -> EpochStats {
        EpochStats {
            epoch,
            learning_rate: 1e-3,
            loss,
            accuracy: 1.0 - loss / 2.0,
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v / 2.0),
            seconds: 1.0,
        }
    }

    /// A report whose history is `history`, on a tiny hand-made test set.
    pub(crate) fn report(history: Vec<EpochStats>) -> ModelReport {
        ModelReport {
            id: "demo-mlp".into(),
            description: "a test model".into(),
            layers: serde_json::Value::Null,
            float: FloatReport {
                options: TrainOptions::plain(history.len(), 64, OptimizerConfig::adam(), 42),
                train_images: 48_000,
                validation_images: 12_000,
                param_count: 1234,
                history,
                test: Metrics::new(&[0, 1, 2, 2], &[0, 1, 2, 1], 10),
                safetensors_bytes: 0,
                provenance: None,
            },
            int8: None,
            firmware: None,
        }
    }

    #[test]
    fn the_series_keep_finite_points_and_accuracies_in_percent() {
        let s = Series::from_history(&[stats(1, 0.5, Some(0.4)), stats(2, f64::NAN, None)]);
        assert_eq!(s.loss, vec![(1.0, 0.5)]);
        assert_eq!(s.val_loss, vec![(1.0, 0.4)]);
        assert_eq!(s.accuracy, vec![(1.0, 75.0)]);
        assert_eq!(s.val_accuracy, vec![(1.0, 80.0)]);
    }

    #[test]
    fn y_ranges_start_at_zero_for_loss_and_stay_below_100_percent() {
        assert_eq!(y_range([0.5, 0.25].into_iter(), false), (0.0, 0.54));
        let (lo, hi) = y_range([80.0, 99.5].into_iter(), true);
        assert!((76.0..80.0).contains(&lo) && hi == 100.0, "{lo} {hi}");
    }

    #[test]
    fn draws_both_panels_with_and_without_validation() {
        let dir = tempfile::tempdir().unwrap();
        let with = dir.path().join("with.png");
        let history = (1..=10)
            .map(|e| stats(e, 1.0 / e as f64, Some(1.1 / e as f64 + 0.05)))
            .collect();
        training_curves(&report(history), &with).unwrap();
        assert_png(&with, SIZE.0, SIZE.1);

        let without = dir.path().join("without.png");
        training_curves(&report(vec![stats(1, 0.7, None)]), &without).unwrap();
        assert_png(&without, SIZE.0, SIZE.1);
    }

    #[test]
    fn an_empty_history_and_an_unwritable_path_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = training_curves(&report(vec![]), &dir.path().join("x.png")).unwrap_err();
        assert!(matches!(err, ChartError::Empty { .. }), "{err}");

        let bad = unwritable(dir.path());
        let err = training_curves(&report(vec![stats(1, 0.7, None)]), &bad).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
    }
}
