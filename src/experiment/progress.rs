//! Progress of long work (a run, a sweep, pre-training): phase messages
//! and counts, shown by the binary with indicatif or as log lines.

/// Progress reporting of a run: phase messages and counts.
pub trait Progress: Send + Sync {
    /// A phase starts (with a total, when known).
    fn phase(&self, name: &str, total: Option<u64>);
    /// Work done in the phase so far.
    fn set(&self, done: u64, message: &str);
}
