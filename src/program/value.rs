//! The values of a running program, shared by the interpreter (which makes
//! them) and the trace (which records them): images with their provenance,
//! LOC's boxes, scalars.

use std::sync::Arc;

use image::RgbImage;
use serde::Serialize;

use super::expr::Val;

/// A rectangle in pixels: x, y, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rect {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Rect {
    /// Centre.
    pub fn centre(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

/// An image with where it came from: the source image, the crop rectangle
/// in the source's coordinates, and the step that made it.
#[derive(Debug, Clone)]
pub struct ImageVal {
    /// The pixels.
    pub pixels: Arc<RgbImage>,
    /// Name of the source image (`IMAGE`, `LEFT`, `RIGHT`, or a file).
    pub source: String,
    /// This image's rectangle in the source's pixel coordinates.
    pub rect: Rect,
    /// The step (output variable) that made it; `None` for an input.
    pub made_by: Option<String>,
}

/// A box found by LOC, in the coordinates of the image LOC ran on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScoredBox {
    /// The box.
    pub rect: Rect,
    /// Detector score.
    pub score: f64,
}

/// LOC's output.
#[derive(Debug, Clone)]
pub struct BoxesVal {
    /// Boxes, best first.
    pub boxes: Vec<ScoredBox>,
    /// The object asked for.
    pub object: String,
    /// The image they are on.
    pub image: ImageVal,
    /// LOC's special objects TOP/BOTTOM/LEFT/RIGHT give image halves: CROP
    /// takes such a region as it is, without enlarging it.
    pub region: bool,
}

/// A program value.
#[derive(Debug, Clone)]
pub enum Value {
    /// An image.
    Image(ImageVal),
    /// Boxes.
    Boxes(BoxesVal),
    /// A number, text or boolean.
    Scalar(Val),
}
