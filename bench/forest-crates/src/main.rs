//! The random forest crate comparison behind `s1-rf`: smartcore 0.7's `RandomForestClassifier`
//! and linfa-ensemble 0.8's `RandomForest` (linfa-trees' `DecisionTree`), fitted with comparable
//! settings on the same Fashion-MNIST subset (by default the first 10,000 training images,
//! 10 trees, seed 42), evaluated on the full 10,000-image test set, the two libraries taking
//! turns for `--repeats` rounds on one thread each. Prints a Markdown table: test accuracy and
//! median fit and predict seconds per library.
//!
//! ```sh
//! cd bench/forest-crates && cargo run --release -- [--train-limit 10000] [--trees 10] \
//!     [--repeats 3] [--seed 42] [--linfa-feature-proportion 0.0357]
//! ```
//!
//! # What each library's "random forest" does (read in their 0.7.0 / 0.8.1 sources)
//!
//! - **smartcore** (`ensemble/random_forest_classifier.rs`): each tree gets a bootstrap sample
//!   drawn per class (every class resampled with replacement to its own size), and its CART tree
//!   draws `m` candidate features afresh at **every node** (default `m = √features`, 28 of 784
//!   pixels), Gini impurity, grown until pure: Breiman's random forest, as scikit-learn's
//!   `RandomForestClassifier` does it. The trees are fitted one after another.
//! - **linfa-ensemble** (`algorithm.rs`, with `linfa`'s `bootstrap_with_indices`): an ensemble
//!   of linfa-trees `DecisionTree`s, each fitted on a bootstrap sample of
//!   `bootstrap_proportion × n` rows **and** a subset of `ceil(feature_proportion × features)`
//!   columns, drawn once **per tree** and with replacement (columns can repeat); the tree then
//!   considers every one of its columns at every node. That is bagging with random subspaces,
//!   not per-node feature sampling. The trees are fitted one after another; linfa-trees also
//!   stops splitting below `min_impurity_decrease` (default 1e-5, must be > 0).
//!
//! "Comparable settings" here: the same trees, seed and data, and the same number of candidate
//! pixels per split, 28 (`--linfa-feature-proportion` 28/784); only where they are drawn
//! differs (per node for smartcore, per tree for linfa). linfa-trees scans every training row of
//! every candidate column at every node (its pre-sorted index with a mask), so its cost grows
//! with `columns × rows × nodes`: with all 784 pixels per tree (`--linfa-feature-proportion 1`)
//! each node costs 28 times as much as with 28.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use fashion_mnist::{NUM_CLASSES, PIXELS, Split};
use linfa::DatasetBase;
use linfa::prelude::{Fit, Predict};
use linfa_ensemble::EnsembleLearnerParams;
use linfa_trees::DecisionTree;
use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::rngs::StdRng;
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;

/// smartcore's and linfa's random forests on the same subset.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Training on the first N training images.
    #[arg(long, default_value_t = 10_000)]
    train_limit: usize,
    /// Trees per forest.
    #[arg(long, default_value_t = 10)]
    trees: u16,
    /// Rounds; each round fits one forest per library, in turn.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Seed of both libraries' bootstrap and feature draws.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Pixels per split candidate set (smartcore's `m`, drawn per node).
    #[arg(long, default_value_t = 28)]
    features_per_split: usize,
    /// linfa's `feature_proportion` (columns drawn per tree); default: features_per_split / 784.
    #[arg(long)]
    linfa_feature_proportion: Option<f64>,
    /// Folder of the four Fashion-MNIST files (default: $FASHION_MNIST_DIR, then Debian's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// One fit and prediction: accuracy on the test images and seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Run {
    accuracy: f64,
    fit_seconds: f64,
    predict_seconds: f64,
}

/// The share of `predicted` equal to `labels`.
fn accuracy(labels: &[u8], predicted: impl Iterator<Item = usize>) -> f64 {
    let correct = labels
        .iter()
        .zip(predicted)
        .filter(|&(&l, p)| usize::from(l) == p)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

/// The median of `values` (the mean of the middle two for an even count); NaN if empty.
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Raw pixels 0-255 as f32, image after image.
fn pixels(split: &Split) -> Vec<f32> {
    split.images.iter().map(|&p| f32::from(p)).collect()
}

/// smartcore's forest: `trees` trees, `m` candidates drawn at every node.
fn smartcore_run(train: &Split, test: &Split, trees: u16, m: usize, seed: u64) -> Result<Run> {
    let x = DenseMatrix::new(train.len(), PIXELS, pixels(train), false)
        .map_err(|e| anyhow::anyhow!("smartcore training matrix: {e}"))?;
    let x_test = DenseMatrix::new(test.len(), PIXELS, pixels(test), false)
        .map_err(|e| anyhow::anyhow!("smartcore test matrix: {e}"))?;
    let params = RandomForestClassifierParameters::default()
        .with_n_trees(trees)
        .with_m(m)
        .with_seed(seed);
    let start = Instant::now();
    let forest = RandomForestClassifier::<f32, u8, DenseMatrix<f32>, Vec<u8>>::fit(
        &x,
        &train.labels,
        params,
    )
    .map_err(|e| anyhow::anyhow!("smartcore fit: {e}"))?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let predicted = forest
        .predict(&x_test)
        .map_err(|e| anyhow::anyhow!("smartcore predict: {e}"))?;
    let predict_seconds = start.elapsed().as_secs_f64();
    Ok(Run {
        accuracy: accuracy(&test.labels, predicted.iter().map(|&c| usize::from(c))),
        fit_seconds,
        predict_seconds,
    })
}

/// linfa-ensemble's forest: `trees` linfa-trees trees, each on a bootstrap sample and
/// `feature_proportion` of the pixels drawn for the whole tree.
fn linfa_run(
    train: &Split,
    test: &Split,
    trees: u16,
    feature_proportion: f64,
    seed: u64,
) -> Result<Run> {
    let x = Array2::from_shape_vec((train.len(), PIXELS), pixels(train))
        .context("linfa training matrix")?;
    let y: Array1<usize> = train.labels.iter().map(|&l| usize::from(l)).collect();
    let x_test =
        Array2::from_shape_vec((test.len(), PIXELS), pixels(test)).context("linfa test matrix")?;
    let data = DatasetBase::new(x, y);
    let params = EnsembleLearnerParams::new_fixed_rng(
        DecisionTree::<f32, usize>::params(),
        StdRng::seed_from_u64(seed),
    )
    .ensemble_size(usize::from(trees))
    .bootstrap_proportion(1.0)
    .feature_proportion(feature_proportion);
    let start = Instant::now();
    let forest = params.fit(&data).context("linfa fit")?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let predicted: Array1<usize> = forest.predict(&x_test);
    let predict_seconds = start.elapsed().as_secs_f64();
    Ok(Run {
        accuracy: accuracy(&test.labels, predicted.iter().copied()),
        fit_seconds,
        predict_seconds,
    })
}

/// One table row: the library's runs summarised.
fn row(name: &str, what: &str, runs: &[Run]) -> String {
    let acc: Vec<f64> = runs.iter().map(|r| r.accuracy * 100.0).collect();
    let lo = acc.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = acc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let accuracy = if (hi - lo).abs() < 1e-9 {
        format!("{lo:.2}%")
    } else {
        format!("{lo:.2}–{hi:.2}%")
    };
    let fit: Vec<f64> = runs.iter().map(|r| r.fit_seconds).collect();
    let predict: Vec<f64> = runs.iter().map(|r| r.predict_seconds).collect();
    let each = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    format!(
        "| {name} | {what} | {accuracy} | {:.2} | {:.2} | {} | {} |",
        median(&fit),
        median(&predict),
        each(&fit),
        each(&predict),
    )
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.trees == 0 || args.repeats == 0 || args.train_limit == 0 {
        bail!("--trees, --repeats and --train-limit must be at least 1");
    }
    if args.features_per_split == 0 || args.features_per_split > PIXELS {
        bail!("--features-per-split must be in 1..={PIXELS}");
    }
    let proportion = args
        .linfa_feature_proportion
        .unwrap_or(args.features_per_split as f64 / PIXELS as f64);
    if !(proportion > 0.0 && proportion <= 1.0) {
        bail!("--linfa-feature-proportion must be in (0, 1], got {proportion}");
    }
    let data = fashion_mnist::load(args.data_dir.as_deref()).context("loading Fashion-MNIST")?;
    let train = data.train.head(args.train_limit);
    let test = data.test;
    let linfa_columns = (PIXELS as f64 * proportion).ceil();

    let mut smartcore = Vec::new();
    let mut linfa = Vec::new();
    for round in 1..=args.repeats {
        eprintln!("round {round}/{}: smartcore", args.repeats);
        smartcore.push(smartcore_run(
            &train,
            &test,
            args.trees,
            args.features_per_split,
            args.seed,
        )?);
        eprintln!("round {round}/{}: linfa", args.repeats);
        linfa.push(linfa_run(&train, &test, args.trees, proportion, args.seed)?);
    }

    println!(
        "{} trees, the first {} training images, all {} test images ({NUM_CLASSES} classes), seed {}, \
         one thread, {} alternating rounds; seconds are medians, then each round's.",
        args.trees,
        train.len(),
        test.len(),
        args.seed,
        args.repeats,
    );
    println!();
    println!(
        "| crate | what a tree sees | test accuracy | fit s | predict s | fit s, each round | predict s, each round |"
    );
    println!("|---|---|---:|---:|---:|---|---|");
    println!(
        "{}",
        row(
            "smartcore 0.7.0 `RandomForestClassifier`",
            &format!(
                "class-wise bootstrap; {} of {PIXELS} pixels drawn at every node",
                args.features_per_split
            ),
            &smartcore,
        )
    );
    println!(
        "{}",
        row(
            "linfa-ensemble 0.8.1 `RandomForest` (linfa-trees `DecisionTree`)",
            &format!(
                "bootstrap; {linfa_columns} of {PIXELS} pixels drawn once per tree (with replacement), all of them at every node"
            ),
            &linfa,
        )
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images of two classes told apart by one bright pixel (class 1) or none (class 0),
    /// noise everywhere else.
    fn two_classes(n: usize) -> Split {
        let mut images = vec![0u8; n * PIXELS];
        let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 2 == 1)).collect();
        for (i, &l) in labels.iter().enumerate() {
            for p in 0..PIXELS {
                images[i * PIXELS + p] = u8::try_from((i * 31 + p * 17) % 97).unwrap();
            }
            images[i * PIXELS + 400] = if l == 1 { 255 } else { 0 };
        }
        Split { images, labels }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[0, 1, 2, 3], [0, 1, 0, 3].into_iter()), 0.75);
    }

    #[test]
    fn both_libraries_learn_a_separable_problem() {
        let data = two_classes(200);
        // Every pixel a candidate (smartcore) and every pixel in each tree (linfa): the signal
        // pixel is always found.
        let s = smartcore_run(&data, &data, 3, PIXELS, 1).unwrap();
        assert_eq!(s.accuracy, 1.0);
        let l = linfa_run(&data, &data, 3, 1.0, 1).unwrap();
        assert!(l.accuracy > 0.95, "{}", l.accuracy);
    }
}
