//! Module versions, their lineage, and aliases with their history.

use std::collections::{BTreeMap, HashMap};

use chrono::Utc;
use serde::Serialize;
use sled::Transactional;
use uuid::Uuid;

use super::records::{AliasEvent, AliasEventKind, ModuleVersion, NewVersion};
use super::{
    check_name, encode, key, who, Store, StoreError, ALIASES, COUNTERS, HISTORY, NUMBERS, VERSIONS,
};

/// `MODULE@REF`: a module and a version number or alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    /// The module.
    pub module: String,
    /// A number, or an alias.
    pub reference: String,
}

impl VersionRef {
    /// `module@reference`.
    pub fn new(module: impl Into<String>, reference: impl Into<String>) -> VersionRef {
        VersionRef {
            module: module.into(),
            reference: reference.into(),
        }
    }
}

impl std::str::FromStr for VersionRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('@') {
            Some((m, r)) if !m.is_empty() && !r.is_empty() => Ok(VersionRef {
                module: m.to_string(),
                reference: r.to_string(),
            }),
            _ => Err(format!(
                "`{s}` is not MODULE@REF (REF: a version number or an alias)"
            )),
        }
    }
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.module, self.reference)
    }
}

/// A version with the tree of versions descending from it.
#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    /// The version.
    pub version: ModuleVersion,
    /// Its children, oldest first.
    pub children: Vec<LineageNode>,
}

/// Ancestors and descendants of one version.
#[derive(Debug, Clone, Serialize)]
pub struct Lineage {
    /// Parent first, then its parent, ...
    pub ancestors: Vec<ModuleVersion>,
    /// The version itself and its descendants.
    pub tree: LineageNode,
}

impl Store {
    /// Commits a checkpoint as the module's next version. The blob is
    /// written and synced first; the records appear in one transaction, so
    /// no version is ever visible without its blob.
    pub fn save_version(
        &self,
        new: NewVersion,
        checkpoint: &[u8],
        sidecar: Option<&[u8]>,
    ) -> Result<ModuleVersion, StoreError> {
        check_name("module", &new.module)?;
        let blobs = self.blobs();
        let blob = blobs.put(checkpoint)?;
        let sidecar = sidecar.map(|s| blobs.put(s)).transpose()?;
        let record = ModuleVersion {
            id: Uuid::now_v7(),
            module: new.module.clone(),
            number: 0,
            parent: new.parent,
            blob,
            size: checkpoint.len() as u64,
            sidecar,
            teacher: new.teacher,
            data: new.data,
            config: new.config,
            metrics: new.metrics,
            run: new.run,
            created_at: Utc::now(),
        };
        self.with_db(|db| self.insert_version(db, record))
    }

    /// Inserts a version record (its blobs already stored), assigning the
    /// next number. Parent and teacher must exist.
    pub(crate) fn insert_version(
        &self,
        db: &sled::Db,
        record: ModuleVersion,
    ) -> Result<ModuleVersion, StoreError> {
        let versions = self.tree(db, VERSIONS)?;
        for (what, id) in [("parent", record.parent), ("teacher", record.teacher)] {
            if let Some(id) = id {
                if versions
                    .get(id.as_bytes())
                    .map_err(|e| self.db_err(e))?
                    .is_none()
                {
                    return Err(StoreError::Refused(format!(
                        "{what} version {id} is not in this store"
                    )));
                }
            }
        }
        let numbers = self.tree(db, NUMBERS)?;
        let counters = self.tree(db, COUNTERS)?;
        let r = (&versions, &numbers, &counters).transaction(|(v, n, c)| {
            let last = c
                .get(record.module.as_bytes())?
                .map(|b| u32::from_be_bytes(b.as_ref().try_into().unwrap_or([0; 4])))
                .unwrap_or(0);
            let number = last + 1;
            let mut record = record.clone();
            record.number = number;
            c.insert(record.module.as_bytes(), &number.to_be_bytes())?;
            n.insert(
                key(&[record.module.as_bytes(), &number.to_be_bytes()]),
                record.id.as_bytes(),
            )?;
            v.insert(record.id.as_bytes(), encode(&record))?;
            Ok(record)
        });
        self.tx(r)
    }

    /// Every version, of one module or of all, oldest first.
    pub fn versions(&self, module: Option<&str>) -> Result<Vec<ModuleVersion>, StoreError> {
        self.with_db(|db| self.versions_in(db, module))
    }

    pub(crate) fn versions_in(
        &self,
        db: &sled::Db,
        module: Option<&str>,
    ) -> Result<Vec<ModuleVersion>, StoreError> {
        let mut all: Vec<ModuleVersion> = self
            .scan(db, VERSIONS, b"")?
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v: &ModuleVersion| module.is_none_or(|m| v.module == m))
            .collect();
        all.sort_by(|a, b| (&a.module, a.number).cmp(&(&b.module, b.number)));
        if let Some(m) = module {
            if all.is_empty() {
                return Err(StoreError::UnknownModule {
                    module: m.to_string(),
                    known: self.known_modules(db)?,
                });
            }
        }
        Ok(all)
    }

    fn known_modules(&self, db: &sled::Db) -> Result<String, StoreError> {
        let counters = self.tree(db, COUNTERS)?;
        let mut names = Vec::new();
        for kv in counters.iter() {
            let (k, _) = kv.map_err(|e| self.db_err(e))?;
            names.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(if names.is_empty() {
            "none: the store has no versions".into()
        } else {
            names.join(", ")
        })
    }

    /// A version by id.
    pub fn version_by_id(&self, id: Uuid) -> Result<Option<ModuleVersion>, StoreError> {
        self.with_db(|db| self.version_by_id_in(db, id))
    }

    pub(crate) fn version_by_id_in(
        &self,
        db: &sled::Db,
        id: Uuid,
    ) -> Result<Option<ModuleVersion>, StoreError> {
        let t = self.tree(db, VERSIONS)?;
        match t.get(id.as_bytes()).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => self.decode(VERSIONS, id.as_bytes(), &v).map(Some),
        }
    }

    /// Resolves `MODULE@NUMBER` or `MODULE@ALIAS`.
    pub fn resolve(&self, r: &VersionRef) -> Result<ModuleVersion, StoreError> {
        self.with_db(|db| self.resolve_in(db, r))
    }

    pub(crate) fn resolve_in(
        &self,
        db: &sled::Db,
        r: &VersionRef,
    ) -> Result<ModuleVersion, StoreError> {
        let counters = self.tree(db, COUNTERS)?;
        let Some(last) = counters
            .get(r.module.as_bytes())
            .map_err(|e| self.db_err(e))?
        else {
            return Err(StoreError::UnknownModule {
                module: r.module.clone(),
                known: self.known_modules(db)?,
            });
        };
        let id = if let Ok(n) = r.reference.parse::<u32>() {
            self.tree(db, NUMBERS)?
                .get(key(&[r.module.as_bytes(), &n.to_be_bytes()]))
                .map_err(|e| self.db_err(e))?
        } else {
            self.tree(db, ALIASES)?
                .get(key(&[r.module.as_bytes(), r.reference.as_bytes()]))
                .map_err(|e| self.db_err(e))?
        };
        let found = match id {
            Some(id) => {
                let id = Uuid::from_slice(&id).map_err(|e| StoreError::CorruptRecord {
                    path: self.root().to_path_buf(),
                    tree: ALIASES.into(),
                    detail: format!("{r}: {e}"),
                })?;
                self.version_by_id_in(db, id)?
            }
            None => None,
        };
        found.ok_or_else(|| {
            let last = u32::from_be_bytes(last.as_ref().try_into().unwrap_or([0; 4]));
            let aliases = self
                .aliases_of_module(db, &r.module)
                .map(|m| m.into_keys().collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            StoreError::UnknownVersion {
                module: r.module.clone(),
                reference: r.reference.clone(),
                known: format!(
                    "versions 1..{last}; aliases: {}",
                    if aliases.is_empty() { "none" } else { &aliases }
                ),
            }
        })
    }

    /// Alias name -> version id for one module.
    pub(crate) fn aliases_of_module(
        &self,
        db: &sled::Db,
        module: &str,
    ) -> Result<BTreeMap<String, Uuid>, StoreError> {
        let t = self.tree(db, ALIASES)?;
        let prefix = key(&[module.as_bytes(), b""]);
        let mut out = BTreeMap::new();
        for kv in t.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.db_err(e))?;
            let alias = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let id = Uuid::from_slice(&v).map_err(|e| StoreError::CorruptRecord {
                path: self.root().to_path_buf(),
                tree: ALIASES.into(),
                detail: format!("{module}/{alias}: {e}"),
            })?;
            out.insert(alias, id);
        }
        Ok(out)
    }

    /// Version id -> aliases pointing at it, over all modules.
    pub fn aliases(&self) -> Result<HashMap<Uuid, Vec<String>>, StoreError> {
        self.with_db(|db| {
            let t = self.tree(db, ALIASES)?;
            let mut out: HashMap<Uuid, Vec<String>> = HashMap::new();
            for kv in t.iter() {
                let (k, v) = kv.map_err(|e| self.db_err(e))?;
                let alias = k.split(|b| *b == 0).nth(1).unwrap_or_default();
                let id = Uuid::from_slice(&v).map_err(|e| StoreError::CorruptRecord {
                    path: self.root().to_path_buf(),
                    tree: ALIASES.into(),
                    detail: format!("{}: {e}", super::show_key(&k)),
                })?;
                out.entry(id)
                    .or_default()
                    .push(String::from_utf8_lossy(alias).into_owned());
            }
            Ok(out)
        })
    }

    /// Ancestors and descendants of a version.
    pub fn lineage(&self, r: &VersionRef) -> Result<Lineage, StoreError> {
        self.with_db(|db| {
            let me = self.resolve_in(db, r)?;
            let all = self.versions_in(db, None)?;
            let by_id: HashMap<Uuid, &ModuleVersion> = all.iter().map(|v| (v.id, v)).collect();
            let mut ancestors = Vec::new();
            let mut cur = me.parent;
            while let Some(id) = cur {
                let Some(v) = by_id.get(&id) else { break };
                if ancestors.len() > all.len() {
                    break; // a cycle cannot be made through the API; stay safe anyway
                }
                ancestors.push((*v).clone());
                cur = v.parent;
            }
            let mut children: HashMap<Uuid, Vec<&ModuleVersion>> = HashMap::new();
            for v in &all {
                if let Some(p) = v.parent {
                    children.entry(p).or_default().push(v);
                }
            }
            for c in children.values_mut() {
                c.sort_by_key(|v| v.id);
            }
            // Iterative build, so that 10,000-deep chains do not overflow the stack.
            fn build(
                root: &ModuleVersion,
                children: &HashMap<Uuid, Vec<&ModuleVersion>>,
            ) -> LineageNode {
                let mut order = vec![root.clone()];
                let mut i = 0;
                while i < order.len() {
                    let id = order[i].id;
                    if let Some(cs) = children.get(&id) {
                        order.extend(cs.iter().map(|c| (*c).clone()));
                    }
                    i += 1;
                }
                let mut nodes: HashMap<Uuid, LineageNode> = HashMap::new();
                for v in order.into_iter().rev() {
                    let kids = children
                        .get(&v.id)
                        .map(|cs| cs.iter().filter_map(|c| nodes.remove(&c.id)).collect())
                        .unwrap_or_default();
                    nodes.insert(
                        v.id,
                        LineageNode {
                            version: v,
                            children: kids,
                        },
                    );
                }
                nodes.remove(&root.id).expect("root node built")
            }
            let tree = build(&me, &children);
            Ok(Lineage { ancestors, tree })
        })
    }

    /// Points `module`'s `alias` at a version of that module, recording the
    /// move in the history.
    pub fn set_alias(
        &self,
        module: &str,
        alias: &str,
        version: Uuid,
        reason: Option<String>,
    ) -> Result<AliasEvent, StoreError> {
        check_name("alias", alias)?;
        self.with_db(|db| {
            let v = self.version_by_id_in(db, version)?.ok_or_else(|| {
                StoreError::Refused(format!("version {version} is not in this store"))
            })?;
            if v.module != module {
                return Err(StoreError::Refused(format!(
                    "version {version} belongs to {}, not {module}",
                    v.module
                )));
            }
            let from = self.aliases_of_module(db, module)?.get(alias).copied();
            self.move_alias(
                db,
                module,
                alias,
                from,
                Some(version),
                AliasEventKind::Set,
                None,
                reason,
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn move_alias(
        &self,
        db: &sled::Db,
        module: &str,
        alias: &str,
        from: Option<Uuid>,
        to: Option<Uuid>,
        kind: AliasEventKind,
        undoes: Option<Uuid>,
        reason: Option<String>,
    ) -> Result<AliasEvent, StoreError> {
        let event = AliasEvent {
            id: Uuid::now_v7(),
            module: module.to_string(),
            alias: alias.to_string(),
            kind,
            from,
            to,
            undoes,
            at: Utc::now(),
            who: who(),
            reason,
        };
        let aliases = self.tree(db, ALIASES)?;
        let history = self.tree(db, HISTORY)?;
        let alias_key = key(&[module.as_bytes(), alias.as_bytes()]);
        let hist_key = key(&[module.as_bytes(), alias.as_bytes(), event.id.as_bytes()]);
        let r = (&aliases, &history).transaction(|(a, h)| {
            match to {
                Some(to) => a.insert(alias_key.as_slice(), to.as_bytes())?,
                None => a.remove(alias_key.as_slice())?,
            };
            h.insert(hist_key.as_slice(), encode(&event))?;
            Ok(())
        });
        self.tx(r)?;
        Ok(event)
    }

    /// The history of one module's aliases (or one alias), oldest first.
    pub fn alias_history(
        &self,
        module: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasEvent>, StoreError> {
        self.with_db(|db| self.alias_history_in(db, module, alias))
    }

    fn alias_history_in(
        &self,
        db: &sled::Db,
        module: &str,
        alias: Option<&str>,
    ) -> Result<Vec<AliasEvent>, StoreError> {
        let prefix = match alias {
            Some(a) => key(&[module.as_bytes(), a.as_bytes(), b""]),
            None => key(&[module.as_bytes(), b""]),
        };
        let mut events: Vec<AliasEvent> = self
            .scan(db, HISTORY, &prefix)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        events.sort_by_key(|e: &AliasEvent| e.id);
        Ok(events)
    }

    /// Where `vpd rollback MODULE --alias ALIAS` (without `--to`) would move
    /// the alias: the version before its latest set not yet undone (`None`:
    /// the alias would be removed).
    pub fn rollback_target(&self, module: &str, alias: &str) -> Result<Option<Uuid>, StoreError> {
        self.with_db(|db| {
            let history = self.alias_history_in(db, module, Some(alias))?;
            if history.is_empty() {
                return Err(StoreError::Refused(format!(
                    "{module} has no alias `{alias}` and never had one"
                )));
            }
            Ok(latest_set(&history, module, alias)?.from)
        })
    }

    /// Reads a version's checkpoint (and sidecar) and checks their hashes:
    /// an error names the missing or corrupt blob.
    pub fn check_blobs(&self, v: &ModuleVersion) -> Result<(), StoreError> {
        let blobs = self.blobs();
        blobs.get(&v.blob)?;
        if let Some(h) = &v.sidecar {
            blobs.get(h)?;
        }
        Ok(())
    }

    /// Moves an alias back. Without `to`: undoes the latest `set` not yet
    /// undone (repeated calls walk back one move at a time; undoing the set
    /// that created the alias removes it). With `to`: points it at that
    /// version of the module.
    pub fn rollback(
        &self,
        module: &str,
        alias: &str,
        to: Option<Uuid>,
        reason: Option<String>,
    ) -> Result<AliasEvent, StoreError> {
        self.with_db(|db| {
            let current = self.aliases_of_module(db, module)?.get(alias).copied();
            let history = self.alias_history_in(db, module, Some(alias))?;
            if history.is_empty() {
                return Err(StoreError::Refused(format!(
                    "{module} has no alias `{alias}` and never had one"
                )));
            }
            if let Some(to) = to {
                let v = self
                    .version_by_id_in(db, to)?
                    .filter(|v| v.module == module);
                if v.is_none() {
                    return Err(StoreError::Refused(format!(
                        "version {to} is not a version of {module}"
                    )));
                }
                return self.move_alias(
                    db,
                    module,
                    alias,
                    current,
                    Some(to),
                    AliasEventKind::Rollback,
                    None,
                    reason,
                );
            }
            let set = latest_set(&history, module, alias)?;
            self.move_alias(
                db,
                module,
                alias,
                current,
                set.from,
                AliasEventKind::Rollback,
                Some(set.id),
                reason,
            )
        })
    }
}

/// The latest `set` of an alias's history that no rollback undid yet.
fn latest_set<'a>(
    history: &'a [AliasEvent],
    module: &str,
    alias: &str,
) -> Result<&'a AliasEvent, StoreError> {
    let undone: std::collections::HashSet<Uuid> = history.iter().filter_map(|e| e.undoes).collect();
    history
        .iter()
        .rev()
        .find(|e| e.kind == AliasEventKind::Set && !undone.contains(&e.id))
        .ok_or_else(|| {
            StoreError::Refused(format!(
                "nothing to roll back: every move of {module}@{alias} is already undone"
            ))
        })
}
