//! Helpers shared by the CLI integration tests (`mod common;` in each test file).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `zoology` binary under test with `args`.
pub fn zoology(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zoology")).args(args).output().unwrap()
}

/// stdout then stderr of a finished command, as one string.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// (stdout, stderr) of a finished command.
pub fn streams(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A fresh, empty directory `$TMP/zoology-test-<tag>-<pid>` (removed first if it exists).
pub fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("zoology-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
