//! EVAL's expression language, parsed and checked here and never handed to
//! a host interpreter (VisProg calls Python's `eval` on model output).
//!
//! `{VAR}` references, string and number literals, `True`/`False`/`None`,
//! `+ - * /` (true division), comparisons (chained as in Python), `not`,
//! `and`, `xor`, `or` (in rising precedence order: `or` < `xor` < `and` <
//! `not` < comparisons < `+ -` < `* /` < unary `-`), `A if C else B`
//! (right-associative) and parentheses.
//!
//! `xor` is logical exclusive-or of the operands' truth. VisProg instead
//! replaces the text `xor` by `!=` before calling Python, so
//! `{A} xor {B} == 1` becomes the chained comparison `A != B == 1`
//! (`A != B and B == 1`); here it is `A xor (B == 1)`.

use std::collections::BTreeMap;

use serde::Serialize;

/// A run-time value inside EVAL, typed as VisProg types its inputs: text
/// that reads as a number is a number, `yes`/`no` are booleans.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Val {
    /// A number.
    Num(f64),
    /// Text.
    Text(String),
    /// A boolean.
    Bool(bool),
    /// Python's None.
    None,
}

impl Val {
    /// Types a module's text answer as VisProg does.
    pub fn from_text(s: &str) -> Val {
        let t = s.trim();
        match t {
            "yes" | "Yes" | "True" | "true" => Val::Bool(true),
            "no" | "No" | "False" | "false" => Val::Bool(false),
            _ => match t.parse::<f64>() {
                Ok(n)
                    if t.chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == '-') =>
                {
                    Val::Num(n)
                }
                _ => Val::Text(s.to_string()),
            },
        }
    }

    /// Python truthiness.
    pub fn truthy(&self) -> bool {
        match self {
            Val::Num(n) => *n != 0.0,
            Val::Text(t) => !t.is_empty(),
            Val::Bool(b) => *b,
            Val::None => false,
        }
    }

    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Val::Num(_) => "number",
            Val::Text(_) => "text",
            Val::Bool(_) => "bool",
            Val::None => "None",
        }
    }

    /// The value as an answer string (`yes`/`no` for booleans, integers
    /// without a decimal point).
    pub fn to_answer(&self) -> String {
        match self {
            Val::Num(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Val::Num(n) => format!("{n}"),
            Val::Text(t) => t.clone(),
            Val::Bool(b) => if *b { "yes" } else { "no" }.into(),
            Val::None => "None".into(),
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `{NAME}`.
    Ref(String),
    /// A literal.
    Lit(Val),
    /// `-x` or `not x`.
    Unary(&'static str, Box<Expr>),
    /// `a op b` (arithmetic, `and`, `or`, `xor`).
    Binary(&'static str, Box<Expr>, Box<Expr>),
    /// `a < b <= c ...`.
    Compare(Box<Expr>, Vec<(&'static str, Expr)>),
    /// `a if c else b`.
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A parse error: 0-based character offset in the expression and message.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// Offset of the offending token.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ref(String),
    Str(String),
    Num(f64),
    Word(String),
    Op(&'static str),
}

const OPS: [&str; 13] = [
    "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", "%",
];

fn lex(s: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let e = |offset, message: String| ExprError { offset, message };
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == '{' {
            let end = chars[i..].iter().position(|c| *c == '}').map(|p| p + i);
            let Some(end) = end else {
                return Err(e(start, "`{` without a closing `}`".into()));
            };
            let name: String = chars[i + 1..end].iter().collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(e(
                    start,
                    format!("`{{{name}}}` is not a variable reference"),
                ));
            }
            out.push((Tok::Ref(name), start));
            i = end + 1;
        } else if c == '\'' || c == '"' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .map(|p| p + i + 1);
            let Some(end) = end else {
                return Err(e(start, "unterminated string".into()));
            };
            out.push((Tok::Str(chars[i + 1..end].iter().collect()), start));
            i = end + 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let n = text
                .parse::<f64>()
                .map_err(|_| e(start, format!("`{text}` is not a number")))?;
            out.push((Tok::Num(n), start));
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), start));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if let Some(op) = OPS.iter().find(|op| op.len() == 2 && **op == two) {
                out.push((Tok::Op(op), start));
                i += 2;
            } else if let Some(op) = OPS.iter().find(|op| op.len() == 1 && op.starts_with(c)) {
                if *op == "%" {
                    return Err(e(start, "`%` is not an EVAL operator".into()));
                }
                out.push((Tok::Op(op), start));
                i += 1;
            } else {
                return Err(e(
                    start,
                    format!("`{c}` is not allowed in an EVAL expression"),
                ));
            }
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    /// Levels of the tree being parsed.
    depth: usize,
}

const KEYWORDS: [&str; 9] = [
    "and", "or", "not", "xor", "if", "else", "True", "False", "None",
];

impl P {
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |t| t.1)
    }
    fn at_word(&self, w: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Word(x), _)) if x == w)
    }
    fn at_op(&self, o: &str) -> bool {
        matches!(self.toks.get(self.pos), Some((Tok::Op(x), _)) if *x == o)
    }
    fn fail<T>(&self, what: &str) -> Result<T, ExprError> {
        let found = match self.toks.get(self.pos) {
            None => "the end of the expression".to_string(),
            Some((Tok::Word(w), _)) => format!("`{w}`"),
            Some((Tok::Op(o), _)) => format!("`{o}`"),
            Some((Tok::Ref(r), _)) => format!("`{{{r}}}`"),
            Some((Tok::Str(s), _)) => format!("'{s}'"),
            Some((Tok::Num(n), _)) => format!("`{n}`"),
        };
        Err(ExprError {
            offset: self.offset(),
            message: format!("expected {what}, found {found}"),
        })
    }
    /// Enters one level of the tree, refusing past [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError {
                offset: self.offset(),
                message: format!("expression nested too deeply (more than {MAX_DEPTH} levels)"),
            });
        }
        Ok(())
    }
    fn ternary(&mut self) -> Result<Expr, ExprError> {
        self.enter()?;
        let r = self.ternary_inner();
        self.depth -= 1;
        r
    }
    fn ternary_inner(&mut self) -> Result<Expr, ExprError> {
        let a = self.or()?;
        if self.at_word("if") {
            self.pos += 1;
            let c = self.or()?;
            if !self.at_word("else") {
                return self.fail("`else`");
            }
            self.pos += 1;
            let b = self.ternary()?;
            return Ok(Expr::If(Box::new(c), Box::new(a), Box::new(b)));
        }
        Ok(a)
    }
    fn binary_level(
        &mut self,
        words: &[&'static str],
        next: fn(&mut P) -> Result<Expr, ExprError>,
    ) -> Result<Expr, ExprError> {
        let mut a = next(self)?;
        let entered = self.depth;
        let r = loop {
            let Some(w) = words.iter().find(|w| self.at_word(w) || self.at_op(w)) else {
                break Ok(a);
            };
            // Each operator in a chain is one more level of the tree.
            if let Err(e) = self.enter() {
                break Err(e);
            }
            self.pos += 1;
            let b = match next(self) {
                Ok(b) => b,
                Err(e) => break Err(e),
            };
            a = Expr::Binary(w, Box::new(a), Box::new(b));
        };
        self.depth = entered;
        r
    }
    fn or(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&["or"], P::xor)
    }
    fn xor(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&["xor"], P::and)
    }
    fn and(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&["and"], P::not)
    }
    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.at_word("not") {
            self.enter()?;
            self.pos += 1;
            let r = self.not();
            self.depth -= 1;
            return Ok(Expr::Unary("not", Box::new(r?)));
        }
        self.compare()
    }
    fn compare(&mut self) -> Result<Expr, ExprError> {
        let a = self.additive()?;
        let mut rest = Vec::new();
        while let Some(op) = ["==", "!=", "<=", ">=", "<", ">"]
            .into_iter()
            .find(|o| self.at_op(o))
        {
            self.pos += 1;
            rest.push((op, self.additive()?));
        }
        Ok(if rest.is_empty() {
            a
        } else {
            Expr::Compare(Box::new(a), rest)
        })
    }
    fn additive(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&["+", "-"], P::multiplicative)
    }
    fn multiplicative(&mut self) -> Result<Expr, ExprError> {
        self.binary_level(&["*", "/"], P::unary)
    }
    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.at_op("-") || self.at_op("+") {
            let minus = self.at_op("-");
            self.enter()?;
            self.pos += 1;
            let r = self.unary();
            self.depth -= 1;
            let r = r?;
            return Ok(if minus {
                Expr::Unary("-", Box::new(r))
            } else {
                r
            });
        }
        self.atom()
    }
    fn atom(&mut self) -> Result<Expr, ExprError> {
        let Some((tok, off)) = self.toks.get(self.pos).cloned() else {
            return self.fail("a value");
        };
        let e = match tok {
            Tok::Ref(r) => Expr::Ref(r),
            Tok::Str(s) => Expr::Lit(Val::Text(s)),
            Tok::Num(n) => Expr::Lit(Val::Num(n)),
            Tok::Word(w) if w == "True" => Expr::Lit(Val::Bool(true)),
            Tok::Word(w) if w == "False" => Expr::Lit(Val::Bool(false)),
            Tok::Word(w) if w == "None" => Expr::Lit(Val::None),
            Tok::Op("(") => {
                self.pos += 1;
                let inner = self.ternary()?;
                if !self.at_op(")") {
                    return self.fail("`)`");
                }
                self.pos += 1;
                return Ok(inner);
            }
            Tok::Word(w) if !KEYWORDS.contains(&w.as_str()) => {
                return Err(ExprError {
                    offset: off,
                    message: format!(
                        "unknown name `{w}`: EVAL has no functions or names, only {{VAR}} references, literals and operators"
                    ),
                })
            }
            _ => return self.fail("a value"),
        };
        self.pos += 1;
        Ok(e)
    }
}

/// Most tokens in one expression. VisProg's expressions are a few dozen
/// tokens; the bound keeps hostile text (an LLM answer, a dataset line)
/// from exhausting the stack of the parser, the evaluator or the drop of
/// the tree.
pub const MAX_TOKENS: usize = 1000;

/// Deepest nesting of an expression's tree (parentheses, `not`, `-`, and
/// chains of binary operators each count one level).
pub const MAX_DEPTH: usize = 100;

/// Parses an expression (at most [`MAX_TOKENS`] tokens, [`MAX_DEPTH`]
/// levels deep).
pub fn parse(s: &str) -> Result<Expr, ExprError> {
    if s.len() > 16 * MAX_TOKENS {
        return Err(ExprError {
            offset: 0,
            message: format!(
                "expression too long: {} bytes (at most {})",
                s.len(),
                16 * MAX_TOKENS
            ),
        });
    }
    let toks = lex(s)?;
    if toks.len() > MAX_TOKENS {
        return Err(ExprError {
            offset: toks[MAX_TOKENS].1,
            message: format!(
                "expression too long: {} tokens (at most {MAX_TOKENS})",
                toks.len()
            ),
        });
    }
    let mut p = P {
        toks,
        pos: 0,
        end: s.chars().count(),
        depth: 0,
    };
    let e = p.ternary()?;
    if p.pos < p.toks.len() {
        return p.fail("an operator or the end of the expression");
    }
    Ok(e)
}

impl Expr {
    /// The `{VAR}` names referenced, in order of first use.
    pub fn refs(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Ref(r) = e {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        });
        out
    }

    fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Unary(_, a) => a.walk(f),
            Expr::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Compare(a, rest) => {
                a.walk(f);
                for (_, b) in rest {
                    b.walk(f);
                }
            }
            Expr::If(c, a, b) => {
                c.walk(f);
                a.walk(f);
                b.walk(f);
            }
            Expr::Ref(_) | Expr::Lit(_) => {}
        }
    }

    /// Evaluates with `vars` bound.
    pub fn eval(&self, vars: &BTreeMap<String, Val>) -> Result<Val, String> {
        Ok(match self {
            Expr::Ref(r) => vars
                .get(r)
                .cloned()
                .ok_or_else(|| format!("{{{r}}} is not bound"))?,
            Expr::Lit(v) => v.clone(),
            Expr::Unary("not", a) => Val::Bool(!a.eval(vars)?.truthy()),
            Expr::Unary(_, a) => {
                let v = a.eval(vars)?;
                Val::Num(
                    -v.num()
                        .ok_or_else(|| format!("cannot negate {}", v.kind()))?,
                )
            }
            Expr::Binary("and", a, b) => {
                let x = a.eval(vars)?;
                if !x.truthy() {
                    x
                } else {
                    b.eval(vars)?
                }
            }
            Expr::Binary("or", a, b) => {
                let x = a.eval(vars)?;
                if x.truthy() {
                    x
                } else {
                    b.eval(vars)?
                }
            }
            Expr::Binary("xor", a, b) => {
                Val::Bool(a.eval(vars)?.truthy() != b.eval(vars)?.truthy())
            }
            Expr::Binary(op, a, b) => arith(op, &a.eval(vars)?, &b.eval(vars)?)?,
            Expr::Compare(a, rest) => {
                let mut left = a.eval(vars)?;
                for (op, e) in rest {
                    let right = e.eval(vars)?;
                    if !compare(op, &left, &right)? {
                        return Ok(Val::Bool(false));
                    }
                    left = right;
                }
                Val::Bool(true)
            }
            Expr::If(c, a, b) => {
                if c.eval(vars)?.truthy() {
                    a.eval(vars)?
                } else {
                    b.eval(vars)?
                }
            }
        })
    }
}

fn arith(op: &str, a: &Val, b: &Val) -> Result<Val, String> {
    if op == "+" {
        if let (Val::Text(x), Val::Text(y)) = (a, b) {
            return Ok(Val::Text(format!("{x}{y}")));
        }
    }
    let (Some(x), Some(y)) = (a.num(), b.num()) else {
        return Err(format!(
            "cannot apply `{op}` to {} and {}",
            a.kind(),
            b.kind()
        ));
    };
    Ok(Val::Num(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        _ => {
            if y == 0.0 {
                return Err("division by zero".into());
            }
            x / y
        }
    }))
}

fn ordered<T: PartialOrd + ?Sized>(op: &str, x: &T, y: &T) -> bool {
    match op {
        "==" => x == y,
        "!=" => x != y,
        "<" => x < y,
        "<=" => x <= y,
        ">" => x > y,
        _ => x >= y,
    }
}

fn compare(op: &str, a: &Val, b: &Val) -> Result<bool, String> {
    if let (Some(x), Some(y)) = (a.num(), b.num()) {
        return Ok(ordered(op, &x, &y));
    }
    match (op, a, b) {
        (_, Val::Text(x), Val::Text(y)) => Ok(ordered(op, x.as_str(), y.as_str())),
        ("==", _, _) => Ok(a == b),
        ("!=", _, _) => Ok(a != b),
        _ => Err(format!(
            "cannot compare {} and {} with `{op}`",
            a.kind(),
            b.kind()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{parse, Val};

    fn eval(expr: &str, vars: &[(&str, &str)]) -> Result<Val, String> {
        let vars: BTreeMap<String, Val> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), Val::from_text(v)))
            .collect();
        parse(expr).map_err(|e| e.message)?.eval(&vars)
    }

    #[test]
    fn text_that_is_a_number_acts_as_one() {
        assert_eq!(
            eval("{A} + {B}", &[("A", "2"), ("B", "3")]),
            Ok(Val::Num(5.0))
        );
        assert_eq!(
            eval("{A} > 1 and not {B} == 3", &[("A", "2"), ("B", "3")]),
            Ok(Val::Bool(false))
        );
    }

    #[test]
    fn yes_and_no_are_booleans_and_xor_is_logical() {
        assert_eq!(
            eval("{A} xor {B}", &[("A", "yes"), ("B", "no")]),
            Ok(Val::Bool(true))
        );
        assert_eq!(
            eval(
                "'yes' if {A} xor {B} == 2 else 'no'",
                &[("A", "no"), ("B", "2")]
            ),
            Ok(Val::Text("yes".into()))
        );
    }

    #[test]
    fn names_and_calls_are_refused_never_run() {
        for bad in ["__import__('os')", "open('x')", "{A}.upper()", "1 +"] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }
}
