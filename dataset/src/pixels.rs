//! Input normalisation: how a raw pixel becomes the network's input, in float for training and
//! exactly representable in int8 for inference.

/// Fashion-MNIST pixel mean after /255 (reference-studies.md).
pub const PIXEL_MEAN: f64 = 0.2860;
/// Fashion-MNIST pixel standard deviation after /255.
pub const PIXEL_STD: f64 = 0.3530;

/// The raw pixel value treated as the mean: `round(255 * PIXEL_MEAN)`.
///
/// Rounding the mean to a whole pixel value makes the input normalisation exactly representable
/// in int8 (`q = pixel - 128`, zero point `PIXEL_ZERO - 128`), so the float model and the int8
/// model see the very same input.
pub const PIXEL_ZERO: i32 = 73;

/// Scale of one pixel step after normalisation: `1 / (255 * PIXEL_STD)`.
#[allow(clippy::cast_possible_truncation)] // scales are stored as f32, as TFLite stores them
pub fn pixel_scale() -> f32 {
    (1.0 / (255.0 * PIXEL_STD)) as f32
}

/// Normalises a raw pixel exactly as the int8 input does: `(p - PIXEL_ZERO) * pixel_scale()`.
///
/// ```
/// assert_eq!(fashion_mnist::normalise(73), 0.0);
/// ```
pub fn normalise(pixel: u8) -> f32 {
    (i32::from(pixel) - PIXEL_ZERO) as f32 * pixel_scale()
}

/// Normalises a pixel value given in float (an interpolated, augmented pixel in `0.0..=255.0`)
/// by the same rule as [`normalise`]; for a whole value the two agree exactly.
///
/// ```
/// assert_eq!(fashion_mnist::normalise_value(200.0), fashion_mnist::normalise(200));
/// ```
pub fn normalise_value(value: f32) -> f32 {
    (value - PIXEL_ZERO as f32) * pixel_scale()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_normalisation_matches_the_dataset_statistics() {
        // 255 * 0.2860 = 72.93, so pixel 73 is the mean, and one std is 255*0.353 pixels.
        assert_eq!(normalise(73), 0.0);
        assert!((normalise(255) - (1.0 - 73.0 / 255.0) / 0.353).abs() < 1e-5);
        for p in 0..=255u8 {
            assert_eq!(normalise_value(f32::from(p)), normalise(p));
        }
    }

    #[test]
    fn the_zero_pixel_is_the_rounded_mean() {
        assert_eq!(f64::from(PIXEL_ZERO), (255.0 * PIXEL_MEAN).round());
    }
}
