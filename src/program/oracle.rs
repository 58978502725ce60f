//! Oracle modules: LOC and VQA answered from the synthetic scene graph
//! through each image's provenance. Perfect perception, to measure program
//! quality apart from module quality, and the upper bound of every table.

use std::collections::BTreeMap;

use crate::data::gqa::{SceneGraph, SceneObject};
use crate::data::world::{COLORS, SIZES};

use super::interp::{ImageVal, Perception, PerceptionError, Rect, ScoredBox};

/// Oracle LOC and VQA over scene graphs keyed by source image name
/// (`IMAGE`, `LEFT`, `RIGHT`).
#[derive(Debug, Clone, Default)]
pub struct Oracle {
    /// Scene graph of each source image.
    pub scenes: BTreeMap<String, SceneGraph>,
}

fn singular(w: &str) -> String {
    if let Some(s) = w
        .strip_suffix("es")
        .filter(|s| s.ends_with("ss") || s.ends_with('x') || s.ends_with("sh"))
    {
        s.to_string()
    } else if let Some(s) = w.strip_suffix('s').filter(|s| !s.ends_with('s')) {
        s.to_string()
    } else {
        w.to_string()
    }
}

/// An object query: attribute words and a name (`red circles`).
fn matches(o: &SceneObject, query: &str) -> bool {
    let words: Vec<&str> = query.split_whitespace().collect();
    let Some((name, attrs)) = words.split_last() else {
        return false;
    };
    let name_ok =
        o.name == *name || o.name == singular(name) || *name == "object" || *name == "objects";
    name_ok && attrs.iter().all(|a| o.attributes.iter().any(|x| x == a))
}

fn attr<'a>(o: &'a SceneObject, among: &[&str]) -> Option<&'a str> {
    o.attributes
        .iter()
        .map(String::as_str)
        .find(|a| among.contains(a))
}

fn strip<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.strip_prefix(prefix)
}

impl Oracle {
    fn graph(&self, img: &ImageVal) -> Result<&SceneGraph, String> {
        self.scenes
            .get(&img.source)
            .ok_or_else(|| format!("the oracle has no scene graph for image `{}`", img.source))
    }

    /// Objects whose centre lies in the image's rectangle (source coords).
    fn visible<'a>(&self, g: &'a SceneGraph, img: &ImageVal) -> Vec<(&'a String, &'a SceneObject)> {
        let r = img.rect;
        g.objects
            .iter()
            .filter(|(_, o)| {
                let (cx, cy) = (o.x + o.w / 2.0, o.y + o.h / 2.0);
                cx >= r.x && cx < r.x + r.w && cy >= r.y && cy < r.y + r.h
            })
            .collect()
    }

    /// The object a question is about: matching `query` (any when None),
    /// nearest the image's centre.
    fn focus<'a>(
        &self,
        g: &'a SceneGraph,
        img: &ImageVal,
        query: Option<&str>,
    ) -> Result<&'a SceneObject, String> {
        let (mx, my) = img.rect.centre();
        self.visible(g, img)
            .into_iter()
            .filter(|(_, o)| query.is_none_or(|q| matches(o, q)))
            .min_by(|a, b| {
                let d = |o: &SceneObject| {
                    (o.x + o.w / 2.0 - mx).powi(2) + (o.y + o.h / 2.0 - my).powi(2)
                };
                d(a.1).total_cmp(&d(b.1))
            })
            .map(|(_, o)| o)
            .ok_or_else(|| format!("no {} in this image", query.unwrap_or("object")))
    }
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

impl Perception for Oracle {
    fn name(&self, _module: &str) -> String {
        "oracle".into()
    }
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        self.boxes(image, object).map_err(PerceptionError::Oracle)
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError> {
        self.answer(image, question)
            .map_err(PerceptionError::Oracle)
    }
}

impl Oracle {
    /// LOC from the scene graph: every visible object of that name.
    fn boxes(&self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, String> {
        let g = self.graph(image)?;
        Ok(self
            .visible(g, image)
            .into_iter()
            .filter(|(_, o)| matches(o, object))
            .map(|(_, o)| ScoredBox {
                rect: Rect {
                    x: o.x - image.rect.x,
                    y: o.y - image.rect.y,
                    w: o.w,
                    h: o.h,
                },
                score: 1.0,
            })
            .collect())
    }

    /// VQA from the scene graph, for the questions programs ask.
    fn answer(&self, image: &ImageVal, question: &str) -> Result<String, String> {
        let g = self.graph(image)?;
        let q = question.trim().trim_end_matches('?').trim().to_lowercase();
        let q = q.as_str();
        let count = |what: &str| {
            self.visible(g, image)
                .iter()
                .filter(|(_, o)| matches(o, what))
                .count()
        };
        // Counting and existence over the whole image.
        if let Some(rest) = strip(q, "how many ") {
            let what = rest
                .trim_end_matches(" are in the image")
                .trim_end_matches(" are there")
                .trim_end_matches(" in the image");
            return Ok(count(what).to_string());
        }
        for p in [
            "is there a ",
            "is there an ",
            "are there any ",
            "are there ",
        ] {
            if let Some(rest) = strip(q, p) {
                let what = rest.trim_end_matches(" in the image");
                return Ok(yes(count(what) > 0));
            }
        }
        // The object to the side of another (relate with no name).
        if let Some(rest) =
            strip(q, "what shape is the object ").or_else(|| strip(q, "what is the object "))
        {
            for rel in ["to the left of", "to the right of", "above", "below"] {
                if let Some(anchor) = rest
                    .strip_prefix(rel)
                    .map(|a| a.trim().trim_start_matches("the "))
                {
                    let ids: Vec<&String> = g
                        .objects
                        .iter()
                        .filter(|(_, o)| matches(o, anchor))
                        .map(|(id, _)| id)
                        .collect();
                    let hits: Vec<&SceneObject> = self
                        .visible(g, image)
                        .into_iter()
                        .filter(|(_, o)| {
                            o.relations
                                .iter()
                                .any(|r| r.name == rel && ids.contains(&&r.object))
                        })
                        .map(|(_, o)| o)
                        .collect();
                    return match hits.as_slice() {
                        [o] => Ok(o.name.clone()),
                        _ => Err(format!(
                            "{} objects are {rel} the {anchor} here",
                            hits.len()
                        )),
                    };
                }
            }
        }
        // Attribute questions about one object.
        let about = |prefixes: &[&str]| -> Option<Option<String>> {
            for p in prefixes {
                if let Some(rest) = strip(q, p) {
                    let rest = rest.trim();
                    return Some(match rest {
                        "it" | "this" | "" => None,
                        r => Some(
                            r.trim_start_matches("the ")
                                .trim_start_matches("this ")
                                .to_string(),
                        ),
                    });
                }
            }
            None
        };
        if let Some(what) = about(&["what color is "]) {
            let o = self.focus(g, image, what.as_deref())?;
            return attr(o, &COLORS)
                .map(str::to_string)
                .ok_or_else(|| "the object has no colour".into());
        }
        if let Some(what) = about(&["what size is "]) {
            let o = self.focus(g, image, what.as_deref())?;
            return attr(o, &SIZES)
                .map(str::to_string)
                .ok_or_else(|| "the object has no size".into());
        }
        if let Some(what) = about(&["what shape is ", "what is "]) {
            return Ok(self.focus(g, image, what.as_deref())?.name.clone());
        }
        if let Some(rest) = strip(q, "is ") {
            // is the circle red / is it red / is the circle red or blue
            let (subject, tail) = match rest.strip_prefix("it ") {
                Some(t) => (None, t),
                None => {
                    let r = rest.trim_start_matches("the ").trim_start_matches("this ");
                    let mut words: Vec<&str> = r.split_whitespace().collect();
                    let colors_at = words
                        .iter()
                        .position(|w| COLORS.contains(w) || SIZES.contains(w));
                    let Some(i) = colors_at.filter(|i| *i > 0) else {
                        return Err(format!("the oracle cannot answer {question:?}"));
                    };
                    let tail = words.split_off(i).join(" ");
                    return self.answer_is(g, image, Some(&words.join(" ")), &tail, question);
                }
            };
            return self.answer_is(g, image, subject, tail, question);
        }
        Err(format!("the oracle cannot answer {question:?}"))
    }
}

impl Oracle {
    fn answer_is(
        &self,
        g: &SceneGraph,
        image: &ImageVal,
        subject: Option<&str>,
        tail: &str,
        question: &str,
    ) -> Result<String, String> {
        let o = self.focus(g, image, subject)?;
        let opts: Vec<&str> = tail.split(" or ").map(str::trim).collect();
        if opts.len() == 2 {
            return opts
                .iter()
                .find(|x| o.attributes.iter().any(|a| a == *x))
                .map(|x| x.to_string())
                .ok_or_else(|| format!("neither option of {question:?} holds"));
        }
        Ok(yes(o.attributes.iter().any(|a| a == tail.trim())))
    }
}
