//! The training loop: the recipe's optimizer and learning-rate schedule, seeded shuffling,
//! dropout and augmentation, validation after every epoch, a checkpoint after every epoch (and
//! when stopped), progress bars; and batched float evaluation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{D, Device, Tensor, Var};
use candle_nn::Optimizer;
use fashion_mnist::augment::Augmentation;
use fashion_mnist::{PIXELS, SIDE, Split, normalise, normalise_value};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{self, Checkpoint, CheckpointError, Partial};
use crate::net::{Mode, Net, NetError};
use crate::optim::Optim;
use crate::progress::{Event, Progress};

/// How to train and what each epoch did: recorded in the model's report.
pub use model_report::{EpochStats, TrainOptions};

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Writing or reading the checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// There is nothing to train on.
    #[error("no training images (check --train-limit and the split)")]
    NoImages,
}

/// How a run is driven, beyond its recipe.
#[derive(Debug, Default)]
pub struct Control<'a> {
    /// Where progress goes.
    pub progress: Progress,
    /// Where the run's checkpoint goes (written after every epoch and when stopped).
    pub checkpoint: Option<PathBuf>,
    /// Also write the checkpoint within an epoch, after the first batch that ends this long
    /// after the last write, so that a run killed without warning (a closed session, a power
    /// cut) loses at most this much work. `None`: at epoch ends and on stops only.
    pub save_every: Option<Duration>,
    /// Continue from the checkpoint if it exists.
    pub resume: bool,
    /// Set (by a Ctrl-C handler) to stop after the current batch.
    pub stop: Option<&'a AtomicBool>,
    /// Stop after this many batches of this call (tests of resuming).
    pub max_batches: Option<usize>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every epoch ran.
    Finished(Vec<EpochStats>),
    /// Stopped early, after `epochs_done` epochs and `batches` batches of the next; the
    /// checkpoint (if any) holds the state.
    Stopped {
        /// Epochs completed.
        epochs_done: usize,
        /// Batches of the next epoch completed.
        batches: usize,
    },
}

/// Mean loss and accuracy of a network over a split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction correct.
    pub accuracy: f64,
}

/// A `[n, 1, 28, 28]` tensor of normalised images for the given indices of `split`, each
/// augmented with `augment` if given.
pub fn images_tensor(
    split: &Split,
    indices: &[usize],
    mut augment: Option<(&Augmentation, &mut ChaCha8Rng)>,
    device: &Device,
) -> Result<Tensor, NetError> {
    let mut buf = Vec::with_capacity(indices.len() * PIXELS);
    let mut out = [0f32; PIXELS];
    for &i in indices {
        match &mut augment {
            Some((aug, rng)) => {
                aug.apply(split.image(i), &mut **rng, &mut out);
                buf.extend(out.iter().map(|&v| normalise_value(v)));
            }
            None => buf.extend(split.image(i).iter().map(|&p| normalise(p))),
        }
    }
    Ok(Tensor::from_vec(
        buf,
        (indices.len(), 1, SIDE, SIDE),
        device,
    )?)
}

/// The generator of shuffling, dropout and augmentation for a run seeded with `seed` (stream
/// 1, so it never repeats the initialisation's draws).
pub fn run_rng(seed: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(1);
    rng
}

/// Scales the gradients of `vars` in `grads` so that their global L2 norm is at most
/// `max_norm`, as PyTorch's `clip_grad_norm_` (factor `max_norm / (norm + 1e-6)` when below 1);
/// returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64, NetError> {
    let mut sum_sq = 0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sum_sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = sum_sq.sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * factor)?);
            }
        }
    }
    Ok(norm)
}

/// Trains `net` on `train` with `opts`, evaluating on `validation` after every epoch.
///
/// With a checkpoint path in `control`, the state is saved after every epoch and when the run
/// stops early; with `resume`, a run continues from that checkpoint (after checking it is of
/// the same model and options) to the same result as an uninterrupted run.
pub fn train(
    net: &Net,
    train: &Split,
    validation: Option<&Split>,
    opts: &TrainOptions,
    control: &Control<'_>,
) -> Result<Outcome, TrainError> {
    if train.is_empty() {
        return Err(TrainError::NoImages);
    }
    let device = Device::Cpu;
    let id = net.arch.id;
    let base_lr = opts.optimizer.lr();
    let vars = net.vars();
    let mut optim = Optim::new(vars.clone(), opts.optimizer)?;
    let mut rng = run_rng(opts.seed);
    let mut history = Vec::with_capacity(opts.epochs);
    let mut epochs_done = 0;
    let mut partial = Partial::default();
    let mut order: Vec<usize> = Vec::new();

    if let (Some(path), true) = (&control.checkpoint, control.resume) {
        if path.exists() {
            let ck = Checkpoint::load(path)?;
            ck.check_matches(path, id, opts)?;
            net.set_tensors(&ck.weights, &path.display().to_string())?;
            optim.restore(ck.optim)?;
            rng = ck.progress.rng;
            history = ck.progress.history;
            epochs_done = ck.progress.epochs_done;
            partial = ck.progress.partial;
            order = ck.order.iter().map(|&i| i as usize).collect();
            tracing::info!(
                "{id}: resuming from {} after {epochs_done} epochs and {} batches",
                path.display(),
                partial.batches
            );
        }
    }

    let batch_size = opts.batch_size.max(1);
    let batches = train.len().div_ceil(batch_size);
    control.progress.emit(&Event::Start {
        model: id,
        epochs: opts.epochs,
        batches,
        train_images: train.len(),
        epochs_done,
        batches_done: partial.batches,
    });
    let mut batches_this_call = 0usize;
    let mut last_save = Instant::now();
    let save = |epochs_done: usize,
                partial: Partial,
                order: &[usize],
                rng: &ChaCha8Rng,
                history: &[EpochStats],
                optim: &Optim|
     -> Result<(), TrainError> {
        let Some(path) = &control.checkpoint else {
            return Ok(());
        };
        let ck = Checkpoint {
            progress: checkpoint::Progress {
                id: id.to_string(),
                options: *opts,
                epochs_done,
                partial,
                rng: rng.clone(),
                optim_step: 0,
                optim_mu_product_bits: 0,
                history: history.to_vec(),
            },
            weights: net.tensors().into_iter().collect(),
            optim: optim.state(),
            order: order
                .iter()
                .map(|&i| u32::try_from(i).unwrap_or(u32::MAX))
                .collect(),
        };
        ck.save(path)?;
        Ok(())
    };

    for epoch in epochs_done + 1..=opts.epochs {
        let lr = opts.schedule.map_or(base_lr, |s| s.lr(base_lr, epoch - 1));
        optim.set_learning_rate(lr);
        // A run stopped at the very start of an epoch has its order already drawn.
        if order.is_empty() {
            order = (0..train.len()).collect();
            order.shuffle(&mut rng);
        }
        let pb = control
            .progress
            .epoch(id, (epoch, opts.epochs), batches, partial.batches);
        let start = Instant::now() - std::time::Duration::from_secs_f64(partial.seconds);
        for b in partial.batches..batches {
            let stop_now = control.stop.is_some_and(|s| s.load(Ordering::SeqCst))
                || control.max_batches.is_some_and(|m| batches_this_call >= m);
            if stop_now {
                pb.finish();
                partial.seconds = start.elapsed().as_secs_f64();
                save(epoch - 1, partial, &order, &rng, &history, &optim)?;
                return Ok(Outcome::Stopped {
                    epochs_done: epoch - 1,
                    batches: b,
                });
            }
            let idx = &order[b * batch_size..((b + 1) * batch_size).min(order.len())];
            let aug = opts.augmentation.as_ref().map(|a| (a, &mut rng));
            let x = images_tensor(train, idx, aug, &device)?;
            let labels: Vec<u32> = idx.iter().map(|&i| u32::from(train.labels[i])).collect();
            let y = Tensor::new(labels.as_slice(), &device)?;
            let logits = net.forward(&x, Mode::Train(&mut rng))?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            let mut grads = loss.backward()?;
            if let Some(max_norm) = opts.grad_clip {
                clip_grad_norm(&mut grads, &vars, max_norm)?;
            }
            optim.step(&grads)?;
            partial.loss_sum += f64::from(loss.to_scalar::<f32>()?);
            let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            partial.correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
            partial.seen += idx.len();
            partial.batches = b + 1;
            batches_this_call += 1;
            let save_due = control
                .save_every
                .is_some_and(|every| last_save.elapsed() >= every);
            if save_due && partial.batches < batches {
                partial.seconds = start.elapsed().as_secs_f64();
                save(epoch - 1, partial, &order, &rng, &history, &optim)?;
                last_save = Instant::now();
            }
            pb.batch(
                partial.batches,
                partial.loss_sum / partial.batches as f64,
                partial.correct as f64 / partial.seen.max(1) as f64,
                start.elapsed().as_secs_f64(),
            );
        }
        let eta_s = pb.finish();
        let seconds = start.elapsed().as_secs_f64();
        let val = validation.map(|v| evaluate(net, v, 500)).transpose()?;
        let stats = EpochStats {
            epoch,
            learning_rate: lr,
            loss: partial.loss_sum / batches.max(1) as f64,
            accuracy: partial.correct as f64 / partial.seen.max(1) as f64,
            val_loss: val.map(|v| v.loss),
            val_accuracy: val.map(|v| v.accuracy),
            seconds,
        };
        control.progress.emit(&Event::Epoch {
            model: id,
            epoch,
            epochs: opts.epochs,
            loss: stats.loss,
            accuracy: stats.accuracy,
            val_loss: stats.val_loss,
            val_accuracy: stats.val_accuracy,
            seconds,
            eta_s,
        });
        if control.progress.human() {
            let val = val.map_or(String::new(), |v| {
                format!(
                    ", validation loss {:.4} accuracy {:.2}%",
                    v.loss,
                    100.0 * v.accuracy
                )
            });
            eprintln!(
                "{id} epoch {epoch}/{}: loss {:.4}, train accuracy {:.2}%{val}, {:.1} s",
                opts.epochs,
                stats.loss,
                100.0 * stats.accuracy,
                stats.seconds
            );
        }
        history.push(stats);
        partial = Partial::default();
        order.clear();
        save(epoch, partial, &order, &rng, &history, &optim)?;
        last_save = Instant::now();
    }
    Ok(Outcome::Finished(history))
}

/// Mean cross-entropy loss and accuracy of `net` (evaluation mode) over `split`.
pub fn evaluate(net: &Net, split: &Split, batch_size: usize) -> Result<Evaluation, NetError> {
    let device = Device::Cpu;
    let all: Vec<usize> = (0..split.len()).collect();
    let (mut total, mut correct) = (0.0f64, 0usize);
    for idx in all.chunks(batch_size.max(1)) {
        let x = images_tensor(split, idx, None, &device)?;
        let labels: Vec<u32> = idx.iter().map(|&i| u32::from(split.labels[i])).collect();
        let y = Tensor::new(labels.as_slice(), &device)?;
        let logits = net.forward(&x, Mode::Eval)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        total += f64::from(loss.to_scalar::<f32>()?) * idx.len() as f64;
        let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
        correct += pred.iter().zip(&labels).filter(|(p, l)| p == l).count();
    }
    let n = split.len().max(1) as f64;
    Ok(Evaluation {
        loss: total / n,
        accuracy: correct as f64 / n,
    })
}

/// Mean cross-entropy loss of `net` (evaluation mode) over `split`.
pub fn evaluate_loss(net: &Net, split: &Split, batch_size: usize) -> Result<f64, NetError> {
    Ok(evaluate(net, split, batch_size)?.loss)
}

/// Float predictions (argmax class) for every image of `split`, in batches.
pub fn predict(net: &Net, split: &Split, batch_size: usize) -> Result<Vec<u8>, NetError> {
    let device = Device::Cpu;
    let mut out = Vec::with_capacity(split.len());
    let all: Vec<usize> = (0..split.len()).collect();
    for idx in all.chunks(batch_size.max(1)) {
        let x = images_tensor(split, idx, None, &device)?;
        let pred: Vec<u32> = net.forward(&x, Mode::Eval)?.argmax(D::Minus1)?.to_vec1()?;
        out.extend(pred.into_iter().map(|p| u8::try_from(p).unwrap_or(u8::MAX)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn gradients_are_clipped_to_the_global_norm_as_pytorch() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1f32, 2.0], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[2f32], &dev).unwrap()).unwrap();
        // loss = 3a0 + 4a1 + 12b: gradients (3, 4) and (12), global norm 13.
        let loss = (a
            .as_tensor()
            .mul(&Tensor::new(&[3f32, 4.0], &dev).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            + (b.as_tensor() * 12.0).unwrap().sum_all().unwrap())
        .unwrap();
        let vars = [a.clone(), b.clone()];
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &vars, 100.0).unwrap();
        assert!((norm - 13.0).abs() < 1e-5);
        assert_eq!(grads.get(&b).unwrap().to_vec1::<f32>().unwrap(), [12.0]);
        clip_grad_norm(&mut grads, &vars, 1.3).unwrap();
        let f = 1.3 / (13.0 + 1e-6);
        let ga: Vec<f32> = grads.get(&a).unwrap().to_vec1().unwrap();
        let gb: Vec<f32> = grads.get(&b).unwrap().to_vec1().unwrap();
        for (got, want) in ga.iter().chain(&gb).zip([3.0 * f, 4.0 * f, 12.0 * f]) {
            assert!((f64::from(*got) - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
    use super::*;
    use crate::arch;
    use model_report::optimizer::OptimizerConfig;

    fn synthetic(n: usize) -> Split {
        // Two easy classes: dark images are class 0, bright ones class 1.
        let mut images = Vec::with_capacity(n * PIXELS);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let l = u8::from(i % 2 == 1);
            images.extend((0..PIXELS).map(|p| {
                let p = u8::try_from((p + i) % 60).unwrap_or(0);
                if l == 1 { 150 + p } else { p }
            }));
            labels.push(l);
        }
        Split { images, labels }
    }

    fn finished(o: Outcome) -> Vec<EpochStats> {
        match o {
            Outcome::Finished(h) => h,
            Outcome::Stopped { .. } => panic!("stopped"),
        }
    }

    #[test]
    fn loss_falls_on_an_easy_task() {
        let data = synthetic(256);
        let net = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 1, &Device::Cpu).unwrap();
        let opts = TrainOptions::plain(3, 32, OptimizerConfig::adam(), 1);
        let h = finished(
            train(
                &net,
                &data,
                Some(&data),
                &opts,
                &Control {
                    progress: Progress::Quiet,
                    ..Control::default()
                },
            )
            .unwrap(),
        );
        assert!(h[2].loss < h[0].loss, "{h:?}");
        assert!(h[2].val_accuracy.is_some());
        let pred = predict(&net, &data, 100).unwrap();
        assert_eq!(pred, data.labels);
    }

    #[test]
    fn training_is_reproducible() {
        let data = synthetic(64);
        let opts = TrainOptions::plain(1, 16, OptimizerConfig::adam(), 9);
        let run = || {
            let net = Net::new(&arch::by_id("s5-ann").unwrap(), 2, &Device::Cpu).unwrap();
            finished(
                train(
                    &net,
                    &data,
                    None,
                    &opts,
                    &Control {
                        progress: Progress::Quiet,
                        ..Control::default()
                    },
                )
                .unwrap(),
            )[0]
            .loss
        };
        assert_eq!(run(), run());
    }

    /// A run stopped mid-epoch and at an epoch boundary, then resumed from its checkpoint,
    /// ends with the same weights and history as one that ran straight through: with dropout,
    /// augmentation, BatchNorm and an optimizer with state.
    #[test]
    fn resumed_run_equals_uninterrupted_run() {
        let data = synthetic(96);
        let arch = arch::by_id("s2-m5").unwrap();
        let mut opts = TrainOptions::plain(3, 16, OptimizerConfig::nadam(), 5);
        opts.augmentation = Some(Augmentation {
            rotation_degrees: 10.0,
            shift: 0.1,
            zoom: 0.1,
            horizontal_flip: true,
        });
        opts.schedule = Some(model_report::optimizer::StepLr {
            step_size: 1,
            gamma: 0.5,
        });
        let dir = tempfile::tempdir().unwrap();

        let straight = Net::new(&arch, 3, &Device::Cpu).unwrap();
        let quiet = Control {
            progress: Progress::Quiet,
            ..Control::default()
        };
        let want = finished(train(&straight, &data, Some(&data), &opts, &quiet).unwrap());

        let path = dir.path().join("run.ckpt");
        // 6 batches an epoch: stop after 4 (mid-epoch 1), then after 8 more (mid-epoch 3, a
        // boundary on the way), then finish, each time in a fresh network.
        for max in [Some(4), Some(8), None] {
            let net = Net::new(&arch, 3, &Device::Cpu).unwrap();
            let control = Control {
                progress: Progress::Quiet,
                checkpoint: Some(path.clone()),
                resume: true,
                // A write after every batch, too: saving leaves the run as it was.
                save_every: Some(Duration::ZERO),
                stop: None,
                max_batches: max,
            };
            match train(&net, &data, Some(&data), &opts, &control).unwrap() {
                Outcome::Stopped { .. } => assert!(max.is_some()),
                Outcome::Finished(got) => {
                    assert!(max.is_none());
                    let strip = |h: &[EpochStats]| {
                        h.iter()
                            .map(|e| {
                                (
                                    e.loss,
                                    e.accuracy,
                                    e.val_loss,
                                    e.val_accuracy,
                                    e.learning_rate,
                                )
                            })
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(strip(&got), strip(&want));
                    assert_eq!(
                        net.tensors_as_vecs().unwrap(),
                        straight.tensors_as_vecs().unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn a_stop_request_ends_the_run_after_the_batch_with_a_checkpoint() {
        let data = synthetic(64);
        let arch = arch::by_id("s5-ann").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let stop = AtomicBool::new(true);
        let control = Control {
            progress: Progress::Quiet,
            checkpoint: Some(path.clone()),
            resume: true,
            save_every: None,
            stop: Some(&stop),
            max_batches: None,
        };
        let opts = TrainOptions::plain(2, 16, OptimizerConfig::adam(), 1);
        let net = Net::new(&arch, 1, &Device::Cpu).unwrap();
        let outcome = train(&net, &data, None, &opts, &control).unwrap();
        assert_eq!(
            outcome,
            Outcome::Stopped {
                epochs_done: 0,
                batches: 0
            }
        );
        let ck = Checkpoint::load(&path).unwrap();
        assert_eq!(ck.progress.epochs_done, 0);
        assert_eq!(ck.order.len(), 64, "the drawn order is kept");
        stop.store(false, Ordering::SeqCst);
        assert!(matches!(
            train(&net, &data, None, &opts, &control).unwrap(),
            Outcome::Finished(h) if h.len() == 2
        ));
    }

    #[test]
    fn a_checkpoint_of_other_settings_is_refused() {
        let data = synthetic(32);
        let arch = arch::by_id("s5-ann").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let control = Control {
            progress: Progress::Quiet,
            checkpoint: Some(path.clone()),
            resume: true,
            ..Control::default()
        };
        let opts = TrainOptions::plain(1, 16, OptimizerConfig::adam(), 1);
        let net = Net::new(&arch, 1, &Device::Cpu).unwrap();
        finished(train(&net, &data, None, &opts, &control).unwrap());
        let other = TrainOptions::plain(2, 8, OptimizerConfig::adam(), 1);
        let err = train(&net, &data, None, &other, &control).unwrap_err();
        assert!(err.to_string().contains("other settings"), "{err}");
    }
}
