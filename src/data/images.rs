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

/// The most pixels an image may have (`VPD_MAX_IMAGE_PIXELS`, default 50
/// million: a 12000 x 12000 PNG of 420 KB would decode to 0.43 GB).
pub const DEFAULT_MAX_PIXELS: u64 = 50_000_000;

/// `VPD_MAX_IMAGE_PIXELS`, or the default; a bad value names the variable.
pub fn max_pixels() -> Result<u64, String> {
    match std::env::var("VPD_MAX_IMAGE_PIXELS") {
        Err(_) => Ok(DEFAULT_MAX_PIXELS),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("VPD_MAX_IMAGE_PIXELS={v}: expected a whole number above 0")),
    }
}

/// How many images may be decoded at full size at once (the cores, at most
/// 4): with the pixel limit, this bounds the memory decoding takes.
static DECODES: std::sync::OnceLock<(std::sync::Mutex<usize>, std::sync::Condvar)> =
    std::sync::OnceLock::new();

struct DecodeSlot;

impl DecodeSlot {
    fn take() -> DecodeSlot {
        let (m, cv) = DECODES.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            (std::sync::Mutex::new(n), std::sync::Condvar::new())
        });
        let mut free = m.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = cv.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        DecodeSlot
    }
}

impl Drop for DecodeSlot {
    fn drop(&mut self) {
        if let Some((m, cv)) = DECODES.get() {
            *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            cv.notify_one();
        }
    }
}

/// Decodes image bytes of any supported format (PNG, JPEG). An image of
/// more than [`max_pixels`] pixels is refused from its header, before
/// anything is decoded; at most a few decode at once.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let format = image::guess_format(bytes).map_err(|_| "not a PNG or JPEG image".to_string())?;
    let limit = max_pixels()?;
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = reader()
        .into_dimensions()
        .map_err(|e| format!("cannot decode {format:?}: {e}"))?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limit {
        return Err(format!(
            "{w}x{h} is {pixels} pixels, more than the limit of {limit} (VPD_MAX_IMAGE_PIXELS raises it)"
        ));
    }
    let _slot = DecodeSlot::take();
    let mut r = reader();
    let mut limits = image::Limits::default();
    // Room for the decoded image as RGBA 16-bit plus the decoder's own.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    r.limits(limits);
    r.decode()
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
