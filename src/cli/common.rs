//! What many commands share: opening the store, JSON on stdout, short ids,
//! progress bars.

use std::path::Path;

use anyhow::Result;
use uuid::Uuid;
use visprog_distiller::output;
use visprog_distiller::store::Store;

use super::Cli;

/// The store `--store` names (created when missing).
pub fn open(cli: &Cli) -> Result<Store> {
    Ok(Store::open(&cli.store)?)
}

/// The store `--store` names, which must exist (commands that only read).
pub fn open_existing(cli: &Cli) -> Result<Store> {
    Ok(Store::open_existing(&cli.store)?)
}

/// A file the user named as output, with the command's `--force`: written
/// by the one rule of `visprog_distiller::output` (never inside the store
/// `--store` names, never through a link or onto a device, never over a
/// file without `--force`).
#[derive(Debug, Clone, Copy)]
pub struct OutFile<'a> {
    pub path: &'a Path,
    pub force: bool,
    pub store: &'a Path,
}

impl<'a> OutFile<'a> {
    /// `path` as a command's output, when the user named one.
    pub fn new(path: Option<&'a Path>, force: bool, store: &'a Path) -> Option<Self> {
        path.map(|path| OutFile { path, force, store })
    }

    /// Refuses the target before any work is done.
    pub fn check(&self) -> Result<()> {
        Ok(output::check(self.path, self.force, Some(self.store))?)
    }

    /// Checks again, then writes atomically.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        Ok(output::write(
            self.path,
            bytes,
            self.force,
            Some(self.store),
        )?)
    }
}

/// One JSON document on stdout.
pub fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// The first 12 hex digits of an id, as `vpd runs` and `vpd versions` print it.
pub fn short(id: &Uuid) -> String {
    id.simple().to_string()[..12].to_string()
}

/// At most the first `n` characters of a stored string (a hash, a commit):
/// never a slice past its end, whatever the record holds.
pub fn prefix(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `{msg} [====>   ] pos/len (elapsed)`.
pub fn bar_style(unit: &str) -> indicatif::ProgressStyle {
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!("{unit} ")
    };
    indicatif::ProgressStyle::with_template(&format!(
        "{{msg}} [{{bar:30}}] {unit}{{pos}}/{{len}} ({{elapsed}})"
    ))
    .expect("valid template")
    .progress_chars("=> ")
}

/// `⠋ msg (elapsed)` for work of unknown length.
pub fn spinner_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template")
}

/// A progress bar on stderr, drawn only when `hidden` is false.
pub fn bar(len: u64, hidden: bool, unit: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    if hidden {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(bar_style(unit));
    bar
}

#[cfg(test)]
mod tests {
    use super::prefix;

    #[test]
    fn prefix_never_slices_past_the_end() {
        assert_eq!(prefix("abcdef", 3), "abc");
        assert_eq!(prefix("ab", 12), "ab");
        assert_eq!(prefix("", 12), "");
        assert_eq!(prefix("ééé", 2), "éé");
    }
}

/// `--device`, flattened into every command that runs a network.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DeviceOpt {
    /// Where the networks run: cpu, cuda or cuda:N.
    #[arg(
        long = "device",
        id = "device",
        value_name = "DEVICE",
        default_value = "cpu",
        value_parser = visprog_distiller::nn::parse_device
    )]
    pub choice: visprog_distiller::nn::DeviceChoice,
}

impl DeviceOpt {
    /// The device, checked to be there (no CUDA device is one error).
    pub fn checked(self) -> Result<visprog_distiller::nn::DeviceChoice> {
        self.choice.to_tch()?;
        Ok(self.choice)
    }
}

/// `--device` and `--gpu-batch`, for the commands that run programs.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct GpuOpt {
    #[command(flatten)]
    pub device: DeviceOpt,
    /// On a GPU, the largest batch a module's worker gets.
    #[arg(long, default_value_t = visprog_distiller::runtime::exec::GPU_BATCH, value_name = "N")]
    pub gpu_batch: usize,
}
