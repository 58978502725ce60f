//! What a report shows, gathered from the store: the run reports, the
//! versions and their evaluations.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use crate::experiment::sweep::{self, Configuration, Trial};
use crate::experiment::RunReport;
use crate::store::{ModuleVersion, RunStatus, Store, VersionRef};

use super::{ReportError, Target};

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
    // Either spelling of an id: hyphenated, or 32 hex digits as `vpd runs`
    // prints its first 12.
    let starts =
        |id: &Uuid| id.to_string().starts_with(&p) || id.simple().to_string().starts_with(&p);
    let runs = store.runs()?;
    let sweeps: BTreeSet<Uuid> = runs
        .iter()
        .filter_map(|r| r.sweep)
        .filter(|s| starts(s))
        .collect();
    let matching: Vec<Uuid> = runs.iter().map(|r| r.id).filter(|id| starts(id)).collect();
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
                let refused = |e: serde_json::Error| {
                    ReportError::Refused(format!(
                        "run {}: its stored report (blob {h}) does not read: {e}",
                        r.id
                    ))
                };
                let v = serde_json::from_slice(&bytes).map_err(refused)?;
                let v = relabelled(store, r.id, v)?;
                Some(serde_json::from_value::<RunReport>(v).map_err(refused)?)
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
                    r.effective_status().to_string()
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
            let m = m.module();
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

/// A run's stored report (as JSON) with every MODULE@NUMBER it names as
/// the version is numbered in `store` now: a run merged from another store
/// names that store's numbers, and its versions have new ones here. The
/// versions are found by the ids the report keeps (`version_ids`), or, in
/// a report recorded before vpd kept them, the versions the run made.
pub fn relabelled(
    store: &Store,
    run: Uuid,
    mut report: serde_json::Value,
) -> Result<serde_json::Value, ReportError> {
    let mut ids: BTreeMap<String, Uuid> =
        serde_json::from_value(report["version_ids"].clone()).unwrap_or_default();
    let labels: BTreeMap<String, String> =
        serde_json::from_value(report["versions"].clone()).unwrap_or_default();
    if ids.is_empty() {
        for v in store
            .versions(None)?
            .into_iter()
            .filter(|v| v.run == Some(run))
        {
            ids.insert(v.module.clone(), v.id);
        }
    }
    let mut map: HashMap<String, String> = HashMap::new();
    for (role, old) in &labels {
        let Some(id) = ids.get(role) else { continue };
        if let Some(v) = store.version_by_id(*id)? {
            map.insert(old.clone(), format!("{}@{}", v.module, v.number));
        }
    }
    if map.iter().any(|(a, b)| a != b) {
        relabel(&mut report, &map);
    }
    Ok(report)
}

/// Replaces every MODULE@NUMBER token of every string in `v` by its entry
/// in `map`, all at once (so that `vqa@2 -> vqa@3` and `vqa@3 -> vqa@4`
/// do not chain).
fn relabel(v: &mut serde_json::Value, map: &HashMap<String, String>) {
    match v {
        serde_json::Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut token = String::new();
            let flush = |token: &mut String, out: &mut String| {
                out.push_str(map.get(token.as_str()).unwrap_or(token));
                token.clear();
            };
            for c in s.chars() {
                if c.is_alphanumeric() || "@_-".contains(c) {
                    token.push(c);
                } else {
                    flush(&mut token, &mut out);
                    out.push(c);
                }
            }
            flush(&mut token, &mut out);
            *s = out;
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| relabel(x, map)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| relabel(x, map)),
        _ => {}
    }
}
