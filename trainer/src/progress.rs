//! How long commands report progress while they run: an indicatif bar per epoch (drawn only
//! when standard error is a terminal), one JSON object per line on standard output for scripts
//! (`--json-lines`), or neither (`-q`). Messages that are not progress (what is being trained,
//! where files went, warnings) go through `tracing` instead.
//!
//! Every JSON line has an `"event"` field naming its kind ([`Event`]); fields are in SI units
//! (`_s`: seconds) and fractions (accuracy 0.0-1.0).

use std::io::Write;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// A JSON line is written after every this many batches (and after the last of an epoch).
pub const JSON_EVERY_BATCHES: usize = 20;

/// Where progress goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (`-q`, and tests).
    #[default]
    Quiet,
    /// indicatif bars and per-epoch lines on standard error.
    Bars,
    /// [`Event`]s as JSON lines on standard output.
    JsonLines,
}

/// One progress event, as written by [`Progress::JsonLines`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// A training run starts, or resumes from its checkpoint.
    Start {
        /// Model id.
        model: &'a str,
        /// Epochs of the run.
        epochs: usize,
        /// Batches per epoch.
        batches: usize,
        /// Training images.
        train_images: usize,
        /// Epochs already done (resuming).
        epochs_done: usize,
        /// Batches of the next epoch already done (resuming).
        batches_done: usize,
    },
    /// Training progress within an epoch.
    Batch {
        /// Model id.
        model: &'a str,
        /// Epoch, from 1.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Batches of this epoch done.
        batch: usize,
        /// Batches per epoch.
        batches: usize,
        /// Mean training loss of the epoch so far.
        loss: f64,
        /// Training accuracy of the epoch so far.
        accuracy: f64,
        /// Seconds spent in this epoch.
        elapsed_s: f64,
        /// Estimated seconds until the run's last batch, at this epoch's pace (validation
        /// passes not included).
        eta_s: f64,
    },
    /// An epoch ended (after its validation pass, if any).
    Epoch {
        /// Model id.
        model: &'a str,
        /// Epoch, from 1.
        epoch: usize,
        /// Epochs of the run.
        epochs: usize,
        /// Mean training loss.
        loss: f64,
        /// Training accuracy.
        accuracy: f64,
        /// Validation loss, if the run holds out a validation split.
        val_loss: Option<f64>,
        /// Validation accuracy, if the run holds out a validation split.
        val_accuracy: Option<f64>,
        /// Wall-clock seconds of the epoch's training.
        seconds: f64,
        /// Estimated seconds for the remaining epochs, at this epoch's pace.
        eta_s: f64,
    },
    /// A tree of a random forest was fitted (trees fit side by side, so they finish in any
    /// order; `tree` counts the finished ones).
    Tree {
        /// Model id.
        model: &'a str,
        /// Trees fitted so far.
        tree: usize,
        /// Trees of the forest.
        trees: usize,
        /// Seconds since fitting started.
        elapsed_s: f64,
        /// Estimated seconds until the last tree, at the pace so far.
        eta_s: f64,
    },
    /// A model was evaluated on its test images.
    Test {
        /// Model id.
        model: &'a str,
        /// `float` or `int8`.
        precision: &'a str,
        /// Test accuracy.
        accuracy: f64,
    },
    /// A model was quantised, exported and verified.
    Exported {
        /// Model id.
        model: &'a str,
        /// The `.fmq` written.
        path: &'a str,
        /// int8 test accuracy (infer-core).
        int8_accuracy: f64,
        /// Float test accuracy.
        float_accuracy: f64,
        /// Test images on which int8 and float agree on the class.
        agreement: f64,
    },
}

impl Progress {
    /// The mode the command-line flags ask for (`-q` wins over `--json-lines`).
    pub fn from_flags(quiet: bool, json_lines: bool) -> Self {
        match (quiet, json_lines) {
            (true, _) => Self::Quiet,
            (false, true) => Self::JsonLines,
            (false, false) => Self::Bars,
        }
    }

    /// Whether human-readable extras (per-epoch lines, metrics tables) are shown.
    pub fn human(self) -> bool {
        self == Self::Bars
    }

    /// Writes `event` as one JSON line on standard output in [`Progress::JsonLines`] mode. A
    /// closed pipe or a full disk does not stop the run: progress is best effort.
    pub fn emit(self, event: &Event<'_>) {
        if self != Self::JsonLines {
            return;
        }
        if let Ok(line) = serde_json::to_string(event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }

    /// Progress of one epoch of `model`'s run, starting at batch `first_batch` (non-zero when
    /// resuming mid-epoch).
    pub fn epoch<'a>(
        self,
        model: &'a str,
        (epoch, epochs): (usize, usize),
        batches: usize,
        first_batch: usize,
    ) -> EpochProgress<'a> {
        let bar = if self.human() {
            ProgressBar::new(batches as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>24} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{model} epoch {epoch}/{epochs}"));
        bar.set_position(first_batch as u64);
        EpochProgress {
            progress: self,
            bar,
            model,
            epoch,
            epochs,
            batches,
            first_batch,
            start: Instant::now(),
        }
    }
}

/// The progress display of one epoch ([`Progress::epoch`]).
#[derive(Debug)]
pub struct EpochProgress<'a> {
    progress: Progress,
    bar: ProgressBar,
    model: &'a str,
    epoch: usize,
    epochs: usize,
    batches: usize,
    first_batch: usize,
    start: Instant,
}

impl EpochProgress<'_> {
    /// Seconds per batch so far in this call (`None` before the first batch).
    fn pace(&self, done: usize) -> Option<f64> {
        let run = done.checked_sub(self.first_batch).filter(|&n| n > 0)?;
        Some(self.start.elapsed().as_secs_f64() / run as f64)
    }

    /// Estimated seconds until the run's last batch once `done` batches of this epoch ran.
    fn eta(&self, done: usize) -> f64 {
        self.eta_at(self.pace(done), done)
    }

    /// [`Self::eta`] at a given pace (seconds per batch).
    fn eta_at(&self, pace: Option<f64>, done: usize) -> f64 {
        let left = self.batches.saturating_sub(done)
            + self.epochs.saturating_sub(self.epoch) * self.batches;
        pace.map_or(0.0, |p| p * left as f64)
    }

    /// `done` batches of the epoch ran, with the epoch's mean loss and accuracy so far;
    /// `elapsed_s` counts the epoch's time before a resume too.
    pub fn batch(&self, done: usize, loss: f64, accuracy: f64, elapsed_s: f64) {
        self.bar.set_position(done as u64);
        if self.progress.human() && self.bar.is_hidden() && self.tenth_reached(done) {
            // No terminal to draw the bar on (a log file): a line per tenth of the epoch.
            tracing::info!(
                "{} epoch {}/{}: batch {done}/{}, loss {loss:.4}, accuracy {:.2}%, {elapsed_s:.0} s, \
                 eta {:.0} s",
                self.model,
                self.epoch,
                self.epochs,
                self.batches,
                100.0 * accuracy,
                self.eta(done)
            );
        }
        let report = done % JSON_EVERY_BATCHES == 0 || done == self.batches || done == 1;
        if !report {
            return;
        }
        self.bar
            .set_message(format!("loss {loss:.4} acc {:.2}%", 100.0 * accuracy));
        self.progress.emit(&Event::Batch {
            model: self.model,
            epoch: self.epoch,
            epochs: self.epochs,
            batch: done,
            batches: self.batches,
            loss,
            accuracy,
            elapsed_s,
            eta_s: self.eta(done),
        });
    }

    /// Whether batch `done` is the first to reach the next tenth of the epoch.
    fn tenth_reached(&self, done: usize) -> bool {
        let tenth = |n: usize| n.saturating_mul(10) / self.batches.max(1);
        done > 0 && tenth(done) > tenth(done - 1)
    }

    /// Removes the bar; returns the estimated seconds for the epochs after this one.
    pub fn finish(self) -> f64 {
        self.bar.finish_and_clear();
        self.eta(self.batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_choose_the_mode() {
        assert_eq!(Progress::from_flags(false, false), Progress::Bars);
        assert_eq!(Progress::from_flags(false, true), Progress::JsonLines);
        assert_eq!(Progress::from_flags(true, true), Progress::Quiet);
        assert!(Progress::Bars.human());
        assert!(!Progress::JsonLines.human());
    }

    #[test]
    fn a_log_line_marks_each_tenth_of_the_epoch() {
        let lines = |batches: usize| -> Vec<usize> {
            let p = Progress::Quiet.epoch("m", (1, 1), batches, 0);
            (1..=batches).filter(|&b| p.tenth_reached(b)).collect()
        };
        assert_eq!(lines(938).len(), 10);
        assert_eq!(lines(938).last(), Some(&938));
        assert_eq!(lines(100), [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
        assert_eq!(lines(4), [1, 2, 3, 4]);
        assert!(lines(0).is_empty());
    }

    #[test]
    fn events_are_tagged_json_objects() {
        let line = serde_json::to_string(&Event::Epoch {
            model: "s5-cnn",
            epoch: 2,
            epochs: 10,
            loss: 0.5,
            accuracy: 0.75,
            val_loss: None,
            val_accuracy: Some(0.8),
            seconds: 12.5,
            eta_s: 100.0,
        })
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "epoch");
        assert_eq!(value["model"], "s5-cnn");
        assert_eq!(value["val_loss"], serde_json::Value::Null);
        assert_eq!(value["val_accuracy"], 0.8);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn the_eta_counts_this_epochs_rest_and_the_epochs_after_it() {
        let p = Progress::Quiet.epoch("m", (2, 3), 10, 0);
        assert_eq!(p.eta(0), 0.0, "no pace before the first batch");
        // 5 of 10 batches done in epoch 2 of 3: 5 + 10 batches left.
        assert_eq!(p.eta_at(Some(2.0), 5), 30.0);
        assert_eq!(p.eta_at(Some(2.0), 10), 20.0);
        // Resumed at batch 4: the pace counts only this call's batches.
        let resumed = Progress::Quiet.epoch("m", (3, 3), 10, 4);
        assert_eq!(resumed.pace(4), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(resumed.pace(6).unwrap() >= 0.01);
    }
}
