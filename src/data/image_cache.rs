//! The one cache of decoded images, bounded in bytes: the executor's
//! programs and the adapter's steps read their input images through it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use serde::Serialize;

use super::{images, DataError};

/// The default bound of the decoded-image cache: 2 GiB.
pub const DEFAULT_IMAGE_CACHE: usize = 2 << 30;

/// Decoded input images, shared by every program (and both modes), kept
/// within a budget in bytes: when a new image would pass it, the least
/// recently used ones are dropped (and decoded again if asked for). A
/// budget of 0 keeps nothing. Two programs that miss the same image at
/// once both decode it (the lock is not held while decoding); one copy is
/// kept.
#[derive(Clone)]
pub struct ImageCache(Arc<Mutex<CacheState>>);

#[derive(Default)]
struct CacheState {
    budget: usize,
    bytes: usize,
    peak: usize,
    clock: u64,
    images: HashMap<PathBuf, (Arc<RgbImage>, u64)>,
    /// Last use -> path, oldest first.
    order: std::collections::BTreeMap<u64, PathBuf>,
    hits: u64,
    decodes: u64,
}

/// What a cache did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CacheStats {
    /// Reads answered from memory.
    pub hits: u64,
    /// Images decoded.
    pub decodes: u64,
    /// Most bytes held at once.
    pub peak_bytes: usize,
}

impl Default for ImageCache {
    fn default() -> Self {
        ImageCache::with_budget(DEFAULT_IMAGE_CACHE)
    }
}

impl ImageCache {
    /// A cache that holds at most `budget` bytes of decoded pixels.
    pub fn with_budget(budget: usize) -> ImageCache {
        ImageCache(Arc::new(Mutex::new(CacheState {
            budget,
            ..Default::default()
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A worker that panicked while holding the lock left a consistent
        // map (every update is a single insert or remove).
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The decoded image at `path`.
    pub fn get(&self, path: &PathBuf) -> Result<Arc<RgbImage>, DataError> {
        {
            let mut st = self.state();
            st.clock += 1;
            let now = st.clock;
            if let Some((img, used)) = st.images.get_mut(path) {
                let (img, before) = (img.clone(), *used);
                *used = now;
                st.order.remove(&before);
                st.order.insert(now, path.clone());
                st.hits += 1;
                return Ok(img);
            }
        }
        let img = Arc::new(images::decode(path)?);
        let size = img.as_raw().len();
        let mut st = self.state();
        st.decodes += 1;
        if size > st.budget || st.images.contains_key(path) {
            return Ok(img);
        }
        while st.bytes + size > st.budget {
            let Some((_, old)) = st.order.pop_first() else {
                break;
            };
            if let Some((gone, _)) = st.images.remove(&old) {
                st.bytes -= gone.as_raw().len();
            }
        }
        st.clock += 1;
        let now = st.clock;
        st.images.insert(path.clone(), (img.clone(), now));
        st.order.insert(now, path.clone());
        st.bytes += size;
        st.peak = st.peak.max(st.bytes);
        Ok(img)
    }

    /// Hits, decodes and the most bytes held.
    pub fn stats(&self) -> CacheStats {
        let st = self.state();
        CacheStats {
            hits: st.hits,
            decodes: st.decodes,
            peak_bytes: st.peak,
        }
    }
}
