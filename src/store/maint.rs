//! Verification, garbage collection, import/export and merging of stores.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use uuid::Uuid;

use super::records::{AliasEvent, CachedProgram, Evaluation, ModuleVersion, NewVersion, Run};
use super::{
    encode, Store, StoreError, ALIASES, EVALS, EVAL_INDEX, HISTORY, NUMBERS, PROGRAMS, RUNS,
    VERSIONS,
};

/// One thing `verify` found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Where: a tree and key, or a blob path.
    pub at: String,
    /// What is wrong.
    pub message: String,
}

/// What `gc` removed.
#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: usize,
    /// Bytes freed.
    pub bytes: u64,
    /// Unreferenced blobs kept because they are younger than the grace
    /// period (a writer may be about to reference them).
    pub kept_recent: usize,
    /// Blobs still referenced.
    pub referenced: usize,
}

/// What `merge` brought in.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MergeReport {
    /// New module versions (renumbered here).
    pub versions: usize,
    /// New runs.
    pub runs: usize,
    /// New evaluations.
    pub evaluations: usize,
    /// New program-cache entries.
    pub programs: usize,
    /// Records already present (same id).
    pub already_present: usize,
}

/// Unreferenced blobs younger than this (seconds) are kept by `gc`: a
/// writer stores the blob before the record that references it.
pub const GC_GRACE_SECS: u64 = 600;
/// [`GC_GRACE_SECS`] as a duration.
pub const GC_GRACE: Duration = Duration::from_secs(GC_GRACE_SECS);

impl Store {
    /// Checks that every record decodes, every index points at a record,
    /// and every referenced blob exists and matches its hash.
    pub fn verify(&self) -> Result<Vec<Problem>, StoreError> {
        let mut problems = Vec::new();
        let versions = self.with_db(|db| {
            let mut versions = Vec::new();
            for name in db.tree_names() {
                let tree = self.tree(db, &String::from_utf8_lossy(&name))?;
                let name = String::from_utf8_lossy(&name).into_owned();
                for kv in tree.iter() {
                    let (k, v) = kv.map_err(|e| self.db_err(e))?;
                    let at = format!("{name}/{}", super::show_key(&k));
                    let bad = |m: String| Problem {
                        at: at.clone(),
                        message: m,
                    };
                    let check = match name.as_str() {
                        VERSIONS => match self.decode::<ModuleVersion>(&name, &k, &v) {
                            Ok(mv) => {
                                if mv.id.as_bytes().as_slice() != k.as_ref() {
                                    problems.push(bad(format!("key does not match id {}", mv.id)));
                                }
                                versions.push(mv);
                                Ok(())
                            }
                            Err(e) => Err(e),
                        },
                        HISTORY => self.decode::<AliasEvent>(&name, &k, &v).map(drop),
                        RUNS => self.decode::<Run>(&name, &k, &v).map(drop),
                        EVALS => self.decode::<Evaluation>(&name, &k, &v).map(drop),
                        PROGRAMS => self.decode::<CachedProgram>(&name, &k, &v).map(drop),
                        NUMBERS | ALIASES => {
                            match Uuid::from_slice(&v) {
                                Ok(id) => {
                                    if self.version_by_id_in(db, id)?.is_none() {
                                        problems
                                            .push(bad(format!("points at missing version {id}")));
                                    }
                                }
                                Err(_) => problems.push(bad("value is not a version id".into())),
                            }
                            Ok(())
                        }
                        EVAL_INDEX => {
                            if self
                                .tree(db, EVALS)?
                                .get(&v)
                                .map_err(|e| self.db_err(e))?
                                .is_none()
                            {
                                problems.push(bad("points at a missing evaluation".into()));
                            }
                            Ok(())
                        }
                        _ => Ok(()),
                    };
                    if let Err(e) = check {
                        problems.push(bad(e.to_string()));
                    }
                }
            }
            Ok(versions)
        })?;
        let blobs = self.blobs();
        let mut checked = HashSet::new();
        for v in &versions {
            for hash in std::iter::once(&v.blob).chain(v.sidecar.as_ref()) {
                if !checked.insert(hash.clone()) {
                    continue;
                }
                if let Err(e) = blobs.get(hash) {
                    problems.push(Problem {
                        at: format!("{}@{} ({})", v.module, v.number, v.id),
                        message: e.to_string(),
                    });
                }
            }
        }
        Ok(problems)
    }

    fn referenced_blobs(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut refs: BTreeSet<String> = self
            .versions(None)?
            .into_iter()
            .flat_map(|v| std::iter::once(v.blob).chain(v.sidecar))
            .collect();
        refs.extend(self.evaluations()?.into_iter().filter_map(|e| e.details));
        refs.extend(self.runs()?.into_iter().filter_map(|r| r.report));
        Ok(refs)
    }

    /// Removes blobs no version references (older than [`GC_GRACE`]) and
    /// leftover temporary files of killed writers.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let referenced = self.referenced_blobs()?;
        let blobs = self.blobs();
        let now = SystemTime::now();
        let mut report = GcReport {
            removed: 0,
            bytes: 0,
            kept_recent: 0,
            referenced: referenced.len(),
        };
        let old = |t: SystemTime| now.duration_since(t).unwrap_or_default() >= GC_GRACE;
        for (hash, size, mtime) in blobs.list()? {
            if referenced.contains(&hash) {
                continue;
            }
            if !old(mtime) {
                report.kept_recent += 1;
                continue;
            }
            let path = blobs.path(&hash);
            std::fs::remove_file(&path).map_err(|source| StoreError::Io { path, source })?;
            report.removed += 1;
            report.bytes += size;
        }
        for tmp in blobs.temp_files() {
            let stale = std::fs::metadata(&tmp)
                .and_then(|m| m.modified())
                .map(old)
                .unwrap_or(false);
            if stale {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(report)
    }

    /// Registers an existing checkpoint file as the module's next version.
    pub fn import_file(
        &self,
        module: &str,
        file: &Path,
        parent: Option<Uuid>,
        sidecar: Option<(&Path, &[u8])>,
    ) -> Result<ModuleVersion, StoreError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| StoreError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let bytes = read(file)?;
        let config = serde_json::json!({
            "imported_from": file.display().to_string(),
            "sidecar_from": sidecar.map(|(p, _)| p.display().to_string()),
        });
        self.save_version(
            NewVersion {
                module: module.to_string(),
                parent,
                config,
                ..Default::default()
            },
            &bytes,
            sidecar.map(|(_, b)| b),
        )
    }

    /// Writes a version's checkpoint (checked against its hash) to `file`,
    /// atomically. Returns the path of the sidecar written beside it, if any.
    ///
    /// Writes only regular files outside the store: a target inside the
    /// store, a symbolic link, a device, a folder or anything else that is
    /// not a regular file is refused, and so is an existing file unless
    /// `force`. A failed export leaves no temporary file.
    pub fn export_file(
        &self,
        v: &ModuleVersion,
        file: &Path,
        force: bool,
    ) -> Result<Option<PathBuf>, StoreError> {
        let blobs = self.blobs();
        let side = v.sidecar.as_ref().map(|h| {
            let mut name = file.as_os_str().to_owned();
            name.push(".sidecar");
            (PathBuf::from(name), h)
        });
        self.export_target_ok(file, force)?;
        if let Some((p, _)) = &side {
            self.export_target_ok(p, force)?;
        }
        write_atomic(file, &blobs.get(&v.blob)?)?;
        match side {
            Some((p, h)) => {
                write_atomic(&p, &blobs.get(h)?)?;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// Why `file` may not be an export's target, if it may not (the
    /// rule of every user-named output, `crate::output`).
    fn export_target_ok(&self, file: &Path, force: bool) -> Result<(), StoreError> {
        crate::output::check(file, force, Some(self.root())).map_err(|e| {
            StoreError::Refused(format!("cannot export to {}: {}", file.display(), e.why))
        })
    }

    /// Brings another store's versions (with their blobs), runs,
    /// evaluations and cached programs into this one; identity by id, so
    /// merging twice adds nothing. Versions get this store's next numbers.
    /// Aliases stay local decisions and are not merged.
    pub fn merge(&self, other: &Store) -> Result<MergeReport, StoreError> {
        if other.root().canonicalize().ok() == self.root().canonicalize().ok() {
            return Err(StoreError::Refused(
                "cannot merge a store into itself".into(),
            ));
        }
        let mut report = MergeReport::default();
        let (versions, runs, evals, programs) = other.with_db(|db| {
            Ok((
                self_scan::<ModuleVersion>(other, db, VERSIONS)?,
                self_scan::<Run>(other, db, RUNS)?,
                self_scan::<Evaluation>(other, db, EVALS)?,
                self_scan::<CachedProgram>(other, db, PROGRAMS)?,
            ))
        })?;
        let mut versions = versions;
        versions.sort_by_key(|v| (v.created_at, v.id));
        let theirs = other.blobs();
        let ours = self.blobs();
        for v in versions {
            if self.version_by_id(v.id)?.is_some() {
                report.already_present += 1;
                continue;
            }
            ours.adopt(&theirs, &v.blob)?;
            if let Some(s) = &v.sidecar {
                ours.adopt(&theirs, s)?;
            }
            self.with_db(|db| self.insert_version(db, v.clone()))?;
            report.versions += 1;
        }
        // The blobs runs and evaluations refer to come along.
        for h in runs
            .iter()
            .filter_map(|r| r.report.as_ref())
            .chain(evals.iter().filter_map(|e| e.details.as_ref()))
        {
            ours.adopt(&theirs, h)?;
        }
        self.with_db(|db| {
            let rt = self.tree(db, RUNS)?;
            for r in &runs {
                if rt
                    .get(r.id.as_bytes())
                    .map_err(|e| self.db_err(e))?
                    .is_some()
                {
                    report.already_present += 1;
                } else {
                    rt.insert(r.id.as_bytes(), encode(r))
                        .map_err(|e| self.db_err(e))?;
                    report.runs += 1;
                }
            }
            let et = self.tree(db, EVALS)?;
            for e in &evals {
                if et
                    .get(e.id.as_bytes())
                    .map_err(|e| self.db_err(e))?
                    .is_some()
                {
                    report.already_present += 1;
                } else {
                    self.insert_evaluation(db, e)?;
                    report.evaluations += 1;
                }
            }
            let pt = self.tree(db, PROGRAMS)?;
            for p in &programs {
                let k = super::evals::program_key(&p.generator, &p.text);
                if pt.get(&k).map_err(|e| self.db_err(e))?.is_none() {
                    pt.insert(k, encode(p)).map_err(|e| self.db_err(e))?;
                    report.programs += 1;
                }
            }
            Ok(())
        })?;
        Ok(report)
    }
}

impl Store {
    /// Makes this (new, empty) store a copy of `other` for work elsewhere:
    /// everything [`Store::merge`] brings (versions with their numbers when
    /// `other`'s follow creation order, runs, evaluations, the program
    /// cache) and where every alias of `other` points now (its history
    /// stays behind). Blobs are hard links where possible.
    pub fn seed_from(&self, other: &Store) -> Result<MergeReport, StoreError> {
        let report = self.merge(other)?;
        for (id, names) in other.aliases()? {
            let Some(v) = other.version_by_id(id)? else {
                continue;
            };
            for alias in names {
                self.set_alias(
                    &v.module,
                    &alias,
                    id,
                    Some(format!("where it pointed in {}", other.root().display())),
                )?;
            }
        }
        Ok(report)
    }
}

fn self_scan<T: serde::de::DeserializeOwned>(
    store: &Store,
    db: &sled::Db,
    tree: &str,
) -> Result<Vec<T>, StoreError> {
    Ok(store
        .scan(db, tree, b"")?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::output::write_atomic(path, bytes).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    })
}
