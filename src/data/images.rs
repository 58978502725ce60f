//! Image decoding and the one conversion to model input: every image the
//! models see goes through [`to_model_input`].

use std::path::Path;

use image::RgbImage;

use super::DataError;

/// Decodes an image file, sniffing the format from its bytes (some real
/// NLVR2 `.png` files are JPEG).
pub fn decode(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes).map_err(|message| DataError::BadImage {
        path: path.to_path_buf(),
        message,
    })
}

/// Decodes image bytes of any supported format (PNG, JPEG).
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|_| "not a PNG or JPEG image".to_string())?;
    image::load_from_memory_with_format(bytes, format)
        .map(|i| i.to_rgb8())
        .map_err(|e| format!("cannot decode {format:?}: {e}"))
}

/// Channel means and standard deviations used to normalise model input.
pub const MEAN: [f32; 3] = [0.5, 0.5, 0.5];
/// See [`MEAN`].
pub const STD: [f32; 3] = [0.25, 0.25, 0.25];

/// Resizes to `side` x `side` (bilinear) and returns normalised floats in
/// channel-major order: `[3, side, side]`, `(x / 255 - MEAN) / STD`.
pub fn to_model_input(img: &RgbImage, side: u32) -> Vec<f32> {
    let resized = if img.width() == side && img.height() == side {
        img.clone()
    } else {
        image::imageops::resize(img, side, side, image::imageops::FilterType::Triangle)
    };
    let n = (side * side) as usize;
    let mut out = vec![0f32; 3 * n];
    for (i, p) in resized.pixels().enumerate() {
        for c in 0..3 {
            out[c * n + i] = (p.0[c] as f32 / 255.0 - MEAN[c]) / STD[c];
        }
    }
    out
}
