//! NLVR2-style statements about pairs of synthetic images, with the VisProg
//! program of each (whole-image count and existence questions to VQA, as
//! VisProg's NLVR2 programs ask). Labels are balanced within each family.

use super::rng::Rng;
use super::world::{plural, Scene, COLORS, SHAPES, SIZES};

/// Statement families.
pub const FAMILIES: &[&str] = &[
    "contains_exact",
    "at_least",
    "one_image_exist",
    "each_count",
    "total",
    "compare_more",
    "all_color",
    "side_exist",
];

/// A statement with its program and label.
#[derive(Debug, Clone)]
pub struct Built {
    /// The statement.
    pub sentence: String,
    /// Its VisProg program.
    pub program: String,
    /// Whether it is true of the pair.
    pub label: bool,
}

fn noun(k: usize, shape: &str) -> String {
    if k == 1 {
        shape.to_string()
    } else {
        plural(shape)
    }
}

/// Replaces the objects of `shape` by `n` new ones (colours from `color`).
fn set_count(
    rng: &mut Rng,
    s: &mut Scene,
    shape: &'static str,
    n: usize,
    scale: f64,
    mut color: impl FnMut(&mut Rng, usize) -> &'static str,
) -> Option<()> {
    s.objects.retain(|o| o.shape != shape);
    for i in 0..n {
        let c = color(rng, i);
        let z = *rng.pick(&SIZES);
        s.place(rng, shape, c, z, scale)?;
    }
    Some(())
}

fn any_color(rng: &mut Rng, _: usize) -> &'static str {
    COLORS[rng.below(COLORS.len())]
}

fn how_many(var: usize, image: &str, what: &str) -> String {
    format!("ANSWER{var}=VQA(image={image},question='How many {what} are in the image?')")
}

/// Builds one statement of `family` with label `label` about the pair
/// (`left`, `right`), changing the scenes as needed. `None`: retry.
pub fn build(
    family: &str,
    label: bool,
    rng: &mut Rng,
    left: &mut Scene,
    right: &mut Scene,
    scale: f64,
) -> Option<Built> {
    let shape = *rng.pick(&SHAPES);
    let pl = plural(shape);
    let on_left = rng.chance(0.5);
    let (side, image) = if on_left {
        ("left", "LEFT")
    } else {
        ("right", "RIGHT")
    };
    match family {
        "contains_exact" => {
            let k = rng.below(5);
            let actual = if label {
                k
            } else if k == 0 || rng.chance(0.5) {
                k + 1
            } else {
                k - 1
            };
            let target = if on_left { &mut *left } else { &mut *right };
            set_count(rng, target, shape, actual, scale, any_color)?;
            Some(Built {
                sentence: format!("The {side} image contains exactly {k} {}.", noun(k, shape)),
                program: format!(
                    "{}\nANSWER1=EVAL(expr='{{ANSWER0}} == {k}')\nFINAL_ANSWER=RESULT(var=ANSWER1)",
                    how_many(0, image, &pl)
                ),
                label,
            })
        }
        "at_least" => {
            let k = 2 + rng.below(2);
            let actual = if label {
                k + rng.below(2)
            } else {
                k - 1 - rng.below(2).min(k - 1)
            };
            let target = if on_left { &mut *left } else { &mut *right };
            set_count(rng, target, shape, actual, scale, any_color)?;
            Some(Built {
                sentence: format!("There are at least {k} {pl} in the {side} image."),
                program: format!(
                    "{}\nANSWER1=EVAL(expr='{{ANSWER0}} >= {k}')\nFINAL_ANSWER=RESULT(var=ANSWER1)",
                    how_many(0, image, &pl)
                ),
                label,
            })
        }
        "one_image_exist" => {
            let c = *rng.pick(&COLORS);
            // true: exactly one image has it; false: both or neither.
            let (l_has, r_has) = if label {
                if on_left {
                    (true, false)
                } else {
                    (false, true)
                }
            } else if rng.chance(0.5) {
                (true, true)
            } else {
                (false, false)
            };
            for (s, has) in [(&mut *left, l_has), (&mut *right, r_has)] {
                let n = if has { 1 } else { 0 };
                s.objects.retain(|o| !(o.shape == shape && o.color == c));
                for _ in 0..n {
                    let z = *rng.pick(&SIZES);
                    s.place(rng, shape, c, z, scale)?;
                }
            }
            let q = format!("Is there a {c} {shape} in the image?");
            Some(Built {
                sentence: format!("There is a {c} {shape} in one image."),
                program: format!(
                    "ANSWER0=VQA(image=LEFT,question='{q}')\nANSWER1=VQA(image=RIGHT,question='{q}')\nANSWER2=EVAL(expr='{{ANSWER0}} xor {{ANSWER1}}')\nFINAL_ANSWER=RESULT(var=ANSWER2)"
                ),
                label,
            })
        }
        "each_count" => {
            let k = 1 + rng.below(2);
            let (a, b) = if label {
                (k, k)
            } else {
                let off = if k == 1 { k + 1 } else { k - 1 };
                match rng.below(3) {
                    0 => (k, off),
                    1 => (off, k),
                    _ => (off, off),
                }
            };
            set_count(rng, left, shape, a, scale, any_color)?;
            set_count(rng, right, shape, b, scale, any_color)?;
            Some(Built {
                sentence: format!("There {} {k} {} in each image.", if k == 1 { "is" } else { "are" }, noun(k, shape)),
                program: format!(
                    "{}\n{}\nANSWER2=EVAL(expr='{{ANSWER0}} == {k} and {{ANSWER1}} == {k}')\nFINAL_ANSWER=RESULT(var=ANSWER2)",
                    how_many(0, "LEFT", &pl),
                    how_many(1, "RIGHT", &pl)
                ),
                label,
            })
        }
        "total" => {
            let k = 2 + rng.below(3);
            let sum = if label {
                k
            } else if rng.chance(0.5) {
                k + 1
            } else {
                k - 1
            };
            let a = rng.below(sum.min(3) + 1).min(sum);
            let b = sum - a;
            if b > 3 {
                return None;
            }
            set_count(rng, left, shape, a, scale, any_color)?;
            set_count(rng, right, shape, b, scale, any_color)?;
            Some(Built {
                sentence: format!("There are {k} {pl} in total."),
                program: format!(
                    "{}\n{}\nANSWER2=EVAL(expr='{{ANSWER0}} + {{ANSWER1}} == {k}')\nFINAL_ANSWER=RESULT(var=ANSWER2)",
                    how_many(0, "LEFT", &pl),
                    how_many(1, "RIGHT", &pl)
                ),
                label,
            })
        }
        "compare_more" => {
            let lo = rng.below(3);
            let hi = lo + 1 + rng.below(2);
            let (a, b) = if label {
                (hi, lo)
            } else if rng.chance(0.25) {
                (lo, lo)
            } else {
                (lo, hi)
            };
            set_count(rng, left, shape, a, scale, any_color)?;
            set_count(rng, right, shape, b, scale, any_color)?;
            Some(Built {
                sentence: format!("The left image contains more {pl} than the right image."),
                program: format!(
                    "{}\n{}\nANSWER2=EVAL(expr='{{ANSWER0}} > {{ANSWER1}}')\nFINAL_ANSWER=RESULT(var=ANSWER2)",
                    how_many(0, "LEFT", &pl),
                    how_many(1, "RIGHT", &pl)
                ),
                label,
            })
        }
        "all_color" => {
            let c = *rng.pick(&COLORS);
            let n = 1 + rng.below(3);
            let odd = rng.below(n);
            let other = loop {
                let o = *rng.pick(&COLORS);
                if o != c {
                    break o;
                }
            };
            let target = if on_left { &mut *left } else { &mut *right };
            set_count(rng, target, shape, n, scale, |_, i| {
                if !label && i == odd {
                    other
                } else {
                    c
                }
            })?;
            Some(Built {
                sentence: format!("All {pl} in the {side} image are {c}."),
                program: format!(
                    "{}\n{}\nANSWER2=EVAL(expr='{{ANSWER0}} > 0 and {{ANSWER0}} == {{ANSWER1}}')\nFINAL_ANSWER=RESULT(var=ANSWER2)",
                    how_many(0, image, &pl),
                    how_many(1, image, &format!("{c} {pl}"))
                ),
                label,
            })
        }
        "side_exist" => {
            // One image has (true) or lacks (false) an object of a colour
            // and shape; when it lacks it, the shape may still be there in
            // another colour.
            let c = *rng.pick(&COLORS);
            let target = if on_left { &mut *left } else { &mut *right };
            target
                .objects
                .retain(|o| !(o.shape == shape && o.color == c));
            let z = *rng.pick(&SIZES);
            if label {
                target.place(rng, shape, c, z, scale)?;
            } else if rng.chance(0.5) {
                let other = loop {
                    let o = *rng.pick(&COLORS);
                    if o != c {
                        break o;
                    }
                };
                target.place(rng, shape, other, z, scale)?;
            }
            let q = format!("Is there a {c} {shape} in the image?");
            Some(Built {
                sentence: format!("The {side} image contains a {c} {shape}."),
                program: format!(
                    "ANSWER0=VQA(image={image},question='{q}')\nANSWER1=EVAL(expr='{{ANSWER0}}')\nFINAL_ANSWER=RESULT(var=ANSWER1)"
                ),
                label,
            })
        }
        _ => None,
    }
}
