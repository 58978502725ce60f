//! `vpd doctor`: what this installation runs on, and a live training check.

use std::path::Path;

use serde::Serialize;

use crate::nn::{self, LibtorchInfo, LiveCheck};
use crate::store::Store;

/// Everything `vpd doctor` reports.
#[derive(Debug, Serialize)]
pub struct DoctorReport {
    /// This vpd's version.
    pub vpd_version: String,
    /// The machine (cores, CPU model, AVX2/AVX-512).
    pub machine: String,
    /// The libtorch this process loaded.
    pub libtorch: LibtorchInfo,
    /// The store and whether it opens.
    pub store: StoreCheck,
    /// Live training checks: always on the CPU, also on CUDA when a GPU is
    /// available.
    pub live_checks: Vec<LiveCheck>,
    /// Errors met while checking (empty when everything works).
    pub problems: Vec<String>,
    /// True when the store opens and every live check's loss fell.
    pub ok: bool,
}

/// Whether the store opens.
#[derive(Debug, Serialize)]
pub struct StoreCheck {
    /// The store folder.
    pub path: String,
    /// Whether sled opened it.
    pub opens: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
}

/// Steps of the live check.
pub const LIVE_STEPS: usize = 60;

/// Runs every check.
pub fn run(store_path: &Path) -> DoctorReport {
    let libtorch = nn::libtorch_info();
    let mut problems = Vec::new();
    let store = match Store::open(store_path) {
        Ok(_) => StoreCheck {
            path: store_path.display().to_string(),
            opens: true,
            error: None,
        },
        Err(e) => {
            problems.push(format!("store: {e}"));
            StoreCheck {
                path: store_path.display().to_string(),
                opens: false,
                error: Some(e.to_string()),
            }
        }
    };
    let mut devices = vec![nn::DeviceChoice::Cpu];
    if libtorch.cuda_available {
        devices.push(nn::DeviceChoice::Cuda(0));
    }
    let mut live_checks = Vec::new();
    for device in devices {
        match nn::live_check(device, LIVE_STEPS, 0) {
            Ok(c) => {
                if !c.loss_fell {
                    problems.push(format!("live check on {}: the loss did not fall", c.device));
                }
                live_checks.push(c);
            }
            Err(e) => problems.push(format!("live check on {device}: {e}")),
        }
    }
    if libtorch.lib_dir.is_none() {
        problems.push("libtorch_cpu.so is not mapped into this process".into());
    }
    let ok = problems.is_empty();
    DoctorReport {
        vpd_version: env!("CARGO_PKG_VERSION").to_string(),
        machine: crate::machine::Machine::this().to_string(),
        libtorch,
        store,
        live_checks,
        problems,
        ok,
    }
}
