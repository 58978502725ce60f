//! `vpd measure`: the students and teachers on the adapters' queries.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use visprog_distiller::measure::{self, Scores, Versions};
use visprog_distiller::store::VersionRef;

use super::common::DeviceOpt;
use super::Cli;

/// `vpd measure ...`
#[derive(Debug, Args)]
pub struct MeasureArgs {
    /// The VQA student.
    #[arg(long, default_value = "vqa@base")]
    vqa: VersionRef,
    /// The LOC student.
    #[arg(long, default_value = "loc@base")]
    loc: VersionRef,
    /// The GQA teacher.
    #[arg(long, default_value = "gqa-teacher@teacher")]
    gqa_teacher: VersionRef,
    /// The NLVR2 teacher.
    #[arg(long, default_value = "nlvr2-teacher@teacher")]
    nlvr2_teacher: VersionRef,
    /// Most test images (pairs for nlvr2) per domain.
    #[arg(long, default_value_t = 500)]
    limit: usize,
    #[command(flatten)]
    device: DeviceOpt,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

fn line(what: &str, s: &Scores) {
    let parts: Vec<String> = s
        .iter()
        .map(|(f, x)| format!("{f} {:.1}% (n={})", x.percent(), x.n))
        .collect();
    println!("  {what:<28} {}", parts.join(", "));
}

pub fn run(cli: &Cli, a: &MeasureArgs) -> Result<ExitCode> {
    // A missing GPU is an error before anything is read or loaded.
    let device = a.device.checked()?;
    let store = super::common::open(cli)?;
    visprog_distiller::nn::set_threads(
        std::thread::available_parallelism().map_or(1, |n| n.get()) as i32
    );
    // A version that the store lacks is left out, with a notice.
    let present = |r: &VersionRef| match store.resolve(r) {
        Ok(_) => Some(r.clone()),
        Err(e) => {
            eprintln!("note: {r} left out: {e}");
            None
        }
    };
    let which = Versions {
        vqa: present(&a.vqa),
        loc: present(&a.loc),
        gqa_teacher: present(&a.gqa_teacher),
        nlvr2_teacher: present(&a.nlvr2_teacher),
    };
    let rep = measure::measure(&store, &which, a.limit, device)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("test images: {:?}", rep.images);
    println!("VQA student ({}):", a.vqa);
    for (d, s) in &rep.student {
        line(d, s);
    }
    for (mode, s) in &rep.gqa_teacher {
        line(&format!("gqa teacher, {mode} image"), s);
    }
    if let Some(s) = &rep.nlvr2_teacher {
        line("nlvr2 teacher, statements", s);
    }
    for (d, c) in &rep.loc {
        println!(
            "  LOC on {d:<19} precision {:.1}%, recall {:.1}% at IoU 0.5 ({} boxes found, {} true)",
            c.precision(),
            c.recall(),
            c.detections,
            c.ground_truth
        );
    }
    for (t, m) in &rep.margin {
        println!("margin on {t} (teacher - student): {m:+.1} points");
    }
    for (t, g) in &rep.domain_gap {
        println!("student on generic - on {t}, same queries: {g:+.1} points");
    }
    Ok(ExitCode::SUCCESS)
}
