//! The committed per-model pages, `reports/<id>.md` with their pictures in `reports/<id>/`, the
//! index `reports/index.md` and the study charts are what `trainer report --reports reports`
//! writes from the committed `models/<id>.json` and `.fmq` files, byte for byte (PNG files
//! included: drawing is deterministic), so no number or picture in them is stale; and every
//! picture a committed page links exists and decodes as a PNG.

use std::path::{Path, PathBuf};

use trainer::model_pages::{self, COMMAND};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn committed_pages_and_pictures_are_what_the_command_writes() {
    let root = root();
    let dataset = fashion_mnist::load(None).expect("the Fashion-MNIST dataset (see README)");
    let out = tempfile::tempdir().unwrap();
    let written = model_pages::write_all(&root.join("models"), out.path(), &dataset).unwrap();
    assert!(written.len() > 10, "{} files written", written.len());
    for path in &written {
        let relative = path.strip_prefix(out.path()).unwrap();
        let committed = root.join("reports").join(relative);
        let fresh = std::fs::read(path).unwrap();
        match std::fs::read(&committed) {
            Ok(bytes) => assert!(
                bytes == fresh,
                "reports/{}: stale; run `{COMMAND}`",
                relative.display()
            ),
            Err(e) => panic!(
                "reports/{}: {e}; run `{COMMAND}` and commit it",
                relative.display()
            ),
        }
    }
    // No page or picture folder is left of a model without a report.
    for arch in trainer::arch::all() {
        let page = Path::new("reports").join(format!("{}.md", arch.id));
        if root.join(&page).exists() || root.join("reports").join(arch.id).exists() {
            assert!(
                written.contains(&out.path().join(format!("{}.md", arch.id))),
                "{}: a page of a model without models/{}.json; delete it and its folder",
                page.display(),
                arch.id
            );
        }
    }
}

/// The targets of the Markdown image links `![..](target.png)` in `text`.
fn png_links(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &text[i + 2..];
            let end = rest.find(')')?;
            Some(&rest[..end]).filter(|t| t.ends_with(".png"))
        })
        .collect()
}

/// Decodes the PNG file at `path` completely; its width and height.
fn decode(path: &Path) -> (u32, u32) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", path.display()));
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane picture size")];
    let info = reader
        .next_frame(&mut pixels)
        .unwrap_or_else(|e| panic!("{}: cannot decode: {e}", path.display()));
    (info.width, info.height)
}

#[test]
fn every_picture_a_committed_page_links_exists_and_decodes() {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("reports")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut pictures = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        let dir = page.parent().unwrap();
        for link in png_links(&text) {
            let (w, h) = decode(&dir.join(link));
            assert!(w > 100 && h > 100, "{link} in {}: {w}x{h}", page.display());
            pictures += 1;
        }
    }
    // Four pictures a page at most, and at least the curves and confusion matrices of each.
    let models = model_report::ModelReport::read_dir(&root.join("models")).unwrap();
    assert!(pictures >= 2 * models.len(), "{pictures} pictures");
    assert!(
        png_links("a ![x](a/b.png) [y](c.md) ![z](d.png)") == ["a/b.png", "d.png"],
        "the link parser"
    );
}
