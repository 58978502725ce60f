//! Tables that several commands print: a run's (`vpd run`, `vpd show`)
//! and a sweep's (`vpd run SWEEP`).

use visprog_distiller::experiment::sweep::SweepReport;
use visprog_distiller::experiment::RunReport;
use visprog_distiller::runtime::score::Score;

fn value_list(v: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
    if v.is_empty() {
        return "(one configuration)".into();
    }
    v.iter()
        .map(|(k, x)| format!("{k}={}", x.as_str().map_or(x.to_string(), str::to_string)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sweep's summary table.
pub fn print_sweep(s: &SweepReport) {
    let at_once = if s.ran > 1 {
        format!(" ({} at a time after the first)", s.jobs)
    } else {
        String::new()
    };
    println!(
        "sweep {} ({}): {} trials run now{at_once}, {} finished before and reused",
        s.sweep_id, s.experiment, s.ran, s.skipped
    );
    print_configurations(s);
}

/// Each configuration of a sweep: per task base, distilled and gain over
/// its trials, pseudo-label accuracy, the gate.
pub fn print_configurations(s: &SweepReport) {
    for c in &s.configurations {
        println!("{} ({} trials):", value_list(&c.values), c.trials.len());
        for (t, x) in &c.tasks {
            println!(
                "  {t:<6} base {:.1}%  distilled {:.1}% (sd {:.2}, {:.1}-{:.1})  gain {:+.2} (sd {:.2})  n={} each",
                x.base.mean, x.distilled.mean, x.distilled.sd, x.distilled.min, x.distilled.max, x.gain.mean, x.gain.sd, x.n
            );
        }
        let p = &c.pseudo_label_accuracy;
        if p.trials > 0 {
            println!("  pseudo-label accuracy {:.1}% (sd {:.2})", p.mean, p.sd);
        }
        println!(
            "  gate passed in {} of {} trials",
            c.gate_passed,
            c.trials.len()
        );
    }
}

/// A cluster sweep's trials: state, Slurm task, values, log.
pub fn print_trial_rows(rows: &[visprog_distiller::orchestrate::slurm::TrialRow]) {
    for r in rows {
        let mut line = format!(
            "  trial {:<3} {:<11} {:<10} {}",
            r.index,
            r.state.to_string(),
            r.job.as_deref().unwrap_or("-"),
            value_list(&r.values)
        );
        if r.collected {
            line.push_str("  (collected)");
        } else if r.job.is_some() {
            line.push_str(&format!("  log {}", r.log.display()));
        }
        println!("{line}");
        if let (Some(e), false) = (&r.error, r.collected) {
            println!("              {e}");
        }
    }
}

/// A percentage, or "not measured" where nothing could be scored.
fn pct(p: Option<f64>) -> String {
    p.map_or("not measured".into(), |p| format!("{p:.1}%"))
}

fn score(s: &Score) -> String {
    format!("{:.1}%", s.accuracy)
}

/// The run's table.
pub fn print_run(r: &RunReport) {
    let v = |k: &str| r.versions.get(k).map_or("-", |s| s.as_str()).to_string();
    let task = r.config.distill.task.to_string();
    let made: Vec<String> = r
        .config
        .distill
        .modules
        .iter()
        .map(|m| m.module())
        .map(|m| format!("{} from {}", v(m), v(&format!("{m}_parent"))))
        .collect();
    println!(
        "run {} ({}, seed {}): {} distilled on {task} with teacher {}, pointer `{}`",
        r.run_id,
        r.experiment,
        r.seed,
        made.join(" and "),
        v(&format!("{task}-teacher")),
        r.config.distill.pointer
    );
    println!(
        "{:<7} {:>8} {:>8} {:>8} {:>10} {:>24} {:>6}",
        "task", "teacher", "oracle", "base", "distilled", "difference [95% CI]", "n"
    );
    for (t, row) in &r.tasks {
        let d = &row.difference;
        println!(
            "{:<7} {:>8} {:>8} {:>8} {:>10} {:>24} {:>6}",
            t,
            row.teacher.as_ref().map_or("-".into(), score),
            row.oracle.as_ref().map_or("n/m".into(), score),
            score(&row.base),
            score(&row.distilled),
            format!("{:+.1} [{:+.1}, {:+.1}]", d.points, d.ci95.0, d.ci95.1),
            row.base.n
        );
    }
    if r.tasks.values().any(|row| row.oracle.is_none()) {
        println!("oracle n/m: not measured (the split has no scene graphs)");
    }
    for (what, data) in &r.data {
        println!("data {what}: {data}");
    }
    if let Some(p) = &r.pseudo_labels {
        let modes: Vec<String> = p
            .by_mode
            .iter()
            .map(|(m, a)| {
                format!(
                    "{m} {}{}",
                    pct(a.accuracy),
                    if *m == p.used { " (used)" } else { "" }
                )
            })
            .collect();
        println!(
            "VQA pseudo-label accuracy on {} distill steps ({} steps, {:.1}% rewritten by the pointer, {} unscored): {}; the parent's own answers {}",
            p.task,
            p.steps,
            p.rewritten_share,
            p.unscored,
            modes.join(" | "),
            pct(p.student.accuracy)
        );
        if let Some(t) = &r.training {
            println!(
                "VQA trained on {} samples (confidence >= {:.2}, their labels {} right), dev slice {}; kept epoch {} of {}, dev agreement with the teacher {:.1}% -> {:.1}%",
                p.kept,
                p.confidence,
                pct(p.kept_accuracy),
                p.dev,
                t.best_epoch,
                t.train_loss.len(),
                100.0 * t.dev_agreement.first().copied().unwrap_or(0.0),
                100.0 * t.best_dev_agreement
            );
        }
    }
    if let Some(l) = &r.loc_pseudo_boxes {
        println!(
            "LOC pseudo-boxes on {} steps: {} candidates, {} accepted by the teacher; precision/recall at IoU 0.5: accepted {:.1}/{:.1}%, all candidates {:.1}/{:.1}%, the parent's own boxes {:.1}/{:.1}%; trained on {} examples, dev {}",
            l.steps,
            l.candidates,
            l.accepted,
            l.verified.0,
            l.verified.1,
            l.all_candidates.0,
            l.all_candidates.1,
            l.parent.0,
            l.parent.1,
            l.examples,
            l.dev
        );
    }
    for (m, g) in &r.gates {
        let drops: Vec<String> = g
            .rows
            .iter()
            .map(|x| format!("{} {:+.1}", x.task, -x.drop_points))
            .collect();
        let moved = r
            .aliases_moved
            .iter()
            .any(|x| x.starts_with(&format!("{m}@")));
        println!(
            "gate {m} (max drop {} points; {}): {}{}",
            g.max_drop,
            drops.join(", "),
            if g.passed { "passed" } else { "refused" },
            if moved {
                format!(", alias {m}@{} -> {}", r.config.gate.alias, v(m))
            } else {
                format!(", alias {} not moved", r.config.gate.alias)
            }
        );
    }
    for (v, diff) in &r.recipe_differences {
        println!(
            "warning: {v} was made with another recipe than this experiment's: {}",
            diff.join(", ")
        );
    }
    if !r.shipped.is_empty() {
        println!(
            "shipped checkpoints used (the store lacked them; made by this experiment's recipe, checkpoints/quickstart/): {}",
            r.shipped.join(", ")
        );
    }
    if !r.pretrained.is_empty() {
        println!(
            "pre-trained (the store lacked them): {}",
            r.pretrained.join(", ")
        );
    }
    let secs: Vec<String> = r
        .seconds
        .iter()
        .map(|(k, v)| format!("{k} {v:.0} s"))
        .collect();
    match &r.machine {
        Some(m) => println!("time: {} (on {m})", secs.join(", ")),
        None => println!("time: {}", secs.join(", ")),
    }
}
