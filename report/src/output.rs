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

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        assert!(!write_to(&mut Closed, "x\n").unwrap());
        let mut buf = Vec::new();
        assert!(write_to(&mut buf, "x\n").unwrap());
        assert_eq!(buf, b"x\n");
    }
}
