//! The page: inline style, the summary and version tables, the plots as
//! inline SVG.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use uuid::Uuid;

use crate::experiment::sweep;

use super::gather::{ReportData, VersionInfo};
use super::{plot, ReportError, Target};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn value_text(v: &serde_json::Value) -> String {
    v.as_str().map_or(v.to_string(), str::to_string)
}

fn values_text(v: &BTreeMap<String, serde_json::Value>) -> String {
    if v.is_empty() {
        return "(one configuration)".into();
    }
    v.iter()
        .map(|(k, x)| format!("{k}={}", value_text(x)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn plot_err(plot: &str) -> impl Fn(String) -> ReportError + '_ {
    move |detail| ReportError::Plot {
        plot: plot.to_string(),
        detail,
    }
}

/// A task's colour in every plot: GQA blue, NLVR2 red, any other by its
/// place.
fn task_colour(task: &str, i: usize) -> plotters::style::RGBColor {
    plot::colour(match task {
        "gqa" => 0,
        "nlvr2" => 1,
        _ => i + 2,
    })
}

/// The tasks in the trials, GQA first.
fn tasks_of(d: &ReportData) -> Vec<String> {
    let set: BTreeSet<String> = d
        .trials
        .iter()
        .flat_map(|t| t.report.tasks.keys().cloned())
        .collect();
    set.into_iter().collect()
}

/// Accuracy against distillation samples: per task, one line per
/// configuration of the other varying keys, and the base pipeline faint.
fn samples_plot(d: &ReportData, tasks: &[String]) -> Result<Plots, ReportError> {
    let mut out = Vec::new();
    for (ti, task) in tasks.iter().enumerate() {
        let mut groups: BTreeMap<String, BTreeMap<u64, Vec<f64>>> = BTreeMap::new();
        let mut base: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for t in &d.trials {
            let Some(row) = t.report.tasks.get(task) else {
                continue;
            };
            let n = t.report.config.distill.samples as u64;
            let mut key = t.values.clone();
            key.remove("seed");
            key.remove("distill.samples");
            groups
                .entry(values_text(&key))
                .or_default()
                .entry(n)
                .or_default()
                .push(row.distilled.accuracy);
            base.entry(n).or_default().push(row.base.accuracy);
        }
        let pts = |m: &BTreeMap<u64, Vec<f64>>| -> Vec<plot::Point> {
            m.iter()
                .map(|(x, v)| {
                    let s = sweep::Stat::of(v);
                    (*x as f64, s.mean, s.sd)
                })
                .collect()
        };
        let many = groups.len() > 1;
        let mut lines: Vec<plot::Line> = groups
            .iter()
            .enumerate()
            .map(|(gi, (k, m))| plot::Line {
                name: if many {
                    format!("distilled, {k}")
                } else {
                    "distilled".into()
                },
                colour: if many {
                    plot::colour(gi)
                } else {
                    task_colour(task, ti)
                },
                faint: false,
                points: pts(m),
            })
            .collect();
        lines.push(plot::Line {
            name: "base".into(),
            colour: task_colour(task, ti),
            faint: true,
            points: pts(&base),
        });
        let title = format!(
            "{} accuracy against distillation samples",
            task.to_uppercase()
        );
        let svg = plot::lines(
            &title,
            "distillation samples",
            "accuracy, %",
            &lines,
            (640, 340),
        )
        .map_err(plot_err(&title))?;
        out.push((format!("samples-{task}"), svg));
    }
    Ok(out)
}

/// Gain per pointer mode, tasks side by side.
fn pointer_plot(d: &ReportData, tasks: &[String]) -> Result<String, ReportError> {
    let mut modes: Vec<String> = Vec::new();
    for t in &d.trials {
        let m = t.report.config.distill.pointer.to_string();
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    let order = ["none", "name", "name+box"];
    modes.sort_by_key(|m| order.iter().position(|o| o == m).unwrap_or(9));
    let series: Vec<plot::Bars> = tasks
        .iter()
        .enumerate()
        .map(|(ti, task)| plot::Bars {
            name: format!("{task} gain"),
            colour: task_colour(task, ti),
            values: modes
                .iter()
                .map(|m| {
                    let v: Vec<f64> = d
                        .trials
                        .iter()
                        .filter(|t| t.report.config.distill.pointer.to_string() == *m)
                        .filter_map(|t| t.report.tasks.get(task))
                        .map(|r| r.difference.points)
                        .collect();
                    (!v.is_empty()).then(|| {
                        let s = sweep::Stat::of(&v);
                        (s.mean, s.sd)
                    })
                })
                .collect(),
        })
        .collect();
    let title = "Gain over the base pipeline per pointer mode (mean, sd over seeds)";
    plot::grouped_bars(title, &modes, "points", &series, (640, 340)).map_err(plot_err(title))
}

/// Every version of each module that has scores, tasks side by side.
fn versions_plot(d: &ReportData, tasks: &[String]) -> Result<Plots, ReportError> {
    let mut out = Vec::new();
    let modules: BTreeSet<&String> = d
        .versions
        .iter()
        .filter(|v| !v.tasks.is_empty())
        .map(|v| &v.version.module)
        .collect();
    for m in modules {
        let vs: Vec<&VersionInfo> = d
            .versions
            .iter()
            .filter(|v| &v.version.module == m && !v.tasks.is_empty())
            .collect();
        let cats: Vec<String> = vs
            .iter()
            .map(|v| format!("{}@{}", m, v.version.number))
            .collect();
        let series: Vec<plot::Bars> = tasks
            .iter()
            .enumerate()
            .map(|(ti, t)| plot::Bars {
                name: t.clone(),
                colour: task_colour(t, ti),
                values: vs
                    .iter()
                    .map(|v| v.tasks.get(t).map(|x| (x.0, x.1)))
                    .collect(),
            })
            .collect();
        let title = format!("Every {m} version across the tasks (accuracy, %)");
        let w = (160 + 70 * cats.len() as u32).clamp(640, 1400);
        let svg = plot::grouped_bars(&title, &cats, "accuracy, %", &series, (w, 340))
            .map_err(plot_err(&title))?;
        out.push((format!("versions-{m}"), svg));
    }
    Ok(out)
}

fn lineage_plot(d: &ReportData) -> Result<String, ReportError> {
    let index: HashMap<Uuid, usize> = d
        .versions
        .iter()
        .enumerate()
        .map(|(i, v)| (v.version.id, i))
        .collect();
    let modules: Vec<&String> = {
        let s: BTreeSet<&String> = d.versions.iter().map(|v| &v.version.module).collect();
        s.into_iter().collect()
    };
    // Generation: the longest chain of parents and teachers above.
    let mut layer: HashMap<Uuid, usize> = HashMap::new();
    fn depth(
        id: Uuid,
        d: &ReportData,
        index: &HashMap<Uuid, usize>,
        memo: &mut HashMap<Uuid, usize>,
        guard: usize,
    ) -> usize {
        if let Some(x) = memo.get(&id) {
            return *x;
        }
        let v = &d.versions[index[&id]].version;
        let ups = [v.parent, v.teacher];
        let x = if guard > 64 {
            0
        } else {
            ups.into_iter()
                .flatten()
                .filter(|u| index.contains_key(u))
                .map(|u| depth(u, d, index, memo, guard + 1) + 1)
                .max()
                .unwrap_or(0)
        };
        memo.insert(id, x);
        x
    }
    for v in &d.versions {
        depth(v.version.id, d, &index, &mut layer, 0);
    }
    let nodes: Vec<plot::Node> = d
        .versions
        .iter()
        .map(|v| plot::Node {
            label: {
                let a = if v.aliases.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.aliases.join(","))
                };
                format!("{}@{}{a}", v.version.module, v.version.number)
            },
            group: modules
                .iter()
                .position(|m| **m == v.version.module)
                .unwrap_or(0),
            layer: layer[&v.version.id],
        })
        .collect();
    let mut edges = Vec::new();
    for (i, v) in d.versions.iter().enumerate() {
        if let Some(p) = v.version.parent.and_then(|p| index.get(&p)) {
            edges.push((*p, i, false));
        }
        if let Some(t) = v.version.teacher.and_then(|t| index.get(&t)) {
            edges.push((*t, i, true));
        }
    }
    plot::lineage(&nodes, &edges).map_err(plot_err("lineage"))
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;max-width:1400px;color:#222}\
table{border-collapse:collapse;margin:8px 0 20px}\
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;font-size:13px}\
th{background:#f2f2f2}td.l,th.l{text-align:left}\
h2{margin-top:28px;border-bottom:1px solid #ddd}\
.plots svg{margin:4px 8px 4px 0;border:1px solid #eee}\
.note{color:#555;font-size:13px}";

fn pm(mean: f64, sd: f64, trials: usize) -> String {
    if trials > 1 && sd > 0.0 {
        format!("{mean:.1} ± {sd:.2}")
    } else {
        format!("{mean:.1}")
    }
}

/// Plots by name (`samples-gqa`, `pointer`, `versions-vqa`, `lineage`) and
/// their SVG.
pub type Plots = Vec<(String, String)>;

/// A rendered report: the page and, separately, its plots.
#[derive(Debug, Clone)]
pub struct Page {
    /// The HTML page (the plots inline).
    pub html: String,
    /// The same plots, each a standalone SVG document.
    pub plots: Plots,
}

fn joined(p: &Plots) -> String {
    p.iter().map(|(_, s)| s.as_str()).collect()
}

/// The page.
pub fn render(d: &ReportData, store_root: &str) -> Result<Page, ReportError> {
    let tasks = tasks_of(d);
    let samples = samples_plot(d, &tasks)?;
    let pointer = vec![("pointer".to_string(), pointer_plot(d, &tasks)?)];
    let versions = versions_plot(d, &tasks)?;
    let lineage = vec![("lineage".to_string(), lineage_plot(d)?)];
    let (kind, id) = match &d.target {
        Target::Run(id) => ("run", id),
        Target::Sweep(id) => ("sweep", id),
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>vpd report: {kind} {id}</title><style>{STYLE}</style></head><body>\n\
         <h1>{} — {kind} {id}</h1>\n<p class=\"note\">{} finished trial(s){}; store {}; \
         made by vpd {} on {}. Accuracies in percent; ± is the standard deviation over \
         the trials of a configuration.</p>\n",
        esc(&d.experiment),
        d.trials.len(),
        if d.unfinished > 0 {
            format!(", {} not finished (not shown)", d.unfinished)
        } else {
            String::new()
        },
        esc(store_root),
        env!("CARGO_PKG_VERSION"),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    // Summary per configuration.
    h.push_str("<h2>Summary</h2>\n<table><tr><th class=\"l\">configuration</th><th>trials</th>");
    for t in &tasks {
        let _ = write!(
            h,
            "<th>{t} base</th><th>{t} distilled</th><th>{t} gain (min, max)</th><th>{t} n</th>"
        );
    }
    h.push_str("<th>pseudo-labels right</th><th>gate passed</th></tr>\n");
    for c in &d.configurations {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td>",
            esc(&values_text(&c.values)),
            c.trials.len()
        );
        for t in &tasks {
            match c.tasks.get(t) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{}</td><td>{:+.2} ± {:.2} ({:+.1}, {:+.1})</td><td>{}</td>",
                        pm(x.base.mean, x.base.sd, x.base.trials),
                        pm(x.distilled.mean, x.distilled.sd, x.distilled.trials),
                        x.gain.mean,
                        x.gain.sd,
                        x.gain.min,
                        x.gain.max,
                        x.n
                    );
                }
                None => h.push_str("<td>-</td><td>-</td><td>-</td><td>-</td>"),
            }
        }
        let p = &c.pseudo_label_accuracy;
        let _ = writeln!(
            h,
            "<td>{}</td><td>{} of {}</td></tr>",
            if p.trials > 0 {
                pm(p.mean, p.sd, p.trials)
            } else {
                "-".into()
            },
            c.gate_passed,
            c.trials.len()
        );
    }
    h.push_str("</table>\n");
    // Trials.
    h.push_str("<h2>Trials</h2>\n<table><tr><th class=\"l\">run</th><th class=\"l\">values</th><th class=\"l\">made</th>");
    for t in &tasks {
        let _ = write!(
            h,
            "<th>{t} base</th><th>{t} distilled</th><th>{t} difference [95% CI]</th>"
        );
    }
    h.push_str("<th>gate</th></tr>\n");
    for t in &d.trials {
        let r = &t.report;
        let made: Vec<String> = r
            .config
            .distill
            .modules
            .iter()
            .filter_map(|m| r.versions.get(m.module()).cloned())
            .collect();
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>",
            &t.run_id[..t.run_id.len().min(13)],
            esc(&values_text(&t.values)),
            esc(&made.join(", "))
        );
        for task in &tasks {
            match r.tasks.get(task) {
                Some(x) => {
                    let _ = write!(
                        h,
                        "<td>{:.1}</td><td>{:.1}</td><td>{:+.1} [{:+.1}, {:+.1}]</td>",
                        x.base.accuracy,
                        x.distilled.accuracy,
                        x.difference.points,
                        x.difference.ci95.0,
                        x.difference.ci95.1
                    );
                }
                None => h.push_str("<td>-</td><td>-</td><td>-</td>"),
            }
        }
        let _ = writeln!(
            h,
            "<td>{}</td></tr>",
            if r.gate_passed { "passed" } else { "refused" }
        );
    }
    h.push_str("</table>\n");
    // Plots.
    let _ = write!(
        h,
        "<h2>Accuracy against distillation samples</h2>\n<div class=\"plots\">{}</div>\n",
        joined(&samples)
    );
    let _ = write!(
        h,
        "<h2>Pointer modes</h2>\n<div class=\"plots\">{}</div>\n",
        joined(&pointer)
    );
    let _ = write!(
        h,
        "<h2>Module versions across the tasks</h2>\n<p class=\"note\">Each version's accuracy \
         in this report's runs: a parent is the base pipeline, a distilled version the \
         distilled one (a version scored by several runs shows their mean).</p>\n\
         <div class=\"plots\">{}</div>\n",
        joined(&versions)
    );
    h.push_str("<table><tr><th class=\"l\">version</th><th class=\"l\">aliases</th><th class=\"l\">parent</th><th class=\"l\">teacher</th><th class=\"l\">made</th>");
    for t in &tasks {
        let _ = write!(h, "<th>{t}</th>");
    }
    h.push_str("</tr>\n");
    let name_of = |id: Option<Uuid>| -> String {
        id.and_then(|i| d.versions.iter().find(|v| v.version.id == i))
            .map_or("-".into(), |v| {
                format!("{}@{}", v.version.module, v.version.number)
            })
    };
    for v in &d.versions {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}@{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>",
            esc(&v.version.module),
            v.version.number,
            esc(&v.aliases.join(", ")),
            name_of(v.version.parent),
            name_of(v.version.teacher),
            v.version.created_at.format("%Y-%m-%d %H:%M")
        );
        for t in &tasks {
            match v.tasks.get(t) {
                Some(x) => {
                    let _ = write!(h, "<td>{} (n={})</td>", pm(x.0, x.1, x.2), x.3);
                }
                None => h.push_str("<td>-</td>"),
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h.push_str(
        "<h2>Stored evaluations of these versions</h2>\n<p class=\"note\">Every evaluation in \
         the store of a pipeline made of versions this report's runs used or made, including \
         ones added later (<code>vpd eval</code>); <code>vpd regress</code> and \
         <code>vpd compare</code> read the same records.</p>\n<table><tr>\
         <th class=\"l\">task</th><th class=\"l\">split</th><th>n</th><th>accuracy</th>\
         <th class=\"l\">pipeline</th><th class=\"l\">when</th></tr>\n",
    );
    for e in &d.evaluations {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td>{}</td><td>{:.1}</td>\
             <td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            esc(&e.task),
            esc(&e.split),
            e.n,
            e.accuracy,
            esc(&e.pipeline),
            e.at
        );
    }
    h.push_str("</table>\n");
    let _ = write!(
        h,
        "<h2>Lineage</h2>\n<div class=\"plots\">{}</div>\n",
        joined(&lineage)
    );
    h.push_str(
        "<script>console.info('vpd-report: ' + document.querySelectorAll('svg').length + \
         ' plots rendered, ' + performance.getEntriesByType('resource').length + \
         ' resources fetched');</script>\n</body></html>\n",
    );
    Ok(Page {
        html: h,
        plots: [samples, pointer, versions, lineage].concat(),
    })
}
