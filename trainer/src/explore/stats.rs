//! Counts and means of a split, class by class.

use fashion_mnist::{NUM_CLASSES, PIXELS, Split};

/// What one split holds, class by class.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitStats {
    /// The split's name on the page and in the legend (`train`, `60/20/20 validation`).
    pub name: String,
    /// Images of each class.
    pub counts: [u64; NUM_CLASSES],
    /// Mean pixel value (0 black to 255 white) over every pixel of each class's images; `None`
    /// for a class without images.
    pub mean_pixel: [Option<f64>; NUM_CLASSES],
    /// Mean pixel value over the whole split; `None` if it is empty.
    pub overall_mean: Option<f64>,
}

impl SplitStats {
    /// Counts and mean pixel values of `split`, which is called `name`.
    ///
    /// Labels outside `0..NUM_CLASSES` (which [`fashion_mnist::load`] never returns) are not
    /// counted; a split holding fewer pixels than its labels need is counted only as far as
    /// its pixels go.
    pub fn of(name: &str, split: &Split) -> Self {
        let mut counts = [0u64; NUM_CLASSES];
        let mut sums = [0u64; NUM_CLASSES];
        for (&label, image) in split.labels.iter().zip(split.images.chunks_exact(PIXELS)) {
            let c = usize::from(label);
            if c >= NUM_CLASSES {
                continue;
            }
            counts[c] += 1;
            sums[c] += image.iter().map(|&p| u64::from(p)).sum::<u64>();
        }
        let mean =
            |sum: u64, count: u64| (count > 0).then(|| sum as f64 / (count as f64 * PIXELS as f64));
        Self {
            name: name.to_string(),
            counts,
            mean_pixel: std::array::from_fn(|c| mean(sums[c], counts[c])),
            overall_mean: mean(sums.iter().sum(), counts.iter().sum()),
        }
    }

    /// Images in the split (of the ten classes).
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The mean image of each class of `split` (pixel values 0 to 255, row after row); an empty
/// class gets an all-zero image.
pub fn mean_images(split: &Split) -> Vec<Vec<f64>> {
    let mut sums = vec![[0u64; PIXELS]; NUM_CLASSES];
    let mut counts = [0u64; NUM_CLASSES];
    for (&label, image) in split.labels.iter().zip(split.images.chunks_exact(PIXELS)) {
        let c = usize::from(label);
        let (Some(sum), Some(count)) = (sums.get_mut(c), counts.get_mut(c)) else {
            continue;
        };
        *count += 1;
        for (s, &p) in sum.iter_mut().zip(image) {
            *s += u64::from(p);
        }
    }
    sums.iter()
        .zip(counts)
        .map(|(sum, count)| {
            sum.iter()
                .map(|&s| {
                    if count == 0 {
                        0.0
                    } else {
                        s as f64 / count as f64
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three images: class 0 all 10, class 0 all 30, class 2 all 255; and a label 12 that is
    /// not a class.
    fn split() -> Split {
        Split {
            images: [10u8, 30, 255, 99]
                .iter()
                .flat_map(|&v| [v; PIXELS])
                .collect(),
            labels: vec![0, 0, 2, 12],
        }
    }

    #[test]
    fn counts_and_means_by_class() {
        let s = SplitStats::of("tiny", &split());
        assert_eq!(s.name, "tiny");
        assert_eq!(s.counts, [2, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(s.total(), 3);
        assert_eq!(s.mean_pixel[0], Some(20.0));
        assert_eq!(s.mean_pixel[1], None);
        assert_eq!(s.mean_pixel[2], Some(255.0));
        assert_eq!(s.overall_mean, Some((10.0 + 30.0 + 255.0) / 3.0));
        let empty = SplitStats::of(
            "empty",
            &Split {
                images: vec![],
                labels: vec![],
            },
        );
        assert_eq!((empty.total(), empty.overall_mean), (0, None));
    }

    #[test]
    fn mean_images_average_each_class() {
        let means = mean_images(&split());
        assert_eq!(means.len(), NUM_CLASSES);
        assert_eq!(means[0], vec![20.0; PIXELS]);
        assert_eq!(means[1], vec![0.0; PIXELS]);
        assert_eq!(means[2], vec![255.0; PIXELS]);
    }
}
