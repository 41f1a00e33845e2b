//! Seeded image augmentation: random rotation, shift, zoom and horizontal flip, as Keras'
//! `ImageDataGenerator(rotation_range, width_shift_range, height_shift_range, zoom_range,
//! horizontal_flip, fill_mode="constant", cval=0)` does them.
//!
//! Each image gets one affine transform about the image centre `(13.5, 13.5)`. Every output
//! pixel is mapped back to a point of the source image and read there with bilinear
//! interpolation; source pixels outside the image count as 0 (Keras' `fill_mode="constant"`
//! with `cval=0`; Fashion-MNIST backgrounds are 0, so what the transform brings into the frame
//! is black, not smeared edges). Within one pixel of the border the interpolation fades
//! towards that 0, as scipy's `grid-constant` mode does; Keras passes `constant`, which returns
//! 0 there instead of interpolating. The two differ only on that outer ring, which is
//! background in Fashion-MNIST images.
//!
//! # Coordinates and the transform
//! `x` is the column (rightwards), `y` the row (downwards), pixel `(x, y)` sits at
//! `image[28 * y + x]`. With `c = (13.5, 13.5)`, the drawn angle `θ`, shift `d = (dx, dy)` in
//! pixels, zoom factor `z` and `F` the left-right mirror (`x -> -x`) when flipping, the output
//! pixel `o` reads the source at
//!
//! ```text
//! s = c + R(θ)ᵀ (z F (o - c) - d),    R(θ)ᵀ = [[cos θ, -sin θ], [sin θ, cos θ]]
//! ```
//!
//! That is Keras' composition (rotation, then shift, then zoom, in the output-to-input map;
//! flip applied last to the output). Seen from the garment, in this order: it is turned by `θ`
//! counter-clockwise on screen, moved by `d` (positive `dx` right, positive `dy` down), scaled
//! by `1 / z` about the centre (`z > 1` shows it smaller, as Keras' `zoom_range` does) and,
//! with the flip, mirrored left-right.

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::{PIXELS, SIDE};

/// The image centre, in pixel coordinates, that rotation and zoom are about.
const CENTRE: f32 = (SIDE as f32 - 1.0) / 2.0;

/// Random augmentation ranges; [`Augmentation::apply`] draws one transform per image.
///
/// Parameters must be finite, and `zoom < 1` so that the zoom factor stays positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Augmentation {
    /// Maximum rotation in degrees (uniform in ±rotation_degrees).
    pub rotation_degrees: f32,
    /// Maximum shift as a fraction of the side (uniform in ±shift, x and y drawn independently).
    pub shift: f32,
    /// Maximum zoom (scale uniform in [1 - zoom, 1 + zoom], the same in x and y). As in Keras
    /// the drawn factor divides the garment's size (above 1 shows it smaller); Keras draws x and
    /// y independently, this one factor keeps the aspect ratio.
    pub zoom: f32,
    /// Flip left-right with probability 0.5.
    pub horizontal_flip: bool,
}

impl Augmentation {
    /// No augmentation: [`Augmentation::apply`] returns the image unchanged.
    pub const fn none() -> Self {
        Augmentation {
            rotation_degrees: 0.0,
            shift: 0.0,
            zoom: 0.0,
            horizontal_flip: false,
        }
    }

    /// Writes the augmented copy of `image` (784 u8 pixels, row-major 28x28) into `out` as f32
    /// pixel values in 0..=255 (not normalised), drawing the random parameters from `rng` in a
    /// fixed documented order.
    ///
    /// The draws are always the same five, whatever the configuration, so the rest of the
    /// random stream does not depend on it: a uniform `f32` for the rotation, one for the shift
    /// in x, one for the shift in y, one for the zoom, then a `bool` for the flip (each one
    /// 32-bit word of `rng`). A range of 0 turns its draw into the identity (and
    /// `horizontal_flip: false` ignores the flip draw), so [`Augmentation::none`] writes the
    /// image exactly.
    ///
    /// The parameters are `θ = r (2u - 1)` degrees, `dx = 28 s (2u - 1)` and `dy` likewise
    /// pixels, zoom factor `z = 1 + zoom (2u - 1)`, each `u` uniform in `[0, 1)`; see the
    /// [module docs](self) for the transform they define.
    ///
    /// ```
    /// use fashion_mnist::{Augmentation, PIXELS};
    /// use rand::SeedableRng;
    ///
    /// let image = [7u8; PIXELS];
    /// let mut out = [0.0f32; PIXELS];
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// Augmentation::none().apply(&image, &mut rng, &mut out);
    /// assert_eq!(out, [7.0; PIXELS]);
    /// ```
    pub fn apply(&self, image: &[u8; PIXELS], rng: &mut impl rand::Rng, out: &mut [f32; PIXELS]) {
        self.draw(rng).warp(image, out);
    }

    /// Draws one transform, in the documented order.
    pub(crate) fn draw(&self, rng: &mut impl rand::Rng) -> Transform {
        let mut signed = |range: f32| range * (2.0 * rng.random::<f32>() - 1.0);
        let rotation_degrees = signed(self.rotation_degrees);
        let shift_x = signed(self.shift) * SIDE as f32;
        let shift_y = signed(self.shift) * SIDE as f32;
        let zoom = 1.0 + signed(self.zoom);
        let flip = rng.random::<bool>() && self.horizontal_flip;
        Transform {
            rotation_degrees,
            shift_x,
            shift_y,
            zoom,
            flip,
        }
    }
}

/// One drawn transform, with explicit parameters (see the module docs for their meaning).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Transform {
    /// Counter-clockwise rotation of the content, degrees.
    pub(crate) rotation_degrees: f32,
    /// Rightward shift of the content, pixels.
    pub(crate) shift_x: f32,
    /// Downward shift of the content, pixels.
    pub(crate) shift_y: f32,
    /// Keras' zoom factor: source offset per output offset (`> 1` shows the content smaller).
    pub(crate) zoom: f32,
    /// Mirror left-right.
    pub(crate) flip: bool,
}

impl Transform {
    /// The identity.
    #[cfg(test)]
    pub(crate) const IDENTITY: Transform = Transform {
        rotation_degrees: 0.0,
        shift_x: 0.0,
        shift_y: 0.0,
        zoom: 1.0,
        flip: false,
    };

    /// Writes the transformed `image` into `out`.
    pub(crate) fn warp(&self, image: &[u8; PIXELS], out: &mut [f32; PIXELS]) {
        // s = A o + b, with A = z R(θ)ᵀ F and b = c - A c - R(θ)ᵀ d.
        let (sin, cos) = self.rotation_degrees.to_radians().sin_cos();
        let mirror = if self.flip { -1.0 } else { 1.0 };
        let (a11, a12) = (self.zoom * cos * mirror, -self.zoom * sin);
        let (a21, a22) = (self.zoom * sin * mirror, self.zoom * cos);
        let b1 = CENTRE - (a11 + a12) * CENTRE - (cos * self.shift_x - sin * self.shift_y);
        let b2 = CENTRE - (a21 + a22) * CENTRE - (sin * self.shift_x + cos * self.shift_y);
        let source = padded(image);
        for (y, row) in out.chunks_exact_mut(SIDE).enumerate() {
            let y = y as f32;
            let (row_x, row_y) = (a12 * y + b1, a22 * y + b2);
            for (x, px) in row.iter_mut().enumerate() {
                let x = x as f32;
                *px = bilinear(&source, a11 * x + row_x, a21 * x + row_y);
            }
        }
    }
}

/// Side of the zero-padded source: a ring of zeros one pixel wide before the image and two
/// after, so that a sample point clamped to `-1..=28` and its right and lower neighbours are
/// all inside, with no bounds test per neighbour.
const PADDED: usize = SIDE + 3;

/// `image` as f32, at `(x + 1, y + 1)` of a zero `PADDED x PADDED` square.
fn padded(image: &[u8; PIXELS]) -> [f32; PADDED * PADDED] {
    let mut source = [0.0; PADDED * PADDED];
    for (row, pixels) in source[PADDED..]
        .chunks_exact_mut(PADDED)
        .zip(image.chunks_exact(SIDE))
    {
        for (to, &from) in row[1..].iter_mut().zip(pixels) {
            *to = f32::from(from);
        }
    }
    source
}

/// The image at the real point `(sx, sy)` (image coordinates), interpolating its four
/// neighbouring pixels; pixels outside the image are 0. Clamped to `0..=255` against float
/// rounding.
#[inline]
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // floors in 0..=29 (or NaN: 0)
fn bilinear(source: &[f32; PADDED * PADDED], sx: f32, sy: f32) -> f32 {
    // A point more than one pixel outside the image only has zero neighbours; clamping it to
    // that ring changes nothing and keeps the indices in range (NaN stays NaN and reads 0).
    // Shifted into padded coordinates it is non-negative, so truncation is the floor (and
    // avoids a `floorf` call on x86-64 without SSE4.1).
    let last = SIDE as f32;
    let (px, py) = (sx.clamp(-1.0, last) + 1.0, sy.clamp(-1.0, last) + 1.0);
    let (ix, iy) = (px as i32, py as i32);
    let (tx, ty) = (px - ix as f32, py - iy as f32);
    let i = iy as usize * PADDED + ix as usize;
    let (p00, p10) = (source[i], source[i + 1]);
    let (p01, p11) = (source[i + PADDED], source[i + PADDED + 1]);
    let top = p00 + tx * (p10 - p00);
    let bottom = p01 + tx * (p11 - p01);
    (top + ty * (bottom - top)).clamp(0.0, 255.0)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// A deterministic, asymmetric image with every pixel distinct mod 256.
    fn pattern() -> [u8; PIXELS] {
        std::array::from_fn(|i| u8::try_from((i * 37 + i / SIDE) % 256).unwrap())
    }

    fn px(image: &[u8; PIXELS], x: usize, y: usize) -> f32 {
        f32::from(image[y * SIDE + x])
    }

    fn warped(t: Transform, image: &[u8; PIXELS]) -> [f32; PIXELS] {
        let mut out = [f32::NAN; PIXELS];
        t.warp(image, &mut out);
        out
    }

    fn as_f32(image: &[u8; PIXELS]) -> [f32; PIXELS] {
        image.map(f32::from)
    }

    const STRONG: Augmentation = Augmentation {
        rotation_degrees: 30.0,
        shift: 0.2,
        zoom: 0.3,
        horizontal_flip: true,
    };

    #[test]
    fn no_augmentation_is_the_identity() {
        let image = pattern();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut out = [f32::NAN; PIXELS];
        for _ in 0..20 {
            Augmentation::none().apply(&image, &mut rng, &mut out);
            assert_eq!(out, as_f32(&image));
        }
        assert_eq!(warped(Transform::IDENTITY, &image), as_f32(&image));
    }

    #[test]
    fn a_one_pixel_shift_moves_the_pattern_by_one_pixel() {
        let image = pattern();
        let right = warped(
            Transform {
                shift_x: 1.0,
                ..Transform::IDENTITY
            },
            &image,
        );
        let down = warped(
            Transform {
                shift_y: 1.0,
                ..Transform::IDENTITY
            },
            &image,
        );
        for y in 0..SIDE {
            for x in 0..SIDE {
                let from_left = if x == 0 { 0.0 } else { px(&image, x - 1, y) };
                let from_above = if y == 0 { 0.0 } else { px(&image, x, y - 1) };
                assert_eq!(right[y * SIDE + x], from_left, "({x}, {y})");
                assert_eq!(down[y * SIDE + x], from_above, "({x}, {y})");
            }
        }
    }

    #[test]
    fn a_half_pixel_shift_averages_neighbours_and_fades_in_black() {
        let image = pattern();
        let out = warped(
            Transform {
                shift_x: 0.5,
                ..Transform::IDENTITY
            },
            &image,
        );
        assert_eq!(out[0], px(&image, 0, 0) / 2.0);
        assert_eq!(out[5], (px(&image, 4, 0) + px(&image, 5, 0)) / 2.0);
    }

    #[test]
    fn horizontal_flip_mirrors_each_row() {
        let image = pattern();
        let out = warped(
            Transform {
                flip: true,
                ..Transform::IDENTITY
            },
            &image,
        );
        for y in 0..SIDE {
            for x in 0..SIDE {
                assert_eq!(out[y * SIDE + x], px(&image, SIDE - 1 - x, y));
            }
        }
    }

    #[test]
    fn rotating_90_degrees_turns_the_content_counter_clockwise() {
        let image = pattern();
        let out = warped(
            Transform {
                rotation_degrees: 90.0,
                ..Transform::IDENTITY
            },
            &image,
        );
        // Counter-clockwise on screen: source (x, y) lands at (y, 27 - x), so the right edge
        // becomes the top row and the top-left corner the bottom-left one. The f32 cos(90°) is
        // -4.4e-8, not 0, hence the tolerance.
        for y in 0..SIDE {
            for x in 0..SIDE {
                let want = px(&image, SIDE - 1 - y, x);
                assert!((out[y * SIDE + x] - want).abs() < 1e-3, "({x}, {y})");
            }
        }
        assert!((out[0] - px(&image, 27, 0)).abs() < 1e-3);
        assert!((out[27 * SIDE] - px(&image, 0, 0)).abs() < 1e-3);
    }

    #[test]
    fn rotation_then_shift_compose_as_documented() {
        // A single dot at (20, 13): turned 90° counter-clockwise about (13.5, 13.5) it lands on
        // (13, 7), then the shift moves it right to (14, 7).
        let mut image = [0u8; PIXELS];
        image[13 * SIDE + 20] = 200;
        let out = warped(
            Transform {
                rotation_degrees: 90.0,
                shift_x: 1.0,
                ..Transform::IDENTITY
            },
            &image,
        );
        for (i, &v) in out.iter().enumerate() {
            let want = if i == 7 * SIDE + 14 { 200.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-3, "pixel {i}: {v}");
        }
    }

    #[test]
    fn zoom_samples_linearly_about_the_centre() {
        // A horizontal ramp 9x: bilinear interpolation reproduces it exactly between pixels.
        // Zoom factor 0.5 reads the source at 13.5 + 0.5 (x - 13.5): the garment doubles in size.
        let image: [u8; PIXELS] = std::array::from_fn(|i| u8::try_from(9 * (i % SIDE)).unwrap());
        let out = warped(
            Transform {
                zoom: 0.5,
                ..Transform::IDENTITY
            },
            &image,
        );
        for y in 0..SIDE {
            for x in 0..SIDE {
                let want = 9.0 * (13.5 + 0.5 * (x as f32 - 13.5));
                assert!((out[y * SIDE + x] - want).abs() < 1e-3, "({x}, {y})");
            }
        }
        // Zoom factor 2 shrinks it: the corners read outside the image, black.
        let out = warped(
            Transform {
                zoom: 2.0,
                ..Transform::IDENTITY
            },
            &[255; PIXELS],
        );
        assert_eq!((out[0], out[PIXELS - 1]), (0.0, 0.0));
        assert_eq!(out[14 * SIDE + 14], 255.0);
    }

    #[test]
    fn draws_stay_in_their_ranges_and_flip_about_half_the_time() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut flips = 0;
        for _ in 0..2000 {
            let t = STRONG.draw(&mut rng);
            assert!(t.rotation_degrees.abs() <= 30.0);
            assert!(t.shift_x.abs() <= 0.2 * 28.0 && t.shift_y.abs() <= 0.2 * 28.0);
            assert!((0.7..=1.3).contains(&t.zoom));
            flips += usize::from(t.flip);
        }
        assert!((900..1100).contains(&flips), "{flips}");
        let no_flip = Augmentation {
            horizontal_flip: false,
            ..STRONG
        };
        assert!((0..100).all(|_| !no_flip.draw(&mut rng).flip));
    }

    #[test]
    fn every_configuration_draws_the_same_five_words() {
        let image = pattern();
        let mut out = [0.0; PIXELS];
        let mut plain = ChaCha8Rng::seed_from_u64(2);
        let mut strong = ChaCha8Rng::seed_from_u64(2);
        let mut counted = ChaCha8Rng::seed_from_u64(2);
        Augmentation::none().apply(&image, &mut plain, &mut out);
        STRONG.apply(&image, &mut strong, &mut out);
        for _ in 0..5 {
            counted.next_u32();
        }
        let next = counted.next_u64();
        assert_eq!(plain.next_u64(), next);
        assert_eq!(strong.next_u64(), next);
    }

    #[test]
    fn same_seed_same_images_other_seed_other_images() {
        let image = pattern();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut outs = Vec::new();
            for _ in 0..4 {
                let mut out = [0.0; PIXELS];
                STRONG.apply(&image, &mut rng, &mut out);
                outs.push(out);
            }
            outs
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn outputs_stay_within_pixel_range() {
        let wild = Augmentation {
            rotation_degrees: 180.0,
            shift: 0.5,
            zoom: 0.9,
            horizontal_flip: true,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut out = [0.0; PIXELS];
        for k in 0..200 {
            // Alternating 0/255 blocks stress the interpolation at its extremes.
            let image: [u8; PIXELS] =
                std::array::from_fn(|i| if (i / (k % 5 + 1)) % 2 == 0 { 255 } else { 0 });
            for config in [wild, STRONG] {
                config.apply(&image, &mut rng, &mut out);
                assert!(out.iter().all(|v| (0.0..=255.0).contains(v)));
            }
        }
    }

    #[test]
    fn points_far_outside_read_black_without_panicking() {
        let image = [255; PIXELS];
        for t in [
            Transform {
                shift_x: 1e30,
                ..Transform::IDENTITY
            },
            Transform {
                shift_y: -1e30,
                ..Transform::IDENTITY
            },
            Transform {
                zoom: 1e20,
                ..Transform::IDENTITY
            },
        ] {
            let out = warped(t, &image);
            assert!(out.iter().all(|&v| v == 0.0), "{t:?}");
        }
    }

    #[test]
    fn augmentation_serialises_with_its_field_names() {
        let json = r#"{"rotation_degrees":30.0,"shift":0.2,"zoom":0.3,"horizontal_flip":true}"#;
        assert_eq!(serde_json::to_string(&STRONG).unwrap(), json);
        assert_eq!(serde_json::from_str::<Augmentation>(json).unwrap(), STRONG);
    }
}
