//! The README's results table is the one `trainer report` generates from `models/*.json`, and its
//! firmware table the one `firmware-sim device` generates from them, so no figure in it is typed
//! by hand; and the reports themselves are in the one writer's format.

use std::path::PathBuf;

use firmware_sim::device;
use model_report::markdown::{FIRMWARE, RESULTS};
use model_report::{ModelReport, summary_table};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn readme_table_matches_the_committed_reports() {
    let root = root();
    let reports = ModelReport::read_dir(&root.join("models")).unwrap();
    let table = summary_table(&reports);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let regenerated = RESULTS.replace(&readme, &table).expect("markers in README");
    assert!(
        regenerated == readme,
        "README results are stale: run `cargo run --release -p trainer -- report --update-readme README.md`"
    );
    let board = device::Board::read(&root.join("firmware").join("memory.x")).unwrap();
    let firmware = device::readme_section(&reports, &board);
    let regenerated = FIRMWARE
        .replace(&readme, &firmware)
        .expect("firmware markers in README");
    assert!(
        regenerated == readme,
        "README firmware table is stale: run `cargo run --release -p firmware-sim -- device \
         --update-json --update-readme README.md`"
    );
}

#[test]
fn committed_reports_are_what_the_writer_writes() {
    // The trainer and `firmware-sim device --update-json` both rewrite `models/<id>.json` through
    // `ModelReport::write`: a report read and written back must be byte-identical, or updating
    // one record would silently change the others.
    let models = root().join("models");
    let out = tempfile::tempdir().unwrap();
    for report in ModelReport::read_dir(&models).unwrap() {
        let name = format!("{}.json", report.id);
        report.write(&out.path().join(&name)).unwrap();
        let written = std::fs::read_to_string(out.path().join(&name)).unwrap();
        let committed = std::fs::read_to_string(models.join(&name)).unwrap();
        assert!(
            written == committed,
            "models/{name} is not in the writer's format"
        );
    }
}
