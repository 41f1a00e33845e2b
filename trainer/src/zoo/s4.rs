//! S4: "A CNN Approach to Fashion MNIST" (Keras): an MLP and three CNNs on a 60:20:20
//! train/validation/test split of all 70,000 images.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use crate::arch::build::*;
use crate::arch::{Arch, Recipe};
use crate::layers::Layer;

pub(super) const SUMMARY: &str = "Keras. Pools the 70,000 images and splits them 60:20:20 into training, validation and test sets (we do the same, stratified and seeded, so its test accuracy is on 14,000 pooled images, not the official test set); pixels divided by 255. Explores the data (class distribution, sample images, PCA). \
It states neither optimizer, batch nor epochs: we use Keras' defaults (Adam lr 1e-3, batch 32) and 10 epochs. Convolutions use Keras' default valid padding.";

const POOLED: SplitPlan = SplitPlan::Pooled {
    train_percent: 60,
    validation_percent: 20,
};

fn s4_recipe() -> Recipe {
    recipe(10, 32, adam(1e-3), POOLED)
}

/// conv4x4 32 (valid: 28 -> 25), MaxPool2 (-> 12), FC 128, FC 10.
fn cnn1() -> Vec<Layer> {
    vec![
        conv_valid(32, 4),
        RELU,
        MAX2,
        FLATTEN,
        dense(128),
        RELU,
        dense(10),
    ]
}

pub(super) fn models() -> Vec<Arch> {
    vec![
        Arch {
            id: "s4-ann",
            study: Study::S4,
            description: "MLP 784-64-128-10, ReLU",
            reading: "As described.",
            input: MNIST_INPUT,
            layers: mlp(&[64, 128, 10]),
            recipe: s4_recipe(),
            published: unreported("\"generalises well\" (no number)"),
        },
        Arch {
            id: "s4-cnn1",
            study: Study::S4,
            description: "CNN: conv4x4 32-ReLU, MaxPool2, FC 128, FC 10",
            reading: "Valid padding (28 -> 25 -> 12), ReLU.",
            input: MNIST_INPUT,
            layers: cnn1(),
            recipe: s4_recipe(),
            published: about(90.0, "about 90%"),
        },
        Arch {
            id: "s4-cnn2",
            study: Study::S4,
            description: "cnn1 with an explicit stride of 1",
            reading: "Stride 1 is Keras' default, so this is cnn1 again: the same network, trained with its own seed stream.",
            input: MNIST_INPUT,
            layers: cnn1(),
            recipe: s4_recipe(),
            published: reported(90.6, "90.6% test (97.4% train)"),
        },
        Arch {
            id: "s4-cnn3",
            study: Study::S4,
            description: "CNN: conv3x3 32-MaxPool2, conv3x3 64-MaxPool2, FC 128, dropout 0.2, FC 10",
            reading: "Valid padding (28 -> 26 -> 13 -> 11 -> 5, FC input 1,600), ReLU.",
            input: MNIST_INPUT,
            layers: vec![
                conv_valid(32, 3),
                RELU,
                MAX2,
                conv_valid(64, 3),
                RELU,
                MAX2,
                FLATTEN,
                dense(128),
                RELU,
                dropout(0.2),
                dense(10),
            ],
            recipe: s4_recipe(),
            published: about(90.0, "about 90%, F1 0.903"),
        },
    ]
}
