//! Networks described as data: a list of [`Layer`]s plus the training settings of the study.
//!
//! The same description builds the candle network ([`crate::net`]) and is lowered to
//! infer-core's op list at export ([`crate::quantize`]): adding a layer kind breaks the
//! exhaustive `match`es on both sides instead of failing at run time.

use serde::Serialize;

/// One layer of a network, including training-only layers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Layer {
    /// 2-D convolution with bias, square kernel.
    Conv2d {
        /// Output channels.
        out_ch: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
    },
    /// Fully connected layer with bias over a flat input.
    Dense {
        /// Output features.
        out_dim: usize,
    },
    /// Rectified linear unit.
    Relu,
    /// Max pooling, square window.
    MaxPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling, square window.
    AvgPool2d {
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Flatten `[c, h, w]` to `[c*h*w]`, channel-major.
    Flatten,
    /// Inverted dropout with drop probability `p` (training only).
    Dropout {
        /// Probability of zeroing an element.
        p: f32,
    },
}

/// Shape of one activation (batch dimension excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dims {
    /// `[channels, height, width]`.
    Image {
        /// Channels.
        c: usize,
        /// Rows.
        h: usize,
        /// Columns.
        w: usize,
    },
    /// `[features]`.
    Flat(usize),
}

impl Dims {
    /// Number of elements.
    pub fn len(self) -> usize {
        match self {
            Dims::Image { c, h, w } => c * h * w,
            Dims::Flat(n) => n,
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// Why an architecture description is not a valid network.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    /// A layer got an input it cannot take.
    #[error("layer {index} ({layer:?}) cannot take input {input:?}")]
    BadInput {
        /// Layer index.
        index: usize,
        /// The layer.
        layer: Layer,
        /// The input it got.
        input: Dims,
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
    pub input: Dims,
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// Default training settings.
    pub settings: TrainSettings,
}

impl Arch {
    /// The output shape of every layer, checking each layer accepts its input.
    pub fn shapes(&self) -> Result<Vec<Dims>, ArchError> {
        let mut shapes = Vec::with_capacity(self.layers.len());
        let mut cur = self.input;
        for (index, &layer) in self.layers.iter().enumerate() {
            let bad = || ArchError::BadInput {
                index,
                layer,
                input: cur,
            };
            cur = match (layer, cur) {
                (
                    Layer::Conv2d {
                        out_ch,
                        kernel,
                        stride,
                        padding,
                    },
                    Dims::Image { h, w, .. },
                ) => {
                    if stride == 0
                        || kernel == 0
                        || kernel > h + 2 * padding
                        || kernel > w + 2 * padding
                    {
                        return Err(bad());
                    }
                    Dims::Image {
                        c: out_ch,
                        h: (h + 2 * padding - kernel) / stride + 1,
                        w: (w + 2 * padding - kernel) / stride + 1,
                    }
                }
                (Layer::Dense { out_dim }, Dims::Flat(_)) => Dims::Flat(out_dim),
                (
                    Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride },
                    Dims::Image { c, h, w },
                ) => {
                    if stride == 0 || kernel == 0 || kernel > h || kernel > w {
                        return Err(bad());
                    }
                    Dims::Image {
                        c,
                        h: (h - kernel) / stride + 1,
                        w: (w - kernel) / stride + 1,
                    }
                }
                (Layer::Flatten, d) => Dims::Flat(d.len()),
                (Layer::Relu | Layer::Dropout { .. }, d) => d,
                (Layer::Conv2d { .. } | Layer::MaxPool2d { .. } | Layer::AvgPool2d { .. }, _)
                | (Layer::Dense { .. }, Dims::Image { .. }) => return Err(bad()),
            };
            shapes.push(cur);
        }
        Ok(shapes)
    }

    /// Number of trainable parameters.
    pub fn param_count(&self) -> Result<usize, ArchError> {
        let mut input = self.input;
        let mut total = 0;
        for (layer, out) in self.layers.iter().zip(self.shapes()?) {
            total += match (*layer, input) {
                (Layer::Conv2d { out_ch, kernel, .. }, Dims::Image { c, .. }) => {
                    out_ch * c * kernel * kernel + out_ch
                }
                (Layer::Dense { out_dim }, d) => out_dim * d.len() + out_dim,
                _ => 0,
            };
            input = out;
        }
        Ok(total)
    }
}

const MNIST_INPUT: Dims = Dims::Image { c: 1, h: 28, w: 28 };

fn conv(out_ch: usize, kernel: usize, padding: usize) -> Layer {
    Layer::Conv2d {
        out_ch,
        kernel,
        stride: 1,
        padding,
    }
}

fn dense(out_dim: usize) -> Layer {
    Layer::Dense { out_dim }
}

const MAX2: Layer = Layer::MaxPool2d {
    kernel: 2,
    stride: 2,
};
const AVG2: Layer = Layer::AvgPool2d {
    kernel: 2,
    stride: 2,
};

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
            Layer::Flatten,
            dense(256),
            Layer::Relu,
            Layer::Dropout { p: 0.2 },
            dense(128),
            Layer::Relu,
            Layer::Dropout { p: 0.2 },
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
            Layer::Relu,
            MAX2,
            conv(64, 3, 1),
            Layer::Relu,
            MAX2,
            Layer::Flatten,
            dense(128),
            Layer::Relu,
            Layer::Dropout { p: 0.25 },
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
            Layer::Relu,
            AVG2,
            conv(16, 5, 0),
            Layer::Relu,
            AVG2,
            Layer::Flatten,
            dense(120),
            Layer::Relu,
            dense(84),
            Layer::Relu,
            dense(10),
        ],
        settings: TrainSettings {
            epochs: 15,
            batch_size: 64,
            learning_rate: 1e-3,
        },
    }
}

/// The deployable models, in the order the main job trains them.
pub fn deployable() -> Vec<Arch> {
    vec![s5_ann(), s5_cnn(), s3_lenet_base()]
}

/// Ids of every architecture the trainer knows.
pub fn ids() -> Vec<&'static str> {
    deployable().iter().map(|a| a.id).collect()
}

/// The architecture with this id.
pub fn by_id(id: &str) -> Result<Arch, ArchError> {
    deployable()
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
            assert_eq!(*shapes.last().unwrap(), Dims::Flat(10), "{}", arch.id);
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
    }

    #[test]
    fn dense_on_image_is_rejected() {
        let mut a = s5_ann();
        a.layers.remove(0);
        assert!(matches!(
            a.shapes(),
            Err(ArchError::BadInput { index: 0, .. })
        ));
    }

    #[test]
    fn unknown_id_lists_known_ones() {
        let msg = by_id("nope").unwrap_err().to_string();
        assert!(msg.contains("s5-cnn"), "{msg}");
    }
}
