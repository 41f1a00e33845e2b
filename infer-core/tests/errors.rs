//! Every [`Error`] variant, produced by a crafted file (or call) and compared exactly.
//!
//! [`CASES`] names one case per variant; `every_error_variant_has_a_case` walks
//! [`Error::NAMES`] (generated from the enum's own list of variants), so a variant added
//! without a case here fails the test. Each case returns the error it produced, or, for the two
//! that depend on the build or the target, says where the error is produced instead (and still
//! checks what happens here).
//!
//! The large-geometry cases (`TooLarge`, `ScratchOverflow`) are the 32-bit checks: on a
//! 64-bit host their files load (and are never run: their tensors take gigabytes), on a 32-bit
//! target (`cargo test -p infer-core --target i686-unknown-linux-gnu`, in CI) they must be
//! refused, since the kernels' sizes would overflow `usize`.

mod support;

use infer_core::error::{Buffer, Dimension, Extent};
use infer_core::format::{
    Activation, ChannelQuant, Conv2dDef, DenseDef, FlattenDef, GlobalAvgPoolDef, HEADER_LEN,
    MaxPool2dDef, OpDef, OwnedModel, Padding, QParams, Shape, TensorId,
};
use infer_core::ops::AddDef;
use infer_core::spec::{Conv2dGeometry, DenseGeometry, Pool2dGeometry};
use infer_core::{Error, Model};
use support::{file, payload, q, quant_mut, quantize_channel, residual_model, standard_model};

/// What a case did on this build and target: the error it produced, or where the variant is
/// produced instead.
type Outcome = Result<Error, &'static str>;

/// A variant's name and the case that produces it.
type Case = (&'static str, fn() -> Outcome);

/// One case per variant of [`Error`], by name.
const CASES: &[Case] = &[
    ("Truncated", truncated),
    ("BadMagic", bad_magic),
    ("FormatV1", format_v1),
    ("UnsupportedVersion", unsupported_version),
    ("Reserved", reserved),
    ("PayloadLength", payload_length),
    ("Checksum", checksum),
    ("Decode", decode),
    ("TrailingBytes", trailing_bytes),
    ("BadId", bad_id),
    ("TooManyOps", too_many_ops),
    ("NoOps", no_ops),
    ("InputShape", input_shape),
    ("InputQuantParams", input_quant_params),
    ("BadTensorRef", bad_tensor_ref),
    ("ShapeMismatch", shape_mismatch),
    ("ExpectedFlat", expected_flat),
    ("ExpectedImage", expected_image),
    ("BufferLength", buffer_length),
    ("BadQuantParams", bad_quant_params),
    ("MultiplierMismatch", multiplier_mismatch),
    ("ZeroDimension", zero_dimension),
    ("IndivisibleGroups", indivisible_groups),
    ("WindowTooLarge", window_too_large),
    ("InputShapesDiffer", input_shapes_differ),
    ("TooLarge", too_large),
    ("ScratchOverflow", scratch_overflow),
    ("OpNotBuilt", op_not_built),
    ("OutputShape", output_shape),
    ("ScratchTooSmall", scratch_too_small),
    ("InputLength", input_length),
];

#[test]
fn every_error_variant_has_a_case() {
    for &name in Error::NAMES {
        let (_, case) = CASES
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no case produces Error::{name}: add one to CASES"));
        match case() {
            Ok(e) => assert_eq!(e.name(), name, "the case for {name} produced {e:?}"),
            Err(elsewhere) => println!("Error::{name}: {elsewhere}"),
        }
    }
    for (name, _) in CASES {
        assert!(Error::NAMES.contains(name), "CASES names no variant {name}");
    }
}

/// Each case as its own test too, so that a failure names it.
macro_rules! case_tests {
    ($($case:ident),* $(,)?) => {
        mod each {
            $(#[test] fn $case() { let _ = super::$case(); })*
        }
    };
}

case_tests!(
    truncated,
    bad_magic,
    format_v1,
    unsupported_version,
    reserved,
    payload_length,
    checksum,
    decode,
    trailing_bytes,
    bad_id,
    too_many_ops,
    no_ops,
    input_shape,
    input_quant_params,
    bad_tensor_ref,
    shape_mismatch,
    expected_flat,
    expected_image,
    buffer_length,
    bad_quant_params,
    multiplier_mismatch,
    zero_dimension,
    indivisible_groups,
    window_too_large,
    input_shapes_differ,
    too_large,
    scratch_overflow,
    op_not_built,
    output_shape,
    scratch_too_small,
    input_length,
);

/// The error `Model::from_bytes` gives for `bytes`, which must be `want`.
fn refused(bytes: &[u8], want: Error) -> Outcome {
    let got = Model::<16>::from_bytes(bytes).expect_err("the file should be refused");
    assert_eq!(got, want);
    Ok(got)
}

/// [`refused`] for an owned model.
fn refused_model(model: &OwnedModel, want: Error) -> Outcome {
    refused(&model.to_bytes().unwrap(), want)
}

/// A valid file with its header edited by `edit`.
fn with_header(edit: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut bytes = standard_model().to_bytes().unwrap();
    edit(&mut bytes[..HEADER_LEN]);
    bytes
}

fn truncated() -> Outcome {
    refused(&[0x46, 0x4d, 0x51], Error::Truncated)
}

fn bad_magic() -> Outcome {
    refused(&with_header(|h| h[0] = b'G'), Error::BadMagic)
}

fn format_v1() -> Outcome {
    refused(
        &with_header(|h| h[4..6].copy_from_slice(&[1, 0])),
        Error::FormatV1,
    )
}

fn unsupported_version() -> Outcome {
    let bytes = with_header(|h| h[4..6].copy_from_slice(&[7, 0]));
    refused(&bytes, Error::UnsupportedVersion(7))
}

fn reserved() -> Outcome {
    refused(&with_header(|h| h[6] = 1), Error::Reserved)
}

fn payload_length() -> Outcome {
    let mut bytes = standard_model().to_bytes().unwrap();
    bytes.push(0);
    let got = bytes.len() - HEADER_LEN;
    let want = Error::PayloadLength {
        expected: got - 1,
        got,
    };
    refused(&bytes, want)
}

fn checksum() -> Outcome {
    let mut bytes = standard_model().to_bytes().unwrap();
    let stated = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let got = infer_core::format::CRC.checksum(&bytes[HEADER_LEN..]);
    let want = Error::Checksum {
        expected: stated,
        got,
    };
    refused(&bytes, want)
}

fn decode() -> Outcome {
    // The payload cut inside the op list, with a header that matches it.
    let payload = payload(&standard_model());
    refused(&file(&payload[..payload.len() / 2]), Error::Decode)
}

fn trailing_bytes() -> Outcome {
    let mut payload = payload(&standard_model());
    payload.extend_from_slice(&[0, 0, 0]);
    refused(&file(&payload), Error::TrailingBytes(3))
}

fn bad_id() -> Outcome {
    let mut m = standard_model();
    m.id = "two\nlines".into();
    refused_model(&m, Error::BadId { len: 9 })
}

fn too_many_ops() -> Outcome {
    // 17 flattens of a flat input: one more than the default Model holds.
    let mut m = standard_model();
    m.ops.truncate(5);
    for i in 5..17 {
        let input = TensorId::try_from(i).unwrap();
        m.ops.push(OpDef::Flatten(FlattenDef { input }));
    }
    assert_eq!(m.ops.len(), 17);
    refused_model(&m, Error::TooManyOps { capacity: 16 })
}

fn no_ops() -> Outcome {
    let mut m = standard_model();
    m.ops.clear();
    refused_model(&m, Error::NoOps)
}

fn input_shape() -> Outcome {
    let mut m = standard_model();
    m.input_shape.height = 0;
    refused_model(&m, Error::InputShape)
}

fn input_quant_params() -> Outcome {
    let mut m = standard_model();
    m.input.scale = -1.0;
    refused_model(&m, Error::InputQuantParams)
}

fn bad_tensor_ref() -> Outcome {
    let mut m = standard_model();
    if let OpDef::MaxPool2d(p) = &mut m.ops[1] {
        p.input = 2; // its own output
    }
    refused_model(&m, Error::BadTensorRef { op: 1, tensor: 2 })
}

fn shape_mismatch() -> Outcome {
    let mut m = standard_model();
    if let OpDef::Conv2d(c) = &mut m.ops[2] {
        c.geometry.in_ch = 5; // its input has 4 channels
    }
    let want = Error::ShapeMismatch {
        op: 2,
        expected: 5,
        got: 4,
    };
    refused_model(&m, want)
}

fn expected_flat() -> Outcome {
    // The dense layer reads the average pooling's image instead of the flatten's vector.
    let mut m = standard_model();
    if let OpDef::Dense(d) = &mut m.ops[5] {
        d.input = 4;
    }
    refused_model(&m, Error::ExpectedFlat { op: 5 })
}

fn expected_image() -> Outcome {
    let mut m = standard_model();
    m.ops.push(OpDef::MaxPool2d(MaxPool2dDef {
        input: 6, // the dense layer's logits
        geometry: Pool2dGeometry {
            kernel: 1,
            stride: 1,
        },
    }));
    refused_model(&m, Error::ExpectedImage { op: 6 })
}

fn buffer_length() -> Outcome {
    let mut m = standard_model();
    quant_mut(&mut m.ops[0]).shifts.pop();
    let want = Error::BufferLength {
        op: 0,
        buffer: Buffer::Shifts,
        expected: 4,
        got: 3,
    };
    refused_model(&m, want)
}

fn bad_quant_params() -> Outcome {
    let mut m = standard_model();
    if let OpDef::Dense(d) = &mut m.ops[5] {
        d.output.zero_point = 128;
    }
    refused_model(&m, Error::BadQuantParams { op: 5 })
}

fn multiplier_mismatch() -> Outcome {
    let mut m = standard_model();
    let quant = quant_mut(&mut m.ops[2]);
    quant.multipliers[3 * 4] ^= 1; // channel 3's multiplier, lowest byte
    refused_model(&m, Error::MultiplierMismatch { op: 2, channel: 3 })
}

fn zero_dimension() -> Outcome {
    let mut m = standard_model();
    if let OpDef::MaxPool2d(p) = &mut m.ops[1] {
        p.geometry.stride = 0;
    }
    let want = Error::ZeroDimension {
        op: 1,
        what: Dimension::Stride,
    };
    refused_model(&m, want)
}

fn indivisible_groups() -> Outcome {
    // Conv 2 takes 4 channels to 6: 4 groups divide the input but not the output.
    let mut m = standard_model();
    if let OpDef::Conv2d(c) = &mut m.ops[2] {
        c.geometry.groups = 4;
    }
    refused_model(&m, Error::IndivisibleGroups { op: 2, groups: 4 })
}

fn window_too_large() -> Outcome {
    // Conv 0 sees 28 + 1 + 1 padded rows: a 31-row kernel does not fit.
    let mut m = standard_model();
    if let OpDef::Conv2d(c) = &mut m.ops[0] {
        c.geometry.kernel_h = 31;
    }
    refused_model(&m, Error::WindowTooLarge { op: 0 })
}

fn input_shapes_differ() -> Outcome {
    let mut m = residual_model();
    if let OpDef::Add(AddDef { inputs, .. }) = &mut m.ops[3] {
        inputs[0] = 0; // the 2x8x8 input against a 4x8x8 tensor
    }
    refused_model(&m, Error::InputShapesDiffer { op: 3 })
}

/// A convolution from tensor `input` (quantised with `input_q`) with `weights` zero weights
/// and valid per-channel quantisation for `out_ch` channels; its output has the input's
/// quantisation.
fn conv(
    input: TensorId,
    input_q: QParams,
    geometry: Conv2dGeometry,
    weights: usize,
) -> OpDef<Vec<u8>> {
    let output = input_q;
    let mut quant = ChannelQuant::default();
    let mut bytes = Vec::new();
    for _ in 0..geometry.out_ch {
        quantize_channel(&[], 0.0, input_q, output, &mut bytes, &mut quant);
    }
    OpDef::Conv2d(Conv2dDef {
        input,
        geometry,
        weights: vec![0; weights],
        quant,
        output,
        activation: Activation::None,
    })
}

/// A plain convolution geometry with a square `kernel` and stride 1.
fn geometry(in_ch: u16, out_ch: u16, kernel: u8, padding: Padding) -> Conv2dGeometry {
    Conv2dGeometry {
        in_ch,
        out_ch,
        kernel_h: kernel,
        kernel_w: kernel,
        stride: 1,
        padding,
        groups: 1,
    }
}

/// The quantisation of every tensor of [`huge_model`]s.
const HUGE_Q: QParams = QParams {
    scale: 0.02,
    zero_point: 0,
};

/// A model of `input_shape` running `ops` (quantised with [`HUGE_Q`]), then global average
/// pooling and a dense layer to one logit (so that only the ops' own checks can refuse it).
fn huge_model(input_shape: Shape, ops: Vec<OpDef<Vec<u8>>>) -> OwnedModel {
    let input = HUGE_Q;
    let mut ops = ops;
    let last = TensorId::try_from(ops.len()).unwrap();
    ops.push(OpDef::GlobalAvgPool(GlobalAvgPoolDef { input: last }));
    let channels = match ops.first() {
        Some(OpDef::Conv2d(c)) => c.geometry.out_ch,
        _ => input_shape.channels,
    };
    let mut quant = ChannelQuant::default();
    let mut weights = Vec::new();
    let output = q(0.1, 0);
    let float = vec![0.5; usize::from(channels)];
    quantize_channel(&float, 0.0, HUGE_Q, output, &mut weights, &mut quant);
    ops.push(OpDef::Dense(DenseDef {
        input: last + 1,
        geometry: DenseGeometry {
            in_dim: u32::from(channels),
            out_dim: 1,
        },
        weights,
        quant,
        output,
        activation: Activation::None,
    }));
    OwnedModel {
        id: "huge".into(),
        input_shape,
        input,
        ops,
    }
}

/// A conv's output side past `u16::MAX` (every target), and on 32-bit targets a weight count
/// and a padded input past `usize::MAX`.
fn too_large() -> Outcome {
    let input = HUGE_Q;
    let pad = |top, left| Padding {
        top,
        left,
        ..Padding::default()
    };
    // 1x1x65535, one column of padding: 65536 output columns.
    let wide = Shape {
        channels: 1,
        height: 1,
        width: u16::MAX,
    };
    let m = huge_model(wide, vec![conv(0, input, geometry(1, 1, 1, pad(0, 1)), 1)]);
    let output = Error::TooLarge {
        op: 0,
        what: Extent::Output,
    };
    refused_model(&m, output)?;

    // 1024 channels of 1x1, a 64x64 kernel over 31 + 1 + 32 padded rows and columns, 1024
    // filters: 1024 * 1024 * 64 * 64 = 2^32 weights (the file holds none).
    let deep = Shape {
        channels: 1024,
        height: 1,
        width: 1,
    };
    let padding = Padding {
        top: 31,
        bottom: 32,
        left: 31,
        right: 32,
    };
    let m = huge_model(
        deep,
        vec![conv(0, input, geometry(1024, 1024, 64, padding), 0)],
    );
    let weights = Error::TooLarge {
        op: 0,
        what: Extent::Weights,
    };
    if usize::BITS == 32 {
        refused_model(&m, weights)?;
    } else {
        let want = Error::BufferLength {
            op: 0,
            buffer: Buffer::Weights,
            expected: usize::try_from(1_u64 << 32).unwrap(),
            got: 0,
        };
        refused_model(&m, want)?;
    }

    // 65535 channels of 1x65535 (2^32 - 2^17 + 1 values) and one padded row: a 1x1 conv's
    // im2col copy of the padded input would hold twice as many values.
    let big = Shape {
        channels: u16::MAX,
        height: 1,
        width: u16::MAX,
    };
    let filter = usize::from(u16::MAX);
    let m = huge_model(
        big,
        vec![conv(0, input, geometry(u16::MAX, 1, 1, pad(1, 0)), filter)],
    );
    let working = Error::TooLarge {
        op: 0,
        what: Extent::Working,
    };
    if usize::BITS == 32 {
        refused_model(&m, working)
    } else {
        let bytes = m.to_bytes().unwrap();
        let model = Model::<16>::from_bytes(&bytes).expect("loads on a 64-bit target");
        assert_eq!(model.input_len(), 65535 * 65535);
        Ok(output)
    }
}

/// Two tensors of nearly 2^32 bytes alive at once (the input and a 1x1 max pooling of it):
/// on a 32-bit target the scratch plan overflows.
fn scratch_overflow() -> Outcome {
    let big = Shape {
        channels: 1,
        height: u16::MAX,
        width: u16::MAX,
    };
    let pool = OpDef::MaxPool2d(MaxPool2dDef {
        input: 0,
        geometry: Pool2dGeometry {
            kernel: 1,
            stride: 1,
        },
    });
    let m = huge_model(big, vec![pool]);
    if usize::BITS == 32 {
        return refused_model(&m, Error::ScratchOverflow);
    }
    let bytes = m.to_bytes().unwrap();
    let model = Model::<16>::from_bytes(&bytes).expect("loads on a 64-bit target");
    assert_eq!(u64::try_from(model.scratch_len()), Ok(2 * 65535 * 65535));
    Err("produced on 32-bit targets (CI: cargo test -p infer-core --target i686-unknown-linux-gnu)")
}

/// Produced with an op feature off; with every op built, by the unit test that builds each
/// op with its feature off (`cargo test -p infer-core --lib --no-default-features`).
fn op_not_built() -> Outcome {
    #[cfg(not(feature = "leaky-relu"))]
    {
        // Its LeakyReLU (op 4), or an op before it whose feature is off too.
        let bytes = residual_model().to_bytes().unwrap();
        let got = Model::<16>::from_bytes(&bytes).unwrap_err();
        assert!(matches!(got, Error::OpNotBuilt { .. }), "{got:?}");
        Ok(got)
    }
    #[cfg(feature = "leaky-relu")]
    {
        let unit_tests = include_str!("../src/ops/mod.rs");
        assert!(unit_tests.contains("fn an_op_that_is_not_built_is_refused_by_name()"));
        Err(
            "produced by ops::tests::an_op_that_is_not_built_is_refused_by_name \
             (cargo test -p infer-core --lib --no-default-features)",
        )
    }
}

fn output_shape() -> Outcome {
    // Without its dense layer the model ends on a 54-feature vector.
    let mut m = standard_model();
    m.ops.pop();
    refused_model(&m, Error::OutputShape { len: 54 })
}

/// The committed s5-cnn model, loaded.
fn s5_cnn() -> Model<'static> {
    static BYTES: &[u8] = include_bytes!("../../models/s5-cnn.fmq");
    Model::from_bytes(BYTES).unwrap()
}

fn scratch_too_small() -> Outcome {
    let model = s5_cnn();
    let mut scratch = vec![0_i8; model.scratch_len() - 1];
    let got = model.predict(&[0; 784], &mut scratch).unwrap_err();
    let want = Error::ScratchTooSmall {
        needed: model.scratch_len(),
    };
    assert_eq!(got, want);
    Ok(got)
}

fn input_length() -> Outcome {
    let model = s5_cnn();
    let mut scratch = vec![0_i8; model.scratch_len()];
    let got = model.predict_raw(&[0; 783], &mut scratch).unwrap_err();
    let want = Error::InputLength {
        expected: 784,
        got: 783,
    };
    assert_eq!(got, want);
    Ok(got)
}
