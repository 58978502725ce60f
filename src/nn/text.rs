//! Tokenizer and vocabularies; they travel with every checkpoint.

use serde::{Deserialize, Serialize};

/// Padding token id.
pub const PAD: i64 = 0;
/// Unknown-word token id.
pub const UNK: i64 = 1;

/// Words -> ids, fixed when a model is made and stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokenizer {
    /// Word list; index = id. 0 is `<pad>`, 1 is `<unk>`.
    pub words: Vec<String>,
    /// Tokens per text (left-padded, so a recurrent encoder ends on words).
    pub max_len: usize,
    /// A Hugging Face `tokenizer.json` instead of the word list: ids as
    /// that tokenizer makes them (special tokens included), right-padded
    /// with its padding id, with an attention mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf: Option<HfTokenizer>,
}

/// A Hugging Face tokenizer: its `tokenizer.json`, kept verbatim, and the
/// tokenizer the `tokenizers` crate reads from it (parsed once a process).
#[derive(Clone, Serialize, Deserialize)]
pub struct HfTokenizer {
    /// The `tokenizer.json` document, verbatim.
    pub json: String,
    #[serde(skip)]
    parsed: std::sync::Arc<std::sync::OnceLock<Result<(tokenizers::Tokenizer, i64), String>>>,
}

impl PartialEq for HfTokenizer {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HfTokenizer({} bytes)", self.json.len())
    }
}

impl HfTokenizer {
    /// Reads a `tokenizer.json` document; an error says why it is not one.
    pub fn from_json(text: &str) -> Result<HfTokenizer, String> {
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| format!("not JSON: {e}"))?;
        let t = HfTokenizer {
            json: text.to_string(),
            parsed: Default::default(),
        };
        t.get()?;
        Ok(t)
    }

    /// The tokenizer and its padding id: the tokenizer's own padding
    /// setting, else the id of `[PAD]`, `<pad>` or `<|pad|>`, else 0.
    fn get(&self) -> Result<&(tokenizers::Tokenizer, i64), String> {
        self.parsed
            .get_or_init(|| {
                let mut t = tokenizers::Tokenizer::from_bytes(self.json.as_bytes())
                    .map_err(|e| format!("not a Hugging Face tokenizer.json: {e}"))?;
                let pad = t.get_padding().map(|p| i64::from(p.pad_id)).or_else(|| {
                    ["[PAD]", "<pad>", "<|pad|>"]
                        .iter()
                        .find_map(|p| t.token_to_id(p))
                        .map(i64::from)
                });
                // vpd pads and truncates to the module's max_len itself.
                t.with_padding(None);
                t.with_truncation(None).map_err(|e| e.to_string())?;
                Ok((t, pad.unwrap_or(0)))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Ids and attention mask of `text`, `max_len` each: cut to `max_len`
    /// (keeping the start, as Hugging Face truncation does, with the last
    /// special token kept), then right-padded.
    pub fn encode(&self, text: &str, max_len: usize) -> (Vec<i64>, Vec<i64>) {
        let Ok((t, pad)) = self.get() else {
            return (vec![0; max_len], vec![0; max_len]);
        };
        let mut ids: Vec<i64> = t
            .encode(text, true)
            .map(|e| e.get_ids().iter().map(|&i| i64::from(i)).collect())
            .unwrap_or_default();
        if ids.len() > max_len {
            let last = ids[ids.len() - 1];
            ids.truncate(max_len);
            if max_len > 0 {
                ids[max_len - 1] = last;
            }
        }
        let mut mask = vec![1; ids.len()];
        ids.resize(max_len, *pad);
        mask.resize(max_len, 0);
        (ids, mask)
    }
}

/// Lower-cased words of a text (letters and digits).
pub fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

impl Tokenizer {
    /// A vocabulary of every word in `texts`.
    pub fn fit<'a>(texts: impl IntoIterator<Item = &'a str>, max_len: usize) -> Tokenizer {
        let mut set = std::collections::BTreeSet::new();
        for t in texts {
            set.extend(words(t));
        }
        let mut w = vec!["<pad>".to_string(), "<unk>".to_string()];
        w.extend(set);
        Tokenizer {
            words: w,
            max_len,
            hf: None,
        }
    }

    /// Token ids, left-padded or cut to `max_len` (keeping the end); an
    /// unknown word is `<unk>`. With a Hugging Face tokenizer: its ids,
    /// right-padded (see [`HfTokenizer::encode`]).
    pub fn encode(&self, text: &str) -> Vec<i64> {
        if let Some(h) = &self.hf {
            return h.encode(text, self.max_len).0;
        }
        let ws = words(text);
        let ids: Vec<i64> = ws
            .iter()
            .map(|w| {
                self.words[2..]
                    .binary_search(w)
                    .map_or(UNK, |i| i as i64 + 2)
            })
            .collect();
        let tail = &ids[ids.len().saturating_sub(self.max_len)..];
        let mut out = vec![PAD; self.max_len - tail.len()];
        out.extend_from_slice(tail);
        out
    }
}

/// Answer strings <-> class ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// The answers; index = class.
    pub list: Vec<String>,
}

impl Answers {
    /// Class of an answer; `None` when the vocabulary lacks it.
    pub fn id(&self, a: &str) -> Option<i64> {
        let a = a.trim().to_lowercase();
        self.list.iter().position(|x| *x == a).map(|i| i as i64)
    }
}
