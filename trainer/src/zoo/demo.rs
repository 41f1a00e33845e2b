//! Our own model, not from a study: the smallest network that runs every part of the int8 graph
//! format on the board.

use fashion_mnist::splits::SplitPlan;

use super::Study;
use crate::arch::Arch;
use crate::arch::build::*;
use crate::layers::{Conv2d, GlobalAvgPool, Layer, Residual};

pub(super) const SUMMARY: &str = "Not from a study: a residual network of about 5,000 parameters that exercises every op of the int8 format (strided conv, folded BatchNorm, LeakyReLU, residual Add, global average pooling).";

pub(super) fn models() -> Vec<Arch> {
    let conv3 = |stride| {
        Layer::Conv2d(Conv2d {
            out_ch: 16,
            kernel: 3,
            stride,
            padding: 1,
        })
    };
    vec![Arch {
        id: "tiny-resnet",
        study: Study::Demo,
        description: "conv3x3/2 16-BN-LeakyReLU(0.1), residual block (conv3x3-BN-ReLU-conv3x3-BN, identity) + ReLU, global average pooling, FC 10",
        reading: "Ours: Adam lr 1e-3, batch 64, 15 epochs on all training images.",
        input: MNIST_INPUT,
        layers: vec![
            conv3(2),
            BN,
            leaky(0.1),
            Layer::Residual(Residual {
                body: vec![conv3(1), BN, RELU, conv3(1), BN],
                shortcut: Vec::new(),
            }),
            RELU,
            Layer::GlobalAvgPool(GlobalAvgPool),
            dense(10),
        ],
        recipe: recipe(15, 64, adam(1e-3), SplitPlan::Full),
        published: unreported("not from a study"),
    }]
}
