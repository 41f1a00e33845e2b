//! Mutated committed models: random byte flips, truncations and insertions in the payload of
//! `models/*.fmq`, with the header's length and CRC-32 recomputed so that the mutation reaches
//! the decoder and the op validation. `Model::from_bytes` must never panic, and a file that
//! still loads must run: `predict` never panics and returns a class below the model's class
//! count. (`fuzz/` runs the same check under libFuzzer for millions of inputs.)

use infer_core::Model;
use infer_core::format::{HEADER_LEN, Header};
use proptest::prelude::*;

/// The committed models the mutations start from: the smallest of each kind of graph
/// (a ResNet block with Add and global pooling, a CNN with max pooling, LeNet-5 with average
/// pooling, an MLP), so that a case takes a millisecond or so.
const MODELS: [&[u8]; 4] = [
    include_bytes!("../../models/tiny-resnet.fmq"),
    include_bytes!("../../models/s3-cnn-base.fmq"),
    include_bytes!("../../models/s3-lenet-base.fmq"),
    include_bytes!("../../models/s4-ann.fmq"),
];

/// One edit of a payload, at a position given as a fraction of its length.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Set one byte.
    Set(prop::sample::Index, u8),
    /// Cut the payload at a position.
    Truncate(prop::sample::Index),
    /// Insert bytes at a position.
    Insert(prop::sample::Index, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), 1_u8..).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
    ]
}

/// Applies `m` to `payload`.
fn apply(payload: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(i, mask) => {
            let at = i.index(payload.len());
            payload[at] ^= mask;
        }
        Mutation::Set(i, value) => {
            let at = i.index(payload.len());
            payload[at] = *value;
        }
        Mutation::Truncate(i) => payload.truncate(i.index(payload.len())),
        Mutation::Insert(i, bytes) => {
            let at = i.index(payload.len() + 1);
            payload.splice(at..at, bytes.iter().copied());
        }
    }
}

/// The model file for `payload`, with a header that matches it.
fn file(payload: &[u8]) -> Vec<u8> {
    let mut out = Header::for_payload(payload).unwrap().to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Largest scratch buffer a case allocates: a mutated shape can ask for gigabytes, and must
/// then be refused with `ScratchTooSmall` rather than run.
const SCRATCH_LIMIT: usize = 1 << 22;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn mutated_committed_models_load_or_fail_cleanly(
        model in 0..MODELS.len(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let mut payload = MODELS[model][HEADER_LEN..].to_vec();
        for m in &mutations {
            apply(&mut payload, m);
        }
        let bytes = file(&payload);
        if let Ok(model) = Model::<64>::from_bytes(&bytes) {
            let pixels: Vec<u8> = (0..model.input_len().min(SCRATCH_LIMIT))
                .map(|i| u8::try_from(i * 37 % 251).unwrap())
                .collect();
            let mut scratch = vec![0_i8; model.scratch_len().min(SCRATCH_LIMIT)];
            let result = model.predict_raw(&pixels, &mut scratch);
            if model.input_len() <= SCRATCH_LIMIT && model.scratch_len() <= SCRATCH_LIMIT {
                let prediction = result.unwrap();
                prop_assert!(prediction.class < model.num_classes());
                prop_assert_eq!(prediction.logits.len(), model.num_classes());
            } else {
                prop_assert!(result.is_err());
            }
        }
    }
}

#[test]
fn the_unmutated_models_load_and_run() {
    for bytes in MODELS {
        let model = Model::<64>::from_bytes(bytes).unwrap();
        let mut scratch = vec![0_i8; model.scratch_len()];
        let prediction = model.predict(&[0; 784], &mut scratch).unwrap();
        assert!(prediction.class < model.num_classes());
    }
}
