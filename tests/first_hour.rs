//! What a new user meets first: `--version` says which runtimes and buses
//! the binary has, a model tract cannot run points at `runtime = "ort"`,
//! and the commands `demo` prints afterwards run as printed.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn version_lists_the_runtimes_and_buses_built_in() {
    let out = Command::new(common::bin()).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("tract") && text.contains("ort (ONNX Runtime"), "{text}");
    assert!(text.contains("buses: embedded, kafka"), "{text}");
}

#[test]
fn a_model_tract_cannot_run_points_at_the_ort_runtime() {
    // The bring-your-own-model example's imputer pipeline has an op tract lacks.
    let dir = tempfile::tempdir().unwrap();
    let byom = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/byom");
    for f in ["model.onnx", "model.golden.json"] {
        std::fs::copy(byom.join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(byom.join("modelbus.toml")).unwrap();
    let cfg = dir.path().join("modelbus.toml");
    std::fs::write(&cfg, text.replace("runtime = \"ort\"", "runtime = \"tract\"")).unwrap();
    let out = Command::new(common::bin()).args(["validate", "--config"]).arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("models.") && err.contains("runtime = \"ort\""), "the error suggests ort:\n{err}");
}

#[test]
fn the_commands_demo_prints_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args(["demo", "--events", "300", "--rate", "1000", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("kept in {}", dir.path().display())), "it says where its data is:\n{text}");
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("look further"))
        .skip(1)
        .map(str::trim)
        .filter(|l| l.contains(" tail ") || l.contains(" dlq "))
        .collect();
    assert_eq!(commands.len(), 3, "tail, dlq list and dlq show:\n{text}");
    for c in commands {
        // As a user pastes it: in a shell, with no modelbus on the PATH.
        let run = Command::new("bash").arg("-c").arg(c).env("PATH", "/usr/bin:/bin").output().unwrap();
        assert!(run.status.success(), "`{c}` failed:\n{}", String::from_utf8_lossy(&run.stderr));
        assert!(!run.stdout.is_empty(), "`{c}` printed nothing");
    }
}
