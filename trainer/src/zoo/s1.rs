//! S1: "Comparative Analysis and Optimization of Model Architectures" (PyTorch, CPU): a random
//! forest, an MLP, two plain CNNs and two ResNets (the forest and the ResNets come with the next
//! issue). Published numbers are test accuracy on the official test set.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use crate::arch::Arch;
use crate::arch::build::*;
use crate::layers::Layer;

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
    ]
}
