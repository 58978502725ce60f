//! GQA's published format: `questions/{split}_balanced_questions.json` (an
//! object keyed by question id), `sceneGraphs/{split}_sceneGraphs.json`,
//! `images/{imageId}.jpg|png`. Files are read as a stream of entries, so
//! the 1.3 GB train file never sits in memory as one JSON tree.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{DataError, Issue};

/// One step of a GQA `semantic` program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SemanticOp {
    /// e.g. `select`, `relate`, `filter color`, `query`, `exist`.
    pub operation: String,
    /// Indices of the steps it reads.
    #[serde(default)]
    pub dependencies: Vec<usize>,
    /// e.g. `pond (1039893)`, `cart,near,s (1039872)`, `?`.
    pub argument: String,
}

/// GQA's question types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Types {
    /// query, verify, logical, choose, compare.
    pub structural: String,
    /// obj, attr, rel, cat, global.
    pub semantic: String,
    /// Fine-grained type, e.g. `existRelS`.
    pub detailed: String,
}

/// A list of question ids kept as one comma-joined string: the train split
/// has tens of millions of them, and a `String` each would multiply the
/// file's size in memory by four. Reads and writes as a JSON list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdList(String);

impl IdList {
    /// The ids.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').filter(|s| !s.is_empty())
    }
    /// Number of ids.
    pub fn len(&self) -> usize {
        self.iter().count()
    }
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<S: AsRef<str>> FromIterator<S> for IdList {
    fn from_iter<I: IntoIterator<Item = S>>(it: I) -> Self {
        let mut s = String::new();
        for id in it {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(id.as_ref());
        }
        IdList(s)
    }
}

impl Serialize for IdList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for IdList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of question ids")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<IdList, A::Error> {
                let mut s = String::new();
                while let Some(id) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    if id.contains(',') {
                        return Err(serde::de::Error::custom(format!(
                            "question id {id:?} contains a comma"
                        )));
                    }
                    if !s.is_empty() {
                        s.push(',');
                    }
                    s.push_str(&id);
                }
                Ok(IdList(s))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One GQA question, every field of the published format. Unknown fields
/// are ignored; `imageId` and `question` are required. `annotations` and
/// `groups` are kept as their raw JSON text (compact; parse on demand).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Question {
    /// The question id (the key of the published object; not a field).
    #[serde(skip)]
    pub id: String,
    /// Image id (`images/{imageId}.jpg`).
    pub image_id: String,
    /// The question.
    pub question: String,
    /// Short answer (absent on the unanswered test split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// Full-sentence answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_answer: Option<String>,
    /// The functional program.
    #[serde(default)]
    pub semantic: Vec<SemanticOp>,
    /// The program as one string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_str: Option<String>,
    /// Question types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Types>,
    /// Word index -> object id maps for question, answer, fullAnswer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Box<RawValue>>,
    /// Whether it is in the balanced set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_balanced: Option<bool>,
    /// Answer-balancing groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Box<RawValue>>,
    /// Entailed question ids.
    #[serde(default)]
    pub entailed: IdList,
    /// Equivalent question ids.
    #[serde(default)]
    pub equivalent: IdList,
}

impl Question {
    /// The question's family for per-type scores: `types.detailed`, or
    /// `untyped` when the file gives no types.
    pub fn family(&self) -> String {
        self.types
            .as_ref()
            .map_or("untyped".into(), |t| t.detailed.clone())
    }
}

/// A relation from one object to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// The other object's id.
    pub object: String,
    /// e.g. `to the left of`.
    pub name: String,
}

/// One object of a scene graph (pixel coordinates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    /// Name, e.g. `circle`.
    pub name: String,
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Attributes, e.g. `red`, `small`.
    #[serde(default)]
    pub attributes: Vec<String>,
    /// Relations from this object to others.
    #[serde(default)]
    pub relations: Vec<Relation>,
}

/// One image's scene graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneGraph {
    /// Image width, pixels.
    pub width: u32,
    /// Image height, pixels.
    pub height: u32,
    /// Objects by id (ordered, for deterministic output).
    pub objects: BTreeMap<String, SceneObject>,
}

/// Streams the entries of a JSON object `{key: value, ...}` from `reader`,
/// calling `f(key, raw_value)` for each. A syntax error (a truncated file)
/// stops the stream and is returned with its line and column.
pub fn stream_object<R: Read>(
    reader: R,
    mut f: impl FnMut(String, Box<RawValue>),
) -> Result<usize, serde_json::Error> {
    struct Seed<'a, F>(&'a mut F);
    impl<'de, F: FnMut(String, Box<RawValue>)> DeserializeSeed<'de> for Seed<'_, F> {
        type Value = usize;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de, F: FnMut(String, Box<RawValue>)> Visitor<'de> for Seed<'_, F> {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object keyed by id")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while let Some(k) = map.next_key::<String>()? {
                let v: Box<RawValue> = map.next_value()?;
                (self.0)(k, v);
                n += 1;
            }
            Ok(n)
        }
    }
    let mut de = serde_json::Deserializer::from_reader(reader);
    let n = Seed(&mut f).deserialize(&mut de)?;
    de.end()?;
    Ok(n)
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>, DataError> {
    let f = std::fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f))
}

/// Streams a file holding one JSON object keyed by id, decoding each entry
/// as a `T`: `f(id, value)` for each well-formed one, an [`Issue`] naming
/// `what` and the id for each malformed one. A file that is not valid JSON
/// is an error naming its line and column.
fn for_each_entry<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    issues: &mut Vec<Issue>,
    mut f: impl FnMut(String, T),
) -> Result<usize, DataError> {
    let file = path.display().to_string();
    // A key given twice in the object: the first is kept, the others are
    // issues (a JSON reader keeping one silently changes the split).
    let mut seen = std::collections::HashSet::new();
    stream_object(open(path)?, |id, raw| {
        if seen.contains(&id) {
            issues.push(Issue {
                file: file.clone(),
                at: format!("{what} {id}"),
                message: format!("the id {id} appears again; the first {what} of that id is kept"),
            });
            return;
        }
        seen.insert(id.clone());
        match super::record::<T>(raw.get()) {
            Ok(v) => f(id, v),
            Err((message, _)) => issues.push(Issue {
                file: file.clone(),
                at: format!("{what} {id}"),
                message,
            }),
        }
    })
    .map_err(|e| DataError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e),
    })
}

/// Reads a questions file, calling `f` for each well-formed question and
/// collecting an [`Issue`] for each malformed one (naming the question id
/// and field). A file that is not valid JSON is an error naming its line
/// and column.
pub fn for_each_question(
    path: &Path,
    issues: &mut Vec<Issue>,
    mut f: impl FnMut(Question),
) -> Result<usize, DataError> {
    let file = path.display().to_string();
    let mut bad = Vec::new();
    let n = for_each_entry(path, "question", issues, |id, mut q: Question| {
        if !super::is_name(&q.image_id) {
            // An id is a name in images/, never a path out of the root.
            bad.push(Issue {
                file: file.clone(),
                at: format!("question {id}"),
                message: format!(
                    "imageId {:?} is not an image name (a path, `..` or an empty name never is)",
                    q.image_id
                ),
            });
            return;
        }
        q.id = id;
        f(q)
    })?;
    issues.extend(bad);
    Ok(n)
}

/// Loads every question into memory.
pub fn load_questions(path: &Path) -> Result<(Vec<Question>, Vec<Issue>), DataError> {
    let mut out = Vec::new();
    let mut issues = Vec::new();
    for_each_question(path, &mut issues, |q| out.push(q))?;
    Ok((out, issues))
}

/// Loads a scene-graph file (`{imageId: {width, height, objects}}`).
pub fn load_scene_graphs(
    path: &Path,
) -> Result<(BTreeMap<String, SceneGraph>, Vec<Issue>), DataError> {
    let mut out = BTreeMap::new();
    let mut issues = Vec::new();
    for_each_entry(path, "scene graph", &mut issues, |id, g: SceneGraph| {
        out.insert(id, g);
    })?;
    Ok((out, issues))
}

/// serde_json's message without its trailing " at line L column C" (we
/// name the position ourselves).
pub(crate) fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Where an image of this id is: `images/{id}.jpg`, `.jpeg` or `.png`.
pub fn image_path(images: &Path, image_id: &str) -> Option<std::path::PathBuf> {
    if !super::is_name(image_id) {
        return None;
    }
    ["jpg", "png", "jpeg"]
        .iter()
        .map(|ext| images.join(format!("{image_id}.{ext}")))
        .find(|p| p.exists())
}
