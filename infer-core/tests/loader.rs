//! `Model::from_bytes` validation and `Model::predict` end to end, on models built in the test
//! from the crate's own format types (see `support`), against `infer_core::reference::run_model`
//! (every op run by its naive reference kernel, every tensor in its own block).

mod support;

use infer_core::error::{Buffer, Dimension};
use infer_core::format::{
    Activation, AvgPool2dDef, FlattenDef, HEADER_LEN, MaxPool2dDef, OpDef, OpKind, OwnedModel,
    Padding, QParams, Shape, TensorId, TensorShape,
};
use infer_core::ops::QOp;
use infer_core::spec::Pool2dGeometry;
use infer_core::{Error, Model, reference};
use proptest::prelude::*;
use support::{
    Builder, Dims, Lcg, MNIST_SHAPE, PIXEL_Q, cnn_model, file, lenet_model, payload, q, quant_mut,
    residual_model, standard_model, tiny_model,
};

fn load(bytes: &[u8]) -> Result<Model<'_>, Error> {
    Model::from_bytes(bytes)
}

/// Encodes `model`, loads it and returns the error, or panics if it loads.
fn load_err(model: &OwnedModel) -> Error {
    let bytes = model.to_bytes().unwrap();
    load(&bytes).expect_err("model should be rejected")
}

/// The logits of the reference interpreter.
fn reference_logits<const N: usize>(model: &Model<'_, N>, pixels: &[u8]) -> Vec<i8> {
    let mut tensors = vec![0_i8; reference::tensors_len(model)];
    reference::run_model(model, pixels, &mut tensors)
        .unwrap()
        .to_vec()
}

/// Index of the largest logit, the lowest among ties.
fn argmax(logits: &[i8]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Runs `model` with exactly `scratch_len` bytes, one fewer, and many more (dirty), and checks
/// the logits against the reference.
fn check_predict<const N: usize>(model: &Model<'_, N>, pixels: &[u8]) -> Vec<i8> {
    let want = reference_logits(model, pixels);
    let n = model.scratch_len();
    let mut exact = vec![0_i8; n];
    let p = model.predict_raw(pixels, &mut exact).unwrap();
    assert_eq!(p.logits, &want[..]);
    assert_eq!(p.class, argmax(&want));
    if n > 0 {
        let mut short = vec![0_i8; n - 1];
        assert_eq!(
            model.predict_raw(pixels, &mut short),
            Err(Error::ScratchTooSmall { needed: n })
        );
    }
    let mut big = vec![0x55_i8; n + 4096];
    let p = model.predict_raw(pixels, &mut big).unwrap();
    assert_eq!(p.logits, &want[..]);
    want
}

/// If `bytes` load, the model must run on a random input and agree with the reference.
fn check_loaded_model_runs(bytes: &[u8], seed: u64) {
    let Ok(model) = load(bytes) else {
        return;
    };
    let pixels = Lcg::new(seed).pixels(model.input_len());
    let want = reference_logits(&model, &pixels);
    let mut scratch = vec![0_i8; model.scratch_len()];
    let prediction = model.predict_raw(&pixels, &mut scratch).unwrap();
    assert_eq!(prediction.logits, &want[..]);
    assert_eq!(prediction.class, argmax(&want));
}

/// The largest `input + output` bytes of any step of a chain (every op reads the tensor
/// before it), a conv and the 2x2, stride-2 max pooling after it counting as one step (input
/// + conv output); a flatten moves nothing. The scratch a chain needs.
fn chain_scratch(model: &OwnedModel, dims: &[Dims]) -> usize {
    let len = |t: usize| dims[t].len();
    let two = Pool2dGeometry {
        kernel: 2,
        stride: 2,
    };
    let mut most = len(0);
    let mut i = 0;
    while i < model.ops.len() {
        let fused = matches!(model.ops[i], OpDef::Conv2d(_))
            && matches!(&model.ops.get(i + 1), Some(OpDef::MaxPool2d(p)) if p.geometry == two);
        let step = match model.ops[i] {
            OpDef::Flatten(_) => 0,
            _ => len(i) + len(i + 1),
        };
        most = most.max(step);
        i += if fused { 2 } else { 1 };
    }
    most
}

fn image(channels: u16, height: u16, width: u16) -> TensorShape {
    TensorShape::Image(Shape {
        channels,
        height,
        width,
    })
}

// ---------------------------------------------------------------------------------------------
// Valid models

#[test]
fn standard_model_loads_with_expected_summary() {
    let bytes = standard_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    assert_eq!(model.id(), "test-model");
    assert_eq!(model.input_shape(), MNIST_SHAPE);
    assert_eq!(model.input_len(), 784);
    assert_eq!(model.input_qparams(), PIXEL_Q);
    assert_eq!(model.output_qparams(), q(0.1, 3));
    assert_eq!(model.num_classes(), 10);
    let kinds: Vec<_> = model.ops().iter().map(|o| o.kind()).collect();
    assert_eq!(
        kinds,
        [
            OpKind::Conv2d,
            OpKind::MaxPool2d,
            OpKind::Conv2d,
            OpKind::AvgPool2d,
            OpKind::Flatten,
            OpKind::Dense
        ]
    );
    let outputs: Vec<_> = model.ops().iter().map(|o| o.output().shape).collect();
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
    let range = |i: usize| match model.ops()[i].op() {
        QOp::Conv2d(c) => (c.requant().act_min, c.requant().act_max),
        QOp::Dense(d) => (d.requant().act_min, d.requant().act_max),
        other => panic!("{other:?}"),
    };
    assert_eq!(range(0), (-100, 127));
    assert_eq!(range(2), (-128, -8));
    assert_eq!(range(5), (-128, 127));
    // Pooling keeps the input's quantisation.
    assert_eq!(model.ops()[1].output().qparams, q(0.02, -100));
    // The first conv and its 2x2 max pooling run as one kernel; the conv's output is never
    // stored. The second conv is followed by an average pooling: no fusion.
    assert_eq!(model.ops()[0].output_offset(), None);
    assert!(model.ops()[0].runs());
    assert!(!model.ops()[1].runs());
    assert!(model.ops()[2].output_offset().is_some());
    assert!(!model.ops()[4].runs()); // flatten
    // conv1: 3136 outputs * 1 * 9; conv2: 216 * 4 * 9; dense: 54 * 10.
    assert_eq!(model.macs(), 28_224 + 7_776 + 540);
    // weights + 9 bytes (bias, multiplier, shift) per output channel
    assert_eq!(
        model.param_bytes(),
        (36 + 4 * 9) + (216 + 6 * 9) + (540 + 10 * 9)
    );
    // Largest input + output: conv1 with its pooling (784 + 3136).
    assert_eq!(model.scratch_len(), 3920);
}

#[test]
fn tiny_model_loads() {
    let bytes = tiny_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    assert_eq!(model.num_classes(), 4);
    assert_eq!(model.input_len(), 50);
    // conv: 50 + 3 * 8 * 8 = 242; dense: 192 + 4.
    assert_eq!(model.scratch_len(), 242);
}

#[test]
fn model_of_only_flattens_is_valid_and_copies_the_input() {
    let shape = Shape {
        channels: 1,
        height: 2,
        width: 2,
    };
    let mut m = Builder::new(shape, PIXEL_Q, 1).build();
    m.ops = (0..infer_core::DEFAULT_MAX_OPS)
        .map(|i| {
            OpDef::Flatten(FlattenDef {
                input: TensorId::try_from(i).unwrap(),
            })
        })
        .collect();
    let bytes = m.to_bytes().unwrap();
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
    let mut bytes = standard_model().to_bytes().unwrap();
    bytes[0] = b'X';
    assert_eq!(load(&bytes), Err(Error::BadMagic));
}

#[test]
fn format_v1_and_other_versions() {
    let mut bytes = standard_model().to_bytes().unwrap();
    bytes[4..6].copy_from_slice(&1_u16.to_le_bytes());
    assert_eq!(load(&bytes), Err(Error::FormatV1));
    for version in [0_u16, 3, 0x0200, u16::MAX] {
        bytes[4..6].copy_from_slice(&version.to_le_bytes());
        assert_eq!(load(&bytes), Err(Error::UnsupportedVersion(version)));
    }
}

#[test]
fn format_v1_file_is_refused_whatever_its_payload() {
    // A v1 header (version 1) in front of a v1-like payload, and in front of a valid v2 one:
    // the version decides, before the payload is looked at.
    let v1 = |payload: &[u8]| {
        let mut bytes = file(payload);
        bytes[4..6].copy_from_slice(&1_u16.to_le_bytes());
        bytes
    };
    assert_eq!(load(&v1(&[0xff; 40])), Err(Error::FormatV1));
    assert_eq!(load(&v1(&payload(&standard_model()))), Err(Error::FormatV1));
    assert_eq!(load(&v1(&[])), Err(Error::FormatV1));
}

#[test]
fn reserved_bytes_must_be_zero() {
    let mut bytes = standard_model().to_bytes().unwrap();
    bytes[6] = 1;
    assert_eq!(load(&bytes), Err(Error::Reserved));
}

#[test]
fn header_checks_in_order() {
    // Each check's error wins over every later one: magic, version, reserved, payload length,
    // checksum.
    let good = standard_model().to_bytes().unwrap();
    let mut bytes = good.clone();
    bytes.pop(); // payload length
    bytes[12] ^= 1; // checksum
    bytes[7] = 1; // reserved
    bytes[4] = 9; // version
    bytes[0] = b'X'; // magic
    assert_eq!(load(&bytes), Err(Error::BadMagic));
    bytes[0] = good[0];
    assert_eq!(load(&bytes), Err(Error::UnsupportedVersion(9)));
    bytes[4] = 1;
    assert_eq!(load(&bytes), Err(Error::FormatV1));
    bytes[4] = good[4];
    assert_eq!(load(&bytes), Err(Error::Reserved));
    bytes[7] = 0;
    assert!(matches!(load(&bytes), Err(Error::PayloadLength { .. })));
    bytes.push(*good.last().unwrap());
    assert!(matches!(load(&bytes), Err(Error::Checksum { .. })));
    bytes[12] ^= 1;
    assert!(load(&bytes).is_ok());
}

#[test]
fn bad_crc() {
    let mut bytes = standard_model().to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    assert!(matches!(load(&bytes), Err(Error::Checksum { .. })));
    // And a wrong stored CRC over an intact payload.
    let mut bytes = standard_model().to_bytes().unwrap();
    bytes[12] ^= 0xff;
    assert!(matches!(load(&bytes), Err(Error::Checksum { .. })));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = standard_model().to_bytes().unwrap();
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
    let payload = payload(&standard_model());
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
    let mut payload = payload(&standard_model());
    payload.extend_from_slice(&[0, 0]);
    assert_eq!(load(&file(&payload)), Err(Error::TrailingBytes(2)));
    // ... and bytes after the payload that the header does not count.
    let mut bytes = standard_model().to_bytes().unwrap();
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
    // A valid prefix whose op list names an unknown op (variant 100).
    let mut m = tiny_model();
    m.ops.truncate(1);
    let mut p = payload(&m);
    let count_at = p.len() - postcard::to_allocvec(&m.ops[0]).unwrap().len() - 1;
    assert_eq!(p[count_at], 1);
    p.truncate(count_at);
    p.extend_from_slice(&[1, 100, 0]);
    assert_eq!(load(&file(&p)), Err(Error::Decode));
}

/// `n` flattens on a 1x2x2 input, each reading the tensor before it.
fn flattens(n: usize) -> OwnedModel {
    let shape = Shape {
        channels: 1,
        height: 2,
        width: 2,
    };
    let mut m = Builder::new(shape, PIXEL_Q, 1).build();
    m.ops = (0..n)
        .map(|i| {
            OpDef::Flatten(FlattenDef {
                input: TensorId::try_from(i).unwrap(),
            })
        })
        .collect();
    m
}

#[test]
fn too_many_ops_for_the_model_type() {
    let bytes = flattens(16).to_bytes().unwrap();
    assert!(Model::<16>::from_bytes(&bytes).is_ok());
    assert_eq!(
        Model::<15>::from_bytes(&bytes),
        Err(Error::TooManyOps { capacity: 15 })
    );
    let bytes = flattens(17).to_bytes().unwrap();
    assert_eq!(load(&bytes), Err(Error::TooManyOps { capacity: 16 }));
    assert!(Model::<64>::from_bytes(&bytes).is_ok());
    let bytes = flattens(65).to_bytes().unwrap();
    assert_eq!(
        Model::<64>::from_bytes(&bytes),
        Err(Error::TooManyOps { capacity: 64 })
    );
    // The plan's bookkeeping is sized by the model type, so any capacity works.
    let bytes = flattens(256).to_bytes().unwrap();
    assert!(Model::<256>::from_bytes(&bytes).is_ok());
}

#[test]
fn a_model_larger_than_the_default_runs_as_model_64() {
    // 8 convs with 1x1 pooling after each (17 ops with the dense): too many for `Model`.
    let shape = Shape {
        channels: 2,
        height: 6,
        width: 6,
    };
    let mut b = Builder::new(shape, q(0.02, -3), 4);
    for i in 0..8 {
        let zp = [-128, 0, 5][i % 3];
        b = b
            .conv(3, (3, 1, 1), q(0.05, zp), Activation::Relu)
            .max_pool(1, 1);
    }
    let owned = b.flatten().dense(7, q(0.2, 1), Activation::None).build();
    assert_eq!(owned.ops.len(), 18);
    let bytes = owned.to_bytes().unwrap();
    assert_eq!(load(&bytes), Err(Error::TooManyOps { capacity: 16 }));
    let model = Model::<64>::from_bytes(&bytes).unwrap();
    let mut rng = Lcg::new(8);
    for _ in 0..5 {
        check_predict(&model, &rng.pixels(72));
    }
}

#[test]
fn ids_that_are_unsafe_to_print_or_name_a_file_are_refused() {
    for bad in ["", "a\nb", "\u{1b}[31mred", "../x", "a b", &"x".repeat(65)] {
        let mut m = standard_model();
        m.id = bad.to_string();
        assert_eq!(load_err(&m), Error::BadId { len: bad.len() }, "{bad:?}");
    }
    let mut m = standard_model();
    m.id = "S1_cnn-64.v2".to_string();
    let bytes = m.to_bytes().unwrap();
    assert_eq!(load(&bytes).unwrap().id(), "S1_cnn-64.v2");
}

#[test]
fn no_ops() {
    let mut m = standard_model();
    m.ops.clear();
    assert_eq!(load_err(&m), Error::NoOps);
}

// ---------------------------------------------------------------------------------------------
// Op validation errors

#[test]
fn bad_tensor_ref() {
    let set_input = |op: usize, tensor: TensorId| {
        let mut m = standard_model();
        match &mut m.ops[op] {
            OpDef::Conv2d(c) => c.input = tensor,
            OpDef::Dense(d) => d.input = tensor,
            OpDef::MaxPool2d(p) => p.input = tensor,
            OpDef::AvgPool2d(p) => p.input = tensor,
            OpDef::Flatten(f) => f.input = tensor,
            OpDef::Add(a) => a.inputs[1] = tensor,
            OpDef::GlobalAvgPool(g) => g.input = tensor,
            OpDef::LeakyRelu(l) => l.input = tensor,
        }
        load_err(&m)
    };
    // Its own tensor (op i makes tensor i + 1), a later one, one past the last, the largest id.
    assert_eq!(set_input(0, 1), Error::BadTensorRef { op: 0, tensor: 1 });
    assert_eq!(set_input(2, 3), Error::BadTensorRef { op: 2, tensor: 3 });
    assert_eq!(set_input(2, 5), Error::BadTensorRef { op: 2, tensor: 5 });
    assert_eq!(set_input(4, 7), Error::BadTensorRef { op: 4, tensor: 7 });
    assert_eq!(
        set_input(5, TensorId::MAX),
        Error::BadTensorRef {
            op: 5,
            tensor: TensorId::MAX
        }
    );
    // An earlier tensor of the wrong shape is a shape error, not a bad reference.
    assert_eq!(set_input(5, 0), Error::ExpectedFlat { op: 5 });
}

#[test]
fn multiplier_mismatch() {
    let mut m = standard_model();
    // Dense op (index 5), channel 3: multiplier off by one.
    let quant = quant_mut(&mut m.ops[5]);
    let old = i32::from_le_bytes(quant.multipliers[12..16].try_into().unwrap());
    quant.multipliers[12..16].copy_from_slice(&(old + 1).to_le_bytes());
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch { op: 5, channel: 3 }
    );

    // Conv op 2, channel 0: shift off by one.
    let mut m = standard_model();
    let quant = quant_mut(&mut m.ops[2]);
    quant.shifts[0] = quant.shifts[0].wrapping_add(1);
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch { op: 2, channel: 0 }
    );

    // A weight scale changed without re-deriving the multiplier.
    let mut m = standard_model();
    let quant = quant_mut(&mut m.ops[0]);
    let ws = f32::from_le_bytes(quant.weight_scales[4..8].try_into().unwrap()) * 1.5;
    quant.weight_scales[4..8].copy_from_slice(&ws.to_le_bytes());
    assert_eq!(
        load_err(&m),
        Error::MultiplierMismatch { op: 0, channel: 1 }
    );
}

#[test]
fn shape_mismatch() {
    // Dense in_dim disagrees with the flattened 54 features.
    let mut m = standard_model();
    if let OpDef::Dense(d) = &mut m.ops[5] {
        d.geometry.in_dim = 50;
    }
    assert_eq!(
        load_err(&m),
        Error::ShapeMismatch {
            op: 5,
            expected: 50,
            got: 54
        }
    );

    // Conv in_ch disagrees with the 4 channels coming in (weights still consistent with in_ch).
    let mut m = standard_model();
    if let OpDef::Conv2d(c) = &mut m.ops[2] {
        c.geometry.in_ch = 5;
        c.weights.resize(6 * 5 * 9, 0);
    }
    assert_eq!(
        load_err(&m),
        Error::ShapeMismatch {
            op: 2,
            expected: 5,
            got: 4
        }
    );
}

#[test]
fn dense_needs_flatten_and_conv_needs_image() {
    // Without the Flatten (the dense now reads the 6x3x3 avg pool's output).
    let mut m = standard_model();
    m.ops.remove(4);
    if let OpDef::Dense(d) = &mut m.ops[4] {
        d.input = 4;
    }
    assert_eq!(load_err(&m), Error::ExpectedFlat { op: 4 });

    let m = Builder::new(MNIST_SHAPE, PIXEL_Q, 3)
        .flatten()
        .conv(2, (3, 1, 0), q(0.1, 0), Activation::None)
        .build();
    assert_eq!(load_err(&m), Error::ExpectedImage { op: 1 });

    let mut pool_after_flatten = standard_model();
    let geometry = Pool2dGeometry {
        kernel: 1,
        stride: 1,
    };
    pool_after_flatten
        .ops
        .insert(5, OpDef::MaxPool2d(MaxPool2dDef { input: 5, geometry }));
    assert_eq!(
        load_err(&pool_after_flatten),
        Error::ExpectedImage { op: 5 }
    );
    let mut avg_after_flatten = standard_model();
    avg_after_flatten
        .ops
        .insert(5, OpDef::AvgPool2d(AvgPool2dDef { input: 5, geometry }));
    assert_eq!(load_err(&avg_after_flatten), Error::ExpectedImage { op: 5 });
}

#[test]
fn buffer_lengths() {
    let mut m = standard_model();
    if let OpDef::Conv2d(c) = &mut m.ops[0] {
        c.weights.pop();
    }
    assert_eq!(
        load_err(&m),
        Error::BufferLength {
            op: 0,
            buffer: Buffer::Weights,
            expected: 36,
            got: 35
        }
    );
    let mut m = standard_model();
    if let OpDef::Dense(d) = &mut m.ops[5] {
        d.weights.push(0);
    }
    assert_eq!(
        load_err(&m),
        Error::BufferLength {
            op: 5,
            buffer: Buffer::Weights,
            expected: 540,
            got: 541
        }
    );

    type Field = fn(&mut infer_core::format::ChannelQuant<Vec<u8>>) -> &mut Vec<u8>;
    let cases: [(Buffer, Field, usize); 4] = [
        (Buffer::WeightScales, |q| &mut q.weight_scales, 40),
        (Buffer::Bias, |q| &mut q.bias, 40),
        (Buffer::Multipliers, |q| &mut q.multipliers, 40),
        (Buffer::Shifts, |q| &mut q.shifts, 10),
    ];
    for (buffer, field, expected) in cases {
        let mut m = standard_model();
        field(quant_mut(&mut m.ops[5])).push(0);
        assert_eq!(
            load_err(&m),
            Error::BufferLength {
                op: 5,
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
        if let OpDef::Dense(d) = &mut m.ops[5] {
            d.output = q;
        }
        load_err(&m)
    };
    let bad = Error::BadQuantParams { op: 5 };
    assert_eq!(set_output(q(0.0, 0)), bad);
    assert_eq!(set_output(q(-0.1, 0)), bad);
    assert_eq!(set_output(q(f32::NAN, 0)), bad);
    assert_eq!(set_output(q(f32::INFINITY, 0)), bad);
    assert_eq!(set_output(q(0.1, 128)), bad);
    assert_eq!(set_output(q(0.1, -129)), bad);
    // A tiny output scale makes the multiplier too large to represent.
    assert_eq!(set_output(q(1e-30, 0)), bad);

    let mut m = standard_model();
    quant_mut(&mut m.ops[0]).weight_scales[0..4].copy_from_slice(&(-0.01_f32).to_le_bytes());
    assert_eq!(load_err(&m), Error::BadQuantParams { op: 0 });
    quant_mut(&mut m.ops[0]).weight_scales[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_eq!(load_err(&m), Error::BadQuantParams { op: 0 });

    let mut m = standard_model();
    m.input = q(0.0, 0);
    assert_eq!(load_err(&m), Error::InputQuantParams);
    m.input = q(0.1, 300);
    assert_eq!(load_err(&m), Error::InputQuantParams);
}

#[test]
fn unsupported_ops() {
    let conv_with = |kernel: u8, stride: u8, out_ch: u16| {
        let mut m = standard_model();
        if let OpDef::Conv2d(c) = &mut m.ops[2] {
            let g = &mut c.geometry;
            (g.kernel_h, g.kernel_w, g.stride, g.out_ch) = (kernel, kernel, stride, out_ch);
        }
        load_err(&m)
    };
    let zero = |op, what| Error::ZeroDimension { op, what };
    assert_eq!(conv_with(3, 0, 6), zero(2, Dimension::Stride));
    assert_eq!(conv_with(0, 1, 6), zero(2, Dimension::Kernel));
    // kernel > 14 (no padding)
    assert_eq!(conv_with(15, 1, 6), Error::WindowTooLarge { op: 2 });
    assert_eq!(conv_with(3, 2, 0), zero(2, Dimension::OutChannels));

    let pool_with = |kernel: u8, stride: u8| {
        let mut m = standard_model();
        let geometry = Pool2dGeometry { kernel, stride };
        m.ops[3] = OpDef::AvgPool2d(AvgPool2dDef { input: 3, geometry });
        let avg = load_err(&m);
        m.ops[3] = OpDef::MaxPool2d(MaxPool2dDef { input: 3, geometry });
        assert_eq!(load_err(&m), avg);
        avg
    };
    // The pool's input is 6x6x6.
    assert_eq!(pool_with(7, 1), Error::WindowTooLarge { op: 3 });
    assert_eq!(pool_with(2, 0), zero(3, Dimension::Stride));
    assert_eq!(pool_with(0, 1), zero(3, Dimension::Kernel));

    let mut m = standard_model();
    if let OpDef::Dense(d) = &mut m.ops[5] {
        d.geometry.out_dim = 0;
        d.weights.clear();
    }
    assert_eq!(load_err(&m), zero(5, Dimension::OutFeatures));
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
    m.ops.truncate(4); // ends with the 6x3x3 avg pool
    assert_eq!(load_err(&m), Error::OutputShape { len: 54 });
    m.ops.push(OpDef::Flatten(FlattenDef { input: 4 })); // 54 logits is too many
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
    assert!(load(&m.to_bytes().unwrap()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Inference

#[test]
fn predict_matches_reference() {
    let bytes = standard_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let mut rng = Lcg::new(42);
    let mut images = vec![[0_u8; 784], [255_u8; 784], [128_u8; 784]];
    for _ in 0..20 {
        images.push(rng.pixels(784).try_into().unwrap());
    }
    let mut classes = std::collections::BTreeSet::new();
    for pixels in &images {
        let want = reference_logits(&model, pixels);
        let p = model.predict(pixels, &mut scratch).unwrap();
        assert_eq!(p.logits, &want[..]);
        assert_eq!(p.class, argmax(&want));
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
    // op shapes of s5-cnn and s3-lenet-base, with their scratch plans.
    for owned in [cnn_model(), lenet_model()] {
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        let mut scratch = vec![0x55_i8; model.scratch_len()];
        let mut rng = Lcg::new(3);
        let mut logits = std::collections::BTreeSet::new();
        for _ in 0..4 {
            let pixels: [u8; 784] = rng.pixels(784).try_into().unwrap();
            let want = reference_logits(&model, &pixels);
            let p = model.predict(&pixels, &mut scratch).unwrap();
            assert_eq!(p.logits, &want[..]);
            logits.insert(want);
        }
        assert!(logits.len() > 1, "degenerate test model: {logits:?}");
    }
}

#[test]
fn predict_raw_matches_reference_on_a_non_mnist_model() {
    let bytes = tiny_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let mut rng = Lcg::new(9);
    for _ in 0..20 {
        let pixels = rng.pixels(50);
        let want = reference_logits(&model, &pixels);
        let p = model.predict_raw(&pixels, &mut scratch).unwrap();
        assert_eq!(p.logits, &want[..]);
        assert_eq!(p.class, argmax(&want));
    }
}

#[test]
fn scratch_len_is_exactly_enough() {
    for owned in [
        standard_model(),
        tiny_model(),
        cnn_model(),
        lenet_model(),
        branch_model(),
        pooled_branch_model(),
    ] {
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        let n = model.scratch_len();
        let pixels = Lcg::new(1).pixels(model.input_len());
        check_predict(&model, &pixels);
        assert_eq!(
            model.predict_raw(&pixels, &mut []),
            Err(Error::ScratchTooSmall { needed: n })
        );
    }
}

#[test]
fn chain_scratch_is_the_largest_step() {
    let builders = [
        // conv + 2x2/2 max pool pairs fuse: conv1 784 + 3136, then 784 + 216 ...
        Builder::new(MNIST_SHAPE, PIXEL_Q, 7)
            .conv(4, (3, 1, 1), q(0.02, -100), Activation::Relu)
            .max_pool(2, 2)
            .conv(6, (3, 2, 0), q(0.05, -128), Activation::Relu6)
            .avg_pool(2, 2)
            .flatten()
            .dense(10, q(0.1, 3), Activation::None),
        Builder::new(MNIST_SHAPE, PIXEL_Q, 23)
            .conv(32, (3, 1, 1), q(0.05, -128), Activation::Relu)
            .max_pool(2, 2)
            .conv(64, (3, 1, 1), q(0.3, -128), Activation::Relu)
            .max_pool(2, 2)
            .flatten()
            .dense(128, q(0.5, -128), Activation::Relu)
            .dense(10, q(0.5, 4), Activation::None),
        Builder::new(MNIST_SHAPE, PIXEL_Q, 29)
            .conv(6, (5, 1, 0), q(0.05, -128), Activation::Relu)
            .avg_pool(2, 2)
            .conv(16, (5, 1, 0), q(0.2, -128), Activation::Relu)
            .avg_pool(2, 2)
            .flatten()
            .dense(120, q(0.3, -128), Activation::Relu)
            .dense(84, q(0.3, -128), Activation::Relu)
            .dense(10, q(0.3, 2), Activation::None),
        // A max pooling that is not 2x2/2 does not fuse: 3136 + 2704 is the largest step.
        Builder::new(MNIST_SHAPE, PIXEL_Q, 3)
            .conv(4, (3, 1, 1), q(0.02, -100), Activation::Relu)
            .max_pool(3, 1)
            .flatten()
            .dense(10, q(0.1, 3), Activation::None),
    ];
    for b in builders {
        let dims = b.all_dims();
        let owned = b.build();
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        assert_eq!(model.scratch_len(), chain_scratch(&owned, &dims));
    }
}

#[test]
fn per_side_padding_runs_and_matches_the_reference() {
    // TensorFlow's SAME padding for an even kernel (one more row and column at the bottom and
    // right), and an arbitrary asymmetric padding, through every conv strategy the shapes
    // reach (a 1-channel 4x4 filter: tap/pair rows; 8 channels x 3x3: im2col), then pooled.
    let shape = Shape {
        channels: 1,
        height: 10,
        width: 9,
    };
    for (padding, pool) in [
        (Padding::same(4, 4), true),
        (
            Padding {
                top: 0,
                bottom: 2,
                left: 3,
                right: 1,
            },
            false,
        ),
    ] {
        let mut b = Builder::new(shape, q(0.05, 0), 5);
        let x = b.last();
        let c1 = b.conv_padded_from(x, 8, (4, 1, padding), q(0.04, -10), Activation::Relu);
        let c2 = b.conv_padded_from(c1, 4, (3, 1, padding), q(0.03, 3), Activation::None);
        let mut b = if pool {
            b.max_pool(2, 2)
        } else {
            let _ = c2;
            b
        };
        b = b.flatten().dense(10, q(0.1, 0), Activation::None);
        let owned = b.build();
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        if let Some(op) = model.ops().first() {
            // SAME keeps 10x9; the other: 10 + 0 + 2 - 4 + 1 = 9 rows, 9 + 3 + 1 - 4 + 1 = 10
            // columns.
            let want = if pool { (10, 9) } else { (9, 10) };
            let Some(img) = op.output().shape.image() else {
                panic!("a conv gives an image");
            };
            assert_eq!((img.height, img.width), want);
        }
        for seed in 0..4 {
            check_predict(&model, &Lcg::new(seed).pixels(90));
        }
    }
}

#[test]
fn fused_conv_and_max_pool_floor_an_odd_conv_output() {
    // A 4x4 valid convolution makes 25x25 from 28x28; the 2x2, stride-2 max pooling after it
    // keeps 12x12 (floor: the last conv row and column fall outside every window). The pair
    // runs fused; its logits must equal the reference interpreter's, which runs the conv and
    // the pooling one after the other. One input channel (16 taps: the row strategies) and,
    // after a 3x3 SAME conv, 8 channels (128 taps: im2col).
    let one = |out_ch: u16, seed: u64| {
        Builder::new(MNIST_SHAPE, PIXEL_Q, seed)
            .conv(out_ch, (4, 1, 0), q(0.03, -128), Activation::Relu)
            .max_pool(2, 2)
    };
    let models = [
        one(1, 11),
        one(6, 12),
        Builder::new(MNIST_SHAPE, PIXEL_Q, 13)
            .conv(8, (3, 1, 1), q(0.02, -100), Activation::Relu)
            .conv(5, (4, 1, 0), q(0.05, 7), Activation::None)
            .max_pool(2, 2),
    ];
    for b in models {
        let owned = b.flatten().dense(10, q(0.1, 0), Activation::None).build();
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        let ops = model.ops();
        let pool = ops.len() - 3;
        let (conv, pooled) = (ops[pool - 1].output().shape, ops[pool].output().shape);
        assert_eq!(conv.image().map(|s| (s.height, s.width)), Some((25, 25)));
        assert_eq!(pooled.image().map(|s| (s.height, s.width)), Some((12, 12)));
        // Fused: the conv's output is never stored, the pooling runs no kernel of its own.
        assert_eq!(ops[pool - 1].output_offset(), None);
        assert!(!ops[pool].runs());
        let mut logits = std::collections::BTreeSet::new();
        for seed in 0..6 {
            let pixels = Lcg::new(seed).pixels(784);
            logits.insert(check_predict(&model, &pixels));
        }
        assert!(logits.len() > 1, "degenerate test model: {logits:?}");
    }
}

#[test]
fn grouped_convolutions_keep_their_groups_apart() {
    // 4 input channels in 2 groups, 6 filters (3 per group), 3x3 SAME, then a depthwise 1x1
    // (6 groups of one channel): output channels of group k depend only on input channels of
    // group k. Checked against the reference, and by changing one group's input channels.
    let shape = Shape {
        channels: 4,
        height: 6,
        width: 6,
    };
    let mut b = Builder::new(shape, q(0.05, 0), 9);
    let x = b.last();
    let c1 = b.conv_grouped_from(
        x,
        6,
        (3, 1, Padding::uniform(1)),
        2,
        q(0.04, -5),
        Activation::None,
    );
    let c2 = b.conv_grouped_from(
        c1,
        6,
        (1, 1, Padding::uniform(0)),
        6,
        q(0.03, 2),
        Activation::None,
    );
    let _ = c2;
    let owned = b.flatten().dense(10, q(0.1, 0), Activation::None).build();
    let OpDef::Conv2d(conv) = &owned.ops[0] else {
        panic!("op 0 is the grouped conv");
    };
    assert_eq!(conv.weights.len(), 6 * 2 * 9);
    let bytes = owned.to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    for seed in 0..4 {
        check_predict(&model, &Lcg::new(seed).pixels(4 * 36));
    }
    // Tensor 2 (the depthwise output) for an input and for the same input with channels 2 and
    // 3 (group 1) changed: channels 0..3 (group 0's filters) must not move.
    let depthwise = |pixels: &[u8]| {
        let mut scratch = vec![0_i8; model.scratch_len()];
        model.predict_raw(pixels, &mut scratch).unwrap();
        let at = model.ops()[1].output_offset().unwrap();
        scratch[at..at + 6 * 36].to_vec()
    };
    let a = Lcg::new(1).pixels(4 * 36);
    let mut b = a.clone();
    for p in &mut b[2 * 36..] {
        *p = p.wrapping_add(77);
    }
    let (ya, yb) = (depthwise(&a), depthwise(&b));
    assert_eq!(ya[..3 * 36], yb[..3 * 36], "group 0 saw group 1's inputs");
    assert_ne!(ya[3 * 36..], yb[3 * 36..], "group 1 ignored its inputs");
    // Groups that do not divide the channels are refused.
    let mut bad = owned.clone();
    if let OpDef::Conv2d(conv) = &mut bad.ops[0] {
        conv.geometry.groups = 3;
    }
    assert_eq!(
        load_err(&bad),
        Error::IndivisibleGroups { op: 0, groups: 3 }
    );
}

#[test]
fn dense_chain_scratch_is_the_greedy_plan() {
    // Dense layers of 9, 2, 8, 10 and 1 outputs after a 1-pixel input: the busiest step holds
    // 8 + 10 = 18 bytes, and two blocks at the two ends of 18 bytes would do. The greedy
    // planner (largest first, lowest offset; TFLM's works the same way) puts 10 and 9 both at
    // 0 (they never meet), 8 above 10, and then 2 (alive between 9 and 8) finds no room below
    // 18: 20 bytes. A two-ended fallback that reached 18 cost 3.8 KB of firmware code, which
    // took LeNet's firmware over its 96 KiB flash budget; the chains of the real models plan to
    // their busiest step (test above).
    let shape = Shape {
        channels: 1,
        height: 1,
        width: 1,
    };
    let mut b = Builder::new(shape, q(0.05, 0), 2).flatten();
    for out in [9, 2, 8, 10, 1] {
        b = b.dense(out, q(0.05, 0), Activation::None);
    }
    let dims = b.all_dims();
    let owned = b.build();
    assert_eq!(chain_scratch(&owned, &dims), 18);
    let bytes = owned.to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    check_predict(&model, &[200]);
    assert_eq!(model.scratch_len(), 20);
}

#[test]
fn predict_checks_input() {
    let bytes = tiny_model().to_bytes().unwrap();
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

    let bytes = standard_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    assert_eq!(
        model.predict_raw(&[0; 785], &mut scratch),
        Err(Error::InputLength {
            expected: 784,
            got: 785
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Graphs: a tensor read by more than one op

/// 2x8x8 input (t0) -> conv 3x3 pad 1 (t1, 4x8x8) -> 2x2/2 max pool of t1 (t2, a dead end) ->
/// conv 3x3 stride 2 pad 1 of t1 (t3, 3x4x4) -> conv 1x1 of the input (t4, 2x8x8, a dead end
/// that keeps the input alive) -> flatten t3 (t5) -> dense 10 (t6).
///
/// t1 feeds two ops, so the conv and the pooling after it must not fuse.
fn branch_model() -> OwnedModel {
    let shape = Shape {
        channels: 2,
        height: 8,
        width: 8,
    };
    let mut b = Builder::new(shape, q(0.02, -10), 31);
    let t1 = b.conv_from(0, 4, (3, 1, 1), q(0.04, -128), Activation::Relu);
    b.max_pool_from(t1, 2, 2);
    let t3 = b.conv_from(t1, 3, (3, 2, 1), q(0.06, 0), Activation::None);
    b.conv_from(0, 2, (1, 1, 0), q(0.03, 4), Activation::Relu6);
    let t5 = b.flatten_from(t3);
    b.dense_from(t5, 10, q(0.2, -3), Activation::None);
    b.build()
}

/// 1x12x12 input -> conv 3x3 (t1, 4x10x10) -> 2x2/2 max pool (t2, 4x5x5: fuses with the conv)
/// -> conv 3x3 of t2 (t3, 2x3x3) and avg pool 3x3/2 of t2 (t4, 4x2x2) -> flatten t4 (t5) ->
/// dense 6 (t6), with t3 a dead end: the fused pooling's output feeds two ops.
fn pooled_branch_model() -> OwnedModel {
    let shape = Shape {
        channels: 1,
        height: 12,
        width: 12,
    };
    let mut b = Builder::new(shape, PIXEL_Q, 37);
    let t1 = b.conv_from(0, 4, (3, 1, 0), q(0.03, -128), Activation::Relu);
    let t2 = b.max_pool_from(t1, 2, 2);
    b.conv_from(t2, 2, (3, 1, 0), q(0.05, 0), Activation::None);
    let t4 = b.avg_pool_from(t2, 3, 2);
    let t5 = b.flatten_from(t4);
    b.dense_from(t5, 6, q(0.1, 2), Activation::None);
    b.build()
}

#[test]
fn a_tensor_feeding_two_ops_runs_and_equals_the_reference() {
    let bytes = branch_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    // No fusion: t1 is read by the pooling and by the second conv.
    assert!(model.ops()[0].output_offset().is_some());
    assert!(model.ops()[1].runs());
    // The input block is still alive at op 3, which reads it.
    assert!(model.ops()[3].output_offset() != Some(model.input_offset()));
    let mut rng = Lcg::new(12);
    let mut classes = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let want = check_predict(&model, &rng.pixels(128));
        classes.insert(argmax(&want));
    }
    assert!(classes.len() > 1, "degenerate test model: {classes:?}");

    let bytes = pooled_branch_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    // The conv and its pooling fuse; the pooled tensor stays alive for both readers.
    assert_eq!(model.ops()[0].output_offset(), None);
    assert!(!model.ops()[1].runs());
    assert!(model.ops()[1].output_lifetime().1 >= 3);
    for _ in 0..10 {
        check_predict(&model, &rng.pixels(144));
    }
}

#[test]
fn a_residual_block_runs_and_equals_the_reference() {
    let bytes = residual_model().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    let kinds: Vec<_> = model.ops().iter().map(|o| o.kind()).collect();
    assert_eq!(
        kinds,
        [
            OpKind::Conv2d,
            OpKind::Conv2d,
            OpKind::Conv2d,
            OpKind::Add,
            OpKind::LeakyRelu,
            OpKind::GlobalAvgPool,
            OpKind::Dense
        ]
    );
    // The block's input (t1, 256 bytes) lives until the add (step 3), beside the convs'
    // input and output: 3 * 256 bytes at steps 2 and 3.
    assert_eq!(model.ops()[0].output_lifetime(), (0, 3));
    assert_eq!(model.scratch_len(), 3 * 256);
    let mut rng = Lcg::new(17);
    let mut classes = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let want = check_predict(&model, &rng.pixels(128));
        classes.insert(argmax(&want));
    }
    assert!(classes.len() > 1, "degenerate test model: {classes:?}");

    // The residual is the model input itself: conv -> conv -> add(input, conv2).
    let shape = Shape {
        channels: 2,
        height: 6,
        width: 6,
    };
    let mut b = Builder::new(shape, q(0.03, 0), 43);
    let t1 = b.conv_from(0, 3, (3, 1, 1), q(0.05, -128), Activation::Relu);
    let t2 = b.conv_from(t1, 2, (3, 1, 1), q(0.06, 5), Activation::None);
    let t3 = b.add_from(0, t2, q(0.08, 0), Activation::None);
    let t4 = b.global_avg_pool_from(t3);
    b.dense_from(t4, 5, q(0.05, 0), Activation::None);
    let bytes = b.build().to_bytes().unwrap();
    let model = load(&bytes).unwrap();
    for _ in 0..20 {
        check_predict(&model, &rng.pixels(72));
    }
}

#[test]
fn add_gap_and_leaky_relu_errors() {
    // Inputs of different shapes.
    let mut m = residual_model();
    if let OpDef::Add(a) = &mut m.ops[3] {
        a.inputs[0] = 0; // 2x8x8 against 4x8x8
    }
    assert_eq!(load_err(&m), Error::InputShapesDiffer { op: 3 });
    let mut m = residual_model();
    if let OpDef::Add(a) = &mut m.ops[3] {
        a.output = q(0.0, 0);
    }
    assert_eq!(load_err(&m), Error::BadQuantParams { op: 3 });
    let mut m = residual_model();
    if let OpDef::Add(a) = &mut m.ops[3] {
        a.inputs[1] = 4;
    }
    assert_eq!(load_err(&m), Error::BadTensorRef { op: 3, tensor: 4 });
    // LeakyReLU's slope is in [0, 1).
    for alpha in [1.0, -0.1, f32::NAN] {
        let mut m = residual_model();
        if let OpDef::LeakyRelu(l) = &mut m.ops[4] {
            l.alpha = alpha;
        }
        assert_eq!(load_err(&m), Error::BadQuantParams { op: 4 });
    }
    // Global average pooling of a flat vector.
    let mut m = residual_model();
    if let OpDef::GlobalAvgPool(g) = &mut m.ops[5] {
        g.input = 6;
    }
    assert_eq!(load_err(&m), Error::BadTensorRef { op: 5, tensor: 6 });
    let mut b = Builder::new(MNIST_SHAPE, PIXEL_Q, 2);
    let t1 = b.flatten_from(0);
    b.global_avg_pool_from(t1);
    assert_eq!(load_err(&b.build()), Error::ExpectedImage { op: 1 });
}

// ---------------------------------------------------------------------------------------------
// Mutations: nothing makes `from_bytes` or `predict` panic, and what loads is right

#[test]
fn every_single_byte_payload_mutation_with_a_fixed_header_is_safe() {
    // Exhaustive over positions, a few values each; the header is recomputed so that the
    // decoder and the validator (not the CRC) see every mutation. Anything that still loads
    // must run and agree with the reference.
    for (owned, min_loaded) in [
        (tiny_model(), 100),
        (branch_model(), 100),
        (residual_model(), 100),
    ] {
        let payload = payload(&owned);
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
        assert!(loaded > min_loaded, "only {loaded} mutations loaded");
    }
}

/// A random architecture: 0-3 image ops (conv/pools), then Flatten and 0-2 dense ops, or
/// (sometimes) the ops in the wrong order. Each op reads the tensor before it or, sometimes,
/// any earlier tensor.
#[derive(Debug, Clone)]
enum Spec {
    Conv(u16, u8, u8, u8, Activation),
    Max(u8, u8),
    Avg(u8, u8),
    Flatten,
    Dense(u32, Activation),
    /// `x + x`, or `x + y` for an earlier `y`.
    Add(Option<prop::sample::Index>, Activation),
    LeakyRelu(f32),
    GlobalAvgPool,
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
        1 => (prop::option::of(any::<prop::sample::Index>()), arb_activation())
            .prop_map(|(y, a)| Spec::Add(y, a)),
        1 => (0.0_f32..1.0).prop_map(Spec::LeakyRelu),
        1 => Just(Spec::GlobalAvgPool),
    ]
}

fn arb_specs() -> impl Strategy<Value = Vec<(Spec, Option<prop::sample::Index>)>> {
    (
        proptest::collection::vec(arb_image_spec(), 0..4),
        proptest::collection::vec((1_u32..20, arb_activation()), 0..3),
        1_u32..=16,
        prop::bool::weighted(0.15),
        proptest::collection::vec(
            prop::option::weighted(0.25, any::<prop::sample::Index>()),
            8,
        ),
    )
        .prop_map(|(image, dense, classes, shuffle, inputs)| {
            let mut specs = image;
            specs.push(Spec::Flatten);
            specs.extend(dense.into_iter().map(|(n, a)| Spec::Dense(n, a)));
            if let Some(Spec::Dense(n, _)) = specs.last_mut() {
                *n = classes;
            }
            if shuffle {
                specs.reverse();
            }
            specs.into_iter().zip(inputs).collect()
        })
}

fn arb_qparams() -> impl Strategy<Value = QParams> {
    (0.005_f32..0.5, -128_i32..=127).prop_map(|(scale, zero_point)| QParams { scale, zero_point })
}

/// The model of `specs`, and the shape of each of its tensors as the builder computed them.
fn build(
    specs: &[(Spec, Option<prop::sample::Index>)],
    input: Shape,
    input_q: QParams,
    outs: &[QParams],
    seed: u64,
) -> (OwnedModel, Vec<Dims>) {
    let mut b = Builder::new(input, input_q, seed);
    for ((spec, from), &out) in specs.iter().zip(outs.iter().cycle()) {
        let last = b.last();
        let x = from.map_or(last, |i| {
            TensorId::try_from(i.index(usize::from(last) + 1)).unwrap()
        });
        match *spec {
            Spec::Conv(o, k, s, p, a) => b.conv_from(x, o, (k, s, p), out, a),
            Spec::Max(k, s) => b.max_pool_from(x, k, s),
            Spec::Avg(k, s) => b.avg_pool_from(x, k, s),
            Spec::Flatten => b.flatten_from(x),
            Spec::Dense(n, a) => b.dense_from(x, n, out, a),
            Spec::Add(y, a) => {
                let y = y.map_or(x, |i| {
                    TensorId::try_from(i.index(usize::from(last) + 1)).unwrap()
                });
                b.add_from(x, y, out, a)
            }
            Spec::LeakyRelu(alpha) => b.leaky_relu_from(x, alpha, out),
            Spec::GlobalAvgPool => b.global_avg_pool_from(x),
        };
    }
    let dims = b.all_dims();
    (b.build(), dims)
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
        let mut bytes = standard_model().to_bytes().unwrap();
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
        let mut payload = payload(&standard_model());
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
        let (owned, dims) = build(&specs, input, input_q, &outs, seed);
        let bytes = owned.to_bytes().unwrap();
        match load(&bytes) {
            Ok(model) => {
                // The loader's shapes are the builder's.
                for (op, d) in model.ops().iter().zip(&dims[1..]) {
                    prop_assert_eq!(op.output().shape.len(), d.len());
                }
                let pixels = Lcg::new(seed).pixels(model.input_len());
                check_predict(&model, &pixels);
                let chain = specs
                    .iter()
                    .all(|(spec, from)| from.is_none() && !matches!(spec, Spec::Add(Some(_), _)));
                if chain {
                    // No plan needs less than the busiest step; the greedy one may need more.
                    prop_assert!(model.scratch_len() >= chain_scratch(&owned, &dims));
                }
            }
            Err(e) => {
                // Only shape-related rejections are expected from this generator, and scales
                // an Add or a LeakyReLU cannot rescale between.
                let rescales = |op: usize| {
                    matches!(owned.ops[op], OpDef::Add(_) | OpDef::LeakyRelu(_))
                };
                prop_assert!(
                    matches!(
                        e,
                        Error::ZeroDimension { .. }
                            | Error::WindowTooLarge { .. }
                            | Error::InputShapesDiffer { .. }
                            | Error::ExpectedFlat { .. }
                            | Error::ExpectedImage { .. }
                            | Error::OutputShape { .. }
                    ) || matches!(e, Error::BadQuantParams { op } if rescales(op)),
                    "unexpected error {:?}",
                    e
                );
            }
        }
    }

    /// Chains of dense layers (a flatten first): the scratch is at least the busiest step, and
    /// the model runs in exactly its scratch (`check_predict`).
    #[test]
    fn dense_chain_scratch_covers_the_busiest_step_for_any_sizes(
        sizes in proptest::collection::vec(1_u32..40, 1..7),
        classes in 1_u32..=16,
        input in 1_u16..40,
        seed in any::<u64>(),
    ) {
        let shape = Shape { channels: 1, height: 1, width: input };
        let mut b = Builder::new(shape, q(0.05, 0), seed).flatten();
        for &n in &sizes {
            b = b.dense(n, q(0.05, 0), Activation::None);
        }
        b = b.dense(classes, q(0.1, 0), Activation::None);
        let dims = b.all_dims();
        let owned = b.build();
        let bytes = owned.to_bytes().unwrap();
        let model = load(&bytes).unwrap();
        check_predict(&model, &Lcg::new(seed).pixels(usize::from(input)));
        prop_assert!(model.scratch_len() >= chain_scratch(&owned, &dims));
    }
}
