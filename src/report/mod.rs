//! `vpd report RUN|SWEEP`: one self-contained HTML page (no network: the
//! plots are inline SVG, the style inline) with the summary table, accuracy
//! against distillation samples per task, the pointer modes side by side,
//! every version of each module across the tasks, the stored evaluations
//! of those versions, and the lineage graph.
//!
//! Everything comes from the store: the run reports kept as blobs on the
//! run records, the module versions and the evaluations.

pub mod plot;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use uuid::Uuid;

use crate::distill::run::RunReport;
use crate::distill::sweep::{self, Configuration, Trial};
use crate::store::{ModuleVersion, RunStatus, Store, StoreError, VersionRef};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing to report on.
    #[error("{0}")]
    Refused(String),
    /// A plot failed to draw.
    #[error("plot `{plot}`: {detail}")]
    Plot {
        /// Which plot.
        plot: String,
        /// What went wrong.
        detail: String,
    },
}

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One run.
    Run(Uuid),
    /// A sweep's runs.
    Sweep(Uuid),
}

/// A version and what is known of it.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// The record.
    pub version: ModuleVersion,
    /// Its aliases now.
    pub aliases: Vec<String>,
    /// Per task: accuracy in the target's runs (mean, sd over the runs that
    /// scored it, runs, examples per evaluation).
    pub tasks: BTreeMap<String, (f64, f64, usize, u64)>,
}

/// One stored evaluation of a version in the report.
#[derive(Debug, Clone)]
pub struct EvalRow {
    /// The pipeline's modules, as SLOT=MODULE@NUMBER (or `oracle`).
    pub pipeline: String,
    /// Task.
    pub task: String,
    /// Split.
    pub split: String,
    /// Examples.
    pub n: u64,
    /// Percent.
    pub accuracy: f64,
    /// When.
    pub at: String,
}

/// Everything the page shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    /// Run or sweep.
    pub target: Target,
    /// The experiment's name.
    pub experiment: String,
    /// The finished trials, in run order.
    pub trials: Vec<Trial>,
    /// Runs of the sweep that did not finish.
    pub unfinished: usize,
    /// Per configuration (the varying keys other than `seed`).
    pub configurations: Vec<Configuration>,
    /// The keys that vary across the trials.
    pub varying: Vec<String>,
    /// The versions used and made, and their ancestors.
    pub versions: Vec<VersionInfo>,
    /// Stored evaluations of the versions used and made.
    pub evaluations: Vec<EvalRow>,
}

/// Finds what `prefix` names: a sweep id or a run id (or a unique prefix).
pub fn resolve(store: &Store, prefix: &str) -> Result<Target, ReportError> {
    let p = prefix.to_lowercase();
    let runs = store.runs()?;
    let sweeps: BTreeSet<Uuid> = runs
        .iter()
        .filter_map(|r| r.sweep)
        .filter(|s| s.to_string().starts_with(&p))
        .collect();
    let matching: Vec<Uuid> = runs
        .iter()
        .map(|r| r.id)
        .filter(|id| id.to_string().starts_with(&p))
        .collect();
    match (sweeps.len(), matching.len()) {
        (_, _) if p.is_empty() => Err(ReportError::Refused("name a run or a sweep".into())),
        (1, 0) => Ok(Target::Sweep(*sweeps.iter().next().expect("one"))),
        (0, 1) => Ok(Target::Run(matching[0])),
        (0, 0) => Err(ReportError::Refused(format!(
            "no run or sweep in {} has an id starting with `{prefix}` (`vpd runs` lists them)",
            store.root().display()
        ))),
        (s, r) => Err(ReportError::Refused(format!(
            "`{prefix}` is ambiguous: it starts {s} sweep id(s) and {r} run id(s); give more characters"
        ))),
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if prefix.is_empty() && k == "sweep" {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        x => {
            out.insert(prefix.to_string(), x.to_string());
        }
    }
}

/// The dotted keys whose values differ between the configurations.
fn varying_keys(configs: &[serde_json::Value]) -> Vec<String> {
    let flat: Vec<BTreeMap<String, String>> = configs
        .iter()
        .map(|c| {
            let mut m = BTreeMap::new();
            flatten("", c, &mut m);
            m
        })
        .collect();
    let keys: BTreeSet<&String> = flat.iter().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let vals: BTreeSet<Option<&String>> = flat.iter().map(|m| m.get(*k)).collect();
            vals.len() > 1
        })
        .cloned()
        .collect()
}

fn lookup<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

/// Gathers the report's data from the store.
pub fn gather(store: &Store, target: &Target) -> Result<ReportData, ReportError> {
    let runs = store.runs()?;
    let chosen: Vec<_> = match target {
        Target::Run(id) => runs.iter().filter(|r| r.id == *id).collect(),
        Target::Sweep(id) => runs.iter().filter(|r| r.sweep == Some(*id)).collect(),
    };
    let mut reports = Vec::new();
    let mut unfinished = 0;
    for r in &chosen {
        let report = match (&r.report, r.effective_status()) {
            (Some(h), RunStatus::Finished) => {
                let bytes = store.blobs().get(h)?;
                Some(serde_json::from_slice::<RunReport>(&bytes).map_err(|e| {
                    ReportError::Refused(format!(
                        "run {}: its stored report (blob {h}) does not read: {e}",
                        r.id
                    ))
                })?)
            }
            _ => None,
        };
        match report {
            Some(rep) => reports.push((r.config.clone(), rep)),
            None => unfinished += 1,
        }
    }
    if reports.is_empty() {
        let what = match target {
            Target::Run(id) => format!(
                "run {id} has no report: it is {}",
                chosen.first().map_or("missing".to_string(), |r| {
                    format!("{:?}", r.effective_status()).to_lowercase()
                })
            ),
            Target::Sweep(id) => {
                format!("sweep {id} has no finished trial yet ({unfinished} started)")
            }
        };
        return Err(ReportError::Refused(what));
    }
    let configs: Vec<serde_json::Value> = reports.iter().map(|(c, _)| c.clone()).collect();
    let varying = varying_keys(&configs);
    let trials: Vec<Trial> = reports
        .into_iter()
        .map(|(config, report)| Trial {
            values: varying
                .iter()
                .filter_map(|k| lookup(&config, k).map(|v| (k.clone(), v.clone())))
                .collect(),
            run_id: report.run_id.clone(),
            reused: true,
            report,
        })
        .collect();
    let configurations = sweep::summarise(trials.clone());
    let (versions, evaluations) = versions_of(store, &trials)?;
    Ok(ReportData {
        target: target.clone(),
        experiment: trials[0].report.experiment.clone(),
        trials,
        unfinished,
        configurations,
        varying,
        versions,
        evaluations,
    })
}

/// The versions the trials used and made, their ancestors (parents and
/// teachers), each one's accuracy per task in the trials, and the stored
/// evaluations of the versions used and made.
fn versions_of(
    store: &Store,
    trials: &[Trial],
) -> Result<(Vec<VersionInfo>, Vec<EvalRow>), ReportError> {
    let mut scores: HashMap<Uuid, BTreeMap<String, Vec<(f64, u64)>>> = HashMap::new();
    let mut direct: BTreeMap<Uuid, ModuleVersion> = BTreeMap::new();
    for t in trials {
        let r = &t.report;
        let mut get = |key: &str| -> Result<Option<ModuleVersion>, ReportError> {
            let Some(v) = r
                .versions
                .get(key)
                .and_then(|s| s.parse::<VersionRef>().ok())
            else {
                return Ok(None);
            };
            let v = store.resolve(&v)?;
            direct.insert(v.id, v.clone());
            Ok(Some(v))
        };
        let keys: Vec<String> = r.versions.keys().cloned().collect();
        for k in &keys {
            get(k)?;
        }
        for m in &r.config.distill.modules {
            let (made, parent) = (get(m)?, get(&format!("{m}_parent"))?);
            for (task, row) in &r.tasks {
                if let Some(v) = &made {
                    scores
                        .entry(v.id)
                        .or_default()
                        .entry(task.clone())
                        .or_default()
                        .push((row.distilled.accuracy, row.distilled.n));
                }
                if let Some(p) = &parent {
                    scores
                        .entry(p.id)
                        .or_default()
                        .entry(task.clone())
                        .or_default()
                        .push((row.base.accuracy, row.base.n));
                }
            }
        }
    }
    // Ancestors through parents and teachers.
    let mut all = direct.clone();
    let mut todo: Vec<Uuid> = direct.keys().copied().collect();
    while let Some(id) = todo.pop() {
        let v = all[&id].clone();
        for up in [v.parent, v.teacher].into_iter().flatten() {
            if let std::collections::btree_map::Entry::Vacant(slot) = all.entry(up) {
                if let Some(u) = store.version_by_id(up)? {
                    slot.insert(u);
                    todo.push(up);
                }
            }
        }
    }
    let aliases = store.aliases()?;
    let mut out: Vec<VersionInfo> = all
        .into_values()
        .map(|v| {
            let tasks = scores
                .get(&v.id)
                .map(|m| {
                    m.iter()
                        .map(|(t, xs)| {
                            // A parent appears once per trial; every trial
                            // scores it on the same examples.
                            let accs: Vec<f64> = xs.iter().map(|x| x.0).collect();
                            let s = sweep::Stat::of(&accs);
                            (t.clone(), (s.mean, s.sd, xs.len(), xs[0].1))
                        })
                        .collect()
                })
                .unwrap_or_default();
            VersionInfo {
                aliases: aliases.get(&v.id).cloned().unwrap_or_default(),
                version: v,
                tasks,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (&a.version.module, a.version.number).cmp(&(&b.version.module, b.version.number))
    });
    let names: HashMap<String, String> = store
        .versions(None)?
        .into_iter()
        .map(|v| (v.id.to_string(), format!("{}@{}", v.module, v.number)))
        .collect();
    let mut evals = Vec::new();
    let wanted: HashMap<String, &ModuleVersion> =
        direct.values().map(|v| (v.id.to_string(), v)).collect();
    for e in store.evaluations()? {
        // Only pipelines made of versions the runs used or made (or oracle
        // modules): the store may hold many other combinations.
        let ours = e
            .pipeline
            .modules
            .values()
            .all(|id| id == "oracle" || wanted.contains_key(id));
        if !ours || e.pipeline.modules.values().all(|id| id == "oracle") {
            continue;
        }
        let pipeline: Vec<String> = e
            .pipeline
            .modules
            .iter()
            .map(|(s, x)| format!("{s}={}", names.get(x).map_or(x.as_str(), |n| n.as_str())))
            .collect();
        evals.push(EvalRow {
            pipeline: pipeline.join(" "),
            task: e.pipeline.task.clone(),
            split: e.pipeline.split.clone(),
            n: e.total.n,
            accuracy: 100.0 * e.total.accuracy(),
            at: e.created_at.format("%Y-%m-%d %H:%M").to_string(),
        });
    }
    evals.sort_by(|a, b| (&a.task, &a.split, &a.at).cmp(&(&b.task, &b.split, &b.at)));
    Ok((out, evals))
}

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
            .filter_map(|m| r.versions.get(m).cloned())
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
