//! `vpd pretrain students|teacher`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use visprog_distiller::models::{self, PretrainConfig, PretrainReport};
use visprog_distiller::nn::{self, model::TrainConfig};
use visprog_distiller::vocab::Task;

use super::common::DeviceOpt;
use super::Cli;

/// Training settings shared by both.
#[derive(Debug, Args)]
pub struct Common {
    /// Examples per split of the synthetic data to train on.
    #[arg(long, default_value_t = 4000)]
    n: usize,
    /// Most epochs (early stopping on the dev split).
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Seed of the weights and the order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    device: DeviceOpt,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// `vpd pretrain ...`
#[derive(Debug, Subcommand)]
pub enum PretrainCmd {
    /// The VQA student, on the generic corpus (alias `base`).
    Students {
        /// Only this student (vqa or loc); both when absent.
        #[arg(long, value_parser = ["vqa", "loc"])]
        only: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A task's teacher, on the task's train split (alias `teacher`).
    Teacher {
        /// gqa or nlvr2.
        #[arg(long)]
        task: Task,
        /// Start from this version's weights where names and shapes match
        /// (e.g. the NLVR2 teacher from gqa-teacher@teacher's trunk).
        #[arg(long)]
        init_from: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(cli: &Cli, cmd: &PretrainCmd) -> Result<ExitCode> {
    let store = super::common::open(cli)?;
    let only = match cmd {
        PretrainCmd::Students { only, .. } => only.clone(),
        PretrainCmd::Teacher { .. } => None,
    };
    let init_from = match cmd {
        PretrainCmd::Teacher { init_from, .. } => init_from.clone(),
        PretrainCmd::Students { .. } => None,
    };
    let (common, task) = match cmd {
        PretrainCmd::Students { common, .. } => (common, None),
        PretrainCmd::Teacher { task, common, .. } => (common, Some(*task)),
    };
    // A missing GPU is an error before the data is made.
    let device = common.device.checked()?;
    let cfg = PretrainConfig {
        n: common.n,
        data_seed: 0,
        train: TrainConfig {
            epochs: common.epochs,
            batch: 64,
            lr: 2e-3,
            patience: 3,
            seed: common.seed,
        },
        device,
        init_from,
    };
    nn::set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let bar = super::common::bar(common.epochs as u64, false, "epoch");
    let what = task.map_or("vqa student".to_string(), |t| format!("{t} teacher"));
    bar.set_message(format!("{what}: making data"));
    let progress = |epoch: usize, loss: f64, acc: f64| {
        bar.set_position(epoch as u64 + 1);
        bar.set_message(format!("{what}: loss {loss:.3}, dev {:.1}%", 100.0 * acc));
        if !bar.is_hidden() {
            return;
        }
        tracing::info!(
            "{what} epoch {}: loss {loss:.4}, dev accuracy {:.1}%",
            epoch + 1,
            100.0 * acc
        );
    };
    let r: Option<PretrainReport> = match task {
        None if only.as_deref() == Some("loc") => None,
        None => Some(models::pretrain_student(&store, &cfg, &progress)?),
        Some(t) => Some(models::pretrain_teacher(&store, t, &cfg, &progress)?),
    };
    let loc = match task {
        None if only.as_deref() == Some("vqa") => None,
        None => {
            bar.set_position(0);
            let what = "loc student";
            let progress = |epoch: usize, loss: f64, f1: f64| {
                bar.set_position(epoch as u64 + 1);
                bar.set_message(format!("{what}: loss {loss:.3}, dev F1 {:.1}%", 100.0 * f1));
                if bar.is_hidden() {
                    tracing::info!(
                        "{what} epoch {}: loss {loss:.4}, dev F1@0.5 {:.1}%",
                        epoch + 1,
                        100.0 * f1
                    );
                }
            };
            Some(models::pretrain_loc(&store, &cfg, &progress)?)
        }
        Some(_) => None,
    };
    bar.finish_and_clear();
    if common.json {
        let doc = match (&r, &loc, task) {
            (Some(r), _, Some(_)) => serde_json::to_value(r)?,
            _ => serde_json::json!({"vqa": r, "loc": loc}),
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        if let Some(r) = &r {
            let v = &r.version;
            println!(
            "{}@{} (alias {}): test accuracy {:.1}% (n={}), best dev {:.1}% at epoch {}, {:.0} s",
            v.module,
            v.number,
            if task.is_some() { "teacher" } else { "base" },
            r.test_accuracy,
            r.test_n,
            100.0 * r.training.best_dev_accuracy,
            r.training.best_epoch + 1,
            r.training.seconds
        );
            for (g, (n, acc)) in &r.by_group {
                println!("  {g:<24} {acc:>5.1}% (n={n})");
            }
        }
        if let Some(l) = &loc {
            let v = &l.version;
            println!(
                "{}@{} (alias base): test precision {:.1}%, recall {:.1}% at IoU 0.5 ({} queries, {} boxes), best dev F1 {:.1}% at epoch {}, {:.0} s",
                v.module,
                v.number,
                l.test_precision,
                l.test_recall,
                l.test_n,
                l.test.ground_truth,
                100.0 * l.training.best_dev_f1,
                l.training.best_epoch + 1,
                l.training.seconds
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
