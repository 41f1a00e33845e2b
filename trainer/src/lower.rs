//! Lowering a trained network to an int8 infer-core model: the driver the layers call
//! ([`crate::layers::LayerOps::lower`]).
//!
//! The lowerer walks the layers in order, keeping the current tensor (its id in the model's
//! graph, quantisation, shape, and the trace point whose values it holds). A conv or dense
//! layer *opens* an op: its float weights wait there, so that a BatchNorm right after it folds
//! into them, a ReLU fuses as the output clamp and a dropout vanishes; the op is written
//! (weights quantised per output channel, bias to int32, requantisation derived from the stored
//! scales) when the next layer needs its output. Pooling, flatten and global average pooling
//! keep their input's quantisation; everything else takes its output quantisation from the
//! calibrated range of the last layer it covers.
//!
//! A layer may also write no op at all but leave an [`InputMap`] pending ([`Lowerer::map_input`]):
//! a fixed linear map from the current tensor to the one the float layers after it read (zero
//! padding and channel replication, [`crate::layers::PadReplicate`]). The next conv or dense
//! layer folds it into its weights and geometry; only a flatten may come between (the flatten
//! moves no values, so the map passes through it unchanged).

use std::collections::HashMap;

use infer_core::format::{
    Activation, AddDef, ChannelQuant, Conv2dDef, DenseDef, OpDef, OpKind, OwnedModel, QParams,
    TensorId,
};
use infer_core::spec::{Conv2dGeometry, DenseGeometry, TensorShape};

use crate::layers::LayerOps;
use crate::net::{Net, NetError, Params, Store};
use crate::quantize::{
    ActivationStats, activation_qparams, corrected_bias, input_qparams, quantize_bias,
    quantize_weights,
};

/// Why a network cannot be lowered to int8.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// Reading the float network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A candle operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The layer sequence has no int8 lowering.
    #[error("layer {path}: {why}")]
    Unsupported {
        /// The layer's path.
        path: String,
        /// Why.
        why: &'static str,
    },
    /// A value does not fit the model format.
    #[error("{0} does not fit the model format")]
    TooLarge(&'static str),
    /// No calibrated range for a layer's output.
    #[error("no calibrated range for the output of layer {0}")]
    NoRange(String),
    /// A requantisation multiplier cannot be represented.
    #[error("op {op} channel {channel}: requantisation multiplier out of range")]
    Multiplier {
        /// Op index.
        op: usize,
        /// Output channel.
        channel: usize,
    },
}

/// The calibrated `(low, high)` range of every trace point, by layer path.
pub type Ranges = HashMap<String, (f32, f32)>;

/// The kind of an open conv or dense op.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Linear {
    /// A convolution.
    Conv2d(Conv2dGeometry),
    /// A fully connected layer.
    Dense(DenseGeometry),
}

impl Linear {
    /// The op's output shape for `input`, or `None` if it cannot take it.
    pub fn output(&self, input: TensorShape) -> Option<TensorShape> {
        match self {
            Self::Conv2d(g) => g.output(input),
            Self::Dense(g) => g.output(input),
        }
    }
}

/// A fixed linear map from the tensor the int8 graph holds to the one the float layers read,
/// written as no op of its own: the next conv or dense layer folds it into its weights (see
/// [`Lowerer::map_input`]).
pub trait InputMap: std::fmt::Debug {
    /// The op over the unmapped tensor equivalent to `kind` with float `weight` (`[out, ...]`,
    /// as the layer made them for the mapped tensor of shape `mapped`): its kind and weights.
    /// `Err(why)` if the map does not fold into it.
    fn fold(
        &self,
        kind: Linear,
        weight: &[f32],
        mapped: TensorShape,
    ) -> Result<(Linear, Vec<f32>), &'static str>;

    /// The means of the unmapped tensor per channel or feature, as the folded op reads it (for
    /// bias correction), from `mapped_means`, those of the mapped tensor of shape `mapped` at the
    /// float trace point the layer reads; `None` to take the unmapped tensor's own trace point.
    fn means(&self, _mapped: TensorShape, _mapped_means: &[f64]) -> Option<Vec<f64>> {
        None
    }
}

/// An input map waiting for the conv or dense layer it folds into.
#[derive(Debug)]
struct Pending {
    map: Box<dyn InputMap>,
    /// The shape the float layers see.
    shape: TensorShape,
    /// The trace point whose values the next float layer reads.
    path: String,
    /// The layer that made the map.
    origin: String,
}

/// The tensor the next layer reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// Its id in the model's graph.
    pub id: TensorId,
    /// Its quantisation.
    pub qparams: QParams,
    /// Its shape.
    pub shape: TensorShape,
    /// The trace point whose values it holds (`input` for the model input).
    pub path: String,
}

/// An op whose output is still open to a fused activation or a folded BatchNorm.
#[derive(Debug, Clone)]
enum Open {
    Linear {
        kind: Linear,
        input: Current,
        weight: Vec<f32>,
        bias: Vec<f32>,
        activation: Activation,
        /// Whether anything beyond the conv/dense itself was fused (BatchNorm folds only into
        /// a bare one).
        extended: bool,
        /// The input's means for bias correction when not those of `input.path` (a folded
        /// input map gives them).
        means: Option<Vec<f64>>,
        /// The layer whose output the op's output is.
        last: String,
    },
    Add {
        inputs: [TensorId; 2],
        shape: TensorShape,
        activation: Activation,
        last: String,
    },
}

/// The state of one lowering (see the [module docs](self)).
pub struct Lowerer<'n> {
    ranges: &'n Ranges,
    stats: Option<&'n ActivationStats>,
    ops: Vec<OpDef<Vec<u8>>>,
    current: Current,
    open: Option<Open>,
    /// An input map no layer has folded yet (never while an op is open).
    pending: Option<Pending>,
}

impl<'n> Lowerer<'n> {
    /// The shape the next layer reads (with an input map pending, the mapped shape the float
    /// layers see).
    pub fn current_shape(&self) -> TensorShape {
        if let Some(p) = &self.pending {
            return p.shape;
        }
        match &self.open {
            Some(Open::Linear { kind, input, .. }) => {
                kind.output(input.shape).unwrap_or(input.shape)
            }
            Some(Open::Add { shape, .. }) => *shape,
            None => self.current.shape,
        }
    }

    /// Whether the next layer reads the model input itself (no op open, no input map pending).
    pub fn reads_model_input(&self) -> bool {
        self.open.is_none() && self.pending.is_none() && self.current.id == 0
    }

    /// The tensor the next layer reads, writing any open op first.
    pub fn current(&mut self) -> Result<Current, LowerError> {
        self.settled()?;
        self.close()?;
        Ok(self.current.clone())
    }

    /// Makes `current` the tensor the next layer reads (a residual block does, to lower its
    /// shortcut from the block's input).
    pub fn set_current(&mut self, current: Current) -> Result<(), LowerError> {
        self.settled()?;
        self.close()?;
        self.current = current;
        Ok(())
    }

    /// Makes the layers after `path` read `map` applied to the current tensor, a tensor of
    /// shape `mapped`, without writing an op: the next conv or dense layer (directly or through
    /// flattens) folds the map into its weights ([`InputMap::fold`]); any other layer is
    /// [`LowerError::Unsupported`].
    pub fn map_input(
        &mut self,
        path: &str,
        map: Box<dyn InputMap>,
        mapped: TensorShape,
    ) -> Result<(), LowerError> {
        self.settled()?;
        self.close()?;
        self.pending = Some(Pending {
            map,
            shape: mapped,
            path: path.to_string(),
            origin: path.to_string(),
        });
        Ok(())
    }

    /// `Unsupported` while an input map waits for its conv or dense layer.
    fn settled(&self) -> Result<(), LowerError> {
        match &self.pending {
            None => Ok(()),
            Some(p) => Err(LowerError::Unsupported {
                path: p.origin.clone(),
                why: "this layer writes no int8 op: a conv or dense layer must follow it (a \
                      flatten may come between) for it to fold into",
            }),
        }
    }

    fn range(&self, path: &str) -> Result<QParams, LowerError> {
        let &(lo, hi) = self
            .ranges
            .get(path)
            .ok_or_else(|| LowerError::NoRange(path.to_string()))?;
        Ok(activation_qparams(lo, hi))
    }

    fn next_id(&self) -> Result<TensorId, LowerError> {
        TensorId::try_from(self.ops.len() + 1).map_err(|_| LowerError::TooLarge("op count"))
    }

    /// Appends `op`, whose output becomes the current tensor.
    fn push(
        &mut self,
        op: OpDef<Vec<u8>>,
        qparams: QParams,
        shape: TensorShape,
        path: &str,
    ) -> Result<(), LowerError> {
        let id = self.next_id()?;
        self.ops.push(op);
        self.current = Current {
            id,
            qparams,
            shape,
            path: path.to_string(),
        };
        Ok(())
    }

    /// Opens a conv or dense op with float `weight` (`[out, ...]`) and `bias` (`[out]`).
    pub fn open_linear(
        &mut self,
        path: &str,
        kind: Linear,
        weight: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<(), LowerError> {
        self.close()?;
        let (kind, weight, means) = match self.pending.take() {
            None => (kind, weight, None),
            Some(p) => {
                let unsupported = |why| LowerError::Unsupported {
                    path: path.to_string(),
                    why,
                };
                let (folded, weight) = p.map.fold(kind, &weight, p.shape).map_err(unsupported)?;
                let want = kind.output(p.shape);
                if want.is_none() || folded.output(self.current.shape) != want {
                    return Err(unsupported(
                        "the input map folded into the layer changes its output shape",
                    ));
                }
                let means = self
                    .stats
                    .and_then(|stats| p.map.means(p.shape, stats.means(&p.path)));
                (folded, weight, means)
            }
        };
        self.open = Some(Open::Linear {
            kind,
            input: self.current.clone(),
            weight,
            bias,
            activation: Activation::None,
            extended: false,
            means,
            last: path.to_string(),
        });
        Ok(())
    }

    /// Folds a per-channel affine map `y = x * scale[c] + shift[c]` (an evaluation-mode
    /// BatchNorm) into the open conv or dense op right before it.
    pub fn fold_affine(
        &mut self,
        path: &str,
        scale: &[f32],
        shift: &[f32],
    ) -> Result<(), LowerError> {
        self.settled()?;
        let unsupported = |why| LowerError::Unsupported {
            path: path.to_string(),
            why,
        };
        let Some(Open::Linear {
            weight,
            bias,
            extended: false,
            last,
            ..
        }) = &mut self.open
        else {
            return Err(unsupported(
                "BatchNorm folds only into the conv or dense layer right before it",
            ));
        };
        if scale.len() != bias.len() || shift.len() != bias.len() {
            return Err(unsupported(
                "BatchNorm channels differ from the layer's outputs",
            ));
        }
        let per = weight.len() / bias.len().max(1);
        for (c, ((b, &s), &t)) in bias.iter_mut().zip(scale).zip(shift).enumerate() {
            for w in weight.iter_mut().skip(c * per).take(per) {
                *w *= s;
            }
            *b = *b * s + t;
        }
        *last = path.to_string();
        Ok(())
    }

    /// Fuses a ReLU into the open op right before it as its output clamp.
    pub fn fuse_relu(&mut self, path: &str) -> Result<(), LowerError> {
        self.settled()?;
        match &mut self.open {
            Some(Open::Linear {
                activation: activation @ Activation::None,
                extended,
                last,
                ..
            }) => {
                *activation = Activation::Relu;
                *extended = true;
                *last = path.to_string();
                Ok(())
            }
            Some(Open::Add {
                activation: activation @ Activation::None,
                last,
                ..
            }) => {
                *activation = Activation::Relu;
                *last = path.to_string();
                Ok(())
            }
            Some(Open::Linear { .. } | Open::Add { .. }) | None => Err(LowerError::Unsupported {
                path: path.to_string(),
                why: "ReLU must directly follow a conv, dense or residual layer (or its BatchNorm)",
            }),
        }
    }

    /// A layer that leaves values unchanged in evaluation (dropout): its output is the
    /// current tensor (or, with an input map pending, the mapped one).
    pub fn pass_through(&mut self, path: &str) {
        if let Some(p) = &mut self.pending {
            p.path = path.to_string();
            return;
        }
        match &mut self.open {
            Some(Open::Linear { last, extended, .. }) => {
                *extended = true;
                *last = path.to_string();
            }
            Some(Open::Add { last, .. }) => *last = path.to_string(),
            None => self.current.path = path.to_string(),
        }
    }

    /// Appends an op that keeps its input's quantisation (pooling, flatten): `make` builds it
    /// from the input tensor's id, `layer` gives its output shape.
    ///
    /// With an input map pending only a flatten may come: it flattens the unmapped tensor in
    /// the int8 graph (its output keeps the unmapped tensor's trace point, whose values it holds)
    /// while the map now yields the flattened mapped tensor (flattening moves no value).
    pub fn emit_same_quant(
        &mut self,
        path: &str,
        make: impl FnOnce(TensorId) -> OpDef<Vec<u8>>,
        layer: &dyn LayerOps,
    ) -> Result<(), LowerError> {
        let unsupported = |why| LowerError::Unsupported {
            path: path.to_string(),
            why,
        };
        if let Some(mapped) = self.pending.as_ref().map(|p| p.shape) {
            // No op is open while a map is pending.
            let input = self.current.clone();
            let op = make(input.id);
            if op.kind() != OpKind::Flatten {
                return Err(unsupported(
                    "only a flatten may come between an input map (a layer that writes no op) \
                     and the conv or dense layer it folds into",
                ));
            }
            let shape = layer
                .output(input.shape)
                .ok_or(unsupported("cannot take its input"))?;
            let mapped = layer
                .output(mapped)
                .ok_or(unsupported("cannot take its input"))?;
            if let Some(p) = &mut self.pending {
                p.shape = mapped;
                p.path = path.to_string();
            }
            return self.push(op, input.qparams, shape, &input.path);
        }
        let input = self.current()?;
        let shape = layer.output(input.shape).ok_or(LowerError::Unsupported {
            path: path.to_string(),
            why: "cannot take its input",
        })?;
        self.push(make(input.id), input.qparams, shape, path)
    }

    /// Appends an op whose output quantisation comes from its own calibrated range: `make`
    /// builds it from the input tensor and that quantisation.
    pub fn emit_requantized(
        &mut self,
        path: &str,
        make: impl FnOnce(&Current, QParams) -> OpDef<Vec<u8>>,
        layer: &dyn LayerOps,
    ) -> Result<(), LowerError> {
        let input = self.current()?;
        let shape = layer.output(input.shape).ok_or(LowerError::Unsupported {
            path: path.to_string(),
            why: "cannot take its input",
        })?;
        let q = self.range(path)?;
        self.push(make(&input, q), q, shape, path)
    }

    /// Opens the addition of tensors `a` and `b` (a residual connection), output named `path`.
    pub fn open_add(&mut self, path: &str, a: &Current, b: &Current) -> Result<(), LowerError> {
        self.settled()?;
        self.close()?;
        if a.shape != b.shape {
            return Err(LowerError::Unsupported {
                path: path.to_string(),
                why: "the residual branches have different shapes",
            });
        }
        self.open = Some(Open::Add {
            inputs: [a.id, b.id],
            shape: a.shape,
            activation: Activation::None,
            last: path.to_string(),
        });
        Ok(())
    }

    /// Writes the open op, if any.
    fn close(&mut self) -> Result<(), LowerError> {
        match self.open.take() {
            None => Ok(()),
            Some(Open::Add {
                inputs,
                shape,
                activation,
                last,
            }) => {
                let output = self.range(&last)?;
                let op = OpDef::Add(AddDef {
                    inputs,
                    output,
                    activation,
                });
                self.push(op, output, shape, &last)
            }
            Some(Open::Linear {
                kind,
                input,
                weight,
                bias,
                activation,
                means,
                last,
                ..
            }) => {
                let output = self.range(&last)?;
                let op_index = self.ops.len();
                let out_ch = bias.len();
                let (weights, scales) = quantize_weights(&weight, out_ch);
                let bias = match self.stats {
                    Some(stats) => {
                        let means = means.as_deref().unwrap_or_else(|| stats.means(&input.path));
                        corrected_bias(&weight, &weights, &scales, &bias, means)
                    }
                    None => bias,
                };
                let mut quant = ChannelQuant::<Vec<u8>>::default();
                for (channel, (&s, &b)) in scales.iter().zip(&bias).enumerate() {
                    let bad = LowerError::Multiplier {
                        op: op_index,
                        channel,
                    };
                    let (m, shift) =
                        infer_core::quant::channel_multiplier(input.qparams.scale, s, output.scale)
                            .ok_or(bad)?;
                    let shift = i8::try_from(shift).map_err(|_| LowerError::Multiplier {
                        op: op_index,
                        channel,
                    })?;
                    quant.push(s, quantize_bias(b, input.qparams.scale, s), m, shift);
                }
                let op = match kind {
                    Linear::Conv2d(geometry) => OpDef::Conv2d(Conv2dDef {
                        input: input.id,
                        geometry,
                        weights,
                        quant,
                        output,
                        activation,
                    }),
                    Linear::Dense(geometry) => OpDef::Dense(DenseDef {
                        input: input.id,
                        geometry,
                        weights,
                        quant,
                        output,
                        activation,
                    }),
                };
                let shape = kind.output(input.shape).ok_or(LowerError::Unsupported {
                    path: last.clone(),
                    why: "cannot take its input",
                })?;
                self.push(op, output, shape, &last)
            }
        }
    }
}

/// Lowers `layers` (their tensors in `store` under `prefix`) into `lw`.
pub fn lower_layers(
    lw: &mut Lowerer<'_>,
    store: &Store,
    layers: &[crate::layers::Layer],
    prefix: &str,
) -> Result<(), LowerError> {
    for (i, layer) in layers.iter().enumerate() {
        let params: Params<'_> = store.at(&crate::net::join(prefix, &i.to_string()));
        layer.ops().lower(lw, &params)?;
    }
    Ok(())
}

/// Quantises `net` with activation ranges `ranges` (by trace path); with `stats`, biases are
/// corrected for the weight rounding error ([`corrected_bias`]).
pub fn lower(
    net: &Net,
    ranges: &Ranges,
    stats: Option<&ActivationStats>,
) -> Result<OwnedModel, LowerError> {
    let input_shape = net
        .arch
        .input
        .image()
        .ok_or(LowerError::TooLarge("a flat model input"))?;
    let mut lw = Lowerer {
        ranges,
        stats,
        ops: Vec::new(),
        current: Current {
            id: 0,
            qparams: input_qparams(),
            shape: net.arch.input,
            path: crate::quantize::INPUT.to_string(),
        },
        open: None,
        pending: None,
    };
    lower_layers(&mut lw, &net.store, &net.arch.layers, "")?;
    lw.settled()?;
    lw.close()?;
    Ok(OwnedModel {
        id: net.arch.id.to_string(),
        input_shape,
        input: input_qparams(),
        ops: lw.ops,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use infer_core::format::{Activation, OpKind};

    use super::*;
    use crate::arch;
    use crate::layers::{Flatten, Layer, Relu};
    use crate::net::Mode;

    /// Made-up ranges, a different one per trace point.
    fn fake_ranges(net: &Net) -> Ranges {
        let x = Tensor::zeros((1, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
        let trace = net.forward_trace(&x, Mode::Eval).unwrap();
        trace
            .iter()
            .enumerate()
            .map(|(i, (path, _))| (path.clone(), (-1.0 - i as f32, 2.0 + i as f32)))
            .collect()
    }

    #[test]
    fn lowering_fuses_relu_and_drops_dropout() {
        let net = Net::new(&arch::by_id("s5-cnn").unwrap(), 1, &Device::Cpu).unwrap();
        let q = lower(&net, &fake_ranges(&net), None).unwrap();
        let kinds: Vec<(OpKind, Option<Activation>)> = q
            .ops
            .iter()
            .map(|op| {
                let act = match op {
                    OpDef::Conv2d(c) => Some(c.activation),
                    OpDef::Dense(d) => Some(d.activation),
                    OpDef::Add(a) => Some(a.activation),
                    OpDef::MaxPool2d(_)
                    | OpDef::AvgPool2d(_)
                    | OpDef::Flatten(_)
                    | OpDef::GlobalAvgPool(_)
                    | OpDef::LeakyRelu(_) => None,
                };
                (op.kind(), act)
            })
            .collect();
        let relu = Some(Activation::Relu);
        assert_eq!(
            kinds,
            vec![
                (OpKind::Conv2d, relu),
                (OpKind::MaxPool2d, None),
                (OpKind::Conv2d, relu),
                (OpKind::MaxPool2d, None),
                (OpKind::Flatten, None),
                (OpKind::Dense, relu),
                (OpKind::Dense, Some(Activation::None)),
            ]
        );
        // A chain: op i reads tensor i. FC 128's output quantisation is that of the dropout
        // after its ReLU (layer 9): the same values.
        if let OpDef::Dense(d) = &q.ops[5] {
            assert_eq!(d.input, 5);
            assert_eq!(d.output, activation_qparams(-1.0 - 9.0, 2.0 + 9.0));
        }
    }

    #[test]
    fn lone_relu_is_rejected() {
        let mut a = arch::by_id("s5-ann").unwrap();
        a.layers = vec![Layer::Flatten(Flatten), Layer::Relu(Relu)];
        let net = Net::new(&a, 1, &Device::Cpu).unwrap();
        let err = lower(&net, &fake_ranges(&net), None).unwrap_err();
        assert!(
            matches!(err, LowerError::Unsupported { ref path, .. } if path == "1"),
            "{err}"
        );
    }

    #[test]
    fn export_round_trip() {
        // Quantise an untrained LeNet with made-up ranges, serialise, decode: the decoded
        // definition equals the one written, and infer-core accepts the file.
        let net = Net::new(&arch::by_id("s3-lenet-base").unwrap(), 3, &Device::Cpu).unwrap();
        let q = lower(&net, &fake_ranges(&net), None).unwrap();
        let bytes = q.to_bytes().unwrap();
        let payload = &bytes[infer_core::format::HEADER_LEN..];
        let decoded: OwnedModel = postcard::from_bytes(payload).unwrap();
        assert_eq!(decoded, q);
        assert_eq!(OwnedModel::from_bytes(&bytes).unwrap(), q);
        let model: infer_core::Model = infer_core::Model::from_bytes(&bytes).unwrap();
        assert_eq!(model.id(), "s3-lenet-base");
        assert_eq!(model.ops().len(), q.ops.len());
        assert_eq!(model.macs(), 281_640);
    }
}
