//! The committed image fixtures are what they claim to be, and the command that writes them:
//!
//! ```text
//! cargo test -p infer-core --test fixtures -- --ignored write_fixtures
//! ```
//!
//! - `tests/data/test-image-0.u8`: test image 0 of Fashion-MNIST (an ankle boot, label 9), its
//!   784 raw pixels row-major; the crate docs' example classifies it.
//! - `tests/data/test-image-1-56x56.png`: test image 1 (a pullover, label 2) enlarged to 56x56
//!   by repeating each pixel 2x2, as an 8-bit RGB PNG with R = G = B; `examples/classify.rs`
//!   preprocesses it in its tests.

use std::path::PathBuf;

use fashion_mnist::{PIXELS, SIDE, Split};

/// Folder of the fixtures.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn test_split() -> Split {
    fashion_mnist::load_test(None).expect("the Fashion-MNIST test set (see README: Dataset)")
}

/// Test image `i` with every pixel repeated `k x k` times, as R = G = B.
fn enlarged_rgb(image: &[u8; PIXELS], k: usize) -> Vec<u8> {
    let side = SIDE * k;
    let mut rgb = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            let p = image[(y / k) * SIDE + x / k];
            rgb.extend([p, p, p]);
        }
    }
    rgb
}

/// Decodes an 8-bit RGB PNG: `(width, height, rgb)`.
fn decode_rgb_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight)
    );
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn test_image_0_is_the_datasets() {
    let committed = std::fs::read(data_dir().join("test-image-0.u8")).unwrap();
    let test = test_split();
    assert_eq!(committed.as_slice(), test.image(0).as_slice());
    assert_eq!(test.labels[0], 9);
}

#[test]
fn the_png_is_test_image_1_enlarged() {
    let committed = std::fs::read(data_dir().join("test-image-1-56x56.png")).unwrap();
    let test = test_split();
    let (w, h, rgb) = decode_rgb_png(&committed);
    assert_eq!((w, h), (56, 56));
    assert_eq!(rgb, enlarged_rgb(test.image(1), 2));
    assert_eq!(test.labels[1], 2);
}

/// Writes the fixtures from the dataset (run with `--ignored`, see the module docs).
#[test]
#[ignore = "writes the committed fixtures"]
fn write_fixtures() {
    let test = test_split();
    let dir = data_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test-image-0.u8"), test.image(0)).unwrap();
    let side = u32::try_from(SIDE * 2).unwrap();
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, side, side);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&enlarged_rgb(test.image(1), 2))
        .unwrap();
    writer.finish().unwrap();
    std::fs::write(dir.join("test-image-1-56x56.png"), png_bytes).unwrap();
}
