//! S2: "Comparative Study of Deep Learning Approaches" (Keras): three MLPs and four CNNs trained
//! with Adam, and a study of seven optimizers on the largest CNN (`s2-m6`).

use fashion_mnist::augment::Augmentation;
use fashion_mnist::splits::SplitPlan;
use model_report::optimizer::OptimizerConfig;

use super::Study;
use crate::arch::build::*;
use crate::arch::{Arch, Recipe};
use crate::layers::Layer;

pub(super) const SUMMARY: &str = "Keras: Adam, categorical cross-entropy, pixels divided by 255. Reports accuracy, precision, recall, F1 and curves, and compares seven optimizers on its hybrid CNN. \
It shows validation curves without saying how it split the data: we hold out 20% of the training images for validation (Keras' `validation_split=0.2`). \
Keras' default batch is 32 where the study gives none. Optimizers take Keras' default hyper-parameters (learning rates 1e-3 except SGD's 0.01; epsilon 1e-7; RMSprop rho 0.9; Adagrad starting its accumulator at 0.1; Adadelta rho 0.95), with PyTorch's update rules.";

/// The 80/20 split we read S2's validation curves from.
const HOLDOUT: SplitPlan = SplitPlan::Holdout {
    validation_percent: 20,
};

/// Keras' Adam: lr 1e-3, epsilon 1e-7.
fn keras_adam() -> OptimizerConfig {
    OptimizerConfig::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-7,
        weight_decay: 0.0,
    }
}

/// What Keras' `ImageDataGenerator` is commonly given for this data: rotation ±10 degrees,
/// shifts and zoom ±10%, no flips (the study names the three transforms but not their ranges).
const AUGMENTATION: Augmentation = Augmentation {
    rotation_degrees: 10.0,
    shift: 0.1,
    zoom: 0.1,
    horizontal_flip: false,
};

fn s2_recipe(epochs: usize, batch_size: usize) -> Recipe {
    recipe(epochs, batch_size, keras_adam(), HOLDOUT)
}

/// Conv3x3 (same) with optional BatchNorm, ReLU.
fn conv_relu(out_ch: usize, batch_norm: bool) -> Vec<Layer> {
    let mut v = vec![conv_same(out_ch, 3)];
    if batch_norm {
        v.push(BN);
    }
    v.push(RELU);
    v
}

/// m1 with dropout 0.2 after each hidden ReLU.
fn m2() -> Vec<Layer> {
    vec![
        FLATTEN,
        dense(128),
        RELU,
        dropout(0.2),
        dense(64),
        RELU,
        dropout(0.2),
        dense(10),
    ]
}

/// S2's CNNs m4a, m4b and m5: three conv blocks (32-64-128, each with 2x2 max pooling:
/// 28 -> 14 -> 7 -> 3), FC 128, FC 10.
fn m4(batch_norm: bool, dropout_p: Option<(f32, f32)>) -> Vec<Layer> {
    let mut layers = Vec::new();
    for w in [32, 64, 128] {
        layers.extend(conv_relu(w, batch_norm));
        layers.push(MAX2);
        if let Some((p, _)) = dropout_p {
            layers.push(dropout(p));
        }
    }
    layers.extend([FLATTEN, dense(128), RELU]);
    if let Some((_, p)) = dropout_p {
        layers.push(dropout(p));
    }
    layers.push(dense(10));
    layers
}

/// S2's hybrid m6: three blocks of two conv-BN-ReLU, max pooling and dropout 0.25; FC 256,
/// dropout 0.5, FC 10.
fn m6() -> Vec<Layer> {
    let mut layers = Vec::new();
    for w in [32, 64, 128] {
        layers.extend(conv_relu(w, true));
        layers.extend(conv_relu(w, true));
        layers.extend([MAX2, dropout(0.25)]);
    }
    layers.extend([FLATTEN, dense(256), RELU, dropout(0.5), dense(10)]);
    layers
}

/// One run of the optimizer study: `s2-m6` trained with another optimizer.
#[derive(Debug, Clone, Copy)]
pub struct OptimizerRun {
    /// Model id of the run (`s2-m6` itself for Adam).
    pub id: &'static str,
    /// The optimizer's name as the study wrote it.
    pub name: &'static str,
    /// Keras' defaults for it.
    pub optimizer: fn() -> OptimizerConfig,
    /// Final validation accuracy the study reported, percent.
    pub published_final_val_accuracy: f64,
}

/// The seven optimizers of S2's study on `s2-m6`, with Keras' default hyper-parameters.
pub const OPTIMIZER_STUDY: [OptimizerRun; 7] = [
    OptimizerRun {
        id: "s2-m6-sgd",
        name: "SGD",
        optimizer: || OptimizerConfig::sgd(1e-2),
        published_final_val_accuracy: 87.85,
    },
    OptimizerRun {
        id: "s2-m6",
        name: "Adam",
        optimizer: keras_adam,
        published_final_val_accuracy: 93.67,
    },
    OptimizerRun {
        id: "s2-m6-rmsprop",
        name: "RMSprop",
        optimizer: || OptimizerConfig::RmsProp {
            lr: 1e-3,
            alpha: 0.9,
            eps: 1e-7,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        },
        published_final_val_accuracy: 93.52,
    },
    OptimizerRun {
        id: "s2-m6-adagrad",
        name: "Adagrad",
        optimizer: || OptimizerConfig::Adagrad {
            lr: 1e-3,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.1,
            eps: 1e-7,
        },
        published_final_val_accuracy: 86.62,
    },
    OptimizerRun {
        id: "s2-m6-adadelta",
        name: "Adadelta",
        optimizer: || OptimizerConfig::Adadelta {
            lr: 1e-3,
            rho: 0.95,
            eps: 1e-7,
            weight_decay: 0.0,
        },
        published_final_val_accuracy: 72.90,
    },
    OptimizerRun {
        id: "s2-m6-adamax",
        name: "Adamax",
        optimizer: || OptimizerConfig::Adamax {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
        },
        published_final_val_accuracy: 92.78,
    },
    OptimizerRun {
        id: "s2-m6-nadam",
        name: "Nadam",
        optimizer: || OptimizerConfig::NAdam {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            weight_decay: 0.0,
            momentum_decay: 4e-3,
        },
        published_final_val_accuracy: 93.71,
    },
];

pub(super) fn models() -> Vec<Arch> {
    let m6_arch = |id, optimizer, published| Arch {
        id,
        study: Study::S2,
        description: "Hybrid CNN: 3 blocks of 2x (conv3x3 same-BN-ReLU), MaxPool2, dropout 0.25 (32-64-128); FC 256, dropout 0.5, FC 10",
        reading: "\"More conv layers\" read as two conv-BN-ReLU per block, widths 32-64-128.",
        input: MNIST_INPUT,
        layers: m6(),
        recipe: Recipe {
            optimizer,
            ..s2_recipe(20, 128)
        },
        published,
    };
    let mut models = vec![
        Arch {
            id: "s2-m1",
            study: Study::S2,
            description: "MLP 784-128-64-10, ReLU",
            reading: "As described; batch 32 (Keras' default).",
            input: MNIST_INPUT,
            layers: mlp(&[128, 64, 10]),
            recipe: s2_recipe(10, 32),
            published: reported(87.89, "87.89%"),
        },
        Arch {
            id: "s2-m2",
            study: Study::S2,
            description: "m1 with dropout 0.2 after both hidden layers",
            reading: "Dropout after each hidden ReLU.",
            input: MNIST_INPUT,
            layers: m2(),
            recipe: s2_recipe(10, 32),
            published: reported(87.75, "87.75%"),
        },
        Arch {
            id: "s2-m3",
            study: Study::S2,
            description: "m2 trained on augmented images (random rotation, shift, zoom)",
            reading: "Ranges unstated: rotation ±10 degrees, shift and zoom ±10%, outside pixels 0.",
            input: MNIST_INPUT,
            layers: m2(),
            recipe: Recipe {
                augmentation: Some(AUGMENTATION),
                ..s2_recipe(10, 32)
            },
            published: reported(79.84, "79.84%"),
        },
        Arch {
            id: "s2-m4a",
            study: Study::S2,
            description: "CNN: 3x (conv3x3 same-ReLU, MaxPool2) with 32-64-128 filters, FC 128, FC 10",
            reading: "Filters 32-64-128, 3x3, same padding (unstated in the study).",
            input: MNIST_INPUT,
            layers: m4(false, None),
            recipe: s2_recipe(10, 128),
            published: reported(90.27, "90.27%"),
        },
        Arch {
            id: "s2-m4b",
            study: Study::S2,
            description: "m4a with BatchNorm after each conv",
            reading: "BatchNorm between each conv and its ReLU.",
            input: MNIST_INPUT,
            layers: m4(true, None),
            recipe: s2_recipe(10, 128),
            published: reported(91.04, "91.04%"),
        },
        Arch {
            id: "s2-m5",
            study: Study::S2,
            description: "m4b with dropout after each block and after FC 128",
            reading: "Rates unstated: 0.25 after each pooled block, 0.5 after FC 128 (as in m6).",
            input: MNIST_INPUT,
            layers: m4(true, Some((0.25, 0.5))),
            recipe: s2_recipe(10, 128),
            published: reported(88.56, "88.56%"),
        },
        m6_arch("s2-m6", keras_adam(), reported(93.29, "93.29%")),
    ];
    for run in OPTIMIZER_STUDY.iter().filter(|r| r.id != "s2-m6") {
        models.push(Arch {
            description: "s2-m6 trained with another optimizer (S2's optimizer study)",
            ..m6_arch(
                run.id,
                (run.optimizer)(),
                unreported("optimizer study: final validation accuracy only"),
            )
        });
    }
    models
}
