//! Generated Markdown: sections between two HTML-comment markers, rewritten from the reports so
//! no figure in a README is typed by hand, and the results table of the models.

use std::path::Path;

use crate::schema::{ModelReport, ReportError};

/// A generated section of a Markdown file: everything between the line holding `begin` and the
/// one holding `end` belongs to the generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// The opening marker.
    pub begin: &'static str,
    /// The closing marker.
    pub end: &'static str,
}

/// README's results table ([`summary_table`], written by `trainer report --update-readme`).
pub const RESULTS: Section = Section {
    begin: "<!-- results:begin -->",
    end: "<!-- results:end -->",
};

/// README's firmware table (written by `firmware-sim device --update-readme`).
pub const FIRMWARE: Section = Section {
    begin: "<!-- firmware:begin -->",
    end: "<!-- firmware:end -->",
};

/// README's speed tables (written by `bench/compare.py --update-readme`).
pub const BENCH: Section = Section {
    begin: "<!-- bench:begin -->",
    end: "<!-- bench:end -->",
};

impl Section {
    /// The text between the markers, or `None` when they are missing or out of order.
    ///
    /// ```
    /// let text = "a <!-- bench:begin -->\nx\n<!-- bench:end --> b";
    /// assert_eq!(model_report::markdown::BENCH.body(text), Some("\nx\n"));
    /// ```
    pub fn body<'t>(&self, text: &'t str) -> Option<&'t str> {
        let start = text.find(self.begin)? + self.begin.len();
        let len = text[start..].find(self.end)?;
        Some(&text[start..start + len])
    }

    /// `text` with everything between the markers replaced by a newline and `body`, or `None`
    /// when the markers are missing or out of order.
    pub fn replace(&self, text: &str, body: &str) -> Option<String> {
        let start = text.find(self.begin)? + self.begin.len();
        let stop = start + text[start..].find(self.end)?;
        Some(format!("{}\n{body}{}", &text[..start], &text[stop..]))
    }

    /// Rewrites the section in the file at `path` with `body`.
    pub fn update_file(&self, path: &Path, body: &str) -> Result<(), ReportError> {
        let io = |source| ReportError::Io {
            path: path.display().to_string(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io)?;
        let new = self
            .replace(&text, body)
            .ok_or_else(|| ReportError::MissingSection {
                path: path.display().to_string(),
                begin: self.begin,
                end: self.end,
            })?;
        std::fs::write(path, new).map_err(io)
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}", 100.0 * x)
}

/// A Markdown table of the reports: float and int8 accuracy, agreement, sizes, and the minutes
/// its training took (the recorded epoch times summed: the machine that trained it, often beside
/// another run; validation passes included, test evaluation and export not).
pub fn summary_table(reports: &[ModelReport]) -> String {
    let mut out = String::from(
        "| model | params | epochs | train min | float acc % | int8 acc % | diff (pts) | agreement % | macro F1 (int8) | model bytes | scratch bytes | MACs |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let f = &r.float;
        let (int8, diff, agree, f1, bytes, scratch, macs) = match &r.int8 {
            Some(q) => (
                pct(q.test.accuracy),
                format!("{:+.2}", 100.0 * (q.test.accuracy - f.test.accuracy)),
                pct(q.agreement),
                format!("{:.4}", q.test.macro_f1),
                q.model_bytes.to_string(),
                q.scratch_bytes.to_string(),
                q.macs.to_string(),
            ),
            None => Default::default(),
        };
        out += &format!(
            "| {} | {} | {} | {:.1} | {} | {int8} | {diff} | {agree} | {f1} | {bytes} | {scratch} | {macs} |\n",
            r.id,
            f.param_count,
            f.options.epochs,
            f.history.iter().map(|e| e.seconds).sum::<f64>() / 60.0,
            pct(f.test.accuracy),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_between_markers() {
        let text = format!("intro\n{}\nold\n{}\nrest\n", RESULTS.begin, RESULTS.end);
        assert_eq!(
            RESULTS.replace(&text, "| t |\n").unwrap(),
            format!("intro\n{}\n| t |\n{}\nrest\n", RESULTS.begin, RESULTS.end)
        );
        assert_eq!(RESULTS.body(&text), Some("\nold\n"));
        // Another section's markers do not match.
        assert_eq!(FIRMWARE.replace(&text, "x"), None);
        assert_eq!(RESULTS.replace("no markers", "x"), None);
        let reversed = format!("{}\n{}\n", RESULTS.end, RESULTS.begin);
        assert_eq!(RESULTS.replace(&reversed, "x"), None);
    }

    #[test]
    fn a_file_without_the_section_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("README.md");
        std::fs::write(&path, "no markers\n").unwrap();
        let msg = FIRMWARE.update_file(&path, "x").unwrap_err().to_string();
        assert!(
            msg.contains("README.md") && msg.contains(FIRMWARE.begin),
            "{msg}"
        );
        std::fs::write(&path, format!("{}{}", FIRMWARE.begin, FIRMWARE.end)).unwrap();
        FIRMWARE.update_file(&path, "t\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\nt\n{}", FIRMWARE.begin, FIRMWARE.end)
        );
    }
}
