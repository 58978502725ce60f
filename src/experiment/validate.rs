//! An experiment file read and validated: TOML -> `Experiment` with its
//! defaults filled, `--set` overrides, every value checked (the error names
//! the key), and the trials of its `[sweep]` table.

use std::path::Path;

use super::spec::*;
use crate::vocab::{Slot, Task};

/// A refused experiment file or override.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file does not read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type.
    #[error("{where_}: {message}")]
    Invalid {
        /// The file or `--set`.
        where_: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// The most synthetic examples per split an experiment may ask for:
/// `VPD_MAX_SYNTH_N`, default 100,000 (the shipped experiments use at most
/// 16,000).
pub fn max_synth_n() -> usize {
    std::env::var("VPD_MAX_SYNTH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000)
}

/// The first value that occurs twice.
fn duplicate<T: PartialEq + Copy>(xs: &[T]) -> Option<T> {
    xs.iter()
        .enumerate()
        .find(|(i, x)| xs[..*i].contains(x))
        .map(|(_, x)| *x)
}

fn invalid(where_: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        where_: where_.to_string(),
        message: message.into().trim().replace('\n', " "),
    }
}

impl Experiment {
    /// The device the networks run on (checked when the file was read).
    pub fn device(&self) -> crate::nn::DeviceChoice {
        crate::nn::parse_device(&self.device).unwrap_or(crate::nn::DeviceChoice::Cpu)
    }

    /// The experiment as the identity of a run or sweep sees it: its
    /// resolved configuration without `device` (where it ran), and without
    /// `adapter` when that is the default (so that experiments recorded
    /// before the table existed are the same experiments).
    pub fn identity(config: &serde_json::Value) -> serde_json::Value {
        let mut v = config.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("device");
            let default = serde_json::to_value(super::templates::AdapterCfg::default())
                .expect("config serialises");
            if m.get("adapter") == Some(&default) {
                m.remove("adapter");
            }
        }
        v
    }

    /// Parses an experiment's TOML text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Experiment, ConfigError> {
        let mut e: Experiment = toml::from_str(text).map_err(|e| invalid(origin, e.to_string()))?;
        e.fill();
        e.check(origin)?;
        Ok(e)
    }

    /// Fills the defaults that depend on the task.
    pub(crate) fn fill(&mut self) {
        self.data.gqa.fill(Task::Gqa);
        self.data.nlvr2.fill(Task::Nlvr2);
    }

    /// Reads an experiment file.
    pub fn load(path: &Path) -> Result<Experiment, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let mut e = Experiment::parse(&text, &path.display().to_string())?;
        // Paths in a file are relative to the file (on the command line,
        // `--set` paths are relative to where vpd runs).
        let dir = path.parent().unwrap_or(Path::new(""));
        for real in [&mut e.data.gqa, &mut e.data.nlvr2] {
            for p in [&mut real.root, &mut real.images, &mut real.prompt] {
                if !p.is_empty() && Path::new(p.as_str()).is_relative() {
                    let joined = dir.join(p.as_str());
                    *p = std::path::absolute(&joined)
                        .unwrap_or(joined)
                        .display()
                        .to_string();
                }
            }
        }
        Ok(e)
    }

    /// The experiment with `KEY=VALUE` overrides applied (VALUE is a TOML
    /// value; a bare word is a string).
    pub fn with_overrides(&self, sets: &[String]) -> Result<Experiment, ConfigError> {
        let mut out = self.clone();
        for s in sets {
            let what = format!("--set {s}");
            let (key, value) = s
                .split_once('=')
                .ok_or_else(|| invalid(&what, "expected KEY=VALUE"))?;
            let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(value.to_string()));
            out = out.with_value(key.trim(), parsed, &what)?;
        }
        Ok(out)
    }

    /// The experiment with the key at dotted path `key` set to `value`
    /// (`what` names the override in errors).
    pub fn with_value(
        &self,
        key: &str,
        parsed: toml::Value,
        what: &str,
    ) -> Result<Experiment, ConfigError> {
        let mut tree = toml::Value::try_from(self).map_err(|e| invalid("config", e.to_string()))?;
        {
            let what = what.to_string();
            let mut at = &mut tree;
            for part in key.split('.') {
                at = at
                    .get_mut(part)
                    .filter(|_| !part.is_empty())
                    .ok_or_else(|| {
                        invalid(&what, format!("`{key}` names no key of an experiment"))
                    })?;
            }
            // A table is not a value to set.
            if at.is_table() {
                return Err(invalid(
                    &what,
                    format!("`{key}` is a table; set one of its keys"),
                ));
            }
            *at = parsed;
        }
        let mut e: Experiment = tree
            .try_into()
            .map_err(|e: toml::de::Error| invalid(what, format!("`{key}`: {e}")))?;
        e.fill();
        e.check(what)?;
        Ok(e)
    }

    /// The trials of the sweep: every combination of its lists (keys in
    /// order, the last varying fastest) applied to this experiment, whose
    /// own sweep table is dropped. Refused before anything runs when a key
    /// names no config key, a list is empty, or a value does not fit.
    pub fn trials(&self) -> Result<Vec<(SweptValues, Experiment)>, ConfigError> {
        let mut base = self.clone();
        base.sweep.clear();
        let mut combos: Vec<SweptValues> = vec![vec![]];
        for (key, values) in &self.sweep {
            let what = format!("[sweep] {key}");
            if values.is_empty() {
                return Err(invalid(&what, format!("`{key}` has an empty list")));
            }
            if key == "sweep" || key.starts_with("sweep.") {
                return Err(invalid(&what, "a sweep cannot set the sweep"));
            }
            for v in values {
                base.with_value(key, v.clone(), &what)?;
            }
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((key.clone(), v.clone()));
                        c
                    })
                })
                .collect();
        }
        combos
            .into_iter()
            .map(|c| {
                let mut e = base.clone();
                for (k, v) in &c {
                    e = e.with_value(k, v.clone(), &format!("[sweep] {k}"))?;
                }
                Ok((c, e))
            })
            .collect()
    }

    /// How many trials the sweep makes (the product of its lists'
    /// lengths), counted without making them; 1 without a sweep.
    pub fn trial_count(&self) -> u128 {
        self.sweep
            .values()
            .map(|v| v.len() as u128)
            .fold(1u128, |a, b| a.saturating_mul(b))
    }

    /// The float settings' ranges: a learning rate of 1e308 is positive
    /// and trains nothing (the run keeps epoch 0 and the gate moves the
    /// alias onto a copy of the parent).
    fn check_ranges(&self, origin: &str) -> Result<(), ConfigError> {
        let d = &self.distill;
        for (key, v, lo, hi, open_lo) in [
            ("distill.lr", d.lr, 0.0, 1.0, true),
            ("pretrain.lr", self.pretrain.lr, 0.0, 1.0, true),
            ("distill.temperature", d.temperature, 0.0, 100.0, true),
            ("distill.confidence", d.confidence, 0.0, 1.0, false),
            ("distill.ce_weight", d.ce_weight, 0.0, 100.0, false),
            ("distill.replay", d.replay, 0.0, 100.0, false),
            ("distill.self_distill", d.self_distill, 0.0, 100.0, false),
            ("distill.loc_candidates", d.loc_candidates, 0.0, 1.0, false),
            ("distill.loc_accept", d.loc_accept, 0.0, 1.0, false),
            // Negative: the version must gain that much.
            ("gate.max_drop", self.gate.max_drop, -100.0, 100.0, false),
        ] {
            let inside = if open_lo { v > lo } else { v >= lo } && v <= hi;
            if !inside {
                let lower = if open_lo { "above" } else { "at least" };
                return Err(invalid(
                    origin,
                    format!("`{key}` = {v:?}: must be {lower} {lo} and at most {hi}"),
                ));
            }
        }
        Ok(())
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        // NaN and inf pass every "must be positive" test (NaN compares
        // false): refused wherever they are, naming the key.
        let tree = toml::Value::try_from(self).map_err(|e| invalid(origin, e.to_string()))?;
        if let Some(key) = non_finite(&tree, "") {
            return Err(invalid(
                origin,
                format!("`{key}` is not a finite number (NaN and inf are refused)"),
            ));
        }
        self.check_ranges(origin)?;
        crate::nn::parse_device(&self.device)
            .map_err(|e| invalid(origin, format!("`device`: {e}")))?;
        self.adapter.check().map_err(|e| invalid(origin, e))?;
        let d = &self.distill;
        // Synthetic data is written to disk, image by image: a size beyond
        // the bound would fill it, and 0 would fail only once the run began.
        let max = max_synth_n();
        let mut used = vec![("data.generic_n", self.data.generic_n)];
        let mut tasks = self.eval.tasks.clone();
        tasks.push(d.task);
        if tasks.contains(&Task::Gqa) && !self.data.gqa.is_real() {
            used.push(("data.gqa_n", self.data.gqa_n));
        }
        if tasks.contains(&Task::Nlvr2) && !self.data.nlvr2.is_real() {
            used.push(("data.nlvr2_n", self.data.nlvr2_n));
        }
        for (k, n) in used {
            if n == 0 {
                return Err(invalid(
                    origin,
                    format!("`{k}` is 0: the run needs that data"),
                ));
            }
        }
        for (k, n) in [
            ("data.generic_n", self.data.generic_n),
            ("data.gqa_n", self.data.gqa_n),
            ("data.nlvr2_n", self.data.nlvr2_n),
            ("pretrain.students_n", self.pretrain.students_n),
            ("pretrain.gqa_teacher_n", self.pretrain.gqa_teacher_n),
            ("pretrain.nlvr2_teacher_n", self.pretrain.nlvr2_teacher_n),
        ] {
            if n > max {
                return Err(invalid(
                    origin,
                    format!(
                        "`{k}` = {n} is more than {max} examples per split of synthetic data (VPD_MAX_SYNTH_N raises the bound)"
                    ),
                ));
            }
        }
        for t in Task::ALL {
            let real = self.data.real(t);
            if !["annotated", "llm"].contains(&real.generator.as_str()) {
                return Err(invalid(
                    origin,
                    format!(
                        "`data.{t}.generator` = {:?}: expected \"annotated\" or \"llm\"",
                        real.generator
                    ),
                ));
            }
            if !real.is_real() {
                continue;
            }
            for r in Role::ALL {
                if real.splits.of(r).is_empty() {
                    return Err(invalid(origin, format!("`data.{t}.splits.{r}` is empty")));
                }
                if let Err(e) = crate::data::check_split(real.splits.of(r)) {
                    return Err(invalid(origin, format!("`data.{t}.splits.{r}`: {e}")));
                }
            }
            let size = |r: Role| self.role_size(t, r);
            if let Some((a, b, split)) =
                overlap(real, &[Role::Distill, Role::Dev, Role::Test], size)
            {
                return Err(invalid(
                    origin,
                    format!(
                        "`data.{t}`: the roles {a} and {b} both read {split} from overlapping offsets; \
                         set `data.{t}.offsets.{b}` past the end of {a}'s examples (offset + size), or map them to different splits"
                    ),
                ));
            }
        }
        if self.eval.tasks.is_empty() {
            return Err(invalid(
                origin,
                "`eval.tasks` is empty: the gate needs at least one task",
            ));
        }
        if let Some(t) = duplicate(&self.eval.tasks) {
            return Err(invalid(
                origin,
                format!("`eval.tasks` names {t} twice: each task is evaluated once"),
            ));
        }
        if let Some(m) = duplicate(&d.modules) {
            return Err(invalid(
                origin,
                format!("`distill.modules` names {} twice", m.module()),
            ));
        }
        if d.task == Task::Nlvr2 && d.modules.contains(&Slot::Loc) {
            return Err(invalid(
                origin,
                "`distill.modules`: NLVR2's programs have no LOC steps; distil loc on gqa",
            ));
        }
        if d.modules.is_empty() {
            return Err(invalid(origin, "`distill.modules` is empty"));
        }
        if !(0.0..=1.0).contains(&d.confidence) {
            return Err(invalid(origin, "`distill.confidence` must be within 0..1"));
        }
        if d.temperature <= 0.0 || d.lr <= 0.0 || d.batch == 0 || d.epochs == 0 {
            return Err(invalid(
                origin,
                "`distill.temperature`, `distill.lr`, `distill.batch` and `distill.epochs` must be positive",
            ));
        }
        if self.teachers.of(d.task).is_none() {
            return Err(invalid(
                origin,
                format!("`teachers.{}` is empty but `distill.task` needs it", d.task),
            ));
        }
        if self.gate.alias.is_empty() {
            return Err(invalid(origin, "`gate.alias` is empty"));
        }
        Ok(())
    }
}

/// The dotted key of the first NaN or infinite float in `v`, if any.
fn non_finite(v: &toml::Value, at: &str) -> Option<String> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(at.to_string()),
        toml::Value::Table(t) => t.iter().find_map(|(k, v)| non_finite(v, &join(k))),
        toml::Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| non_finite(v, &format!("{at}[{i}]"))),
        _ => None,
    }
}
