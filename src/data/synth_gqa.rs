//! GQA-style questions generated from synthetic scenes, by families that
//! cover GQA's structural types, each with its `semantic` program in GQA's
//! operation vocabulary. Answers are balanced within each family: the
//! generator picks the answer first and builds the scene to fit.

use super::gqa::SemanticOp;
use super::rng::Rng;
use super::world::{plural, Scene, COLORS, SHAPES};

/// A family: name, GQA structural type, GQA semantic type, answer set.
pub struct Family {
    /// Name (also GQA's `types.detailed` here).
    pub name: &'static str,
    /// query, verify, logical, choose, compare.
    pub structural: &'static str,
    /// obj, attr, rel.
    pub semantic: &'static str,
    /// The answers, cycled through for balance.
    pub answers: &'static [&'static str],
}

const YES_NO: &[&str] = &["yes", "no"];

/// Every family. `query_count` uses an operation, `count`, that GQA's own
/// vocabulary lacks (GQA has no counting questions); it is here because
/// the Teacher Input Adapter asks count questions and the teacher must have
/// seen them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "query_color",
        structural: "query",
        semantic: "attr",
        answers: &COLORS,
    },
    Family {
        name: "query_shape_rel",
        structural: "query",
        semantic: "rel",
        answers: &SHAPES,
    },
    Family {
        name: "query_hposition",
        structural: "query",
        semantic: "attr",
        answers: &["left", "right"],
    },
    Family {
        name: "query_color_hposition",
        structural: "query",
        semantic: "attr",
        answers: &COLORS,
    },
    Family {
        name: "query_count",
        structural: "query",
        semantic: "obj",
        answers: &["1", "2", "3"],
    },
    Family {
        name: "verify_color",
        structural: "verify",
        semantic: "attr",
        answers: YES_NO,
    },
    Family {
        name: "exist_color",
        structural: "verify",
        semantic: "obj",
        answers: YES_NO,
    },
    Family {
        name: "verify_rel",
        structural: "verify",
        semantic: "rel",
        answers: YES_NO,
    },
    Family {
        name: "logical_and",
        structural: "logical",
        semantic: "obj",
        answers: YES_NO,
    },
    Family {
        name: "logical_or",
        structural: "logical",
        semantic: "obj",
        answers: YES_NO,
    },
    Family {
        name: "choose_color",
        structural: "choose",
        semantic: "attr",
        answers: &COLORS,
    },
    Family {
        name: "choose_rel",
        structural: "choose",
        semantic: "rel",
        answers: &["left", "right"],
    },
    Family {
        name: "compare_same_color",
        structural: "compare",
        semantic: "attr",
        answers: YES_NO,
    },
    Family {
        name: "compare_different_color",
        structural: "compare",
        semantic: "attr",
        answers: YES_NO,
    },
    Family {
        name: "compare_common",
        structural: "compare",
        semantic: "attr",
        answers: &["color", "size"],
    },
];

/// A generated question before ids are attached.
#[derive(Debug, Clone)]
pub struct Built {
    /// The question.
    pub question: String,
    /// Short answer.
    pub answer: String,
    /// Full-sentence answer.
    pub full_answer: String,
    /// The program; object ids are written as `#k` (scene index k) and
    /// replaced by the caller.
    pub semantic: Vec<SemanticOp>,
}

fn op(operation: &str, deps: &[usize], argument: String) -> SemanticOp {
    SemanticOp {
        operation: operation.into(),
        dependencies: deps.to_vec(),
        argument,
    }
}

fn select(s: &Scene, k: usize) -> SemanticOp {
    op("select", &[], format!("{} (#{k})", s.objects[k].shape))
}

fn unique(s: &Scene) -> Vec<usize> {
    (0..s.objects.len())
        .filter(|&i| s.with_shape(s.objects[i].shape).len() == 1)
        .collect()
}

fn pick_unique(rng: &mut Rng, s: &Scene) -> Option<usize> {
    let u = unique(s);
    (!u.is_empty()).then(|| *rng.pick(&u))
}

fn other_color(rng: &mut Rng, not: &str) -> &'static str {
    loop {
        let c = *rng.pick(&COLORS);
        if c != not {
            return c;
        }
    }
}

fn absent_shape(rng: &mut Rng, s: &Scene) -> Option<&'static str> {
    let absent: Vec<&'static str> = SHAPES
        .iter()
        .copied()
        .filter(|x| s.count(x, None) == 0)
        .collect();
    (!absent.is_empty()).then(|| *rng.pick(&absent))
}

fn side(cx: f64) -> Option<&'static str> {
    if cx < 0.45 {
        Some("left")
    } else if cx > 0.55 {
        Some("right")
    } else {
        None
    }
}

/// Tries to make one question of `family` with answer `target` from scene
/// `s` (which it may change). `None`: this scene does not fit; try another.
pub fn build(
    family: &str,
    target: &str,
    rng: &mut Rng,
    s: &mut Scene,
    scale: f64,
) -> Option<Built> {
    match family {
        "query_color" => {
            let k = pick_unique(rng, s)?;
            s.objects[k].color = COLORS.iter().find(|c| **c == target)?;
            let sh = s.objects[k].shape;
            Some(Built {
                question: format!("What color is the {sh}?"),
                answer: target.into(),
                full_answer: format!("The {sh} is {target}."),
                semantic: vec![select(s, k), op("query", &[0], "color".into())],
            })
        }
        "query_shape_rel" => {
            let a = pick_unique(rng, s)?;
            let rel = *rng.pick(&["to the left of", "to the right of", "above", "below"]);
            let hits: Vec<usize> = (0..s.objects.len())
                .filter(|&i| i != a && s.relation(i, rel, a))
                .collect();
            if hits.len() != 1 || s.objects[a].shape == target {
                return None;
            }
            let k = hits[0];
            s.objects[k].shape = SHAPES.iter().find(|x| **x == target)?;
            if s.with_shape(s.objects[a].shape).len() != 1 {
                return None;
            }
            let an = s.objects[a].shape;
            Some(Built {
                question: format!("What shape is the object {rel} the {an}?"),
                answer: target.into(),
                full_answer: format!("The object {rel} the {an} is a {target}."),
                semantic: vec![
                    select(s, a),
                    op("relate", &[0], format!("_,{rel},s (#{k})")),
                    op("query", &[1], "name".into()),
                ],
            })
        }
        "query_hposition" => {
            let cands: Vec<usize> = unique(s)
                .into_iter()
                .filter(|&k| side(s.objects[k].cx) == Some(target))
                .collect();
            if cands.is_empty() {
                return None;
            }
            let k = *rng.pick(&cands);
            let sh = s.objects[k].shape;
            Some(Built {
                question: format!("On which side of the image is the {sh}?"),
                answer: target.into(),
                full_answer: format!("The {sh} is on the {target} of the image."),
                semantic: vec![select(s, k), op("query", &[0], "hposition".into())],
            })
        }
        "query_color_hposition" => {
            let sh = absent_shape(rng, s)?;
            let a = s.place(rng, sh, "white", "small", scale)?;
            let b = s.place(rng, sh, "white", "large", scale)?;
            let (sa, sb) = (side(s.objects[a].cx)?, side(s.objects[b].cx)?);
            if sa == sb {
                return None;
            }
            let k = if rng.chance(0.5) { a } else { b };
            let want = side(s.objects[k].cx)?;
            let other = if k == a { b } else { a };
            s.objects[k].color = COLORS.iter().find(|c| **c == target)?;
            s.objects[other].color = other_color(rng, target);
            Some(Built {
                question: format!("What color is the {sh} on the {want}?"),
                answer: target.into(),
                full_answer: format!("The {sh} on the {want} is {target}."),
                semantic: vec![
                    op("select", &[], format!("{sh} (#{a},#{b})")),
                    op("filter hposition", &[0], format!("{want} (#{k})")),
                    op("query", &[1], "color".into()),
                ],
            })
        }
        "query_count" => {
            let n: usize = target.parse().ok()?;
            let sh = *rng.pick(&SHAPES);
            s.objects.retain(|o| o.shape != sh);
            let mut ids = Vec::new();
            for _ in 0..n {
                let c = *rng.pick(&COLORS);
                let z = *rng.pick(&["small", "large"]);
                ids.push(s.place(rng, sh, c, z, scale)?);
            }
            // Placing may not move others, so indices of `ids` stay valid.
            let refs = ids
                .iter()
                .map(|k| format!("#{k}"))
                .collect::<Vec<_>>()
                .join(",");
            Some(Built {
                question: format!("How many {} are there?", plural(sh)),
                answer: target.into(),
                full_answer: format!(
                    "There {} {n} {}.",
                    if n == 1 { "is" } else { "are" },
                    if n == 1 { sh.to_string() } else { plural(sh) }
                ),
                semantic: vec![
                    op("select", &[], format!("{sh} ({refs})")),
                    op("count", &[0], "?".into()),
                ],
            })
        }
        "verify_color" => {
            let k = pick_unique(rng, s)?;
            let truth = s.objects[k].color;
            let asked = if target == "yes" {
                truth
            } else {
                other_color(rng, truth)
            };
            let sh = s.objects[k].shape;
            Some(Built {
                question: format!("Is the {sh} {asked}?"),
                answer: target.into(),
                full_answer: if target == "yes" {
                    format!("Yes, the {sh} is {asked}.")
                } else {
                    format!("No, the {sh} is {truth}.")
                },
                semantic: vec![select(s, k), op("verify color", &[0], asked.to_string())],
            })
        }
        "exist_color" => {
            if s.objects.is_empty() {
                return None;
            }
            let (sh, c) = if target == "yes" {
                let o = &s.objects[rng.below(s.objects.len())];
                (o.shape, o.color)
            } else {
                // Mostly a present shape in an absent colour: the hard case.
                let present: Vec<&'static str> = s.objects.iter().map(|o| o.shape).collect();
                let sh = if rng.chance(0.7) && !present.is_empty() {
                    *rng.pick(&present)
                } else {
                    absent_shape(rng, s)?
                };
                let free: Vec<&'static str> = COLORS
                    .iter()
                    .copied()
                    .filter(|c| s.count(sh, Some(c)) == 0)
                    .collect();
                (sh, *rng.pick(&free))
            };
            let ids: Vec<String> = (0..s.objects.len())
                .filter(|&i| s.objects[i].shape == sh)
                .map(|i| format!("#{i}"))
                .collect();
            let hit: Vec<String> = (0..s.objects.len())
                .filter(|&i| s.objects[i].shape == sh && s.objects[i].color == c)
                .map(|i| format!("#{i}"))
                .collect();
            Some(Built {
                question: format!("Is there a {c} {sh}?"),
                answer: target.into(),
                full_answer: if target == "yes" {
                    format!("Yes, there is a {c} {sh}.")
                } else {
                    format!("No, there is no {c} {sh}.")
                },
                semantic: vec![
                    op(
                        "select",
                        &[],
                        format!(
                            "{sh} ({})",
                            if ids.is_empty() {
                                "-".into()
                            } else {
                                ids.join(",")
                            }
                        ),
                    ),
                    op(
                        "filter color",
                        &[0],
                        format!(
                            "{c} ({})",
                            if hit.is_empty() {
                                "-".into()
                            } else {
                                hit.join(",")
                            }
                        ),
                    ),
                    op("exist", &[1], "?".into()),
                ],
            })
        }
        "verify_rel" | "choose_rel" => {
            let u = unique(s);
            if u.len() < 2 {
                return None;
            }
            let a = *rng.pick(&u);
            let b = *rng.pick(&u);
            if a == b {
                return None;
            }
            let horizontal = family == "choose_rel" || rng.chance(0.5);
            let (r1, r2) = if horizontal {
                ("to the left of", "to the right of")
            } else {
                ("above", "below")
            };
            let truth = if s.relation(a, r1, b) {
                r1
            } else if s.relation(a, r2, b) {
                r2
            } else {
                return None;
            };
            let (sa, sb) = (s.objects[a].shape, s.objects[b].shape);
            if family == "choose_rel" {
                let word = if truth == r1 { "left" } else { "right" };
                if word != target {
                    return None;
                }
                return Some(Built {
                    question: format!("Is the {sa} to the left or to the right of the {sb}?"),
                    answer: target.into(),
                    full_answer: format!("The {sa} is {truth} the {sb}."),
                    semantic: vec![
                        select(s, b),
                        op(
                            "choose rel",
                            &[0],
                            format!("{sa},to the left of|to the right of,s (#{a})"),
                        ),
                    ],
                });
            }
            let asked = if target == "yes" {
                truth
            } else if truth == r1 {
                r2
            } else {
                r1
            };
            Some(Built {
                question: format!("Is the {sa} {asked} the {sb}?"),
                answer: target.into(),
                full_answer: if target == "yes" {
                    format!("Yes, the {sa} is {asked} the {sb}.")
                } else {
                    format!("No, the {sa} is {truth} the {sb}.")
                },
                semantic: vec![
                    select(s, b),
                    op("verify rel", &[0], format!("{sa},{asked},s (#{a})")),
                ],
            })
        }
        "logical_and" | "logical_or" => {
            let present: Vec<&'static str> = s.objects.iter().map(|o| o.shape).collect();
            if present.is_empty() {
                return None;
            }
            let and = family == "logical_and";
            // and: yes = both present; no = one present one absent.
            // or: yes = one present (the other absent half the time); no = both absent.
            let (x, y) = match (and, target == "yes") {
                (true, true) => {
                    let x = *rng.pick(&present);
                    let y = *rng.pick(&present);
                    if x == y {
                        return None;
                    }
                    (x, y)
                }
                (true, false) | (false, true) => {
                    let x = *rng.pick(&present);
                    let y = if !and && rng.chance(0.5) {
                        *rng.pick(&present)
                    } else {
                        absent_shape(rng, s)?
                    };
                    if x == y {
                        return None;
                    }
                    if rng.chance(0.5) {
                        (y, x)
                    } else {
                        (x, y)
                    }
                }
                (false, false) => {
                    let x = absent_shape(rng, s)?;
                    let y = absent_shape(rng, s)?;
                    if x == y {
                        return None;
                    }
                    (x, y)
                }
            };
            let ids = |sh: &str| {
                let v: Vec<String> = s.with_shape(sh).iter().map(|i| format!("#{i}")).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.join(",")
                }
            };
            let (px, py) = (plural(x), plural(y));
            let word = if and { "and" } else { "or" };
            let question = if and {
                format!("Are there both {px} and {py} in the image?")
            } else {
                format!("Are there {px} or {py} in the image?")
            };
            Some(Built {
                question,
                answer: target.into(),
                full_answer: if target == "yes" {
                    format!(
                        "Yes, there are {} in the image.",
                        if and {
                            format!("both {px} and {py}")
                        } else {
                            format!("{px} or {py}")
                        }
                    )
                } else {
                    format!(
                        "No, there are not {} {px} and {py}.",
                        if and { "both" } else { "any" }
                    )
                },
                semantic: vec![
                    op("select", &[], format!("{x} ({})", ids(x))),
                    op("exist", &[0], "?".into()),
                    op("select", &[], format!("{y} ({})", ids(y))),
                    op("exist", &[2], "?".into()),
                    op(word, &[1, 3], String::new()),
                ],
            })
        }
        "choose_color" => {
            let k = pick_unique(rng, s)?;
            s.objects[k].color = COLORS.iter().find(|c| **c == target)?;
            let other = other_color(rng, target);
            let (c1, c2) = if rng.chance(0.5) {
                (target, other)
            } else {
                (other, target)
            };
            let sh = s.objects[k].shape;
            Some(Built {
                question: format!("Is the {sh} {c1} or {c2}?"),
                answer: target.into(),
                full_answer: format!("The {sh} is {target}."),
                semantic: vec![select(s, k), op("choose color", &[0], format!("{c1}|{c2}"))],
            })
        }
        "compare_same_color" | "compare_different_color" | "compare_common" => {
            let u = unique(s);
            if u.len() < 2 {
                return None;
            }
            let a = u[0];
            let b = u[1];
            let (sa, sb) = (s.objects[a].shape, s.objects[b].shape);
            if family == "compare_common" {
                let c = *rng.pick(&COLORS);
                if target == "color" {
                    s.objects[a].color = c;
                    s.objects[b].color = c;
                    if s.objects[a].size == s.objects[b].size {
                        return None;
                    }
                } else {
                    s.objects[a].color = c;
                    s.objects[b].color = other_color(rng, c);
                    if s.objects[a].size != s.objects[b].size {
                        return None;
                    }
                }
                return Some(Built {
                    question: format!("What do the {sa} and the {sb} have in common?"),
                    answer: target.into(),
                    full_answer: format!("The {sa} and the {sb} have the same {target}."),
                    semantic: vec![
                        select(s, a),
                        select(s, b),
                        op("common", &[0, 1], String::new()),
                    ],
                });
            }
            let same_wanted = (family == "compare_same_color") == (target == "yes");
            let c = s.objects[a].color;
            s.objects[b].color = if same_wanted { c } else { other_color(rng, c) };
            let (question, operation) = if family == "compare_same_color" {
                (
                    format!("Do the {sa} and the {sb} have the same color?"),
                    "same color",
                )
            } else {
                (
                    format!("Are the {sa} and the {sb} different in color?"),
                    "different color",
                )
            };
            Some(Built {
                question,
                answer: target.into(),
                full_answer: if same_wanted {
                    format!(
                        "{}, both the {sa} and the {sb} are {c}.",
                        if target == "yes" { "Yes" } else { "No" }
                    )
                } else {
                    format!(
                        "{}, the {sa} is {c} and the {sb} is {}.",
                        if target == "yes" { "Yes" } else { "No" },
                        s.objects[b].color
                    )
                },
                semantic: vec![
                    select(s, a),
                    select(s, b),
                    op(operation, &[0, 1], String::new()),
                ],
            })
        }
        _ => None,
    }
}
