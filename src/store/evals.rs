//! Evaluations keyed by the whole pipeline, comparison of module versions
//! across tasks, the cross-task regression gate, and the program cache.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use serde::Serialize;
use sled::Transactional;
use uuid::Uuid;

use super::records::{CachedProgram, Evaluation, ModuleVersion, Pipeline, Tally};
use super::{encode, sha256_hex, Store, StoreError, EVALS, EVAL_INDEX, PROGRAMS};

/// 95% Wilson score interval of a tally's accuracy, in [0, 1]
/// (`stats::wilson_interval`).
pub fn wilson_interval(t: Tally) -> (f64, f64) {
    crate::stats::wilson_interval(t.correct, t.n)
}

/// Half-width (points) of the 95% interval of a difference of two
/// independent accuracies (`stats::diff_half_width`).
fn diff_half_width(a: Tally, b: Tally) -> f64 {
    crate::stats::diff_half_width((a.accuracy(), a.n), (b.accuracy(), b.n))
}

fn pipeline_key(p: &Pipeline) -> Vec<u8> {
    sha256_hex(&encode(p)).into_bytes()
}

/// One matched pair of evaluations in a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareRow {
    /// Task.
    pub task: String,
    /// Split.
    pub split: String,
    /// Generator.
    pub generator: String,
    /// The step module (e.g. `VQA`) the compared versions fill.
    pub slot: String,
    /// The first version's evaluation.
    pub a: Evaluation,
    /// The second version's evaluation.
    pub b: Evaluation,
    /// b minus a, accuracy points.
    pub diff_points: f64,
    /// 95% interval half-width of the difference, points.
    pub diff_ci_points: f64,
    /// Per question type: (a accuracy, b accuracy, b - a), points.
    pub by_type: BTreeMap<String, (f64, f64, f64)>,
}

/// Two versions of one module side by side.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// First version.
    pub a: ModuleVersion,
    /// Second version.
    pub b: ModuleVersion,
    /// Matched pipelines.
    pub rows: Vec<CompareRow>,
}

/// One task's line of the regression gate.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GateRow {
    /// Task.
    pub task: String,
    /// Split.
    pub split: String,
    /// Baseline accuracy, percent.
    pub baseline: f64,
    /// Candidate accuracy, percent.
    pub candidate: f64,
    /// Baseline minus candidate, points (positive: a loss).
    pub drop_points: f64,
    /// Examples.
    pub n: u64,
    /// Whether the drop is within the allowance.
    pub passed: bool,
}

/// The cross-task regression gate's verdict.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GateReport {
    /// The candidate.
    pub candidate: ModuleVersion,
    /// What it is judged against.
    pub baseline: ModuleVersion,
    /// Allowed loss, points.
    pub max_drop: f64,
    /// Per task.
    pub rows: Vec<GateRow>,
    /// True when no task lost more than `max_drop`.
    pub passed: bool,
}

fn pct(t: Tally) -> f64 {
    100.0 * t.accuracy()
}

impl Store {
    /// Records an evaluation; it becomes the pipeline's current result.
    pub fn record_evaluation(
        &self,
        pipeline: Pipeline,
        total: Tally,
        by_type: BTreeMap<String, Tally>,
        run: Option<Uuid>,
    ) -> Result<Evaluation, StoreError> {
        self.record_evaluation_with_details(pipeline, total, by_type, run, None)
    }

    /// Records an evaluation with its per-example details (stored as a
    /// blob first, so the record never names a missing blob).
    pub fn record_evaluation_with_details(
        &self,
        pipeline: Pipeline,
        total: Tally,
        by_type: BTreeMap<String, Tally>,
        run: Option<Uuid>,
        details: Option<&[u8]>,
    ) -> Result<Evaluation, StoreError> {
        let details = details.map(|d| self.blobs().put(d)).transpose()?;
        let eval = Evaluation {
            id: Uuid::now_v7(),
            pipeline,
            total,
            by_type,
            run,
            created_at: Utc::now(),
            details,
        };
        self.with_db(|db| {
            self.insert_evaluation(db, &eval)?;
            Ok(eval.clone())
        })
    }

    pub(crate) fn insert_evaluation(
        &self,
        db: &sled::Db,
        eval: &Evaluation,
    ) -> Result<(), StoreError> {
        let evals = self.tree(db, EVALS)?;
        let index = self.tree(db, EVAL_INDEX)?;
        let pk = pipeline_key(&eval.pipeline);
        let r = (&evals, &index).transaction(|(e, i)| {
            e.insert(eval.id.as_bytes(), encode(eval))?;
            let newer = match i.get(&pk)? {
                Some(old) => old.as_ref() < eval.id.as_bytes().as_slice(),
                None => true,
            };
            if newer {
                i.insert(pk.as_slice(), eval.id.as_bytes())?;
            }
            Ok(())
        });
        self.tx(r)
    }

    /// The current evaluation of exactly this pipeline.
    pub fn find_evaluation(&self, pipeline: &Pipeline) -> Result<Option<Evaluation>, StoreError> {
        self.with_db(|db| {
            let Some(id) = self
                .tree(db, EVAL_INDEX)?
                .get(pipeline_key(pipeline))
                .map_err(|e| self.db_err(e))?
            else {
                return Ok(None);
            };
            match self.tree(db, EVALS)?.get(&id).map_err(|e| self.db_err(e))? {
                Some(v) => self.decode(EVALS, &id, &v).map(Some),
                None => Ok(None),
            }
        })
    }

    /// The current evaluation of every pipeline, oldest first.
    pub fn evaluations(&self) -> Result<Vec<Evaluation>, StoreError> {
        self.with_db(|db| self.current_evaluations(db))
    }

    fn current_evaluations(&self, db: &sled::Db) -> Result<Vec<Evaluation>, StoreError> {
        let current: BTreeSet<Vec<u8>> = self
            .tree(db, EVAL_INDEX)?
            .iter()
            .values()
            .map(|v| v.map(|v| v.to_vec()).map_err(|e| self.db_err(e)))
            .collect::<Result<_, _>>()?;
        Ok(self
            .scan::<Evaluation>(db, EVALS, b"")?
            .into_iter()
            .filter(|(k, _)| current.contains(k))
            .map(|(_, e)| e)
            .collect())
    }

    /// Evaluations of pipelines that differ only in the slot `a` fills,
    /// side by side. Refused, naming the difference, when no pair matches.
    pub fn compare(
        &self,
        a: &ModuleVersion,
        b: &ModuleVersion,
        tasks: Option<&[String]>,
    ) -> Result<Comparison, StoreError> {
        if a.module != b.module {
            return Err(StoreError::Refused(format!(
                "{}@{} and {}@{} are versions of different modules",
                a.module, a.number, b.module, b.number
            )));
        }
        let evals = self.evaluations()?;
        let in_tasks = |e: &&Evaluation| tasks.is_none_or(|t| t.contains(&e.pipeline.task));
        let uses = |v: &ModuleVersion| {
            let id = v.id.to_string();
            evals
                .iter()
                .filter(in_tasks)
                .filter_map(|e| {
                    let slot = e
                        .pipeline
                        .modules
                        .iter()
                        .find(|(_, x)| **x == id)?
                        .0
                        .clone();
                    Some((slot, e.clone()))
                })
                .collect::<Vec<_>>()
        };
        let ea = uses(a);
        let eb = uses(b);
        let mut rows = Vec::new();
        for (slot, x) in &ea {
            let mut rest = x.pipeline.clone();
            rest.modules.remove(slot);
            for (slot_b, y) in &eb {
                let mut rest_b = y.pipeline.clone();
                rest_b.modules.remove(slot_b);
                if slot == slot_b && rest == rest_b {
                    rows.push(compare_row(slot, x, y));
                }
            }
        }
        if rows.is_empty() {
            return Err(StoreError::Refused(no_match_reason(a, b, &ea, &eb)));
        }
        rows.sort_by(|x, y| (&x.task, &x.split).cmp(&(&y.task, &y.split)));
        Ok(Comparison {
            a: a.clone(),
            b: b.clone(),
            rows,
        })
    }

    /// The cross-task gate: `candidate` may not lose more than `max_drop`
    /// points on any task against `baseline`.
    pub fn regress(
        &self,
        candidate: &ModuleVersion,
        baseline: &ModuleVersion,
        max_drop: f64,
    ) -> Result<GateReport, StoreError> {
        let cmp = self.compare(baseline, candidate, None)?;
        let rows: Vec<GateRow> = cmp
            .rows
            .iter()
            .map(|r| {
                let drop = pct(r.a.total) - pct(r.b.total);
                GateRow {
                    task: r.task.clone(),
                    split: r.split.clone(),
                    baseline: pct(r.a.total),
                    candidate: pct(r.b.total),
                    drop_points: drop,
                    n: r.b.total.n,
                    passed: drop <= max_drop + 1e-9,
                }
            })
            .collect();
        let passed = rows.iter().all(|r| r.passed);
        Ok(GateReport {
            candidate: candidate.clone(),
            baseline: baseline.clone(),
            max_drop,
            rows,
            passed,
        })
    }

    /// A cached program for this generator configuration and text.
    pub fn cached_program(
        &self,
        generator: &str,
        text: &str,
    ) -> Result<Option<CachedProgram>, StoreError> {
        let k = program_key(generator, text);
        self.with_db(|db| {
            match self
                .tree(db, PROGRAMS)?
                .get(&k)
                .map_err(|e| self.db_err(e))?
            {
                Some(v) => self.decode(PROGRAMS, &k, &v).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Caches a generated program (or the generator's failure).
    pub fn cache_program(
        &self,
        generator: &str,
        text: &str,
        program: Result<String, String>,
    ) -> Result<(), StoreError> {
        let entry = CachedProgram {
            generator: generator.to_string(),
            text: text.to_string(),
            program,
            created_at: Utc::now(),
        };
        let k = program_key(generator, text);
        self.with_db(|db| {
            self.tree(db, PROGRAMS)?
                .insert(k, encode(&entry))
                .map_err(|e| self.db_err(e))?;
            Ok(())
        })
    }
}

pub(crate) fn program_key(generator: &str, text: &str) -> Vec<u8> {
    sha256_hex(format!("{generator}\0{text}").as_bytes()).into_bytes()
}

fn compare_row(slot: &str, a: &Evaluation, b: &Evaluation) -> CompareRow {
    let types: BTreeSet<&String> = a.by_type.keys().chain(b.by_type.keys()).collect();
    let by_type = types
        .into_iter()
        .map(|t| {
            let x = a.by_type.get(t).copied().unwrap_or_default();
            let y = b.by_type.get(t).copied().unwrap_or_default();
            (t.clone(), (pct(x), pct(y), pct(y) - pct(x)))
        })
        .collect();
    CompareRow {
        task: a.pipeline.task.clone(),
        split: a.pipeline.split.clone(),
        generator: a.pipeline.generator.clone(),
        slot: slot.to_string(),
        a: a.clone(),
        b: b.clone(),
        diff_points: pct(b.total) - pct(a.total),
        diff_ci_points: diff_half_width(a.total, b.total),
        by_type,
    }
}

/// Why no pair of evaluations matches: names the nearest difference.
fn no_match_reason(
    a: &ModuleVersion,
    b: &ModuleVersion,
    ea: &[(String, Evaluation)],
    eb: &[(String, Evaluation)],
) -> String {
    let name = |v: &ModuleVersion| format!("{}@{}", v.module, v.number);
    if ea.is_empty() || eb.is_empty() {
        let missing = if ea.is_empty() { a } else { b };
        return format!(
            "{} has no evaluation to compare (run `vpd eval` with it first)",
            name(missing)
        );
    }
    let (sa, x) = &ea[0];
    let mut best: Option<(usize, Vec<String>)> = None;
    for (sb, y) in eb {
        let mut diffs = Vec::new();
        let (p, q) = (&x.pipeline, &y.pipeline);
        if sa != sb {
            diffs.push(format!("the slot ({sa} vs {sb})"));
        }
        for (what, l, r) in [
            ("task", &p.task, &q.task),
            ("split", &p.split, &q.split),
            ("generator", &p.generator, &q.generator),
            ("dataset", &p.dataset, &q.dataset),
        ] {
            if l != r {
                diffs.push(format!("{what} ({l} vs {r})"));
            }
        }
        let slots: BTreeSet<&String> = p.modules.keys().chain(q.modules.keys()).collect();
        for s in slots {
            if s == sa || s == sb {
                continue;
            }
            let (l, r) = (p.modules.get(s), q.modules.get(s));
            if l != r {
                diffs.push(format!(
                    "module {s} ({} vs {})",
                    l.map_or("absent", |v| v),
                    r.map_or("absent", |v| v)
                ));
            }
        }
        if best.as_ref().is_none_or(|(n, _)| diffs.len() < *n) {
            best = Some((diffs.len(), diffs));
        }
    }
    let diffs = best.map(|(_, d)| d).unwrap_or_default();
    format!(
        "no pipelines of {} and {} differ only in that module: the closest pair differs in {}",
        name(a),
        name(b),
        diffs.join(", ")
    )
}
