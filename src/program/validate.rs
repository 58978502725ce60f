//! The module registry and the validator: every program is checked against
//! the modules' signatures before anything runs.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ast::{Arg, Program};
use super::{expr, parser, ErrorKind, ProgramError, Warning};

/// What a value is, statically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An image (with provenance).
    Image,
    /// Boxes from LOC.
    Boxes,
    /// A number.
    Number,
    /// Text.
    Text,
    /// EVAL's or RESULT's output: a number, text or boolean, known at run time.
    Any,
}

/// One argument of a module.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
}

/// A module's signature.
#[derive(Debug, Clone, Copy)]
pub struct Signature {
    /// Module name.
    pub module: &'static str,
    /// Arguments, all required.
    pub params: &'static [Param],
    /// Output kind.
    pub output: Kind,
    /// Whether a neural network (or an oracle) answers it.
    pub neural: bool,
}

const IMG: Param = Param {
    name: "image",
    kind: Kind::Image,
};
const BOX: Param = Param {
    name: "box",
    kind: Kind::Boxes,
};

/// The crop modules: CROP and its directional forms.
pub const CROPS: [&str; 10] = [
    "CROP",
    "CROP_LEFTOF",
    "CROP_RIGHTOF",
    "CROP_ABOVE",
    "CROP_BELOW",
    "CROP_FRONTOF",
    "CROP_INFRONT",
    "CROP_INFRONTOF",
    "CROP_BEHIND",
    "CROP_AHEAD",
];

/// The registry.
pub fn signature(module: &str) -> Option<Signature> {
    let s = |module, params, output, neural| Signature {
        module,
        params,
        output,
        neural,
    };
    Some(match module {
        "LOC" => s(
            "LOC",
            &[
                IMG,
                Param {
                    name: "object",
                    kind: Kind::Text,
                },
            ],
            Kind::Boxes,
            true,
        ),
        "COUNT" => s("COUNT", &[BOX], Kind::Number, false),
        "VQA" => s(
            "VQA",
            &[
                IMG,
                Param {
                    name: "question",
                    kind: Kind::Text,
                },
            ],
            Kind::Text,
            true,
        ),
        "EVAL" => s(
            "EVAL",
            &[Param {
                name: "expr",
                kind: Kind::Text,
            }],
            Kind::Any,
            false,
        ),
        "RESULT" => s(
            "RESULT",
            &[Param {
                name: "var",
                kind: Kind::Any,
            }],
            Kind::Any,
            false,
        ),
        m => {
            let name = CROPS.iter().find(|c| **c == m)?;
            s(name, &[IMG, BOX], Kind::Image, false)
        }
    })
}

use crate::vocab::Task;

/// The outcome of validation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Errors; the program is valid when empty.
    pub errors: Vec<ProgramError>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// The task its free variables imply.
    pub task: Option<Task>,
}

/// A kind's name for messages.
pub fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Image => "an image",
        Kind::Boxes => "boxes",
        Kind::Number => "a number",
        Kind::Text => "text",
        Kind::Any => "a value",
    }
}

fn fits(want: Kind, got: Kind) -> bool {
    match want {
        Kind::Any => true,
        Kind::Text | Kind::Number => matches!(got, Kind::Text | Kind::Number | Kind::Any),
        _ => want == got,
    }
}

/// Validates a parsed program. `task` fixes the free variables; without it
/// they are inferred (`IMAGE` for GQA, `LEFT`/`RIGHT` for NLVR2).
pub fn validate(p: &Program, task: Option<Task>) -> Report {
    validate_with(p, task, &[])
}

/// As [`validate`], with more free variables bound from outside (`--var`).
pub fn validate_with(p: &Program, task: Option<Task>, free: &[(String, Kind)]) -> Report {
    let uses = |v: &str| {
        p.steps.iter().any(|s| {
            s.args.iter().any(|a| matches!(&a.value, Arg::Var(x) if x == v))
                || s.args.iter().any(|a| matches!(&a.value, Arg::Str(e) if s.module == "EVAL" && e.contains(&format!("{{{v}}}"))))
        })
    };
    let task = task.or_else(|| {
        if uses("LEFT") || uses("RIGHT") {
            Some(Task::Nlvr2)
        } else if uses("IMAGE") {
            Some(Task::Gqa)
        } else {
            None
        }
    });
    let mut env: BTreeMap<String, Kind> = BTreeMap::new();
    match task {
        Some(Task::Gqa) => {
            env.insert("IMAGE".into(), Kind::Image);
        }
        Some(Task::Nlvr2) => {
            env.insert("LEFT".into(), Kind::Image);
            env.insert("RIGHT".into(), Kind::Image);
        }
        None => {}
    }
    for (name, kind) in free {
        env.insert(name.clone(), *kind);
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for step in &p.steps {
        let line = step.line;
        let e = |column, kind, message: String| ProgramError {
            line,
            column,
            kind,
            message,
        };
        let Some(sig) = signature(&step.module) else {
            errors.push(e(
                step.module_column,
                ErrorKind::UnknownModule,
                format!("unknown module `{}`", step.module),
            ));
            env.insert(step.out.clone(), Kind::Any);
            continue;
        };
        let mut seen: Vec<&str> = Vec::new();
        for a in &step.args {
            let param = sig.params.iter().find(|p| p.name == a.name).or_else(|| {
                let p = sig
                    .params
                    .iter()
                    .find(|p| p.name.eq_ignore_ascii_case(&a.name))?;
                warnings.push(Warning {
                    line,
                    column: a.column,
                    message: format!(
                        "argument `{}` of {} accepted as `{}`",
                        a.name, sig.module, p.name
                    ),
                });
                Some(p)
            });
            let Some(param) = param else {
                errors.push(e(
                    a.column,
                    ErrorKind::BadArgument,
                    format!(
                        "{} has no argument `{}` (takes {})",
                        sig.module,
                        a.name,
                        sig.params
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                continue;
            };
            if seen.contains(&param.name) {
                errors.push(e(
                    a.column,
                    ErrorKind::BadArgument,
                    format!("argument `{}` given twice", param.name),
                ));
                continue;
            }
            seen.push(param.name);
            let got = match &a.value {
                Arg::Var(v) => match env.get(v) {
                    Some(k) => *k,
                    None => {
                        errors.push(e(
                            a.value_column,
                            ErrorKind::UndefinedVariable,
                            format!("variable `{v}` is not defined before line {line}"),
                        ));
                        continue;
                    }
                },
                Arg::Str(_) => Kind::Text,
                Arg::Num(_) | Arg::Bool(_) => Kind::Number,
                Arg::None => {
                    if matches!(param.kind, Kind::Boxes | Kind::Image) {
                        Kind::Any
                    } else {
                        Kind::Text
                    }
                }
            };
            if !fits(param.kind, got) {
                errors.push(e(
                    a.value_column,
                    ErrorKind::Type,
                    format!(
                        "{} `{}` takes {}, got {}",
                        sig.module,
                        param.name,
                        kind_name(param.kind),
                        kind_name(got)
                    ),
                ));
            }
            if sig.module == "EVAL" {
                match &a.value {
                    Arg::Str(text) => match expr::parse(text) {
                        Err(x) => errors.push(e(
                            a.value_column + 1 + x.offset,
                            ErrorKind::InvalidExpression,
                            x.message,
                        )),
                        Ok(expr) => {
                            for r in expr.refs() {
                                match env.get(&r) {
                                    None => errors.push(e(
                                        a.value_column,
                                        ErrorKind::UndefinedVariable,
                                        format!("{{{r}}} in EVAL is not defined before line {line}"),
                                    )),
                                    Some(k @ (Kind::Image | Kind::Boxes)) => errors.push(e(
                                        a.value_column,
                                        ErrorKind::Type,
                                        format!(
                                            "{{{r}}} is {}; EVAL works on numbers, text and booleans",
                                            kind_name(*k)
                                        ),
                                    )),
                                    _ => {}
                                }
                            }
                        }
                    },
                    _ => errors.push(e(
                        a.value_column,
                        ErrorKind::Type,
                        "EVAL's expr must be a quoted expression".into(),
                    )),
                }
            }
        }
        for p in sig.params {
            if !seen.contains(&p.name)
                && !step
                    .args
                    .iter()
                    .any(|a| a.name.eq_ignore_ascii_case(p.name))
            {
                errors.push(e(
                    step.module_column,
                    ErrorKind::BadArgument,
                    format!("{} is missing its argument `{}`", sig.module, p.name),
                ));
            }
        }
        env.insert(step.out.clone(), sig.output);
    }
    Report {
        errors,
        warnings,
        task,
    }
}

/// Parses and validates program text: a syntax error is the only error
/// then reported.
pub fn check_text(text: &str, task: Option<Task>) -> (Option<Program>, Report) {
    check_text_with(text, task, &[])
}

/// As [`check_text`], with free variables bound from outside.
pub fn check_text_with(
    text: &str,
    task: Option<Task>,
    free: &[(String, Kind)],
) -> (Option<Program>, Report) {
    match parser::parse(text) {
        Ok(p) => {
            let r = validate_with(&p, task, free);
            (Some(p), r)
        }
        Err(e) => (
            None,
            Report {
                errors: vec![e],
                warnings: vec![],
                task,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::check_text;
    use crate::program::ErrorKind;
    use crate::vocab::Task;

    fn kinds(program: &str, task: Task) -> Vec<ErrorKind> {
        check_text(program, Some(task))
            .1
            .errors
            .iter()
            .map(|e| e.kind)
            .collect()
    }

    #[test]
    fn each_kind_of_error_is_found() {
        let ok = "BOX0=LOC(image=IMAGE,object='cat')\nANSWER0=COUNT(box=BOX0)\nFINAL_RESULT=RESULT(var=ANSWER0)";
        assert!(kinds(ok, Task::Gqa).is_empty());
        assert_eq!(kinds("A=COUNT(box=IMAGE)", Task::Gqa), [ErrorKind::Type]);
        assert_eq!(
            kinds("A=FOO(image=IMAGE)", Task::Gqa),
            [ErrorKind::UnknownModule]
        );
        assert_eq!(
            kinds("A=VQA(image=IMG0,question='x')", Task::Gqa),
            [ErrorKind::UndefinedVariable]
        );
        assert_eq!(
            kinds("A=VQA(image=IMAGE,query='x')", Task::Gqa).first(),
            Some(&ErrorKind::BadArgument)
        );
        assert_eq!(
            kinds("A=EVAL(expr='1 +')", Task::Gqa),
            [ErrorKind::InvalidExpression]
        );
    }

    #[test]
    fn argument_names_differing_in_case_are_a_warning() {
        let (p, r) = check_text("A=VQA(Image=IMAGE,question='x')", Some(Task::Gqa));
        assert!(p.is_some() && r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.warnings.len(), 1);
    }
}
