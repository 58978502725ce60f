//! The adapters' settings that an experiment gives (`[adapter]`, the
//! pointer modes): the words a teacher is asked in, never the synthetic
//! world's vocabulary in code (the defaults speak it). `distill::adapter`
//! applies them.

use serde::{Deserialize, Serialize};

use crate::data::world::{plural, COLORS, SHAPES};

/// How the adapter points the teacher at the step's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Pointer {
    /// The step's image and its raw question.
    #[serde(rename = "none")]
    None,
    /// The step's image, the question naming the object (the paper).
    #[serde(rename = "name")]
    Name,
    /// The source image with the object's box drawn, the question naming it.
    #[serde(rename = "name+box")]
    NameBox,
}

impl Pointer {
    /// Every mode.
    pub const ALL: [Pointer; 3] = [Pointer::None, Pointer::Name, Pointer::NameBox];
    /// The name used in configs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Pointer::None => "none",
            Pointer::Name => "name",
            Pointer::NameBox => "name+box",
        }
    }
}

impl std::str::FromStr for Pointer {
    type Err = String;
    fn from_str(s: &str) -> Result<Pointer, String> {
        Pointer::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("pointer mode `{s}`: expected none, name or name+box"))
    }
}

impl std::fmt::Display for Pointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the adapters say to a teacher, from the experiment's `[adapter]`
/// table (the defaults speak the synthetic world's words). Each pattern
/// has one slot, filled from the step: `{object}`, `{noun}` or `{what}`;
/// statements also take `{side}` (left or right) and `{k}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdapterCfg {
    /// The GQA teacher's question verifying a LOC candidate of `{object}`.
    pub verify: String,
    /// When the name holds none of these words, one question per word
    /// (`{object}` = "WORD NAME") and the verdict is the largest P(yes):
    /// the teacher's existence questions name one. Empty: the name alone.
    pub verify_with: Vec<String>,
    /// NLVR2 counting: `[question, statement]` pairs, the question lower
    /// case without its question mark, `{noun}` plural in it; the
    /// statement made once per candidate count `{k}` (the singular for 1).
    pub count: Vec<[String; 2]>,
    /// The candidate counts, lowest and highest.
    pub counts: [usize; 2],
    /// NLVR2 existence: `[question, statement]` pairs with `{what}`.
    pub exists: Vec<[String; 2]>,
    /// Plural -> singular for the count of one, beyond dropping a final
    /// `s` (the synthetic world's shapes by default).
    pub plurals: std::collections::BTreeMap<String, String>,
}

impl Default for AdapterCfg {
    fn default() -> Self {
        AdapterCfg {
            verify: "Is there a {object}?".into(),
            verify_with: COLORS.iter().map(|c| c.to_string()).collect(),
            count: vec![[
                "how many {noun} are in the image".into(),
                "The {side} image contains exactly {k} {noun}.".into(),
            ]],
            counts: [0, 4],
            exists: ["a", "an"]
                .map(|a| {
                    [
                        format!("is there {a} {{what}} in the image"),
                        format!("The {{side}} image contains {a} {{what}}."),
                    ]
                })
                .to_vec(),
            plurals: SHAPES.iter().map(|s| (plural(s), s.to_string())).collect(),
        }
    }
}

impl AdapterCfg {
    /// Checks the patterns and the count range; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        let one = |key: &str, p: &str, ph: &str| {
            if p.matches(ph).count() == 1 {
                Ok(())
            } else {
                Err(format!("`adapter.{key}` = {p:?} needs exactly one {ph}"))
            }
        };
        one("verify", &self.verify, "{object}")?;
        for [q, st] in &self.count {
            one("count", q, "{noun}")?;
            one("count", st, "{k}")?;
        }
        for [q, st] in &self.exists {
            one("exists", q, "{what}")?;
            one("exists", st, "{what}")?;
        }
        let [lo, hi] = self.counts;
        if lo > hi || hi - lo > 20 {
            return Err(format!(
                "`adapter.counts` = [{lo}, {hi}]: lowest first, at most 21 candidates"
            ));
        }
        Ok(())
    }

    pub(crate) fn singular(&self, noun: &str) -> String {
        let mut words: Vec<String> = noun.split(' ').map(str::to_string).collect();
        if let Some(last) = words.last_mut() {
            *last = match self.plurals.get(last.as_str()) {
                Some(s) => s.clone(),
                None => last.strip_suffix('s').unwrap_or(last).to_string(),
            };
        }
        words.join(" ")
    }
}
