//! `Model::from_bytes` validation and `Model::predict` end to end, on models built in the test
//! (see `common`), against a plain reference implementation of the whole network.

mod common;

use common::{
    Builder, Lcg, MNIST_SHAPE, OwnedLayer, OwnedModel, PIXEL_Q, cnn_model, file, lenet_model, q,
    reference_argmax, reference_forward, standard_model, tiny_model,
};
use infer_core::error::Buffer;
use infer_core::format::{Activation, HEADER_LEN, Pool2dDef, QParams, Shape};
use infer_core::model::{LayerKind, TensorShape};
use infer_core::{Error, Model};
use proptest::prelude::*;

fn load(bytes: &[u8]) -> Result<Model<'_>, Error> {
    Model::from_bytes(bytes)
}

/// Loads `model` and returns the error, or panics if it loads.
fn load_err(model: &OwnedModel) -> Error {
    let bytes = model.to_bytes();
    Model::from_bytes(&bytes).expect_err("model should be rejected")
}

/// If `bytes` load, the model must run on a random input and agree with the reference.
fn check_loaded_model_runs(bytes: &[u8], seed: u64) {
    let Ok(model) = Model::from_bytes(bytes) else {
        return;
    };
    let payload = &bytes[HEADER_LEN..];
    let def: infer_core::format::ModelDef<'_> = postcard::from_bytes(payload).unwrap();
    let owned = OwnedModel::from_def(&def);
    let pixels = Lcg::new(seed).pixels(model.input_len());
    let mut scratch = vec![0_i8; model.scratch_len()];
    let prediction = model.predict_raw(&pixels, &mut scratch).unwrap();
    let want = reference_forward(&owned, &pixels);
    assert_eq!(prediction.logits, &want[..]);
    assert_eq!(prediction.class, reference_argmax(&want));
}

// ---------------------------------------------------------------------------------------------
// Valid models

#[test]
fn standard_model_loads_with_expected_summary() {
    let bytes = standard_model().to_bytes();
    let model = load(&bytes).unwrap();
    assert_eq!(model.id(), "test-model");
    assert_eq!(model.input_shape(), MNIST_SHAPE);
    assert_eq!(model.input_len(), 784);
    assert_eq!(model.input_qparams(), PIXEL_Q);
    assert_eq!(model.output_qparams(), q(0.1, 3));
    assert_eq!(model.num_classes(), 10);
    let kinds: Vec<_> = model.layers().iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds,
        [
            LayerKind::Conv2d,
            LayerKind::MaxPool2d,
            LayerKind::Conv2d,
            LayerKind::AvgPool2d,
            LayerKind::Flatten,
            LayerKind::Dense
        ]
    );
    let image = |channels, height, width| {
        TensorShape::Image(Shape {
            channels,
            height,
            width,
        })
    };
    let outputs: Vec<_> = model.layers().iter().map(|l| l.output_shape()).collect();
    assert_eq!(
        outputs,
        [
            image(4, 28, 28),
            image(4, 14, 14),
            image(6, 6, 6),
            image(6, 3, 3),
            TensorShape::Flat(54),
            TensorShape::Flat(10)
        ]
    );
    // ReLU: [max(-128, zp), 127]; ReLU6 with scale 0.05, zp -128: -128 + 120 = -8.
    assert_eq!(model.layers()[0].activation_range(), (-100, 127));
    assert_eq!(model.layers()[2].activation_range(), (-128, -8));
    assert_eq!(model.layers()[5].activation_range(), (-128, 127));
    // Pooling keeps the input's quantisation.
    assert_eq!(model.layers()[1].output_qparams(), q(0.02, -100));
    // conv1: 3136 outputs * 1 * 9; conv2: 216 * 4 * 9; dense: 54 * 10.
    assert_eq!(model.macs(), 28_224 + 7_776 + 540);
    // weights + 9 bytes (bias, multiplier, shift) per output channel
    assert_eq!(
        model.param_bytes(),
        (36 + 4 * 9) + (216 + 6 * 9) + (540 + 10 * 9)
    );
    // Largest input + output: conv1 (784 + 3136) and maxpool (3136 + 784).
    assert_eq!(model.scratch_len(), 3920);
    // from_def on the decoded definition is the same model.
    let owned = standard_model();
    assert_eq!(Model::from_def(&owned.def()).unwrap(), model);
}

#[test]
fn tiny_model_loads() {
    let bytes = tiny_model().to_bytes();
    let model = load(&bytes).unwrap();
    assert_eq!(model.num_classes(), 4);
    assert_eq!(model.input_len(), 50);
    // conv: 50 + 3 * 8 * 8 = 242; dense: 192 + 4.
    assert_eq!(model.scratch_len(), 242);
}

#[test]
fn model_of_only_flattens_is_valid_and_copies_the_input() {
    let mut m = Builder::new(
        Shape {
            channels: 1,
            height: 2,
            width: 2,
        },
        PIXEL_Q,
        1,
    )
    .build();
    m.layers = vec![OwnedLayer::Flatten; infer_core::format::MAX_LAYERS];
    let bytes = m.to_bytes();
    let model = load(&bytes).unwrap();
    assert_eq!(model.scratch_len(), 4);
    let mut scratch = [0_i8; 4];
    let p = model
        .predict_raw(&[0, 128, 255, 200], &mut scratch)
        .unwrap();
    assert_eq!(p.logits, [-128, 0, 127, 72]);
    assert_eq!(p.class, 2);
}

// ---------------------------------------------------------------------------------------------
// Header and payload errors

#[test]
fn bad_magic() {
    let mut bytes = standard_model().to_bytes();
    bytes[0] = b'X';
    assert_eq!(load(&bytes), Err(Error::BadMagic));
}

#[test]
fn bad_version() {
    let mut bytes = standard_model().to_bytes();
    bytes[4..6].copy_from_slice(&2_u16.to_le_bytes());
    assert_eq!(load(&bytes), Err(Error::UnsupportedVersion(2)));
}

#[test]
fn reserved_bytes_must_be_zero() {
    let mut bytes = standard_model().to_bytes();
    bytes[6] = 1;
    assert_eq!(load(&bytes), Err(Error::Reserved));
}

#[test]
fn bad_crc() {
    let mut bytes = standard_model().to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(load(&bytes), Err(Error::Checksum { .. })));
    // And a wrong stored CRC over an intact payload.
    let mut bytes = standard_model().to_bytes();
    bytes[12] ^= 0xff;
    assert!(matches!(load(&bytes), Err(Error::Checksum { .. })));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = standard_model().to_bytes();
    for len in 0..bytes.len() {
        let err = load(&bytes[..len]).expect_err("truncated file must not load");
        if len < HEADER_LEN {
            assert_eq!(err, Error::Truncated, "len {len}");
        } else {
            assert_eq!(
                err,
                Error::PayloadLength {
                    expected: bytes.len() - HEADER_LEN,
                    got: len - HEADER_LEN
                }
            );
        }
    }
}

#[test]
fn every_truncated_payload_with_a_consistent_header_is_an_error() {
    let payload = standard_model().payload();
    for len in 0..payload.len() {
        let bytes = file(&payload[..len]);
        assert!(
            load(&bytes).is_err(),
            "payload truncated to {len} bytes loaded"
        );
    }
}

#[test]
fn trailing_payload_bytes() {
    let mut payload = standard_model().payload();
    payload.extend_from_slice(&[0, 0]);
    assert_eq!(load(&file(&payload)), Err(Error::TrailingBytes(2)));
    // ... and bytes after the payload that the header does not count.
    let mut bytes = standard_model().to_bytes();
    bytes.push(0);
    let payload_len = bytes.len() - HEADER_LEN;
    assert_eq!(
        load(&bytes),
        Err(Error::PayloadLength {
            expected: payload_len - 1,
            got: payload_len
        })
    );
}

#[test]
fn garbage_payload_is_a_decode_error() {
    assert_eq!(load(&file(&[0xff; 40])), Err(Error::Decode));
    assert_eq!(load(&file(&[])), Err(Error::Decode));
}

#[test]
fn too_many_layers() {
    let shape = Shape {
        channels: 1,
        height: 2,
        width: 2,
    };
    // The fields before the layer list, then the list: a varint count and `Flatten`s (variant
    // index 4, one byte each).
    let flattens = |count: u8| {
        let mut payload = postcard::to_allocvec(&("x", shape, PIXEL_Q)).unwrap();
        payload.push(count);
        payload.extend(std::iter::repeat_n(4_u8, usize::from(count)));
        file(&payload)
    };
    assert!(load(&flattens(32)).is_ok());
    assert_eq!(load(&flattens(33)), Err(Error::TooManyLayers));
    assert_eq!(load(&flattens(100)), Err(Error::TooManyLayers));
}

#[test]
fn no_layers() {
    let mut m = standard_model();
    m.layers.clear();
    assert_eq!(load_err(&m), Error::NoLayers);
}

// ---------------------------------------------------------------------------------------------
// Layer validation errors

#[test]
fn multiplier_mismatch() {
    let mut m = standard_model();
    // Dense layer (index 5), channel 3: multiplier off by one.
    let quant = m.layers[5].quant_mut();
    let old = quant.multiplier(3);
    quant.multipliers[12..16].copy_from_slice(&(old + 1).to_le_bytes());
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch {
            layer: 5,
            channel: 3
        }
    );

    // Conv layer 2, channel 0: shift off by one.
    let mut m = standard_model();
    let quant = m.layers[2].quant_mut();
    quant.shifts[0] = quant.shifts[0].wrapping_add(1);
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch {
            layer: 2,
            channel: 0
        }
    );

    // A weight scale changed without re-deriving the multiplier.
    let mut m = standard_model();
    let quant = m.layers[0].quant_mut();
    let ws = f32::from_le_bytes(quant.weight_scales[4..8].try_into().unwrap()) * 1.5;
    quant.weight_scales[4..8].copy_from_slice(&ws.to_le_bytes());
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch {
            layer: 0,
            channel: 1
        }
    );
}

#[test]
fn shape_mismatch() {
    // Dense in_dim disagrees with the flattened 54 features.
    let mut m = standard_model();
    if let OwnedLayer::Dense { in_dim, .. } = &mut m.layers[5] {
        *in_dim = 50;
    }
    assert_eq!(
        load_err(&m),
        Error::ShapeMismatch {
            layer: 5,
            expected: 50,
            got: 54
        }
    );

    // Conv in_ch disagrees with the 4 channels coming in (weights still consistent with in_ch).
    let mut m = standard_model();
    if let OwnedLayer::Conv { in_ch, weights, .. } = &mut m.layers[2] {
        *in_ch = 5;
        weights.resize(6 * 5 * 9, 0);
    }
    assert_eq!(
        load_err(&m),
        Error::ShapeMismatch {
            layer: 2,
            expected: 5,
            got: 4
        }
    );
}

#[test]
fn dense_needs_flatten_and_conv_needs_image() {
    let mut m = standard_model();
    m.layers.remove(4); // the Flatten
    assert_eq!(load_err(&m), Error::ExpectedFlat { layer: 4 });

    let m = Builder::new(MNIST_SHAPE, PIXEL_Q, 3).flatten().build();
    let mut with_conv = Builder::new(MNIST_SHAPE, PIXEL_Q, 3)
        .conv(2, (3, 1, 0), q(0.1, 0), Activation::None)
        .build();
    let mut layers = m.layers.clone();
    layers.append(&mut with_conv.layers);
    with_conv.layers = layers;
    assert_eq!(load_err(&with_conv), Error::ExpectedImage { layer: 1 });

    let mut pool_after_flatten = standard_model();
    pool_after_flatten.layers.insert(
        5,
        OwnedLayer::MaxPool(Pool2dDef {
            kernel: 1,
            stride: 1,
        }),
    );
    assert_eq!(
        load_err(&pool_after_flatten),
        Error::ExpectedImage { layer: 5 }
    );
}

#[test]
fn buffer_lengths() {
    let mut m = standard_model();
    if let OwnedLayer::Conv { weights, .. } = &mut m.layers[0] {
        weights.pop();
    }
    assert_eq!(
        load_err(&m),
        Error::BufferLength {
            layer: 0,
            buffer: Buffer::Weights,
            expected: 36,
            got: 35
        }
    );

    type Field = fn(&mut common::OwnedQuant) -> &mut Vec<u8>;
    let cases: [(Buffer, Field, usize); 4] = [
        (Buffer::WeightScales, |q| &mut q.weight_scales, 40),
        (Buffer::Bias, |q| &mut q.bias, 40),
        (Buffer::Multipliers, |q| &mut q.multipliers, 40),
        (Buffer::Shifts, |q| &mut q.shifts, 10),
    ];
    for (buffer, field, expected) in cases {
        let mut m = standard_model();
        field(m.layers[5].quant_mut()).push(0);
        assert_eq!(
            load_err(&m),
            Error::BufferLength {
                layer: 5,
                buffer,
                expected,
                got: expected + 1
            }
        );
    }
}

#[test]
fn bad_quant_params() {
    let set_output = |q: QParams| {
        let mut m = standard_model();
        if let OwnedLayer::Dense { output, .. } = &mut m.layers[5] {
            *output = q;
        }
        load_err(&m)
    };
    let bad = Error::BadQuantParams { layer: 5 };
    assert_eq!(set_output(q(0.0, 0)), bad);
    assert_eq!(set_output(q(-0.1, 0)), bad);
    assert_eq!(set_output(q(f32::NAN, 0)), bad);
    assert_eq!(set_output(q(f32::INFINITY, 0)), bad);
    assert_eq!(set_output(q(0.1, 128)), bad);
    assert_eq!(set_output(q(0.1, -129)), bad);
    // A tiny output scale makes the multiplier too large to represent.
    assert_eq!(set_output(q(1e-30, 0)), bad);

    let mut m = standard_model();
    m.layers[0].quant_mut().weight_scales[0..4].copy_from_slice(&(-0.01_f32).to_le_bytes());
    assert_eq!(load_err(&m), Error::BadQuantParams { layer: 0 });
    m.layers[0].quant_mut().weight_scales[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(load_err(&m), Error::BadQuantParams { layer: 0 });

    let mut m = standard_model();
    m.input = q(0.0, 0);
    assert_eq!(load_err(&m), Error::InputQuantParams);
    m.input = q(0.1, 300);
    assert_eq!(load_err(&m), Error::InputQuantParams);
}

#[test]
fn unsupported_layers() {
    let conv_with = |kernel: u8, stride: u8, out_ch: u16| {
        let mut m = standard_model();
        if let OwnedLayer::Conv {
            kernel_h,
            kernel_w,
            stride: s,
            out_ch: o,
            ..
        } = &mut m.layers[2]
        {
            (*kernel_h, *kernel_w, *s, *o) = (kernel, kernel, stride, out_ch);
        }
        load_err(&m)
    };
    let unsupported = Error::UnsupportedLayer { layer: 2 };
    assert_eq!(conv_with(3, 0, 6), unsupported); // zero stride
    assert_eq!(conv_with(0, 1, 6), unsupported); // zero kernel
    assert_eq!(conv_with(15, 1, 6), unsupported); // kernel > 14 (no padding)
    assert_eq!(conv_with(3, 2, 0), unsupported); // no output channel

    let pool_with = |kernel: u8, stride: u8| {
        let mut m = standard_model();
        m.layers[3] = OwnedLayer::AvgPool(Pool2dDef { kernel, stride });
        load_err(&m)
    };
    // The pool's input is 6x6x6.
    assert_eq!(pool_with(7, 1), Error::UnsupportedLayer { layer: 3 });
    assert_eq!(pool_with(2, 0), Error::UnsupportedLayer { layer: 3 });
    assert_eq!(pool_with(0, 1), Error::UnsupportedLayer { layer: 3 });

    let mut m = standard_model();
    if let OwnedLayer::Dense { out_dim, .. } = &mut m.layers[5] {
        *out_dim = 0;
    }
    assert_eq!(load_err(&m), Error::UnsupportedLayer { layer: 5 });
}

#[test]
fn input_shape_must_be_non_empty() {
    let mut m = standard_model();
    m.input_shape.height = 0;
    assert_eq!(load_err(&m), Error::InputShape);
}

#[test]
fn output_must_be_a_short_flat_vector() {
    let mut m = standard_model();
    m.layers.truncate(4); // ends with the 6x3x3 avg pool
    assert_eq!(load_err(&m), Error::OutputShape { len: 54 });
    m.layers.push(OwnedLayer::Flatten); // 54 logits is too many
    assert_eq!(load_err(&m), Error::OutputShape { len: 54 });

    let m = Builder::new(MNIST_SHAPE, PIXEL_Q, 5)
        .flatten()
        .dense(17, q(0.1, 0), Activation::None)
        .build();
    assert_eq!(load_err(&m), Error::OutputShape { len: 17 });
    let m = Builder::new(MNIST_SHAPE, PIXEL_Q, 5)
        .flatten()
        .dense(16, q(0.1, 0), Activation::None)
        .build();
    assert!(load(&m.to_bytes()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Inference

#[test]
fn predict_matches_reference() {
    let owned = standard_model();
    let bytes = owned.to_bytes();
    let model = load(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let mut rng = Lcg::new(42);
    let mut images = vec![[0_u8; 784], [255_u8; 784], [128_u8; 784]];
    for _ in 0..20 {
        images.push(rng.pixels(784).try_into().unwrap());
    }
    let mut classes = std::collections::BTreeSet::new();
    for pixels in &images {
        let want = reference_forward(&owned, pixels);
        let p = model.predict(pixels, &mut scratch).unwrap();
        assert_eq!(p.logits, &want[..]);
        assert_eq!(p.class, reference_argmax(&want));
        classes.insert(p.class);
    }
    // The test is only meaningful if the logits are not all clamped to one value.
    assert!(
        classes.len() > 1,
        "degenerate test model: classes {classes:?}"
    );
}

#[test]
fn predict_matches_reference_on_the_shapes_of_the_deployed_models() {
    // The kernels' fast paths (im2col, tap rows, fused conv + max pooling, 4-row dense) on the
    // layer shapes of s5-cnn and s3-lenet-base, with their scratch plans.
    for owned in [cnn_model(), lenet_model()] {
        let bytes = owned.to_bytes();
        let model = load(&bytes).unwrap();
        let mut scratch = vec![0x55_i8; model.scratch_len()];
        let mut rng = Lcg::new(3);
        let mut logits = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let pixels: [u8; 784] = rng.pixels(784).try_into().unwrap();
            let want = reference_forward(&owned, &pixels);
            let p = model.predict(&pixels, &mut scratch).unwrap();
            assert_eq!(p.logits, &want[..]);
            logits.insert(want);
        }
        assert!(logits.len() > 1, "degenerate test model: {logits:?}");
    }
}

#[test]
fn predict_raw_matches_reference_on_a_non_mnist_model() {
    let owned = tiny_model();
    let bytes = owned.to_bytes();
    let model = load(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let mut rng = Lcg::new(9);
    for _ in 0..20 {
        let pixels = rng.pixels(50);
        let want = reference_forward(&owned, &pixels);
        let p = model.predict_raw(&pixels, &mut scratch).unwrap();
        assert_eq!(p.logits, &want[..]);
        assert_eq!(p.class, reference_argmax(&want));
    }
}

#[test]
fn scratch_len_is_exactly_enough() {
    for owned in [standard_model(), tiny_model()] {
        let bytes = owned.to_bytes();
        let model = load(&bytes).unwrap();
        let n = model.scratch_len();
        let pixels = Lcg::new(1).pixels(model.input_len());
        let want = reference_forward(&owned, &pixels);

        let mut exact = vec![0_i8; n];
        let p = model.predict_raw(&pixels, &mut exact).unwrap();
        assert_eq!(p.logits, &want[..]);

        let mut short = vec![0_i8; n - 1];
        assert_eq!(
            model.predict_raw(&pixels, &mut short),
            Err(Error::ScratchTooSmall { needed: n })
        );
        assert_eq!(
            model.predict_raw(&pixels, &mut []),
            Err(Error::ScratchTooSmall { needed: n })
        );

        // A larger, dirty scratch gives the same answer.
        let mut big = vec![0x55_i8; n + 1000];
        let p = model.predict_raw(&pixels, &mut big).unwrap();
        assert_eq!(p.logits, &want[..]);
    }
}

#[test]
fn predict_checks_input() {
    let bytes = tiny_model().to_bytes();
    let model = load(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    assert_eq!(
        model.predict(&[0; 784], &mut scratch),
        Err(Error::InputShape)
    );
    assert_eq!(
        model.predict_raw(&[0; 49], &mut scratch),
        Err(Error::InputLength {
            expected: 50,
            got: 49
        })
    );

    let bytes = standard_model().to_bytes();
    let model = load(&bytes).unwrap();
    assert_eq!(
        model.predict_raw(&[0; 785], &mut scratch),
        Err(Error::InputLength {
            expected: 784,
            got: 785
        })
    );
}

#[test]
fn every_single_byte_payload_mutation_with_a_fixed_header_is_safe() {
    // Exhaustive over positions, a few values each; the header is recomputed so that the
    // decoder and the validator (not the CRC) see every mutation. Anything that still loads
    // must run and agree with the reference.
    let payload = tiny_model().payload();
    let mut loaded = 0;
    for i in 0..payload.len() {
        let b = payload[i];
        for v in [b ^ 0x01, b ^ 0x80, b.wrapping_add(1), 0x00, 0xff] {
            let mut mutated = payload.clone();
            mutated[i] = v;
            let bytes = file(&mutated);
            if load(&bytes).is_ok() {
                loaded += 1;
            }
            check_loaded_model_runs(&bytes, u64::try_from(i).unwrap());
        }
    }
    // Weight bytes can take any value, so many mutations still load.
    assert!(loaded > 100, "only {loaded} mutations loaded");
}

// ---------------------------------------------------------------------------------------------
// Property tests: no input makes `from_bytes` panic

/// A random architecture: 0-3 image layers (conv/pools), then Flatten and 0-2 dense layers, or
/// (sometimes) the layers in the wrong order.
#[derive(Debug, Clone)]
enum Spec {
    Conv(u16, u8, u8, u8, Activation),
    Max(u8, u8),
    Avg(u8, u8),
    Flatten,
    Dense(u32, Activation),
}

fn arb_activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::None),
        Just(Activation::Relu),
        Just(Activation::Relu6)
    ]
}

fn arb_image_spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        3 => (1_u16..5, 1_u8..4, 1_u8..3, 0_u8..3, arb_activation())
            .prop_map(|(o, k, s, p, a)| Spec::Conv(o, k, s, p, a)),
        1 => (1_u8..4, 1_u8..3).prop_map(|(k, s)| Spec::Max(k, s)),
        1 => (1_u8..4, 1_u8..3).prop_map(|(k, s)| Spec::Avg(k, s)),
    ]
}

fn arb_specs() -> impl Strategy<Value = Vec<Spec>> {
    (
        proptest::collection::vec(arb_image_spec(), 0..4),
        proptest::collection::vec((1_u32..20, arb_activation()), 0..3),
        1_u32..=16,
        prop::bool::weighted(0.15),
    )
        .prop_map(|(image, dense, classes, shuffle)| {
            let mut specs = image;
            specs.push(Spec::Flatten);
            specs.extend(dense.into_iter().map(|(n, a)| Spec::Dense(n, a)));
            if let Some(Spec::Dense(n, _)) = specs.last_mut() {
                *n = classes;
            }
            if shuffle {
                specs.reverse();
            }
            specs
        })
}

fn arb_qparams() -> impl Strategy<Value = QParams> {
    (0.005_f32..0.5, -128_i32..=127).prop_map(|(scale, zero_point)| QParams { scale, zero_point })
}

fn build(
    specs: &[Spec],
    input: Shape,
    input_q: QParams,
    outs: &[QParams],
    seed: u64,
) -> OwnedModel {
    let mut b = Builder::new(input, input_q, seed);
    for (spec, &out) in specs.iter().zip(outs.iter().cycle()) {
        b = match *spec {
            Spec::Conv(o, k, s, p, a) => b.conv(o, (k, s, p), out, a),
            Spec::Max(k, s) => b.max_pool(k, s),
            Spec::Avg(k, s) => b.avg_pool(k, s),
            Spec::Flatten => b.flatten(),
            Spec::Dense(n, a) => b.dense(n, out, a),
        };
    }
    b.build()
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = load(&bytes);
    }

    #[test]
    fn random_payload_with_valid_header_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = file(&payload);
        let _ = load(&bytes);
        check_loaded_model_runs(&bytes, 0);
    }

    #[test]
    fn single_byte_mutation_never_panics(index in any::<prop::sample::Index>(), value in any::<u8>()) {
        let mut bytes = standard_model().to_bytes();
        let i = index.index(bytes.len());
        bytes[i] = value;
        let _ = load(&bytes);
    }

    #[test]
    fn single_byte_payload_mutation_loads_safely(
        index in any::<prop::sample::Index>(),
        value in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let mut payload = standard_model().payload();
        let i = index.index(payload.len());
        payload[i] = value;
        check_loaded_model_runs(&file(&payload), seed);
    }

    #[test]
    fn random_architectures_load_or_fail_cleanly_and_match_reference(
        specs in arb_specs(),
        (c, h, w) in (1_u16..4, 1_u16..12, 1_u16..12),
        input_q in arb_qparams(),
        outs in proptest::collection::vec(arb_qparams(), 1..4),
        seed in any::<u64>(),
    ) {
        let input = Shape { channels: c, height: h, width: w };
        let owned = build(&specs, input, input_q, &outs, seed);
        let bytes = owned.to_bytes();
        match load(&bytes) {
            Ok(model) => {
                let pixels = Lcg::new(seed).pixels(model.input_len());
                let want = reference_forward(&owned, &pixels);
                let mut scratch = vec![0_i8; model.scratch_len()];
                let p = model.predict_raw(&pixels, &mut scratch).unwrap();
                prop_assert_eq!(p.logits, &want[..]);
                prop_assert_eq!(p.class, reference_argmax(&want));
                let mut short = vec![0_i8; model.scratch_len() - 1];
                prop_assert!(model.predict_raw(&pixels, &mut short).is_err());
            }
            Err(e) => {
                // Only shape-related rejections are expected from this generator.
                prop_assert!(
                    matches!(
                        e,
                        Error::UnsupportedLayer { .. }
                            | Error::ExpectedFlat { .. }
                            | Error::ExpectedImage { .. }
                            | Error::OutputShape { .. }
                    ),
                    "unexpected error {:?}",
                    e
                );
            }
        }
    }
}
