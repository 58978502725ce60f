//! The ViperGPT front-end: Python as ViperGPT's code model writes it
//! (`def execute_command(image): ...` over an `ImagePatch` API), checked
//! and run in a sandbox, never by a host interpreter.
//!
//! - `check`: bounds on size and nesting before anything parses, the Ruff
//!   parser (the one monty uses), then a walk that refuses imports, dunder
//!   and private attributes, `eval`/`exec`/`open` and friends, unknown
//!   names and unknown methods, each with its line and column; and the
//!   rewrite of `sort`/`sorted`/`min`/`max` with a `key` into helpers that
//!   compute the keys in Python first (monty cannot pause a host call made
//!   from inside its own sort).
//! - `run`: the checked program on monty's VM, paused at every host call:
//!   `ImagePatch` is a host class, each patch a host object whose methods
//!   (`find`, `simple_query`, ...) come back to `host` and go to the
//!   program's LOC and VQA modules through `Perception`; every call is a
//!   typed `ModuleCall` record in the trace.
//! - Limits (`Limits`, each a setting with a default, each named in its
//!   error): program size, nesting, run time, the largest single
//!   allocation, recursion depth, module calls per program.

pub mod check;
pub mod host;
pub mod run;

use serde::Serialize;

pub use check::{check, Checked, Diagnostic};
pub use run::{run_program, ViperOutcome};

/// The sandbox's limits. Each comes from an environment variable (named
/// in the error that hits it), else its default.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    /// Program text, bytes (`VPD_VIPER_MAX_BYTES`, 65,536).
    pub max_bytes: usize,
    /// Brackets and indented blocks inside each other
    /// (`VPD_VIPER_MAX_NESTING`, 40).
    pub max_nesting: usize,
    /// Time the program itself runs, module calls excluded, seconds
    /// (`VPD_VIPER_MAX_SECONDS`, 5).
    pub max_seconds: f64,
    /// The largest value one operation may make, MB (`VPD_VIPER_MAX_MEMORY_MB`,
    /// 256): `[0] * 10**10` is refused before it allocates.
    pub max_memory_mb: usize,
    /// Function calls inside each other (`VPD_VIPER_MAX_RECURSION`, 100).
    pub max_recursion: usize,
    /// Module and API calls one program may make (`VPD_VIPER_MAX_CALLS`,
    /// 1,000).
    pub max_calls: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 65_536,
            max_nesting: 40,
            max_seconds: 5.0,
            max_memory_mb: 256,
            max_recursion: 100,
            max_calls: 1_000,
        }
    }
}

/// A limit's setting that does not read.
#[derive(Debug, thiserror::Error)]
#[error("{name}={value}: expected {expected}")]
pub struct BadLimit {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it takes.
    pub expected: &'static str,
}

impl Limits {
    /// The defaults with the `VPD_VIPER_*` variables that are set.
    pub fn from_env() -> Result<Limits, BadLimit> {
        let mut l = Limits::default();
        let whole = |name: &'static str, into: &mut usize, most: usize| -> Result<(), BadLimit> {
            if let Ok(v) = std::env::var(name) {
                *into = v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=most).contains(n))
                    .ok_or(BadLimit {
                        name,
                        value: v,
                        expected: "a whole number above 0 (within reason)",
                    })?;
            }
            Ok(())
        };
        whole("VPD_VIPER_MAX_BYTES", &mut l.max_bytes, 16 << 20)?;
        whole("VPD_VIPER_MAX_NESTING", &mut l.max_nesting, 150)?;
        whole("VPD_VIPER_MAX_MEMORY_MB", &mut l.max_memory_mb, 64 << 10)?;
        whole("VPD_VIPER_MAX_RECURSION", &mut l.max_recursion, 500)?;
        whole("VPD_VIPER_MAX_CALLS", &mut l.max_calls, 10_000_000)?;
        if let Ok(v) = std::env::var("VPD_VIPER_MAX_SECONDS") {
            l.max_seconds = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                .ok_or(BadLimit {
                    name: "VPD_VIPER_MAX_SECONDS",
                    value: v,
                    expected: "seconds above 0 and at most 3600",
                })?;
        }
        Ok(l)
    }
}

/// Whether a program file is a ViperGPT program: its name ends in `.py`,
/// or it defines `execute_command`.
pub fn is_viper(path: &std::path::Path, text: &str) -> bool {
    path.extension().is_some_and(|e| e == "py")
        || text
            .lines()
            .any(|l| l.trim_start().starts_with("def execute_command"))
}

/// Runs `f` on a thread with a 256 MiB stack (the parser, monty's compiler
/// and its VM recurse on nested code; the size and nesting bounds keep
/// the depth far below what that stack holds) and returns its result. A
/// thread that cannot start, or a panic inside (a defect of vpd or of
/// monty), is an error with its message, never a panic of the caller.
pub fn on_big_stack<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let h = std::thread::Builder::new()
        .name("viper".into())
        .stack_size(256 << 20)
        .spawn(f)
        .map_err(|e| format!("the sandbox's thread did not start: {e}"))?;
    h.join().map_err(|p| {
        format!(
            "the sandbox panicked: {} (a defect in vpd; please report it)",
            crate::panics::message(p.as_ref())
        )
    })
}
