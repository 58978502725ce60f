//! `vpd bench store|...`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use visprog_distiller::bench;

use crate::Cli;

/// `vpd bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Store operations against plain-file baselines: commit and load of a
    /// checkpoint, lineage and listing of a long chain, size on disk.
    Store {
        /// Versions in the lineage chain.
        #[arg(long, default_value_t = 10_000)]
        versions: usize,
        /// Checkpoint size in MB for commit and load.
        #[arg(long, default_value_t = 10)]
        mb: usize,
        /// Repetitions of commit and load.
        #[arg(long, default_value_t = 7)]
        reps: usize,
        /// One JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(_cli: &Cli, cmd: &BenchCmd) -> Result<ExitCode> {
    match cmd {
        BenchCmd::Store {
            versions,
            mb,
            reps,
            json,
        } => {
            let quiet = *json;
            let progress = |m: &str| {
                if !quiet {
                    eprintln!("bench store: {m}");
                }
            };
            let r = bench::store::run(
                &std::env::temp_dir(),
                mb * 1_000_000,
                (*reps).max(1),
                *versions,
                &progress,
            )?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                let s = |x: &bench::Spread| {
                    format!(
                        "{:.2} ms (min {:.2}, max {:.2}, n={})",
                        x.median, x.min, x.max, x.n
                    )
                };
                let mbs = r.checkpoint_bytes as f64 / 1e6;
                println!("commit {mbs:.0} MB checkpoint      {}", s(&r.commit_ms));
                println!(
                    "plain write+fsync {mbs:.0} MB      {}",
                    s(&r.plain_write_fsync_ms)
                );
                println!("commit / plain                 {:.2}x", r.commit_over_plain);
                println!(
                    "load {mbs:.0} MB by alias (hashed) {}",
                    s(&r.load_by_alias_ms)
                );
                println!("plain read {mbs:.0} MB             {}", s(&r.plain_read_ms));
                println!(
                    "lineage, {} versions        {} (made in {:.1} s)",
                    r.lineage_versions,
                    s(&r.lineage_ms),
                    r.lineage_setup_s
                );
                println!("list all versions              {}", s(&r.list_ms));
                println!(
                    "size on disk                   {:.1} MB (db {:.1} MB) for {:.1} MB of unique blobs: {:.2}x",
                    r.store_bytes_on_disk as f64 / 1e6,
                    r.db_bytes_on_disk as f64 / 1e6,
                    r.unique_blob_bytes as f64 / 1e6,
                    r.size_over_blobs
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
