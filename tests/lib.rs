//! Workspace-level tests. They live in `tests/*.rs` and are declared as `[[test]]` targets of
//! this package; this library is empty.
