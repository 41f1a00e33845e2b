//! S5: "Fashion-MNIST Classification" (PyTorch): an MLP and a small CNN, 80/20
//! train/validation split, Adam lr 1e-3, batch 64, 10 epochs.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use crate::arch::build::*;
use crate::arch::{Arch, Recipe};

pub(super) const SUMMARY: &str = "PyTorch. Holds out 20% of the training images for validation, normalises by the dataset's mean and standard deviation, trains with Adam (lr 1e-3), batch 64, 10 epochs. \
Reports validation and test accuracy, per-class metrics, confusion matrices (the CNN gets Sandal 982, Sneaker 975 and Bag 980 of 1,000 right) and training curves.";

fn s5_recipe() -> Recipe {
    recipe(
        10,
        64,
        adam(1e-3),
        SplitPlan::Holdout {
            validation_percent: 20,
        },
    )
}

pub(super) fn models() -> Vec<Arch> {
    vec![
        Arch {
            id: "s5-ann",
            study: Study::S5,
            description: "MLP 784-256-128-10, ReLU, dropout 0.2",
            reading: "Dropout after both hidden ReLUs, where the study's code applies it.",
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
            recipe: s5_recipe(),
            published: about(85.0, "validation 88.4%, test about 85%"),
        },
        Arch {
            id: "s5-cnn",
            study: Study::S5,
            description: "CNN: conv3x3 32-ReLU-MaxPool2, conv3x3 64-ReLU-MaxPool2, FC 128, dropout 0.25, FC 10",
            reading: "Padding 1 on both convs (28 -> 14 -> 7, so the FC input is 64x7x7 = 3,136); dropout after the FC-128 ReLU.",
            input: MNIST_INPUT,
            layers: vec![
                conv_same(32, 3),
                RELU,
                MAX2,
                conv_same(64, 3),
                RELU,
                MAX2,
                FLATTEN,
                dense(128),
                RELU,
                dropout(0.25),
                dense(10),
            ],
            recipe: s5_recipe(),
            published: about(90.0, "validation 92.6%, test about 90%"),
        },
    ]
}
