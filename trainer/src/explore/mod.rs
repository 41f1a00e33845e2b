//! `trainer data`: a look at Fashion-MNIST itself, as study S4 takes before training: the
//! images of each class in every split the studies use, sample and mean images of each class,
//! and a principal component analysis ([`pca`]) of the training images. [`explore`] computes the
//! numbers, [`Exploration::write`] draws the pictures (with `model-charts`) into
//! `<reports>/data/` and writes the page `<reports>/data.md` ([`page::render`]).
//!
//! Everything is deterministic: the splits and the scatter's sample come from [`SEED`]-seeded
//! generators, the sums run in a fixed order, and the same run writes the same bytes.

use std::path::{Path, PathBuf};

use fashion_mnist::{Dataset, PIXELS, SplitError, SplitPlan};
use model_charts::{ChartError, SplitCounts};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

pub mod page;
pub mod pca;
pub mod stats;

use pca::{Pca, PcaError};
use stats::SplitStats;

/// The seed of the splits and of the scatter's sample: the trainer's default `--seed`, so the
/// splits shown are the ones the models trained on.
pub const SEED: u64 = 42;
/// Training images drawn on the PCA scatter plot.
pub const SCATTER_IMAGES: usize = 5_000;
/// Sample images of each class.
pub const SAMPLES_PER_CLASS: usize = 10;
/// Components whose individual shares the variance picture shows.
pub const SHOWN_COMPONENTS: usize = 50;
/// The folder of the pictures, beside the page.
pub const PICTURES: &str = "data";
/// The page's file name in the reports folder.
pub const PAGE: &str = "data.md";

/// The pictures, by file name in [`PICTURES`], in the order the page shows them.
pub const PICTURE_FILES: [&str; 5] = [
    "class-distribution.png",
    "samples.png",
    "mean-images.png",
    "pca.png",
    "pca-variance.png",
];

/// What can go wrong exploring the dataset. Each variant says which step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExploreError {
    /// A split plan could not divide the dataset.
    #[error("dividing the dataset: {0}")]
    Split(#[from] SplitError),
    /// The PCA could not be fitted.
    #[error("PCA of the training images: {0}")]
    Pca(#[from] PcaError),
    /// A picture could not be drawn or written.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// A folder or the page could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The PCA numbers the page gives.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaSummary {
    /// Training images the PCA was fitted on.
    pub images: usize,
    /// Share of the variance along each component, largest first.
    pub ratios: Vec<f64>,
    /// Components that explain at least 90% of the variance.
    pub for_90: usize,
    /// Components that explain at least 95% of the variance.
    pub for_95: usize,
}

impl PcaSummary {
    /// Share of the variance the first `k` components explain together.
    pub fn first(&self, k: usize) -> f64 {
        self.ratios.iter().take(k).sum()
    }
}

/// Everything `trainer data` computes: the page's numbers and the pictures' data.
#[derive(Debug, Clone)]
pub struct Exploration {
    /// The seed of the splits and of the scatter's sample.
    pub seed: u64,
    /// Counts and mean pixel values of every split, in the order of [`splits`].
    pub splits: Vec<SplitStats>,
    /// The mean image of each class of the training images (0 to 255).
    pub means: Vec<Vec<f64>>,
    /// The PCA's numbers.
    pub pca: PcaSummary,
    /// The scatter's sample on the first two components, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// The class of each point.
    pub point_labels: Vec<u8>,
}

/// The splits the page describes, named as it names them: the official training and test
/// images, the 80/20 hold-out of S2, S3 and S5, and S4's pooled 60/20/20, both divided with
/// `seed` (see [`fashion_mnist::splits`]).
pub fn splits(dataset: &Dataset, seed: u64) -> Result<Vec<SplitStats>, ExploreError> {
    let mut out = vec![
        SplitStats::of("train", &dataset.train),
        SplitStats::of("test", &dataset.test),
    ];
    let plans = [
        (
            "80/20",
            SplitPlan::Holdout {
                validation_percent: 20,
            },
        ),
        (
            "60/20/20",
            SplitPlan::Pooled {
                train_percent: 60,
                validation_percent: 20,
            },
        ),
    ];
    for (name, plan) in plans {
        let parts = plan.apply(dataset, seed)?;
        out.push(SplitStats::of(&format!("{name} train"), &parts.train));
        if let Some(validation) = &parts.validation {
            out.push(SplitStats::of(&format!("{name} validation"), validation));
        }
        match plan {
            // Its test part is a new one, drawn from the pool.
            SplitPlan::Pooled { .. } => {
                out.push(SplitStats::of(&format!("{name} test"), &parts.test));
            }
            // The official test images, already listed.
            SplitPlan::Holdout { .. } | SplitPlan::Full => {}
        }
    }
    Ok(out)
}

/// Computes every number of the page and the data of the pictures: the [`splits`], the mean
/// images, a [`Pca`] fitted on all the training images, and [`SCATTER_IMAGES`] training images
/// drawn with a `ChaCha8Rng` seeded from `seed` (a shuffle of all indices, the first ones kept
/// in shuffled order) projected on its first two components.
pub fn explore(dataset: &Dataset, seed: u64) -> Result<Exploration, ExploreError> {
    let train = &dataset.train;
    let fitted = Pca::fit(&train.images, PIXELS)?;
    let ratios = fitted.explained_ratios();
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order.truncate(SCATTER_IMAGES);
    let points = order
        .iter()
        .map(|&i| {
            let c = fitted.project(train.image(i), 2);
            (c[0], c[1])
        })
        .collect();
    Ok(Exploration {
        seed,
        splits: splits(dataset, seed)?,
        means: stats::mean_images(train),
        pca: PcaSummary {
            images: fitted.images,
            for_90: fitted.components_for(0.90),
            for_95: fitted.components_for(0.95),
            ratios,
        },
        points,
        point_labels: order.iter().map(|&i| train.labels[i]).collect(),
    })
}

impl Exploration {
    /// Draws the pictures into `<reports_dir>/data/` and writes `<reports_dir>/data.md`;
    /// `dataset` gives the sample images. Returns the files written.
    pub fn write(
        &self,
        dataset: &Dataset,
        reports_dir: &Path,
    ) -> Result<Vec<PathBuf>, ExploreError> {
        let dir = reports_dir.join(PICTURES);
        std::fs::create_dir_all(&dir).map_err(|source| ExploreError::Io {
            path: dir.clone(),
            source,
        })?;
        let file = |name: &str| dir.join(name);
        let [distribution, samples, means, scatter, variance] = PICTURE_FILES.map(file);

        let counts: Vec<SplitCounts> = self
            .splits
            .iter()
            .map(|s| SplitCounts {
                name: s.name.clone(),
                counts: s.counts.to_vec(),
            })
            .collect();
        model_charts::class_distribution(
            &counts,
            "Images per class in each split",
            &format!(
                "the official training and test sets, and the stratified splits the studies \
                 draw from them (seed {})",
                self.seed
            ),
            &distribution,
        )?;
        model_charts::class_samples(
            &dataset.train,
            SAMPLES_PER_CLASS,
            "Sample images of each class",
            &format!("the first {SAMPLES_PER_CLASS} training images of each class"),
            &samples,
        )?;
        model_charts::mean_images(
            &self.means,
            "The mean image of each class",
            "each class's training images averaged pixel by pixel",
            &means,
        )?;
        let ratios = &self.pca.ratios;
        model_charts::pca_scatter(
            &self.points,
            &self.point_labels,
            [ratios[0], ratios[1]],
            "Training images on the first two principal components",
            &format!(
                "{} of the {} training images the PCA was fitted on, drawn at random (seed {}); \
                 pixels scaled to [0, 1] and centred",
                page::thousands(self.points.len() as u64),
                page::thousands(self.pca.images as u64),
                self.seed
            ),
            &scatter,
        )?;
        model_charts::pca_variance(
            ratios,
            SHOWN_COMPONENTS,
            "Variance explained by the principal components",
            &format!(
                "PCA of the {} training images, pixels scaled to [0, 1] and centred",
                page::thousands(self.pca.images as u64)
            ),
            &variance,
        )?;

        let page_path = reports_dir.join(PAGE);
        model_report::atomic::write(&page_path, page::render(self).as_bytes()).map_err(
            |source| ExploreError::Io {
                path: page_path.clone(),
                source,
            },
        )?;
        Ok(vec![
            distribution,
            samples,
            means,
            scatter,
            variance,
            page_path,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fashion_mnist::Split;

    /// `per_class` images of each class; image `i` is all `(i * 37) % 256`.
    fn split(per_class: usize) -> Split {
        let n = per_class * fashion_mnist::NUM_CLASSES;
        let labels: Vec<u8> = (0..n).map(|i| u8::try_from(i % 10).unwrap()).collect();
        Split {
            images: (0..n)
                .flat_map(|i| [u8::try_from(i * 37 % 256).unwrap(); PIXELS])
                .collect(),
            labels,
        }
    }

    #[test]
    fn every_split_counts_add_up_to_its_size() {
        let dataset = Dataset {
            train: split(30),
            test: split(10),
        };
        let all = splits(&dataset, SEED).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "train",
                "test",
                "80/20 train",
                "80/20 validation",
                "60/20/20 train",
                "60/20/20 validation",
                "60/20/20 test"
            ]
        );
        let totals: Vec<u64> = all.iter().map(SplitStats::total).collect();
        // 80/20 of 300; 60/20/20 of the pooled 400.
        assert_eq!(totals, [300, 100, 240, 60, 240, 80, 80]);
        // Stratified: every class keeps its share.
        assert_eq!(all[3].counts, [6; 10]);
        assert_eq!(all[6].counts, [8; 10]);
    }

    #[test]
    fn explore_projects_a_seeded_sample_of_the_training_images() {
        let dataset = Dataset {
            train: split(30),
            test: split(10),
        };
        let e = explore(&dataset, SEED).unwrap();
        // Fewer training images than the scatter wants: all of them, each once.
        assert_eq!(e.points.len(), 300);
        let mut labels = e.point_labels.clone();
        labels.sort_unstable();
        let mut expected = dataset.train.labels.clone();
        expected.sort_unstable();
        assert_eq!(labels, expected);
        assert_eq!(e.pca.images, 300);
        assert!((e.pca.first(PIXELS) - 1.0).abs() < 1e-9);
        // Every image is flat, so one component explains everything.
        assert_eq!((e.pca.for_90, e.pca.for_95), (1, 1));
        assert_eq!(e.means.len(), 10);
        // The same seed, the same sample; another seed, another order.
        let again = explore(&dataset, SEED).unwrap();
        assert_eq!(again.points, e.points);
        let other = explore(&dataset, SEED + 1).unwrap();
        assert_ne!(other.point_labels, e.point_labels);
    }
}
