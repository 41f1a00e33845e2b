//! Recurrent layers over the rows of an image: an image `[1, steps, features]` is read as a
//! sequence of `steps` rows of `features` pixels (28 x 28 for Fashion-MNIST), and the layer
//! outputs its last hidden state. Two cells, with PyTorch's parameters, names, gate order and
//! initialisation (uniform in `±1/sqrt(hidden)`):
//!
//! - Elman (`nn.RNN`, tanh): `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`;
//! - LSTM (`nn.LSTM`): gates `i, f, g, o` stacked in that order in `W_ih [4H, F]`,
//!   `W_hh [4H, H]`, `b_ih`, `b_hh`; `c' = σ(f) c + σ(i) tanh(g)`, `h' = σ(o) tanh(c')`.
//!   The forget gate's bias starts at 1.0 (as Keras' `unit_forget_bias`): `b_ih`'s forget
//!   slice is 1.0 and `b_hh`'s is 0.0, so their sum is 1.0.
//!
//! The input projection `W_ih x + b_ih + b_hh` of every step is one matrix product over the
//! whole sequence before the loop (candle-nn's `LSTM` computes it step by step); only the
//! `W_hh h` product is sequential.
//!
//! There is no int8 lowering: the format has no recurrent op, so these models are trained and
//! reported but not deployed.

use candle_core::{D, Tensor};
use infer_core::spec::TensorShape;
use serde::{Deserialize, Serialize};

use super::{Init, LayerOps, ParamSpec};
use crate::lower::{LowerError, Lowerer};
use crate::net::{Forward, NetError, Params};

/// The recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    /// Elman RNN with tanh.
    Elman,
    /// Long short-term memory.
    Lstm,
}

impl Cell {
    /// Gate blocks stacked in the weights (1 for Elman, 4 for LSTM).
    fn gates(self) -> usize {
        match self {
            Self::Elman => 1,
            Self::Lstm => 4,
        }
    }
}

/// A recurrent layer over the rows of a one-channel image, returning the last hidden state.
///
/// # Shapes
///
/// `[batch, 1, steps, features]` to `[batch, hidden]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrent {
    /// The cell.
    pub cell: Cell,
    /// Hidden units.
    pub hidden: usize,
}

impl Recurrent {
    /// `(steps, features)` of an image input with one channel.
    fn sequence(input: TensorShape) -> Option<(usize, usize)> {
        let image = input.image()?;
        (image.channels == 1).then_some((usize::from(image.height), usize::from(image.width)))
    }
}

impl LayerOps for Recurrent {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        Self::sequence(input)?;
        Some(TensorShape::Flat(u32::try_from(self.hidden).ok()?))
    }

    fn macs(&self, input: TensorShape) -> u64 {
        let Some((steps, features)) = Self::sequence(input) else {
            return 0;
        };
        (steps * self.cell.gates() * self.hidden * (features + self.hidden)) as u64
    }

    fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        let features = Self::sequence(input).map_or(0, |(_, f)| f);
        let rows = self.cell.gates() * self.hidden;
        let bound = 1.0 / (self.hidden.max(1) as f32).sqrt();
        let spec = |name: &str, shape: Vec<usize>, init| ParamSpec {
            name: name.to_string(),
            shape,
            init,
            trainable: true,
        };
        let (bias_ih, bias_hh) = match self.cell {
            Cell::Elman => (Init::Uniform(bound), Init::Uniform(bound)),
            Cell::Lstm => {
                let forget = |value| Init::UniformPatched {
                    bound,
                    start: self.hidden,
                    len: self.hidden,
                    value,
                };
                (forget(1.0), forget(0.0))
            }
        };
        vec![
            spec("weight_ih", vec![rows, features], Init::Uniform(bound)),
            spec("weight_hh", vec![rows, self.hidden], Init::Uniform(bound)),
            spec("bias_ih", vec![rows], bias_ih),
            spec("bias_hh", vec![rows], bias_hh),
        ]
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        _cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let (batch, _, steps, features) = x.dims4()?;
        let w_ih = params.get("weight_ih")?;
        let w_hh = params.get("weight_hh")?.t()?;
        let bias = params
            .get("bias_ih")?
            .as_tensor()
            .add(params.get("bias_hh")?)?;
        // [batch * steps, features] x [features, gates * hidden], then back to the sequence.
        let projected = x
            .reshape((batch * steps, features))?
            .matmul(&w_ih.t()?)?
            .broadcast_add(&bias)?
            .reshape((batch, steps, ()))?;
        let mut h = Tensor::zeros((batch, self.hidden), x.dtype(), x.device())?;
        let mut c = h.clone();
        for t in 0..steps {
            let z = projected
                .narrow(1, t, 1)?
                .squeeze(1)?
                .add(&h.matmul(&w_hh)?)?;
            match self.cell {
                Cell::Elman => h = z.tanh()?,
                Cell::Lstm => {
                    let gates = z.chunk(4, D::Minus1)?;
                    let [i, f, g, o] = gates.as_slice() else {
                        unreachable!("chunk(4) of 4 * hidden columns gives 4 tensors")
                    };
                    let sigmoid = candle_nn::ops::sigmoid;
                    c = sigmoid(f)?.mul(&c)?.add(&sigmoid(i)?.mul(&g.tanh()?)?)?;
                    h = sigmoid(o)?.mul(&c.tanh()?)?;
                }
            }
        }
        Ok(h)
    }

    fn deployable(&self) -> bool {
        false
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let _ = lw;
        Err(LowerError::Unsupported {
            path: params.path().to_string(),
            why: "the int8 format has no recurrent op",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::layers::Layer;
    use crate::net::{Mode, Net};
    use candle_core::Device;
    use infer_core::spec::Shape;
    use std::collections::HashMap;

    #[derive(serde::Deserialize)]
    struct Fixture {
        batch: usize,
        steps: usize,
        features: usize,
        hidden: usize,
        cases: Vec<Case>,
    }

    #[derive(serde::Deserialize)]
    struct Case {
        cell: String,
        params: HashMap<String, Tensor1>,
        input: Vec<f32>,
        last_hidden: Vec<f32>,
        grads: HashMap<String, Vec<f32>>,
    }

    #[derive(serde::Deserialize)]
    struct Tensor1 {
        shape: Vec<usize>,
        values: Vec<f32>,
    }

    fn close(ours: &[f32], torch: &[f32], what: &str) {
        assert_eq!(ours.len(), torch.len(), "{what}");
        for (i, (a, b)) in ours.iter().zip(torch).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{what}[{i}]: ours {a}, PyTorch {b}"
            );
        }
    }

    #[test]
    fn cells_match_torch_rnn_and_lstm() {
        // Expected values: `bench/.venv/bin/python bench/recurrent_fixture.py` (PyTorch 2.15,
        // nn.RNN and nn.LSTM, batch_first).
        let fixture: Fixture =
            serde_json::from_str(include_str!("../../tests/fixtures/recurrent.json")).unwrap();
        let dev = Device::Cpu;
        for case in &fixture.cases {
            let cell = match case.cell.as_str() {
                "elman" => Cell::Elman,
                "lstm" => Cell::Lstm,
                other => panic!("unknown cell {other}"),
            };
            let input = TensorShape::Image(Shape {
                channels: 1,
                height: u16::try_from(fixture.steps).unwrap(),
                width: u16::try_from(fixture.features).unwrap(),
            });
            let layer = Recurrent {
                cell,
                hidden: fixture.hidden,
            };
            let arch = Arch::custom("fixture", input, vec![Layer::Recurrent(layer)]);
            let net = Net::new(&arch, 1, &dev).unwrap();
            let tensors: HashMap<String, Tensor> = case
                .params
                .iter()
                .map(|(name, t)| {
                    let v = Tensor::from_vec(t.values.clone(), t.shape.as_slice(), &dev).unwrap();
                    (format!("0.{name}"), v)
                })
                .collect();
            net.set_tensors(&tensors, "fixture").unwrap();
            let x = Tensor::from_vec(
                case.input.clone(),
                (fixture.batch, 1, fixture.steps, fixture.features),
                &dev,
            )
            .unwrap();
            let h = net.forward(&x, Mode::Eval).unwrap();
            let ours: Vec<f32> = h.flatten_all().unwrap().to_vec1().unwrap();
            close(
                &ours,
                &case.last_hidden,
                &format!("{} last hidden", case.cell),
            );
            let weights: Vec<f32> = (0..fixture.batch)
                .flat_map(|b| (0..fixture.hidden).map(move |j| (j + 1) as f32 - b as f32))
                .collect();
            let weights = Tensor::from_vec(weights, h.shape(), &dev).unwrap();
            let grads = h
                .mul(&weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let store = net.store.at("0");
            for (name, torch) in &case.grads {
                let var = store.get(name).unwrap();
                let g = grads
                    .get(var.as_tensor())
                    .expect("a gradient for every tensor");
                let ours: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
                close(&ours, torch, &format!("{} d{name}", case.cell));
            }
        }
    }

    #[test]
    fn lstm_forget_bias_starts_at_one() {
        let lstm = Recurrent {
            cell: Cell::Lstm,
            hidden: 3,
        };
        let input = TensorShape::Image(Shape {
            channels: 1,
            height: 2,
            width: 2,
        });
        let arch = Arch::custom("forget", input, vec![Layer::Recurrent(lstm)]);
        let net = Net::new(&arch, 7, &Device::Cpu).unwrap();
        let t = net.tensors_as_vecs().unwrap();
        let (ih, hh) = (&t["0.bias_ih"], &t["0.bias_hh"]);
        assert_eq!(&ih[3..6], &[1.0; 3]);
        assert_eq!(&hh[3..6], &[0.0; 3]);
        let bound = 1.0 / 3f32.sqrt();
        assert!(
            ih[..3]
                .iter()
                .chain(&ih[6..])
                .all(|v| v.abs() <= bound && *v != 1.0)
        );
    }

    const ROWS: TensorShape = TensorShape::Image(Shape {
        channels: 1,
        height: 28,
        width: 28,
    });

    #[test]
    fn shapes_params_and_macs() {
        let lstm = Recurrent {
            cell: Cell::Lstm,
            hidden: 128,
        };
        assert_eq!(lstm.output(ROWS), Some(TensorShape::Flat(128)));
        let params = lstm.params(ROWS);
        let shapes: Vec<_> = params.iter().map(|p| p.shape.clone()).collect();
        assert_eq!(
            shapes,
            vec![vec![512, 28], vec![512, 128], vec![512], vec![512]]
        );
        // PyTorch's count for nn.LSTM(28, 128): 4 * 128 * (28 + 128 + 2) = 80,896.
        let count: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
        assert_eq!(count, 80_896);
        assert_eq!(lstm.macs(ROWS), 28 * 4 * 128 * (28 + 128));
        let rnn = Recurrent {
            cell: Cell::Elman,
            hidden: 256,
        };
        assert_eq!(rnn.output(TensorShape::Flat(784)), None);
        assert_eq!(rnn.params(ROWS)[0].shape, vec![256, 28]);
    }
}
