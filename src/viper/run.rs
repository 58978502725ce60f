//! A checked ViperGPT program on monty's VM. The run pauses at every host
//! call (`ImagePatch(...)`, a patch's method, an API function); the host
//! answers it and resumes the run. A file, the environment or the network
//! is refused where the VM asks for it; limits end the run with an error
//! naming the setting.

use std::collections::HashMap;
use std::time::Duration;

use monty::{MontyRun, RunProgress};
use monty_types::{
    CompileOptions, ExcType, ExtFunctionResult, MontyException, MontyObject, NameLookupResult,
    PrintWriter, ResourceLimits, ResourceTracker,
};
use serde::Serialize;

use super::check::Checked;
use super::host::{exception, Host, ModuleCall};
use super::Limits;
use crate::program::interp::{ImageVal, Perception, Rect};

/// A program's result, as a value of vpd's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ViperValue {
    /// Text.
    Text {
        /// It.
        value: String,
    },
    /// A number.
    Number {
        /// It.
        value: f64,
    },
    /// True or false.
    Bool {
        /// It.
        value: bool,
    },
    /// `None`.
    None,
    /// A patch: its box in the source image.
    Patch {
        /// The source image's name.
        source: String,
        /// The box, top-left pixel coordinates (x, y, w, h).
        rect: Rect,
    },
    /// A list.
    List {
        /// Its items.
        items: Vec<ViperValue>,
    },
    /// Something else (its Python repr).
    Other {
        /// `repr()` of it.
        repr: String,
    },
}

impl ViperValue {
    /// The value as an answer: text as it is, numbers without a trailing
    /// `.0`, booleans as yes/no, a patch as its box.
    pub fn answer(&self) -> String {
        match self {
            ViperValue::Text { value } => value.clone(),
            ViperValue::Number { value } if value.fract() == 0.0 && value.abs() < 1e15 => {
                format!("{}", *value as i64)
            }
            ViperValue::Number { value } => value.to_string(),
            ViperValue::Bool { value } => if *value { "yes" } else { "no" }.into(),
            ViperValue::None => "None".into(),
            ViperValue::Patch { rect, .. } => {
                format!(
                    "[{:.0}, {:.0}, {:.0}, {:.0}]",
                    rect.x, rect.y, rect.w, rect.h
                )
            }
            ViperValue::List { items } => format!(
                "[{}]",
                items
                    .iter()
                    .map(|i| i.answer())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ViperValue::Other { repr } => repr.clone(),
        }
    }
}

/// Why a program gave no result: a Python exception as ViperGPT's own runs
/// report it (its type, message and line), or a limit of the sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("{}{kind}: {message}", line.map_or(String::new(), |l| format!("line {l}: ")))]
pub struct ViperFailure {
    /// The exception's type (`IndexError`, ...), or `limit`.
    pub kind: String,
    /// Its message.
    pub message: String,
    /// The program's line it was raised on, when it is the program's.
    pub line: Option<usize>,
}

/// What a run gave: the result or why none, and every module call.
#[derive(Debug, Serialize)]
pub struct ViperOutcome {
    /// The result.
    pub result: Result<ViperValue, ViperFailure>,
    /// The module calls, in order.
    pub calls: Vec<ModuleCall>,
    /// Host calls answered (module calls and the API's other functions).
    pub host_calls: usize,
}

fn failure_of(e: &MontyException, checked: &Checked, limits: &Limits) -> ViperFailure {
    let line = e
        .traceback()
        .iter()
        .rev()
        .map(|f| f.start.line as usize)
        .find(|l| *l >= 1 && *l <= checked.program_lines);
    let message = e.message().unwrap_or("").to_string();
    let limit = |m: String| ViperFailure {
        kind: "limit".into(),
        message: m,
        line,
    };
    match e.exc_type() {
        ExcType::TimeoutError => limit(format!(
            "the program ran past {} s (VPD_VIPER_MAX_SECONDS)",
            limits.max_seconds
        )),
        ExcType::MemoryError => limit(format!(
            "the program asked for more than {} MB at once (VPD_VIPER_MAX_MEMORY_MB)",
            limits.max_memory_mb
        )),
        ExcType::RecursionError => limit(format!(
            "calls nested more than {} deep (VPD_VIPER_MAX_RECURSION)",
            limits.max_recursion
        )),
        t => ViperFailure {
            kind: t.to_string(),
            message,
            line,
        },
    }
}

/// Runs `checked` with its parameters bound to `inputs` (by name), its
/// module calls answered by `perception`.
pub fn run_program(
    checked: &Checked,
    inputs: HashMap<String, ImageVal>,
    perception: &mut dyn Perception,
    limits: &Limits,
    llm: Option<crate::program::llm::LlmConfig>,
) -> ViperOutcome {
    let missing: Vec<&String> = checked
        .params
        .iter()
        .filter(|p| !inputs.contains_key(*p))
        .collect();
    let mut host = Host::new(perception, inputs);
    host.llm = llm;
    let fail = |kind: &str, message: String| ViperOutcome {
        result: Err(ViperFailure {
            kind: kind.into(),
            message,
            line: None,
        }),
        calls: vec![],
        host_calls: 0,
    };
    if !missing.is_empty() {
        return fail(
            "input",
            format!(
                "execute_command takes {}; no image was given for {} (--image NAME=PATH)",
                checked.params.join(", "),
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    const FUNCTIONS: [&str; 4] = [
        "best_image_match",
        "distance",
        "coerce_to_numeric",
        "llm_query",
    ];
    let mut names: Vec<String> = checked.params.clone();
    let mut values: Vec<MontyObject> = checked
        .params
        .iter()
        .filter_map(|p| host.image(p))
        .collect();
    names.push("ImagePatch".into());
    values.push(host.patch_type());
    for f in FUNCTIONS {
        names.push(f.into());
        values.push(MontyObject::Function {
            name: f.into(),
            docstring: None,
        });
    }
    let runner = match MontyRun::new(
        checked.code.clone(),
        "program.py",
        names,
        CompileOptions::default(),
    ) {
        Ok(r) => r,
        Err(e) => {
            return ViperOutcome {
                result: Err(failure_of(&e, checked, limits)),
                calls: vec![],
                host_calls: 0,
            }
        }
    };
    let tracker = ResourceTracker::new(ResourceLimits {
        max_duration: Some(Duration::from_secs_f64(limits.max_seconds)),
        max_memory: Some(limits.max_memory_mb << 20),
        gc_interval: None,
        max_recursion_depth: limits.max_recursion,
        max_suspensions: limits.max_calls.saturating_add(1),
    });
    let mut answered = 0usize;
    let mut progress = runner.start(values, tracker, PrintWriter::Disabled);
    let result = loop {
        let p = match progress {
            Ok(p) => p,
            Err(e) => break Err(failure_of(&e, checked, limits)),
        };
        progress = match p {
            RunProgress::Complete(v) => break Ok(value_of(&v, &host)),
            RunProgress::FunctionCall(call) => {
                answered += 1;
                if answered > limits.max_calls {
                    let _ = call.abort(
                        exception(ExcType::RuntimeError, "too many calls"),
                        PrintWriter::Disabled,
                    );
                    break Err(ViperFailure {
                        kind: "limit".into(),
                        message: format!(
                            "the program made more than {} module and API calls (VPD_VIPER_MAX_CALLS)",
                            limits.max_calls
                        ),
                        line: None,
                    });
                }
                let answer = answer(&mut host, &call);
                let r: ExtFunctionResult = match answer {
                    Ok(v) => v.into(),
                    Err(e) => e.into(),
                };
                call.resume(r, PrintWriter::Disabled)
            }
            RunProgress::NameLookup(l) => {
                l.resume(NameLookupResult::Undefined, PrintWriter::Disabled)
            }
            RunProgress::OsCall(c) => c.abort(
                exception(
                    ExcType::PermissionError,
                    "no files, environment or network in the sandbox",
                ),
                PrintWriter::Disabled,
            ),
            RunProgress::ResolveFutures(f) => f.abort(
                exception(
                    ExcType::RuntimeError,
                    "async code is not available in the sandbox",
                ),
                PrintWriter::Disabled,
            ),
        };
    };
    ViperOutcome {
        result,
        calls: std::mem::take(&mut host.calls),
        host_calls: answered,
    }
}

/// The host's answer to one paused call.
fn answer(host: &mut Host<'_>, call: &monty::FunctionCall) -> Result<MontyObject, MontyException> {
    match call.object_id {
        Some(id) if call.function_name == "__call__" && id == super::host::patch_class_id() => {
            host.construct(&call.args)
        }
        Some(id) => {
            let patch = host.patch_by_id(id).ok_or_else(|| {
                exception(
                    ExcType::AttributeError,
                    format!("'{}' is not a method of this object", call.function_name),
                )
            })?;
            host.method(patch, &call.function_name, &call.args, &call.kwargs)
        }
        None => host.function(&call.function_name, &call.args, &call.kwargs),
    }
}

fn value_of(v: &MontyObject, host: &Host<'_>) -> ViperValue {
    match v {
        MontyObject::String(s) => ViperValue::Text { value: s.clone() },
        MontyObject::Int(i) => ViperValue::Number { value: *i as f64 },
        MontyObject::Float(f) => ViperValue::Number { value: *f },
        MontyObject::Bool(b) => ViperValue::Bool { value: *b },
        MontyObject::None => ViperValue::None,
        MontyObject::List(xs) | MontyObject::Tuple(xs) => ViperValue::List {
            items: xs.iter().map(|x| value_of(x, host)).collect(),
        },
        other => match host.patch_of(other) {
            Some(p) => ViperValue::Patch {
                source: p.source.clone(),
                rect: p.rect,
            },
            None => ViperValue::Other {
                repr: other.to_string(),
            },
        },
    }
}
