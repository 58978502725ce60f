//! Store maintenance: `vpd store verify|gc|import|export|merge`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::json;
use visprog_distiller::store::{Store, VersionRef};

use super::common::{open, print_json};
use super::versions::version_json;
use super::Cli;

/// `vpd store ...`
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Check every record and every blob's hash; exit 1 when anything is wrong.
    Verify {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove checkpoint blobs that no version references.
    Gc {
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Register a checkpoint file as the module's next version.
    Import {
        /// The module, e.g. `vqa`.
        module: String,
        /// The checkpoint file.
        file: PathBuf,
        /// The version it derives from (MODULE@REF).
        #[arg(long)]
        parent: Option<VersionRef>,
        /// Sidecar describing a TorchScript module's inputs.
        #[arg(long)]
        sidecar: Option<PathBuf>,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write a version's checkpoint to a new file outside the store (and
    /// its sidecar beside it, `FILE.sidecar`).
    Export {
        /// MODULE@REF.
        target: VersionRef,
        /// Destination file (a new one, or a regular file with --force).
        file: PathBuf,
        /// Replace an existing regular file.
        #[arg(long)]
        force: bool,
    },
    /// Bring another store's versions, runs and evaluations into this one.
    Merge {
        /// The other store's folder.
        other: PathBuf,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// `vpd store ...`
pub fn run(cli: &Cli, cmd: &StoreCmd) -> Result<ExitCode> {
    let store = match cmd {
        StoreCmd::Verify { .. } | StoreCmd::Export { .. } => super::common::open_existing(cli)?,
        _ => open(cli)?,
    };
    match cmd {
        StoreCmd::Verify { json } => {
            let problems = store.verify()?;
            if *json {
                print_json(&json!({ "ok": problems.is_empty(), "problems": problems }))?;
            } else {
                for p in &problems {
                    println!("{}: {}", p.at, p.message);
                }
                println!("{}: {} problem(s)", store.root().display(), problems.len());
            }
            Ok(if problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        StoreCmd::Gc { json } => {
            let r = store.gc()?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "removed {} blob(s), {} bytes; {} referenced; {} unreferenced kept (younger than {} s)",
                    r.removed,
                    r.bytes,
                    r.referenced,
                    r.kept_recent,
                    visprog_distiller::store::GC_GRACE_SECS
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Import {
            module,
            file,
            parent,
            sidecar,
            json,
        } => {
            let parent = parent.as_ref().map(|p| store.resolve(p)).transpose()?;
            let mut side_bytes = None;
            if let Some(side) = sidecar {
                // A TorchScript sidecar (one that names its `kind`): the
                // module must load and answer a probe batch in the shape
                // the sidecar promises. Other sidecars are kept as they are.
                let read = |p: &std::path::Path| {
                    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                };
                let bytes = visprog_distiller::nn::model::read_bounded(
                    side,
                    visprog_distiller::nn::model::MAX_TOKENIZER_BYTES,
                )
                .map_err(|e| anyhow::anyhow!("sidecar {}: {e}", side.display()))?;
                let declares_kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .is_some_and(|v| v.get("kind").is_some());
                if declares_kind {
                    let (spec, stored) = visprog_distiller::models::read_sidecar(side)
                        .with_context(|| side.display().to_string())?;
                    side_bytes = Some(stored);
                    let what = || format!("{} with sidecar {}", file.display(), side.display());
                    let cpu = visprog_distiller::nn::DeviceChoice::Cpu;
                    if spec.kind == visprog_distiller::vocab::ModelKind::LocStudent {
                        // The LOC contract, checked on a probe batch.
                        visprog_distiller::nn::script_loc::ScriptLoc::load(
                            &read(file)?,
                            &spec,
                            cpu,
                        )
                        .with_context(what)?;
                    } else {
                        let m = visprog_distiller::nn::model::Model::from_torchscript(
                            &read(file)?,
                            &spec,
                            cpu,
                        )
                        .with_context(what)?;
                        visprog_distiller::models::check_role(
                            &format!("{} (sidecar {})", file.display(), side.display()),
                            &m.meta,
                        )?;
                    }
                } else {
                    eprintln!(
                        "note: {} names no `kind`: stored as an opaque sidecar; vpd can only run a TorchScript module whose sidecar says what it is",
                        side.display()
                    );
                    side_bytes = Some(bytes);
                }
            }
            let v = store.import_file(
                module,
                file,
                parent.map(|p| p.id),
                sidecar.as_deref().zip(side_bytes.as_deref()),
            )?;
            if *json {
                print_json(&version_json(&v, &HashMap::new()))?;
            } else {
                println!("{}@{} ({})", v.module, v.number, v.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Export {
            target,
            file,
            force,
        } => {
            let v = store.resolve(target)?;
            let side = store.export_file(&v, file, *force)?;
            eprintln!(
                "wrote {}@{} to {}{}",
                v.module,
                v.number,
                file.display(),
                side.map(|s| format!(" and its sidecar to {}", s.display()))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Merge { other, json } => {
            if !other.join("db").exists() {
                anyhow::bail!("{} is not a vpd store (no db/ inside)", other.display());
            }
            let o = Store::open(other)?;
            let r = store.merge(&o)?;
            if *json {
                print_json(&r)?;
            } else {
                println!(
                    "merged {}: {} version(s), {} run(s), {} evaluation(s), {} cached program(s); {} already present",
                    other.display(),
                    r.versions,
                    r.runs,
                    r.evaluations,
                    r.programs,
                    r.already_present
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
