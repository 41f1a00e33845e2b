//! S3: "Comparative Study of Neural Networks" (NumPy from scratch): each model in a baseline
//! and a tuned version.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use crate::arch::build::*;
use crate::arch::{Arch, Recipe};
use crate::layers::{Cell, Layer, PadReplicate, Recurrent};
use model_report::optimizer::OptimizerConfig;

pub(super) const SUMMARY: &str = "Written from scratch in NumPy. Each model in a baseline and a tuned version; reports accuracy and macro precision, recall and F1, and a grid of test images with true and predicted labels. \
Where it gives a learning rate without naming an optimizer, we read plain SGD (what a from-scratch NumPy network uses); batch 64 where none is given. \
Its \"AlexNet-like\" model has no convolutions: an MLP on the image resized to 3x32x32. We also train a real small AlexNet on that input (`s3-alexnet-real`), the model the study meant to test.";

/// The 28x28 grey image as the 3x32x32 input of the AlexNet variants: 2 zero pixels on each
/// side and the grey plane in all three channels. (The study resized; zero-padding keeps the
/// pixels as they are, and the int8 model folds it into the first layer's weights, so the
/// deployed model still takes the 28x28 image.)
const TO_RGB32: Layer = Layer::PadReplicate(PadReplicate {
    pad: 2,
    channels: 3,
});

fn sgd_recipe(epochs: usize, batch_size: usize, lr: f64) -> Recipe {
    recipe(epochs, batch_size, sgd(lr), SplitPlan::Full)
}

/// A recurrent layer over the 28 image rows, its last hidden state into FC 10.
fn recurrent(cell: Cell, hidden: usize) -> Vec<Layer> {
    vec![Layer::Recurrent(Recurrent { cell, hidden }), dense(10)]
}

fn alexnet_mlp() -> Vec<Layer> {
    vec![TO_RGB32, FLATTEN, dense(128), RELU, dense(10)]
}

/// A small AlexNet for 32x32: five 3x3 convs (32, 64, 96, 96, 64; pooling after the 1st, 2nd
/// and 5th: 32 -> 16 -> 8 -> 4), then FC 256 and FC 128 with dropout 0.5, FC 10.
fn alexnet_real() -> Vec<Layer> {
    vec![
        TO_RGB32,
        conv_same(32, 3),
        RELU,
        MAX2,
        conv_same(64, 3),
        RELU,
        MAX2,
        conv_same(96, 3),
        RELU,
        conv_same(96, 3),
        RELU,
        conv_same(64, 3),
        RELU,
        MAX2,
        FLATTEN,
        dropout(0.5),
        dense(256),
        RELU,
        dropout(0.5),
        dense(128),
        RELU,
        dense(10),
    ]
}

pub(super) fn models() -> Vec<Arch> {
    vec![
        Arch {
            id: "s3-mlp-base",
            study: Study::S3,
            description: "MLP 784-128-64-10, ReLU",
            reading: "Plain SGD, lr 0.01, batch 64, 10 epochs, as stated.",
            input: MNIST_INPUT,
            layers: mlp(&[128, 64, 10]),
            recipe: sgd_recipe(10, 64, 0.01),
            published: reported(76.89, "76.89%"),
        },
        Arch {
            id: "s3-mlp-tuned",
            study: Study::S3,
            description: "MLP 784-256-128-64-10, ReLU",
            reading: "Adam lr 0.005, 20 epochs as stated; batch 64 (unstated).",
            input: MNIST_INPUT,
            layers: mlp(&[256, 128, 64, 10]),
            recipe: recipe(20, 64, adam(0.005), SplitPlan::Full),
            published: reported(87.91, "87.91%"),
        },
        Arch {
            id: "s3-alexnet-base",
            study: Study::S3,
            description: "\"AlexNet-like\": image as 3x32x32, FC 128-ReLU, FC 10 (no convolutions)",
            reading: "Resizing read as 2-pixel zero padding with the grey plane in 3 channels; plain SGD lr 0.01, batch 1, 5 epochs as stated.",
            input: MNIST_INPUT,
            layers: alexnet_mlp(),
            recipe: sgd_recipe(5, 1, 0.01),
            published: reported(85.39, "85.39%"),
        },
        Arch {
            id: "s3-alexnet-tuned",
            study: Study::S3,
            description: "The same network, tuned training",
            reading: "Plain SGD lr 0.001, batch 1, 10 epochs, 80/20 train/validation split, as stated.",
            input: MNIST_INPUT,
            layers: alexnet_mlp(),
            recipe: recipe(
                10,
                1,
                sgd(0.001),
                SplitPlan::Holdout {
                    validation_percent: 20,
                },
            ),
            published: reported(88.64, "88.64%"),
        },
        Arch {
            id: "s3-alexnet-real",
            study: Study::S3,
            description: "A real small AlexNet on 3x32x32: 5 conv3x3 (32-64-96-96-64) with 3 max pools, FC 256-128-10 with dropout 0.5",
            reading: "Ours (the study has no such model): Adam lr 1e-3, batch 64, 10 epochs.",
            input: MNIST_INPUT,
            layers: alexnet_real(),
            recipe: recipe(10, 64, adam(1e-3), SplitPlan::Full),
            published: unreported("not in the study: what its AlexNet-like model was meant to be"),
        },
        Arch {
            id: "s3-cnn-base",
            study: Study::S3,
            description: "CNN: conv3x3 6-ReLU-MaxPool2, conv3x3 12-ReLU-MaxPool2, FC 10",
            reading: "No padding (28 -> 26 -> 13 -> 11 -> 5, FC input 300); plain SGD lr 0.01, batch 128, 10 epochs.",
            input: MNIST_INPUT,
            layers: vec![
                conv_valid(6, 3),
                RELU,
                MAX2,
                conv_valid(12, 3),
                RELU,
                MAX2,
                FLATTEN,
                dense(10),
            ],
            recipe: sgd_recipe(10, 128, 0.01),
            published: reported(83.44, "83.44%"),
        },
        Arch {
            id: "s3-cnn-tuned",
            study: Study::S3,
            description: "CNN: conv3x3 16, conv3x3 24, MaxPool2, FC 200, FC 10, LeakyReLU",
            reading: "No padding (28 -> 26 -> 24 -> 12), LeakyReLU slope 0.01 after both convs and FC 200; plain SGD lr 0.005, batch 64, 15 epochs.",
            input: MNIST_INPUT,
            layers: vec![
                conv_valid(16, 3),
                leaky(0.01),
                conv_valid(24, 3),
                leaky(0.01),
                MAX2,
                FLATTEN,
                dense(200),
                leaky(0.01),
                dense(10),
            ],
            recipe: sgd_recipe(15, 64, 0.005),
            published: reported(86.67, "86.67%"),
        },
        Arch {
            id: "s3-lenet-base",
            study: Study::S3,
            description: "LeNet-5: conv5x5 6-ReLU-AvgPool2, conv5x5 16-ReLU-AvgPool2, FC 256-120-84-10",
            reading: "No padding (28 -> 24 -> 12 -> 8 -> 4: the FC input of 256 the study gives), ReLU after FC 120 and FC 84; optimizer unstated: Adam lr 1e-3, batch 64, 10 epochs.",
            input: MNIST_INPUT,
            layers: vec![
                conv_valid(6, 5),
                RELU,
                AVG2,
                conv_valid(16, 5),
                RELU,
                AVG2,
                FLATTEN,
                dense(120),
                RELU,
                dense(84),
                RELU,
                dense(10),
            ],
            recipe: recipe(10, 64, adam(1e-3), SplitPlan::Full),
            published: reported(82.17, "82.17%"),
        },
        Arch {
            id: "s3-lenet-tuned",
            study: Study::S3,
            description: "LeNet with conv5x5 64 and 128 filters and max pooling, dropout 0.4",
            reading: "LeNet's layout with wider convs (28 -> 24 -> 12 -> 8 -> 4, FC input 2,048), dropout 0.4 before FC 120; Adam lr 0.01, batch 128, 15 epochs as stated.",
            input: MNIST_INPUT,
            layers: vec![
                conv_valid(64, 5),
                RELU,
                MAX2,
                conv_valid(128, 5),
                RELU,
                MAX2,
                FLATTEN,
                dropout(0.4),
                dense(120),
                RELU,
                dense(84),
                RELU,
                dense(10),
            ],
            recipe: recipe(15, 128, adam(0.01), SplitPlan::Full),
            published: reported(71.58, "71.58%"),
        },
        Arch {
            id: "s3-rnn-base",
            study: Study::S3,
            description: "Elman RNN over the 28 image rows (28 steps of 28 pixels), 128 tanh units, FC 10 on the last hidden state",
            reading: "Adam lr 0.005, 10 epochs as stated; batch 64 (not given).",
            input: MNIST_INPUT,
            layers: recurrent(Cell::Elman, 128),
            recipe: recipe(10, 64, adam(0.005), SplitPlan::Full),
            published: reported(84.14, "84.14%"),
        },
        Arch {
            id: "s3-rnn-tuned",
            study: Study::S3,
            description: "The same RNN with 256 units",
            reading: "RMSprop lr 0.001 (PyTorch's other defaults), 15 epochs as stated; batch 64 (not given).",
            input: MNIST_INPUT,
            layers: recurrent(Cell::Elman, 256),
            recipe: recipe(
                15,
                64,
                OptimizerConfig::rmsprop().with_lr(0.001),
                SplitPlan::Full,
            ),
            published: reported(83.47, "83.47%"),
        },
        Arch {
            id: "s3-lstm-base",
            study: Study::S3,
            description: "LSTM over the 28 image rows, 128 units (forget-gate bias 1.0), FC 10 on the last hidden state",
            reading: "Adam lr 0.01, 10 epochs as stated; batch 64 (not given).",
            input: MNIST_INPUT,
            layers: recurrent(Cell::Lstm, 128),
            recipe: recipe(10, 64, adam(0.01), SplitPlan::Full),
            published: reported(78.60, "78.60%"),
        },
        Arch {
            id: "s3-lstm-tuned",
            study: Study::S3,
            description: "The same LSTM with 192 units",
            reading: "Plain SGD lr 0.005, 15 epochs as stated; batch 64 (not given).",
            input: MNIST_INPUT,
            layers: recurrent(Cell::Lstm, 192),
            recipe: sgd_recipe(15, 64, 0.005),
            published: reported(79.70, "79.70%"),
        },
    ]
}
