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
        Tokenizer { words: w, max_len }
    }

    /// Token ids, left-padded or cut to `max_len` (keeping the end); an
    /// unknown word is `<unk>`.
    pub fn encode(&self, text: &str) -> Vec<i64> {
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
