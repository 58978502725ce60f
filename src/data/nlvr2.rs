//! NLVR2's published format: JSON lines (the files are named `.json`) with
//! `identifier` (`split-set-pair-sentence`), `sentence`, `label`
//! ("True"/"False"), `left_url`, `right_url`, ...; images
//! `split-set-pair-img0.png` / `-img1.png`, possibly in numbered
//! subfolders, some JPEG despite the extension.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::{DataError, Issue};

fn label<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match String::deserialize(d)?.as_str() {
        "True" => Ok(true),
        "False" => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "label must be \"True\" or \"False\", not {other:?}"
        ))),
    }
}

fn label_out<S: serde::Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *v { "True" } else { "False" })
}

/// One NLVR2 example. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// `split-set-pair-sentence`.
    pub identifier: String,
    /// The statement.
    pub sentence: String,
    /// Whether the statement is true of the pair.
    #[serde(deserialize_with = "label", serialize_with = "label_out")]
    pub label: bool,
    /// Source URL of the left image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_url: Option<String>,
    /// Source URL of the right image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub right_url: Option<String>,
    /// The statement's VisProg program (synthetic data only; real lines
    /// have none and need the LLM generator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Statement family (synthetic data only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
}

impl Example {
    /// `split-set-pair` (the identifier without its sentence number).
    pub fn pair_prefix(&self) -> Option<&str> {
        self.identifier.rsplit_once('-').map(|(p, _)| p)
    }

    /// File names of the left and right image.
    pub fn image_names(&self) -> Option<(String, String)> {
        let p = self.pair_prefix()?;
        Some((format!("{p}-img0.png"), format!("{p}-img1.png")))
    }
}

/// Reads a JSON-lines file; a malformed line is an [`Issue`] naming its line
/// number and field, and the other lines are still read.
pub fn load(path: &Path) -> Result<(Vec<Example>, Vec<Issue>), DataError> {
    let f = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = path.display().to_string();
    let mut out = Vec::new();
    let mut issues = Vec::new();
    // identifier -> the line that first gave it
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in std::io::BufReader::new(f).split(b'\n').enumerate() {
        let line = line.map_err(|source| DataError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // A line that is not UTF-8 is an issue of that line, not an I/O
        // error of the file that names no line.
        let line = match String::from_utf8(line) {
            Ok(l) => l,
            Err(e) => {
                issues.push(Issue {
                    file: file.clone(),
                    at: format!("line {}", i + 1),
                    message: format!(
                        "not UTF-8 (byte {} of the line)",
                        e.utf8_error().valid_up_to() + 1
                    ),
                });
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match super::record::<Example>(&line) {
            Ok(e) if e.pair_prefix().is_some_and(|p| !super::is_name(p)) => issues.push(Issue {
                file: file.clone(),
                at: format!("line {}", i + 1),
                message: format!(
                    "identifier {:?} is not split-set-pair-sentence (its images would be a path, not a name)",
                    e.identifier
                ),
            }),
            Ok(e) if seen.contains_key(&e.identifier) => issues.push(Issue {
                file: file.clone(),
                at: format!("line {}", i + 1),
                message: format!(
                    "identifier {} appears again (first at line {}); the first line is kept",
                    e.identifier, seen[&e.identifier]
                ),
            }),
            Ok(e) if e.pair_prefix().is_some() => {
                seen.insert(e.identifier.clone(), i + 1);
                out.push(e)
            }
            Ok(e) => issues.push(Issue {
                file: file.clone(),
                at: format!("line {}", i + 1),
                message: format!(
                    "identifier {:?} is not split-set-pair-sentence",
                    e.identifier
                ),
            }),
            Err((message, column)) => issues.push(Issue {
                file: file.clone(),
                at: format!("line {} column {column}", i + 1),
                message,
            }),
        }
    }
    Ok((out, issues))
}

/// Index of the image files under a folder and its subfolders (the real
/// train images are spread over numbered folders), by file name.
pub fn index_images(root: &Path) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                if depth < 3 {
                    stack.push((p, depth + 1));
                }
            } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                out.entry(name.to_string()).or_insert(p);
            }
        }
    }
    out
}
