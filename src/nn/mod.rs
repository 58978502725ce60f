//! Everything that touches tch (libtorch). No other module of the crate
//! imports `tch`: the rest of the code sees plain Rust data.

pub mod checkpoint;
pub mod detector;
pub mod film;
pub mod fit;
mod libtorch;
pub mod model;
pub mod perception;
pub mod script_loc;
pub mod speed;
pub mod text;
mod tiny;

pub use libtorch::{
    allocator_tuned, cuda_summary, libtorch_info, parse_device, set_threads, threads,
    tune_allocator, DeviceChoice, LibtorchInfo, MALLOC_ENV,
};
pub use tiny::{live_check, varstore_from_bytes, varstore_to_bytes, LiveCheck, TinyMlp};

/// libtorch's message without its C++ stack frames: the text before
/// "Exception raised from"; of a TorchScript traceback, the exception's own
/// last line (`builtins.ValueError: ...`). One line either way.
pub fn torch_message(e: &tch::TchError) -> String {
    let full = e.to_string();
    let head = full.split("Exception raised from").next().unwrap_or(&full);
    let lines: Vec<&str> = head
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = if head.contains("Traceback of TorchScript") {
        lines.last()
    } else {
        lines.first()
    };
    line.map_or(full.clone(), |l| l.to_string())
}

/// An error from the neural-network layer.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// libtorch reported an error.
    #[error("libtorch: {}", torch_message(.0))]
    Torch(#[from] tch::TchError),
    /// `--device cuda` was asked for on a machine where libtorch sees no GPU.
    #[error(
        "no CUDA device: `{device}` was asked for but libtorch sees {count} CUDA device(s) (libtorch_cuda loaded: {linked}; a CPU-only torch, no GPU or no driver; `vpd doctor` tells which)"
    )]
    CudaUnavailable {
        /// The device asked for (`cuda:N`).
        device: String,
        /// CUDA devices libtorch sees.
        count: i64,
        /// Whether `libtorch_cuda.so` is loaded into this process.
        linked: bool,
    },
    /// A network's forward pass gave what no answer can come from: NaN or
    /// inf, or the wrong number of rows.
    #[error("{0}")]
    Output(String),
    /// A checkpoint that does not load.
    #[error("corrupt checkpoint: {0}")]
    Checkpoint(String),
    /// A device name other than `cpu` or `cuda[:N]`.
    #[error("unknown device `{0}` (expected cpu, cuda or cuda:N)")]
    UnknownDevice(String),
}
