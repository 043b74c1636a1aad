//! The README's five-minute tour, run as written (in a copy of the claims
//! example, with the test's own binary on the PATH): every command succeeds
//! but the refused publish, and the replay step finds the dead letter the
//! tour made at stage `features`.

mod common;

use std::path::Path;
use std::process::Command;

/// The tour's shell block, from the README.
fn tour() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("## A five-minute tour").expect("the README has a tour");
    let block = &readme[start..];
    let open = block.find("```sh\n").unwrap() + 6;
    let close = open + block[open..].find("```").unwrap();
    block[open..close].to_string()
}

#[test]
fn the_five_minute_tour_works_as_written() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_example(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/claims"),
        &dir.path().join("examples/claims"),
    );
    let mut script = String::from("set -u\n");
    for line in tour().lines() {
        if line.starts_with("cargo build") {
            continue; // the test's binary is on the PATH already
        }
        if line.starts_with("modelbus tail") {
            // A person types slower than a script: give the worker a moment.
            script.push_str("sleep 2\n");
        }
        // A person copies a dlid from the list; the script takes the first.
        let line = line.replace(
            "<dlid>",
            "$(modelbus dlq list --config modelbus.toml --json | head -1 | sed 's/.*\"dlid\":\"\\([^\"]*\\)\".*/\\1/')",
        );
        script.push_str(&line);
        script.push('\n');
    }
    let bin_dir = Path::new(common::bin()).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(dir.path()).env("PATH", path).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(stdout.contains("modelbus.toml: ok"), "validate passed:\n{all}");
    assert!(
        stdout.contains("\"type\":\"RiskScored\"") || stdout.contains("RiskScored"),
        "tail showed a result:\n{all}"
    );
    assert!(stdout.contains("features") && stdout.contains("decode"), "dlq list shows both dead letters:\n{all}");
    assert!(stdout.contains("\"dead_letter\""), "dlq show printed one:\n{all}");
    assert!(
        stdout.contains("would replay") && stdout.contains("dry run: 1 replayed"),
        "the replay step finds it:\n{all}"
    );
    assert!(
        stderr.contains("amount") || stdout.contains("amount"),
        "the invalid claim was refused with its reason:\n{all}"
    );
}
