//! The training loop: Adam, seeded shuffling, progress bars; and batched float evaluation.

use std::time::Instant;

use candle_core::{D, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use fashion_mnist::{PIXELS, SIDE, Split, normalise};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::net::{Mode, Net, NetError};

/// How to train and what each epoch did: recorded in the model's report.
pub use model_report::{EpochStats, TrainOptions};

/// A `[n, 1, 28, 28]` tensor of normalised images for the given indices of `split`.
pub fn images_tensor(
    split: &Split,
    indices: &[usize],
    device: &Device,
) -> Result<Tensor, NetError> {
    let mut buf = Vec::with_capacity(indices.len() * PIXELS);
    for &i in indices {
        buf.extend(split.image(i).iter().map(|&p| normalise(p)));
    }
    Ok(Tensor::from_vec(
        buf,
        (indices.len(), 1, SIDE, SIDE),
        device,
    )?)
}

fn bar(len: usize, prefix: String, hidden: bool) -> ProgressBar {
    let pb = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(len as u64)
    };
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>22} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix);
    pb
}

/// Trains `net` on `data` and returns per-epoch statistics. Progress bars go to stderr unless
/// `quiet`.
pub fn train(
    net: &Net,
    data: &Split,
    opts: &TrainOptions,
    quiet: bool,
) -> Result<Vec<EpochStats>, NetError> {
    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut adam = AdamW::new(
        net.vars(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )?;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let batch_size = opts.batch_size.max(1);
    let mut history = Vec::with_capacity(opts.epochs);
    for epoch in 1..=opts.epochs {
        let start = Instant::now();
        order.shuffle(&mut rng);
        let batches = order.len().div_ceil(batch_size);
        let pb = bar(
            batches,
            format!("{} epoch {epoch}/{}", net.arch.id, opts.epochs),
            quiet,
        );
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (b, idx) in order.chunks(batch_size).enumerate() {
            let x = images_tensor(data, idx, &device)?;
            let labels: Vec<u32> = idx.iter().map(|&i| u32::from(data.labels[i])).collect();
            let y = Tensor::new(labels.as_slice(), &device)?;
            let logits = net.forward(&x, Mode::Train(&mut rng))?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            adam.backward_step(&loss)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            seen += idx.len();
            pb.inc(1);
            if b % 20 == 0 || b + 1 == batches {
                pb.set_message(format!(
                    "loss {:.4} acc {:.2}%",
                    loss_sum / (b + 1) as f64,
                    100.0 * correct as f64 / seen as f64
                ));
            }
        }
        pb.finish_and_clear();
        let stats = EpochStats {
            epoch,
            loss: loss_sum / batches.max(1) as f64,
            accuracy: correct as f64 / seen.max(1) as f64,
            seconds: start.elapsed().as_secs_f64(),
        };
        if !quiet {
            eprintln!(
                "{} epoch {epoch}/{}: loss {:.4}, train accuracy {:.2}%, {:.1} s",
                net.arch.id,
                opts.epochs,
                stats.loss,
                100.0 * stats.accuracy,
                stats.seconds
            );
        }
        history.push(stats);
    }
    Ok(history)
}

/// Mean cross-entropy loss of `net` (evaluation mode) over `split`.
pub fn evaluate_loss(net: &Net, split: &Split, batch_size: usize) -> Result<f64, NetError> {
    let device = Device::Cpu;
    let all: Vec<usize> = (0..split.len()).collect();
    let mut total = 0.0f64;
    for idx in all.chunks(batch_size.max(1)) {
        let x = images_tensor(split, idx, &device)?;
        let labels: Vec<u32> = idx.iter().map(|&i| u32::from(split.labels[i])).collect();
        let y = Tensor::new(labels.as_slice(), &device)?;
        let loss = candle_nn::loss::cross_entropy(&net.forward(&x, Mode::Eval)?, &y)?;
        total += f64::from(loss.to_scalar::<f32>()?) * idx.len() as f64;
    }
    Ok(total / split.len().max(1) as f64)
}

/// Float predictions (argmax class) for every image of `split`, in batches.
pub fn predict(net: &Net, split: &Split, batch_size: usize) -> Result<Vec<u8>, NetError> {
    let device = Device::Cpu;
    let mut out = Vec::with_capacity(split.len());
    let all: Vec<usize> = (0..split.len()).collect();
    for idx in all.chunks(batch_size.max(1)) {
        let x = images_tensor(split, idx, &device)?;
        let pred: Vec<u32> = net.forward(&x, Mode::Eval)?.argmax(D::Minus1)?.to_vec1()?;
        out.extend(pred.into_iter().map(|p| u8::try_from(p).unwrap_or(u8::MAX)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    fn synthetic(n: usize) -> Split {
        // Two easy classes: dark images are class 0, bright ones class 1.
        let mut images = Vec::with_capacity(n * PIXELS);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let l = u8::from(i % 2 == 1);
            images.extend((0..PIXELS).map(|p| {
                let p = u8::try_from(p % 60).unwrap_or(0);
                if l == 1 { 150 + p } else { p }
            }));
            labels.push(l);
        }
        Split { images, labels }
    }

    #[test]
    fn loss_falls_on_an_easy_task() {
        let data = synthetic(256);
        let net = Net::new(&arch::s3_lenet_base(), 1, &Device::Cpu).unwrap();
        let opts = TrainOptions {
            epochs: 3,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: 1,
        };
        let h = train(&net, &data, &opts, true).unwrap();
        assert!(h[2].loss < h[0].loss, "{h:?}");
        let pred = predict(&net, &data, 100).unwrap();
        assert_eq!(pred, data.labels);
    }

    #[test]
    fn training_is_reproducible() {
        let data = synthetic(64);
        let opts = TrainOptions {
            epochs: 1,
            batch_size: 16,
            learning_rate: 1e-3,
            seed: 9,
        };
        let run = || {
            let net = Net::new(&arch::s5_ann(), 2, &Device::Cpu).unwrap();
            train(&net, &data, &opts, true).unwrap()[0].loss
        };
        assert_eq!(run(), run());
    }
}
