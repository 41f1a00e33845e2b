//! Networks described as data: a list of [`Layer`]s, the training recipe of the study that
//! published it, and what the study reported. The models themselves are defined in
//! [`crate::zoo`], one file per study.
//!
//! The same description builds the candle network ([`crate::net`]), is lowered to
//! infer-core's op graph at export ([`crate::lower`]), and, printed by `trainer describe`,
//! builds the PyTorch twins in `bench/torch_models.py`.

use fashion_mnist::augment::Augmentation;
use fashion_mnist::splits::SplitPlan;
use infer_core::spec::{Shape, TensorShape};
use model_report::optimizer::{OptimizerConfig, StepLr};
use serde::Serialize;

use crate::layers::{
    AvgPool2d, Conv2d, Dense, Dropout, Flatten, Layer, LeakyRelu, MaxPool2d, Relu,
};
use crate::zoo::Study;

/// Why an architecture description is not a valid network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    /// A layer got an input it cannot take.
    #[error("layer {path} ({layer:?}) cannot take input {input:?}")]
    BadInput {
        /// The layer's path.
        path: String,
        /// The layer.
        layer: Layer,
        /// The input it got.
        input: TensorShape,
    },
    /// No architecture of that id exists.
    #[error("unknown model id `{0}` (known: {known}; `trainer list` describes them)", known = crate::zoo::ids().join(", "))]
    UnknownId(String),
}

/// How the study trained a model: our defaults for `trainer train -m <id>`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recipe {
    /// Epochs over the training images.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Optimizer and hyper-parameters (learning rate included).
    pub optimizer: OptimizerConfig,
    /// Step learning-rate schedule, if any.
    pub schedule: Option<StepLr>,
    /// How the data is divided into training, validation and test images.
    pub split: SplitPlan,
    /// Augmentation of the training images, if any.
    pub augmentation: Option<Augmentation>,
    /// Largest global L2 norm of the gradients (clipped before each step), if any.
    pub grad_clip: Option<f64>,
}

/// What the study reported for a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Published {
    /// Test accuracy in percent, where the study gave a number.
    pub test_accuracy: Option<f64>,
    /// Whether that number was only approximate ("~90%").
    pub approximate: bool,
    /// What the study said, in our words.
    pub text: &'static str,
}

/// A named network: layers, input shape, recipe, and the study's facts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arch {
    /// Reference-study id (`s5-cnn`, ...).
    pub id: &'static str,
    /// The study it comes from.
    pub study: Study,
    /// What the study built.
    pub description: &'static str,
    /// What the study left vague and how we read it.
    pub reading: &'static str,
    /// Input shape of the float network (the int8 model always takes 1x28x28).
    pub input: TensorShape,
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// Default training recipe.
    pub recipe: Recipe,
    /// What the study reported.
    pub published: Published,
}

impl Arch {
    /// The output shape of every top-level layer, checking each layer accepts its input.
    pub fn shapes(&self) -> Result<Vec<TensorShape>, ArchError> {
        shapes_of(&self.layers, self.input, "")
    }

    /// Number of trainable parameters (from the layers' own parameter lists).
    pub fn param_count(&self) -> Result<usize, ArchError> {
        let inputs = std::iter::once(self.input).chain(self.shapes()?);
        Ok(self
            .layers
            .iter()
            .zip(inputs)
            .map(|(l, x)| l.param_count(x))
            .sum())
    }

    /// A network outside the zoo (tests, experiments): the demo study, Adam lr 1e-3, batch
    /// 64, one epoch on all training images, nothing published.
    pub fn custom(id: &'static str, input: TensorShape, layers: Vec<Layer>) -> Self {
        Self {
            id,
            study: Study::Demo,
            description: "a custom network",
            reading: "",
            input,
            layers,
            recipe: build::recipe(1, 64, build::adam(1e-3), SplitPlan::Full),
            published: build::unreported("not from a study"),
        }
    }

    /// Whether every layer has an int8 lowering (not so for recurrent models).
    pub fn deployable(&self) -> bool {
        self.layers.iter().all(Layer::deployable)
    }

    /// Multiply-accumulates of one float inference (convolutions and dense layers).
    pub fn macs(&self) -> Result<u64, ArchError> {
        let inputs = std::iter::once(self.input).chain(self.shapes()?);
        Ok(self.layers.iter().zip(inputs).map(|(l, x)| l.macs(x)).sum())
    }
}

/// The output shape of each of `layers` (named under `prefix`) from `input`.
pub fn shapes_of(
    layers: &[Layer],
    input: TensorShape,
    prefix: &str,
) -> Result<Vec<TensorShape>, ArchError> {
    let mut cur = input;
    let mut out = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        cur = layer.output(cur).ok_or_else(|| ArchError::BadInput {
            path: crate::net::join(prefix, &i.to_string()),
            layer: layer.clone(),
            input: cur,
        })?;
        out.push(cur);
    }
    Ok(out)
}

/// Every architecture the trainer knows, study by study (see [`crate::zoo`]).
pub fn all() -> Vec<Arch> {
    crate::zoo::all()
}

/// The models the main job trains, exports and the firmware runs on the board.
pub fn deployable() -> Vec<Arch> {
    crate::zoo::deployable()
}

/// The architecture with this id.
pub fn by_id(id: &str) -> Result<Arch, ArchError> {
    crate::zoo::by_id(id)
}

/// Builders the study files describe their networks with.
pub mod build {
    use super::*;

    /// The 1x28x28 grey image.
    pub const MNIST_INPUT: TensorShape = TensorShape::Image(Shape {
        channels: 1,
        height: 28,
        width: 28,
    });

    /// A square convolution with stride 1 and `padding` zeros on each side.
    pub fn conv(out_ch: usize, kernel: usize, padding: usize) -> Layer {
        Layer::Conv2d(Conv2d {
            out_ch,
            kernel,
            stride: 1,
            padding,
        })
    }

    /// A stride-1 convolution with Keras' `padding="same"` for an odd kernel
    /// (`(kernel - 1) / 2` zeros on each side, so the output keeps the input's size).
    pub fn conv_same(out_ch: usize, kernel: usize) -> Layer {
        debug_assert!(kernel % 2 == 1, "same padding here is for odd kernels");
        conv(out_ch, kernel, (kernel - 1) / 2)
    }

    /// A stride-1 convolution without padding (Keras' `padding="valid"`).
    pub fn conv_valid(out_ch: usize, kernel: usize) -> Layer {
        conv(out_ch, kernel, 0)
    }

    /// A fully connected layer.
    pub fn dense(out_dim: usize) -> Layer {
        Layer::Dense(Dense { out_dim })
    }

    /// ReLU.
    pub const RELU: Layer = Layer::Relu(Relu);
    /// Flatten, channel-major.
    pub const FLATTEN: Layer = Layer::Flatten(Flatten);
    /// BatchNorm over channels (or features).
    pub const BN: Layer = Layer::BatchNorm(crate::layers::BatchNorm);

    /// LeakyReLU with slope `alpha` below zero.
    pub fn leaky(alpha: f32) -> Layer {
        Layer::LeakyRelu(LeakyRelu { alpha })
    }

    /// Inverted dropout.
    pub fn dropout(p: f32) -> Layer {
        Layer::Dropout(Dropout { p })
    }

    /// 2x2 max pooling with stride 2 (floor on odd sides).
    pub const MAX2: Layer = Layer::MaxPool2d(MaxPool2d {
        kernel: 2,
        stride: 2,
    });
    /// 2x2 average pooling with stride 2.
    pub const AVG2: Layer = Layer::AvgPool2d(AvgPool2d {
        kernel: 2,
        stride: 2,
    });

    /// `Flatten` then dense layers of `widths`, each but the last followed by ReLU.
    pub fn mlp(widths: &[usize]) -> Vec<Layer> {
        let mut layers = vec![FLATTEN];
        for (i, &w) in widths.iter().enumerate() {
            layers.push(dense(w));
            if i + 1 < widths.len() {
                layers.push(RELU);
            }
        }
        layers
    }

    /// PyTorch's Adam with learning rate `lr`.
    pub fn adam(lr: f64) -> OptimizerConfig {
        OptimizerConfig::adam().with_lr(lr)
    }

    /// Plain SGD with learning rate `lr`.
    pub fn sgd(lr: f64) -> OptimizerConfig {
        OptimizerConfig::sgd(lr)
    }

    /// A recipe without schedule or augmentation.
    pub fn recipe(
        epochs: usize,
        batch_size: usize,
        optimizer: OptimizerConfig,
        split: SplitPlan,
    ) -> Recipe {
        Recipe {
            epochs,
            batch_size,
            optimizer,
            schedule: None,
            split,
            augmentation: None,
            grad_clip: None,
        }
    }

    /// A published test accuracy in percent.
    pub fn reported(test_accuracy: f64, text: &'static str) -> Published {
        Published {
            test_accuracy: Some(test_accuracy),
            approximate: false,
            text,
        }
    }

    /// An approximate published test accuracy ("~90%").
    pub fn about(test_accuracy: f64, text: &'static str) -> Published {
        Published {
            test_accuracy: Some(test_accuracy),
            approximate: true,
            text,
        }
    }

    /// No published test accuracy.
    pub fn unreported(text: &'static str) -> Published {
        Published {
            test_accuracy: None,
            approximate: false,
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_ends_in_ten_classes() {
        for arch in all() {
            let shapes = arch.shapes().unwrap();
            assert_eq!(
                *shapes.last().unwrap(),
                TensorShape::Flat(10),
                "{}",
                arch.id
            );
        }
    }

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = all().iter().map(|a| a.id).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }

    #[test]
    fn dense_on_image_is_rejected() {
        let mut a = by_id("s5-ann").unwrap();
        a.layers.remove(0);
        assert!(matches!(
            a.shapes(),
            Err(ArchError::BadInput { ref path, .. }) if path == "0"
        ));
    }

    #[test]
    fn unknown_id_lists_known_ones() {
        let msg = by_id("nope").unwrap_err().to_string();
        assert!(msg.contains("s5-cnn"), "{msg}");
    }

    #[test]
    fn macs_match_hand_counts() {
        // 784*256 + 256*128 + 128*10
        assert_eq!(by_id("s5-ann").unwrap().macs().unwrap(), 234_752);
        // 28*28*32*9 + 14*14*64*32*9 + 3136*128 + 128*10
        assert_eq!(by_id("s5-cnn").unwrap().macs().unwrap(), 4_241_152);
    }
}
