//! The machine a figure was measured on: CPU model, cores, vector
//! extensions. Training speed differs about threefold between 2-core
//! machines with and without AVX-512, so every timing vpd prints names it.

use serde::{Deserialize, Serialize};

/// The CPU a measurement ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo`), or `unknown CPU`.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Whether the CPU has AVX2.
    pub avx2: bool,
    /// Whether it has AVX-512 (foundation).
    pub avx512: bool,
    /// libtorch's intra-op threads when the figure was taken (none in
    /// records of vpd versions that did not keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// The environment variables that hold libtorch's kernels below what the
    /// CPU has (`ONEDNN_MAX_CPU_ISA=AVX2`, ...), as `NAME=value`; empty when
    /// none is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub isa_limits: Vec<String>,
}

/// The variables with which oneDNN, MKL and ATen are told to use fewer
/// vector extensions than the CPU has.
pub const ISA_LIMIT_VARS: [&str; 3] = [
    "ONEDNN_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
];

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown CPU".into());
        #[cfg(target_arch = "x86_64")]
        let (avx2, avx512) = (
            std::arch::is_x86_feature_detected!("avx2"),
            std::arch::is_x86_feature_detected!("avx512f"),
        );
        #[cfg(not(target_arch = "x86_64"))]
        let (avx2, avx512) = (false, false);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            avx2,
            avx512,
            threads: Some(crate::nn::threads()),
            isa_limits: ISA_LIMIT_VARS
                .iter()
                .filter_map(|k| {
                    std::env::var(k)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .map(|v| format!("{k}={v}"))
                })
                .collect(),
        }
    }

    /// The vector extensions in words: `AVX2 + AVX-512`, `AVX2 only`, or
    /// `no AVX2`.
    pub fn vectors(&self) -> &'static str {
        match (self.avx2, self.avx512) {
            (_, true) => "AVX2 + AVX-512",
            (true, false) => "AVX2 only",
            (false, false) => "no AVX2",
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} core(s), {}, {}",
            self.cores,
            self.cpu,
            self.vectors()
        )?;
        if let Some(t) = self.threads {
            write!(f, ", {t} torch thread{}", if t == 1 { "" } else { "s" })?;
        }
        if !self.isa_limits.is_empty() {
            write!(f, ", kernels held by {}", self.isa_limits.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Machine;

    #[test]
    fn the_machine_names_its_cores_and_vector_extensions() {
        let m = Machine::this();
        assert!(m.cores >= 1);
        let s = m.to_string();
        assert!(s.contains("core(s)") && s.contains("AVX"), "{s}");
        let none = Machine {
            cpu: "x".into(),
            cores: 2,
            avx2: false,
            avx512: false,
            threads: None,
            isa_limits: vec![],
        };
        assert_eq!(none.to_string(), "2 core(s), x, no AVX2");
        let held = Machine {
            threads: Some(1),
            isa_limits: vec!["ONEDNN_MAX_CPU_ISA=AVX2".into()],
            ..none.clone()
        };
        assert_eq!(
            held.to_string(),
            "2 core(s), x, no AVX2, 1 torch thread, kernels held by ONEDNN_MAX_CPU_ISA=AVX2"
        );
        // A record of an older vpd (no threads, no limits) still reads.
        let old: Machine =
            serde_json::from_str(r#"{"cpu":"x","cores":2,"avx2":true,"avx512":false}"#).unwrap();
        assert_eq!(old.to_string(), "2 core(s), x, AVX2 only");
        assert!(Machine::this().threads.is_some_and(|t| t >= 1));
    }
}
