//! `vpd data check`: load everything, check that referenced images exist
//! and decode, count per split and type, and measure label balance and the
//! majority-answer baseline.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{gqa, images, nlvr2, DataError, Issue};

/// The majority-answer baseline of one question type.
#[derive(Debug, Clone, Serialize)]
pub struct Majority {
    /// The most common answer.
    pub answer: String,
    /// Its share, percent: the accuracy of always answering it.
    pub accuracy: f64,
    /// Examples.
    pub n: usize,
}

/// What `vpd data check` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// `gqa` or `nlvr2`.
    pub task: String,
    /// Files read.
    pub files: Vec<String>,
    /// Well-formed examples.
    pub examples: usize,
    /// Examples per split (from the file name).
    pub splits: BTreeMap<String, usize>,
    /// Examples per structural type (GQA) or statement family (NLVR2, when
    /// the lines carry one).
    pub types: BTreeMap<String, usize>,
    /// Answers (GQA) or labels (NLVR2) and how often each occurs.
    pub answers: BTreeMap<String, usize>,
    /// Majority-answer baseline per fine type (GQA `types.detailed`, NLVR2
    /// family), and overall under `all`.
    pub majority_baseline: BTreeMap<String, Majority>,
    /// Scene graphs read (GQA), when the file exists.
    pub scene_graphs: Option<usize>,
    /// Whether images were checked (an image folder was given or found).
    pub images_checked: bool,
    /// Distinct images referenced.
    pub images_referenced: usize,
    /// Referenced images that do not exist.
    pub images_missing: usize,
    /// The first few missing image names.
    pub missing_examples: Vec<String>,
    /// Malformed records and undecodable images.
    pub errors: Vec<Issue>,
    /// Peak resident memory of this process, MB.
    pub peak_rss_mb: f64,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.images_missing == 0
    }
}

/// Peak resident set size of this process (VmHWM), MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn split_of(file: &Path) -> String {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.split(['_', '.']).next().unwrap_or("").to_string()
}

fn majority(counts: &HashMap<String, BTreeMap<String, usize>>) -> BTreeMap<String, Majority> {
    counts
        .iter()
        .map(|(t, answers)| {
            let n: usize = answers.values().sum();
            let (a, c) = answers
                .iter()
                .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
                .map(|(a, c)| (a.clone(), *c))
                .unwrap_or_default();
            (
                t.clone(),
                Majority {
                    answer: a,
                    accuracy: if n == 0 {
                        0.0
                    } else {
                        100.0 * c as f64 / n as f64
                    },
                    n,
                },
            )
        })
        .collect()
}

fn check_image(path: &Path, report: &mut CheckReport) {
    if let Err(e) = images::decode(path) {
        report.errors.push(Issue {
            file: path.display().to_string(),
            at: "image".into(),
            message: match e {
                DataError::BadImage { message, .. } => message,
                other => other.to_string(),
            },
        });
    }
}

/// Checks GQA question files, their scene graphs (next to them in
/// `../sceneGraphs/` when present) and images (in `images`, if given).
pub fn check_gqa(questions: &[PathBuf], images: Option<&Path>) -> CheckReport {
    let mut r = CheckReport {
        task: "gqa".into(),
        images_checked: images.is_some(),
        ..Default::default()
    };
    let mut per_type: HashMap<String, BTreeMap<String, usize>> = HashMap::new();
    let mut image_ids: Vec<String> = Vec::new();
    for file in questions {
        r.files.push(file.display().to_string());
        let split = split_of(file);
        let mut n = 0;
        let res = gqa::for_each_question(file, &mut r.errors, |q| {
            n += 1;
            let structural = q
                .types
                .as_ref()
                .map_or("untyped".into(), |t| t.structural.clone());
            *r.types.entry(structural).or_default() += 1;
            if let Some(a) = &q.answer {
                *r.answers.entry(a.clone()).or_default() += 1;
                let detailed = q.family();
                *per_type
                    .entry(detailed)
                    .or_default()
                    .entry(a.clone())
                    .or_default() += 1;
                *per_type
                    .entry("all".into())
                    .or_default()
                    .entry(a.clone())
                    .or_default() += 1;
            }
            image_ids.push(q.image_id);
        });
        if let Err(e) = res {
            r.errors.push(issue_of(e, file));
        }
        *r.splits.entry(split.clone()).or_default() += n;
        r.examples += n;
        // Scene graphs of this split, when the folder layout has them.
        if let Some(root) = file.parent().and_then(|p| p.parent()) {
            let sg = root
                .join("sceneGraphs")
                .join(format!("{split}_sceneGraphs.json"));
            if sg.exists() {
                match gqa::load_scene_graphs(&sg) {
                    Ok((g, issues)) => {
                        *r.scene_graphs.get_or_insert(0) += g.len();
                        r.errors.extend(issues);
                        r.files.push(sg.display().to_string());
                    }
                    Err(e) => r.errors.push(issue_of(e, &sg)),
                }
            }
        }
    }
    image_ids.sort();
    image_ids.dedup();
    r.images_referenced = image_ids.len();
    if let Some(dir) = images {
        for id in &image_ids {
            match gqa::image_path(dir, id) {
                Some(p) => check_image(&p, &mut r),
                None => {
                    r.images_missing += 1;
                    if r.missing_examples.len() < 10 {
                        r.missing_examples.push(format!("{id}.jpg"));
                    }
                }
            }
        }
    }
    r.majority_baseline = majority(&per_type);
    r.peak_rss_mb = peak_rss_mb();
    r
}

/// Checks NLVR2 JSON-lines files and, when `images` is given, that each
/// pair's two images exist (in that folder or its subfolders) and decode.
pub fn check_nlvr2(files: &[PathBuf], images: Option<&Path>) -> CheckReport {
    let mut r = CheckReport {
        task: "nlvr2".into(),
        images_checked: images.is_some(),
        ..Default::default()
    };
    let index = images.map(nlvr2::index_images);
    let mut per_type: HashMap<String, BTreeMap<String, usize>> = HashMap::new();
    for file in files {
        r.files.push(file.display().to_string());
        let (examples, issues) = match nlvr2::load(file) {
            Ok(x) => x,
            Err(e) => {
                r.errors.push(issue_of(e, file));
                continue;
            }
        };
        r.errors.extend(issues);
        *r.splits.entry(split_of(file)).or_default() += examples.len();
        r.examples += examples.len();
        for e in &examples {
            let label = if e.label { "True" } else { "False" }.to_string();
            *r.answers.entry(label.clone()).or_default() += 1;
            let fam = e.family.clone().unwrap_or_else(|| "unlabelled".into());
            *r.types.entry(fam.clone()).or_default() += 1;
            *per_type
                .entry(fam)
                .or_default()
                .entry(label.clone())
                .or_default() += 1;
            *per_type
                .entry("all".into())
                .or_default()
                .entry(label)
                .or_default() += 1;
            if let (Some(index), Some((a, b))) = (&index, e.image_names()) {
                for name in [a, b] {
                    r.images_referenced += 1;
                    match index.get(&name) {
                        Some(p) => check_image(p, &mut r),
                        None => {
                            r.images_missing += 1;
                            if r.missing_examples.len() < 10 {
                                r.missing_examples.push(name);
                            }
                        }
                    }
                }
            }
        }
    }
    r.majority_baseline = majority(&per_type);
    r.peak_rss_mb = peak_rss_mb();
    r
}

fn issue_of(e: DataError, file: &Path) -> Issue {
    match e {
        DataError::Syntax {
            line,
            column,
            message,
            ..
        } => Issue {
            file: file.display().to_string(),
            at: format!("line {line} column {column}"),
            message,
        },
        other => Issue {
            file: file.display().to_string(),
            at: "file".into(),
            message: other.to_string(),
        },
    }
}

/// The question files of a GQA root (`questions/*_questions.json`), only
/// those of `split` when given.
pub fn gqa_files(root: &Path, split: Option<&str>) -> Result<Vec<PathBuf>, DataError> {
    let dir = root.join("questions");
    let rd = std::fs::read_dir(&dir).map_err(|source| DataError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with("_questions.json")
                && split.is_none_or(|s| name.starts_with(&format!("{s}_")))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(DataError::Missing(format!(
            "no {}_questions.json under {}",
            split.map_or("*".to_string(), |s| format!("{s}_*")),
            dir.display()
        )));
    }
    Ok(files)
}

/// The JSON-lines files of an NLVR2 root (`{split}.json`, or `data/`
/// below it), only `split` when given.
pub fn nlvr2_files(root: &Path, split: Option<&str>) -> Result<Vec<PathBuf>, DataError> {
    let mut files = Vec::new();
    for dir in [root.to_path_buf(), root.join("data")] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for p in rd.flatten().map(|e| e.path()) {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_data = name.ends_with(".json") && !name.contains('_');
            if is_data && split.is_none_or(|s| name == format!("{s}.json")) {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DataError::Missing(format!(
            "no {} under {}",
            split.map_or("*.json".to_string(), |s| format!("{s}.json")),
            root.display()
        )));
    }
    Ok(files)
}
