//! Pictures of the models' reports (`models/<id>.json`), drawn with plotters into PNG files, in
//! pure Rust and with an embedded font (DejaVu Sans, `fonts/`), so nothing depends on the fonts
//! of the machine that runs it:
//!
//! - [`training_curves`]: loss and accuracy per epoch, training and validation;
//! - [`confusion_matrix`] and [`confusion_pair`]: heat maps of `confusion[true][predicted]`, one
//!   model or its float and int8 versions side by side;
//! - [`prediction_grid`]: test images with their true and predicted classes, mistakes in red;
//! - [`most_confused`] and [`most_confused_chart`]: the class pairs a model mixes up most;
//! - [`accuracy_vs_size`]: test accuracy against parameters or multiply-accumulates, ours beside
//!   the published numbers;
//! - [`class_distribution`], [`class_samples`], [`mean_images`], [`pca_scatter`] and
//!   [`pca_variance`]: the dataset itself (`data.rs`, `pca.rs`).
//!
//! Every function checks its input first, draws into memory, and only then creates the file, so
//! bad input or a drawing failure leaves no file behind. `trainer data` draws the dataset's;
//! `examples/render.rs` draws the others for a folder of reports:
//!
//! ```text
//! cargo run -p model-charts --example render -- models/ charts-out/
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use canvas::Canvas;

mod canvas;
mod confusion;
mod curves;
mod data;
mod grid;
mod pca;
mod size;

pub use confusion::{confusion_matrix, confusion_pair, most_confused, most_confused_chart};
pub use curves::training_curves;
pub use data::{SplitCounts, class_distribution, class_samples, mean_images, thousands};
pub use grid::prediction_grid;
pub use pca::{pca_scatter, pca_variance};
pub use size::{Size, StudyPoint, accuracy_vs_size};

/// DejaVu Sans 2.37 (licence: `fonts/LICENSE-DejaVu`): registered as plotters' `sans-serif`
/// and set by [`Canvas`].
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
/// The family every chart draws its text in.
const FAMILY: &str = "sans-serif";

/// What can go wrong drawing a chart. Each variant names the file it was for.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChartError {
    /// The input holds nothing to draw (an empty history, an empty matrix, no points).
    #[error("{}: nothing to draw: {what}", path.display())]
    Empty {
        /// The picture that was asked for.
        path: PathBuf,
        /// What was empty.
        what: &'static str,
    },
    /// The input is inconsistent (a matrix that is not square, more predictions than images, a
    /// class without a name, a non-finite accuracy, a size of 0 on a log axis).
    #[error("{}: {problem}", path.display())]
    BadInput {
        /// The picture that was asked for.
        path: PathBuf,
        /// What is wrong with the input.
        problem: String,
    },
    /// The embedded font could not be loaded (never expected: it is a fixed, valid TTF).
    #[error("the embedded font DejaVu Sans could not be loaded")]
    Font,
    /// plotters failed while drawing into memory.
    #[error("{}: drawing failed: {message}", path.display())]
    Draw {
        /// The picture that was being drawn.
        path: PathBuf,
        /// plotters' description of the failure.
        message: String,
    },
    /// The PNG file could not be created or written.
    #[error("{}: cannot write the PNG file: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The PNG encoder rejected the picture.
    #[error("{}: PNG encoding failed: {source}", path.display())]
    Png {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: png::EncodingError,
    },
}

impl ChartError {
    fn empty(path: &Path, what: &'static str) -> Self {
        Self::Empty {
            path: path.to_path_buf(),
            what,
        }
    }

    fn bad_input(path: &Path, problem: impl Into<String>) -> Self {
        Self::BadInput {
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// The drawing surface every chart draws on: an RGB bitmap in memory.
type Area<'a> = DrawingArea<Canvas<'a>, Shift>;
/// plotters' error for drawing on an [`Area`].
type DrawResult = Result<(), DrawingAreaErrorKind<<Canvas<'static> as DrawingBackend>::ErrorType>>;

/// Registers the embedded font with plotters once per process (plotters measures text through
/// it where it does not ask the backend) and checks that [`Canvas`] can set it.
fn register_embedded_font() -> Result<(), ChartError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        register_font(FAMILY, FontStyle::Normal, FONT).is_ok() && canvas::font_loads()
    });
    if ok { Ok(()) } else { Err(ChartError::Font) }
}

/// Draws a `width` x `height` picture with `draw` on a white background and writes it to `path`
/// as an 8-bit RGB PNG.
fn render(
    path: &Path,
    (width, height): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), ChartError> {
    register_embedded_font()?;
    let pixels = usize::try_from(u64::from(width) * u64::from(height) * 3)
        .map_err(|_| ChartError::bad_input(path, format!("{width}x{height} is too large")))?;
    let mut buffer = vec![255u8; pixels];
    {
        let bitmap = BitMapBackend::with_buffer(&mut buffer, (width, height));
        let area = Canvas::new(bitmap).into_drawing_area();
        draw(&area)
            .and_then(|()| area.present())
            .map_err(|e| ChartError::Draw {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    }
    write_png(path, (width, height), &buffer)
}

/// Writes an RGB buffer as a PNG file.
fn write_png(path: &Path, (width, height): (u32, u32), rgb: &[u8]) -> Result<(), ChartError> {
    let io = |source| ChartError::Io {
        path: path.to_path_buf(),
        source,
    };
    let png = |source| ChartError::Png {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io)?);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png)?;
    writer.write_image_data(rgb).map_err(png)?;
    writer.finish().map_err(png)?;
    // Flushed here, not on drop, so that a failed write is an error rather than lost.
    out.flush().map_err(io)
}

/// A text style of the embedded font at `size` pixels.
fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().into()
}

/// Width and height in pixels that `text` takes at `size`, as [`Canvas`] sets it.
fn text_size(text: &str, size: f64) -> (u32, u32) {
    canvas::measure(text, size)
}

/// A pixel coordinate from a float, rounded and clamped to what a picture can hold.
#[allow(clippy::cast_possible_truncation)] // clamped to the i32 range first
fn px(value: f64) -> i32 {
    value.round().clamp(-1e6, 1e6) as i32
}

/// A pixel length as a coordinate (picture sizes stay far below `i32::MAX`).
fn coord(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The colour of mistakes in the prediction grid.
const RED: RGBColor = RGBColor(200, 30, 30);
/// Dark grey for ordinary text.
const INK: RGBColor = RGBColor(30, 30, 30);
/// Mid grey for secondary text and rules.
const GREY: RGBColor = RGBColor(120, 120, 120);
/// Training series, and our markers beside the published ones.
const TRAIN: RGBColor = RGBColor(31, 119, 180);
/// Validation series.
const VALIDATION: RGBColor = RGBColor(255, 127, 14);
/// Test reference lines.
const TEST: RGBColor = RGBColor(44, 160, 44);

/// The name of class `c`: Fashion-MNIST's names, `class <c>` beyond them.
fn class_name(c: usize) -> String {
    fashion_mnist::CLASS_NAMES
        .get(c)
        .map_or_else(|| format!("class {c}"), |name| (*name).to_string())
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::Path;

    /// Width and height from a PNG file's IHDR chunk, after checking the signature.
    pub fn png_dimensions(path: &Path) -> (u32, u32) {
        let bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 33, "{}: too short for a PNG", path.display());
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
        assert_eq!(&bytes[12..16], b"IHDR", "the first chunk is IHDR");
        let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
        (be(&bytes[16..20]), be(&bytes[20..24]))
    }

    /// Asserts that `path` is a PNG of `width` x `height` with more than a header in it.
    pub fn assert_png(path: &Path, width: u32, height: u32) {
        assert_eq!(png_dimensions(path), (width, height), "{}", path.display());
        let len = std::fs::metadata(path).unwrap().len();
        assert!(len > 1000, "{}: only {len} bytes", path.display());
    }

    /// A path no file can be created at: inside a folder that does not exist.
    pub fn unwritable(dir: &Path) -> std::path::PathBuf {
        dir.join("no-such-folder").join("chart.png")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_loads_and_measures_text() {
        register_embedded_font().unwrap();
        let (w, h) = text_size("Ankle boot", 20.0);
        // DejaVu Sans advances average a little over half an em: 10 glyphs at 20 px.
        assert!((90..=130).contains(&w), "{w}");
        assert!((10..=25).contains(&h), "{h}");
    }

    #[test]
    fn a_rendered_picture_has_its_size_and_an_unwritable_path_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blank.png");
        render(&path, (40, 30), |area| {
            area.draw(&Text::new("x", (5, 5), font(12.0)))
        })
        .unwrap();
        assert_eq!(test_util::png_dimensions(&path), (40, 30));

        let bad = test_util::unwritable(dir.path());
        let err = render(&bad, (40, 30), |_| Ok(())).unwrap_err();
        assert!(matches!(err, ChartError::Io { .. }), "{err}");
        assert!(err.to_string().contains("no-such-folder"), "{err}");
    }
}
