//! Classification metrics: accuracy, macro precision/recall/F1, per-class accuracy, confusion.

use serde::{Deserialize, Serialize};

/// Metrics of a set of predictions against labels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of examples.
    pub count: usize,
    /// Fraction predicted correctly.
    pub accuracy: f64,
    /// Mean over classes of precision (a class never predicted counts as precision 0).
    pub macro_precision: f64,
    /// Mean over classes of recall.
    pub macro_recall: f64,
    /// Mean over classes of F1.
    pub macro_f1: f64,
    /// Recall of each class (the fraction of its examples predicted correctly).
    pub per_class_accuracy: Vec<f64>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u32>>,
}

impl Metrics {
    /// Computes the metrics over `classes` classes, or more if a label or prediction is
    /// `classes` or above (a model with more outputs than the dataset has classes, e.g. 16:
    /// its extra classes count as predicted but never true).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn new(labels: &[u8], predictions: &[u8], classes: usize) -> Self {
        assert_eq!(labels.len(), predictions.len(), "one prediction per label");
        let seen = labels
            .iter()
            .chain(predictions)
            .map(|&c| usize::from(c) + 1)
            .max()
            .unwrap_or(0);
        let classes = classes.max(seen);
        let mut confusion = vec![vec![0u32; classes]; classes];
        for (&t, &p) in labels.iter().zip(predictions) {
            confusion[usize::from(t)][usize::from(p)] += 1;
        }
        let ratio = |a: u32, b: u32| {
            if b == 0 {
                0.0
            } else {
                f64::from(a) / f64::from(b)
            }
        };
        let mut precision = Vec::with_capacity(classes);
        let mut recall = Vec::with_capacity(classes);
        let mut f1 = Vec::with_capacity(classes);
        for c in 0..classes {
            let tp = confusion[c][c];
            let actual: u32 = confusion[c].iter().sum();
            let predicted: u32 = confusion.iter().map(|row| row[c]).sum();
            let (p, r) = (ratio(tp, predicted), ratio(tp, actual));
            precision.push(p);
            recall.push(r);
            f1.push(if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            });
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let correct: u32 = (0..classes).map(|c| confusion[c][c]).sum();
        Self {
            count: labels.len(),
            accuracy: f64::from(correct) / labels.len().max(1) as f64,
            macro_precision: mean(&precision),
            macro_recall: mean(&recall),
            macro_f1: mean(&f1),
            per_class_accuracy: recall,
            confusion,
        }
    }
}

impl std::fmt::Display for Metrics {
    /// Accuracy, macro precision/recall/F1, per-class accuracy and the confusion matrix
    /// (rows: true class, columns: predicted).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "accuracy {:.2}%  macro precision {:.4}  recall {:.4}  F1 {:.4}  ({} images)",
            100.0 * self.accuracy,
            self.macro_precision,
            self.macro_recall,
            self.macro_f1,
            self.count
        )?;
        writeln!(
            f,
            "{:>12} {:>7}  confusion (predicted ->)",
            "class", "acc %"
        )?;
        for (c, (acc, row)) in self
            .per_class_accuracy
            .iter()
            .zip(&self.confusion)
            .enumerate()
        {
            let name = fashion_mnist::CLASS_NAMES.get(c).copied().unwrap_or("?");
            let cells: Vec<String> = row.iter().map(|n| format!("{n:>5}")).collect();
            writeln!(f, "{name:>12} {:>7.2}  {}", 100.0 * acc, cells.join(""))?;
        }
        Ok(())
    }
}

/// Fraction of positions where `a` and `b` agree.
pub fn agreement(a: &[u8], b: &[u8]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_two_class_case() {
        // labels 0,0,1,1 predicted 0,1,1,1: class 0 P=1 R=.5 F1=2/3; class 1 P=2/3 R=1 F1=.8
        let m = Metrics::new(&[0, 0, 1, 1], &[0, 1, 1, 1], 2);
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert!((m.macro_precision - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.macro_recall - 0.75).abs() < 1e-12);
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
        assert_eq!(m.per_class_accuracy, vec![0.5, 1.0]);
    }

    #[test]
    fn predictions_beyond_the_class_count_widen_the_matrix() {
        // A 16-output model predicting class 13 once: it used to index out of bounds.
        let m = Metrics::new(&[0, 1, 2], &[0, 13, 2], 10);
        assert_eq!(m.confusion.len(), 14);
        assert_eq!(m.confusion[1][13], 1);
        assert!((m.accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.per_class_accuracy.len(), 14);
    }

    #[test]
    fn never_predicted_class_has_zero_precision() {
        let m = Metrics::new(&[0, 1], &[0, 0], 2);
        assert_eq!(m.macro_precision, 0.25);
        assert_eq!(agreement(&[1, 2, 3], &[1, 0, 3]), 2.0 / 3.0);
    }
}
