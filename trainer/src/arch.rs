//! Networks described as data: a list of [`Layer`]s plus the training settings of the study.
//!
//! The same description builds the candle network ([`crate::net`]), is lowered to
//! infer-core's op graph at export ([`crate::lower`]), and, printed by `trainer describe`,
//! builds the PyTorch twins in `bench/torch_models.py`.

use infer_core::spec::{Shape, TensorShape};
use serde::Serialize;

use crate::layers::{
    AvgPool2d, BatchNorm, Conv2d, Dense, Dropout, Flatten, GlobalAvgPool, Layer, LeakyRelu,
    MaxPool2d, Relu, Residual,
};

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
    #[error("unknown model id `{0}` (known: {known})", known = ids().join(", "))]
    UnknownId(String),
}

/// Training settings from the study.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainSettings {
    /// Epochs over the training set.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
}

/// A named network: layers, input shape, settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Arch {
    /// Reference-study id (`s5-cnn`, ...).
    pub id: &'static str,
    /// What the study built and how we read it.
    pub description: &'static str,
    /// Input shape.
    pub input: TensorShape,
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// Default training settings.
    pub settings: TrainSettings,
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

const MNIST_INPUT: TensorShape = TensorShape::Image(Shape {
    channels: 1,
    height: 28,
    width: 28,
});

fn conv(out_ch: usize, kernel: usize, padding: usize) -> Layer {
    Layer::Conv2d(Conv2d {
        out_ch,
        kernel,
        stride: 1,
        padding,
    })
}

fn dense(out_dim: usize) -> Layer {
    Layer::Dense(Dense { out_dim })
}

const RELU: Layer = Layer::Relu(Relu);
const FLATTEN: Layer = Layer::Flatten(Flatten);

fn dropout(p: f32) -> Layer {
    Layer::Dropout(Dropout { p })
}

const MAX2: Layer = Layer::MaxPool2d(MaxPool2d {
    kernel: 2,
    stride: 2,
});
const AVG2: Layer = Layer::AvgPool2d(AvgPool2d {
    kernel: 2,
    stride: 2,
});

/// S5 MLP: 784-256-128-10, ReLU, dropout 0.2 after each hidden layer.
///
/// Our reading: dropout after both hidden ReLUs (the study's code applies it there); Adam 1e-3,
/// batch 64, trained on all 60k training images (the study held out 20% for validation).
pub fn s5_ann() -> Arch {
    Arch {
        id: "s5-ann",
        description: "MLP 784-256-128-10, ReLU, dropout 0.2 (S5)",
        input: MNIST_INPUT,
        layers: vec![
            FLATTEN,
            dense(256),
            RELU,
            dropout(0.2),
            dense(128),
            RELU,
            dropout(0.2),
            dense(10),
        ],
        settings: TrainSettings {
            epochs: 20,
            batch_size: 64,
            learning_rate: 1e-3,
        },
    }
}

/// S5 CNN: conv3x3 32 + ReLU + MaxPool2, conv3x3 64 + ReLU + MaxPool2, FC 128 + dropout 0.25,
/// FC 10.
///
/// Our reading: padding 1 on both convs (28 -> 14 -> 7, FC input 64*7*7 = 3136), dropout after
/// the FC-128 ReLU.
pub fn s5_cnn() -> Arch {
    Arch {
        id: "s5-cnn",
        description: "CNN conv32-conv64 (3x3, pad 1, MaxPool2 each), FC 128, dropout 0.25 (S5)",
        input: MNIST_INPUT,
        layers: vec![
            conv(32, 3, 1),
            RELU,
            MAX2,
            conv(64, 3, 1),
            RELU,
            MAX2,
            FLATTEN,
            dense(128),
            RELU,
            dropout(0.25),
            dense(10),
        ],
        settings: TrainSettings {
            epochs: 12,
            batch_size: 64,
            learning_rate: 1e-3,
        },
    }
}

/// S3 LeNet-5 baseline: conv5x5 1->6, ReLU, AvgPool2, conv5x5 6->16, ReLU, AvgPool2,
/// FC 256-120-84-10.
///
/// Our reading: no padding (28 -> 24 -> 12 -> 8 -> 4, flatten 16*4*4 = 256, matching the study's
/// FC input of 256), ReLU after FC 120 and FC 84; Adam 1e-3, batch 64 (the study's NumPy code
/// used its own settings; we use the pipeline's).
pub fn s3_lenet_base() -> Arch {
    Arch {
        id: "s3-lenet-base",
        description: "LeNet-5: conv5x5 6, AvgPool2, conv5x5 16, AvgPool2, FC 120-84-10, ReLU (S3)",
        input: MNIST_INPUT,
        layers: vec![
            conv(6, 5, 0),
            RELU,
            AVG2,
            conv(16, 5, 0),
            RELU,
            AVG2,
            FLATTEN,
            dense(120),
            RELU,
            dense(84),
            RELU,
            dense(10),
        ],
        settings: TrainSettings {
            epochs: 15,
            batch_size: 64,
            learning_rate: 1e-3,
        },
    }
}

/// A small residual network, not from the studies: the smallest model that runs every part of
/// the graph format (a stride-2 conv stem with BatchNorm and LeakyReLU, one basic residual
/// block with an identity shortcut, global average pooling, dense), about 5,000 parameters.
pub fn tiny_resnet() -> Arch {
    let conv3 = |stride| {
        Layer::Conv2d(Conv2d {
            out_ch: 16,
            kernel: 3,
            stride,
            padding: 1,
        })
    };
    Arch {
        id: "tiny-resnet",
        description: "Demo: conv3x3/2 16-BN-LeakyReLU(0.1), residual block (conv3x3-BN-ReLU-conv3x3-BN, identity) + ReLU, global average pooling, FC 10 (not from the studies)",
        input: MNIST_INPUT,
        layers: vec![
            conv3(2),
            Layer::BatchNorm(BatchNorm),
            Layer::LeakyRelu(LeakyRelu { alpha: 0.1 }),
            Layer::Residual(Residual {
                body: vec![
                    conv3(1),
                    Layer::BatchNorm(BatchNorm),
                    RELU,
                    conv3(1),
                    Layer::BatchNorm(BatchNorm),
                ],
                shortcut: Vec::new(),
            }),
            RELU,
            Layer::GlobalAvgPool(GlobalAvgPool),
            dense(10),
        ],
        settings: TrainSettings {
            epochs: 5,
            batch_size: 64,
            learning_rate: 1e-3,
        },
    }
}

/// Every architecture the trainer knows.
pub fn all() -> Vec<Arch> {
    deployable()
}

/// The deployable models, in the order the main job trains them.
pub fn deployable() -> Vec<Arch> {
    vec![s5_ann(), s5_cnn(), s3_lenet_base(), tiny_resnet()]
}

/// Ids of every architecture the trainer knows.
pub fn ids() -> Vec<&'static str> {
    all().iter().map(|a| a.id).collect()
}

/// The architecture with this id.
pub fn by_id(id: &str) -> Result<Arch, ArchError> {
    all()
        .into_iter()
        .find(|a| a.id == id)
        .ok_or_else(|| ArchError::UnknownId(id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployable_shapes_end_in_ten_classes() {
        for arch in deployable() {
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
    fn parameter_counts_match_hand_counts() {
        // 784*256+256 + 256*128+128 + 128*10+10
        assert_eq!(s5_ann().param_count().unwrap(), 235_146);
        // (32*9+32) + (64*32*9+64) + (3136*128+128) + (128*10+10)
        assert_eq!(s5_cnn().param_count().unwrap(), 421_642);
        // (6*25+6) + (16*6*25+16) + (256*120+120) + (120*84+84) + (84*10+10)
        assert_eq!(s3_lenet_base().param_count().unwrap(), 44_426);
        // (16*9+16) + 2*16 (BN) + 2 * ((16*16*9+16) + 2*16) + (16*10+10)
        assert_eq!(tiny_resnet().param_count().unwrap(), 5_066);
    }

    #[test]
    fn dense_on_image_is_rejected() {
        let mut a = s5_ann();
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
}
