//! Visual programs: VisProg's syntax (`parser`, `ast`), the module registry
//! and validator (`validate`), EVAL's expression language (`eval`), the
//! interpreter with image provenance and traces (`interp`, `trace`), oracle
//! modules (`oracle`) and program generators (`convert`, `llm`).

pub mod ast;
pub mod calls;
pub mod convert;
pub mod expr;
pub mod interp;
pub mod llm;
pub mod oracle;
pub mod parser;
pub mod run;
pub mod trace;
pub mod validate;
pub mod value;

use serde::Serialize;

/// The kinds of error `vpd program check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Not VisProg's syntax.
    Syntax,
    /// A module the registry does not know.
    UnknownModule,
    /// An unknown, missing or repeated argument.
    BadArgument,
    /// A variable used before it is defined.
    UndefinedVariable,
    /// A value of a kind that can never fit.
    Type,
    /// An EVAL expression outside the language.
    InvalidExpression,
}

impl ErrorKind {
    /// The one spelling of the kind, in every command's output and in JSON:
    /// `syntax`, `unknown-module`, `bad-argument`, `undefined-variable`,
    /// `type`, `invalid-expression`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax",
            ErrorKind::UnknownModule => "unknown-module",
            ErrorKind::BadArgument => "bad-argument",
            ErrorKind::UndefinedVariable => "undefined-variable",
            ErrorKind::Type => "type",
            ErrorKind::InvalidExpression => "invalid-expression",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error in a program, with its 1-based line and column.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: error[{kind}]: {message}")]
pub struct ProgramError {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
    /// Kind.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
}

/// A warning: accepted, but worth fixing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Warning {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
    /// What.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn error_kinds_have_one_spelling() {
        for k in [
            ErrorKind::Syntax,
            ErrorKind::UnknownModule,
            ErrorKind::BadArgument,
            ErrorKind::UndefinedVariable,
            ErrorKind::Type,
            ErrorKind::InvalidExpression,
        ] {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
    }
}
