//! The fuzz targets' bodies (`modelbus::fuzz_targets`) over every committed
//! input, on stable: the minimised corpus in `fuzz/corpus/<target>/` and the
//! inputs that once failed in `fuzz/regressions/<target>/`. Fuzzing itself
//! is `scripts/fuzz.sh` (nightly, cargo-fuzz).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// The input files of one directory, sorted; dot files and `README*` skipped.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

/// Runs `body` over the target's corpus (which must exist and hold inputs)
/// and its regression inputs (which may be absent), reporting every input
/// that panics, not only the first.
fn run(target: &str, body: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let corpus_dir = fuzz.join("corpus").join(target);
    assert!(corpus_dir.is_dir(), "{} is missing", corpus_dir.display());
    let corpus = inputs(&corpus_dir);
    assert!(!corpus.is_empty(), "{} holds no inputs", corpus_dir.display());
    let regressions = inputs(&fuzz.join("regressions").join(target));

    let mut failed = Vec::new();
    let mut ran = 0usize;
    for file in corpus.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap();
        ran += 1;
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failed.push(format!("{}: {msg}", file.display()));
        }
    }
    assert!(ran >= corpus.len() && ran > 0, "no input was run for {target}");
    assert!(failed.is_empty(), "{target}: {} of {ran} inputs fail:\n{}", failed.len(), failed.join("\n"));
    eprintln!("{target}: {ran} inputs ({} corpus, {} regressions)", corpus.len(), regressions.len());
}

#[test]
fn headers() {
    run("headers", modelbus::fuzz_targets::headers);
}

#[test]
fn event_record() {
    run("event_record", modelbus::fuzz_targets::event_record);
}

#[test]
fn traceparent() {
    run("traceparent", modelbus::fuzz_targets::traceparent);
}

#[test]
fn config() {
    run("config", modelbus::fuzz_targets::config);
}
