//! `inspect`: what a model file holds and what it costs, as `trainer inspect` and
//! `firmware-sim inspect` print it (one implementation for both binaries).
//!
//! [`Inspection::of_bytes`] reads the header ([`Header::from_bytes`]), loads the model through
//! infer-core ([`Model::from_bytes`], so a file that inspects is a file that runs) and collects:
//! the format version and CRC, how raw pixels map to the int8 input, every op (inputs and
//! output with shapes, parameters, bytes, MACs, per-channel weight-scale range), every tensor
//! (shape, quantisation, and where infer-core's scratch plan keeps it, from step to step), and
//! the totals: flash (the model file's bytes) and RAM (the scratch buffer's bytes). Its
//! [`Display`](fmt::Display) is the aligned text report; it serialises to JSON with serde.

use std::fmt;
use std::path::{Path, PathBuf};

use infer_core::format::{Header, QParams, TensorId};
use infer_core::ops::QOp;
use infer_core::spec::TensorShape;
use infer_core::tensors::{PlannedTensor, Storage};
use infer_core::{Model, ModelOp};
use serde::Serialize;

use crate::HOST_MAX_OPS;

/// Raw pixels map to the int8 input as `q = pixel - PIXEL_OFFSET` (infer-core flips the top bit).
pub const PIXEL_OFFSET: i32 = 128;

/// Why a model file cannot be inspected. Every message names the file and says what is wrong
/// (the reason is part of the message, not a separate source, so it is printed once).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The file cannot be read.
    #[error("{path}: cannot read the model file: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: std::io::Error,
    },
    /// The file is not a valid model (header, CRC, encoding or any op).
    #[error("{path}: not a valid model file: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What infer-core found wrong.
        reason: infer_core::Error,
    },
}

/// Everything `inspect` reports about one model file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Inspection {
    /// The model id recorded in the file.
    pub id: String,
    /// The file's header.
    pub header: HeaderInfo,
    /// How raw pixels become the int8 input.
    pub input: InputMapping,
    /// Quantisation of the output logits and their number.
    pub output: OutputInfo,
    /// Every op in order; op `i` makes tensor `i + 1`.
    pub ops: Vec<OpInfo>,
    /// Every tensor in id order (0 is the input), with its place in the scratch plan.
    pub tensors: Vec<TensorInfo>,
    /// Flash, RAM, parameters and MACs.
    pub totals: Totals,
}

/// The 16-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HeaderInfo {
    /// Format version.
    pub format_version: u16,
    /// Payload bytes after the header.
    pub payload_bytes: u32,
    /// CRC-32 (ISO-HDLC) of the payload, as stored (and checked against the payload).
    pub crc32: u32,
}

/// How raw `u8` pixels map to the model's int8 input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputMapping {
    /// Input shape `[channels, height, width]`, row-major raw pixels.
    pub shape: [u16; 3],
    /// `q = pixel - pixel_offset`.
    pub pixel_offset: i32,
    /// Scale of the int8 input: `real = (q - zero_point) * scale`.
    pub scale: f32,
    /// Zero point of the int8 input.
    pub zero_point: i32,
    /// The normalisation this folds in, `real = (pixel / 255 - mean) / std`: the mean...
    pub mean: f64,
    /// ... and the standard deviation, in units of full scale.
    pub std: f64,
    /// Resizing or padding the file records in front of the first op: the format records
    /// none, so the caller feeds exactly `shape` (a 28x28 image feeding a 3x32x32 network was
    /// folded into the first op at export, and shows there as padding).
    pub preprocessing: String,
}

/// The output logits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutputInfo {
    /// The tensor holding them (the last op's).
    pub tensor: TensorId,
    /// Number of classes.
    pub classes: usize,
    /// Scale of the logits.
    pub scale: f32,
    /// Zero point of the logits.
    pub zero_point: i32,
}

/// One op.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpInfo {
    /// Position in the op list (the plan's step).
    pub index: usize,
    /// The op, as the file format names it (`Conv2d`, `Dense`, ...).
    pub kind: &'static str,
    /// Its geometry and activation clamp, in words (`3x3/1 pad 1, 1->32, clamp -128..127`).
    pub details: String,
    /// Input tensor ids.
    pub inputs: Vec<TensorId>,
    /// Input tensor shapes (`[c, h, w]` or `[n]`).
    pub input_shapes: Vec<Vec<u32>>,
    /// Output tensor id.
    pub output: TensorId,
    /// Output tensor shape.
    pub output_shape: Vec<u32>,
    /// Parameters: weights plus biases.
    pub params: usize,
    /// Bytes of parameters the kernel reads (weights, biases, multipliers, shifts).
    pub param_bytes: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Range of the per-output-channel weight scales (ops with weights).
    pub weight_scales: Option<ScaleRange>,
    /// How it runs: `kernel`, `fused with next max pool`, `fused into previous conv`, or
    /// `alias` (a flatten: no data moves).
    pub runs: &'static str,
    /// Bytes of idle scratch lent to its kernel as working space.
    pub work_bytes: usize,
}

/// Smallest and largest of a set of scales.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScaleRange {
    /// Smallest.
    pub min: f32,
    /// Largest.
    pub max: f32,
}

/// One tensor and its place in the scratch plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Tensor id (0: the input; `i + 1`: op `i`'s output).
    pub id: TensorId,
    /// The op that makes it (`None` for the input).
    pub producer: Option<usize>,
    /// Shape (`[c, h, w]` or `[n]`).
    pub shape: Vec<u32>,
    /// Quantisation scale.
    pub scale: f32,
    /// Quantisation zero point.
    pub zero_point: i32,
    /// `block` (its own bytes of scratch), `alias` (another tensor's block) or `fused` (never
    /// stored).
    pub storage: &'static str,
    /// For an alias, the tensor whose block it shares.
    pub alias_of: Option<TensorId>,
    /// Offset of its bytes in the scratch buffer.
    pub offset: Option<usize>,
    /// Bytes of scratch it owns (0 for an alias or a fused tensor).
    pub bytes: usize,
    /// Steps during which its block holds data, `[first, last]` (`last` = op count: read after
    /// inference).
    pub lifetime: Option<[usize; 2]>,
}

/// The model's costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Ops.
    pub ops: usize,
    /// Parameters (weights plus biases).
    pub params: usize,
    /// Bytes of parameters the kernels read.
    pub param_bytes: usize,
    /// Multiply-accumulates per inference ([`Model::macs`]).
    pub macs: u64,
    /// Flash: the model file's bytes (header and payload; read in place).
    pub model_bytes: usize,
    /// RAM: the scratch buffer's bytes ([`Model::scratch_len`]).
    pub scratch_bytes: usize,
}

impl Inspection {
    /// Inspects a model file's bytes.
    ///
    /// # Errors
    ///
    /// infer-core's error for a header, checksum, encoding or op it rejects.
    pub fn of_bytes(bytes: &[u8]) -> Result<Self, infer_core::Error> {
        let header = Header::from_bytes(bytes)?;
        let model = Model::<HOST_MAX_OPS>::from_bytes(bytes)?;
        let ops: Vec<OpInfo> = model
            .ops()
            .iter()
            .enumerate()
            .map(|(i, op)| op_info(&model, i, op))
            .collect();
        let tensors = model.tensors().map(tensor_info).collect();
        let input = model.input_shape();
        let q = model.input_qparams();
        let out = model.output_qparams();
        let totals = Totals {
            ops: ops.len(),
            params: ops.iter().map(|o| o.params).sum(),
            param_bytes: model.param_bytes(),
            macs: model.macs(),
            model_bytes: bytes.len(),
            scratch_bytes: model.scratch_len(),
        };
        Ok(Self {
            id: model.id().to_owned(),
            header: HeaderInfo {
                format_version: header.version,
                payload_bytes: header.payload_len,
                crc32: header.crc32,
            },
            input: InputMapping {
                shape: [input.channels, input.height, input.width],
                pixel_offset: PIXEL_OFFSET,
                scale: q.scale,
                zero_point: q.zero_point,
                mean: f64::from(PIXEL_OFFSET + q.zero_point) / 255.0,
                std: 1.0 / (255.0 * f64::from(q.scale)),
                preprocessing: format!(
                    "none recorded (feed {}x{}x{} raw pixels as they are)",
                    input.channels, input.height, input.width
                ),
            },
            output: OutputInfo {
                tensor: TensorId::try_from(ops.len()).unwrap_or(TensorId::MAX),
                classes: model.num_classes(),
                scale: out.scale,
                zero_point: out.zero_point,
            },
            ops,
            tensors,
            totals,
        })
    }

    /// Reads and inspects the model file at `path`.
    ///
    /// # Errors
    ///
    /// [`InspectError`], naming the file.
    pub fn of_file(path: &Path) -> Result<Self, InspectError> {
        let bytes = std::fs::read(path).map_err(|reason| InspectError::Read {
            path: path.to_owned(),
            reason,
        })?;
        Self::of_bytes(&bytes).map_err(|reason| InspectError::Invalid {
            path: path.to_owned(),
            reason,
        })
    }
}

/// `[c, h, w]` or `[n]`.
fn dims(shape: TensorShape) -> Vec<u32> {
    match shape {
        TensorShape::Image(s) => vec![s.channels.into(), s.height.into(), s.width.into()],
        TensorShape::Flat(n) => vec![n],
    }
}

/// `1x28x28` or `10`.
fn dims_text(dims: &[u32]) -> String {
    dims.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("x")
}

/// The range of a set of scales (`None` if empty).
fn scale_range(scales: impl Iterator<Item = f32>) -> Option<ScaleRange> {
    scales.fold(None, |r, s| {
        Some(match r {
            None => ScaleRange { min: s, max: s },
            Some(ScaleRange { min, max }) => ScaleRange {
                min: min.min(s),
                max: max.max(s),
            },
        })
    })
}

/// `clamp lo..hi`.
fn clamp_text(lo: i8, hi: i8) -> String {
    format!("clamp {lo}..{hi}")
}

fn op_info<const N: usize>(model: &Model<'_, N>, index: usize, op: &ModelOp<'_>) -> OpInfo {
    let q = op.op();
    let inputs = q.inputs().ids().to_vec();
    let input_shapes = inputs
        .iter()
        .map(|&t| {
            model
                .tensor(t)
                .map_or_else(Vec::new, |t| dims(t.info.shape))
        })
        .collect();
    let (details, params, weight_scales) = match q {
        QOp::Conv2d(c) => {
            let g = c.geometry();
            let p = g.padding;
            let rq = c.requant();
            let groups = if g.groups > 1 {
                format!(", {} groups", g.groups)
            } else {
                String::new()
            };
            let details = format!(
                "{}x{}/{} pad {},{},{},{}, {}->{}{groups}, {}",
                g.kernel_h,
                g.kernel_w,
                g.stride,
                p.top,
                p.bottom,
                p.left,
                p.right,
                g.in_ch,
                g.out_ch,
                clamp_text(rq.act_min, rq.act_max)
            );
            let params = c.weights().len() + usize::from(g.out_ch);
            (details, params, scale_range(c.weight_scales()))
        }
        QOp::Dense(d) => {
            let g = d.geometry();
            let rq = d.requant();
            let details = format!(
                "{}->{}, {}",
                g.in_dim,
                g.out_dim,
                clamp_text(rq.act_min, rq.act_max)
            );
            let params = d.weights().len() + rq.bias.len() / 4;
            (details, params, scale_range(d.weight_scales()))
        }
        QOp::MaxPool2d(m) => {
            let g = m.geometry();
            (format!("{0}x{0}/{1}", g.kernel, g.stride), 0, None)
        }
        QOp::AvgPool2d(a) => {
            let g = a.geometry();
            (format!("{0}x{0}/{1}", g.kernel, g.stride), 0, None)
        }
        QOp::Flatten(_) => ("channel-major".to_owned(), 0, None),
        QOp::Add(a) => {
            let p = a.params();
            let details = format!("residual sum, {}", clamp_text(p.act_min, p.act_max));
            (details, 0, None)
        }
        QOp::GlobalAvgPool(_) => ("mean of each channel".to_owned(), 0, None),
        QOp::LeakyRelu(l) => (format!("alpha {}", l.alpha()), 0, None),
    };
    let fused_into_previous = index
        .checked_sub(1)
        .and_then(|i| model.ops().get(i))
        .is_some_and(|prev| prev.output_offset().is_none());
    let runs = if op.output_offset().is_none() {
        "fused with next max pool"
    } else if q.is_alias() {
        "alias"
    } else if fused_into_previous {
        "fused into previous conv"
    } else {
        "kernel"
    };
    OpInfo {
        index,
        kind: q.kind().name(),
        details,
        inputs,
        input_shapes,
        output: TensorId::try_from(index + 1).unwrap_or(TensorId::MAX),
        output_shape: dims(op.output().shape),
        params,
        param_bytes: q.param_bytes(),
        macs: q.macs(),
        weight_scales,
        runs,
        work_bytes: op.work().1,
    }
}

fn tensor_info(t: PlannedTensor) -> TensorInfo {
    let QParams { scale, zero_point } = t.info.qparams;
    let (storage, alias_of, bytes) = match t.storage {
        Storage::Block(b) => ("block", None, b.bytes),
        Storage::Alias { root, .. } => ("alias", Some(root), 0),
        Storage::Fused => ("fused", None, 0),
    };
    let block = t.block();
    TensorInfo {
        id: t.id,
        producer: t.producer,
        shape: dims(t.info.shape),
        scale,
        zero_point,
        storage,
        alias_of,
        offset: block.map(|b| b.offset),
        bytes,
        lifetime: block.map(|b| [b.first, b.last]),
    }
}

/// Aligned columns, two spaces apart: those in `left` left-aligned, the others (numbers)
/// right-aligned.
fn table(out: &mut fmt::Formatter<'_>, rows: &[Vec<String>], left: &[usize]) -> fmt::Result {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (c, (cell, &w)) in row.iter().zip(&widths).enumerate() {
            line.push(' ');
            if left.contains(&c) {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!("{cell:>w$}"));
            }
            line.push(' ');
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Thousands separated by commas: `424,591`.
fn grouped(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn usize_grouped(n: usize) -> String {
    grouped(u64::try_from(n).unwrap_or(u64::MAX))
}

fn tensor_ref(ids: &[TensorId]) -> String {
    ids.iter()
        .map(|t| format!("t{t}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.header;
        let i = &self.input;
        let [c, ih, iw] = i.shape;
        writeln!(f, "model   {}", self.id)?;
        writeln!(
            f,
            "format  FMQ8 version {}, payload {} bytes, CRC-32 {:#010x} (checked)",
            h.format_version,
            usize_grouped(usize::try_from(h.payload_bytes).unwrap_or(usize::MAX)),
            h.crc32
        )?;
        writeln!(
            f,
            "input   t0 {c}x{ih}x{iw} u8 pixels, row-major; q = pixel - {}, scale {}, zero point {}",
            i.pixel_offset, i.scale, i.zero_point
        )?;
        writeln!(
            f,
            "        = (pixel / 255 - {:.4}) / {:.4}; preprocessing: {}",
            i.mean, i.std, i.preprocessing
        )?;
        writeln!(
            f,
            "output  t{} {} logits, scale {}, zero point {}",
            self.output.tensor, self.output.classes, self.output.scale, self.output.zero_point
        )?;

        writeln!(f, "\nops")?;
        let mut rows = vec![
            [
                "#",
                "op",
                "in",
                "in shape",
                "out",
                "out shape",
                "params",
                "bytes",
                "MACs",
                "weight scale min..max",
                "runs",
                "work",
                "details",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for o in &self.ops {
            let shapes = o
                .input_shapes
                .iter()
                .map(|s| dims_text(s))
                .collect::<Vec<_>>()
                .join(",");
            rows.push(vec![
                o.index.to_string(),
                o.kind.to_owned(),
                tensor_ref(&o.inputs),
                shapes,
                format!("t{}", o.output),
                dims_text(&o.output_shape),
                usize_grouped(o.params),
                usize_grouped(o.param_bytes),
                grouped(o.macs),
                o.weight_scales
                    .map_or_else(String::new, |r| format!("{:.3e}..{:.3e}", r.min, r.max)),
                o.runs.to_owned(),
                usize_grouped(o.work_bytes),
                o.details.clone(),
            ]);
        }
        let t = &self.totals;
        rows.push(vec![
            String::new(),
            "total".to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            usize_grouped(t.params),
            usize_grouped(t.param_bytes),
            grouped(t.macs),
        ]);
        table(f, &rows, &[1, 10, 12])?;

        writeln!(
            f,
            "\ntensors (scratch plan: offset and bytes in the scratch buffer, alive from step to step)"
        )?;
        let mut rows = vec![
            [
                "id",
                "made by",
                "shape",
                "scale",
                "zero point",
                "storage",
                "offset",
                "bytes",
                "alive",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for t in &self.tensors {
            let storage = match t.alias_of {
                Some(root) => format!("alias of t{root}"),
                None => t.storage.to_owned(),
            };
            rows.push(vec![
                format!("t{}", t.id),
                t.producer
                    .map_or_else(|| "input".to_owned(), |p| format!("op {p}")),
                dims_text(&t.shape),
                format!("{:.4e}", t.scale),
                t.zero_point.to_string(),
                storage,
                t.offset.map_or_else(String::new, usize_grouped),
                usize_grouped(t.bytes),
                t.lifetime
                    .map_or_else(String::new, |[a, b]| format!("{a}..{b}")),
            ]);
        }
        table(f, &rows, &[0, 1, 2, 5])?;

        writeln!(
            f,
            "\ntotal   {} ops, {} parameters, {} MACs per inference",
            t.ops,
            usize_grouped(t.params),
            grouped(t.macs)
        )?;
        writeln!(
            f,
            "flash   {} bytes (the model file, read in place)",
            usize_grouped(t.model_bytes)
        )?;
        writeln!(
            f,
            "RAM     {} bytes (the scratch buffer)",
            usize_grouped(t.scratch_bytes)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_and_ranges() {
        assert_eq!(grouped(0_u64), "0");
        assert_eq!(grouped(999_u64), "999");
        assert_eq!(grouped(1000_u64), "1,000");
        assert_eq!(grouped(4_241_152_u64), "4,241,152");
        let r = scale_range([0.5_f32, 0.25, 2.0].into_iter());
        assert_eq!(
            r,
            Some(ScaleRange {
                min: 0.25,
                max: 2.0
            })
        );
        assert_eq!(scale_range(std::iter::empty()), None);
        assert_eq!(dims_text(&[1, 28, 28]), "1x28x28");
    }
}
