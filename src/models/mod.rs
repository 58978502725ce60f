//! The networks as the rest of vpd uses them: loading a version of the
//! store for a slot (`load`), the examples the built-in networks train and
//! are scored on, read from datasets (`examples`), and pre-training into the
//! store (`pretrain`). The synthetic data made under the store lives in
//! `data::cache`.

use crate::data::world::{plural, COLORS, RELATIONS, SHAPES, SIZES};
use crate::data::DataError;
use crate::nn::text::Answers;
use crate::nn::NnError;
use crate::store::StoreError;

mod examples;
mod load;
mod pretrain;
pub mod shipped;

pub use crate::data::synth_store::{data_dir, data_of_version, INPUT};
pub use examples::*;
pub use load::*;
pub use pretrain::*;

/// An error while pre-training.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Network.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A version of another kind of network than the slot takes.
    #[error("{version} is a {kind}, not a {wanted} module")]
    WrongKind {
        /// `module@number`.
        version: String,
        /// What its checkpoint holds.
        kind: String,
        /// `VQA` or `LOC`.
        wanted: &'static str,
    },
    /// A network that cannot play the role its kind names: what its
    /// adapter needs of it is missing.
    #[error("{version} ({kind}) cannot serve as a {kind}: it needs {missing}")]
    Role {
        /// `module@number` or the imported file.
        version: String,
        /// Its kind.
        kind: String,
        /// Everything missing, in words.
        missing: String,
    },
}

/// The answer vocabulary shared by students and the GQA teacher.
pub fn answers() -> Answers {
    let mut list: Vec<String> = Vec::new();
    list.extend(COLORS.iter().map(|s| s.to_string()));
    list.extend(SHAPES.iter().map(|s| s.to_string()));
    list.extend(SIZES.iter().map(|s| s.to_string()));
    list.extend(["yes", "no"].map(String::from));
    list.extend((0..=6).map(|n| n.to_string()));
    list.extend(["left", "right", "top", "bottom", "color", "size"].map(String::from));
    Answers { list }
}

/// Words every model knows besides those of its training texts.
fn world_words() -> String {
    let mut w: Vec<String> = Vec::new();
    for s in SHAPES {
        w.push(s.into());
        w.push(plural(s));
    }
    w.extend(
        COLORS
            .iter()
            .chain(SIZES.iter())
            .chain(RELATIONS.iter())
            .map(|s| s.to_string()),
    );
    w.push("what color shape size is it this the there a an in image how many are object side which on do have same different common contains exactly more than all each total at least one left right both or and of".into());
    w.join(" ")
}
