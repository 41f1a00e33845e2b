//! Classifies a PNG or PGM image of any size with an int8 model through infer-core, and prints
//! the top classes with their scores.
//!
//! ```text
//! cargo run -p infer-core --example classify -- photo.png
//! cargo run -p infer-core --example classify -- photo.pgm --model models/s3-lenet-base.fmq
//! cargo run -p infer-core --example classify -- dark-on-white.png --invert
//! ```
//!
//! The model is `models/s5-cnn.fmq` (embedded with `include_bytes!`) unless `--model` names
//! another; it must take a 1x28x28 input, as every committed model does.
//!
//! # Preprocessing ([`preprocess`])
//!
//! 1. **Decode.** PNG: any colour type and bit depth (palettes expanded, 16-bit samples cut to
//!    their high byte). PGM: binary (`P5`) or ASCII (`P2`), any maximum value, rescaled to
//!    0..=255.
//! 2. **Grey.** Colour pixels become `round(0.299 R + 0.587 G + 0.114 B)` (ITU-R BT.601 luma,
//!    as PIL's `convert("L")`); a pixel with alpha is composited onto black,
//!    `grey * alpha / 255`, since black is the Fashion-MNIST background.
//! 3. **Resize to 28x28 by area averaging.** The image is stretched to a square (no cropping,
//!    no aspect ratio kept; crop it first if the object is not centred and square-ish). Each
//!    output pixel is the mean of the source area it covers, partial source pixels weighted by
//!    the fraction they overlap (a box filter; for an integer factor such as 56 -> 28, the plain
//!    mean of each 2x2 block). Enlarging a smaller image repeats pixels the same way.
//! 4. **Polarity.** Fashion-MNIST images are light objects on a black background. A photo of a
//!    dark object on a white background needs `--invert` (`255 - grey`), or the model sees a
//!    negative.
//!
//! The 784 grey bytes then go to [`Model::predict`] as raw pixels (the model maps them to int8
//! itself, `q = pixel - 128`). Scores: the dequantised logits and their softmax (the trainer
//! clamps logits that can never win to the bottom of the int8 range, so ties among the losers
//! and their tiny probabilities mean little).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fashion_mnist::CLASS_NAMES;
use infer_core::{IMAGE_LEN, Model};

/// The model used without `--model`.
static DEFAULT_MODEL: &[u8] = include_bytes!("../../models/s5-cnn.fmq");
/// Its file, for messages.
const DEFAULT_MODEL_NAME: &str = "models/s5-cnn.fmq (embedded)";
/// Side of the model input.
const SIDE: usize = 28;
/// Op capacity of the loaded model (a ResNet-sized model fits).
const MAX_OPS: usize = 64;
/// Classes printed.
const TOP: usize = 3;

/// A decoded grey image, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grey {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height` pixels, 0 = black.
    pub pixels: Vec<u8>,
}

/// Decodes a PNG or PGM file's bytes (by their signature) to grey, resizes it to 28x28 by area
/// averaging and optionally inverts it (see the [crate docs](self)).
///
/// # Errors
///
/// A message saying what is wrong with the image.
pub fn preprocess(bytes: &[u8], invert: bool) -> Result<[u8; IMAGE_LEN], String> {
    let grey = if bytes.starts_with(b"\x89PNG") {
        decode_png(bytes)?
    } else if bytes.starts_with(b"P5") || bytes.starts_with(b"P2") {
        decode_pgm(bytes)?
    } else {
        return Err("not a PNG or PGM (P2/P5) image".to_owned());
    };
    let mut out = resize_area(&grey, SIDE, SIDE);
    if invert {
        for p in &mut out {
            *p = 255 - *p;
        }
    }
    let mut image = [0_u8; IMAGE_LEN];
    image.copy_from_slice(&out);
    Ok(image)
}

/// BT.601 luma of an 8-bit RGB pixel, rounded.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let y = 0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b);
    to_u8(y)
}

/// Rounds and clamps to `0..=255`.
fn to_u8(v: f64) -> u8 {
    // Clamped first, so the cast cannot truncate or wrap.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let q = v.round().clamp(0.0, 255.0) as u8;
    q
}

/// `grey * alpha / 255`, rounded: the pixel composited onto black.
fn over_black(grey: u8, alpha: u8) -> u8 {
    to_u8(f64::from(grey) * f64::from(alpha) / 255.0)
}

/// Decodes a PNG to 8-bit grey.
fn decode_png(bytes: &[u8]) -> Result<Grey, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(|e| format!("bad PNG: {e}"))?;
    let size = reader
        .output_buffer_size()
        .ok_or("PNG too large for memory")?;
    let mut buf = vec![0; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| format!("bad PNG: {e}"))?;
    let (width, height) = (
        usize::try_from(info.width).map_err(|e| e.to_string())?,
        usize::try_from(info.height).map_err(|e| e.to_string())?,
    );
    let channels = info.color_type.samples();
    let data = buf.get(..info.buffer_size()).ok_or("short PNG frame")?;
    let pixels: Vec<u8> = data
        .chunks_exact(info.line_size)
        .flat_map(|row| {
            row.get(..width * channels)
                .unwrap_or_default()
                .chunks_exact(channels)
        })
        .map(|px| match *px {
            [g] => g,
            [g, a] => over_black(g, a),
            [r, g, b] => luma(r, g, b),
            [r, g, b, a] => over_black(luma(r, g, b), a),
            _ => 0,
        })
        .collect();
    if width == 0 || height == 0 || pixels.len() != width * height {
        return Err(format!("unsupported PNG layout ({width}x{height})"));
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// Decodes a PGM (`P5` binary or `P2` ASCII; 8- or 16-bit samples) to 8-bit grey.
fn decode_pgm(bytes: &[u8]) -> Result<Grey, String> {
    let bad = |what: &str| format!("bad PGM: {what}");
    let mut at = 2;
    // The next whitespace-separated header token, skipping `#` comments.
    let token = |at: &mut usize| -> Option<usize> {
        loop {
            match bytes.get(*at)? {
                b'#' => {
                    while bytes.get(*at).is_some_and(|&b| b != b'\n') {
                        *at += 1;
                    }
                }
                b if b.is_ascii_whitespace() => *at += 1,
                _ => break,
            }
        }
        let start = *at;
        while bytes.get(*at).is_some_and(u8::is_ascii_digit) {
            *at += 1;
        }
        std::str::from_utf8(bytes.get(start..*at)?)
            .ok()?
            .parse()
            .ok()
    };
    let width = token(&mut at).ok_or_else(|| bad("width"))?;
    let height = token(&mut at).ok_or_else(|| bad("height"))?;
    let max = token(&mut at).ok_or_else(|| bad("maximum value"))?;
    if width == 0 || height == 0 || !(1..=65535).contains(&max) {
        return Err(bad("zero size or maximum value outside 1..=65535"));
    }
    let count = width.checked_mul(height).ok_or_else(|| bad("size"))?;
    let scale = |v: usize| to_u8(v as f64 * 255.0 / max as f64);
    let pixels: Vec<u8> = if bytes.starts_with(b"P5") {
        // One whitespace byte after the maximum value, then the samples.
        let data = bytes.get(at + 1..).ok_or_else(|| bad("no pixel data"))?;
        if max < 256 {
            data.iter().take(count).map(|&v| scale(v.into())).collect()
        } else {
            data.chunks_exact(2)
                .take(count)
                .map(|b| scale(usize::from(u16::from_be_bytes([b[0], b[1]]))))
                .collect()
        }
    } else {
        let mut values = Vec::with_capacity(count);
        while values.len() < count {
            values.push(scale(token(&mut at).ok_or_else(|| bad("too few pixels"))?));
        }
        values
    };
    if pixels.len() != count {
        return Err(bad("too few pixels"));
    }
    Ok(Grey {
        width,
        height,
        pixels,
    })
}

/// Resizes by area averaging: output pixel `(x, y)` is the mean of the source rectangle
/// `[x * w / out_w, (x + 1) * w / out_w) x [y * h / out_h, (y + 1) * h / out_h)`, each source
/// pixel weighted by the area it shares with it.
pub fn resize_area(src: &Grey, out_w: usize, out_h: usize) -> Vec<u8> {
    // The source spans [0, w) x [0, h); output pixel i covers [i * step, (i + 1) * step).
    let weights = |n_in: usize, n_out: usize| -> Vec<Vec<(usize, f64)>> {
        let step = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|i| {
                let (lo, hi) = (i as f64 * step, (i + 1) as f64 * step);
                (0..n_in)
                    .filter_map(|s| {
                        let overlap = (hi.min((s + 1) as f64) - lo.max(s as f64)).max(0.0);
                        (overlap > 0.0).then_some((s, overlap / step))
                    })
                    .collect()
            })
            .collect()
    };
    let (wx, wy) = (weights(src.width, out_w), weights(src.height, out_h));
    let mut out = Vec::with_capacity(out_w * out_h);
    for row in &wy {
        for col in &wx {
            let mut sum = 0.0;
            for &(y, fy) in row {
                for &(x, fx) in col {
                    let p = src.pixels.get(y * src.width + x).copied().unwrap_or(0);
                    sum += f64::from(p) * fx * fy;
                }
            }
            out.push(to_u8(sum));
        }
    }
    out
}

/// Command-line arguments.
struct Args {
    image: PathBuf,
    model: Option<PathBuf>,
    invert: bool,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: classify <image.png|image.pgm> [--model <model.fmq>] [--invert]";
    let mut image = None;
    let mut model = None;
    let mut invert = false;
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--invert") => invert = true,
            Some("--model") => model = Some(PathBuf::from(args.next().ok_or(usage)?)),
            Some("-h" | "--help") => return Err(usage.to_owned()),
            _ if image.is_none() => image = Some(PathBuf::from(arg)),
            _ => return Err(usage.to_owned()),
        }
    }
    Ok(Args {
        image: image.ok_or(usage)?,
        model,
        invert,
    })
}

/// Reads a file, naming it in the error.
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let image_bytes = read(&args.image)?;
    let pixels = preprocess(&image_bytes, args.invert)
        .map_err(|e| format!("{}: {e}", args.image.display()))?;
    let (model_bytes, model_name) = match &args.model {
        Some(path) => (read(path)?, path.display().to_string()),
        None => (DEFAULT_MODEL.to_vec(), DEFAULT_MODEL_NAME.to_owned()),
    };
    let model =
        Model::<MAX_OPS>::from_bytes(&model_bytes).map_err(|e| format!("{model_name}: {e}"))?;
    let mut scratch = vec![0_i8; model.scratch_len()];
    let prediction = model
        .predict(&pixels, &mut scratch)
        .map_err(|e| format!("{model_name}: {e}"))?;

    let q = model.output_qparams();
    let scores: Vec<f32> = prediction.logits.iter().map(|&l| q.dequantize(l)).collect();
    let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = scores.iter().map(|s| (s - top).exp()).sum();
    let mut ranked: Vec<usize> = (0..scores.len()).collect();
    ranked.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));

    println!(
        "{} with {} ({})",
        args.image.display(),
        model.id(),
        model_name
    );
    println!("  class           logit   softmax");
    for &c in ranked.iter().take(TOP) {
        let name = CLASS_NAMES.get(c).copied().unwrap_or("?");
        let p = (scores[c] - top).exp() / sum;
        println!("  {c} {name:<12} {:>7.3}  {:>7.2}%", scores[c], 100.0 * p);
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("classify: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed 56x56 RGB PNG: test image 1 of Fashion-MNIST, each pixel repeated 2x2
    /// (`tests/fixtures.rs` checks it and writes it).
    const PNG: &[u8] = include_bytes!("../tests/data/test-image-1-56x56.png");

    #[test]
    fn area_averaging_means_blocks_and_weights_partial_pixels() {
        let src = Grey {
            width: 2,
            height: 2,
            pixels: vec![0, 100, 200, 255],
        };
        assert_eq!(resize_area(&src, 1, 1), [139]); // (0 + 100 + 200 + 255) / 4 = 138.75
        // 3 -> 2: output 0 covers pixel 0 and half of pixel 1: (30 + 60 / 2) / 1.5 = 40.
        let src = Grey {
            width: 3,
            height: 1,
            pixels: vec![30, 60, 90],
        };
        assert_eq!(resize_area(&src, 2, 1), [40, 80]);
        // Enlarging repeats pixels.
        assert_eq!(resize_area(&src, 6, 1), [30, 30, 60, 60, 90, 90]);
    }

    #[test]
    fn pgm_ascii_and_binary_agree() {
        let ascii = b"P2\n# a comment\n2 1\n15\n0 15\n";
        let binary = b"P5 2 1 255\n\x00\xff";
        let a = decode_pgm(ascii).unwrap();
        assert_eq!(a.pixels, [0, 255]);
        assert_eq!(decode_pgm(binary).unwrap(), a);
        assert!(decode_pgm(b"P5 2 1 255\n\x00").is_err());
        assert!(preprocess(b"GIF89a", false).is_err());
    }

    #[test]
    fn the_committed_png_classifies_as_its_dataset_label() {
        let pixels = preprocess(PNG, false).unwrap();
        let test = fashion_mnist::load_test(None).unwrap();
        // 2x2 blocks of one value average back to it: the preprocessing recovers the image.
        assert_eq!(&pixels, test.image(1));
        let model = Model::<MAX_OPS>::from_bytes(DEFAULT_MODEL).unwrap();
        let mut scratch = vec![0_i8; model.scratch_len()];
        let prediction = model.predict(&pixels, &mut scratch).unwrap();
        assert_eq!(prediction.class, usize::from(test.labels[1]));
        // Inverted, it is another picture altogether.
        assert_ne!(preprocess(PNG, true).unwrap(), pixels);
    }
}
