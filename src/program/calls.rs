//! The typed record of a module call, one core for both frameworks: what
//! a VisProg step (`LOC`, `VQA`) and a ViperGPT method (`find`,
//! `simple_query`, `llm_query`, ...) asked, on which image (source and
//! rectangle, with the visual pointer: the object and box of the LOC call
//! that made it), what came back and from which module. The trace of
//! either framework holds these; the adapter and the oracle read them.

use serde::Serialize;

use super::value::Rect;
use crate::vocab::Slot;

/// What made an image: the LOC call (VisProg's `LOC` then a crop,
/// ViperGPT's `find`) and the object it asked for, which is the visual
/// pointer of every later call on the image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pointer {
    /// The object name LOC was given.
    pub object: String,
    /// The box LOC found, in the source image (top-left pixel
    /// coordinates).
    pub rect: Rect,
}

/// What a call asks: a module slot, or the language model of `llm_query`
/// (serialised as the slot is, `loc` or `vqa`, and `llm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSlot {
    /// A module slot.
    Module(Slot),
    /// The OpenAI-compatible endpoint (`llm_query`).
    Llm,
}

impl Serialize for CallSlot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CallSlot::Module(slot) => slot.serialize(s),
            CallSlot::Llm => s.serialize_str("llm"),
        }
    }
}

impl std::fmt::Display for CallSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallSlot::Module(s) => s.fmt(f),
            CallSlot::Llm => f.write_str("LLM"),
        }
    }
}

/// One call of a module slot, as the trace, the adapter and the oracle see
/// it whatever the framework: the slot, the API method, the image (source
/// and rectangle) with its pointer, the text, the answer, the module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleCall {
    /// LOC, VQA, or LLM (`llm_query`).
    pub slot: CallSlot,
    /// The API method (`find`, `simple_query`, ...).
    pub method: String,
    /// The source image's name (none for `llm_query`, which sees no
    /// image).
    pub source: Option<String>,
    /// The image's rectangle in the source (top-left pixel coordinates);
    /// none for `llm_query`.
    pub rect: Option<Rect>,
    /// What made the image, when a `find` did.
    pub pointer: Option<Pointer>,
    /// The object name or the question as the module got it.
    pub text: String,
    /// The module's answer: boxes (source coordinates) or text.
    pub answer: serde_json::Value,
    /// The module, e.g. `vqa@3` or `oracle`.
    pub module: String,
}
