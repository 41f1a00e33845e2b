//! The README's results table is the one `trainer report` generates from `models/*.json`, and its
//! firmware table the one `firmware-sim device` generates from them, so no figure in it is typed
//! by hand.

use std::path::PathBuf;

use firmware_sim::device;
use trainer::report::{self, ModelReport};

#[test]
fn readme_table_matches_the_committed_reports() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let reports = ModelReport::read_dir(&root.join("models")).unwrap();
    let table = report::summary_table(&reports);
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let regenerated = report::replace_between_markers(&readme, &table).expect("markers in README");
    assert!(
        regenerated == readme,
        "README results are stale: run `cargo run --release -p trainer -- report --update-readme README.md`"
    );
    let firmware = device::readme_section(&reports);
    let regenerated =
        device::replace_section(&readme, device::README_BEGIN, device::README_END, &firmware)
            .expect("firmware markers in README");
    assert!(
        regenerated == readme,
        "README firmware table is stale: run `cargo run --release -p firmware-sim -- device \
         --update-json --update-readme README.md`"
    );
}
