//! Time of each kernel on the layer shapes of the deployed models, with random data and the
//! working space `Model` lends it (the idle part of the scratch buffer).
//!
//! Run: `cargo bench -p infer-core --bench kernels`. Throughput is in MACs per second (or input
//! elements per second for pooling).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use infer_core::format::Shape;
use infer_core::kernels::{
    Conv2dParams, Pool2dParams, QRequant, avg_pool2d_i8, conv2d_i8, conv2d_max_pool2d_i8, dense_i8,
    max_pool2d_i8,
};

/// Deterministic bytes (a 64-bit LCG's high bits).
fn bytes(n: usize, seed: u64) -> Vec<i8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            i8::from_ne_bytes([s.to_be_bytes()[0]])
        })
        .collect()
}

/// Per-channel requantisation arrays for `channels` channels (multiplier about 0.004).
struct Requant {
    bias: Vec<u8>,
    multipliers: Vec<u8>,
    shifts: Vec<i8>,
}

impl Requant {
    fn new(channels: usize) -> Self {
        Self {
            bias: (0..channels)
                .flat_map(|c| (i32::try_from(c).unwrap() * 97 - 500).to_le_bytes())
                .collect(),
            multipliers: (0..channels)
                .flat_map(|c| ((1_i32 << 30) + i32::try_from(c).unwrap() * 1000).to_le_bytes())
                .collect(),
            shifts: vec![-7; channels],
        }
    }

    fn view(&self) -> QRequant<'_> {
        QRequant {
            bias: &self.bias,
            multipliers: &self.multipliers,
            shifts: &self.shifts,
            output_zero_point: -128,
            act_min: -128,
            act_max: 127,
        }
    }
}

struct ConvCase {
    name: &'static str,
    input: Shape,
    out_ch: usize,
    params: Conv2dParams,
    pool: bool,
    /// Work bytes the model's scratch plan leaves this layer.
    work: usize,
}

fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    let p = |k, pad| Conv2dParams {
        kernel_h: k,
        kernel_w: k,
        stride: 1,
        padding: infer_core::spec::Padding::uniform(pad),
    };
    let shape = |channels, side| Shape {
        channels,
        height: side,
        width: side,
    };
    let cases = [
        ConvCase {
            name: "cnn-conv1+maxpool",
            input: shape(1, 28),
            out_ch: 32,
            params: p(3, 1),
            pool: true,
            work: 31_360 - 784 - 6272,
        },
        ConvCase {
            name: "cnn-conv2+maxpool",
            input: shape(32, 14),
            out_ch: 64,
            params: p(3, 1),
            pool: true,
            work: 31_360 - 6272 - 3136,
        },
        ConvCase {
            name: "lenet-conv1",
            input: shape(1, 28),
            out_ch: 6,
            params: p(5, 0),
            pool: false,
            work: 4320 - 784 - 3456,
        },
        ConvCase {
            name: "lenet-conv2",
            input: shape(6, 12),
            out_ch: 16,
            params: p(5, 0),
            pool: false,
            work: 4320 - 864 - 1024,
        },
    ];
    for case in cases {
        let in_ch = usize::from(case.input.channels);
        let side = usize::from(case.input.height);
        let taps = in_ch * case.params.kernel_h * case.params.kernel_w;
        let (oh, ow) = case.params.output_size(side, side).unwrap();
        let input = bytes(in_ch * side * side, 1);
        let weights = bytes(case.out_ch * taps, 2);
        let requant = Requant::new(case.out_ch);
        let out_len = case.out_ch
            * if case.pool {
                (oh / 2) * (ow / 2)
            } else {
                oh * ow
            };
        let mut output = vec![0_i8; out_len];
        let mut work = vec![0_i8; case.work];
        let macs = u64::try_from(case.out_ch * oh * ow * taps).unwrap();
        group.throughput(Throughput::Elements(macs));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                let f = if case.pool {
                    conv2d_max_pool2d_i8
                } else {
                    conv2d_i8
                };
                f(
                    black_box(&input),
                    case.input,
                    -128,
                    &weights,
                    &case.params,
                    &requant.view(),
                    &mut output,
                    &mut work,
                );
            });
        });
    }
    // (name, in_dim, out_dim, work bytes the model's plan leaves the layer)
    for (name, in_dim, out_dim, work) in [
        ("mlp-dense1", 784, 256, 0),
        ("cnn-dense1", 3136, 128, 31_360 - 3136 - 128),
        ("lenet-dense1", 256, 120, 4320 - 256 - 120),
    ] {
        let input = bytes(in_dim, 3);
        let weights = bytes(in_dim * out_dim, 4);
        let requant = Requant::new(out_dim);
        let mut output = vec![0_i8; out_dim];
        let mut work = vec![0_i8; work];
        group.throughput(Throughput::Elements(
            u64::try_from(in_dim * out_dim).unwrap(),
        ));
        group.bench_function(name, |b| {
            b.iter(|| {
                dense_i8(
                    black_box(&input),
                    -128,
                    &weights,
                    &requant.view(),
                    &mut output,
                    &mut work,
                );
            });
        });
    }
    for (name, channels, side, avg) in [
        ("cnn-maxpool1", 32, 28, false),
        ("lenet-avgpool1", 6, 24, true),
    ] {
        let input = bytes(channels * side * side, 5);
        let mut output = vec![0_i8; channels * side * side / 4];
        let params = Pool2dParams {
            kernel: 2,
            stride: 2,
        };
        let input_shape = Shape {
            channels: u16::try_from(channels).unwrap(),
            height: u16::try_from(side).unwrap(),
            width: u16::try_from(side).unwrap(),
        };
        group.throughput(Throughput::Elements(u64::try_from(input.len()).unwrap()));
        group.bench_function(name, |b| {
            b.iter(|| {
                if avg {
                    avg_pool2d_i8(black_box(&input), input_shape, &params, &mut output);
                } else {
                    max_pool2d_i8(black_box(&input), input_shape, &params, &mut output);
                }
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_kernels);
criterion_main!(benches);
