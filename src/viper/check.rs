//! A ViperGPT program checked before anything runs: size and nesting
//! bounded before parsing, parsed by the Ruff parser, walked for what the
//! sandbox refuses (imports, dunder and private attributes, host escapes,
//! unknown names, unknown methods), then rewritten where monty needs it
//! (a `key` of `sort`/`sorted`/`min`/`max` may call a module: the keys are
//! computed in Python first) and closed with the API's pure-Python helpers
//! and the call of `execute_command`.

use std::collections::BTreeSet;

use ruff_python_ast::visitor::{self, Visitor};
use ruff_python_ast::{self as ast, Expr, ExprContext, Stmt};
use ruff_text_size::{Ranged, TextRange};
use serde::Serialize;

use super::Limits;

/// A problem in a program, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A program that passed the checks, ready for the sandbox.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The program as written.
    pub original: String,
    /// What the sandbox runs: the program (rewritten, the same lines), the
    /// API's Python helpers, and the call of `execute_command`.
    pub code: String,
    /// `execute_command`'s parameters, in order.
    pub params: Vec<String>,
    /// The lines of `code` that are the program's own (the rest is vpd's).
    pub program_lines: usize,
}

/// The `ImagePatch` attributes a program may read.
pub const PATCH_ATTRS: [&str; 8] = [
    "left",
    "lower",
    "right",
    "upper",
    "width",
    "height",
    "horizontal_center",
    "vertical_center",
];

/// The `ImagePatch` methods.
pub const PATCH_METHODS: [&str; 9] = [
    "find",
    "exists",
    "verify_property",
    "best_text_match",
    "simple_query",
    "compute_depth",
    "crop",
    "overlaps_with",
    "llm_query",
];

/// The API's free functions and class.
pub const API_NAMES: [&str; 6] = [
    "ImagePatch",
    "best_image_match",
    "distance",
    "bool_to_yesno",
    "coerce_to_numeric",
    "llm_query",
];

/// Python builtins a program may use (monty implements them; none reaches
/// the host).
const BUILTINS: &[&str] = &[
    "len",
    "range",
    "enumerate",
    "zip",
    "sorted",
    "min",
    "max",
    "sum",
    "abs",
    "round",
    "int",
    "float",
    "str",
    "bool",
    "list",
    "dict",
    "set",
    "tuple",
    "any",
    "all",
    "map",
    "filter",
    "reversed",
    "isinstance",
    "print",
    "repr",
    "divmod",
    "pow",
    "ord",
    "chr",
    "hash",
    "iter",
    "next",
    "Exception",
    "ValueError",
    "IndexError",
    "KeyError",
    "TypeError",
    "ZeroDivisionError",
    "AttributeError",
    "StopIteration",
    "RuntimeError",
    "NotImplementedError",
    "ArithmeticError",
    "LookupError",
    "AssertionError",
    "NameError",
];

/// Names that reach outside a sandbox in Python: refused by name, whatever
/// monty would do with them.
const ESCAPES: &[&str] = &[
    "eval",
    "exec",
    "compile",
    "open",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "hasattr",
    "input",
    "breakpoint",
    "exit",
    "quit",
    "help",
    "memoryview",
    "type",
    "object",
    "super",
    "classmethod",
    "staticmethod",
    "property",
    "dir",
    "id",
];

/// Methods of Python's own types that programs call (lists, strings,
/// dictionaries, sets).
const TYPE_METHODS: &[&str] = &[
    "append",
    "extend",
    "insert",
    "pop",
    "remove",
    "index",
    "count",
    "sort",
    "reverse",
    "copy",
    "clear",
    "lower",
    "upper",
    "strip",
    "lstrip",
    "rstrip",
    "split",
    "join",
    "replace",
    "startswith",
    "endswith",
    "format",
    "title",
    "capitalize",
    "isdigit",
    "isnumeric",
    "isalpha",
    "get",
    "items",
    "keys",
    "values",
    "update",
    "setdefault",
    "add",
    "discard",
    "union",
    "intersection",
];

/// The helpers vpd adds after the program (pure Python, run in the
/// sandbox like the program). Their names start with `_vpd_`, which a
/// program may not use.
const PRELUDE: &str = r#"

def _vpd_sorted(xs, key=None, reverse=False):
    xs = list(xs)
    if key is None:
        return sorted(xs, reverse=reverse)
    keys = [key(x) for x in xs]
    order = sorted(range(len(xs)), key=lambda i: keys[i], reverse=reverse)
    return [xs[i] for i in order]

def _vpd_sort(xs, key=None, reverse=False):
    ys = _vpd_sorted(xs, key, reverse)
    xs.clear()
    xs.extend(ys)

def _vpd_pick(xs, key, smaller, what, kw):
    xs = list(xs)
    if len(xs) == 0:
        if 'default' in kw:
            return kw['default']
        raise ValueError(what + "() arg is an empty sequence")
    keys = [key(x) for x in xs]
    best = 0
    for i in range(1, len(xs)):
        if (keys[i] < keys[best]) if smaller else (keys[i] > keys[best]):
            best = i
    return xs[best]

def _vpd_min(xs, key, **kw):
    return _vpd_pick(xs, key, True, "min", kw)

def _vpd_max(xs, key, **kw):
    return _vpd_pick(xs, key, False, "max", kw)

def bool_to_yesno(bool_answer):
    return "yes" if bool_answer else "no"
"#;

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn diag(text: &str, offset: usize, message: impl Into<String>) -> Diagnostic {
    let (line, column) = line_col(text, offset);
    Diagnostic {
        line,
        column,
        message: message.into(),
    }
}

/// Size and nesting, before the parser sees the text: brackets inside
/// brackets and indented blocks inside blocks, strings and comments
/// skipped. The first place past a limit.
fn bounds(text: &str, limits: &Limits) -> Result<(), Diagnostic> {
    if text.len() > limits.max_bytes {
        return Err(Diagnostic {
            line: 1,
            column: 1,
            message: format!(
                "the program is {} bytes, over the limit of {} (VPD_VIPER_MAX_BYTES)",
                text.len(),
                limits.max_bytes
            ),
        });
    }
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut indents: Vec<usize> = vec![0];
    let mut i = 0;
    let mut line_start = true;
    let too_deep = |at: usize| {
        diag(
            text,
            at,
            format!(
                "nested more than {} deep (VPD_VIPER_MAX_NESTING)",
                limits.max_nesting
            ),
        )
    };
    while i < bytes.len() {
        let c = bytes[i];
        if line_start && depth == 0 {
            let width = bytes[i..]
                .iter()
                .take_while(|b| **b == b' ' || **b == b'\t')
                .count();
            let rest = bytes.get(i + width).copied();
            if !matches!(rest, None | Some(b'\n') | Some(b'\r') | Some(b'#')) {
                while indents.last().is_some_and(|w| *w > width) {
                    indents.pop();
                }
                if indents.last().is_some_and(|w| *w < width) {
                    indents.push(width);
                }
                if indents.len() > limits.max_nesting {
                    return Err(too_deep(i + width));
                }
            }
            i += width;
            line_start = false;
            continue;
        }
        match c {
            b'\n' => {
                line_start = true;
                i += 1;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' => {
                let triple = bytes.get(i..i + 3) == Some(&[c, c, c][..]);
                i += if triple { 3 } else { 1 };
                while i < bytes.len() {
                    if bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if triple {
                        if bytes.get(i..i + 3) == Some(&[c, c, c][..]) {
                            i += 3;
                            break;
                        }
                    } else if bytes[i] == c || bytes[i] == b'\n' {
                        i += 1;
                        break;
                    }
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > limits.max_nesting {
                    return Err(too_deep(i));
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Checks `text` and prepares it for the sandbox; every problem found,
/// each with its line and column.
pub fn check(text: &str, limits: &Limits) -> Result<Checked, Vec<Diagnostic>> {
    bounds(text, limits).map_err(|d| vec![d])?;
    let parsed = ruff_python_parser::parse_module(text).map_err(|e| {
        vec![diag(
            text,
            e.location.start().to_usize(),
            format!("syntax error: {}", e.error),
        )]
    })?;
    let module = parsed.syntax();
    let mut w = Walk {
        text,
        defined: BTreeSet::new(),
        loaded: Vec::new(),
        problems: Vec::new(),
        rewrites: Vec::new(),
    };
    w.visit_body(&module.body);
    // Names: every name bound anywhere, the builtins and the API.
    let known = |n: &str| w.defined.contains(n) || BUILTINS.contains(&n) || API_NAMES.contains(&n);
    let mut problems = std::mem::take(&mut w.problems);
    for (name, at) in &w.loaded {
        if !known(name) && !ESCAPES.contains(&name.as_str()) {
            problems.push(diag(text, *at, format!("unknown name `{name}`")));
        }
    }
    let entry = module.body.iter().find_map(|s| match s {
        Stmt::FunctionDef(f) if f.name.id.as_str() == "execute_command" => Some(f),
        _ => None,
    });
    let params: Vec<String> = match entry {
        Some(f) => {
            let p = &f.parameters;
            if p.vararg.is_some() || p.kwarg.is_some() || !p.kwonlyargs.is_empty() {
                problems.push(diag(
                    text,
                    f.range.start().to_usize(),
                    "execute_command takes plain parameters (the images), no *args, **kwargs or keyword-only ones",
                ));
            }
            p.posonlyargs
                .iter()
                .chain(p.args.iter())
                .map(|a| a.parameter.name.id.to_string())
                .collect()
        }
        None => {
            problems.push(Diagnostic {
                line: 1,
                column: 1,
                message: "no `def execute_command(...)` at the top level of the program".into(),
            });
            vec![]
        }
    };
    problems.sort_by_key(|d| (d.line, d.column));
    problems.dedup();
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut code = rewrite(text, w.rewrites);
    let program_lines = code.lines().count();
    code.push_str(PRELUDE);
    code.push_str(&format!("\nexecute_command({})\n", params.join(", ")));
    Ok(Checked {
        original: text.to_string(),
        code,
        params,
        program_lines,
    })
}

/// Applies the rewrites, outermost first; a rewrite inside another one's
/// range is dropped (the outer one copies its text as written).
fn rewrite(text: &str, mut edits: Vec<(TextRange, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start(), std::cmp::Reverse(r.end())));
    let mut kept: Vec<(TextRange, String)> = Vec::new();
    for (r, s) in edits {
        if kept.last().is_some_and(|(k, _)| k.contains_range(r)) {
            continue;
        }
        kept.push((r, s));
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0usize;
    for (r, s) in kept {
        out.push_str(&text[at..r.start().to_usize()]);
        out.push_str(&s);
        at = r.end().to_usize();
    }
    out.push_str(&text[at..]);
    out
}

struct Walk<'a> {
    text: &'a str,
    defined: BTreeSet<String>,
    loaded: Vec<(String, usize)>,
    problems: Vec<Diagnostic>,
    rewrites: Vec<(TextRange, String)>,
}

impl Walk<'_> {
    fn problem(&mut self, at: usize, message: impl Into<String>) {
        self.problems.push(diag(self.text, at, message));
    }
    fn src(&self, r: TextRange) -> &str {
        &self.text[r.start().to_usize()..r.end().to_usize()]
    }
    fn name_rule(&mut self, name: &str, at: usize) {
        if name.starts_with("__") || name.starts_with("_vpd_") {
            self.problem(
                at,
                format!("the name `{name}` is not allowed in the sandbox"),
            );
        } else if ESCAPES.contains(&name) {
            self.problem(at, format!("`{name}` is not available in the sandbox"));
        }
    }
    fn bind_parameters(&mut self, p: &ast::Parameters) {
        for a in p.posonlyargs.iter().chain(&p.args).chain(&p.kwonlyargs) {
            let n = a.parameter.name.id.to_string();
            self.name_rule(&n, a.parameter.range.start().to_usize());
            self.defined.insert(n);
        }
        for a in p.vararg.iter().chain(p.kwarg.iter()) {
            self.defined.insert(a.name.id.to_string());
        }
    }
    /// `E.sort(key=K, ...)`, `sorted(E, key=K, ...)`, `min`/`max` with a
    /// key: the helper call that computes the keys in Python first.
    fn key_rewrite(&self, call: &ast::ExprCall) -> Option<String> {
        let args = &call.arguments;
        let key = args
            .keywords
            .iter()
            .find(|k| k.arg.as_deref() == Some("key"))?;
        let others: Vec<String> = args
            .keywords
            .iter()
            .filter(|k| k.arg.as_deref() != Some("key"))
            .map(|k| self.src(k.range()).to_string())
            .collect();
        let positional: Vec<&str> = args.args.iter().map(|a| self.src(a.range())).collect();
        let key_src = self.src(key.value.range());
        let tail = |v: &[String]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(", {}", v.join(", "))
            }
        };
        match call.func.as_ref() {
            Expr::Attribute(a) if a.attr.id.as_str() == "sort" && positional.is_empty() => {
                Some(format!(
                    "_vpd_sort({}, key={key_src}{})",
                    self.src(a.value.range()),
                    tail(&others)
                ))
            }
            Expr::Name(n) if n.id.as_str() == "sorted" && positional.len() == 1 => Some(format!(
                "_vpd_sorted({}, key={key_src}{})",
                positional[0],
                tail(&others)
            )),
            Expr::Name(n) if matches!(n.id.as_str(), "min" | "max") && !positional.is_empty() => {
                let xs = if positional.len() == 1 {
                    positional[0].to_string()
                } else {
                    format!("[{}]", positional.join(", "))
                };
                Some(format!("_vpd_{}({xs}, {key_src}{})", n.id, tail(&others)))
            }
            _ => None,
        }
    }
}

impl<'a> Visitor<'a> for Walk<'a> {
    fn visit_stmt(&mut self, stmt: &'a Stmt) {
        let at = stmt.range().start().to_usize();
        match stmt {
            Stmt::Import(_) | Stmt::ImportFrom(_) => {
                self.problem(at, "imports are not available in the sandbox");
                return;
            }
            Stmt::FunctionDef(f) => {
                self.name_rule(f.name.id.as_str(), f.name.range.start().to_usize());
                self.defined.insert(f.name.id.to_string());
                if !f.decorator_list.is_empty() {
                    self.problem(at, "decorators are not available in the sandbox");
                }
                self.bind_parameters(&f.parameters);
            }
            Stmt::ClassDef(c) => {
                self.problem(
                    c.name.range.start().to_usize(),
                    "class definitions are not available in the sandbox",
                );
                return;
            }
            Stmt::Global(_) | Stmt::Nonlocal(_) => {
                self.problem(at, "global and nonlocal are not available in the sandbox");
            }
            Stmt::Try(t) => {
                for h in &t.handlers {
                    let ast::ExceptHandler::ExceptHandler(h) = h;
                    if let Some(n) = &h.name {
                        self.defined.insert(n.id.to_string());
                    }
                }
            }
            _ => {}
        }
        visitor::walk_stmt(self, stmt);
    }

    fn visit_expr(&mut self, expr: &'a Expr) {
        let at = expr.range().start().to_usize();
        match expr {
            Expr::Name(n) => {
                let name = n.id.as_str();
                self.name_rule(name, at);
                match n.ctx {
                    ExprContext::Store | ExprContext::Del => {
                        self.defined.insert(name.to_string());
                    }
                    _ => self.loaded.push((name.to_string(), at)),
                }
            }
            Expr::Attribute(a) => {
                let attr = a.attr.id.as_str();
                if attr.starts_with('_') {
                    self.problem(
                        a.attr.range.start().to_usize(),
                        format!("the attribute `{attr}` is not allowed in the sandbox"),
                    );
                } else if !(PATCH_ATTRS.contains(&attr)
                    || PATCH_METHODS.contains(&attr)
                    || TYPE_METHODS.contains(&attr))
                {
                    self.problem(
                        a.attr.range.start().to_usize(),
                        format!(
                            "unknown attribute or method `{attr}` (ImagePatch has {} and {})",
                            PATCH_ATTRS.join(", "),
                            PATCH_METHODS.join(", ")
                        ),
                    );
                }
            }
            Expr::Lambda(l) => {
                if let Some(p) = &l.parameters {
                    self.bind_parameters(p);
                }
            }
            Expr::Call(c) => {
                if let Some(s) = self.key_rewrite(c) {
                    self.rewrites.push((c.range(), s));
                }
            }
            _ => {}
        }
        visitor::walk_expr(self, expr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Checked {
        check(src, &Limits::default()).unwrap_or_else(|e| panic!("{e:?}"))
    }
    fn refused(src: &str) -> Vec<Diagnostic> {
        check(src, &Limits::default()).expect_err("refused")
    }

    #[test]
    fn a_program_with_a_key_that_calls_a_module_is_rewritten_on_the_same_lines() {
        let c = ok("def execute_command(image):\n    p = ImagePatch(image)\n    bars = p.find('bar')\n    bars.sort(key=lambda b: b.compute_depth())\n    return max(bars, key=lambda b: b.width)\n");
        assert!(c
            .code
            .contains("_vpd_sort(bars, key=lambda b: b.compute_depth())"));
        assert!(c.code.contains("_vpd_max(bars, lambda b: b.width)"));
        assert_eq!(
            c.code.lines().nth(3).unwrap().trim(),
            "_vpd_sort(bars, key=lambda b: b.compute_depth())"
        );
        assert_eq!(c.params, vec!["image"]);
        assert!(c.code.trim_end().ends_with("execute_command(image)"));
    }

    #[test]
    fn escapes_and_unknowns_are_refused_with_line_and_column() {
        let d = refused("import os\ndef execute_command(image):\n    return ().__class__\n");
        assert_eq!((d[0].line, d[0].column), (1, 1), "{d:?}");
        assert!(d[0].message.contains("imports"));
        assert!(
            d.iter()
                .any(|x| x.line == 3 && x.message.contains("__class__")),
            "{d:?}"
        );
        let d = refused("def execute_command(image):\n    return eval('1')\n");
        assert!(d[0].message.contains("`eval` is not available"), "{d:?}");
        let d = refused("def execute_command(image):\n    return foo(image)\n");
        assert_eq!((d[0].line, d[0].column), (2, 12));
        assert!(d[0].message.contains("unknown name `foo`"));
        let d = refused("def execute_command(image):\n    return ImagePatch(image).fnd('x')\n");
        assert!(
            d[0].message.contains("unknown attribute or method `fnd`"),
            "{d:?}"
        );
        let d = refused("def run(image):\n    return 1\n");
        assert!(d[0].message.contains("execute_command"));
        let d = refused("def execute_command(image):\n    return (1\n");
        assert!(d[0].message.starts_with("syntax error"), "{d:?}");
    }

    #[test]
    fn positions_count_characters_and_never_split_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é(", 1), (1, 1), "inside é: its start");
        assert_eq!(line_col("é(", 2), (1, 2));
        let deep = format!(
            "def execute_command(image):\n    return 'é' + {}1{}\n",
            "(".repeat(45),
            ")".repeat(45)
        );
        let d = refused(&deep);
        assert_eq!((d[0].line, d[0].column), (2, 17 + 41), "{d:?}");
    }

    #[test]
    fn size_and_nesting_are_bounded_before_parsing() {
        let deep = format!(
            "def execute_command(image):\n    return {}1{}\n",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        let d = refused(&deep);
        assert!(d[0].message.contains("VPD_VIPER_MAX_NESTING"), "{d:?}");
        let big = format!(
            "def execute_command(image):\n    return 1\n{}",
            "#".repeat(70_000)
        );
        assert!(refused(&big)[0].message.contains("VPD_VIPER_MAX_BYTES"));
        // Brackets inside strings do not count.
        ok(&format!(
            "def execute_command(image):\n    return '{}'\n",
            "(".repeat(500)
        ));
    }
}
