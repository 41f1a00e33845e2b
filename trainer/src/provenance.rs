//! The provenance of a model record ([`model_report::Provenance`]): the build (compiler, target
//! and the arithmetic crates' versions, recorded by `build.rs`), the CPU features detected at
//! run time, and the run's seed.

use std::collections::BTreeMap;

use model_report::Provenance;

/// The provenance of a record this process makes with `seed`.
pub fn current(seed: u64) -> Provenance {
    let crates: BTreeMap<String, String> = [
        ("candle-core", env!("TRAINER_CANDLE_CORE_VERSION")),
        ("candle-nn", env!("TRAINER_CANDLE_NN_VERSION")),
        ("gemm", env!("TRAINER_GEMM_VERSION")),
    ]
    .into_iter()
    .map(|(name, version)| (name.to_string(), version.to_string()))
    .collect();
    Provenance {
        rustc: env!("TRAINER_RUSTC").to_string(),
        target: env!("TRAINER_TARGET").to_string(),
        crates,
        cpu_features: cpu_features(),
        seed,
    }
}

/// The SIMD features of this CPU that gemm's kernels choose between at run time.
#[cfg(target_arch = "x86_64")]
pub fn cpu_features() -> Vec<String> {
    let mut features = Vec::new();
    macro_rules! probe {
        ($($feature:tt),*) => {
            $(if std::arch::is_x86_feature_detected!($feature) {
                features.push($feature.to_string());
            })*
        };
    }
    probe!(
        "sse4.1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl"
    );
    features
}

/// The SIMD features of this CPU that gemm's kernels choose between at run time.
#[cfg(target_arch = "aarch64")]
pub fn cpu_features() -> Vec<String> {
    let mut features = Vec::new();
    macro_rules! probe {
        ($($feature:tt),*) => {
            $(if std::arch::is_aarch64_feature_detected!($feature) {
                features.push($feature.to_string());
            })*
        };
    }
    probe!("neon", "fp16", "dotprod", "sve");
    features
}

/// No features are probed on this architecture.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn cpu_features() -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_recorded() {
        let p = current(42);
        assert!(p.rustc.starts_with("rustc 1."), "{}", p.rustc);
        assert_eq!(p.target.split('-').next(), Some(std::env::consts::ARCH));
        // The versions Cargo.lock pins, e.g. `0.11.1`.
        for name in ["candle-core", "candle-nn", "gemm"] {
            let version = &p.crates[name];
            assert!(
                version.split('.').count() == 3
                    && version.split('.').all(|n| n.parse::<u32>().is_ok()),
                "{name} {version}"
            );
        }
        assert_eq!(p.seed, 42);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            p.cpu_features.contains(&"avx2".to_string()),
            std::arch::is_x86_feature_detected!("avx2")
        );
    }
}
