//! The Cortex-M4 firmware under QEMU (mps2-an386) against infer-core on the host.
//!
//! For each deployable model: build `firmware/` with the model and the first
//! [`device::DEFAULT_IMAGES`] test images, run it under `qemu-system-arm`, and check that its
//! logits are bit-identical to infer-core's on the host for the same images, that its accuracy is
//! the host's, that the LeNet budgets hold, and that the `firmware` record committed in
//! `models/<id>.json` is what this run measures. Without QEMU the tests fail (CI installs it).
//!
//! One more run checks our instruction-counting QEMU plugin (`tools/qemu-insn-count.c`, built
//! here with the system C compiler) against the SysTick counts.

use std::path::PathBuf;
use std::process::Command;

use firmware_sim::device::{self, DeviceOptions};
use model_report::ModelReport;

/// LeNet budget for flash (code and model, without the embedded test images).
const LENET_FLASH_BUDGET: u64 = 96 * 1024;
/// LeNet budget for RAM (static data, scratch and measured peak stack).
const LENET_RAM_BUDGET: u64 = 24 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(id: &str) {
    let root = root();
    let opts = DeviceOptions::new(&root, id);
    let run = device::run(&opts).unwrap_or_else(|e| panic!("{id}: {e}"));
    let test = fashion_mnist::load_test(None).expect("Fashion-MNIST test split (see README)");
    let model_path = root.join("models").join(format!("{id}.fmq"));
    let host = device::host_predictions(&model_path, &test, opts.images).unwrap();
    let report = run.report();
    println!(
        "{id}: accuracy {:.2}% on {} images, {} instructions/inference, QEMU {:.1} s",
        100.0 * report.accuracy,
        report.images,
        report.instructions.mean,
        run.run_time.as_secs_f64()
    );

    assert_eq!(run.images.len(), opts.images, "{id}: images run");
    let mismatches = device::mismatches(&run, &host);
    assert!(
        mismatches.is_empty(),
        "{id}: {} images differ between device and host, first: {:?}",
        mismatches.len(),
        mismatches.first()
    );
    let host_correct = host
        .iter()
        .zip(&test.labels)
        .filter(|((class, _), label)| *class == usize::from(**label))
        .count();
    assert_eq!(run.correct, host_correct, "{id}: device vs host accuracy");
    assert_eq!(
        run.scratch_len as u64, report.scratch_bytes,
        "{id}: scratch"
    );

    if id == "s3-lenet-base" {
        let flash = report.flash_code_bytes + report.flash_model_bytes;
        assert!(
            flash < LENET_FLASH_BUDGET,
            "{id}: flash {flash} B over {LENET_FLASH_BUDGET} B"
        );
        assert!(
            report.ram_total_bytes < LENET_RAM_BUDGET,
            "{id}: RAM {} B over {LENET_RAM_BUDGET} B",
            report.ram_total_bytes
        );
    }

    let json = root.join("models").join(format!("{id}.json"));
    // Reports are read with exact float parsing (model-report), so every field compares exactly.
    let committed = ModelReport::read(&json).unwrap().firmware;
    assert!(
        committed.as_ref() == Some(&report),
        "{id}: models/{id}.json's `firmware` record is stale: run `cargo run --release -p \
         firmware-sim -- device --update-json --update-readme README.md`\ncommitted: \
         {committed:#?}\nmeasured: {report:#?}"
    );
}

#[test]
fn lenet_on_the_cortex_m4_matches_the_host() {
    check("s3-lenet-base");
}

#[test]
fn mlp_on_the_cortex_m4_matches_the_host() {
    check("s5-ann");
}

#[test]
fn cnn_on_the_cortex_m4_matches_the_host() {
    check("s5-cnn");
}

#[test]
fn the_instruction_counting_plugin_agrees_with_systick() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("libinsn.so");
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let status = Command::new(&cc)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
        ])
        .arg(&plugin)
        .arg(root.join("tools").join("qemu-insn-count.c"))
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e} (a C compiler is needed)", cc.display()));
    assert!(status.success(), "compiling tools/qemu-insn-count.c failed");

    // 20 images: another ELF than the 200-image LeNet test, which may run at the same time.
    let opts = DeviceOptions {
        images: 20,
        plugin: Some(plugin),
        ..DeviceOptions::new(&root, "s3-lenet-base")
    };
    let run = device::run(&opts).unwrap_or_else(|e| panic!("{e}"));
    let exact = run.plugin_instructions.as_ref().expect("plugin counts");
    assert_eq!(exact.len(), opts.images);
    for (i, (image, &exact)) in run.images.iter().zip(exact).enumerate() {
        // SysTick rounds down to whole ticks and does not see the twenty-odd instructions
        // around its own reads; the plugin counts every instruction between the two markers.
        assert!(
            exact.abs_diff(image.instructions) <= 2 * device::INSNS_PER_TICK,
            "image {i}: plugin {exact}, SysTick {}",
            image.instructions
        );
    }
}
