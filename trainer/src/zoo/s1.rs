//! S1: "Comparative Analysis and Optimization of Model Architectures" (PyTorch, CPU): a random
//! forest, an MLP, two plain CNNs and two ResNets (the forest is not a network and lives in
//! `crate::forest`). Published numbers are test accuracy on the official test set.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use model_report::ForestOptions;

use crate::arch::Arch;
use crate::arch::build::*;
use crate::forest::Forest;
use crate::layers::{Conv2d, GlobalAvgPool, Layer, Residual};

pub(super) const SUMMARY: &str = "PyTorch on a CPU. Reports test accuracy, confusion matrices (Shirt is the hardest class for every model) and loss curves. \
The study normalised with MNIST's mean and standard deviation (0.1307, 0.3081) by mistake; we use Fashion-MNIST's. \
It does not name its optimizer or batch size: we use Adam (lr 1e-3) and batch 64, and train on all 60,000 training images.";

fn s1_recipe(epochs: usize) -> crate::arch::Recipe {
    recipe(epochs, 64, adam(1e-3), SplitPlan::Full)
}

/// Conv3x3 (padding 1) - BatchNorm - ReLU.
fn block(out_ch: usize) -> [Layer; 3] {
    [conv_same(out_ch, 3), BN, RELU]
}

/// Four conv blocks of `widths`, 2x2 max pooling after the first two only (28 -> 14 -> 7),
/// flatten, dense 10.
fn plain_cnn(widths: [usize; 4]) -> Vec<Layer> {
    let mut layers = Vec::new();
    for (i, w) in widths.into_iter().enumerate() {
        layers.extend(block(w));
        if i < 2 {
            layers.push(MAX2);
        }
    }
    layers.extend([FLATTEN, dense(10)]);
    layers
}

/// A convolution with `kernel` x `kernel` weights, `stride`, and padding `kernel / 2`.
fn conv(out_ch: usize, kernel: usize, stride: usize) -> Layer {
    Layer::Conv2d(Conv2d {
        out_ch,
        kernel,
        stride,
        padding: kernel / 2,
    })
}

/// ResNet's basic block and the ReLU after it: conv3x3 (`stride`)-BN-ReLU-conv3x3-BN, plus the
/// input through the identity or, where the shape changes, a 1x1 conv (`stride`)-BN projection.
fn basic_block(in_ch: usize, out_ch: usize, stride: usize) -> [Layer; 2] {
    let shortcut = if stride == 1 && in_ch == out_ch {
        Vec::new()
    } else {
        vec![conv(out_ch, 1, stride), BN]
    };
    [
        Layer::Residual(Residual {
            body: vec![conv(out_ch, 3, stride), BN, RELU, conv(out_ch, 3, 1), BN],
            shortcut,
        }),
        RELU,
    ]
}

/// ResNet with basic blocks for a 1x28x28 image: a 3x3 stem (64, stride 1) without max
/// pooling, four stages of `blocks` blocks (64, 128, 256, 512 channels; stages 2-4 start with
/// stride 2: 28 -> 14 -> 7 -> 4), global average pooling, FC 10.
fn resnet(blocks: [usize; 4]) -> Vec<Layer> {
    let mut layers = vec![conv(64, 3, 1), BN, RELU];
    let mut in_ch = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let out_ch = 64 << stage;
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            layers.extend(basic_block(in_ch, out_ch, stride));
            in_ch = out_ch;
        }
    }
    layers.extend([Layer::GlobalAvgPool(GlobalAvgPool), dense(10)]);
    layers
}

/// S1's random forest: 100 trees on raw pixels, scikit-learn's defaults.
pub(super) fn forests() -> Vec<Forest> {
    vec![Forest {
        id: "s1-rf",
        study: Study::S1,
        description: "Random forest on raw pixels: 100 trees",
        reading: "\"Library defaults\" read as scikit-learn's: 100 trees grown until their leaves are pure, Gini impurity, 28 candidate pixels (the square root of 784) drawn at every split, a bootstrap sample per tree (smartcore draws it class by class, keeping each class's count); all 60,000 training images.",
        options: ForestOptions {
            trees: 100,
            features_per_split: 28,
            min_samples_split: 2,
            seed: 42,
            train_limit: None,
        },
        published: reported(88.0, "88.0%"),
    }]
}

pub(super) fn models() -> Vec<Arch> {
    vec![
        Arch {
            id: "s1-mlp",
            study: Study::S1,
            description: "MLP 784-2000-1000-500-100-10, ReLU",
            reading: "As described. The study states about 2.3M parameters; these widths have 4.1M, and we report ours.",
            input: MNIST_INPUT,
            layers: mlp(&[2000, 1000, 500, 100, 10]),
            recipe: s1_recipe(10),
            published: reported(88.66, "88.66% (8,866 of 10,000; its table rounds to 89.0%)"),
        },
        Arch {
            id: "s1-cnn32",
            study: Study::S1,
            description: "CNN: 4 blocks conv3x3 (padding 1)-BN-ReLU, widths 32-64-128-256, MaxPool2 after blocks 1 and 2, flatten 7x7x256, FC 10",
            reading: "The study gives the block structure and about 0.5M parameters but not the widths; doubling from 32 gives 514k.",
            input: MNIST_INPUT,
            layers: plain_cnn([32, 64, 128, 256]),
            recipe: s1_recipe(10),
            published: reported(92.37, "92.37% (9,237 of 10,000; its table rounds to 92.0%)"),
        },
        Arch {
            id: "s1-cnn64",
            study: Study::S1,
            description: "The same CNN with a 64-channel first conv (64-64-128-256)",
            reading: "Only the first conv is said to change; the study states about 0.7M parameters, this reading has 0.53M.",
            input: MNIST_INPUT,
            layers: plain_cnn([64, 64, 128, 256]),
            recipe: s1_recipe(10),
            published: reported(92.44, "92.44% (9,244 of 10,000)"),
        },
        Arch {
            id: "s1-resnet18",
            study: Study::S1,
            description: "ResNet-18 for 1x28x28: conv3x3 64 stem (no max pooling), basic blocks [2, 2, 2, 2] of 64-128-256-512 channels with BatchNorm and identity or 1x1-projection shortcuts, global average pooling, FC 10",
            reading: "The study's adaptation (3x3 stem, no initial max pooling); stages 2-4 halve the size with stride 2 (28 -> 14 -> 7 -> 4). Our convolutions keep their bias (redundant before BatchNorm, folded at export): 4,800 parameters more than torchvision's bias-free layout (11,172,810). 5 epochs as stated.",
            input: MNIST_INPUT,
            layers: resnet([2, 2, 2, 2]),
            recipe: s1_recipe(5),
            published: reported(90.91, "90.91%"),
        },
        Arch {
            id: "s1-resnet34",
            study: Study::S1,
            description: "ResNet-34 for 1x28x28: the same stem and head, basic blocks [3, 4, 6, 3]",
            reading: "As s1-resnet18, with ResNet-34's block counts (8,512 conv biases more than torchvision's 21,280,970 parameters). 5 epochs as stated.",
            input: MNIST_INPUT,
            layers: resnet([3, 4, 6, 3]),
            recipe: s1_recipe(5),
            published: reported(91.15, "91.15%"),
        },
    ]
}
