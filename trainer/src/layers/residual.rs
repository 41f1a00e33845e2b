//! A residual block: `body(x) + shortcut(x)`, the shortcut the identity when it has no layers
//! (ResNet's basic block: two 3x3 convolutions with BatchNorm in the body; a 1x1 projection
//! with BatchNorm in the shortcut where the shape changes). In int8 the two branches lower in
//! turn from the block's input and meet in infer-core's Add op; a ReLU right after the block
//! fuses into the Add.

use candle_core::Tensor;
use infer_core::spec::{TensorShape, add_output};
use serde::{Deserialize, Serialize};

use super::{Layer, LayerOps, ParamSpec};
use crate::arch::shapes_of;
use crate::lower::{LowerError, Lowerer, lower_layers};
use crate::net::{Forward, NetError, Params, join, run_layers};

/// `body(x) + shortcut(x)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Residual {
    /// The main branch (`<path>.body.<i>`).
    pub body: Vec<Layer>,
    /// The shortcut branch (`<path>.shortcut.<i>`); empty for the identity.
    pub shortcut: Vec<Layer>,
}

/// The output of `layers` from `input`, or `input` itself for no layers.
fn branch_output(layers: &[Layer], input: TensorShape) -> Option<TensorShape> {
    Some(
        shapes_of(layers, input, "")
            .ok()?
            .last()
            .copied()
            .unwrap_or(input),
    )
}

/// The tensors of `layers` from `input`, named under `prefix`.
fn branch_params(layers: &[Layer], input: TensorShape, prefix: &str) -> Vec<ParamSpec> {
    let mut cur = input;
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        out.extend(layer.params(cur).into_iter().map(|mut p| {
            p.name = format!("{prefix}.{i}.{}", p.name);
            p
        }));
        match layer.output(cur) {
            Some(next) => cur = next,
            None => break,
        }
    }
    out
}

impl Residual {
    /// The outputs of the body and of the shortcut (`x` itself for the identity), before they
    /// are added: [`LayerOps::forward`] adds them, and `run_layers` adds them and applies a
    /// following ReLU in one op ([`crate::ops::add_relu`]).
    pub(crate) fn branches(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        cx: &mut Forward<'_, '_>,
    ) -> Result<(Tensor, Tensor), NetError> {
        let store = params.store();
        let body = run_layers(store, &self.body, &join(params.path(), "body"), x, cx)?;
        let shortcut = if self.shortcut.is_empty() {
            x.clone()
        } else {
            run_layers(
                store,
                &self.shortcut,
                &join(params.path(), "shortcut"),
                x,
                cx,
            )?
        };
        Ok((body, shortcut))
    }
}

impl LayerOps for Residual {
    fn output(&self, input: TensorShape) -> Option<TensorShape> {
        add_output(
            branch_output(&self.body, input)?,
            branch_output(&self.shortcut, input)?,
        )
    }

    fn macs(&self, input: TensorShape) -> u64 {
        [&self.body, &self.shortcut]
            .into_iter()
            .map(|branch| {
                let mut x = input;
                branch
                    .iter()
                    .map(|l| {
                        let m = l.macs(x);
                        x = l.output(x).unwrap_or(x);
                        m
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    fn params(&self, input: TensorShape) -> Vec<ParamSpec> {
        let mut out = branch_params(&self.body, input, "body");
        out.extend(branch_params(&self.shortcut, input, "shortcut"));
        out
    }

    fn forward(
        &self,
        x: &Tensor,
        params: &Params<'_>,
        cx: &mut Forward<'_, '_>,
    ) -> Result<Tensor, NetError> {
        let (body, shortcut) = self.branches(x, params, cx)?;
        Ok((body + shortcut)?)
    }

    fn deployable(&self) -> bool {
        self.body
            .iter()
            .chain(&self.shortcut)
            .all(Layer::deployable)
    }

    fn lower(&self, lw: &mut Lowerer<'_>, params: &Params<'_>) -> Result<(), LowerError> {
        let store = params.store();
        let input = lw.current()?;
        lower_layers(lw, store, &self.body, &join(params.path(), "body"))?;
        let body = lw.current()?;
        lw.set_current(input)?;
        lower_layers(lw, store, &self.shortcut, &join(params.path(), "shortcut"))?;
        let shortcut = lw.current()?;
        lw.open_add(params.path(), &body, &shortcut)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use infer_core::spec::Shape;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::layers::{BatchNorm, Conv2d, Relu};
    use crate::net::{Mode, Store, init_layers};

    fn block(shortcut: Vec<Layer>) -> Layer {
        Layer::Residual(Residual {
            body: vec![
                Layer::Conv2d(Conv2d {
                    out_ch: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                }),
                Layer::BatchNorm(BatchNorm),
                Layer::Relu(Relu),
                Layer::Conv2d(Conv2d {
                    out_ch: 4,
                    kernel: 3,
                    stride: 1,
                    padding: 1,
                }),
            ],
            shortcut,
        })
    }

    #[test]
    fn identity_shortcut_adds_the_input_and_names_nested_tensors() {
        let input = TensorShape::Image(Shape {
            channels: 4,
            height: 5,
            width: 5,
        });
        let layers = [block(Vec::new())];
        let mut store = Store::default();
        init_layers(
            &mut store,
            &layers,
            input,
            "",
            &mut ChaCha8Rng::seed_from_u64(1),
            &Device::Cpu,
        )
        .unwrap();
        assert!(store.at("0.body.0").get("weight").is_ok());
        assert!(store.at("0.body.1").get("running_var").is_ok());
        assert!(store.at("0.body.3").get("bias").is_ok());
        let x = crate::ops::test_util::random(&[2, 4, 5, 5], 3);
        let y = run_layers(&store, &layers, "", &x, &mut Forward::new(Mode::Eval)).unwrap();
        let Layer::Residual(residual) = &layers[0] else {
            panic!("the block is a residual");
        };
        let body = run_layers(
            &store,
            &residual.body,
            "0.body",
            &x,
            &mut Forward::new(Mode::Eval),
        )
        .unwrap();
        crate::ops::test_util::assert_close(&y, &(body + &x).unwrap(), 1e-6, "y = body(x) + x");
    }

    #[test]
    fn branches_of_different_shapes_are_rejected() {
        let input = TensorShape::Image(Shape {
            channels: 2,
            height: 5,
            width: 5,
        });
        // Body makes 4 channels, the identity keeps 2.
        assert_eq!(block(Vec::new()).output(input), None);
        let projection = vec![Layer::Conv2d(Conv2d {
            out_ch: 4,
            kernel: 1,
            stride: 1,
            padding: 0,
        })];
        let out = TensorShape::Image(Shape {
            channels: 4,
            height: 5,
            width: 5,
        });
        assert_eq!(block(projection).output(input), Some(out));
    }
}
