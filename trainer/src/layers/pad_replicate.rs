//! Zero padding and channel replication of a grey image, `[1, h, w]` to
//! `[channels, h + 2 pad, w + 2 pad]`: the reference study's "AlexNet-like" models read the
//! 28x28 Fashion-MNIST image as 3x32x32 (pad 2, 3 channels). The padding is zero in the
//! normalised domain (the value of a normalised pixel of real 0.0), as infer-core pads a
//! convolution's input with its zero point.
//!
//! In int8 it writes no op, so the deployed model still reads the 1x28x28 image: it folds into
//! the conv or dense layer after it (through a flatten for a dense one) as a pending
//! [`InputMap`] of the [`Lowerer`].
//!
//! - Conv2d (weight `[out, channels, k, k]`): a convolution over identical channels is one over
//!   a single channel with the weights summed over them, `W'[o, 0] = Σ_c W[o, c]`, and padding
//!   by `pad` and then by the conv's own padding is padding by their sum: `[out, 1, k, k]`,
//!   every side's padding grown by `pad`.
//! - Flatten, Dense (weight `[out, channels * (h + 2p) * (w + 2p)]`, channel-major): the padded
//!   positions hold zeros and drop out, `W'[o, y * w + x] = Σ_c W[o, c * H * W' + (y + p) * W' +
//!   (x + p)]` with `H = h + 2p`, `W' = w + 2p`: `[out, h * w]`.

use candle_core::Tensor;
use infer_core::spec::{Conv2dGeometry, DenseGeometry, Padding, Shape, TensorShape};
use serde::{Deserialize, Serialize};

use super::LayerOps;
use crate::lower::{InputMap, Linear, LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// Pads a 1-channel image by `pad` zeros on every side and repeats it into `channels` channels.
///
/// # Shapes
///
/// `[batch, 1, h, w]` to `[batch, channels, h + 2 pad, w + 2 pad]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadReplicate {
    /// Zero rows and columns added on each side.
    pub pad: usize,
    /// Channels of the output, each a copy of the padded input.
    pub channels: usize,
}

impl PadReplicate {
    /// The output image for `input` (`None` unless it has one channel, or if a size does not
    /// fit).
    fn mapped(&self, input: Shape) -> Option<Shape> {
        if input.channels != 1 || self.channels == 0 {
            return None;
        }
        let grow = u16::try_from(self.pad.checked_mul(2)?).ok()?;
        Some(Shape {
            channels: u16::try_from(self.channels).ok()?,
            height: input.height.checked_add(grow)?,
            width: input.width.checked_add(grow)?,
        })
    }
}

impl LayerOps for PadReplicate {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        Some(TensorShape::Image(self.mapped(input.image()?)?))
    }

    fn forward(
        &self,
        x: &Tensor,
        _params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let p = self.pad;
        Ok(x.pad_with_zeros(2, p, p)?
            .pad_with_zeros(3, p, p)?
            .repeat((1, self.channels, 1, 1))?)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let unsupported = |why| LowerError::Unsupported {
            path: params.path().to_string(),
            why,
        };
        if !lw.reads_model_input() {
            return Err(unsupported(
                "PadReplicate has an int8 lowering only as the first layer (on the model input)",
            ));
        }
        let input = lw
            .current_shape()
            .image()
            .ok_or(unsupported("PadReplicate takes a 1-channel image"))?;
        let mapped = self
            .mapped(input)
            .ok_or(unsupported("PadReplicate takes a 1-channel image"))?;
        let map = Fold {
            layer: *self,
            input,
        };
        lw.map_input(params.path(), Box::new(map), TensorShape::Image(mapped))
    }
}

/// The input map a [`PadReplicate`] leaves pending: the layer and the image it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fold {
    /// The layer.
    pub layer: PadReplicate,
    /// Its input, `[1, h, w]`.
    pub input: Shape,
}

impl Fold {
    /// `(channels, padded height, padded width)` of the layer's output.
    fn padded(&self) -> (usize, usize, usize) {
        let p = 2 * self.layer.pad;
        (
            self.layer.channels,
            usize::from(self.input.height) + p,
            usize::from(self.input.width) + p,
        )
    }

    /// `(h, w)` of the input.
    fn size(&self) -> (usize, usize) {
        (
            usize::from(self.input.height),
            usize::from(self.input.width),
        )
    }

    /// Index in the flattened output of channel `c`, input row `y` and column `x`.
    fn index(&self, c: usize, y: usize, x: usize) -> usize {
        let (_, ph, pw) = self.padded();
        let p = self.layer.pad;
        c * ph * pw + (y + p) * pw + x + p
    }
}

impl InputMap for Fold {
    fn fold(
        &self,
        kind: Linear,
        weight: &[f32],
        mapped: TensorShape,
    ) -> Result<(Linear, Vec<f32>), &'static str> {
        let (channels, ph, pw) = self.padded();
        match kind {
            Linear::Conv2d(g) => {
                if usize::from(g.in_ch) != channels || g.groups != 1 {
                    return Err("the conv after a PadReplicate must read all its channels");
                }
                let pad = u8::try_from(self.layer.pad)
                    .map_err(|_| "PadReplicate's padding does not fit the model format")?;
                let grow = |side: u8| {
                    side.checked_add(pad)
                        .ok_or("the conv's padding grown by PadReplicate's does not fit")
                };
                let padding = Padding {
                    top: grow(g.padding.top)?,
                    bottom: grow(g.padding.bottom)?,
                    left: grow(g.padding.left)?,
                    right: grow(g.padding.right)?,
                };
                let taps = usize::from(g.kernel_h) * usize::from(g.kernel_w);
                let folded = weight
                    .chunks(channels * taps)
                    .flat_map(|filter| {
                        (0..taps).map(move |t| (0..channels).map(|c| filter[c * taps + t]).sum())
                    })
                    .collect();
                let geometry = Conv2dGeometry {
                    in_ch: 1,
                    padding,
                    ..g
                };
                Ok((Linear::Conv2d(geometry), folded))
            }
            Linear::Dense(g) => {
                if mapped.len() != channels * ph * pw || mapped.image().is_some() {
                    return Err("the dense layer after a PadReplicate must read it flattened");
                }
                let (h, w) = self.size();
                let in_dim = mapped.len();
                let folded = weight
                    .chunks(in_dim)
                    .flat_map(|row| {
                        (0..h * w).map(move |i| {
                            let (y, x) = (i / w, i % w);
                            (0..channels).map(|c| row[self.index(c, y, x)]).sum()
                        })
                    })
                    .collect();
                let geometry = DenseGeometry {
                    in_dim: u32::try_from(h * w).map_err(|_| "input too large")?,
                    ..g
                };
                Ok((Linear::Dense(geometry), folded))
            }
        }
    }

    /// Flattened (a dense layer's input): the mean of each input pixel, read at its copies in
    /// the padded image. As an image (a conv's), `None`: the input's own per-channel means.
    fn means(&self, mapped: TensorShape, mapped_means: &[f64]) -> Option<Vec<f64>> {
        let (channels, ph, pw) = self.padded();
        if mapped.image().is_some() || mapped_means.len() != channels * ph * pw {
            return None;
        }
        let (h, w) = self.size();
        let means = (0..h * w)
            .map(|i| {
                let (y, x) = (i / w, i % w);
                let sum: f64 = (0..channels)
                    .map(|c| mapped_means[self.index(c, y, x)])
                    .sum();
                sum / channels as f64
            })
            .collect();
        Some(means)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use fashion_mnist::{PIXELS, Split};
    use infer_core::format::{OpDef, OpKind};
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::arch::Arch;
    use crate::layers::{BatchNorm, Conv2d, Dense, Flatten, Layer, MaxPool2d, Relu};
    use crate::lower::lower;
    use crate::net::{Mode, Net, Store};
    use crate::ops::test_util::{assert_close, random};
    use crate::quantize::{ActivationStats, RangeMethod};

    const AS_3X32: PadReplicate = PadReplicate {
        pad: 2,
        channels: 3,
    };

    fn image(channels: u16, height: u16, width: u16) -> TensorShape {
        TensorShape::Image(Shape {
            channels,
            height,
            width,
        })
    }

    fn arch(layers: Vec<Layer>) -> Arch {
        Arch::custom("pad-replicate-test", image(1, 28, 28), layers)
    }

    fn conv_net() -> Vec<Layer> {
        vec![
            Layer::PadReplicate(AS_3X32),
            Layer::Conv2d(Conv2d {
                out_ch: 4,
                kernel: 3,
                stride: 1,
                padding: 1,
            }),
            Layer::Relu(Relu),
            Layer::Flatten(Flatten),
            Layer::Dense(Dense { out_dim: 10 }),
        ]
    }

    fn dense_net() -> Vec<Layer> {
        vec![
            Layer::PadReplicate(AS_3X32),
            Layer::Flatten(Flatten),
            Layer::Dense(Dense { out_dim: 8 }),
            Layer::Relu(Relu),
            Layer::Dense(Dense { out_dim: 10 }),
        ]
    }

    #[test]
    fn shape_rule_takes_one_channel_images_only() {
        assert_eq!(AS_3X32.output(image(1, 28, 28)), Some(image(3, 32, 32)));
        let identity = PadReplicate {
            pad: 0,
            channels: 1,
        };
        assert_eq!(identity.output(image(1, 5, 7)), Some(image(1, 5, 7)));
        assert_eq!(AS_3X32.output(image(2, 28, 28)), None);
        assert_eq!(AS_3X32.output(TensorShape::Flat(784)), None);
        let none = PadReplicate {
            pad: 2,
            channels: 0,
        };
        assert_eq!(none.output(image(1, 28, 28)), None);
        let huge = PadReplicate {
            pad: 40_000,
            channels: 3,
        };
        assert_eq!(huge.output(image(1, 28, 28)), None);
    }

    #[test]
    fn forward_pads_with_zeros_and_copies_the_channel() {
        // Two 1x2x3 images, pad 1, 2 channels: each channel is the image inside a ring of
        // zeros (written out by hand).
        let x = Tensor::new(
            &[
                [[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]],
                [[[-1.0, -2.0, -3.0], [-4.0, -5.0, -6.0]]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let layer = PadReplicate {
            pad: 1,
            channels: 2,
        };
        let y = layer
            .forward(&x, &Store::default().at("0"), &mut Forward::new(Mode::Eval))
            .unwrap();
        assert_eq!(y.dims(), &[2, 2, 4, 5]);
        let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        #[rustfmt::skip]
        let plane = |s: f32| [
            0.0, 0.0,     0.0,     0.0,     0.0,
            0.0, s,       2.0 * s, 3.0 * s, 0.0,
            0.0, 4.0 * s, 5.0 * s, 6.0 * s, 0.0,
            0.0, 0.0,     0.0,     0.0,     0.0,
        ];
        let want = [plane(1.0), plane(1.0), plane(-1.0), plane(-1.0)].concat();
        assert_eq!(y, want);
    }

    #[test]
    fn folded_conv_weights_give_the_padded_replicated_output() {
        // conv(pad_replicate(x)) with W [4, 3, 3, 3], padding 1, stride 1 and 2, equals
        // conv(x) with the fold's [4, 1, 3, 3] weights and padding 1 + 2, in f32.
        let x = random(&[2, 1, 28, 28], 1);
        let padded = AS_3X32
            .forward(&x, &Store::default().at("0"), &mut Forward::new(Mode::Eval))
            .unwrap();
        let w = random(&[4, 3, 3, 3], 2);
        let b = random(&[4], 3);
        let fold = Fold {
            layer: AS_3X32,
            input: Shape {
                channels: 1,
                height: 28,
                width: 28,
            },
        };
        for stride in [1, 2] {
            let conv = Conv2d {
                out_ch: 4,
                kernel: 3,
                stride,
                padding: 1,
            };
            let kind = Linear::Conv2d(conv.geometry(3).unwrap());
            let weights: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            let (folded, fw) = fold.fold(kind, &weights, image(3, 32, 32)).unwrap();
            let Linear::Conv2d(g) = folded else {
                panic!("a conv folds into a conv");
            };
            assert_eq!((g.in_ch, g.padding), (1, Padding::uniform(3)));
            assert_eq!(
                folded.output(image(1, 28, 28)),
                kind.output(image(3, 32, 32))
            );
            let fw = Tensor::from_vec(fw, (4, 1, 3, 3), &Device::Cpu).unwrap();
            let want = crate::ops::conv2d(&padded, &w, Some(&b), stride, 1).unwrap();
            let got = crate::ops::conv2d(&x, &fw, Some(&b), stride, 3).unwrap();
            assert_close(&got, &want, 1e-4, "folded conv");
        }
    }

    #[test]
    fn folded_dense_weights_give_the_padded_replicated_output() {
        // dense(flatten(pad_replicate(x))) with W [8, 3 * 32 * 32] equals dense(flatten(x))
        // with the fold's [8, 784] weights, in f32.
        let x = random(&[3, 1, 28, 28], 4);
        let padded = AS_3X32
            .forward(&x, &Store::default().at("0"), &mut Forward::new(Mode::Eval))
            .unwrap();
        let w = random(&[8, 3072], 5);
        let b = random(&[8], 6);
        let fold = Fold {
            layer: AS_3X32,
            input: Shape {
                channels: 1,
                height: 28,
                width: 28,
            },
        };
        let kind = Linear::Dense(DenseGeometry {
            in_dim: 3072,
            out_dim: 8,
        });
        let weights: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let (folded, fw) = fold.fold(kind, &weights, TensorShape::Flat(3072)).unwrap();
        assert_eq!(
            folded,
            Linear::Dense(DenseGeometry {
                in_dim: 784,
                out_dim: 8
            })
        );
        let fw = Tensor::from_vec(fw, (8, 784), &Device::Cpu).unwrap();
        let dense = |x: &Tensor, w: &Tensor| {
            let x = x.flatten_from(1).unwrap();
            x.matmul(&w.t().unwrap())
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
        };
        let want = dense(&padded, &w);
        let got = dense(&x, &fw);
        assert_close(&got, &want, 1e-4, "folded dense");
        // The per-feature means of the padded, flattened input pull back to the input's.
        let means: Vec<f64> = (0..3072).map(f64::from).collect();
        let pulled = fold.means(TensorShape::Flat(3072), &means).unwrap();
        assert_eq!(pulled.len(), 784);
        // Pixel (0, 0) sits at (2, 2) of each 32x32 channel: 66, 1090, 2114, mean 1090.
        assert_eq!(pulled[0], 1090.0);
        assert_eq!(fold.means(image(3, 32, 32), &[0.5; 3]), None);
    }

    /// Index of the largest value.
    fn argmax(values: &[f32]) -> usize {
        let mut best = 0;
        for (i, &v) in values.iter().enumerate() {
            if v > values[best] {
                best = i;
            }
        }
        best
    }

    /// Made-up ranges, `[-4, 4]` at every trace point.
    fn made_up_ranges(net: &Net) -> crate::lower::Ranges {
        let x = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        net.forward_trace(&x, Mode::Eval)
            .unwrap()
            .into_iter()
            .map(|(path, _)| (path, (-4.0, 4.0)))
            .collect()
    }

    /// `n` synthetic 28x28 images: a dark background with a bright, noisy rectangle of random
    /// place, size and brightness (Fashion-MNIST-like statistics, no dataset needed).
    fn images(n: usize, seed: u64) -> Split {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut images = Vec::with_capacity(n * PIXELS);
        for _ in 0..n {
            let (y0, x0) = (rng.random_range(0..14), rng.random_range(0..14));
            let (y1, x1) = (rng.random_range(y0 + 6..28), rng.random_range(x0 + 6..28));
            let base: i32 = rng.random_range(60..220);
            for y in 0..28 {
                for x in 0..28 {
                    let inside = (y0..y1).contains(&y) && (x0..x1).contains(&x);
                    let v = if inside {
                        base + rng.random_range(-40..40)
                    } else {
                        rng.random_range(0..12)
                    };
                    images.push(u8::try_from(v.clamp(0, 255)).unwrap());
                }
            }
        }
        Split {
            images,
            labels: vec![0; n],
        }
    }

    /// Lowers `layers` (seeded weights, calibrated on 48 synthetic images) and compares the
    /// int8 logits of 8 other images with the float network's: the returned `(agreeing argmax,
    /// largest logit error in output steps)`. The logits' range is widened to their float
    /// min/max over the calibration images, so that only rounding separates the two.
    fn int8_vs_float(layers: Vec<Layer>, seed: u64, correct_bias: bool) -> (usize, f32) {
        let dev = Device::Cpu;
        let net = Net::new(&arch(layers.clone()), seed, &dev).unwrap();
        let calib = images(48, seed + 100);
        let stats = ActivationStats::collect(&net, &calib, 16).unwrap();
        let mut ranges = stats.ranges(RangeMethod::MinMax);
        let all: Vec<usize> = (0..calib.len()).collect();
        let x = crate::train::images_tensor(&calib, &all, None, &dev).unwrap();
        let logits: Vec<f32> = net
            .forward(&x, Mode::Eval)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let lo = logits.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        ranges.insert((layers.len() - 1).to_string(), (lo, hi));
        let owned = lower(&net, &ranges, correct_bias.then_some(&stats)).unwrap();
        assert_eq!(
            owned.input_shape,
            Shape {
                channels: 1,
                height: 28,
                width: 28
            }
        );
        let bytes = owned.to_bytes().unwrap();
        let model: infer_core::Model = infer_core::Model::from_bytes(&bytes).unwrap();
        let out_q = model.output_qparams();
        let mut scratch = vec![0i8; model.scratch_len()];

        let test = images(8, seed + 200);
        let idx: Vec<usize> = (0..test.len()).collect();
        let x = crate::train::images_tensor(&test, &idx, None, &dev).unwrap();
        let float = net
            .forward(&x, Mode::Eval)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let (lo, hi) = (out_q.dequantize(-128), out_q.dequantize(127));
        let (mut agree, mut worst) = (0, 0.0f32);
        for (i, want) in float.iter().enumerate() {
            let p = model.predict(test.image(i), &mut scratch).unwrap();
            let float_class = argmax(want);
            agree += usize::from(p.class == float_class);
            for (&q, &f) in p.logits.iter().zip(want) {
                let err = (out_q.dequantize(q) - f.clamp(lo, hi)).abs() / out_q.scale;
                worst = worst.max(err);
            }
        }
        (agree, worst)
    }

    #[test]
    fn conv_fold_int8_matches_float() {
        let net = Net::new(&arch(conv_net()), 1, &Device::Cpu).unwrap();
        let owned = lower(&net, &made_up_ranges(&net), None).unwrap();
        let kinds: Vec<OpKind> = owned.ops.iter().map(OpDef::kind).collect();
        assert_eq!(kinds, [OpKind::Conv2d, OpKind::Flatten, OpKind::Dense]);
        let OpDef::Conv2d(conv) = &owned.ops[0] else {
            panic!("first op is the conv");
        };
        assert_eq!(conv.geometry.in_ch, 1);
        assert_eq!(conv.geometry.padding, Padding::uniform(3));
        assert_eq!(conv.weights.len(), 4 * 9);
        for (seed, correct) in [(1, false), (2, true), (3, true)] {
            let (agree, worst) = int8_vs_float(conv_net(), seed, correct);
            assert!(agree >= 6, "seed {seed}: argmax agrees on {agree} of 8");
            assert!(worst <= 3.0, "seed {seed}: logits {worst} steps apart");
        }
    }

    #[test]
    fn dense_fold_int8_matches_float() {
        let net = Net::new(&arch(dense_net()), 1, &Device::Cpu).unwrap();
        let owned = lower(&net, &made_up_ranges(&net), None).unwrap();
        let kinds: Vec<OpKind> = owned.ops.iter().map(OpDef::kind).collect();
        assert_eq!(kinds, [OpKind::Flatten, OpKind::Dense, OpKind::Dense]);
        let OpDef::Dense(dense) = &owned.ops[1] else {
            panic!("second op is the dense layer");
        };
        assert_eq!(dense.input, 1);
        assert_eq!(
            dense.geometry,
            DenseGeometry {
                in_dim: 784,
                out_dim: 8
            }
        );
        for (seed, correct) in [(1, false), (2, true), (3, true)] {
            let (agree, worst) = int8_vs_float(dense_net(), seed, correct);
            assert!(agree >= 6, "seed {seed}: argmax agrees on {agree} of 8");
            assert!(worst <= 3.0, "seed {seed}: logits {worst} steps apart");
        }
    }

    #[test]
    fn anything_but_a_conv_or_dense_after_it_is_unsupported() {
        let conv1 = Layer::Conv2d(Conv2d {
            out_ch: 1,
            kernel: 3,
            stride: 1,
            padding: 1,
        });
        let pool = Layer::MaxPool2d(MaxPool2d {
            kernel: 2,
            stride: 2,
        });
        let pad = Layer::PadReplicate(AS_3X32);
        let flatten = Layer::Flatten(Flatten);
        let cases = [
            // A pooling between it and the conv.
            (vec![pad.clone(), pool, conv1.clone()], "1"),
            // A ReLU or a BatchNorm right after it.
            (vec![pad.clone(), Layer::Relu(Relu)], "0"),
            (
                vec![pad.clone(), Layer::BatchNorm(BatchNorm), conv1.clone()],
                "0",
            ),
            // Not the first layer (even on a 1-channel image).
            (vec![conv1.clone(), pad.clone(), conv1], "1"),
            // Nothing after it to fold into.
            (vec![pad.clone()], "0"),
            (vec![pad.clone(), flatten.clone()], "0"),
            // Flattened, but a ReLU instead of the dense layer.
            (vec![pad, flatten, Layer::Relu(Relu)], "0"),
        ];
        for (layers, at) in cases {
            let described = format!("{layers:?}");
            let net = Net::new(&arch(layers), 1, &Device::Cpu).unwrap();
            let err = lower(&net, &made_up_ranges(&net), None).unwrap_err();
            assert!(
                matches!(&err, LowerError::Unsupported { path, .. } if path == at),
                "{described}: {err}"
            );
        }
    }
}
