//! Issue 37: random field values and sizes in a user's sidecar and in the
//! dataset records (GQA questions, NLVR2 lines). No panic and no abort;
//! every failure is an error that names the field (or, for a record, its
//! place in the file).

use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};
use visprog_distiller::data::{gqa, nlvr2};
use visprog_distiller::models::parse_sidecar;

/// A JSON value of any type, small.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::num::f64::NORMAL.prop_map(|x| json!(x)),
        "[ -~]{0,12}".prop_map(Value::String),
        prop::collection::vec("[a-z]{0,6}", 0..4).prop_map(|v| json!(v)),
    ]
}

/// Edge sizes and random ones.
fn size() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(-1),
            json!(0),
            json!(1),
            json!(7),
            json!(8),
            json!(64),
            json!(2048),
            json!(2049),
            json!(100000),
            json!(1u64 << 31),
            json!(1u64 << 32),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(1e8),
        ]),
        any::<i64>().prop_map(|n| json!(n)),
        any_value(),
    ]
}

/// Channel statistics: three numbers (tiny, huge, negative) or not.
fn triple() -> impl Strategy<Value = Value> {
    let x = prop_oneof![
        prop::sample::select(vec![0.0, 1e-40, 1e-4, 0.25, -1.0, 1e3, 1e38, f64::MAX]),
        prop::num::f64::NORMAL,
    ];
    prop_oneof![
        prop::collection::vec(x, 0..5).prop_map(|v| json!(v)),
        any_value(),
    ]
}

fn sidecar() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            prop::sample::select(vec![
                "vqa-student",
                "gqa-teacher",
                "nlvr2-teacher",
                "loc-student"
            ])
            .prop_map(|k| json!(k)),
            any_value(),
        ],
        size(),
        size(),
        prop_oneof![
            prop::collection::vec("[a-z]{1,5}", 0..6).prop_map(|v| json!(v)),
            any_value()
        ],
        prop_oneof![
            prop::sample::select(vec!["tokenizer.json", "/dev/zero", "", "../nowhere"])
                .prop_map(|t| json!(t)),
            any_value()
        ],
        prop_oneof![
            prop::collection::vec("[a-z0-9]{1,5}", 0..6).prop_map(|v| json!(v)),
            any_value()
        ],
        (triple(), triple(), any_value(), any_value()),
        prop::collection::vec(any::<bool>(), 10),
    )
        .prop_map(
            |(
                kind,
                image_size,
                max_len,
                vocab,
                tok,
                answers,
                (mean, std, threshold, pair),
                keep,
            )| {
                let mut m = serde_json::Map::new();
                let fields = [
                    ("kind", kind),
                    ("image_size", image_size),
                    ("max_len", max_len),
                    ("vocabulary", vocab),
                    ("tokenizer", tok),
                    ("answers", answers),
                    ("mean", mean),
                    ("std", std),
                    ("threshold", threshold),
                    ("pair", pair),
                ];
                for ((k, v), keep) in fields.into_iter().zip(keep) {
                    if keep {
                        m.insert(k.to_string(), v);
                    }
                }
                Value::Object(m)
            },
        )
}

/// Whether a sidecar error names a field: ``sidecar `field` ...`` or a
/// message about the sidecar's fields as a whole.
fn names_a_field(e: &str) -> bool {
    e.contains("sidecar `") || e.contains("sidecar: `") || e.contains("sidecar: missing field `")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_random_sidecar_is_an_error_naming_its_field_never_a_panic(s in sidecar()) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 3}").unwrap();
        let bytes = serde_json::to_vec(&s).unwrap();
        let mut side = match parse_sidecar(&bytes) {
            Ok(side) => side,
            Err(e) => {
                let e = e.to_string();
                prop_assert!(names_a_field(&e), "{s}: {e}");
                return Ok(());
            }
        };
        let checks = [
            side.embed_tokenizer(dir.path()).err(),
            side.check_sizes().err(),
            side.norm().err(),
            side.text_tokenizer().err(),
        ];
        for e in checks.into_iter().flatten() {
            let e = e.to_string();
            prop_assert!(names_a_field(&e), "{s}: {e}");
        }
    }

    #[test]
    fn random_gqa_questions_are_issues_naming_question_and_field(
        qs in prop::collection::vec(
            (
                prop_oneof!["[0-9]{1,4}", "[ -~]{0,8}"],
                prop::collection::vec(("[a-zA-Z]{1,9}", any_value()), 0..6),
                prop::option::of(prop_oneof!["[0-9]{1,3}", Just("../../x".to_string()), Just("/etc/x".to_string()), Just(String::new())]),
            ),
            0..8,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("q.json");
        // Written by hand: repeated keys stay repeated.
        let mut text = String::from("{");
        for (i, (id, fields, image)) in qs.iter().enumerate() {
            let mut m: serde_json::Map<String, Value> = fields.iter().cloned().collect();
            if let Some(img) = image {
                m.insert("imageId".into(), json!(img));
                m.insert("question".into(), json!("is it red?"));
            }
            if i > 0 {
                text.push(',');
            }
            text.push_str(&format!("{}: {}", json!(id), Value::Object(m)));
        }
        text.push('}');
        std::fs::write(&file, &text).unwrap();
        let (got, issues) = gqa::load_questions(&file).unwrap();
        prop_assert_eq!(got.len() + issues.len(), qs.len(), "{}", text);
        for i in &issues {
            prop_assert!(i.at.starts_with("question "), "{i}");
            prop_assert!(
                i.message.contains('`') || i.message.contains("appears again") || i.message.contains("imageId"),
                "{i}"
            );
        }
        for q in &got {
            prop_assert!(visprog_distiller::data::is_name(&q.image_id), "{}", q.image_id);
        }
    }

    #[test]
    fn random_nlvr2_lines_are_issues_naming_line_and_field(
        lines in prop::collection::vec(
            prop_oneof![
                prop::collection::vec(("[a-z_]{1,10}", any_value()), 0..5).prop_map(|f| {
                    Value::Object(f.into_iter().collect()).to_string().into_bytes()
                }),
                (prop_oneof!["dev-[0-9]-[0-9]-[0-9]", "[ -~]{0,12}"], any_value(), any_value()).prop_map(|(id, s, l)| {
                    json!({"identifier": id, "sentence": s, "label": l}).to_string().into_bytes()
                }),
                prop::collection::vec(any::<u8>(), 0..40).prop_map(|mut b| {
                    b.retain(|c| *c != b'\n');
                    b
                }),
            ],
            0..10,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dev.json");
        std::fs::write(&file, lines.join(&b'\n')).unwrap();
        let (got, issues) = nlvr2::load(Path::new(&file)).unwrap();
        prop_assert!(got.len() + issues.len() <= lines.len());
        for i in &issues {
            prop_assert!(i.at.starts_with("line "), "{i}");
        }
        for e in &got {
            prop_assert!(e.pair_prefix().is_some_and(visprog_distiller::data::is_name));
        }
    }
}
