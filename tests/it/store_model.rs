//! Model-based property test: random operation sequences against the store
//! and an in-memory model, compared after every operation.

use std::collections::BTreeMap;

use proptest::prelude::*;
use uuid::Uuid;
use visprog_distiller::store::{AliasEventKind, NewVersion, Store, VersionRef};

const MODULES: [&str; 2] = ["vqa", "loc"];
const ALIASES: [&str; 2] = ["base", "prod"];

#[derive(Debug, Clone)]
enum Op {
    /// Save a version of module `m` with content `c`, child of its `p`-th
    /// version (when it has one).
    Save { m: usize, c: u8, p: Option<usize> },
    /// Point alias `a` of module `m` at its `v`-th version.
    Set { m: usize, a: usize, v: usize },
    /// Undo the latest set not yet undone.
    Rollback { m: usize, a: usize },
    /// Roll back to the `v`-th version.
    RollbackTo { m: usize, a: usize, v: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..2usize, 0..4u8, proptest::option::of(0..6usize)).prop_map(|(m, c, p)| Op::Save { m, c, p }),
        3 => (0..2usize, 0..2usize, 0..6usize).prop_map(|(m, a, v)| Op::Set { m, a, v }),
        2 => (0..2usize, 0..2usize).prop_map(|(m, a)| Op::Rollback { m, a }),
        1 => (0..2usize, 0..2usize, 0..6usize).prop_map(|(m, a, v)| Op::RollbackTo { m, a, v }),
    ]
}

/// (kind, from, to, undone) of one history entry, versions by index.
type Entry = (AliasEventKind, Option<usize>, Option<usize>, bool);

#[derive(Debug, Default)]
struct Model {
    /// module -> versions in order: (id, parent index, content)
    versions: BTreeMap<String, Vec<(Uuid, Option<usize>, u8)>>,
    /// (module, alias) -> version index
    aliases: BTreeMap<(String, String), usize>,
    /// (module, alias) -> history: (kind, from, to, undone?) for sets
    history: BTreeMap<(String, String), Vec<Entry>>,
}

fn content(c: u8) -> Vec<u8> {
    format!("checkpoint bytes #{c}").into_bytes()
}

fn check(store: &Store, model: &Model) {
    let all = store.versions(None).unwrap();
    let mut seen: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for v in &all {
        seen.entry(v.module.clone()).or_default().push(v.clone());
    }
    assert_eq!(seen.len(), model.versions.len());
    for (m, vs) in &model.versions {
        let got = &seen[m];
        assert_eq!(got.len(), vs.len(), "{m}");
        for (i, (id, parent, c)) in vs.iter().enumerate() {
            assert_eq!(got[i].id, *id);
            assert_eq!(got[i].number as usize, i + 1);
            assert_eq!(got[i].parent, parent.map(|p| vs[p].0));
            assert_eq!(store.blobs().get(&got[i].blob).unwrap(), content(*c));
        }
    }
    let aliases = store.aliases().unwrap();
    let n_aliases: usize = aliases.values().map(Vec::len).sum();
    assert_eq!(n_aliases, model.aliases.len());
    for ((m, a), i) in &model.aliases {
        let id = model.versions[m][*i].0;
        assert!(aliases[&id].contains(a), "{m}@{a}");
        let r = store
            .resolve(&VersionRef {
                module: m.clone(),
                reference: a.clone(),
            })
            .unwrap();
        assert_eq!(r.id, id);
    }
    for ((m, a), h) in &model.history {
        let got = store.alias_history(m, Some(a)).unwrap();
        assert_eq!(got.len(), h.len());
        for (e, (kind, from, to, _)) in got.iter().zip(h) {
            assert_eq!(e.kind, *kind);
            let idx = |x: Option<usize>| x.map(|i| model.versions[m][i].0);
            assert_eq!(e.from, idx(*from));
            assert_eq!(e.to, idx(*to));
        }
    }
}

fn apply(store: &Store, model: &mut Model, op: &Op) {
    match *op {
        Op::Save { m, c, p } => {
            let module = MODULES[m].to_string();
            let vs = model.versions.entry(module.clone()).or_default();
            let parent = p.filter(|p| *p < vs.len());
            let v = store
                .save_version(
                    NewVersion {
                        module,
                        parent: parent.map(|p| vs[p].0),
                        ..Default::default()
                    },
                    &content(c),
                    None,
                )
                .unwrap();
            vs.push((v.id, parent, c));
        }
        Op::Set { m, a, v } => {
            let (module, alias) = (MODULES[m].to_string(), ALIASES[a].to_string());
            let Some(vs) = model.versions.get(&module).filter(|vs| v < vs.len()) else {
                return;
            };
            store.set_alias(&module, &alias, vs[v].0, None).unwrap();
            let key = (module, alias);
            let from = model.aliases.insert(key.clone(), v);
            model
                .history
                .entry(key)
                .or_default()
                .push((AliasEventKind::Set, from, Some(v), false));
        }
        Op::Rollback { m, a } => {
            let key = (MODULES[m].to_string(), ALIASES[a].to_string());
            let got = store.rollback(&key.0, &key.1, None, None);
            let Some(h) = model.history.get_mut(&key) else {
                assert!(got.is_err(), "no history: refused");
                return;
            };
            let Some(i) = h
                .iter()
                .rposition(|(k, _, _, undone)| *k == AliasEventKind::Set && !undone)
            else {
                assert!(got.is_err(), "all undone: refused");
                return;
            };
            got.unwrap();
            h[i].3 = true;
            let target = h[i].1;
            let from = match target {
                Some(t) => model.aliases.insert(key.clone(), t),
                None => model.aliases.remove(&key),
            };
            h.push((AliasEventKind::Rollback, from, target, false));
        }
        Op::RollbackTo { m, a, v } => {
            let key = (MODULES[m].to_string(), ALIASES[a].to_string());
            let valid = model.history.contains_key(&key)
                && model.versions.get(&key.0).is_some_and(|vs| v < vs.len());
            if !valid {
                return;
            }
            let id = model.versions[&key.0][v].0;
            store.rollback(&key.0, &key.1, Some(id), None).unwrap();
            let from = model.aliases.insert(key.clone(), v);
            model.history.get_mut(&key).unwrap().push((
                AliasEventKind::Rollback,
                from,
                Some(v),
                false,
            ));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 200, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_an_in_memory_model(ops in proptest::collection::vec(op(), 1..24)) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("store")).unwrap();
        let mut model = Model::default();
        for op in &ops {
            apply(&store, &mut model, op);
            check(&store, &model);
        }
        prop_assert!(store.verify().unwrap().is_empty());
    }
}
