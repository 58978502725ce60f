//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `vpd` binary cargo built for these tests.
pub fn vpd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vpd"));
    c.env_remove("RUST_LOG").env_remove("VPD_STORE");
    c
}

/// Runs `vpd` with `args` in `dir`, returning its output.
pub fn vpd_in(dir: &std::path::Path, args: &[&str]) -> Output {
    vpd()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("spawn vpd")
}

/// Runs `vpd` with `args` in `dir`, asserts it succeeded, and parses its
/// stdout as JSON.
pub fn vpd_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = vpd_in(dir, args);
    assert!(
        out.status.success(),
        "vpd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("vpd printed JSON")
}

/// True when running under CI (`CI=true`): there a missing prerequisite is
/// a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips (returns `None`) with a notice on a user's machine, fails in CI.
pub fn require<T>(what: &str, found: Option<T>) -> Option<T> {
    match found {
        Some(t) => Some(t),
        None if in_ci() => panic!("{what} is required when CI=true but is missing"),
        None => {
            eprintln!("NOTICE: skipping: {what} is missing (this test fails when CI=true)");
            None
        }
    }
}

/// The Python that carries the torch vpd links (set by `make test`).
pub fn torch_python() -> Option<PathBuf> {
    let found = std::env::var_os("VPD_TORCH_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    require(
        "the venv's Python (VPD_TORCH_PYTHON, set by `make test`)",
        found,
    )
}

/// `../shared/peer-data` (real GQA and NLVR2 samples, VisProg's examples),
/// beside the repository in a developer's checkout and in CI.
pub fn peer() -> Option<PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/peer-data");
    require("../shared/peer-data", p.exists().then_some(p))
}

/// Version `n` of `module` in the store `st` under `dir`, as `vpd versions
/// --json` lists it.
pub fn version(dir: &std::path::Path, module: &str, n: u64) -> serde_json::Value {
    vpd_json(dir, &["--store", "st", "versions", module, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["number"] == n)
        .unwrap_or_else(|| panic!("{module}@{n} is not listed"))
        .clone()
}

/// Writes the tiny experiment with `extra` TOML after it (a `[sweep]`
/// table, an overriding table) to `dir/name`; its path.
pub fn tiny_experiment(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{TINY}\n{extra}")).expect("write the experiment");
    path
}

/// Runs the Python `script` (written to `dir/name`, as `torch.jit.script`
/// reads a class's source from a real file) with `args`, under `python`
/// without warnings; asserts it succeeded and returns its output.
pub fn run_python_script(
    python: &Path,
    dir: &Path,
    name: &str,
    script: &str,
    args: &[&std::ffi::OsStr],
) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, script).expect("write the script");
    run_python(python, &file, args)
}

/// Runs the Python file `script` with `args` under `python` without
/// warnings; asserts it succeeded and returns its output.
pub fn run_python(python: &Path, script: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let out = Command::new(python)
        .args(["-W", "ignore"])
        .arg(script)
        .args(args)
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "{} {}: {}",
        python.display(),
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes `source` beside the module and runs it with the venv's Python
/// as `source STEM.pt STEM.json EXTRA...` (it writes a TorchScript module
/// and its sidecar there); the archive and the sidecar.
pub fn scripted(
    python: &Path,
    dir: &Path,
    stem: &str,
    source: &str,
    extra: &[String],
) -> (PathBuf, PathBuf) {
    let (pt, side) = (
        dir.join(format!("{stem}.pt")),
        dir.join(format!("{stem}.json")),
    );
    let mut args = vec![pt.as_os_str(), side.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    run_python_script(python, dir, &format!("make_{stem}.py"), source, &args);
    (pt, side)
}

/// A tiny experiment: every phase of `vpd run` in seconds.
pub const TINY: &str = r#"
name = "tiny"
seed = 0
[data]
generic_n = 60
gqa_n = 60
nlvr2_n = 40
[pretrain]
vqa_epochs = 2
loc_epochs = 2
teacher_epochs = 2
nlvr2_from_gqa = false
[teachers]
gqa = "gqa-teacher@teacher"
nlvr2 = ""
[distill]
task = "gqa"
samples = 0
dev_samples = 30
epochs = 3
patience = 3
replay_samples = 100
[eval]
tasks = ["gqa", "nlvr2"]
limit = 40
[gate]
max_drop = 100.0
alias = "distilled"
"#;

/// A 16x16 red PNG's bytes.
pub fn tiny_png() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(16, 16, image::Rgb([220, 30, 30]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}
