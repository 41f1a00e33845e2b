//! Seeded, stratified train/validation/test splits.
//!
//! A [`SplitPlan`] says how a study divides the data; [`SplitPlan::apply`] divides a [`Dataset`]
//! with a seed. Stratified means each class is divided separately, so every part keeps the
//! class proportions of the whole:
//!
//! 1. one `ChaCha8Rng` is seeded from `seed` for the whole call;
//! 2. for each class in order `0..10`, that class's indices (ascending) are shuffled with it;
//! 3. the shuffled indices are cut in the order the parts are listed in the plan (validation then
//!    train for [`SplitPlan::Holdout`]; train, validation, test for [`SplitPlan::Pooled`]): each
//!    part with a percentage takes `round(n_class * percent / 100)` (half rounds up) of the `n_class`
//!    images, and the part without one takes the rest;
//! 4. each part keeps its images in ascending original index order.
//!
//! The same dataset and seed always give the same splits; the parts are disjoint and together
//! hold every image of the divided set once.
//!
//! ```
//! use fashion_mnist::{Dataset, Split, SplitPlan, PIXELS};
//!
//! // 10 images of each class.
//! let labels: Vec<u8> = (0..100).map(|i| i % 10).collect();
//! let train = Split { images: vec![0; labels.len() * PIXELS], labels };
//! let dataset = Dataset { train, test: Split { images: Vec::new(), labels: Vec::new() } };
//! let splits = SplitPlan::Holdout { validation_percent: 20 }.apply(&dataset, 42)?;
//! assert_eq!((splits.train.len(), splits.validation.map(|v| v.len())), (80, Some(20)));
//! # Ok::<(), fashion_mnist::SplitError>(())
//! ```

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Dataset, NUM_CLASSES, PIXELS, Split};

/// How a study divides the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SplitPlan {
    /// Train on all 60,000 training images; test on the official 10,000.
    Full,
    /// Hold out `validation_percent`% of the training images (stratified) for validation; test
    /// on the official test set (S5's 80/20: `Holdout { validation_percent: 20 }`).
    Holdout {
        /// Share of each class of the training images held out for validation, `1..=99`.
        validation_percent: u8,
    },
    /// Pool all 70,000 images and split them stratified into train/validation/test percentages
    /// (S4's 60:20:20: `Pooled { train_percent: 60, validation_percent: 20 }`, test = the rest).
    ///
    /// The pool is the training images followed by the test images: pooled index
    /// `60_000 + i` is test image `i`.
    Pooled {
        /// Share of each class of the pool used for training, at least 1.
        train_percent: u8,
        /// Share of each class of the pool used for validation, at least 1; with
        /// `train_percent` at most 99, so the test part is not empty.
        validation_percent: u8,
    },
}

/// The three parts a plan produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// The images to train on.
    pub train: Split,
    /// The images to validate on (early stopping, model selection); `None` for
    /// [`SplitPlan::Full`].
    pub validation: Option<Split>,
    /// The images to report the final accuracy on.
    pub test: Split,
}

/// Why a plan cannot divide a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// A percentage leaves a part with no share: a percentage is 0, a holdout percentage is 100
    /// or more, or a pooled plan's train and validation percentages sum to 100 or more.
    #[error(
        "{plan:?} leaves a part without images: each percentage must be at least 1 and the \
         percentages must sum to at most 99"
    )]
    BadPercentages {
        /// The rejected plan.
        plan: SplitPlan,
    },
    /// The percentages are valid, but on this dataset rounding leaves a part with no image
    /// (a dataset too small for the plan).
    #[error("{plan:?} leaves the {part} part without images on a set of {images} images")]
    EmptyPart {
        /// The plan.
        plan: SplitPlan,
        /// The empty part: `"train"`, `"validation"` or `"test"`.
        part: &'static str,
        /// Images in the set divided.
        images: usize,
    },
    /// A label of the dataset is outside `0..NUM_CLASSES`.
    #[error("{split} label {label} at index {index} is outside 0..=9")]
    BadLabel {
        /// The dataset split holding it: `"train"` or `"test"`.
        split: &'static str,
        /// Index of the image in that split.
        index: usize,
        /// The label.
        label: u8,
    },
    /// A split of the dataset does not hold exactly `PIXELS` pixels per label.
    #[error("{split} split holds {pixels} pixels for {labels} labels (expected 784 per label)")]
    Ragged {
        /// The dataset split: `"train"` or `"test"`.
        split: &'static str,
        /// Length of its `images`.
        pixels: usize,
        /// Length of its `labels`.
        labels: usize,
    },
}

impl SplitPlan {
    /// Divides `dataset` as the plan says, shuffling with a `ChaCha8Rng` seeded from `seed`
    /// (see the [module docs](self) for the exact procedure). [`SplitPlan::Full`] clones the
    /// dataset's splits and ignores the seed.
    pub fn apply(&self, dataset: &Dataset, seed: u64) -> Result<Splits, SplitError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match *self {
            SplitPlan::Full => Ok(Splits {
                train: dataset.train.clone(),
                validation: None,
                test: dataset.test.clone(),
            }),
            SplitPlan::Holdout { validation_percent } => {
                if !(1..=99).contains(&validation_percent) {
                    return Err(SplitError::BadPercentages { plan: *self });
                }
                check(&dataset.train, "train")?;
                let [validation, train] = self.divide(
                    &dataset.train,
                    [validation_percent],
                    ["validation", "train"],
                    &mut rng,
                )?;
                Ok(Splits {
                    train,
                    validation: Some(validation),
                    test: dataset.test.clone(),
                })
            }
            SplitPlan::Pooled {
                train_percent,
                validation_percent,
            } => {
                if train_percent == 0
                    || validation_percent == 0
                    || u16::from(train_percent) + u16::from(validation_percent) > 99
                {
                    return Err(SplitError::BadPercentages { plan: *self });
                }
                check(&dataset.train, "train")?;
                check(&dataset.test, "test")?;
                let pool = dataset.train.concat(&dataset.test);
                let [train, validation, test] = self.divide(
                    &pool,
                    [train_percent, validation_percent],
                    ["train", "validation", "test"],
                    &mut rng,
                )?;
                Ok(Splits {
                    train,
                    validation: Some(validation),
                    test,
                })
            }
        }
    }

    /// Cuts `set` class by class into `P + 1` parts: part `k < P` takes `percents[k]`% of each
    /// class, the last part the rest. `set` must have passed [`check`].
    fn divide<const P: usize, const N: usize>(
        &self,
        set: &Split,
        percents: [u8; P],
        names: [&'static str; N],
        rng: &mut ChaCha8Rng,
    ) -> Result<[Split; N], SplitError> {
        let indices: [Vec<usize>; N] = stratify(&set.labels, &percents, rng);
        for (part, name) in indices.iter().zip(names) {
            if part.is_empty() {
                return Err(SplitError::EmptyPart {
                    plan: *self,
                    part: name,
                    images: set.len(),
                });
            }
        }
        Ok(indices.map(|part| set.select(&part)))
    }
}

/// `round(n * percent / 100)`, half rounding up.
fn share(n: usize, percent: u8) -> usize {
    (n * usize::from(percent) + 50) / 100
}

/// Per class (in order `0..NUM_CLASSES`): shuffles the class's indices with `rng`, gives part
/// `k < percents.len()` the next `share(n_class, percents[k])` of them and the last part the rest.
/// Each part comes back sorted. Labels must be `< NUM_CLASSES`; `N` must be `percents.len() + 1`.
fn stratify<const N: usize>(
    labels: &[u8],
    percents: &[u8],
    rng: &mut ChaCha8Rng,
) -> [Vec<usize>; N] {
    debug_assert_eq!(N, percents.len() + 1);
    let mut by_class: [Vec<usize>; NUM_CLASSES] = Default::default();
    for (i, &label) in labels.iter().enumerate() {
        by_class[usize::from(label)].push(i);
    }
    let mut parts: [Vec<usize>; N] = std::array::from_fn(|_| Vec::new());
    for class in &mut by_class {
        class.shuffle(rng);
        let mut rest: &[usize] = class;
        for (part, &percent) in parts.iter_mut().zip(percents) {
            let (taken, left) = rest.split_at(share(class.len(), percent).min(rest.len()));
            part.extend_from_slice(taken);
            rest = left;
        }
        if let Some(last) = parts.last_mut() {
            last.extend_from_slice(rest);
        }
    }
    for part in &mut parts {
        part.sort_unstable();
    }
    parts
}

/// Checks that `split` holds `PIXELS` pixels per label and every label is a class.
fn check(split: &Split, name: &'static str) -> Result<(), SplitError> {
    if split.images.len() != split.labels.len() * PIXELS {
        return Err(SplitError::Ragged {
            split: name,
            pixels: split.images.len(),
            labels: split.labels.len(),
        });
    }
    match split
        .labels
        .iter()
        .position(|&l| usize::from(l) >= NUM_CLASSES)
    {
        Some(index) => Err(SplitError::BadLabel {
            split: name,
            index,
            label: split.labels[index],
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` images whose first two pixels hold a unique id (`id % 256`, `id / 256`) starting at
    /// `first_id`; the label is `id % 10`, so classes are interleaved.
    fn numbered(first_id: usize, n: usize) -> Split {
        let mut images = vec![0u8; n * PIXELS];
        let mut labels = Vec::with_capacity(n);
        for (k, image) in images.chunks_exact_mut(PIXELS).enumerate() {
            let id = first_id + k;
            image[0] = u8::try_from(id % 256).unwrap();
            image[1] = u8::try_from(id / 256).unwrap();
            image[2] = 0xA5;
            labels.push(u8::try_from(id % 10).unwrap());
        }
        Split { images, labels }
    }

    /// 50 training images per class (ids 0..500) and 20 test images per class (ids 500..700).
    fn synthetic() -> Dataset {
        Dataset {
            train: numbered(0, 500),
            test: numbered(500, 200),
        }
    }

    fn ids(split: &Split) -> Vec<usize> {
        (0..split.len())
            .map(|i| {
                let image = split.image(i);
                usize::from(image[0]) + 256 * usize::from(image[1])
            })
            .collect()
    }

    fn per_class(split: &Split) -> [usize; NUM_CLASSES] {
        let mut counts = [0; NUM_CLASSES];
        for &l in &split.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Each part's images are intact (label matches id, marker pixel set), in ascending id order,
    /// and the parts together hold `expected` ids exactly once.
    fn assert_partition(parts: &[&Split], expected: std::ops::Range<usize>) {
        let mut all = Vec::new();
        for part in parts {
            let part_ids = ids(part);
            assert!(part_ids.windows(2).all(|w| w[0] < w[1]), "{part_ids:?}");
            for (i, &id) in part_ids.iter().enumerate() {
                assert_eq!(usize::from(part.labels[i]), id % 10);
                assert_eq!(part.image(i)[2], 0xA5);
            }
            all.extend(part_ids);
        }
        all.sort_unstable();
        assert_eq!(all, expected.collect::<Vec<_>>());
    }

    #[test]
    fn holdout_80_20_gives_exact_per_class_counts() {
        let dataset = synthetic();
        let splits = SplitPlan::Holdout {
            validation_percent: 20,
        }
        .apply(&dataset, 7)
        .unwrap();
        let validation = splits.validation.unwrap();
        assert_eq!(per_class(&splits.train), [40; NUM_CLASSES]);
        assert_eq!(per_class(&validation), [10; NUM_CLASSES]);
        assert_eq!(splits.test, dataset.test);
        assert_partition(&[&splits.train, &validation], 0..500);
    }

    #[test]
    fn pooled_60_20_20_divides_all_images_by_class() {
        // 70 pooled images per class: 42 / 14 / 14.
        let splits = SplitPlan::Pooled {
            train_percent: 60,
            validation_percent: 20,
        }
        .apply(&synthetic(), 7)
        .unwrap();
        let validation = splits.validation.unwrap();
        assert_eq!(per_class(&splits.train), [42; NUM_CLASSES]);
        assert_eq!(per_class(&validation), [14; NUM_CLASSES]);
        assert_eq!(per_class(&splits.test), [14; NUM_CLASSES]);
        assert_partition(&[&splits.train, &validation, &splits.test], 0..700);
        // The pool mixes official train and test images in every part.
        assert!(ids(&splits.test).iter().any(|&id| id < 500));
        assert!(ids(&splits.train).iter().any(|&id| id >= 500));
    }

    #[test]
    fn counts_round_half_up_per_class() {
        // Class c has 5 + c images; 25% of 5..=14 is 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3,
        // 3.25, 3.5, rounded half up.
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for class in 0..10u8 {
            for _ in 0..5 + class {
                images.extend_from_slice(&[0; PIXELS]);
                labels.push(class);
            }
        }
        let dataset = Dataset {
            train: Split { images, labels },
            test: numbered(0, 10),
        };
        let splits = SplitPlan::Holdout {
            validation_percent: 25,
        }
        .apply(&dataset, 1)
        .unwrap();
        let expected = [1, 2, 2, 2, 2, 3, 3, 3, 3, 4];
        assert_eq!(per_class(&splits.validation.unwrap()), expected);
        let train: Vec<usize> = (0..10).map(|c| 5 + c - expected[c]).collect();
        assert_eq!(per_class(&splits.train).to_vec(), train);
    }

    #[test]
    fn same_seed_same_splits_other_seed_other_splits() {
        let dataset = synthetic();
        for plan in [
            SplitPlan::Holdout {
                validation_percent: 20,
            },
            SplitPlan::Pooled {
                train_percent: 60,
                validation_percent: 20,
            },
        ] {
            let a = plan.apply(&dataset, 11).unwrap();
            assert_eq!(a, plan.apply(&dataset, 11).unwrap());
            let b = plan.apply(&dataset, 12).unwrap();
            assert_ne!(ids(&a.train), ids(&b.train));
            assert_ne!(a.validation, b.validation);
        }
    }

    #[test]
    fn the_seeded_split_does_not_drift() {
        // Produced by this implementation (rand 0.10.3, rand_chacha 0.10.0): the first ten
        // validation ids of the 80/20 holdout of `synthetic()` with seed 0. If this changes, a
        // model's recorded seed no longer reproduces the split it was trained on.
        let splits = SplitPlan::Holdout {
            validation_percent: 20,
        }
        .apply(&synthetic(), 0)
        .unwrap();
        let first: Vec<usize> = ids(&splits.validation.unwrap())[..10].to_vec();
        assert_eq!(first, GOLDEN_FIRST_VALIDATION_IDS);
    }

    const GOLDEN_FIRST_VALIDATION_IDS: [usize; 10] = [1, 10, 11, 18, 21, 26, 27, 34, 37, 38];

    #[test]
    fn full_clones_and_ignores_the_seed() {
        let dataset = synthetic();
        let splits = SplitPlan::Full.apply(&dataset, 3).unwrap();
        assert_eq!(splits.train, dataset.train);
        assert_eq!(splits.validation, None);
        assert_eq!(splits.test, dataset.test);
        assert_eq!(splits, SplitPlan::Full.apply(&dataset, 4).unwrap());
    }

    #[test]
    fn percentages_that_empty_a_part_are_rejected() {
        let dataset = synthetic();
        for plan in [
            SplitPlan::Holdout {
                validation_percent: 0,
            },
            SplitPlan::Holdout {
                validation_percent: 100,
            },
            SplitPlan::Holdout {
                validation_percent: 150,
            },
            SplitPlan::Pooled {
                train_percent: 0,
                validation_percent: 20,
            },
            SplitPlan::Pooled {
                train_percent: 60,
                validation_percent: 0,
            },
            SplitPlan::Pooled {
                train_percent: 80,
                validation_percent: 20,
            },
            SplitPlan::Pooled {
                train_percent: 200,
                validation_percent: 200,
            },
        ] {
            assert_eq!(
                plan.apply(&dataset, 0),
                Err(SplitError::BadPercentages { plan }),
                "{plan:?}"
            );
        }
        // Valid percentages can still empty a part after rounding: 98% and 1% of 70 are 68.6
        // and 0.7, rounded 69 and 1, leaving no test image; 97% leaves one per class.
        let plan = SplitPlan::Pooled {
            train_percent: 98,
            validation_percent: 1,
        };
        assert_eq!(
            plan.apply(&dataset, 0),
            Err(SplitError::EmptyPart {
                plan,
                part: "test",
                images: 700
            })
        );
        let splits = SplitPlan::Pooled {
            train_percent: 97,
            validation_percent: 1,
        }
        .apply(&dataset, 0)
        .unwrap();
        assert_eq!(per_class(&splits.test), [1; NUM_CLASSES]);
    }

    #[test]
    fn a_dataset_too_small_for_the_plan_is_rejected() {
        // One image per class: 20% of 1 rounds to 0, so validation would be empty.
        let dataset = Dataset {
            train: numbered(0, 10),
            test: numbered(10, 10),
        };
        let plan = SplitPlan::Holdout {
            validation_percent: 20,
        };
        assert_eq!(
            plan.apply(&dataset, 0),
            Err(SplitError::EmptyPart {
                plan,
                part: "validation",
                images: 10
            })
        );
    }

    #[test]
    fn bad_labels_and_ragged_splits_are_errors_not_panics() {
        let mut dataset = synthetic();
        dataset.test.labels[3] = 10;
        let pooled = SplitPlan::Pooled {
            train_percent: 60,
            validation_percent: 20,
        };
        assert_eq!(
            pooled.apply(&dataset, 0),
            Err(SplitError::BadLabel {
                split: "test",
                index: 3,
                label: 10
            })
        );
        dataset.train.images.pop();
        assert_eq!(
            pooled.apply(&dataset, 0),
            Err(SplitError::Ragged {
                split: "train",
                pixels: 500 * PIXELS - 1,
                labels: 500
            })
        );
    }

    #[test]
    fn plans_serialise_with_their_field_names() {
        let plans = [
            (SplitPlan::Full, r#""Full""#),
            (
                SplitPlan::Holdout {
                    validation_percent: 20,
                },
                r#"{"Holdout":{"validation_percent":20}}"#,
            ),
            (
                SplitPlan::Pooled {
                    train_percent: 60,
                    validation_percent: 20,
                },
                r#"{"Pooled":{"train_percent":60,"validation_percent":20}}"#,
            ),
        ];
        for (plan, json) in plans {
            assert_eq!(serde_json::to_string(&plan).unwrap(), json);
            assert_eq!(serde_json::from_str::<SplitPlan>(json).unwrap(), plan);
        }
    }
}
