//! Times `trainer::ops` against stock candle at the real shapes of `s5-cnn` and
//! `s3-lenet-base` (batch 64): forward and backward of every conv and pool layer, of every
//! conv block (conv + ReLU + pool) unfused and fused, then a whole training step (forward,
//! cross-entropy, backward, AdamW update) with stock ops, our unfused ops, and the fused blocks
//! the trainer uses (`Net::forward`). Runs with the trainer's allocator (mimalloc).
//!
//! ```text
//! cargo run --release -p trainer --example op_profile [-- --reps 9]
//! ```
//!
//! Each measurement is the median of `--reps` repetitions (default 9) after one warm-up; the
//! implementations being compared run in turn within every repetition, so background load hits
//! them alike. Backward times are `y.backward()` (candle seeds `dy = 1`), so they include
//! candle's gradient bookkeeping around the op. Dropout is left out of the
//! training step (it is the same elementwise mask on both sides).

use std::time::Instant;

use anyhow::Result;
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trainer::arch::{self, Arch};
use trainer::layers::{AvgPool2d, Conv2d, Layer, MaxPool2d};
use trainer::net::{Forward, Mode, Net, Store};
use trainer::ops::{self, Pooling};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 64;

/// A timed piece of work.
type Job<'a> = Box<dyn FnMut() -> Result<()> + 'a>;

/// Uniform values in `[-1, 1)` from a seeded generator.
fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Median milliseconds of each closure over `reps` rounds (after one warm-up round), the
/// closures running in turn within each round.
fn medians(reps: usize, fs: &mut [Job<'_>]) -> Result<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(reps); fs.len()];
    for round in 0..=reps {
        for (f, t) in fs.iter_mut().zip(&mut times) {
            let start = Instant::now();
            f()?;
            if round > 0 {
                t.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect())
}

/// How a layer is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Impl {
    /// candle's own ops.
    Stock,
    /// `trainer::ops`, one op per layer.
    Ours,
    /// `trainer::ops::conv_block` for conv + ReLU (+ pool), as `Net::forward` runs them.
    Fused,
}

impl Impl {
    fn label(self) -> &'static str {
        match self {
            Impl::Stock => "stock",
            Impl::Ours => "ours",
            Impl::Fused => "fused",
        }
    }
}

/// One conv or pool layer as the networks use it.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    layer: Layer,
    /// Input `[c, h, w]` (batch is [`BATCH`]).
    input: [usize; 3],
    /// Whether the input gradient is needed (false for a network's first layer).
    track_x: bool,
}

fn cases() -> Vec<Case> {
    let conv = |out_ch, kernel, padding| {
        Layer::Conv2d(Conv2d {
            out_ch,
            kernel,
            stride: 1,
            padding,
        })
    };
    let max2 = Layer::MaxPool2d(MaxPool2d {
        kernel: 2,
        stride: 2,
    });
    let avg2 = Layer::AvgPool2d(AvgPool2d {
        kernel: 2,
        stride: 2,
    });
    vec![
        Case {
            name: "cnn conv1 1->32 k3p1",
            layer: conv(32, 3, 1),
            input: [1, 28, 28],
            track_x: false,
        },
        Case {
            name: "cnn maxpool1",
            layer: max2.clone(),
            input: [32, 28, 28],
            track_x: true,
        },
        Case {
            name: "cnn conv2 32->64 k3p1",
            layer: conv(64, 3, 1),
            input: [32, 14, 14],
            track_x: true,
        },
        Case {
            name: "cnn maxpool2",
            layer: max2.clone(),
            input: [64, 14, 14],
            track_x: true,
        },
        Case {
            name: "lenet conv1 1->6 k5",
            layer: conv(6, 5, 0),
            input: [1, 28, 28],
            track_x: false,
        },
        Case {
            name: "lenet avgpool1",
            layer: avg2.clone(),
            input: [6, 24, 24],
            track_x: true,
        },
        Case {
            name: "lenet conv2 6->16 k5",
            layer: conv(16, 5, 0),
            input: [6, 12, 12],
            track_x: true,
        },
        Case {
            name: "lenet avgpool2",
            layer: avg2.clone(),
            input: [16, 8, 8],
            track_x: true,
        },
    ]
}

/// Applies a layer with the given implementation: conv and pooling with candle's stock ops or
/// ours; any other layer through its own forward pass (evaluation mode, no parameters: the
/// networks profiled here have none outside conv and dense layers).
fn apply(
    layer: Layer,
    x: &Tensor,
    params: Option<(&Tensor, &Tensor)>,
    imp: Impl,
) -> Result<Tensor> {
    Ok(match (layer.clone(), params, imp) {
        (
            Layer::Conv2d(Conv2d {
                stride, padding, ..
            }),
            Some((w, b)),
            Impl::Stock,
        ) => x
            .conv2d(w, padding, stride, 1, 1)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        (
            Layer::Conv2d(Conv2d {
                stride, padding, ..
            }),
            Some((w, b)),
            _,
        ) => ops::conv2d(x, w, Some(b), stride, padding)?,
        (Layer::MaxPool2d(MaxPool2d { kernel, stride }), _, Impl::Stock) => {
            x.max_pool2d_with_stride(kernel, stride)?
        }
        (Layer::MaxPool2d(MaxPool2d { kernel, stride }), _, _) => {
            ops::max_pool2d(x, kernel, stride)?
        }
        (Layer::AvgPool2d(AvgPool2d { kernel, stride }), _, Impl::Stock) => {
            x.avg_pool2d_with_stride(kernel, stride)?
        }
        (Layer::AvgPool2d(AvgPool2d { kernel, stride }), _, _) => {
            ops::avg_pool2d(x, kernel, stride)?
        }
        (Layer::Dense(_), Some((w, b)), _) => x.matmul(&w.t()?)?.broadcast_add(b)?,
        (Layer::Conv2d(Conv2d { .. }) | Layer::Dense(_), None, _) => {
            anyhow::bail!("{layer:?} without parameters")
        }
        (other, _, _) => {
            let store = Store::default();
            other
                .ops()
                .forward(x, &store.at("profile"), &mut Forward::new(Mode::Eval))?
        }
    })
}

fn ratio(stock: f64, ours: f64) -> String {
    format!("{:.1}x", stock / ours)
}

fn profile_ops(reps: usize) -> Result<()> {
    let imps = [Impl::Stock, Impl::Ours];
    println!("## Per op, batch {BATCH} (median ms of {reps})\n");
    println!(
        "| op | impl | fwd ms | fwd speed-up | bwd ms | bwd speed-up |\n|---|---|---:|---:|---:|---:|"
    );
    for (i, case) in cases().into_iter().enumerate() {
        let seed = 100 * i as u64;
        let [c, h, w] = case.input;
        let x = random(&[BATCH, c, h, w], seed)?;
        let x = if case.track_x {
            Var::from_tensor(&x)?.as_tensor().clone()
        } else {
            x
        };
        let params = match case.layer {
            Layer::Conv2d(Conv2d { out_ch, kernel, .. }) => Some((
                Var::from_tensor(&random(&[out_ch, c, kernel, kernel], seed + 1)?)?,
                Var::from_tensor(&random(&[out_ch], seed + 2)?)?,
            )),
            _ => None,
        };
        let params = params.as_ref().map(|(w, b)| (w.as_tensor(), b.as_tensor()));
        // Forward.
        let mut fwd: Vec<Job<'_>> = imps
            .iter()
            .map(|&imp| {
                let x = x.clone();
                let layer = case.layer.clone();
                Box::new(move || apply(layer.clone(), &x, params, imp).map(drop)) as Job<'_>
            })
            .collect();
        let fwd_ms = medians(reps, &mut fwd)?;
        // Backward from y (dy = 1).
        let mut outputs = Vec::new();
        for &imp in &imps {
            outputs.push(apply(case.layer.clone(), &x, params, imp)?);
        }
        let mut bwd: Vec<Job<'_>> = imps
            .iter()
            .zip(&outputs)
            .map(|(_, y)| Box::new(move || y.backward().map(drop).map_err(Into::into)) as Job<'_>)
            .collect();
        let bwd_ms = medians(reps, &mut bwd)?;
        for (k, imp) in imps.iter().enumerate() {
            println!(
                "| {} | {} | {:.2} | {} | {:.2} | {} |",
                case.name,
                imp.label(),
                fwd_ms[k],
                if k == 0 {
                    "".into()
                } else {
                    ratio(fwd_ms[0], fwd_ms[k])
                },
                bwd_ms[k],
                if k == 0 {
                    "".into()
                } else {
                    ratio(bwd_ms[0], bwd_ms[k])
                },
            );
        }
    }
    Ok(())
}

/// A conv block `(name, input [c, h, w], out_ch, kernel, padding, pooling, track_x)`.
type BlockCase = (&'static str, [usize; 3], usize, usize, usize, Pooling, bool);

/// `pool(relu(conv(x)))` computed with one implementation.
fn block(
    x: &Tensor,
    (w, b): (&Tensor, &Tensor),
    padding: usize,
    pool: Pooling,
    imp: Impl,
) -> Result<Tensor> {
    let layer = match pool {
        Pooling::Max { kernel, stride } => Layer::MaxPool2d(MaxPool2d { kernel, stride }),
        Pooling::Avg { kernel, stride } => Layer::AvgPool2d(AvgPool2d { kernel, stride }),
    };
    if imp == Impl::Fused {
        return Ok(ops::conv_block(x, w, b, 1, padding, Some(pool))?);
    }
    let conv = Layer::Conv2d(Conv2d {
        out_ch: w.dim(0)?,
        kernel: w.dim(2)?,
        stride: 1,
        padding,
    });
    let y = apply(conv, x, Some((w, b)), imp)?.relu()?;
    apply(layer, &y, None, imp)
}

fn profile_blocks(reps: usize) -> Result<()> {
    let max2 = Pooling::Max {
        kernel: 2,
        stride: 2,
    };
    let avg2 = Pooling::Avg {
        kernel: 2,
        stride: 2,
    };
    let cases: [BlockCase; 4] = [
        (
            "cnn block1 conv1+relu+maxpool",
            [1, 28, 28],
            32,
            3,
            1,
            max2,
            false,
        ),
        (
            "cnn block2 conv2+relu+maxpool",
            [32, 14, 14],
            64,
            3,
            1,
            max2,
            true,
        ),
        (
            "lenet block1 conv1+relu+avgpool",
            [1, 28, 28],
            6,
            5,
            0,
            avg2,
            false,
        ),
        (
            "lenet block2 conv2+relu+avgpool",
            [6, 12, 12],
            16,
            5,
            0,
            avg2,
            true,
        ),
    ];
    let imps = [Impl::Stock, Impl::Ours, Impl::Fused];
    println!("\n## Conv blocks, batch {BATCH} (median ms of {reps})\n");
    println!(
        "| block | impl | fwd ms | fwd speed-up | bwd ms | bwd speed-up |\n|---|---|---:|---:|---:|---:|"
    );
    for (i, (name, [c, h, w], out_ch, kernel, padding, pool, track_x)) in
        cases.into_iter().enumerate()
    {
        let seed = 1000 + 10 * i as u64;
        let x = random(&[BATCH, c, h, w], seed)?;
        let x = if track_x {
            Var::from_tensor(&x)?.as_tensor().clone()
        } else {
            x
        };
        let wt = Var::from_tensor(&random(&[out_ch, c, kernel, kernel], seed + 1)?)?;
        let bias = Var::from_tensor(&random(&[out_ch], seed + 2)?)?;
        let params = (wt.as_tensor(), bias.as_tensor());
        let mut fwd: Vec<Job<'_>> = imps
            .iter()
            .map(|&imp| {
                let x = x.clone();
                Box::new(move || block(&x, params, padding, pool, imp).map(drop)) as Job<'_>
            })
            .collect();
        let fwd_ms = medians(reps, &mut fwd)?;
        let outputs = imps
            .iter()
            .map(|&imp| block(&x, params, padding, pool, imp))
            .collect::<Result<Vec<_>>>()?;
        let mut bwd: Vec<Job<'_>> = outputs
            .iter()
            .map(|y| Box::new(move || y.backward().map(drop).map_err(Into::into)) as Job<'_>)
            .collect();
        let bwd_ms = medians(reps, &mut bwd)?;
        for (k, imp) in imps.iter().enumerate() {
            let speedup = |ms: &[f64]| {
                if k == 0 {
                    String::new()
                } else {
                    ratio(ms[0], ms[k])
                }
            };
            println!(
                "| {name} | {} | {:.2} | {} | {:.2} | {} |",
                imp.label(),
                fwd_ms[k],
                speedup(&fwd_ms),
                bwd_ms[k],
                speedup(&bwd_ms),
            );
        }
    }
    Ok(())
}

/// One network with its optimiser, computed with one implementation.
struct Trainee {
    net: Net,
    adam: AdamW,
    imp: Impl,
}

impl Trainee {
    fn new(arch: &Arch, imp: Impl) -> Result<Self> {
        let net = Net::new(arch, 1, &Device::Cpu)?;
        let adam = AdamW::new(
            net.vars(),
            ParamsAdamW {
                lr: 1e-3,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )?;
        Ok(Self { net, adam, imp })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.imp == Impl::Fused {
            return Ok(self.net.forward(x, Mode::Eval)?);
        }
        let mut cur = x.clone();
        for (i, layer) in self.net.arch.layers.iter().enumerate() {
            let p = self.net.store.at(&i.to_string());
            let params = match (p.get("weight"), p.get("bias")) {
                (Ok(w), Ok(b)) => Some((w.as_tensor(), b.as_tensor())),
                _ => None,
            };
            cur = apply(layer.clone(), &cur, params, self.imp)?;
        }
        Ok(cur)
    }

    fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        let loss = candle_nn::loss::cross_entropy(&self.forward(x)?, y)?;
        self.adam.backward_step(&loss)?;
        Ok(())
    }
}

fn profile_steps(reps: usize) -> Result<()> {
    println!("\n## Training step, batch {BATCH} (median ms of {reps})\n");
    println!(
        "| model | impl | forward ms | speed-up | step ms | speed-up |\n|---|---|---:|---:|---:|---:|"
    );
    let x = random(&[BATCH, 1, 28, 28], 7)?;
    let labels: Vec<u32> = (0..10u32).cycle().take(BATCH).collect();
    let y = Tensor::new(labels.as_slice(), &Device::Cpu)?;
    for arch in [
        arch::by_id("s5-cnn").unwrap(),
        arch::by_id("s3-lenet-base").unwrap(),
    ] {
        let imps = [Impl::Stock, Impl::Ours, Impl::Fused];
        let mut trainees = imps
            .iter()
            .map(|&imp| Trainee::new(&arch, imp))
            .collect::<Result<Vec<_>>>()?;
        // Same weights, same batch: the logits must agree.
        let l0 = trainees[0].forward(&x)?;
        for t in &trainees[1..] {
            let diff = (&l0 - t.forward(&x)?)?
                .abs()?
                .max(D::Minus1)?
                .max(0)?
                .to_scalar::<f32>()?;
            anyhow::ensure!(diff < 1e-4, "{}: logits differ by {diff}", arch.id);
        }
        let (x, y) = (&x, &y);
        let fwd_ms = {
            let mut fs: Vec<Job<'_>> = trainees
                .iter()
                .map(|t| Box::new(move || t.forward(x).map(drop)) as Job<'_>)
                .collect();
            medians(reps, &mut fs)?
        };
        let step_ms = {
            let mut fs: Vec<Job<'_>> = trainees
                .iter_mut()
                .map(|t| Box::new(move || t.step(x, y)) as Job<'_>)
                .collect();
            medians(reps, &mut fs)?
        };
        for (k, imp) in imps.iter().enumerate() {
            println!(
                "| {} | {} | {:.2} | {} | {:.2} | {} |",
                arch.id,
                imp.label(),
                fwd_ms[k],
                if k == 0 {
                    "".into()
                } else {
                    ratio(fwd_ms[0], fwd_ms[k])
                },
                step_ms[k],
                if k == 0 {
                    "".into()
                } else {
                    ratio(step_ms[0], step_ms[k])
                },
            );
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let reps = match args.iter().position(|a| a == "--reps") {
        Some(i) => args
            .get(i + 1)
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| anyhow::anyhow!("--reps needs a positive integer"))?,
        None => 9,
    };
    println!(
        "candle threads: {}, DType {:?}\n",
        candle_core::utils::get_num_threads(),
        DType::F32
    );
    profile_ops(reps)?;
    profile_blocks(reps)?;
    profile_steps(reps)?;
    Ok(())
}
