//! Times the two orders of a convolution's weight-gradient product at the zoo's layer shapes:
//! `dW = g · colsᵀ` (direct) against `dWᵀ = cols · gᵀ` then transposed, with candle's matmul,
//! and checks that both give the same values bit for bit. The trainer picks the order by the
//! layer's output channels (`ops::conv::WeightGradOrder`); this is the measurement behind it.
//!
//! ```text
//! cargo run --release -p trainer --example weight_grad_orders [-- --reps 5]
//! ```
//!
//! Threads: `RAYON_NUM_THREADS` (candle's matmul). Each time is the median of `--reps` runs
//! after one warm-up; the two orders alternate within each repetition.

use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `(layer, output channels, column rows in_ch·k², inner dimension batch·oh·ow)`.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    (
        "s1-resnet18 stage 1 / s1-cnn64 conv2 (64x28x28)",
        64,
        576,
        64 * 784,
    ),
    ("s1-resnet18 stage 2 (128x14x14)", 128, 1152, 64 * 196),
    ("s1-resnet18 stage 3 (256x7x7)", 256, 2304, 64 * 49),
    ("s1-cnn64 conv3 (128x14x14)", 128, 576, 64 * 196),
    ("s1-cnn64 conv4 (256x7x7)", 256, 1152, 64 * 49),
    ("s2-m6 conv2 (32x28x28, batch 128)", 32, 288, 128 * 784),
    ("s2-m6 conv3 (64x14x14)", 64, 288, 128 * 196),
    ("s2-m6 conv4 (64x14x14)", 64, 576, 128 * 196),
    ("s2-m6 conv5 (128x7x7)", 128, 576, 128 * 49),
    ("s5-cnn conv2 (64x14x14)", 64, 288, 64 * 196),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let mut reps = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--reps", Some(n)) => reps = n.parse()?,
            _ => bail!("usage: weight_grad_orders [--reps N]"),
        }
    }
    let dev = Device::Cpu;
    println!(
        "| layer | out_ch | k | inner | direct ms | transposed ms | transposed / direct | same bits |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    for &(name, out_ch, k, inner) in SHAPES {
        let cols = Tensor::randn(0f32, 1., (k, inner), &dev)?;
        let g = Tensor::randn(0f32, 1., (out_ch, inner), &dev)?;
        let direct = || g.matmul(&cols.t()?);
        let transposed = || cols.matmul(&g.t()?)?.t()?.contiguous();
        let same = direct()?.flatten_all()?.to_vec1::<f32>()?
            == transposed()?.flatten_all()?.to_vec1::<f32>()?;
        let (mut td, mut tt) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            direct()?;
            td.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            transposed()?;
            tt.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (d, t) = (median(td), median(tt));
        println!(
            "| {name} | {out_ch} | {k} | {inner} | {d:.1} | {t:.1} | {:.2} | {same} |",
            t / d
        );
    }
    Ok(())
}
