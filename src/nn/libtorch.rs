//! What libtorch this process runs on: its folder, version, CUDA.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::NnError;

/// The libtorch this process has loaded, read from the process itself.
#[derive(Debug, Clone, Serialize)]
pub struct LibtorchInfo {
    /// Folder holding the `libtorch_cpu.so` mapped into this process.
    pub lib_dir: Option<PathBuf>,
    /// The torch version (from the wheel's `version.py` or libtorch's
    /// `build-version`), e.g. `2.11.0+cu130`.
    pub version: Option<String>,
    /// Whether `libtorch_cuda.so` is loaded into this process.
    pub torch_cuda_linked: bool,
    /// Whether libtorch sees a usable CUDA device.
    pub cuda_available: bool,
    /// Number of CUDA devices libtorch sees.
    pub cuda_device_count: i64,
    /// Whether cuDNN is usable.
    pub cudnn_available: bool,
    /// Intra-op thread count libtorch uses.
    pub threads: i32,
}

/// Reads which libtorch libraries are mapped into this process.
pub fn libtorch_info() -> LibtorchInfo {
    // Touch libtorch first so that its libraries are loaded.
    let threads = tch::get_num_threads();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut lib_dir = None;
    let mut torch_cuda_linked = false;
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else {
            continue;
        };
        let p = Path::new(path);
        match p.file_name().and_then(|n| n.to_str()) {
            Some("libtorch_cpu.so") => lib_dir = p.parent().map(Path::to_path_buf),
            Some("libtorch_cuda.so") => torch_cuda_linked = true,
            _ => {}
        }
    }
    let lib_dir = lib_dir.or_else(|| option_env!("VPD_LIBTORCH_LIB").map(PathBuf::from));
    let version = lib_dir.as_deref().and_then(read_version);
    LibtorchInfo {
        lib_dir,
        version,
        torch_cuda_linked,
        cuda_available: tch::Cuda::is_available(),
        cuda_device_count: tch::Cuda::device_count(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        threads,
    }
}

/// `lib/` sits in the torch package (pip) or the libtorch folder (zip).
fn read_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let v = rest.trim_start_matches([' ', '=', ':']).trim();
                let v = v.rsplit_once('=').map_or(v, |(_, r)| r.trim());
                return Some(v.trim_matches(['\'', '"']).to_string());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// A device the user may name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeviceChoice {
    /// The CPU.
    Cpu,
    /// CUDA device number N.
    Cuda(usize),
}

impl DeviceChoice {
    /// The tch device, checking that a CUDA device exists.
    pub fn to_tch(self) -> Result<tch::Device, NnError> {
        match self {
            DeviceChoice::Cpu => Ok(tch::Device::Cpu),
            DeviceChoice::Cuda(n) => {
                let count = tch::Cuda::device_count();
                if (n as i64) < count {
                    Ok(tch::Device::Cuda(n))
                } else {
                    Err(NnError::CudaUnavailable {
                        device: self.to_string(),
                        count,
                        linked: libtorch_info().torch_cuda_linked,
                    })
                }
            }
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// Waits for the work queued on this device (a GPU runs kernels
    /// asynchronously; a timing must end with this). Nothing on the CPU.
    pub fn synchronize(self) {
        if let DeviceChoice::Cuda(n) = self {
            tch::Cuda::synchronize(n as i64);
        }
    }
}

/// What libtorch sees of CUDA, in words.
pub fn cuda_summary() -> String {
    format!(
        "{} CUDA device(s), cuDNN {}",
        tch::Cuda::device_count(),
        if tch::Cuda::cudnn_is_available() {
            "available"
        } else {
            "not available"
        }
    )
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<DeviceChoice, NnError> {
    match s {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        _ => s
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| NnError::UnknownDevice(s.to_string())),
    }
}

/// Sets libtorch's intra-op thread count (one per concurrent worker is the
/// rule on a small machine).
pub fn set_threads(n: i32) {
    tch::set_num_threads(n.max(1));
}

/// libtorch's intra-op thread count.
pub fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

/// glibc malloc settings vpd runs with: libtorch's activation and gradient
/// buffers (megabytes at batch 64) are reused from the heap instead of
/// being mapped and unmapped, page faults and all, at every step. The
/// `MALLOC_*` environment variables that give another process (the
/// PyTorch side of `vpd bench train`) the same settings.
pub const MALLOC_ENV: [(&str, &str); 2] = [
    ("MALLOC_MMAP_THRESHOLD_", "33554432"),
    ("MALLOC_TRIM_THRESHOLD_", "268435456"),
];

/// Whether vpd tunes its allocator: yes unless `VPD_MALLOC=default`.
pub fn allocator_tuned() -> bool {
    std::env::var("VPD_MALLOC").map_or(true, |v| v != "default")
}

/// Applies [`MALLOC_ENV`] to this process (glibc only), unless
/// `VPD_MALLOC=default`; whether it did.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if allocator_tuned() {
        let [mmap, trim] = MALLOC_ENV.map(|(_, v)| v.parse::<i32>().expect("constant"));
        // SAFETY: mallopt only changes glibc's malloc parameters, under
        // its own lock.
        return unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, trim) == 1
        };
    }
    false
}
