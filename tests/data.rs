//! The committed dataset page, `reports/data.md`, is what `trainer data` writes: the test
//! recomputes every number from the dataset (the counts and means of every split, and the PCA
//! of all 60,000 training images) and renders the page with the command's own writer, so no
//! number on it is typed by hand or stale. The pictures it links must exist.
//!
//! Recomputing rather than reading saved statistics also catches a change to the statistics
//! code itself; it stays quick because the dev profile optimises the trainer and nalgebra (the
//! covariance is one 60,000 x 784 product, the eigendecomposition one 784 x 784 matrix).

use std::path::PathBuf;

use trainer::explore::{self, PAGE, PICTURE_FILES, PICTURES, SEED};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_data_page_is_what_the_command_writes() {
    let reports = root().join("reports");
    let page_path = reports.join(PAGE);
    let committed = std::fs::read_to_string(&page_path)
        .unwrap_or_else(|e| panic!("{}: {e}", page_path.display()));
    let dataset = fashion_mnist::load(None).expect("Fashion-MNIST (see README)");
    let exploration = explore::explore(&dataset, SEED).unwrap();
    let page = explore::page::render(&exploration);
    assert!(
        page == committed,
        "{}: stale; run `{}`",
        page_path.display(),
        explore::page::COMMAND
    );
    for file in PICTURE_FILES {
        let link = format!("]({PICTURES}/{file})");
        assert!(page.contains(&link), "the page does not link {file}");
        let path = reports.join(PICTURES).join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{}: not a PNG file",
            path.display()
        );
    }
}
