//! The Cortex-M4 firmware under QEMU (mps2-an386) against infer-core on the host, for every
//! committed model.
//!
//! Every `models/<id>.fmq` whose report has a `firmware` record is built into `firmware/` with
//! its first [`device::images_for`] test images (200, fewer for models over 5M MACs, at least
//! 20) and run under `qemu-system-arm`; its logits must be bit-identical to infer-core's on the
//! host for the same images, its accuracy the host's, the LeNet budgets must hold, and the
//! committed record must be exactly what this run measures. Every other `.fmq` must be one that
//! cannot fit the board with its test images. Without QEMU the tests fail (CI installs it).
//!
//! One more run checks our instruction-counting QEMU plugin (`tools/qemu-insn-count.c`, built
//! here with the system C compiler) against the SysTick counts.

use std::path::PathBuf;
use std::process::Command;

use firmware_sim::device::{self, Board, DeviceOptions, DeviceRun, ModelNeeds};
use firmware_sim::model_files;
use model_report::ModelReport;

/// LeNet budget for flash (code and model, without the embedded test images).
const LENET_FLASH_BUDGET: u64 = 96 * 1024;
/// LeNet budget for RAM (static data, scratch and measured peak stack).
const LENET_RAM_BUDGET: u64 = 24 * 1024;

/// How the committed records are regenerated.
const REGENERATE: &str =
    "cargo run --release -p firmware-sim -- device --update-json --update-readme README.md";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.fmq` in `models/` with its report (panics naming the file that cannot be read).
fn committed_models() -> Vec<ModelReport> {
    let models = root().join("models");
    model_files(&models)
        .unwrap()
        .iter()
        .map(|fmq| ModelReport::read(&fmq.with_extension("json")).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// What is wrong with one model's run, if anything.
fn check(
    report: &ModelReport,
    result: Result<DeviceRun, device::DeviceError>,
    test: &fashion_mnist::Split,
) -> Result<(), String> {
    let id = report.id.as_str();
    let run = result.map_err(|e| format!("{id}: {e}"))?;
    let model_path = root().join("models").join(format!("{id}.fmq"));
    let host = device::host_predictions(&model_path, test, run.images.len())
        .map_err(|e| format!("{id} on the host: {e}"))?;
    let mismatches = device::mismatches(&run, &host);
    println!("{}", device::describe(&run, mismatches.len()));
    let measured = run.report();

    let mut wrong = Vec::new();
    if let Some((i, d, h)) = mismatches.first() {
        wrong.push(format!(
            "{} images differ between device and host, first: image {i}: device {} {:?}, \
             host {h:?}",
            mismatches.len(),
            d.class,
            d.logits
        ));
    }
    let host_correct = host
        .iter()
        .zip(&test.labels)
        .filter(|((class, _), label)| *class == usize::from(**label))
        .count();
    if run.correct != host_correct {
        wrong.push(format!(
            "device {} correct, host {host_correct}",
            run.correct
        ));
    }
    if run.scratch_len as u64 != measured.scratch_bytes {
        wrong.push(format!(
            "scratch: firmware {} B, ELF {} B",
            run.scratch_len, measured.scratch_bytes
        ));
    }
    if id == "s3-lenet-base" {
        let flash = measured.flash_code_bytes + measured.flash_model_bytes;
        if flash >= LENET_FLASH_BUDGET {
            wrong.push(format!("flash {flash} B over {LENET_FLASH_BUDGET} B"));
        }
        if measured.ram_total_bytes >= LENET_RAM_BUDGET {
            wrong.push(format!(
                "RAM {} B over {LENET_RAM_BUDGET} B",
                measured.ram_total_bytes
            ));
        }
    }
    // Reports are read with exact float parsing (model-report), so every field compares exactly.
    if report.firmware.as_ref() != Some(&measured) {
        wrong.push(format!(
            "models/{id}.json's `firmware` record is stale: run `{REGENERATE}`\ncommitted: \
             {:#?}\nmeasured: {measured:#?}",
            report.firmware
        ));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("{id}: {}", wrong.join("; ")))
    }
}

#[test]
fn every_measured_model_on_the_cortex_m4_matches_the_host_and_its_record() {
    let reports: Vec<ModelReport> = committed_models()
        .into_iter()
        .filter(|r| r.firmware.is_some())
        .collect();
    let ids: Vec<&str> = reports.iter().map(|r| r.id.as_str()).collect();
    assert!(
        ids.contains(&"s3-lenet-base"),
        "s3-lenet-base (the LeNet budgets) has no firmware record: run `{REGENERATE}`"
    );
    let test = fashion_mnist::load_test(None).expect("Fashion-MNIST test split (see README)");
    let runs: Vec<DeviceOptions> = reports
        .iter()
        .map(|r| DeviceOptions::new(root(), &r.id))
        .collect();
    let mut failures = Vec::new();
    device::run_all(&runs, device::DEFAULT_JOBS, |opts, result| {
        let report = reports.iter().find(|r| r.id == opts.model).unwrap();
        if let Err(e) = check(report, result, &test) {
            failures.push(e);
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {} models fail on the Cortex-M4:\n{}",
        failures.len(),
        ids.len(),
        failures.join("\n")
    );
    // The committed table, now checked against this run (tests/readme.rs checks README's copy).
    let all = ModelReport::read_dir(&root().join("models")).unwrap();
    println!("\n{}", device::readme_section(&all, &board()));
}

fn board() -> Board {
    Board::read(&root().join("firmware").join("memory.x")).unwrap()
}

#[test]
fn every_model_without_a_firmware_record_cannot_fit_the_board() {
    let board = board();
    let mut unmeasured = Vec::new();
    for report in committed_models().iter().filter(|r| r.firmware.is_none()) {
        let fmq = root().join("models").join(format!("{}.fmq", report.id));
        let needs = ModelNeeds::read(&fmq).unwrap_or_else(|e| panic!("{e}"));
        match needs.check_fits(&board, device::images_for(needs.macs)) {
            Err(e) => println!("{e}"),
            Ok(()) => unmeasured.push(report.id.clone()),
        }
    }
    assert!(
        unmeasured.is_empty(),
        "models that may fit the board but have no firmware record: {}; run `{REGENERATE}`",
        unmeasured.join(", ")
    );
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

    // 20 images: another ELF than the 200-image LeNet run, which may run at the same time.
    let opts = DeviceOptions {
        images: Some(20),
        plugin: Some(plugin),
        ..DeviceOptions::new(&root, "s3-lenet-base")
    };
    let run = device::run(&opts).unwrap_or_else(|e| panic!("{e}"));
    let exact = run.plugin_instructions.as_ref().expect("plugin counts");
    assert_eq!(exact.len(), 20);
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
