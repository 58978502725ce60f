//! Issue 37, item 14: an error recommended `vpd versions import`, which is
//! no command (it is `vpd store import`). This test takes every `vpd ...`
//! command quoted in the sources (error messages and the `--help` texts,
//! which are the doc comments of `cli/`) and in the docs, and checks that
//! clap parses it, and that no word of it is a command of vpd's used where
//! the parsed command takes a value (`versions import`: `import` as the
//! module name).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;

/// Every file the test reads: `src/`, `docs/`, the README files and the
/// architecture notes.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![
        root.join("README.md"),
        root.join("ARCHITECTURE.md"),
        root.join("experiments/README.md"),
    ];
    let mut stack = vec![root.join("src"), root.join("docs")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .is_some_and(|x| x == "rs" || x == "md" || x == "sh")
            {
                out.push(p);
            }
        }
    }
    out.retain(|p| p.exists() && !p.ends_with("cli/quoted.rs"));
    out.sort();
    out
}

/// The `vpd ...` commands a text quotes: backtick spans that start with
/// `vpd `, and in a Markdown code block the lines that start with `$ vpd `
/// (or `vpd ` in a `sh`/`bash`/`shell` block; other lines there are
/// output), joined over a trailing `\`.
fn quoted(text: &str, markdown: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut block: Option<bool> = None; // Some(shell?) inside a block
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if markdown && t.starts_with("```") {
            block = match block {
                Some(_) => None,
                None => Some(matches!(t.trim_start_matches('`'), "sh" | "bash" | "shell")),
            };
            continue;
        }
        if let Some(shell) = block {
            let cmd = t
                .strip_prefix("$ vpd ")
                .or_else(|| t.strip_prefix("vpd ").filter(|_| shell));
            if let Some(c) = cmd {
                let mut c = format!("vpd {c}");
                while c.ends_with('\\') {
                    c.pop();
                    match lines.next() {
                        Some(l) => c.push_str(l.trim()),
                        None => break,
                    }
                }
                out.push(c);
            }
            continue;
        }
        let line = line.replace("\\|", "|");
        let mut rest = line.as_str();
        while let Some(i) = rest.find("`vpd ") {
            let after = &rest[i + 1..];
            match after.find('`') {
                Some(j) => {
                    out.push(after[..j].to_string());
                    rest = &after[j + 1..];
                }
                None => break,
            }
        }
    }
    out
}

/// Splits a command line as a shell would (quotes group words).
fn split(c: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut w = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for ch in c.chars() {
        match (quote, ch) {
            (Some(q), ch) if ch == q => quote = None,
            (Some(_), ch) => w.push(ch),
            (None, '\'' | '"') => {
                quote = Some(ch);
                any = true;
            }
            (None, ch) if ch.is_whitespace() => {
                if !w.is_empty() || any {
                    out.push(std::mem::take(&mut w));
                }
                any = false;
            }
            (None, ch) => w.push(ch),
        }
    }
    if !w.is_empty() || any {
        out.push(w);
    }
    out
}

/// A placeholder word (`FILE`, `RUN`, `<dir>`, `MODULE@REF`, `K=V`).
fn is_placeholder(w: &str) -> bool {
    if w.starts_with('<') && w.ends_with('>') {
        return true;
    }
    w.chars().any(|ch| ch.is_ascii_uppercase())
        && w.chars()
            .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || "_-.@/=".contains(ch))
        && !w.starts_with('-')
}

/// A concrete value for a placeholder: a number, a version, a task, a word.
fn dummy(w: &str) -> &'static str {
    match w {
        "N" | "P" | "I" | "K" | "S" => "1",
        "T" | "TASK" => "gqa",
        _ if w.contains('@') || ["A", "B", "M", "REF"].contains(&w) => "vqa@1",
        _ => "x",
    }
}

/// The command as words clap can parse: shell tails (pipes, redirections,
/// `&&`, comments) cut, optional parts (`[--plots DIR]`) kept, `a|b` the
/// first, `...` dropped; placeholders are kept (made concrete by
/// [`concrete`]). `None` for what is not a command line.
fn words(cmd: &str) -> Option<Vec<String>> {
    if cmd.contains('{') || cmd.contains("\\n") {
        return None;
    }
    let mut c = cmd.to_string();
    for cut in [" | ", " && ", " > ", " 2>", " >>", "; ", " # ", " ||"] {
        if let Some(i) = c.find(cut) {
            c.truncate(i);
        }
    }
    let mut out: Vec<String> = Vec::new();
    for w in split(&c) {
        let w = w.trim_matches(|ch| ch == '[' || ch == ']' || ch == ',');
        let w = w.trim_end_matches("...");
        if w.is_empty() {
            // `--modules ...`: some value.
            if out.last().is_some_and(|l| l.starts_with("--")) {
                out.push("VALUE".into());
            }
            continue;
        }
        out.push(w.to_string());
    }
    (out.len() >= 2).then_some(out)
}

/// The ways to make `args` concrete: each placeholder by its own dummy,
/// then all by one dummy; each also with a value after a trailing flag
/// (`--trace` quoted alone).
fn concrete(args: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // `a|b|c` (not inside a value with `=`): alternative k of each.
    for k in 0..4 {
        let args: Vec<String> = args
            .iter()
            .map(|w| match w.contains('|') && !w.contains('=') {
                true => w
                    .split('|')
                    .nth(k)
                    .unwrap_or(w.split('|').next().unwrap_or(w)),
                false => w.as_str(),
            })
            .map(str::to_string)
            .collect();
        let fill = |f: &dyn Fn(&str) -> String| -> Vec<String> {
            args.iter()
                .map(|w| if is_placeholder(w) { f(w) } else { w.clone() })
                .collect()
        };
        out.push(fill(&|w| dummy(w).to_string()));
        for d in ["x", "1", "vqa@1", "gqa"] {
            out.push(fill(&|_| d.to_string()));
        }
    }
    let with_value: Vec<Vec<String>> = out
        .iter()
        .filter(|a| a.last().is_some_and(|l| l.starts_with("--")))
        .map(|a| {
            let mut a = a.clone();
            a.push("x".into());
            a
        })
        .collect();
    out.extend(with_value);
    out
}

/// Every subcommand's name in the tree (`store`, `import`, `status`, ...).
fn command_names(c: &clap::Command, out: &mut BTreeSet<String>) {
    for s in c.get_subcommands() {
        out.insert(s.get_name().to_string());
        command_names(s, out);
    }
}

/// The subcommands a parse went through, outermost first.
fn path_of(m: &clap::ArgMatches) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = m;
    while let Some((name, sub)) = at.subcommand() {
        out.push(name.to_string());
        at = sub;
    }
    out
}

#[test]
fn every_quoted_vpd_command_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names = BTreeSet::new();
    command_names(&Cli::command(), &mut names);
    let mut checked = 0;
    let mut bad = Vec::new();
    for f in files(root) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let md = f.extension().is_some_and(|x| x == "md");
        for q in quoted(&text, md) {
            let Some(raw) = words(&q) else { continue };
            checked += 1;
            let at = f.strip_prefix(root).unwrap_or(&f).display().to_string();
            // Help, a version, or a quoted part of a command (a required
            // argument left out) parse as far as the quote goes.
            let fine_kind = |e: &clap::Error| {
                matches!(
                    e.kind(),
                    clap::error::ErrorKind::DisplayHelp
                        | clap::error::ErrorKind::DisplayVersion
                        | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                        | clap::error::ErrorKind::MissingRequiredArgument
                )
            };
            let fine =
                |r: &Result<clap::ArgMatches, clap::Error>| r.as_ref().err().is_none_or(fine_kind);
            let tries = concrete(&raw);
            let parsed = tries
                .iter()
                .map(|a| (a, Cli::command().try_get_matches_from(a)))
                .find(|(_, r)| fine(r))
                .unwrap_or_else(|| (&tries[0], Cli::command().try_get_matches_from(&tries[0])));
            let args = parsed.0;
            match parsed.1 {
                Err(e) if fine_kind(&e) => {}
                Err(e) => bad.push(format!(
                    "{at}: `{q}`: {}",
                    e.to_string().lines().next().unwrap_or("")
                )),
                Ok(m) => {
                    let path = path_of(&m);
                    let misplaced: Vec<&String> = args[1..]
                        .iter()
                        .filter(|w| names.contains(*w) && !path.contains(w))
                        .collect();
                    if let Some(w) = misplaced.first() {
                        bad.push(format!(
                            "{at}: `{q}`: `{w}` is a vpd command but is read as a value of `vpd {}`",
                            path.join(" ")
                        ));
                    }
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} quoted commands found");
    assert!(
        bad.is_empty(),
        "{} of {checked}:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn the_misquoted_command_of_the_issue_is_caught() {
    let args = words("vpd versions import").unwrap();
    let m = Cli::command().try_get_matches_from(&args).unwrap();
    assert_eq!(
        split(r#"a --reason "two words" 'x y'"#),
        ["a", "--reason", "two words", "x y"]
    );
    let mut names = BTreeSet::new();
    command_names(&Cli::command(), &mut names);
    assert_eq!(path_of(&m), ["versions"]);
    assert!(names.contains("import"), "the check flags `import`");
    assert_eq!(
        words("vpd report RUN|SWEEP --out FILE.html [--plots DIR]").unwrap(),
        [
            "vpd",
            "report",
            "RUN|SWEEP",
            "--out",
            "FILE.html",
            "--plots",
            "DIR"
        ]
    );
}
