//! Every model of the five reference studies of Fashion-MNIST classifiers, as data: the network,
//! the study's training recipe (our defaults), what the study reported and what it left vague
//! with how we read it. One file per study; `demo.rs` holds our own model that is not from a
//! study. The study reports (`trainer study`) read their facts from here.
//!
//! Shared readings, applied to every study unless its file says otherwise:
//! - pixels are normalised with Fashion-MNIST's mean 0.2860 and standard deviation 0.3530
//!   (after /255). S1 used MNIST's values by mistake, S2 and S4 only divided by 255; the scale
//!   of the input does not change what a network can learn, and one normalisation lets every
//!   int8 model take the same quantised input;
//! - weights start as PyTorch initialises them (uniform in ±1/sqrt(fan-in)), also for the
//!   Keras and NumPy studies;
//! - where a study did not name its optimizer, batch or epochs, we use Adam (lr 1e-3), batch
//!   64 (32 for Keras, its default) and 10 epochs;
//! - the test set is Fashion-MNIST's official 10,000 images, except in S4, which pooled all
//!   70,000 images and split them 60:20:20.

use serde::Serialize;

use crate::arch::{Arch, ArchError};
use crate::forest::Forest;

mod demo;
pub mod notes;
mod s1;
mod s2;
mod s3;
mod s4;
mod s5;

pub use s2::{OPTIMIZER_STUDY, OptimizerRun};

/// A reference study (or our own demo models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Study {
    /// "Comparative Analysis and Optimization of Model Architectures" (PyTorch, CPU).
    S1,
    /// "Comparative Study of Deep Learning Approaches" (Keras).
    S2,
    /// "Comparative Study of Neural Networks" (NumPy from scratch).
    S3,
    /// "A CNN Approach to Fashion MNIST" (Keras).
    S4,
    /// "Fashion-MNIST Classification" (PyTorch).
    S5,
    /// Not from a study: our own models.
    Demo,
}

impl Study {
    /// Every study, in order (the demo models last).
    pub const ALL: [Study; 6] = [
        Study::S1,
        Study::S2,
        Study::S3,
        Study::S4,
        Study::S5,
        Study::Demo,
    ];

    /// Short name as the command line takes it (`s1` ... `s5`, `demo`).
    pub fn key(self) -> &'static str {
        match self {
            Study::S1 => "s1",
            Study::S2 => "s2",
            Study::S3 => "s3",
            Study::S4 => "s4",
            Study::S5 => "s5",
            Study::Demo => "demo",
        }
    }

    /// The study with this [`Self::key`].
    pub fn by_key(key: &str) -> Option<Study> {
        Self::ALL
            .into_iter()
            .find(|s| s.key() == key.to_ascii_lowercase())
    }

    /// The study's title and tools.
    pub fn title(self) -> &'static str {
        match self {
            Study::S1 => {
                "S1: Comparative Analysis and Optimization of Model Architectures (PyTorch, CPU)"
            }
            Study::S2 => "S2: Comparative Study of Deep Learning Approaches (Keras)",
            Study::S3 => "S3: Comparative Study of Neural Networks (NumPy from scratch)",
            Study::S4 => "S4: A CNN Approach to Fashion MNIST (Keras)",
            Study::S5 => "S5: Fashion-MNIST Classification (PyTorch)",
            Study::Demo => "Our own demonstration models (not from a study)",
        }
    }

    /// What the study did as a whole, and our readings that apply to all its models.
    pub fn summary(self) -> &'static str {
        match self {
            Study::S1 => s1::SUMMARY,
            Study::S2 => s2::SUMMARY,
            Study::S3 => s3::SUMMARY,
            Study::S4 => s4::SUMMARY,
            Study::S5 => s5::SUMMARY,
            Study::Demo => demo::SUMMARY,
        }
    }

    /// The study's random forests (models that are not networks).
    pub fn forests(self) -> Vec<Forest> {
        match self {
            Study::S1 => s1::forests(),
            Study::S2 | Study::S3 | Study::S4 | Study::S5 | Study::Demo => Vec::new(),
        }
    }

    /// The study's networks.
    pub fn models(self) -> Vec<Arch> {
        match self {
            Study::S1 => s1::models(),
            Study::S2 => s2::models(),
            Study::S3 => s3::models(),
            Study::S4 => s4::models(),
            Study::S5 => s5::models(),
            Study::Demo => demo::models(),
        }
    }
}

/// Every model, study by study.
pub fn all() -> Vec<Arch> {
    Study::ALL.into_iter().flat_map(Study::models).collect()
}

/// Every random forest, study by study.
pub fn forests() -> Vec<Forest> {
    Study::ALL.into_iter().flat_map(Study::forests).collect()
}

/// The random forest `id`, if there is one.
pub fn forest_by_id(id: &str) -> Option<Forest> {
    forests().into_iter().find(|f| f.id == id)
}

/// Ids of every model: the networks, then the forests.
pub fn ids() -> Vec<&'static str> {
    all()
        .iter()
        .map(|a| a.id)
        .chain(forests().iter().map(|f| f.id))
        .collect()
}

/// The models the main job trains and the firmware runs on the board: the three the project
/// promises (s5-ann, s5-cnn, s3-lenet-base) and the demo model that exercises every op.
pub fn deployable() -> Vec<Arch> {
    ["s5-ann", "s5-cnn", "s3-lenet-base", "tiny-resnet"]
        .into_iter()
        .filter_map(|id| by_id(id).ok())
        .collect()
}

/// The model with this id.
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
    fn every_id_is_a_valid_model_file_id() {
        // infer-core refuses a file whose id it could not print or use as a file name.
        for id in ids() {
            assert!(infer_core::format::valid_id(id), "{id:?}");
        }
    }

    #[test]
    fn every_id_starts_with_its_study() {
        for a in all() {
            if a.study != Study::Demo {
                assert!(a.id.starts_with(&format!("{}-", a.study.key())), "{}", a.id);
            }
        }
    }

    #[test]
    fn deployable_are_known() {
        assert_eq!(deployable().len(), 4);
    }

    #[test]
    fn study_keys_round_trip() {
        for s in Study::ALL {
            assert_eq!(Study::by_key(s.key()), Some(s));
        }
        assert_eq!(Study::by_key("s9"), None);
    }

    #[test]
    fn parameter_counts_match_hand_counts() {
        let count = |id| by_id(id).unwrap().param_count().unwrap();
        // 784*256+256 + 256*128+128 + 128*10+10
        assert_eq!(count("s5-ann"), 235_146);
        // (32*9+32) + (64*32*9+64) + (3136*128+128) + (128*10+10)
        assert_eq!(count("s5-cnn"), 421_642);
        // (6*25+6) + (16*6*25+16) + (256*120+120) + (120*84+84) + (84*10+10)
        assert_eq!(count("s3-lenet-base"), 44_426);
        // (16*9+16) + 2*16 (BN) + 2 * ((16*16*9+16) + 2*16) + (16*10+10)
        assert_eq!(count("tiny-resnet"), 5_066);
        // 784*2000+2000 + 2000*1000+1000 + 1000*500+500 + 500*100+100 + 100*10+10
        assert_eq!(count("s1-mlp"), 4_122_610);
        // 784*128+128 + 128*64+64 + 64*10+10
        assert_eq!(count("s2-m1"), 109_386);
        // (32*9+32) + 2*32 + (64*32*9+64) + 2*64 + (128*64*9+128) + 2*128
        //   + (256*128*9+256) + 2*256 + (7*7*256*10+10)
        assert_eq!(count("s1-cnn32"), 514_250);
        // (32*16+32) + (4608*128+128) + (128*10+10)
        assert_eq!(count("s4-cnn1"), 591_786);
        // 3072*128+128 + 128*10+10: the 3x32x32 input of the AlexNet-like MLP
        assert_eq!(count("s3-alexnet-base"), 394_634);
        // nn.RNN(28, 128): 128*(28+128+2); FC 128*10+10
        assert_eq!(count("s3-rnn-base"), 21_514);
        // nn.LSTM(28, 192): 4*192*(28+192+2); FC 192*10+10
        assert_eq!(count("s3-lstm-tuned"), 172_426);
        // torchvision's layout (11,172,810 and 21,280,970, bias-free convs) plus one bias per
        // conv output channel: 4,800 and 8,512
        assert_eq!(count("s1-resnet18"), 11_172_810 + 4_800);
        assert_eq!(count("s1-resnet34"), 21_280_970 + 8_512);
    }

    #[test]
    fn only_recurrent_models_lack_int8() {
        let undeployable: Vec<_> = all()
            .into_iter()
            .filter(|a| !a.deployable())
            .map(|a| a.id)
            .collect();
        assert_eq!(
            undeployable,
            [
                "s3-rnn-base",
                "s3-rnn-tuned",
                "s3-lstm-base",
                "s3-lstm-tuned"
            ]
        );
    }
}
