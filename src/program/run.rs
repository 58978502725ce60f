//! Helpers shared by `vpd program run|convert`: loading inputs and scene
//! graphs for the oracle, and running converted GQA questions with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::data::gqa::{self, Question, SceneGraph};
use crate::data::synth::PairScenes;
use crate::data::{images, DataError};

use super::convert;
use super::interp::{self, ImageVal, Rect};
use super::oracle::Oracle;
use super::validate;
use crate::vocab::Task;

/// An input image: decoded, whole, named.
pub fn load_input(name: &str, path: &Path) -> Result<ImageVal, DataError> {
    let img = images::decode(path)?;
    Ok(ImageVal {
        rect: Rect {
            x: 0.0,
            y: 0.0,
            w: img.width() as f64,
            h: img.height() as f64,
        },
        pixels: Arc::new(img),
        source: name.to_string(),
        made_by: None,
    })
}

/// Finds the scene graph of a synthetic image from the dataset layout:
/// GQA `ROOT/images/ID.png` -> `ROOT/sceneGraphs/*_sceneGraphs.json[ID]`;
/// NLVR2 `ROOT/images/SPLIT/PAIR-imgK.png` -> `ROOT/SPLIT_scenes.json[PAIR]`.
pub fn find_scene(path: &Path) -> Option<SceneGraph> {
    let stem = path.file_stem()?.to_str()?.to_string();
    let dir = path.parent()?;
    if let Some((pair, k)) = stem.rsplit_once("-img") {
        let split = dir.file_name()?.to_str()?;
        let root = dir.parent()?.parent()?;
        let f = root.join(format!("{split}_scenes.json"));
        let all: BTreeMap<String, PairScenes> =
            serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
        let p = all.get(pair)?;
        return Some(if k == "0" {
            p.left.clone()
        } else {
            p.right.clone()
        });
    }
    let root = dir.parent()?;
    for e in std::fs::read_dir(root.join("sceneGraphs")).ok()?.flatten() {
        if let Ok((g, _)) = gqa::load_scene_graphs(&e.path()) {
            if let Some(s) = g.get(&stem) {
                return Some(s.clone());
            }
        }
    }
    None
}

/// A stable choice of which questions word their first attribute question
/// implicitly: one in three, by question id.
pub fn implicit_for(id: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h.is_multiple_of(3)
}

/// Correct out of n.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Count {
    /// Examples.
    pub n: usize,
    /// Correct.
    pub correct: usize,
    /// Percent.
    pub accuracy: f64,
}

impl Count {
    fn add(&mut self, ok: bool) {
        self.n += 1;
        self.correct += ok as usize;
        self.accuracy = 100.0 * self.correct as f64 / self.n as f64;
    }
}

/// Oracle execution of converted GQA questions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OracleReport {
    /// Overall.
    pub total: Count,
    /// Per GQA operation present in the question's program.
    pub by_operation: BTreeMap<String, Count>,
    /// Per question type (`types.detailed`).
    pub by_type: BTreeMap<String, Count>,
    /// The first wrong or failed ones.
    pub failures: Vec<String>,
}

impl OracleReport {
    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: OracleReport) {
        let add = |a: &mut Count, b: &Count| {
            a.n += b.n;
            a.correct += b.correct;
            a.accuracy = 100.0 * a.correct as f64 / a.n.max(1) as f64;
        };
        add(&mut self.total, &other.total);
        for (k, c) in &other.by_operation {
            add(self.by_operation.entry(k.clone()).or_default(), c);
        }
        for (k, c) in &other.by_type {
            add(self.by_type.entry(k.clone()).or_default(), c);
        }
        self.failures.extend(other.failures);
        self.failures.truncate(20);
    }
}

/// Converts and runs every question with oracle modules over its scene
/// graph and image.
pub fn oracle_gqa(
    questions: &[Question],
    graphs: &BTreeMap<String, SceneGraph>,
    images_dir: &Path,
) -> OracleReport {
    let mut r = OracleReport::default();
    for q in questions {
        let outcome: Result<String, String> = (|| {
            let text = convert::convert(q, implicit_for(&q.id)).map_err(|e| e.to_string())?;
            let (prog, rep) = validate::check_text(&text, Some(Task::Gqa));
            let prog = prog
                .filter(|_| rep.errors.is_empty())
                .ok_or("converted program invalid")?;
            let g = graphs.get(&q.image_id).ok_or("no scene graph")?;
            let path: PathBuf = gqa::image_path(images_dir, &q.image_id).ok_or("no image")?;
            let img = load_input("IMAGE", &path).map_err(|e| e.to_string())?;
            let mut oracle = Oracle {
                scenes: BTreeMap::from([("IMAGE".to_string(), g.clone())]),
            };
            let inputs = BTreeMap::from([("IMAGE".to_string(), img)]);
            let out = interp::run(&prog, &inputs, &BTreeMap::new(), Some(&mut oracle))
                .map_err(|f| f.error.to_string())?;
            Ok(out.result.map(|v| v.to_answer()).unwrap_or_default())
        })();
        let want = q.answer.clone().unwrap_or_default();
        let ok = outcome.as_deref() == Ok(want.as_str());
        if !ok && r.failures.len() < 20 {
            r.failures.push(format!(
                "{} {:?}: expected {want:?}, got {}",
                q.id,
                q.question,
                match &outcome {
                    Ok(a) => format!("{a:?}"),
                    Err(e) => format!("error: {e}"),
                }
            ));
        }
        r.total.add(ok);
        let mut ops: Vec<String> = q
            .semantic
            .iter()
            .map(|o| o.operation.trim().to_string())
            .collect();
        ops.sort();
        ops.dedup();
        for op in ops {
            r.by_operation.entry(op).or_default().add(ok);
        }
        let t = q.family();
        r.by_type.entry(t).or_default().add(ok);
    }
    r
}

/// Runs every synthetic NLVR2 line's `program` with oracle modules over
/// the pair's scene graphs and images, against its label.
pub fn oracle_nlvr2(
    examples: &[crate::data::nlvr2::Example],
    scenes: &BTreeMap<String, PairScenes>,
    images_dir: &Path,
) -> OracleReport {
    let mut r = OracleReport::default();
    for e in examples {
        let outcome: Result<bool, String> = (|| {
            let text = e.program.as_deref().ok_or("no program field")?;
            let (prog, rep) = validate::check_text(text, Some(Task::Nlvr2));
            let prog = prog
                .filter(|_| rep.errors.is_empty())
                .ok_or("program invalid")?;
            let pair = e.pair_prefix().ok_or("bad identifier")?;
            let s = scenes.get(pair).ok_or("no scene graphs for the pair")?;
            let mut inputs = BTreeMap::new();
            for (name, k) in [("LEFT", 0), ("RIGHT", 1)] {
                let path = images_dir.join(format!("{pair}-img{k}.png"));
                inputs.insert(
                    name.to_string(),
                    load_input(name, &path).map_err(|e| e.to_string())?,
                );
            }
            let mut oracle = Oracle {
                scenes: BTreeMap::from([
                    ("LEFT".to_string(), s.left.clone()),
                    ("RIGHT".to_string(), s.right.clone()),
                ]),
            };
            let out = interp::run(&prog, &inputs, &BTreeMap::new(), Some(&mut oracle))
                .map_err(|f| f.error.to_string())?;
            Ok(out.result.ok_or("no result")?.truthy())
        })();
        let ok = outcome == Ok(e.label);
        if !ok && r.failures.len() < 20 {
            r.failures.push(format!(
                "{} {:?}: expected {}, got {outcome:?}",
                e.identifier, e.sentence, e.label
            ));
        }
        r.total.add(ok);
        let fam = e.family.clone().unwrap_or_else(|| "unlabelled".into());
        r.by_type.entry(fam).or_default().add(ok);
    }
    r
}
