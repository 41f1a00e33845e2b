//! Standard output of the command-line tools (`trainer`, `firmware-sim`): a reader that goes
//! away (`trainer list | head -1`) ends the program quietly with status 0, where `println!`
//! would panic on the broken pipe.

use std::io::{ErrorKind, Write};

/// Writes `text` to `out`; `Ok(false)` if the reader has gone away (a broken pipe), other
/// write errors as they are.
pub fn write_to(out: &mut impl Write, text: &str) -> std::io::Result<bool> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

/// Prints `text` and a newline on standard output; exits with status 0 if the reader has gone
/// away, and reports any other write error on standard error before exiting with status 1.
pub fn print_line(text: &str) {
    let mut line = String::with_capacity(text.len() + 1);
    line.push_str(text);
    line.push('\n');
    match write_to(&mut std::io::stdout().lock(), &line) {
        Ok(true) => {}
        Ok(false) => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::exit(1);
        }
    }
}

/// An error and its causes on one line, `outer: inner: ...`, each cause only if the text
/// before it does not already say it (most of our errors print their cause in their own
/// message, and a plain chain printed it twice).
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cause = e.source();
    }
    text
}

/// Prints `error` ([`error_text`]) on standard error as `error: ...`.
pub fn print_error(error: &(dyn std::error::Error + 'static)) {
    eprintln!("error: {}", error_text(error));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose reader has gone away.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An error with an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = E("No such file", None);
        let repeated = E("x.gz: cannot read: No such file", Some(Box::new(io)));
        assert_eq!(error_text(&repeated), "x.gz: cannot read: No such file");
        let chained = E("loading x", Some(Box::new(E("bad magic", None))));
        assert_eq!(error_text(&chained), "loading x: bad magic");
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        assert!(!write_to(&mut Closed, "x\n").unwrap());
        let mut buf = Vec::new();
        assert!(write_to(&mut buf, "x\n").unwrap());
        assert_eq!(buf, b"x\n");
    }
}
