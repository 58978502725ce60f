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
}

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
        )
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
        };
        assert_eq!(none.to_string(), "2 core(s), x, no AVX2");
    }
}
