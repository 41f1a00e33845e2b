//! The README's speed tables are the ones `bench/compare.py` wrote to `bench/results.md` in the
//! same run (`--update-readme README.md`), so no speed figure in the README is typed by hand.

use std::path::PathBuf;

use model_report::markdown::BENCH;

fn read(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn readme_speed_tables_are_those_of_bench_results() {
    let readme = read("README.md");
    let results = read("bench/results.md");
    let block = BENCH
        .body(&readme)
        .expect("README has bench:begin and bench:end markers, in order");
    // First paragraph: how and where it was measured; then the tables, verbatim.
    let (provenance, tables) = block
        .trim()
        .split_once("\n\n")
        .expect("a provenance line, a blank line, then the tables");
    assert!(
        provenance.contains("python3 bench/compare.py"),
        "the README block names its command: {provenance}"
    );
    let tables = tables.trim();
    assert!(
        tables.contains("| s5-cnn |") && tables.contains("trainer / PyTorch"),
        "the README block holds the training and inference tables"
    );
    assert!(
        results.contains(tables),
        "README speed tables differ from bench/results.md: rerun \
         `python3 bench/compare.py --update-readme README.md`"
    );
}
