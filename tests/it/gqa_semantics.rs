//! An independent checker of the synthetic GQA data: executes every
//! question's `semantic` program symbolically over its scene graph and
//! compares with the written answer. It shares no code with the generator:
//! it reads the files as plain JSON and knows only GQA's operations.

use std::path::Path;

use serde_json::Value;

use crate::common::vpd_in;

const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "cyan", "white",
];
const SIZES: [&str; 2] = ["small", "large"];

#[derive(Clone, Debug)]
enum V {
    Objs(Vec<String>),
    Text(String),
}

struct Graph<'a>(&'a Value);

impl Graph<'_> {
    fn objects(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0["objects"].as_object().unwrap().iter()
    }
    fn obj(&self, id: &str) -> &Value {
        &self.0["objects"][id]
    }
    fn attr(&self, id: &str, among: &[&str]) -> String {
        self.obj(id)["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .find(|a| among.contains(a))
            .unwrap()
            .to_string()
    }
    fn centre_x(&self, id: &str) -> f64 {
        let o = self.obj(id);
        o["x"].as_f64().unwrap() + o["w"].as_f64().unwrap() / 2.0
    }
    /// Does `subject` have relation `rel` to `object`?
    fn rel(&self, subject: &str, rel: &str, object: &str) -> bool {
        self.obj(subject)["relations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["object"] == object && r["name"] == rel)
    }
}

fn name_of(arg: &str) -> &str {
    arg.split(" (").next().unwrap().trim()
}

fn one(v: &V) -> String {
    match v {
        V::Objs(o) if o.len() == 1 => o[0].clone(),
        other => panic!("expected one object, got {other:?}"),
    }
}

fn yes(b: bool) -> V {
    V::Text(if b { "yes" } else { "no" }.into())
}

fn run(g: &Graph, ops: &[Value]) -> String {
    let mut vals: Vec<V> = Vec::new();
    for op in ops {
        let operation = op["operation"].as_str().unwrap();
        let arg = op["argument"].as_str().unwrap();
        let deps: Vec<V> = op["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| vals[d.as_u64().unwrap() as usize].clone())
            .collect();
        let objs = |v: &V| match v {
            V::Objs(o) => o.clone(),
            _ => panic!("not objects"),
        };
        let truth = |v: &V| match v {
            V::Text(t) => t == "yes",
            _ => panic!("not a truth value"),
        };
        let (kind, what) = operation.split_once(' ').unwrap_or((operation, ""));
        let v = match (kind, what) {
            ("select", _) => V::Objs(
                g.objects()
                    .filter(|(_, o)| o["name"] == name_of(arg))
                    .map(|(id, _)| id.clone())
                    .collect(),
            ),
            ("relate", _) => {
                let parts: Vec<&str> = name_of(arg).split(',').collect();
                let (name, rel) = (parts[0], parts[1]);
                let anchors = objs(&deps[0]);
                V::Objs(
                    g.objects()
                        .filter(|(id, o)| {
                            (name == "_" || o["name"] == name)
                                && anchors.iter().any(|a| g.rel(id, rel, a))
                        })
                        .map(|(id, _)| id.clone())
                        .collect(),
                )
            }
            ("filter", "hposition") => {
                let side = name_of(arg);
                let w = g.0["width"].as_f64().unwrap();
                V::Objs(
                    objs(&deps[0])
                        .into_iter()
                        .filter(|id| (g.centre_x(id) < w / 2.0) == (side == "left"))
                        .collect(),
                )
            }
            ("filter", attr) => {
                let _ = attr;
                let val = name_of(arg);
                V::Objs(
                    objs(&deps[0])
                        .into_iter()
                        .filter(|id| {
                            g.obj(id)["attributes"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|a| a == val)
                        })
                        .collect(),
                )
            }
            ("query", _) => {
                let id = one(&deps[0]);
                V::Text(match arg {
                    "color" => g.attr(&id, &COLORS),
                    "name" => g.obj(&id)["name"].as_str().unwrap().to_string(),
                    "hposition" => {
                        let w = g.0["width"].as_f64().unwrap();
                        if g.centre_x(&id) < w / 2.0 {
                            "left"
                        } else {
                            "right"
                        }
                        .to_string()
                    }
                    other => panic!("query {other}"),
                })
            }
            ("count", _) => V::Text(objs(&deps[0]).len().to_string()),
            ("verify", "color") => yes(g.attr(&one(&deps[0]), &COLORS) == arg),
            ("verify", "rel") => {
                let parts: Vec<&str> = name_of(arg).split(',').collect();
                let anchor = one(&deps[0]);
                yes(g
                    .objects()
                    .any(|(id, o)| o["name"] == parts[0] && g.rel(id, parts[1], &anchor)))
            }
            ("exist", _) => yes(!objs(&deps[0]).is_empty()),
            ("and", _) => yes(truth(&deps[0]) && truth(&deps[1])),
            ("or", _) => yes(truth(&deps[0]) || truth(&deps[1])),
            ("choose", "color") => {
                let c = g.attr(&one(&deps[0]), &COLORS);
                assert!(
                    arg.split('|').any(|x| x == c),
                    "choice {arg} lacks the truth {c}"
                );
                V::Text(c)
            }
            ("choose", "rel") => {
                let parts: Vec<&str> = name_of(arg).split(',').collect();
                let anchor = one(&deps[0]);
                let subject = g
                    .objects()
                    .find(|(_, o)| o["name"] == parts[0])
                    .map(|(id, _)| id.clone())
                    .unwrap();
                let r = parts[1]
                    .split('|')
                    .find(|r| g.rel(&subject, r, &anchor))
                    .expect("one holds");
                V::Text(
                    r.trim_start_matches("to the ")
                        .trim_end_matches(" of")
                        .to_string(),
                )
            }
            ("same", "color") => {
                yes(g.attr(&one(&deps[0]), &COLORS) == g.attr(&one(&deps[1]), &COLORS))
            }
            ("different", "color") => {
                yes(g.attr(&one(&deps[0]), &COLORS) != g.attr(&one(&deps[1]), &COLORS))
            }
            ("common", _) => {
                let (a, b) = (one(&deps[0]), one(&deps[1]));
                let color = g.attr(&a, &COLORS) == g.attr(&b, &COLORS);
                let size = g.attr(&a, &SIZES) == g.attr(&b, &SIZES);
                assert!(color != size, "exactly one attribute in common");
                V::Text(if color { "color" } else { "size" }.into())
            }
            other => panic!("unknown operation {other:?}"),
        };
        vals.push(v);
    }
    match vals.pop().unwrap() {
        V::Text(t) => t,
        V::Objs(o) => panic!("program ends in objects {o:?}"),
    }
}

#[test]
fn every_synthetic_gqa_program_executes_to_its_written_answer() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("gqa");
    let out = vpd_in(
        d.path(),
        &[
            "data", "synth", "--task", "gqa", "--out", "gqa", "--n", "300", "--seed", "11",
        ],
    );
    assert!(out.status.success());
    let mut checked = 0;
    for split in ["train", "distill", "dev", "test"] {
        let read =
            |p: &Path| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
        let qs = read(&root.join(format!("questions/{split}_balanced_questions.json")));
        let graphs = read(&root.join(format!("sceneGraphs/{split}_sceneGraphs.json")));
        for (id, q) in qs.as_object().unwrap() {
            let g = Graph(&graphs[q["imageId"].as_str().unwrap()]);
            let got = run(&g, q["semantic"].as_array().unwrap());
            assert_eq!(
                got,
                q["answer"].as_str().unwrap(),
                "question {id}: {}",
                q["question"]
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1200);
}
