//! Random forests on raw pixels (S1's `s1-rf`): the one kind of model that is not a network.
//!
//! The trees are smartcore's CART decision trees (Gini impurity, grown until pure, a fresh
//! random draw of `features_per_split` pixels as candidates at every node: scikit-learn's
//! `RandomForestClassifier` defaults). smartcore fits the trees of one forest one after another,
//! so we fit each tree as a one-tree smartcore forest (its own bootstrap sample, its own seed)
//! on as many threads as rayon has, and take the majority vote of the trees ourselves (a tie
//! goes to the lowest class index). The result depends only on the seed, not on the threads.
//! Pixels go in as their raw values 0-255: a tree's splits do not care about scale.

use std::time::Instant;

use fashion_mnist::{NUM_CLASSES, PIXELS, Split};
use indicatif::{ProgressBar, ProgressStyle};
use model_report::{ForestOptions, ForestReport, Metrics};
use rayon::prelude::*;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

use crate::arch::Published;
use crate::progress::{Event, Progress};
use crate::zoo::Study;

/// The crate whose trees are fitted, as recorded in each report.
pub const LIBRARY: &str = "smartcore 0.7.0";

/// A random forest of a study, as data (the networks' counterpart is [`crate::arch::Arch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// Model id, e.g. `s1-rf`.
    pub id: &'static str,
    /// The study it is from.
    pub study: Study,
    /// What it is.
    pub description: &'static str,
    /// How we read what the study left unstated.
    pub reading: &'static str,
    /// The study's settings as our defaults.
    pub options: ForestOptions,
    /// What the study reported.
    pub published: Published,
}

/// Errors fitting or evaluating a forest.
#[derive(Debug, thiserror::Error)]
pub enum ForestError {
    /// smartcore refused the data or failed.
    #[error("{id}: fitting tree {tree}: {message}")]
    Fit {
        /// Model id.
        id: String,
        /// The tree, from 0.
        tree: usize,
        /// smartcore's message.
        message: String,
    },
    /// Nothing to fit or no trees asked for.
    #[error("{id}: {what}")]
    Empty {
        /// Model id.
        id: String,
        /// What is missing.
        what: &'static str,
    },
}

type Matrix = DenseMatrix<f32>;
type Tree = RandomForestClassifier<f32, u8, Matrix, Vec<u8>>;

/// The images of `split` (the first `limit`, if given) as a row-major matrix of raw pixels.
fn matrix(split: &Split, limit: usize, id: &str) -> Result<Matrix, ForestError> {
    let n = split.len().min(limit);
    let values: Vec<f32> = (0..n)
        .flat_map(|i| split.image(i).iter().map(|&p| f32::from(p)))
        .collect();
    DenseMatrix::new(n, PIXELS, values, false).map_err(|e| ForestError::Fit {
        id: id.to_string(),
        tree: 0,
        message: e.to_string(),
    })
}

/// The seed of tree `tree` of a forest seeded with `seed` (each tree draws its own bootstrap
/// sample and features from it).
fn tree_seed(seed: u64, tree: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(tree as u64)
}

/// A fitted forest: its trees.
pub struct Fitted {
    trees: Vec<Tree>,
}

impl std::fmt::Debug for Fitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fitted {{ {} trees }}", self.trees.len())
    }
}

impl Fitted {
    /// The majority vote of the trees for each image of `split`.
    pub fn predict(&self, split: &Split, id: &str) -> Result<Vec<u8>, ForestError> {
        let x = matrix(split, usize::MAX, id)?;
        let votes: Vec<Vec<u8>> = self
            .trees
            .par_iter()
            .enumerate()
            .map(|(tree, t)| {
                t.predict(&x).map_err(|e| ForestError::Fit {
                    id: id.to_string(),
                    tree,
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((0..split.len())
            .map(|i| {
                let mut count = [0usize; NUM_CLASSES];
                for tree in &votes {
                    if let Some(c) = tree.get(i).and_then(|&c| count.get_mut(usize::from(c))) {
                        *c += 1;
                    }
                }
                // The first class with the most votes.
                let best = count.iter().copied().max().unwrap_or(0);
                let class = count.iter().position(|&c| c == best).unwrap_or(0);
                u8::try_from(class).unwrap_or(0)
            })
            .collect())
    }
}

/// Fits `forest` with `options` on `train`, reporting each finished tree.
pub fn fit(
    forest: &Forest,
    options: &ForestOptions,
    train: &Split,
    progress: Progress,
) -> Result<Fitted, ForestError> {
    let id = forest.id;
    let empty = |what| ForestError::Empty {
        id: id.to_string(),
        what,
    };
    if options.trees == 0 {
        return Err(empty("no trees asked for"));
    }
    let n = train.len().min(options.train_limit.unwrap_or(usize::MAX));
    if n == 0 {
        return Err(empty("no training images"));
    }
    let x = matrix(train, n, id)?;
    let y: Vec<u8> = train.labels.iter().take(n).copied().collect();
    let bar = if progress.human() {
        ProgressBar::new(options.trees as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>24} [{bar:30}] {pos}/{len} trees eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(id);
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let trees = (0..options.trees)
        .into_par_iter()
        .map(|tree| {
            let params = RandomForestClassifierParameters::default()
                .with_n_trees(1)
                .with_m(options.features_per_split)
                .with_min_samples_split(options.min_samples_split)
                .with_seed(tree_seed(options.seed, tree));
            let fitted = Tree::fit(&x, &y, params).map_err(|e| ForestError::Fit {
                id: id.to_string(),
                tree,
                message: e.to_string(),
            })?;
            let finished = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            bar.inc(1);
            let elapsed = start.elapsed().as_secs_f64();
            progress.emit(&Event::Tree {
                model: id,
                tree: finished,
                trees: options.trees,
                elapsed_s: elapsed,
                eta_s: elapsed / finished as f64 * (options.trees - finished) as f64,
            });
            Ok(fitted)
        })
        .collect::<Result<Vec<_>, ForestError>>()?;
    bar.finish_and_clear();
    Ok(Fitted { trees })
}

/// Fits `forest` on the training images, evaluates it on the test images and returns its
/// report.
pub fn train_and_evaluate(
    forest: &Forest,
    options: &ForestOptions,
    train: &Split,
    test: &Split,
    progress: Progress,
) -> Result<ForestReport, ForestError> {
    tracing::info!(
        "fitting {} ({} trees, {} candidate pixels per split) on {} images",
        forest.id,
        options.trees,
        options.features_per_split,
        train.len().min(options.train_limit.unwrap_or(usize::MAX)),
    );
    let start = Instant::now();
    let fitted = fit(forest, options, train, progress)?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let predictions = fitted.predict(test, forest.id)?;
    let predict_seconds = start.elapsed().as_secs_f64();
    let metrics = Metrics::new(&test.labels, &predictions, NUM_CLASSES);
    progress.emit(&Event::Test {
        model: forest.id,
        precision: "float",
        accuracy: metrics.accuracy,
    });
    Ok(ForestReport {
        id: forest.id.to_string(),
        description: forest.description.to_string(),
        library: LIBRARY.to_string(),
        options: *options,
        train_images: train.len().min(options.train_limit.unwrap_or(usize::MAX)),
        fit_seconds,
        threads: rayon::current_num_threads(),
        predict_seconds,
        test: metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images of two classes told apart by one bright pixel (class 1) or none (class 0).
    fn two_classes(n: usize) -> Split {
        let mut images = vec![0u8; n * PIXELS];
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 2 == 1)).collect();
        for (i, &l) in labels.iter().enumerate() {
            // Noise everywhere, the signal at pixel 400.
            for p in 0..PIXELS {
                images[i * PIXELS + p] = u8::try_from((i * 31 + p * 17) % 97).unwrap();
            }
            images[i * PIXELS + 400] = if l == 1 { 255 } else { 0 };
        }
        Split { images, labels }
    }

    fn forest() -> Forest {
        crate::zoo::forest_by_id("s1-rf").unwrap()
    }

    fn options(trees: usize, seed: u64) -> ForestOptions {
        ForestOptions {
            trees,
            // Every pixel a candidate: the signal pixel is always found.
            features_per_split: PIXELS,
            min_samples_split: 2,
            seed,
            train_limit: None,
        }
    }

    #[test]
    fn a_separable_problem_is_learned() {
        let data = two_classes(200);
        let report =
            train_and_evaluate(&forest(), &options(5, 1), &data, &data, Progress::Quiet).unwrap();
        assert_eq!(report.test.accuracy, 1.0);
        assert_eq!(report.train_images, 200);
        assert_eq!(report.options.trees, 5);
    }

    #[test]
    fn the_same_seed_gives_the_same_forest_and_another_seed_another() {
        let data = two_classes(120);
        let mut opts = options(4, 7);
        opts.features_per_split = 8;
        let a = fit(&forest(), &opts, &data, Progress::Quiet).unwrap();
        let b = fit(&forest(), &opts, &data, Progress::Quiet).unwrap();
        assert_eq!(
            a.predict(&data, "t").unwrap(),
            b.predict(&data, "t").unwrap()
        );
        assert_ne!(tree_seed(7, 0), tree_seed(8, 0));
        assert_ne!(tree_seed(7, 0), tree_seed(7, 1));
    }

    #[test]
    fn no_trees_or_no_images_is_an_error_naming_the_model() {
        let data = two_classes(10);
        let e = fit(&forest(), &options(0, 1), &data, Progress::Quiet).unwrap_err();
        assert!(e.to_string().contains("s1-rf") && e.to_string().contains("no trees"));
        let mut opts = options(1, 1);
        opts.train_limit = Some(0);
        let e = fit(&forest(), &opts, &data, Progress::Quiet).unwrap_err();
        assert!(e.to_string().contains("no training images"), "{e}");
    }

    #[test]
    fn ties_go_to_the_lowest_class() {
        // Two one-tree "forests" trained on opposite labels vote 1:1 on every image.
        let data = two_classes(40);
        let flipped = Split {
            images: data.images.clone(),
            labels: data.labels.iter().map(|&l| 1 - l).collect(),
        };
        let a = fit(&forest(), &options(1, 3), &data, Progress::Quiet).unwrap();
        let b = fit(&forest(), &options(1, 3), &flipped, Progress::Quiet).unwrap();
        let both = Fitted {
            trees: a.trees.into_iter().chain(b.trees).collect(),
        };
        assert!(both.predict(&data, "t").unwrap().iter().all(|&c| c == 0));
    }
}
