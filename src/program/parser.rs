//! The parser for VisProg's program syntax: one step a line,
//! `OUT=MODULE(name=value,...)`; values are variables, quoted strings,
//! numbers, `None`, `True`, `False`. A quote closes a string only where the
//! next non-blank character is `,` or `)`, so `'... Disney's Frozen ...'`
//! is one string.

use super::ast::{Arg, NamedArg, Program, Step};
use super::{ErrorKind, ProgramError};

struct Cursor<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    _text: &'a str,
}

fn err(line: usize, column: usize, kind: ErrorKind, message: impl Into<String>) -> ProgramError {
    ProgramError {
        line,
        column,
        kind,
        message: message.into(),
    }
}

impl Cursor<'_> {
    fn col(&self) -> usize {
        self.pos + 1
    }
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ') | Some('\t')) {
            self.pos += 1;
        }
    }
    fn ident(&mut self, what: &str) -> Result<(String, usize), ProgramError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
            Some(c) => {
                return Err(err(
                    self.line,
                    self.col(),
                    ErrorKind::Syntax,
                    format!("expected {what}, found `{c}`"),
                ))
            }
            None => {
                return Err(err(
                    self.line,
                    self.col(),
                    ErrorKind::Syntax,
                    format!("expected {what}, found end of line"),
                ))
            }
        }
        while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || c == '_') {
            self.pos += 1;
        }
        Ok((self.chars[start..self.pos].iter().collect(), start + 1))
    }
    fn expect(&mut self, c: char) -> Result<(), ProgramError> {
        self.skip_ws();
        match self.peek() {
            Some(x) if x == c => {
                self.pos += 1;
                Ok(())
            }
            Some(x) => Err(err(
                self.line,
                self.col(),
                ErrorKind::Syntax,
                format!("expected `{c}`, found `{x}`"),
            )),
            None => Err(err(
                self.line,
                self.col(),
                ErrorKind::Syntax,
                format!("expected `{c}`, found end of line"),
            )),
        }
    }
    fn string(&mut self) -> Result<String, ProgramError> {
        let q = self.peek().expect("at a quote");
        let start_col = self.col();
        self.pos += 1;
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c == q {
                let next = self.chars[self.pos + 1..]
                    .iter()
                    .find(|c| **c != ' ' && **c != '\t');
                if matches!(next, Some(',') | Some(')')) {
                    self.pos += 1;
                    return Ok(out);
                }
            }
            out.push(c);
            self.pos += 1;
        }
        Err(err(
            self.line,
            start_col,
            ErrorKind::Syntax,
            format!("unterminated string (opened with {q} here)"),
        ))
    }
    fn value(&mut self) -> Result<(Arg, usize), ProgramError> {
        self.skip_ws();
        let col = self.col();
        match self.peek() {
            Some('\'') | Some('"') => Ok((Arg::Str(self.string()?), col)),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let start = self.pos;
                self.pos += 1;
                while matches!(self.peek(), Some(c) if c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E')
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                if text.parse::<f64>().is_err() {
                    return Err(err(
                        self.line,
                        col,
                        ErrorKind::Syntax,
                        format!("`{text}` is not a number"),
                    ));
                }
                Ok((Arg::Num(text), col))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let (name, _) = self.ident("a value")?;
                Ok((
                    match name.as_str() {
                        "None" => Arg::None,
                        "True" => Arg::Bool(true),
                        "False" => Arg::Bool(false),
                        _ => Arg::Var(name),
                    },
                    col,
                ))
            }
            Some(c) => Err(err(
                self.line,
                col,
                ErrorKind::Syntax,
                format!("expected a value, found `{c}`"),
            )),
            None => Err(err(
                self.line,
                col,
                ErrorKind::Syntax,
                "expected a value, found end of line",
            )),
        }
    }
}

/// Parses one line (1-based `line` for messages).
pub fn parse_line(text: &str, line: usize) -> Result<Step, ProgramError> {
    let mut c = Cursor {
        chars: text.chars().collect(),
        pos: 0,
        line,
        _text: text,
    };
    let (out, _) = c.ident("an output variable")?;
    c.expect('=')?;
    let (module, module_column) = c.ident("a module name")?;
    c.expect('(')?;
    let mut args = Vec::new();
    c.skip_ws();
    if c.peek() == Some(')') {
        c.pos += 1;
    } else {
        loop {
            let (name, column) = c.ident("an argument name")?;
            c.expect('=')?;
            let (value, value_column) = c.value()?;
            args.push(NamedArg {
                name,
                value,
                column,
                value_column,
            });
            c.skip_ws();
            match c.peek() {
                Some(',') => c.pos += 1,
                Some(')') => {
                    c.pos += 1;
                    break;
                }
                Some(x) => {
                    return Err(err(
                        line,
                        c.col(),
                        ErrorKind::Syntax,
                        format!("expected `,` or `)`, found `{x}`"),
                    ))
                }
                None => {
                    return Err(err(
                        line,
                        c.col(),
                        ErrorKind::Syntax,
                        "expected `,` or `)`, found end of line",
                    ))
                }
            }
        }
    }
    c.skip_ws();
    if let Some(x) = c.peek() {
        return Err(err(
            line,
            c.col(),
            ErrorKind::Syntax,
            format!("unexpected `{x}` after the step"),
        ));
    }
    Ok(Step {
        line,
        out,
        module,
        module_column,
        args,
    })
}

/// Parses a program; blank lines are skipped.
pub fn parse(text: &str) -> Result<Program, ProgramError> {
    let mut steps = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        steps.push(parse_line(l.trim_end(), i + 1)?);
    }
    if steps.is_empty() {
        return Err(err(1, 1, ErrorKind::Syntax, "empty program"));
    }
    Ok(Program { steps })
}

#[cfg(test)]
mod tests {
    use super::parse;
    use crate::program::ast::Arg;
    use crate::program::ErrorKind;

    #[test]
    fn a_program_parses_step_by_step() {
        let p = parse("BOX0=LOC(image=IMAGE,object='mirror')\nFINAL_RESULT=RESULT(var=BOX0)\n")
            .unwrap();
        assert_eq!(p.steps.len(), 2);
        assert_eq!(
            (p.steps[0].out.as_str(), p.steps[0].module.as_str()),
            ("BOX0", "LOC")
        );
        assert_eq!(p.steps[1].line, 2);
    }

    #[test]
    fn a_quote_closes_only_before_a_comma_or_a_parenthesis() {
        let p = parse("A=VQA(image=IMAGE,question='Is this Disney's Frozen?')").unwrap();
        let q = p.steps[0]
            .args
            .iter()
            .find(|a| a.name == "question")
            .map(|a| a.value.clone());
        assert_eq!(q, Some(Arg::Str("Is this Disney's Frozen?".into())));
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("A=EVAL(expr='1')\nB=VQA(image=IMAGE").unwrap_err();
        assert_eq!((e.line, e.kind), (2, ErrorKind::Syntax));
        assert!(e.column >= 1);
        assert!(e.to_string().starts_with("line 2, column "), "{e}");
    }
}
