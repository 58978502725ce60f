//! Turning a data slice into jobs: a split of a synthetic or real folder
//! read into the executor's `Job`s (inputs, text, program, answer, scene
//! graphs), and the slice's dataset key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::actors::GenerateSource;
use super::exec::Job;
use crate::data::synth::PairScenes;
use crate::data::{gqa, nlvr2, DataError};
use crate::vocab::Task;

use super::score::EvalError;

/// The jobs of a synthetic split: GQA questions with their images and
/// scene graphs, or NLVR2 statements with their pairs and programs.
pub fn jobs(task: Task, dir: &Path, split: &str) -> Result<Vec<Job>, EvalError> {
    jobs_with(task, dir, split, true)
}

/// The jobs of a split of a folder of either layout (`truth`: with answers
/// and the scene graphs there are).
pub fn jobs_in(
    task: Task,
    dir: &Path,
    layout: &Layout,
    split: &str,
    truth: bool,
) -> Result<Vec<Job>, EvalError> {
    match (layout, task) {
        (Layout::Synthetic, _) => jobs_with(task, dir, split, truth),
        (Layout::Real { images }, Task::Gqa) => {
            let files = real_gqa_files(dir, split)?;
            let mut qs = Vec::new();
            for f in &files {
                let (got, issues) = gqa::load_questions(f)?;
                refuse_issues(&issues)?;
                qs.extend(got);
            }
            let graphs = match real_scene_graphs(dir, split) {
                Some(p) if truth => gqa::load_scene_graphs(&p)?.0,
                _ => BTreeMap::new(),
            };
            let images = images.clone().unwrap_or_else(|| dir.join("images"));
            Ok(gqa_jobs(qs, &graphs, &images, truth))
        }
        (Layout::Real { images }, Task::Nlvr2) => {
            let file = real_nlvr2_file(dir, split)?;
            let (ex, issues) = nlvr2::load(&file)?;
            refuse_issues(&issues)?;
            let root = images.clone().unwrap_or_else(|| dir.join("images"));
            // The real images sit in numbered folders, found by name.
            let index = nlvr2::index_images(&root);
            let find = |name: String| index.get(&name).cloned().unwrap_or_else(|| root.join(name));
            Ok(ex
                .into_iter()
                .map(|e| {
                    let (l, r) = e.image_names().unwrap_or_default();
                    nlvr2_job(e, truth, [find(l), find(r)], BTreeMap::new())
                })
                .collect())
        }
    }
}

/// A dataset file with malformed records is refused, naming the first
/// ones, rather than scored on the part that reads (which would change
/// what the split is without saying so).
fn refuse_issues(issues: &[crate::data::Issue]) -> Result<(), EvalError> {
    let Some(first) = issues.first() else {
        return Ok(());
    };
    Err(EvalError::BadRecords {
        file: first.file.clone(),
        count: issues.len(),
        first: issues
            .iter()
            .take(3)
            .map(|i| format!("{}: {}", i.at, i.message))
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// A real NLVR2 split's lines file, `{split}.json` (JSON lines).
fn real_nlvr2_file(root: &Path, split: &str) -> Result<PathBuf, EvalError> {
    crate::data::check_split(split)?;
    let file = root.join(format!("{split}.json"));
    if file.is_file() {
        return Ok(file);
    }
    let mut available: Vec<String> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    available.sort();
    Err(EvalError::UnknownSplit {
        root: root.to_path_buf(),
        split: split.to_string(),
        expected: format!("{split}.json"),
        available,
    })
}

/// The questions files of a real GQA split: `questions/{split}_questions.json`,
/// or every `.json` in the folder `questions/{split}_questions/` (as the real
/// `train_all_questions/`).
fn real_gqa_files(root: &Path, split: &str) -> Result<Vec<PathBuf>, EvalError> {
    crate::data::check_split(split)?;
    let q = root.join("questions");
    let file = q.join(format!("{split}_questions.json"));
    if file.is_file() {
        return Ok(vec![file]);
    }
    let folder = q.join(format!("{split}_questions"));
    if folder.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
            .map_err(|source| DataError::Io {
                path: folder.clone(),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let mut available: Vec<String> = std::fs::read_dir(&q)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix("_questions.json")
                .or_else(|| n.strip_suffix("_questions"))
                .map(str::to_string)
        })
        .collect();
    available.sort();
    available.dedup();
    Err(EvalError::UnknownSplit {
        root: root.to_path_buf(),
        split: split.to_string(),
        expected: format!("questions/{split}_questions.json"),
        available,
    })
}

/// A real GQA split's scene graphs, when the folder has them: the real files
/// drop `_balanced`/`_all` from the split's name (`val_sceneGraphs.json`
/// for `val_balanced`).
fn real_scene_graphs(root: &Path, split: &str) -> Option<PathBuf> {
    if !crate::data::is_name(split) {
        return None;
    }
    let name = split
        .strip_suffix("_balanced")
        .or_else(|| split.strip_suffix("_all"))
        .unwrap_or(split);
    [name, split]
        .iter()
        .map(|n| {
            root.join("sceneGraphs")
                .join(format!("{n}_sceneGraphs.json"))
        })
        .find(|p| p.is_file())
}

/// GQA questions as jobs: the image found by id under `images` (a missing
/// one fails that example when it runs), the scene graph when there is one.
fn gqa_jobs(
    mut qs: Vec<gqa::Question>,
    graphs: &BTreeMap<String, gqa::SceneGraph>,
    images: &Path,
    truth: bool,
) -> Vec<Job> {
    if !truth {
        for q in &mut qs {
            q.answer = None;
            q.full_answer = None;
        }
    }
    qs.into_iter()
        .map(|q| {
            let path = gqa::image_path(images, &q.image_id)
                .unwrap_or_else(|| images.join(format!("{}.jpg", q.image_id)));
            Job {
                id: q.id.clone(),
                kind: q.family(),
                text: q.question.clone(),
                expected: q.answer.clone().unwrap_or_default(),
                inputs: vec![("IMAGE".into(), path)],
                scenes: graphs
                    .get(&q.image_id)
                    .map(|g| BTreeMap::from([("IMAGE".to_string(), g.clone())]))
                    .unwrap_or_default(),
                source: GenerateSource::Gqa(Box::new(q)),
            }
        })
        .collect()
}

/// A real dataset's identity: a fingerprint of its content (the questions
/// files and the list of images with their sizes), not of its folder's name.
fn real_dataset_key(
    task: Task,
    root: &Path,
    images: Option<&Path>,
    split: &str,
) -> Result<String, EvalError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let files = match task {
        Task::Gqa => real_gqa_files(root, split)?,
        Task::Nlvr2 => vec![real_nlvr2_file(root, split)?],
    };
    for f in &files {
        let mut file = std::fs::File::open(f).map_err(|source| DataError::Io {
            path: f.clone(),
            source,
        })?;
        std::io::copy(&mut file, &mut h).map_err(|source| DataError::Io {
            path: f.clone(),
            source,
        })?;
    }
    let images = images.map_or_else(|| root.join("images"), Path::to_path_buf);
    // Every image below the folder (NLVR2's sit in numbered subfolders).
    let mut listed: Vec<(String, u64)> = nlvr2::index_images(&images)
        .into_iter()
        .filter_map(|(name, p)| Some((name, std::fs::metadata(p).ok()?.len())))
        .collect();
    listed.sort();
    for (name, len) in &listed {
        h.update(format!("\n{name} {len}").as_bytes());
    }
    let hash = hex::encode(h.finalize());
    Ok(format!("{task}-real-{}", &hash[..16]))
}

/// The jobs of a split without anything a run may not learn from: no
/// scene graphs are read, and answers and labels are blanked (`expected`
/// is empty, a GQA question's `answer` and `fullAnswer` are removed).
/// Distillation runs its programs on these.
pub fn jobs_without_truth(task: Task, dir: &Path, split: &str) -> Result<Vec<Job>, EvalError> {
    jobs_with(task, dir, split, false)
}

fn jobs_with(task: Task, dir: &Path, split: &str, truth: bool) -> Result<Vec<Job>, EvalError> {
    crate::data::check_split(split)?;
    match task {
        Task::Gqa => {
            let (qs, _) = gqa::load_questions(
                &dir.join(format!("questions/{split}_balanced_questions.json")),
            )?;
            let graphs = if truth {
                gqa::load_scene_graphs(&dir.join(format!("sceneGraphs/{split}_sceneGraphs.json")))?
                    .0
            } else {
                BTreeMap::new()
            };
            Ok(gqa_jobs(qs, &graphs, &dir.join("images"), truth))
        }
        Task::Nlvr2 => {
            let (ex, _) = nlvr2::load(&dir.join(format!("{split}.json")))?;
            let sp = dir.join(format!("{split}_scenes.json"));
            let scenes: BTreeMap<String, PairScenes> = std::fs::read(&sp)
                .ok()
                .filter(|_| truth)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let imgs = dir.join("images").join(split);
            Ok(ex
                .into_iter()
                .map(|e| {
                    let pair = e.pair_prefix().unwrap_or_default().to_string();
                    let scenes = scenes
                        .get(&pair)
                        .map(|s| {
                            BTreeMap::from([
                                ("LEFT".to_string(), s.left.clone()),
                                ("RIGHT".to_string(), s.right.clone()),
                            ])
                        })
                        .unwrap_or_default();
                    let images = [
                        imgs.join(format!("{pair}-img0.png")),
                        imgs.join(format!("{pair}-img1.png")),
                    ];
                    nlvr2_job(e, truth, images, scenes)
                })
                .collect())
        }
    }
}

/// An NLVR2 statement as a job on its pair (`LEFT`, `RIGHT`).
fn nlvr2_job(
    e: nlvr2::Example,
    truth: bool,
    [left, right]: [PathBuf; 2],
    scenes: BTreeMap<String, gqa::SceneGraph>,
) -> Job {
    Job {
        id: e.identifier.clone(),
        kind: e.family.clone().unwrap_or_else(|| "unlabelled".into()),
        text: e.sentence.clone(),
        expected: if truth {
            e.label.to_string()
        } else {
            String::new()
        },
        inputs: vec![("LEFT".into(), left), ("RIGHT".into(), right)],
        scenes,
        source: GenerateSource::Given(e.program),
    }
}

/// How a dataset folder is laid out.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Layout {
    /// Written by the synthetic world (the store's data, `vpd data synth`):
    /// splits `train`, `distill`, `dev`, `test`, scene graphs for every one.
    #[default]
    Synthetic,
    /// The real published layout: a split is named by its file's stem
    /// (`testdev_balanced` for `questions/testdev_balanced_questions.json`),
    /// scene graphs are optional, images of any size (under `images`, or
    /// the root's `images/`).
    Real {
        /// The images' folder when it is not the root's `images/`.
        images: Option<PathBuf>,
    },
}

/// A slice of one split of a dataset: what an evaluation, a distillation
/// phase or a pre-training reads. Two roles may read one split (the real
/// method distils on a part of GQA train) through slices that do not
/// overlap.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// The dataset's root.
    pub data: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// The split (a synthetic split's name, or a real file's stem).
    pub split: String,
    /// The first example read.
    pub offset: usize,
    /// At most this many examples (none: to the end).
    pub limit: Option<usize>,
}

impl Slice {
    /// A whole split of a synthetic folder.
    pub fn synthetic(data: &Path, split: &str) -> Slice {
        Slice {
            data: data.to_path_buf(),
            layout: Layout::Synthetic,
            split: split.to_string(),
            offset: 0,
            limit: None,
        }
    }

    /// At most `n` examples (0: all).
    pub fn first(mut self, n: usize) -> Slice {
        self.limit = (n > 0).then_some(n);
        self
    }

    /// The slice's jobs (`truth`: with answers and the scene graphs there
    /// are).
    pub fn jobs(&self, task: Task, truth: bool) -> Result<Vec<Job>, EvalError> {
        let all = jobs_in(task, &self.data, &self.layout, &self.split, truth)?;
        Ok(all
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect())
    }

    /// The part after the split's name in a dataset key: `[:n]`, `[a:b]`,
    /// `[a:]` or nothing for a whole split.
    fn range(&self) -> String {
        match (self.offset, self.limit) {
            (0, None) => String::new(),
            (0, Some(n)) => format!("[:{n}]"),
            (a, Some(n)) => format!("[{a}:{}]", a + n),
            (a, None) => format!("[{a}:]"),
        }
    }

    /// The slice's identity: a synthetic folder by its name (its generator
    /// config), a real one by a fingerprint of its content.
    pub fn key(&self, task: Task) -> Result<String, EvalError> {
        let folder = match &self.layout {
            Layout::Synthetic => self
                .data
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Layout::Real { images } => {
                real_dataset_key(task, &self.data, images.as_deref(), &self.split)?
            }
        };
        Ok(format!("{folder}/{}{}", self.split, self.range()))
    }

    /// Whether the split has scene graphs (a synthetic one always has).
    pub fn has_scene_graphs(&self, task: Task) -> bool {
        match (&self.layout, task) {
            (Layout::Synthetic, _) => true,
            (Layout::Real { .. }, Task::Gqa) => {
                real_scene_graphs(&self.data, &self.split).is_some()
            }
            (Layout::Real { .. }, Task::Nlvr2) => false,
        }
    }

    /// Checks that the split exists, naming those there are when not.
    pub fn check(&self, task: Task) -> Result<(), EvalError> {
        crate::data::check_split(&self.split)?;
        match (&self.layout, task) {
            (Layout::Synthetic, _) => Ok(()),
            (Layout::Real { .. }, Task::Gqa) => real_gqa_files(&self.data, &self.split).map(|_| ()),
            (Layout::Real { .. }, Task::Nlvr2) => {
                real_nlvr2_file(&self.data, &self.split).map(|_| ())
            }
        }
    }
}
