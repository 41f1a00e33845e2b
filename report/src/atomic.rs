//! Writing a file so that a reader sees either the old contents or the new, never a part: the
//! bytes go to a temporary file in the same folder, which is flushed to disk and renamed over
//! the target.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the [module docs](self)).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Make the rename itself durable; not every platform can open a folder.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.<name>.tmp-<pid>` beside `path`.
fn temporary(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// The process id in a temporary's name `.<name>.tmp-<pid>`, if `file_name` is one.
fn temporary_pid(file_name: &str) -> Option<u32> {
    let (head, pid) = file_name.rsplit_once(".tmp-")?;
    head.starts_with('.').then_some(())?;
    pid.parse().ok()
}

/// Whether process `pid` is running (always assumed so where `/proc` does not tell).
pub(crate) fn alive(pid: u32) -> bool {
    pid == std::process::id()
        || !Path::new("/proc/self").exists()
        || Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the temporaries that writers killed mid-write left in `dir` (those of processes no
/// longer running) and returns their paths. A folder that cannot be read has none.
pub fn clean_leftovers(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(temporary_pid)
                .is_some_and(|pid| !alive(pid))
        })
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write(&path, b"old").unwrap();
        write(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn leftovers_of_dead_writers_are_cleaned_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has id u32::MAX - 1; this one is alive.
        let dead = dir.path().join(format!(".a.fmq.tmp-{}", u32::MAX - 1));
        let ours = temporary(&dir.path().join("b.json"));
        let plain = dir.path().join("c.tmp-1");
        for p in [&dead, &ours, &plain] {
            std::fs::write(p, b"x").unwrap();
        }
        let removed = clean_leftovers(dir.path());
        if Path::new("/proc/self").exists() {
            assert_eq!(removed, vec![dead.clone()]);
            assert!(!dead.exists());
        }
        assert!(ours.exists() && plain.exists());
        assert_eq!(temporary_pid(".x.tmp-12"), Some(12));
        assert_eq!(temporary_pid("x.tmp-12"), None);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub");
        std::fs::create_dir(&path).unwrap();
        // Renaming a file over a folder fails: the folder stays, the temporary is removed.
        assert!(write(&path, b"x").is_err());
        assert!(path.is_dir());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
