//! Principal component analysis of images, in f64 with nalgebra.
//!
//! For `n` images of `dim` pixels (`u8`, row after row):
//!
//! 1. scaling: every pixel is divided by 255, so values lie in `[0, 1]` as the models see them
//!    before their normalisation; pixels are **not** standardised (divided by their spread):
//!    the border pixels are almost always 0, and standardising would blow their rare ink up to
//!    the weight of the garment's pixels;
//! 2. centring: the mean image `mu` (per pixel, over the `n` images) is subtracted;
//! 3. the `dim x dim` sample covariance `C = sum_i (x_i - mu)(x_i - mu)^T / (n - 1)` is summed
//!    in f64, in blocks of [`BLOCK`] images, in image order;
//! 4. `C = V diag(lambda) V^T` by nalgebra's [`SymmetricEigen`]; components are sorted by
//!    decreasing variance `lambda_k`, and each is given the sign that makes its entry of largest
//!    magnitude positive (the first such entry on a tie), so the result does not depend on the
//!    solver's arbitrary signs;
//! 5. the explained-variance ratio of component `k` is `lambda_k / trace(C)`, and an image's
//!    coordinates are `V^T (x / 255 - mu)`.

use nalgebra::{DMatrix, SymmetricEigen};

/// Images whose centred pixels are multiplied together at once when summing the covariance.
pub const BLOCK: usize = 4096;

/// Why a PCA cannot be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PcaError {
    /// Fewer than two images, or images of no pixels: no covariance to estimate.
    #[error("a PCA needs at least two images of at least one pixel ({images} of {dim} pixels)")]
    TooFew {
        /// Images given.
        images: usize,
        /// Pixels per image.
        dim: usize,
    },
    /// The pixel buffer is not a whole number of images.
    #[error("{len} pixels do not make whole images of {dim} pixels")]
    Ragged {
        /// Length of the pixel buffer.
        len: usize,
        /// Pixels per image.
        dim: usize,
    },
    /// The images do not vary at all: every ratio would be 0/0.
    #[error("the {images} images are all the same: no variance to explain")]
    NoVariance {
        /// Images given.
        images: usize,
    },
    /// The eigensolver did not converge (never seen on a covariance matrix).
    #[error("the symmetric eigendecomposition of the {dim}x{dim} covariance did not converge")]
    NoConvergence {
        /// Side of the covariance matrix.
        dim: usize,
    },
}

/// A fitted PCA: the mean image and the components by decreasing variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Images it was fitted on.
    pub images: usize,
    /// The mean image, pixels scaled to `[0, 1]`.
    pub mean: Vec<f64>,
    /// Variance along each component (the covariance's eigenvalues), largest first; tiny
    /// negative rounding residues of a singular covariance are clamped to 0.
    pub variances: Vec<f64>,
    /// The components as columns (`dim x dim`), in the order of [`Pca::variances`], unit
    /// length, signs as the [module docs](self) say.
    pub components: DMatrix<f64>,
}

impl Pca {
    /// Fits a PCA to the images in `pixels`, `dim` pixels each (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`PcaError::Ragged`] if `pixels` is not whole images, [`PcaError::TooFew`] under two
    /// images, [`PcaError::NoVariance`] if they are all equal, [`PcaError::NoConvergence`] if
    /// the eigensolver gives up.
    pub fn fit(pixels: &[u8], dim: usize) -> Result<Self, PcaError> {
        if dim == 0 || pixels.len() % dim != 0 {
            return Err(if dim == 0 {
                PcaError::TooFew { images: 0, dim }
            } else {
                PcaError::Ragged {
                    len: pixels.len(),
                    dim,
                }
            });
        }
        let n = pixels.len() / dim;
        if n < 2 {
            return Err(PcaError::TooFew { images: n, dim });
        }
        // Sums of u8 are exact in u64; one division per pixel.
        let mut sums = vec![0u64; dim];
        for image in pixels.chunks_exact(dim) {
            for (s, &p) in sums.iter_mut().zip(image) {
                *s += u64::from(p);
            }
        }
        let mean: Vec<f64> = sums
            .iter()
            .map(|&s| s as f64 / (255.0 * n as f64))
            .collect();

        let mut covariance = DMatrix::<f64>::zeros(dim, dim);
        for block in pixels.chunks(BLOCK * dim) {
            let rows = block.len() / dim;
            let centred = DMatrix::from_row_iterator(
                rows,
                dim,
                block
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| f64::from(p) / 255.0 - mean[i % dim]),
            );
            covariance += centred.transpose() * &centred;
        }
        covariance /= (n - 1) as f64;
        if covariance.trace() <= 0.0 {
            return Err(PcaError::NoVariance { images: n });
        }

        let eigen = SymmetricEigen::try_new(covariance, f64::EPSILON, 0)
            .ok_or(PcaError::NoConvergence { dim })?;
        let mut order: Vec<usize> = (0..dim).collect();
        // Largest first; the index breaks exact ties so the order is fixed.
        order.sort_by(|&a, &b| {
            eigen.eigenvalues[b]
                .total_cmp(&eigen.eigenvalues[a])
                .then(a.cmp(&b))
        });
        let variances = order
            .iter()
            .map(|&k| eigen.eigenvalues[k].max(0.0))
            .collect();
        let mut components = DMatrix::<f64>::zeros(dim, dim);
        for (to, &from) in order.iter().enumerate() {
            let column = eigen.eigenvectors.column(from);
            components.set_column(to, &(column * sign_of_largest(column.iter().copied())));
        }
        Ok(Self {
            images: n,
            mean,
            variances,
            components,
        })
    }

    /// Share of the total variance along each component, largest first (they sum to 1).
    pub fn explained_ratios(&self) -> Vec<f64> {
        let total: f64 = self.variances.iter().sum();
        self.variances.iter().map(|v| v / total).collect()
    }

    /// The fewest leading components that together explain at least `fraction` of the variance
    /// (all of them if rounding keeps the sum just under it).
    pub fn components_for(&self, fraction: f64) -> usize {
        let mut cumulative = 0.0;
        for (k, ratio) in self.explained_ratios().into_iter().enumerate() {
            cumulative += ratio;
            if cumulative >= fraction {
                return k + 1;
            }
        }
        self.variances.len()
    }

    /// The coordinates of `image` (`dim` pixels, `u8`) on the first `k` components.
    ///
    /// # Panics
    ///
    /// If `image` has fewer pixels than the PCA's images or `k` is more than their pixels.
    pub fn project(&self, image: &[u8], k: usize) -> Vec<f64> {
        (0..k)
            .map(|c| {
                self.components
                    .column(c)
                    .iter()
                    .zip(image)
                    .zip(&self.mean)
                    .map(|((w, &p), m)| w * (f64::from(p) / 255.0 - m))
                    .sum()
            })
            .collect()
    }
}

/// `-1.0` if the entry of largest magnitude (the first on a tie) is negative, else `1.0`.
fn sign_of_largest(entries: impl Iterator<Item = f64>) -> f64 {
    let largest = entries
        .reduce(|best, v| if v.abs() > best.abs() { v } else { best })
        .unwrap_or(0.0);
    if largest < 0.0 { -1.0 } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points `a * (1, 1) + b * (1, -1) + (100, 100)` for every `a` in `-20, 0, 20` and `b` in
    /// `-5, 5`: `a` and `b` are uncorrelated, so the components are `(1, 1)/sqrt 2` with variance
    /// `2 var(a)` and `(1, -1)/sqrt 2` with variance `2 var(b)` (in pixels / 255).
    fn two_directions() -> Vec<u8> {
        let mut pixels = Vec::new();
        for a in [-20i32, 0, 20] {
            for b in [-5i32, 5] {
                for v in [100 + a + b, 100 + a - b] {
                    pixels.push(u8::try_from(v).unwrap());
                }
            }
        }
        pixels
    }

    #[test]
    fn finds_known_components_and_variances() {
        let pca = Pca::fit(&two_directions(), 2).unwrap();
        assert_eq!(pca.images, 6);
        let s = 1.0 / 255.0;
        for (m, expected) in pca.mean.iter().zip([100.0 * s, 100.0 * s]) {
            assert!((m - expected).abs() < 1e-15, "{m}");
        }
        // var(a) over six points (n - 1 = 5): 4 * 400 / 5 = 320; var(b) = 6 * 25 / 5 = 30.
        let expected = [2.0 * 320.0 * s * s, 2.0 * 30.0 * s * s];
        for (v, e) in pca.variances.iter().zip(expected) {
            assert!((v - e).abs() < 1e-12, "{v} vs {e}");
        }
        let h = std::f64::consts::FRAC_1_SQRT_2;
        // Signs: the largest entry positive, the first on a tie.
        let expected = [[h, h], [h, -h]];
        for (k, e) in expected.iter().enumerate() {
            for (got, want) in pca.components.column(k).iter().zip(e) {
                assert!((got - want).abs() < 1e-12, "component {k}: {got} vs {want}");
            }
        }
        let ratios = pca.explained_ratios();
        assert!((ratios[0] - 640.0 / 700.0).abs() < 1e-12);
        assert!((ratios.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(pca.components_for(0.9), 1);
        assert_eq!(pca.components_for(0.95), 2);
        // The point a = 20, b = 5 (pixels 125, 115) lies at (20 sqrt 2, 5 sqrt 2) / 255.
        let p = pca.project(&[125, 115], 2);
        let r2 = std::f64::consts::SQRT_2;
        assert!((p[0] - 20.0 * r2 * s).abs() < 1e-12, "{p:?}");
        assert!((p[1] - 5.0 * r2 * s).abs() < 1e-12, "{p:?}");
    }

    #[test]
    fn a_constant_pixel_gets_no_variance_and_comes_last() {
        // Three pixels: the first two as above, the third always 7. Its component has variance
        // 0 and comes last.
        let pixels: Vec<u8> = two_directions()
            .chunks(2)
            .flat_map(|p| [p[0], p[1], 7])
            .collect();
        let pca = Pca::fit(&pixels, 3).unwrap();
        assert!(pca.variances[2].abs() < 1e-15, "{:?}", pca.variances);
        assert!((pca.components[(2, 2)].abs() - 1.0).abs() < 1e-12);
        assert_eq!(pca.components_for(1.0 - 1e-9), 2);
    }

    #[test]
    fn the_largest_entry_sets_the_sign_and_the_first_wins_a_tie() {
        assert_eq!(sign_of_largest([0.1, -0.9, 0.5].into_iter()), -1.0);
        assert_eq!(sign_of_largest([0.1, 0.9, -0.5].into_iter()), 1.0);
        assert_eq!(sign_of_largest([-0.7, 0.7].into_iter()), -1.0);
        assert_eq!(sign_of_largest([0.7, -0.7].into_iter()), 1.0);
        assert_eq!(sign_of_largest(std::iter::empty()), 1.0);
    }

    #[test]
    fn blocks_do_not_change_the_covariance() {
        // More images than one block, so the sum runs over two: the same as fitting on a
        // duplicate-free set must hold exactly for the mean and closely for the variances.
        let one: Vec<u8> = two_directions();
        let many: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let pca = Pca::fit(&many, 2).unwrap();
        assert_eq!(pca.images, 6000);
        assert!(pca.images > BLOCK);
        let small = Pca::fit(&one, 2).unwrap();
        // Same points repeated: the covariance differs only by the factor (n - 1) / n.
        let scale = (5.0 / 6.0) / (5999.0 / 6000.0);
        for (a, b) in pca.variances.iter().zip(&small.variances) {
            assert!((a - b * scale).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            Pca::fit(&[1, 2, 3], 2),
            Err(PcaError::Ragged { len: 3, dim: 2 })
        );
        assert_eq!(
            Pca::fit(&[1, 2], 2),
            Err(PcaError::TooFew { images: 1, dim: 2 })
        );
        assert_eq!(
            Pca::fit(&[], 0),
            Err(PcaError::TooFew { images: 0, dim: 0 })
        );
        assert_eq!(
            Pca::fit(&[9; 8], 2),
            Err(PcaError::NoVariance { images: 4 })
        );
    }
}
