//! A fixed amount of inference work per model, for instruction counting under callgrind
//! (repeatable where wall-clock timings on a loaded machine are not).
//!
//! ```sh
//! cargo bench -p infer-core --bench instructions --no-run   # prints the binary's path
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_images*' \
//!     <binary> s5-cnn
//! ```
//!
//! Instructions per image = the collected total / [`IMAGES`]. Without valgrind it just runs each
//! model (the arguments name models; all three by default) and prints its first logits.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;

use infer_core::{IMAGE_LEN, Model};

/// Images per model run.
const IMAGES: usize = 64;

/// Runs `model` on every image and returns the sum of the predicted classes.
#[inline(never)]
fn run_images(model: &Model<'_>, images: &[[u8; IMAGE_LEN]], scratch: &mut [i8]) -> usize {
    images
        .iter()
        .map(|img| {
            model
                .predict(black_box(img), scratch)
                .map_or(0, |p| p.class)
        })
        .sum()
}

fn main() {
    let ids: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let ids = if ids.is_empty() {
        vec!["s5-ann".into(), "s5-cnn".into(), "s3-lenet-base".into()]
    } else {
        ids
    };
    let mut rng = support::Lcg::new(5);
    let images: Vec<[u8; IMAGE_LEN]> = (0..IMAGES)
        .map(|_| rng.pixels(IMAGE_LEN).try_into().expect("IMAGE_LEN pixels"))
        .collect();
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    for id in &ids {
        let bytes = std::fs::read(models.join(format!("{id}.fmq"))).unwrap_or_else(|_| {
            eprintln!("{id}: no model file, using random parameters");
            match id.as_str() {
                "s5-cnn" => support::cnn_model().to_bytes().expect("encodes"),
                "s3-lenet-base" => support::lenet_model().to_bytes().expect("encodes"),
                _ => panic!("no model file and no synthetic stand-in for {id}"),
            }
        });
        let model: Model = Model::from_bytes(&bytes).expect("model loads");
        let mut scratch = vec![0_i8; model.scratch_len()];
        let classes = run_images(&model, &images, &mut scratch);
        println!(
            "{id}: {IMAGES} images, {} MACs each, scratch {} bytes, class sum {classes}",
            model.macs(),
            model.scratch_len()
        );
    }
}
