//! `vpd doctor [--json]`.

use std::process::ExitCode;

use anyhow::Result;
use visprog_distiller::doctor;

use super::Cli;

/// `vpd doctor`
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, a: &DoctorArgs) -> Result<ExitCode> {
    let json = a.json;
    let report = doctor::run(&cli.store);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let t = &report.libtorch;
        let yes = |b: bool| if b { "yes" } else { "no" };
        println!("vpd        {}", report.vpd_version);
        println!("machine    {}", report.machine);
        println!(
            "libtorch   {} at {}",
            t.version.as_deref().unwrap_or("(version unknown)"),
            t.lib_dir
                .as_ref()
                .map_or("(not found)".into(), |p| p.display().to_string())
        );
        println!(
            "cuda       torch_cuda linked: {}; GPU available: {} ({} device(s)); cuDNN: {}",
            yes(t.torch_cuda_linked),
            yes(t.cuda_available),
            t.cuda_device_count,
            yes(t.cudnn_available)
        );
        println!("threads    {}", t.threads);
        match &report.store.error {
            None => println!("store      {} (opens: yes)", report.store.path),
            Some(e) => println!("store      {} (opens: no: {e})", report.store.path),
        }
        for c in &report.live_checks {
            let first = c.losses.first().copied().unwrap_or(f64::NAN);
            let last = c.losses.last().copied().unwrap_or(f64::NAN);
            println!(
                "live check {} Adam steps, 2-16-2 MLP on {}: loss {first:.3} -> {last:.3}, accuracy {:.1}% ({})",
                c.steps,
                c.device,
                100.0 * c.accuracy,
                if c.loss_fell { "loss fell" } else { "loss did NOT fall" }
            );
        }
        for p in &report.problems {
            println!("problem    {p}");
        }
        println!("{}", if report.ok { "ok" } else { "NOT OK" });
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
