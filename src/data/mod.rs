//! Datasets: loaders for the real GQA and NLVR2 formats, the synthetic
//! world that writes them, and `vpd data check`. No tch here: images become
//! plain `Vec<f32>` in [`images::to_model_input`].

pub mod check;
pub mod gqa;
pub mod image_cache;
pub mod images;
pub mod nlvr2;
pub mod real_layout;
pub mod render;
pub mod rng;
pub mod synth;
pub mod synth_gqa;
pub mod synth_nlvr2;
pub mod synth_store;
pub mod world;

pub use image_cache::ImageCache;

use std::path::PathBuf;

use serde::Serialize;

/// The splits and the roles they play: `train` (teachers), `distill`,
/// `dev` (hyperparameters), `test`.
pub const SPLITS: [&str; 4] = ["train", "distill", "dev", "test"];

/// One problem found in a dataset: a malformed record or a bad image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Issue {
    /// The file.
    pub file: String,
    /// Where in it: a question id, a line, a position.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.at, self.message)
    }
}

/// Decodes one JSON record as a `T`; the error's message names the field
/// by its path (`` `types.detailed`: invalid type: integer `3`, expected a
/// string ``), without serde's position (callers name the record), and
/// the column where it is known.
pub fn record<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, usize)> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        let msg = gqa::strip_position(inner);
        let msg = if path == "." || path.is_empty() {
            msg
        } else {
            format!("`{path}`: {msg}")
        };
        (msg, inner.column())
    })
}

/// Whether `s` is a plain file name: what a data file's ids (a GQA
/// `imageId`, an NLVR2 identifier) and a split's name are, so that nothing
/// they become resolves outside the dataset's root. Not empty, not `.` or
/// `..`, no `/`, `\\` or NUL.
pub fn is_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0'])
}

/// A split name that is not a plain name (`../x`, an absolute path) is an
/// error naming it, before any file is opened.
pub fn check_split(split: &str) -> Result<(), DataError> {
    if is_name(split) {
        Ok(())
    } else {
        Err(DataError::Missing(format!(
            "split {split:?} is not a split name (a name such as `val` or `dev`; a path, `..` or an empty name never is)"
        )))
    }
}

/// An error that stops reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file is not valid JSON (truncated, say).
    #[error("{path}: line {line} column {column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// serde_json's message.
        message: String,
    },
    /// An image that does not decode.
    #[error("{path}: not a readable image: {message}")]
    BadImage {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A file that reads but does not hold what its format says.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (with the line where known).
        message: String,
    },
    /// Something a dataset should hold is not there: an image, a split.
    #[error("{0}")]
    Missing(String),
    /// Settings outside what the generator takes (a size, a count).
    #[error("{0}")]
    BadSettings(String),
    /// The synthetic world's generator could not build what was asked.
    #[error("{0}")]
    Generator(String),
    /// A benchmark's own step failed (spawning its loader, encoding).
    #[error("{0}")]
    Bench(String),
}
