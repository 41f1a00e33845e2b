//! The committed study reports, `reports/<study>.md` and `.csv`, are what `trainer study
//! <study> --report-only` writes from the committed `models/<id>.json`, so no number in them is
//! typed by hand; and every gap of more than 1.5 points to a published number is explained.

use std::path::PathBuf;

use trainer::study::render;
use trainer::zoo::Study;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_study_reports_are_what_the_command_writes() {
    let mut checked = 0;
    for study in Study::ALL {
        let md_path = root().join(format!("reports/{}.md", study.key()));
        let Ok(committed_md) = std::fs::read_to_string(&md_path) else {
            continue;
        };
        let committed_csv =
            std::fs::read_to_string(root().join(format!("reports/{}.csv", study.key())))
                .expect("a .csv beside the .md");
        let (md, csv) = render(study, &root().join("models")).unwrap();
        let command = format!(
            "cargo run --release -p trainer -- study {} --report-only",
            study.key()
        );
        assert!(
            md == committed_md,
            "{}: stale; run `{command}`",
            md_path.display()
        );
        assert!(
            csv == committed_csv,
            "reports/{}.csv: stale; run `{command}`",
            study.key()
        );
        assert!(
            !md.contains("not yet explained"),
            "{}: a gap to the published number has no note (trainer/src/zoo/notes.rs)",
            md_path.display()
        );
        checked += 1;
    }
    println!("{checked} study reports checked");
}
