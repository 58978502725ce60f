//! Examples from datasets: the built-in networks' inputs and labels read
//! from GQA, NLVR2 and generic-corpus folders.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::data::images::{decode, to_model_input};
use crate::data::synth::GenericRecord;
use crate::data::synth_store::INPUT;
use crate::data::world::{plural, COLORS, SHAPES};
use crate::data::{gqa, nlvr2, DataError};
use crate::nn::detector::DetExample;
use crate::nn::model::Example;
use crate::nn::text::Answers;

fn input(path: &Path, side: u32) -> Result<Arc<Vec<f32>>, DataError> {
    Ok(Arc::new(to_model_input(&decode(path)?, side)))
}

/// GQA examples of a split with their family (`types.detailed`).
/// Images are made `side` pixels square, the input size of the network
/// that will read them.
pub fn gqa_examples(
    dir: &Path,
    split: &str,
    answers: &Answers,
    side: u32,
) -> Result<Vec<(Example, String)>, DataError> {
    let (qs, _) =
        gqa::load_questions(&dir.join(format!("questions/{split}_balanced_questions.json")))?;
    let mut out = Vec::new();
    for q in qs {
        let Some(label) = q.answer.as_deref().and_then(|a| answers.id(a)) else {
            continue;
        };
        let path = gqa::image_path(&dir.join("images"), &q.image_id)
            .ok_or_else(|| DataError::Missing(format!("image {} missing", q.image_id)))?;
        let fam = q.family();
        out.push((
            Example {
                images: vec![input(&path, side)?],
                text: q.question,
                label,
            },
            fam,
        ));
    }
    Ok(out)
}

/// NLVR2 examples of a split with their family; label 1 = True; the
/// pair's images `side` pixels square.
pub fn nlvr2_examples(
    dir: &Path,
    split: &str,
    side: u32,
) -> Result<Vec<(Example, String)>, DataError> {
    let (ex, _) = nlvr2::load(&dir.join(format!("{split}.json")))?;
    let mut out = Vec::new();
    for e in ex {
        let (a, b) = e.image_names().ok_or_else(|| {
            DataError::Missing(format!(
                "{}: the identifier names no image pair",
                e.identifier
            ))
        })?;
        let imgs = dir.join("images").join(split);
        out.push((
            Example {
                images: vec![input(&imgs.join(a), side)?, input(&imgs.join(b), side)?],
                text: e.sentence.clone(),
                label: e.label as i64,
            },
            e.family.clone().unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// The records of a generic-corpus split (`{split}.jsonl`), naming the file
/// and line of one that does not parse.
pub fn generic_records(dir: &Path, split: &str) -> Result<Vec<GenericRecord>, DataError> {
    let p = dir.join(format!("{split}.jsonl"));
    let text = std::fs::read_to_string(&p).map_err(|source| DataError::Io {
        path: p.clone(),
        source,
    })?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| DataError::Malformed {
                path: p.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })
        })
        .collect()
}

/// Generic-corpus VQA examples of a split with their kind (crop/scene).
pub fn generic_examples(
    dir: &Path,
    split: &str,
    answers: &Answers,
) -> Result<Vec<(Example, String)>, DataError> {
    generic_examples_at(dir, split, answers, INPUT)
}

/// [`generic_examples`] with images at `side` pixels (a user's module
/// need not take 64 px).
pub fn generic_examples_at(
    dir: &Path,
    split: &str,
    answers: &Answers,
    side: u32,
) -> Result<Vec<(Example, String)>, DataError> {
    let mut out = Vec::new();
    for r in generic_records(dir, split)? {
        let (Some(q), Some(a)) = (r.question, r.answer) else {
            continue;
        };
        let Some(label) = answers.id(&a) else {
            continue;
        };
        out.push((
            Example {
                images: vec![input(&dir.join(&r.image), side)?],
                text: q,
                label,
            },
            r.kind,
        ));
    }
    Ok(out)
}

/// LOC training examples of a generic split: for each image, the boxes of
/// each shape it has (named by shape, or one time in three by a colour and
/// the shape, the colour right half of the time), and a shape it lacks
/// (no boxes).
pub fn generic_detections(dir: &Path, split: &str) -> Result<Vec<DetExample>, DataError> {
    let mut out = Vec::new();
    for r in generic_records(dir, split)? {
        if r.kind != "boxes" || r.boxes.is_empty() {
            continue;
        }
        let mut rng = crate::data::rng::Rng::new(0, &format!("loc/{}", r.id));
        let image = input(&dir.join(&r.image), INPUT)?;
        let side = INPUT as f64;
        let frac = |b: [f64; 4]| b.map(|v| (v / side) as f32);
        let mut shapes: Vec<&str> = r.boxes.iter().map(|b| b.name.as_str()).collect();
        shapes.sort();
        shapes.dedup();
        let mut queries: Vec<String> = Vec::new();
        for sh in &shapes {
            if rng.chance(1.0 / 3.0) {
                let o = r.boxes.iter().find(|b| b.name == *sh).expect("present");
                let c = if rng.chance(0.5) {
                    o.attributes.first().cloned().unwrap_or_default()
                } else {
                    rng.pick(&COLORS).to_string()
                };
                queries.push(format!("{c} {sh}"));
            } else {
                queries.push(sh.to_string());
            }
        }
        let absent: Vec<&str> = SHAPES
            .iter()
            .copied()
            .filter(|s| !shapes.contains(s))
            .collect();
        if !absent.is_empty() {
            queries.push(rng.pick(&absent).to_string());
        }
        for name in queries {
            out.push(DetExample {
                image: image.clone(),
                boxes: r
                    .boxes
                    .iter()
                    .filter(|b| names(&name, &b.name, &b.attributes))
                    .map(|b| frac(b.bbox))
                    .collect(),
                name,
            });
        }
    }
    Ok(out)
}

/// Whether LOC's `query` (`circle`, `red circle`, `circles`) names an
/// object with this name and attributes.
pub fn names(query: &str, name: &str, attributes: &[String]) -> bool {
    let words: Vec<&str> = query.split_whitespace().collect();
    let Some((last, rest)) = words.split_last() else {
        return false;
    };
    let singular = |w: &str| {
        SHAPES.iter().any(|s| *s == w || plural(s) == w) && (w == name || plural(name) == w)
    };
    singular(last) && rest.iter().all(|w| attributes.iter().any(|a| a == w))
}

/// Accuracy per group, percent, with counts.
pub fn per_group(preds: &[i64], ex: &[(Example, String)]) -> BTreeMap<String, (usize, f64)> {
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (p, (e, g)) in preds.iter().zip(ex) {
        let c = m.entry(g.clone()).or_default();
        c.0 += 1;
        c.1 += (*p == e.label) as usize;
    }
    m.into_iter()
        .map(|(k, (n, c))| (k, (n, 100.0 * c as f64 / n as f64)))
        .collect()
}
