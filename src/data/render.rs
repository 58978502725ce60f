//! Rendering scenes to RGB images, anti-aliased by 4x4 supersampling, in
//! one of the rendering domains.

use image::{Rgb, RgbImage};

use super::rng::Rng;
use super::world::{rgb, Obj, Scene};

/// How a domain renders: the shift between the students' pre-training
/// corpus (`generic`) and the task domains.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DomainStyle {
    /// Name.
    pub name: &'static str,
    /// Background base colour.
    pub background: [f32; 3],
    /// Second background colour of the texture.
    pub texture: [f32; 3],
    /// Texture: 0 flat, 1 diagonal stripes, 2 checker.
    pub texture_kind: u8,
    /// Fraction of each channel taken from the next one (a palette shift).
    pub channel_mix: f32,
    /// Direction of the mixing: +1 takes from the next channel, -1 from the
    /// previous one.
    pub mix_direction: i8,
    /// Per-channel gain of the lighting (tint).
    pub tint: [f32; 3],
    /// Overall brightness.
    pub brightness: f32,
    /// Standard deviation of per-pixel noise (0-255 scale).
    pub noise: f32,
    /// Object scale.
    pub scale: f64,
    /// Small distractor specks (clutter).
    pub clutter: usize,
}

/// The pre-training corpus' domain: flat grey, neutral light, no noise.
pub const GENERIC: DomainStyle = DomainStyle {
    name: "generic",
    background: [118.0, 118.0, 118.0],
    texture: [118.0, 118.0, 118.0],
    texture_kind: 0,
    channel_mix: 0.0,
    mix_direction: 1,
    tint: [1.0, 1.0, 1.0],
    brightness: 1.0,
    noise: 0.0,
    scale: 1.0,
    clutter: 0,
};

/// GQA's domain: striped brownish background, palette shift, dim light,
/// noise, smaller objects, clutter.
pub const GQA: DomainStyle = DomainStyle {
    name: "gqa",
    background: [112.0, 96.0, 80.0],
    texture: [86.0, 74.0, 62.0],
    texture_kind: 1,
    channel_mix: 0.2,
    mix_direction: 1,
    tint: [1.0, 1.0, 1.0],
    brightness: 0.75,
    noise: 14.0,
    scale: 0.85,
    clutter: 3,
};

/// NLVR2's domain: bluish checker, warm light, palette shift the other way,
/// noise, larger objects, clutter.
pub const NLVR2: DomainStyle = DomainStyle {
    name: "nlvr2",
    background: [70.0, 92.0, 120.0],
    texture: [92.0, 112.0, 138.0],
    texture_kind: 2,
    channel_mix: 0.2,
    mix_direction: -1,
    tint: [1.12, 1.0, 0.82],
    brightness: 0.85,
    noise: 12.0,
    scale: 1.1,
    clutter: 2,
};

/// A domain by name.
pub fn domain(name: &str) -> Option<DomainStyle> {
    [GENERIC, GQA, NLVR2].into_iter().find(|d| d.name == name)
}

/// Whether the point (u, v), in the object's frame scaled to [-1, 1],
/// is inside its shape.
fn inside(shape: &str, u: f64, v: f64) -> bool {
    match shape {
        "circle" => u * u + v * v <= 1.0,
        "square" => u.abs() <= 0.82 && v.abs() <= 0.82,
        "triangle" => (-0.95..=0.85).contains(&v) && u.abs() <= (v + 0.95) / 1.8 * 0.95,
        "diamond" => u.abs() + v.abs() <= 1.0,
        "cross" => (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95),
        "ring" => {
            let r = u * u + v * v;
            (0.36..=1.0).contains(&r)
        }
        _ => false,
    }
}

fn object_colour(o: &Obj) -> [f32; 3] {
    rgb(o.color)
}

/// Renders a scene at `size` pixels in `style`. `rng` drives the
/// background phase, clutter and noise.
pub fn render(scene: &Scene, style: &DomainStyle, size: u32, rng: &mut Rng) -> RgbImage {
    const SS: u32 = 4;
    let n = size * SS;
    let phase = rng.range(0.0, 1.0);
    let period = rng.range(6.0, 10.0) * SS as f64 * size as f64 / 64.0;
    let specks: Vec<(f64, f64, f64, [f32; 3])> = (0..style.clutter)
        .map(|_| {
            let g = rng.range(60.0, 200.0) as f32;
            (rng.f64(), rng.f64(), rng.range(0.015, 0.035), [g, g, g])
        })
        .collect();
    let mut acc = vec![[0f32; 3]; (size * size) as usize];
    for py in 0..n {
        for px in 0..n {
            let x = (px as f64 + 0.5) / n as f64;
            let y = (py as f64 + 0.5) / n as f64;
            let mut c = match style.texture_kind {
                1 => {
                    let t = ((px + py) as f64 / period + phase).fract();
                    if t < 0.5 {
                        style.background
                    } else {
                        style.texture
                    }
                }
                2 => {
                    let a = ((px as f64 / period + phase).floor() as i64
                        + (py as f64 / period).floor() as i64)
                        .rem_euclid(2);
                    if a == 0 {
                        style.background
                    } else {
                        style.texture
                    }
                }
                _ => style.background,
            };
            for (sx, sy, r, col) in &specks {
                if (x - sx).powi(2) + (y - sy).powi(2) <= r * r {
                    c = *col;
                }
            }
            for o in &scene.objects {
                let h = o.extent / 2.0;
                let u = (x - o.cx) / h;
                let v = (y - o.cy) / h;
                if u.abs() <= 1.0 && v.abs() <= 1.0 && inside(o.shape, u, v) {
                    c = object_colour(o);
                }
            }
            let a = &mut acc[((py / SS) * size + px / SS) as usize];
            for k in 0..3 {
                a[k] += c[k];
            }
        }
    }
    let k = (SS * SS) as f32;
    let mut img = RgbImage::new(size, size);
    for (i, a) in acc.iter().enumerate() {
        let base = [a[0] / k, a[1] / k, a[2] / k];
        let mixed = shift(base, style);
        let mut out = [0u8; 3];
        for ch in 0..3 {
            let noise = if style.noise > 0.0 {
                rng.normal() as f32 * style.noise
            } else {
                0.0
            };
            out[ch] = (mixed[ch] + noise).round().clamp(0.0, 255.0) as u8;
        }
        img.put_pixel(i as u32 % size, i as u32 / size, Rgb(out));
    }
    img
}

/// The domain's palette shift, tint and brightness applied to one colour.
pub fn shift(c: [f32; 3], style: &DomainStyle) -> [f32; 3] {
    let m = style.channel_mix;
    let mut out = [0f32; 3];
    for ch in 0..3 {
        let other = if style.mix_direction >= 0 {
            c[(ch + 1) % 3]
        } else {
            c[(ch + 2) % 3]
        };
        out[ch] = ((1.0 - m) * c[ch] + m * other) * style.tint[ch] * style.brightness;
    }
    out
}

/// A grid of images, each scaled up `scale` times (nearest neighbour), `cols`
/// to a row, 4-pixel white gutters: for looking at a domain.
pub fn montage(images: &[RgbImage], cols: usize, scale: u32) -> RgbImage {
    let cols = cols.max(1);
    let cell = images
        .iter()
        .map(|i| i.width().max(i.height()))
        .max()
        .unwrap_or(1)
        * scale;
    let rows = images.len().div_ceil(cols).max(1);
    let gap = 4;
    let w = cols as u32 * (cell + gap) + gap;
    let h = rows as u32 * (cell + gap) + gap;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let big = image::imageops::resize(
            img,
            img.width() * scale,
            img.height() * scale,
            image::imageops::FilterType::Nearest,
        );
        let x = gap + (i % cols) as u32 * (cell + gap);
        let y = gap + (i / cols) as u32 * (cell + gap);
        image::imageops::overlay(&mut out, &big, x as i64, y as i64);
    }
    out
}
