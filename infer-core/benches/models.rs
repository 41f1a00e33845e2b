//! Batch-1 inference time of each exported model (`models/*.fmq`) on real test images.
//!
//! Criterion reports time per image and, as throughput, multiply-accumulates per second
//! (`Model::macs` per image). Run: `cargo bench -p infer-core --bench models`.
//!
//! A model whose file is missing is replaced by one with the same shapes and random parameters
//! (`tests/support`), benched as `<id>-synthetic`, so kernel work can be timed before training.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infer_core::Model;

const IMAGES: usize = 256;

fn bench_models(c: &mut Criterion) {
    let test = fashion_mnist::load_test(None)
        .unwrap_or_else(|e| panic!("{e}"))
        .head(IMAGES);
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
    let mut group = c.benchmark_group("predict");
    for id in ["s5-ann", "s5-cnn", "s3-lenet-base"] {
        let path = models.join(format!("{id}.fmq"));
        let (name, bytes) = match std::fs::read(&path) {
            Ok(bytes) => (id.to_owned(), bytes),
            Err(_) => {
                eprintln!(
                    "{id}: {} not found, benching random parameters",
                    path.display()
                );
                (
                    format!("{id}-synthetic"),
                    synthetic(id).to_bytes().expect("encodes"),
                )
            }
        };
        let model: Model = Model::from_bytes(&bytes).expect("model loads");
        let mut scratch = vec![0i8; model.scratch_len()];
        group.throughput(Throughput::Elements(model.macs()));
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 1) % test.len();
                black_box(
                    model
                        .predict(black_box(test.image(next)), &mut scratch)
                        .map(|p| p.class),
                )
            })
        });
    }
    group.finish();
}

/// A model with the shapes of `id` and random parameters.
fn synthetic(id: &str) -> infer_core::format::OwnedModel {
    match id {
        "s5-cnn" => support::cnn_model(),
        "s3-lenet-base" => support::lenet_model(),
        _ => panic!("no synthetic stand-in for {id}"),
    }
}

criterion_group!(benches, bench_models);
criterion_main!(benches);
