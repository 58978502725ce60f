//! The syntax tree of a VisProg program and its printer.

use serde::Serialize;

/// A literal or a variable reference as an argument value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum Arg {
    /// A variable, e.g. `IMAGE`, `BOX0`.
    Var(String),
    /// A quoted string.
    Str(String),
    /// A number, kept as written.
    Num(String),
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
}

/// `name=value` with the 1-based column where the name starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NamedArg {
    /// The argument name as written.
    pub name: String,
    /// The value.
    pub value: Arg,
    /// Column of the name.
    pub column: usize,
    /// Column of the value.
    pub value_column: usize,
}

/// One line: `OUT=MODULE(args)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// 1-based line in the program text.
    pub line: usize,
    /// The output variable.
    pub out: String,
    /// The module name.
    pub module: String,
    /// Column of the module name.
    pub module_column: usize,
    /// Arguments in order.
    pub args: Vec<NamedArg>,
}

/// A program: its steps in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    /// Steps.
    pub steps: Vec<Step>,
}

impl Arg {
    /// The value as VisProg syntax. A string is quoted with `'` unless its
    /// text contains `'` followed by `,` or `)` (which would close it), then
    /// with `"`; `None` when neither quote can write it.
    pub fn to_syntax(&self) -> Option<String> {
        Some(match self {
            Arg::Var(v) => v.clone(),
            Arg::Num(n) => n.clone(),
            Arg::None => "None".into(),
            Arg::Bool(b) => if *b { "True" } else { "False" }.into(),
            Arg::Str(s) => {
                let q = ['\'', '"'].into_iter().find(|q| writable(s, *q))?;
                format!("{q}{s}{q}")
            }
        })
    }
}

/// Whether `s` can be written between `q` quotes: no `q` inside may be
/// followed (after spaces) by `,` or `)`, and no line break.
pub fn writable(s: &str, q: char) -> bool {
    if s.contains('\n') || s.contains('\r') {
        return false;
    }
    let chars: Vec<char> = s.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == q {
            let next = chars[i + 1..].iter().find(|c| **c != ' ' && **c != '\t');
            if matches!(next, Some(',') | Some(')')) {
                return false;
            }
        }
    }
    true
}

impl Program {
    /// The program as text, one step a line; `None` when a string cannot be
    /// written in either quote.
    pub fn to_text(&self) -> Option<String> {
        let mut lines = Vec::new();
        for s in &self.steps {
            let args = s
                .args
                .iter()
                .map(|a| a.value.to_syntax().map(|v| format!("{}={v}", a.name)))
                .collect::<Option<Vec<_>>>()?;
            lines.push(format!("{}={}({})", s.out, s.module, args.join(",")));
        }
        Some(lines.join("\n"))
    }
}
