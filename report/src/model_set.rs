//! Replacing the files of one model, `<id>.fmq`, `<id>.json` and `<id>.safetensors`, as one
//! set: a reader, or a run after a crash, finds the whole old set or the whole new one, never a
//! new `.fmq` beside an old report.
//!
//! [`replace`] works in three phases of file operations:
//!
//! 1. **Stage**: every new file is written beside its target as `.<id>.<ext>.staged-<pid>` and
//!    flushed to disk. The staged files are read back and verified: the JSON is a report of this
//!    id, the `.fmq` loads in infer-core and belongs to the JSON ([`check_pair`]: id, length,
//!    CRC), the `.safetensors` has the length the JSON records, and a report with an int8
//!    record has its `.fmq`. A set that fails is removed again and the old one stays.
//! 2. **Commit**: a journal naming every rename and removal is staged and renamed to
//!    `.<id>.commit-<pid>`; that rename is the commit point.
//! 3. **Apply**: each staged file is renamed over its target, the old set's files the new one
//!    lacks are removed, and then the journal.
//!
//! [`recover`] finishes what an interrupted writer left (a killed process, a second Ctrl-C, a
//! power cut): a journal is rolled forward (its remaining renames and removals done) and staged
//! files without one are removed (rolled back). It touches only the files of processes that no
//! longer run, and this process's own: one process writes a folder's sets one at a time, and two
//! processes must not write the same model's set in one folder at once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use infer_core::Model;
use serde::{Deserialize, Serialize};

use crate::HOST_MAX_OPS;
use crate::schema::ModelReport;

/// Why a set could not be verified, written or recovered. Every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The new JSON is not a model report.
    #[error("{path}: not a model report: {source}")]
    Report {
        /// The JSON file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The new JSON describes another model.
    #[error("{path}: describes `{found}`, not `{expected}`")]
    WrongId {
        /// The JSON file.
        path: PathBuf,
        /// The set's id.
        expected: String,
        /// The report's id.
        found: String,
    },
    /// infer-core rejects the `.fmq`.
    #[error("{path}: infer-core rejects the model: {error}")]
    Rejected {
        /// The model file.
        path: PathBuf,
        /// infer-core's reason.
        error: infer_core::Error,
    },
    /// The `.fmq` and the JSON are not of one export.
    #[error("{} and {} do not belong together: {why}", fmq.display(), json.display())]
    Mismatch {
        /// The model file.
        fmq: PathBuf,
        /// The report.
        json: PathBuf,
        /// What differs.
        why: Mismatch,
    },
    /// The report records an int8 export whose `.fmq` the set lacks.
    #[error("{} records an int8 export, but the set has no {}", json.display(), fmq.display())]
    MissingModel {
        /// The report.
        json: PathBuf,
        /// The model file it needs.
        fmq: PathBuf,
    },
    /// The `.safetensors` is not the one the report records.
    #[error("{path}: {found} bytes, but the report records {recorded}")]
    WeightsLength {
        /// The weights file.
        path: PathBuf,
        /// The length the report records.
        recorded: u64,
        /// The file's length.
        found: u64,
    },
    /// A journal left by an interrupted writer cannot be read.
    #[error("{path}: not a model-set journal: {source}")]
    Journal {
        /// The journal.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A journal names a file outside its folder.
    #[error("{path}: names `{name}`, which is not a file name in its folder")]
    JournalName {
        /// The journal.
        path: PathBuf,
        /// The offending name.
        name: String,
    },
    /// The writer stopped on purpose after this many file operations, as if killed there
    /// ([`SetWriter::failing_after`]; recovery tests only). Nothing was cleaned up.
    #[error("{dir}: set writer stopped after {ops} file operations")]
    Interrupted {
        /// The folder.
        dir: PathBuf,
        /// File operations done.
        ops: usize,
    },
}

/// How a `.fmq` and a report differ ([`SetError::Mismatch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The model file holds another model than the report (or than its file name says).
    #[error("the model file holds `{model}`, the report describes `{report}`")]
    Id {
        /// The id in the model file.
        model: String,
        /// The report's id.
        report: String,
    },
    /// The report records another file length.
    #[error("the report records a {recorded}-byte model file, this one has {actual} bytes")]
    Length {
        /// Recorded length.
        recorded: u64,
        /// The file's length.
        actual: u64,
    },
    /// The report records another payload CRC.
    #[error("the report records CRC {recorded:08x}, the file has {actual:08x}")]
    Crc {
        /// Recorded CRC-32.
        recorded: u32,
        /// The file's CRC-32.
        actual: u32,
    },
}

/// Checks that the model file `fmq` (its `bytes`, whose model says it is `model_id`) and the
/// report `json` belong together: one id (also the model file's name), and the int8 record's
/// file length and CRC (where recorded) are this file's. An interrupted export or a copied file
/// can leave a pair that does not; it must not pass for the model the report describes.
pub fn check_pair(
    fmq: &Path,
    bytes: &[u8],
    model_id: &str,
    json: &Path,
    report: &ModelReport,
) -> Result<(), SetError> {
    let mismatch = |why| SetError::Mismatch {
        fmq: fmq.to_path_buf(),
        json: json.to_path_buf(),
        why,
    };
    let stem = fmq.file_stem().map(|s| s.to_string_lossy().into_owned());
    if stem.as_deref() != Some(model_id) || report.id != model_id {
        return Err(mismatch(Mismatch::Id {
            model: model_id.to_string(),
            report: report.id.clone(),
        }));
    }
    if let Some(int8) = &report.int8 {
        if int8.model_bytes != bytes.len() as u64 {
            return Err(mismatch(Mismatch::Length {
                recorded: int8.model_bytes,
                actual: bytes.len() as u64,
            }));
        }
        let actual = infer_core::format::Header::from_bytes(bytes)
            .map_err(|error| SetError::Rejected {
                path: fmq.to_path_buf(),
                error,
            })?
            .crc32;
        if let Some(recorded) = int8.fmq_crc32.filter(|&r| r != actual) {
            return Err(mismatch(Mismatch::Crc { recorded, actual }));
        }
    }
    Ok(())
}

/// What a new set does with one of the files beside its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Member {
    /// Write these bytes.
    Write(Vec<u8>),
    /// Keep the file as it is (or absent, if it is).
    Keep,
    /// Remove the file: the new set has none.
    Remove,
}

/// The new files of one model: its report always, its `.fmq` and `.safetensors` as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSet {
    /// Model id: the files are `<id>.json`, `<id>.fmq`, `<id>.safetensors`.
    pub id: String,
    /// The report, as [`ModelReport::to_bytes`] writes it.
    pub json: Vec<u8>,
    /// The int8 model.
    pub fmq: Member,
    /// The float weights.
    pub safetensors: Member,
}

/// The journal of a committed set: what is left to do to apply it.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    /// Model id.
    id: String,
    /// `(staged file, target file)` names, in the set's folder.
    renames: Vec<(String, String)>,
    /// Names of files to remove, in the set's folder.
    removals: Vec<String>,
}

/// Held while a set is committed and applied: [`hold_commits`] waits for a commit in progress
/// to finish and keeps new ones from starting.
static COMMITS: Mutex<()> = Mutex::new(());

/// Waits until no set of this process is between its commit point and its last rename, and keeps
/// any from starting while the guard lives: a Ctrl-C handler that exits takes it first, so that
/// an export finishes its set or has not committed it.
pub fn hold_commits() -> MutexGuard<'static, ()> {
    COMMITS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes sets ([`SetWriter::replace`]); [`SetWriter::failing_after`] makes one that stops
/// part-way, to test [`recover`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetWriter {
    fail_after: Option<usize>,
}

/// Counts a writer's file operations and stops it where [`SetWriter::failing_after`] says.
struct Ops<'a> {
    dir: &'a Path,
    done: usize,
    fail_after: Option<usize>,
}

impl Ops<'_> {
    /// Called before each file operation.
    fn next(&mut self) -> Result<(), SetError> {
        if self.fail_after == Some(self.done) {
            return Err(SetError::Interrupted {
                dir: self.dir.to_path_buf(),
                ops: self.done,
            });
        }
        self.done += 1;
        Ok(())
    }
}

impl SetWriter {
    /// A writer that completes its sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer that stops before its file operation number `ops` (0: before the first), as a
    /// killed process would: it returns [`SetError::Interrupted`] and cleans nothing up. A file
    /// operation is one staged file written and flushed, one rename or one removal.
    pub fn failing_after(ops: usize) -> Self {
        Self {
            fail_after: Some(ops),
        }
    }

    /// Replaces the set `set.id` in `dir` (see the [module docs](self)), creating the folder if
    /// needed; first recovers what an earlier writer left in `dir`. On an error, the folder holds the old set or, once the set
    /// is committed, the new one.
    pub fn replace(&self, dir: &Path, set: &NewSet) -> Result<(), SetError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        recover(dir)?;
        let mut ops = Ops {
            dir,
            done: 0,
            fail_after: self.fail_after,
        };
        match write_set(dir, set, &mut ops) {
            Ok(()) => Ok(()),
            Err(e @ SetError::Interrupted { .. }) => Err(e),
            Err(e) => {
                // Roll back what is staged, or forward what is committed; the first error is
                // the one to report.
                let _ = recover(dir);
                Err(e)
            }
        }
    }
}

/// Replaces the set `set.id` in `dir` with [`SetWriter::new`].
pub fn replace(dir: &Path, set: &NewSet) -> Result<(), SetError> {
    SetWriter::new().replace(dir, set)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetError + '_ {
    move |source| SetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn staged_name(id: &str, ext: &str) -> String {
    format!(".{id}.{ext}.staged-{}", std::process::id())
}

fn journal_name(id: &str) -> String {
    format!(".{id}.commit-{}", std::process::id())
}

/// Creates `path` with `bytes` and flushes it to disk.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), SetError> {
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

/// Makes renames and removals in `dir` durable; not every platform can open a folder.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_set(dir: &Path, set: &NewSet, ops: &mut Ops<'_>) -> Result<(), SetError> {
    let id = &set.id;
    let target = |ext: &str| format!("{id}.{ext}");
    let mut renames = Vec::new();
    let mut removals = Vec::new();
    for (ext, member) in [
        ("json", Some(&set.json)),
        ("fmq", member_bytes(&set.fmq)),
        ("safetensors", member_bytes(&set.safetensors)),
    ] {
        if let Some(bytes) = member {
            let staged = staged_name(id, ext);
            ops.next()?;
            write_synced(&dir.join(&staged), bytes)?;
            renames.push((staged, target(ext)));
        }
    }
    for (ext, member) in [("fmq", &set.fmq), ("safetensors", &set.safetensors)] {
        if *member == Member::Remove {
            removals.push(target(ext));
        }
    }
    verify_staged(dir, id, &renames, &removals)?;

    let journal = Journal {
        id: id.clone(),
        renames,
        removals,
    };
    let text = serde_json::to_vec(&journal).map_err(|source| SetError::Journal {
        path: dir.join(journal_name(id)),
        source,
    })?;
    let staged_journal = dir.join(staged_name(id, "journal"));
    ops.next()?;
    write_synced(&staged_journal, &text)?;

    let _commit = hold_commits();
    let journal_path = dir.join(journal_name(id));
    ops.next()?;
    std::fs::rename(&staged_journal, &journal_path).map_err(io(&journal_path))?;
    sync_dir(dir);
    apply(dir, &journal_path, &journal, Some(ops))
}

fn member_bytes(member: &Member) -> Option<&Vec<u8>> {
    match member {
        Member::Write(bytes) => Some(bytes),
        Member::Keep | Member::Remove => None,
    }
}

/// Does what is left of a committed `journal` (at `journal_path`) and removes it.
fn apply(
    dir: &Path,
    journal_path: &Path,
    journal: &Journal,
    mut ops: Option<&mut Ops<'_>>,
) -> Result<(), SetError> {
    for (staged, target) in &journal.renames {
        let staged = dir.join(staged);
        if let Some(ops) = ops.as_deref_mut() {
            ops.next()?;
        }
        match std::fs::rename(&staged, dir.join(target)) {
            Ok(()) => {}
            // Renamed before an interruption.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&staged)(e)),
        }
    }
    for name in &journal.removals {
        let path = dir.join(name);
        if let Some(ops) = ops.as_deref_mut() {
            ops.next()?;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    sync_dir(dir);
    if let Some(ops) = ops {
        ops.next()?;
    }
    std::fs::remove_file(journal_path).map_err(io(journal_path))?;
    sync_dir(dir);
    Ok(())
}

/// Verifies the staged files of set `id` (`renames`: staged and target names in `dir`) with the
/// files the set keeps (`removals`: target names the set removes).
fn verify_staged(
    dir: &Path,
    id: &str,
    renames: &[(String, String)],
    removals: &[String],
) -> Result<(), SetError> {
    let new_file = |ext: &str| -> Option<PathBuf> {
        let target = format!("{id}.{ext}");
        if removals.contains(&target) {
            return None;
        }
        Some(
            renames
                .iter()
                .find(|(_, t)| *t == target)
                .map_or_else(|| dir.join(&target), |(s, _)| dir.join(s)),
        )
    };
    let json = new_file("json").unwrap_or_else(|| dir.join(format!("{id}.json")));
    verify_files(
        dir,
        id,
        &json,
        new_file("fmq").as_deref(),
        new_file("safetensors").as_deref(),
    )
}

/// Verifies the set `id` in `dir` as it is on disk: what a completed [`replace`] leaves.
pub fn verify(dir: &Path, id: &str) -> Result<(), SetError> {
    let file = |ext: &str| dir.join(format!("{id}.{ext}"));
    verify_files(
        dir,
        id,
        &file("json"),
        Some(&file("fmq")),
        Some(&file("safetensors")),
    )
}

/// Reads `path`, `None` if it is absent (or not given).
fn read_optional(path: Option<&Path>, name: &Path) -> Result<Option<Vec<u8>>, SetError> {
    let Some(path) = path else {
        return Ok(None);
    };
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(name)(e)),
    }
}

/// Verifies the files `json`, `fmq` and `safetensors` (read from wherever they are; `None` or a
/// missing file: the set has none) as the set `id` of `dir`; errors name the files by their
/// place in the set.
fn verify_files(
    dir: &Path,
    id: &str,
    json: &Path,
    fmq: Option<&Path>,
    safetensors: Option<&Path>,
) -> Result<(), SetError> {
    let name = |ext: &str| dir.join(format!("{id}.{ext}"));
    let (json_name, fmq_name, weights_name) = (name("json"), name("fmq"), name("safetensors"));
    let text = std::fs::read(json).map_err(io(&json_name))?;
    let report: ModelReport = serde_json::from_slice(&text).map_err(|source| SetError::Report {
        path: json_name.clone(),
        source,
    })?;
    if report.id != id {
        return Err(SetError::WrongId {
            path: json_name,
            expected: id.to_string(),
            found: report.id,
        });
    }
    match read_optional(fmq, &fmq_name)? {
        Some(bytes) => {
            let model =
                Model::<HOST_MAX_OPS>::from_bytes(&bytes).map_err(|error| SetError::Rejected {
                    path: fmq_name.clone(),
                    error,
                })?;
            check_pair(&fmq_name, &bytes, model.id(), &json_name, &report)?;
        }
        None if report.int8.is_some() => {
            return Err(SetError::MissingModel {
                json: json_name,
                fmq: fmq_name,
            });
        }
        None => {}
    }
    let Some(weights) = safetensors else {
        return Ok(());
    };
    match std::fs::metadata(weights) {
        Ok(m) if m.len() != report.float.safetensors_bytes => Err(SetError::WeightsLength {
            path: weights_name,
            recorded: report.float.safetensors_bytes,
            found: m.len(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&weights_name)(e)),
    }
}

/// What [`recover`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Models whose committed set was completed (rolled forward).
    pub rolled_forward: Vec<String>,
    /// Staged files of uncommitted sets, removed (rolled back).
    pub removed: Vec<PathBuf>,
}

impl Recovered {
    /// Whether there was nothing to recover.
    pub fn is_empty(&self) -> bool {
        self.rolled_forward.is_empty() && self.removed.is_empty()
    }
}

/// The process id in `name` after `marker`, for names `.<...><marker><pid>`.
fn pid_after(name: &str, marker: &str) -> Option<u32> {
    let (head, pid) = name.rsplit_once(marker)?;
    head.starts_with('.').then_some(())?;
    pid.parse().ok()
}

/// Whether a file of process `pid` is ours to recover: it is this process's, or the process no
/// longer runs.
fn recoverable(pid: u32) -> bool {
    pid == std::process::id() || !crate::atomic::alive(pid)
}

/// Whether `name` is a plain file name (no folder, not `.` or `..`).
fn plain_name(name: &str) -> bool {
    let path = Path::new(name);
    path.file_name().is_some_and(|n| n == name) && path.components().count() == 1
}

/// Finishes what interrupted set writers left in `dir` (see the [module docs](self)): rolls
/// committed sets forward and removes the staged files of the others. A missing folder has
/// nothing to recover.
pub fn recover(dir: &Path) -> Result<Recovered, SetError> {
    let mut recovered = Recovered::default();
    let names = |dir: &Path| -> Result<Vec<String>, SetError> {
        match std::fs::read_dir(dir) {
            Ok(entries) => Ok(entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(dir)(e)),
        }
    };
    let mut journals: Vec<String> = names(dir)?
        .into_iter()
        .filter(|n| pid_after(n, ".commit-").is_some_and(recoverable))
        .collect();
    journals.sort();
    for name in journals {
        let path = dir.join(&name);
        let text = std::fs::read(&path).map_err(io(&path))?;
        let journal: Journal =
            serde_json::from_slice(&text).map_err(|source| SetError::Journal {
                path: path.clone(),
                source,
            })?;
        let bad = journal
            .renames
            .iter()
            .flat_map(|(s, t)| [s, t])
            .chain(&journal.removals)
            .find(|n| !plain_name(n));
        if let Some(bad) = bad {
            return Err(SetError::JournalName {
                path,
                name: bad.clone(),
            });
        }
        apply(dir, &path, &journal, None)?;
        recovered.rolled_forward.push(journal.id);
    }
    for name in names(dir)? {
        if pid_after(&name, ".staged-").is_some_and(recoverable) {
            let path = dir.join(&name);
            std::fs::remove_file(&path).map_err(io(&path))?;
            recovered.removed.push(path);
        }
    }
    if !recovered.removed.is_empty() {
        sync_dir(dir);
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
    }

    /// The committed set of `s5-ann`: `(json, fmq, safetensors)` bytes.
    fn old_set() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let read = |ext: &str| std::fs::read(models().join(format!("s5-ann.{ext}"))).unwrap();
        (read("json"), read("fmq"), read("safetensors"))
    }

    /// Another valid set under the id `s5-ann`: `s5-cnn`'s files, renamed inside.
    fn new_set() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let read = |ext: &str| std::fs::read(models().join(format!("s5-cnn.{ext}"))).unwrap();
        let mut model = infer_core::format::OwnedModel::from_bytes(&read("fmq")).unwrap();
        model.id = "s5-ann".into();
        let fmq = model.to_bytes().unwrap();
        let mut report: ModelReport = serde_json::from_slice(&read("json")).unwrap();
        report.id = "s5-ann".into();
        let int8 = report.int8.as_mut().unwrap();
        int8.model_bytes = fmq.len() as u64;
        int8.fmq_crc32 = Some(infer_core::format::Header::from_bytes(&fmq).unwrap().crc32);
        (report.to_bytes().unwrap(), fmq, read("safetensors"))
    }

    fn write_old(dir: &Path) {
        let (json, fmq, weights) = old_set();
        std::fs::write(dir.join("s5-ann.json"), json).unwrap();
        std::fs::write(dir.join("s5-ann.fmq"), fmq).unwrap();
        std::fs::write(dir.join("s5-ann.safetensors"), weights).unwrap();
    }

    /// The folder's files and their bytes, by name.
    fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    fn expected(json: Vec<u8>, fmq: Option<Vec<u8>>, weights: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        let mut files = vec![
            ("s5-ann.json".to_string(), json),
            ("s5-ann.safetensors".to_string(), weights),
        ];
        if let Some(fmq) = fmq {
            files.push(("s5-ann.fmq".to_string(), fmq));
        }
        files.sort();
        files
    }

    #[test]
    fn an_interruption_after_any_operation_recovers_to_the_old_or_the_new_set() {
        let (old_json, old_fmq, old_weights) = old_set();
        let (new_json, new_fmq, new_weights) = new_set();
        let old = expected(old_json.clone(), Some(old_fmq.clone()), old_weights.clone());
        // A train-only run replacing an exported set: new float report and weights, no int8.
        let mut float_only: ModelReport = serde_json::from_slice(&new_json).unwrap();
        float_only.int8 = None;
        let float_only = float_only.to_bytes().unwrap();
        // An export of the weights already there: new report and `.fmq`, weights kept. The
        // committed s5-ann weights with s5-cnn's report would not verify, so the new report
        // records the kept weights' length.
        let mut exported: ModelReport = serde_json::from_slice(&new_json).unwrap();
        exported.float.safetensors_bytes = old_weights.len() as u64;
        let exported = exported.to_bytes().unwrap();
        let scenarios = [
            (
                "whole set",
                NewSet {
                    id: "s5-ann".into(),
                    json: new_json.clone(),
                    fmq: Member::Write(new_fmq.clone()),
                    safetensors: Member::Write(new_weights.clone()),
                },
                expected(new_json.clone(), Some(new_fmq.clone()), new_weights.clone()),
            ),
            (
                "float only",
                NewSet {
                    id: "s5-ann".into(),
                    json: float_only.clone(),
                    fmq: Member::Remove,
                    safetensors: Member::Write(new_weights.clone()),
                },
                expected(float_only, None, new_weights),
            ),
            (
                "export",
                NewSet {
                    id: "s5-ann".into(),
                    json: exported.clone(),
                    fmq: Member::Write(new_fmq.clone()),
                    safetensors: Member::Keep,
                },
                expected(exported, Some(new_fmq), old_weights),
            ),
        ];
        for (name, set, new) in scenarios {
            let mut outcomes = Vec::new();
            for k in 0.. {
                assert!(k < 50, "{name}: the writer never completes");
                let dir = tempfile::tempdir().unwrap();
                write_old(dir.path());
                let result = SetWriter::failing_after(k).replace(dir.path(), &set);
                let done = match result {
                    Ok(()) => true,
                    Err(SetError::Interrupted { ops, .. }) => {
                        assert_eq!(ops, k);
                        false
                    }
                    Err(e) => panic!("{name}, op {k}: {e}"),
                };
                recover(dir.path()).unwrap();
                let now = contents(dir.path());
                let is_new = if now == old {
                    false
                } else {
                    assert!(
                        now == new,
                        "{name}, op {k}: neither the old set nor the new"
                    );
                    true
                };
                verify(dir.path(), "s5-ann").unwrap();
                outcomes.push(is_new);
                if done {
                    break;
                }
            }
            // Old until the commit point, new from there on; complete without interruption.
            let first_new = outcomes.iter().position(|&n| n).unwrap();
            assert!(
                outcomes[first_new..].iter().all(|&n| n),
                "{name}: {outcomes:?}"
            );
            assert!(first_new >= 2, "{name}: {outcomes:?}");
            assert!(outcomes.len() > first_new + 1, "{name}: {outcomes:?}");
        }
    }

    #[test]
    fn a_set_that_does_not_verify_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        write_old(dir.path());
        let before = contents(dir.path());
        let (new_json, new_fmq, new_weights) = new_set();
        let (old_json, _, _) = old_set();
        let cases = [
            // The new `.fmq` beside the old report.
            (
                old_json,
                Member::Write(new_fmq.clone()),
                "do not belong together",
            ),
            // The new report with the old `.fmq` kept.
            (new_json.clone(), Member::Keep, "do not belong together"),
            // An int8 record without its model.
            (new_json.clone(), Member::Remove, "records an int8 export"),
            // A file infer-core rejects.
            (
                new_json,
                Member::Write(b"FMQ8 not a model".to_vec()),
                "infer-core rejects",
            ),
        ];
        for (json, fmq, why) in cases {
            let set = NewSet {
                id: "s5-ann".into(),
                json,
                fmq,
                safetensors: Member::Write(new_weights.clone()),
            };
            let e = replace(dir.path(), &set).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("s5-ann."), "{e}");
            assert!(contents(dir.path()) == before, "{e}: the old set changed");
        }
    }

    #[test]
    fn recovery_leaves_the_files_of_running_writers() {
        let dir = tempfile::tempdir().unwrap();
        write_old(dir.path());
        // Process 1 runs (init); u32::MAX - 1 does not.
        let live = dir.path().join(".s5-ann.fmq.staged-1");
        let dead = dir
            .path()
            .join(format!(".s5-ann.fmq.staged-{}", u32::MAX - 1));
        std::fs::write(&live, b"x").unwrap();
        std::fs::write(&dead, b"x").unwrap();
        let recovered = recover(dir.path()).unwrap();
        if Path::new("/proc/self").exists() {
            assert_eq!(recovered.removed, vec![dead.clone()]);
            assert!(live.exists() && !dead.exists());
        }
        // A journal naming a file outside the folder is refused, not followed.
        let journal = dir
            .path()
            .join(format!(".s5-ann.commit-{}", std::process::id()));
        std::fs::write(
            &journal,
            r#"{"id":"s5-ann","renames":[],"removals":["../x"]}"#,
        )
        .unwrap();
        let e = recover(dir.path()).unwrap_err().to_string();
        assert!(e.contains("../x") && e.contains(".s5-ann.commit-"), "{e}");
    }
}
