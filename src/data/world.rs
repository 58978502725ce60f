//! The synthetic world: scenes of a few shapes with colours and sizes, and
//! the spatial relations between them. Pure data; rendering is `render.rs`.

use super::rng::Rng;

/// Shapes (the objects' names).
pub const SHAPES: [&str; 6] = ["circle", "square", "triangle", "diamond", "cross", "ring"];
/// Colours.
pub const COLORS: [&str; 8] = [
    "red", "green", "blue", "yellow", "purple", "orange", "cyan", "white",
];
/// Sizes.
pub const SIZES: [&str; 2] = ["small", "large"];
/// Plural of a shape name.
pub fn plural(shape: &str) -> String {
    match shape {
        "cross" => "crosses".into(),
        s => format!("{s}s"),
    }
}

/// RGB of a colour under neutral light.
pub fn rgb(color: &str) -> [f32; 3] {
    match color {
        "red" => [220.0, 40.0, 40.0],
        "green" => [40.0, 170.0, 60.0],
        "blue" => [40.0, 80.0, 225.0],
        "yellow" => [235.0, 215.0, 40.0],
        "purple" => [145.0, 60.0, 185.0],
        "orange" => [245.0, 135.0, 30.0],
        "cyan" => [40.0, 205.0, 215.0],
        _ => [245.0, 245.0, 245.0],
    }
}

/// One object of a scene. Coordinates are fractions of the image side.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj {
    /// Shape (the object's name).
    pub shape: &'static str,
    /// Colour.
    pub color: &'static str,
    /// Size.
    pub size: &'static str,
    /// Centre x in [0, 1].
    pub cx: f64,
    /// Centre y in [0, 1] (down).
    pub cy: f64,
    /// Side of the bounding square, fraction of the image.
    pub extent: f64,
}

impl Obj {
    /// Bounding box (x, y, w, h) in fractions.
    pub fn bbox(&self) -> (f64, f64, f64, f64) {
        let h = self.extent / 2.0;
        (self.cx - h, self.cy - h, self.extent, self.extent)
    }
}

/// A spatial relation between two objects.
pub const RELATIONS: [&str; 4] = ["to the left of", "to the right of", "above", "below"];

/// A scene: objects placed without overlap.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scene {
    /// Objects.
    pub objects: Vec<Obj>,
}

/// Extent of a small / large object (fraction of the side) before the
/// domain's scale.
pub fn extent_of(size: &str) -> f64 {
    if size == "small" {
        0.19
    } else {
        0.29
    }
}

impl Scene {
    /// Whether `rel` holds from `a` to `b` ("a is `rel` b"). Needs a clear
    /// margin so that the relation is visible.
    pub fn relation(&self, a: usize, rel: &str, b: usize) -> bool {
        let (p, q) = (&self.objects[a], &self.objects[b]);
        let m = 0.06;
        match rel {
            "to the left of" => p.cx + m < q.cx,
            "to the right of" => p.cx > q.cx + m,
            "above" => p.cy + m < q.cy,
            "below" => p.cy > q.cy + m,
            _ => false,
        }
    }

    /// Indices of objects with this shape.
    pub fn with_shape(&self, shape: &str) -> Vec<usize> {
        (0..self.objects.len())
            .filter(|&i| self.objects[i].shape == shape)
            .collect()
    }

    /// Number of objects matching shape and (optionally) colour.
    pub fn count(&self, shape: &str, color: Option<&str>) -> usize {
        self.objects
            .iter()
            .filter(|o| o.shape == shape && color.is_none_or(|c| o.color == c))
            .count()
    }

    /// Tries to place an object of `size` (scaled by `scale`) without
    /// overlapping the others; returns its index.
    pub fn place(
        &mut self,
        rng: &mut Rng,
        shape: &'static str,
        color: &'static str,
        size: &'static str,
        scale: f64,
    ) -> Option<usize> {
        let extent = extent_of(size) * scale;
        for _ in 0..200 {
            let h = extent / 2.0 + 0.02;
            let cx = rng.range(h, 1.0 - h);
            let cy = rng.range(h, 1.0 - h);
            let clear = self.objects.iter().all(|o| {
                let d = (o.extent + extent) / 2.0 + 0.03;
                (o.cx - cx).abs() > d || (o.cy - cy).abs() > d
            });
            if clear {
                self.objects.push(Obj {
                    shape,
                    color,
                    size,
                    cx,
                    cy,
                    extent,
                });
                return Some(self.objects.len() - 1);
            }
        }
        None
    }

    /// A random scene of `min..=max` objects.
    pub fn random(rng: &mut Rng, min: usize, max: usize, scale: f64) -> Scene {
        let mut s = Scene::default();
        let n = min + rng.below(max - min + 1);
        for _ in 0..n {
            let shape = *rng.pick(&SHAPES);
            let color = *rng.pick(&COLORS);
            let size = *rng.pick(&SIZES);
            s.place(rng, shape, color, size, scale);
        }
        s
    }
}
