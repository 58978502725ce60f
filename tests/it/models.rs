//! The built-in networks on tiny data: the loss falls, held-out accuracy is
//! well above chance, and a checkpoint saved to the store loads back and
//! predicts identically.

use std::collections::BTreeMap;

use visprog_distiller::data::synth::{self, Corpus, SynthConfig};
use visprog_distiller::models::{self, INPUT};
use visprog_distiller::nn::model::{Example, Model, ModelMeta, TrainConfig};
use visprog_distiller::nn::text::Tokenizer;
use visprog_distiller::nn::DeviceChoice;
use visprog_distiller::store::{NewVersion, Store};
use visprog_distiller::vocab::ModelKind;

fn majority(ex: &[(Example, String)]) -> f64 {
    let mut c: BTreeMap<i64, usize> = BTreeMap::new();
    for (e, _) in ex {
        *c.entry(e.label).or_default() += 1;
    }
    *c.values().max().unwrap() as f64 / ex.len() as f64
}

fn strip(ex: &[(Example, String)]) -> Vec<Example> {
    ex.iter().map(|(e, _)| e.clone()).collect()
}

#[test]
fn the_vqa_student_learns_the_generic_corpus_and_round_trips_through_the_store() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("generic");
    synth::write(
        SynthConfig {
            task: Corpus::Generic,
            n: 500,
            seed: 4,
            size: INPUT,
        },
        &dir,
        &|_, _| {},
    )
    .unwrap();
    let ans = models::answers();
    let train = models::generic_examples(&dir, "train", &ans).unwrap();
    let dev = models::generic_examples(&dir, "dev", &ans).unwrap();
    let test = models::generic_examples(&dir, "test", &ans).unwrap();
    let tok = Tokenizer::fit(train.iter().map(|(e, _)| e.text.as_str()), 16);
    let meta = ModelMeta {
        kind: ModelKind::VqaStudent,
        film: visprog_distiller::nn::film::FilmConfig {
            image_size: INPUT as i64,
            vocab: tok.words.len() as i64,
            word_dim: 32,
            hidden: 64,
            channels: [16, 32, 32],
            classes: ans.list.len() as i64,
            pair: false,
            glimpses: 2,
        },
        tokenizer: tok,
        answers: ans,
        script: false,
        norm: None,
    };
    let mut m = Model::new(meta, DeviceChoice::Cpu, 1).unwrap();
    let cfg = TrainConfig {
        epochs: 12,
        batch: 32,
        lr: 3e-3,
        patience: 4,
        seed: 1,
    };
    let r = m
        .train(&strip(&train), &strip(&dev), &cfg, &|_, _, _| {})
        .unwrap();
    assert!(
        r.train_loss.last().unwrap() < &(0.7 * r.train_loss[0]),
        "loss falls: {:?}",
        r.train_loss
    );
    let (acc, _) = m.evaluate(&strip(&test)).unwrap();
    let chance = majority(&test);
    eprintln!(
        "vqa student on tiny generic data: {:.1}% (majority {:.1}%, n={})",
        100.0 * acc,
        100.0 * chance,
        test.len()
    );
    assert!(acc >= chance + 0.20, "accuracy {acc} vs chance {chance}");

    // Saved as a version, loaded back, same predictions.
    let store = Store::open(d.path().join("store")).unwrap();
    let v = store
        .save_version(
            NewVersion {
                module: "vqa".into(),
                ..Default::default()
            },
            &m.to_bytes().unwrap(),
            None,
        )
        .unwrap();
    let back = Model::from_bytes(&store.blobs().get(&v.blob).unwrap(), DeviceChoice::Cpu).unwrap();
    assert_eq!(back.meta, m.meta);
    let sample = strip(&test[..50]);
    assert_eq!(back.predict(&sample).unwrap(), m.predict(&sample).unwrap());
    // The trained VQA plugs into the interpreter.
    store.set_alias("vqa", "base", v.id, None).unwrap();
    let img = dir.join("images/test/g000000.png");
    std::fs::write(
        d.path().join("p.txt"),
        "ANSWER0=VQA(image=LEFT,question='How many circles are in the image?')\nANSWER1=VQA(image=RIGHT,question='How many circles are in the image?')\nANSWER2=EVAL(expr='{ANSWER0} + {ANSWER1} == 2')\nFINAL_ANSWER=RESULT(var=ANSWER2)\n",
    )
    .unwrap();
    let (l, r) = (
        format!("LEFT={}", img.display()),
        format!("RIGHT={}", img.display()),
    );
    let out = crate::common::vpd_in(
        d.path(),
        &[
            "program",
            "run",
            "p.txt",
            "--image",
            &l,
            "--image",
            &r,
            "--modules",
            "VQA=vqa@base",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["steps"][0]["module"], "VQA (vqa@1)");
    let n: f64 = j["steps"][0]["output"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.0..=6.0).contains(&n));
    assert!(j["result"] == "yes" || j["result"] == "no");
    // An unknown word is handled.
    let odd = Example {
        text: "What zorgle is the circle?".into(),
        ..sample[0].clone()
    };
    assert_eq!(
        back.predict(&[odd]).unwrap()[0].len(),
        back.meta.answers.list.len()
    );
}

#[test]
fn a_corrupt_checkpoint_is_an_error() {
    assert!(Model::from_bytes(b"VPDCKPT1\0\0\0\0\0\0\0\x05{bad}", DeviceChoice::Cpu).is_err());
    assert!(Model::from_bytes(b"not a checkpoint at all", DeviceChoice::Cpu).is_err());
}

#[test]
fn the_loc_student_learns_boxes_and_round_trips_through_the_store() {
    use visprog_distiller::nn::detector::{
        DetExample, DetectSettings, Detection, Detector, DetectorConfig, DetectorMeta, PrCounts,
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("generic");
    synth::write(
        SynthConfig {
            task: Corpus::Generic,
            n: 600,
            seed: 5,
            size: INPUT,
        },
        &dir,
        &|_, _| {},
    )
    .unwrap();
    let train = models::generic_detections(&dir, "train").unwrap();
    let dev = models::generic_detections(&dir, "dev").unwrap();
    let test = models::generic_detections(&dir, "test").unwrap();
    assert!(
        train.iter().any(|e| e.boxes.is_empty()),
        "absent shapes are asked too"
    );
    assert!(
        train.iter().any(|e| e.name.contains(' ')),
        "colour and shape names too"
    );
    let tok = Tokenizer::fit(train.iter().map(|e| e.name.as_str()), 4);
    let meta = DetectorMeta {
        kind: ModelKind::LocStudent,
        config: DetectorConfig {
            image_size: INPUT as i64,
            vocab: tok.words.len() as i64,
            word_dim: 16,
            hidden: 32,
            channels: [16, 32, 32, 32],
        },
        tokenizer: tok,
        settings: DetectSettings::default(),
    };
    let mut det = Detector::new(meta, DeviceChoice::Cpu, 3).unwrap();
    let cfg = TrainConfig {
        epochs: 10,
        batch: 32,
        lr: 3e-3,
        patience: 4,
        seed: 3,
    };
    let r = det.train(&train, &dev, &cfg, &|_, _, _| {}).unwrap();
    assert!(
        r.train_loss.last().unwrap() < &(0.7 * r.train_loss[0]),
        "loss falls: {:?}",
        r.train_loss
    );
    let s = det.meta.settings;
    let got = det.evaluate(&test, &s);
    // The baseline: one box of the mean size at the image centre for
    // every query.
    let all: Vec<[f32; 4]> = train.iter().flat_map(|e| e.boxes.clone()).collect();
    let (mw, mh) = (
        all.iter().map(|b| b[2]).sum::<f32>() / all.len() as f32,
        all.iter().map(|b| b[3]).sum::<f32>() / all.len() as f32,
    );
    let mut base = PrCounts::default();
    for e in &test {
        let guess = Detection {
            rect: [0.5 - mw / 2.0, 0.5 - mh / 2.0, mw, mh],
            score: 1.0,
        };
        base.add(&[guess], &e.boxes, 0.5);
    }
    let f1 = |c: &PrCounts| {
        let (p, r) = (c.precision(), c.recall());
        2.0 * p * r / (p + r).max(1e-9)
    };
    eprintln!(
        "loc student on tiny generic data: P {:.1}% R {:.1}% (centre-box baseline P {:.1}% R {:.1}%), {} queries",
        got.precision(),
        got.recall(),
        base.precision(),
        base.recall(),
        test.len()
    );
    assert!(f1(&got) >= f1(&base) + 20.0, "{got:?} vs {base:?}");

    // Saved as a version, loaded back, same detections; LOC in a program.
    let store = Store::open(d.path().join("store")).unwrap();
    let v = store
        .save_version(
            NewVersion {
                module: "loc".into(),
                ..Default::default()
            },
            &det.to_bytes().unwrap(),
            None,
        )
        .unwrap();
    let back =
        Detector::from_bytes(&store.blobs().get(&v.blob).unwrap(), DeviceChoice::Cpu).unwrap();
    let sample: Vec<DetExample> = test[..40].to_vec();
    assert_eq!(back.detect(&sample, &s), det.detect(&sample, &s));
    assert!(Model::from_bytes(&det.to_bytes().unwrap(), DeviceChoice::Cpu).is_err());
    let img = dir.join("images/test/g000001.png");
    std::fs::write(
        d.path().join("p.txt"),
        "BOX0=LOC(image=IMAGE,object='circle')\nANSWER0=COUNT(box=BOX0)\nFINAL_RESULT=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    let im = format!("IMAGE={}", img.display());
    let args = [
        "program",
        "run",
        "p.txt",
        "--image",
        &im,
        "--json",
        "--modules",
    ];
    let out = crate::common::vpd_in(d.path(), &[&args[..], &["LOC=loc@1"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["steps"][0]["module"], "LOC (loc@1)");
    // A VQA version in the LOC slot is refused, naming both.
    let vq = store
        .save_version(
            NewVersion {
                module: "vqa".into(),
                ..Default::default()
            },
            &Model::new(models::student_meta(), DeviceChoice::Cpu, 0)
                .unwrap()
                .to_bytes()
                .unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(vq.number, 1);
    let out = crate::common::vpd_in(d.path(), &[&args[..], &["LOC=vqa@1"]].concat());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vqa@1 is a vqa-student, not a LOC module"),
        "{err}"
    );
}

/// The teachers' networks (their configs from `models::film`) on tiny data
/// in their input formats, built from a tiny generic corpus' boxes: whole
/// images with questions (GQA teacher) and pairs with statements about one
/// side (NLVR2 teacher). The task domains need more data than a test can
/// train on; the full-data accuracy per family is measured in the README.
#[test]
fn the_teacher_networks_learn_tiny_data_in_their_formats() {
    use std::sync::Arc;
    use visprog_distiller::data::images::{decode, to_model_input};
    use visprog_distiller::data::synth::GenericRecord;
    use visprog_distiller::data::world::{COLORS, SHAPES};
    use visprog_distiller::nn::text::Answers;

    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("generic");
    synth::write(
        SynthConfig {
            task: Corpus::Generic,
            n: 700,
            seed: 6,
            size: INPUT,
        },
        &dir,
        &|_, _| {},
    )
    .unwrap();
    // (image, shapes with colours) of a split's boxes records.
    type Scenes = Vec<(Arc<Vec<f32>>, Vec<(String, String)>)>;
    let scenes = |split: &str| -> Scenes {
        std::fs::read_to_string(dir.join(format!("{split}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<GenericRecord>(l).unwrap())
            .filter(|r| r.kind == "boxes")
            .map(|r| {
                let img = Arc::new(to_model_input(&decode(&dir.join(&r.image)).unwrap(), INPUT));
                let objs = r
                    .boxes
                    .iter()
                    .map(|b| (b.name.clone(), b.attributes[0].clone()))
                    .collect();
                (img, objs)
            })
            .collect()
    };
    let ans = models::answers();
    let yes_no = Answers {
        list: vec!["false".into(), "true".into()],
    };
    // Half true, half false: an existence question per image (GQA) and a
    // statement about one image of a pair (NLVR2).
    let make = |split: &str, pair: bool| -> Vec<Example> {
        let sc = scenes(split);
        let mut out = Vec::new();
        for (i, (img, objs)) in sc.iter().enumerate() {
            let truth = i % 2 == 0;
            let (sh, c) = if truth {
                objs[i % objs.len()].clone()
            } else {
                let sh = SHAPES[i % SHAPES.len()];
                let c = COLORS[(i / 6) % COLORS.len()];
                if objs.iter().any(|(s, k)| s == sh && k == c) {
                    continue;
                }
                (sh.to_string(), c.to_string())
            };
            out.push(if pair {
                let other = sc[(i + 1) % sc.len()].0.clone();
                let left = i % 4 < 2;
                let side = if left { "left" } else { "right" };
                Example {
                    images: if left {
                        vec![img.clone(), other]
                    } else {
                        vec![other, img.clone()]
                    },
                    text: format!("The {side} image contains a {c} {sh}."),
                    label: truth as i64,
                }
            } else {
                Example {
                    images: vec![img.clone()],
                    text: format!("Is there a {c} {sh}?"),
                    label: ans.id(if truth { "yes" } else { "no" }).unwrap(),
                }
            });
        }
        out
    };
    for (kind, pair) in [("gqa-teacher", false), ("nlvr2-teacher", true)] {
        let (train, dev, test) = (make("train", pair), make("dev", pair), make("test", pair));
        let tok = Tokenizer::fit(train.iter().map(|e| e.text.as_str()), 16);
        let answers = if pair { yes_no.clone() } else { ans.clone() };
        let meta = ModelMeta {
            kind: kind.parse::<ModelKind>().unwrap(),
            film: models::film(tok.words.len(), answers.list.len(), pair),
            tokenizer: tok,
            answers,
            script: false,
            norm: None,
        };
        let mut m = Model::new(meta, DeviceChoice::Cpu, 2).unwrap();
        let cfg = TrainConfig {
            epochs: 10,
            batch: 32,
            lr: 2e-3,
            patience: 4,
            seed: 2,
        };
        let r = m.train(&train, &dev, &cfg, &|_, _, _| {}).unwrap();
        assert!(
            r.train_loss.last().unwrap() < &(0.7 * r.train_loss[0]),
            "{kind}: loss falls: {:?}",
            r.train_loss
        );
        let (acc, _) = m.evaluate(&test).unwrap();
        let ones = test.iter().filter(|e| e.label == test[0].label).count() as f64;
        let chance = (ones / test.len() as f64).max(1.0 - ones / test.len() as f64);
        eprintln!(
            "{kind} on tiny data: {:.1}% (majority {:.1}%, n={})",
            100.0 * acc,
            100.0 * chance,
            test.len()
        );
        assert!(
            acc >= chance + 0.20,
            "{kind}: accuracy {acc} vs chance {chance}"
        );
        let back = Model::from_bytes(&m.to_bytes().unwrap(), DeviceChoice::Cpu).unwrap();
        assert_eq!(
            back.predict(&test[..20]).unwrap(),
            m.predict(&test[..20]).unwrap()
        );
    }
}

#[test]
fn init_from_copies_matching_weights_and_embeddings_by_word() {
    let meta = |words: &str, classes: usize, pair: bool| {
        let tok = Tokenizer::fit([words], 16);
        ModelMeta {
            kind: ModelKind::Nlvr2Teacher,
            film: models::film(tok.words.len(), classes, pair),
            tokenizer: tok,
            answers: visprog_distiller::nn::text::Answers {
                list: (0..classes).map(|i| i.to_string()).collect(),
            },
            script: false,
            norm: None,
        }
    };
    let src = Model::new(
        meta("red circle left image", 32, false),
        DeviceChoice::Cpu,
        1,
    )
    .unwrap();
    let mut dst = Model::new(
        meta("a blue circle in the left image", 2, true),
        DeviceChoice::Cpu,
        2,
    )
    .unwrap();
    let copied = dst.init_from(&src);
    let (s, d) = (src.vs.variables(), dst.vs.variables());
    assert!(d["c3.weight"].equal(&s["c3.weight"]));
    assert!(d["gru.weight_hh_l0"].equal(&s["gru.weight_hh_l0"]));
    assert!(
        !d["head2.weight"].equal(&d["head2.weight"].zeros_like()),
        "head kept its own init"
    );
    assert_ne!(
        d["head1.weight"].size(),
        s["head1.weight"].size(),
        "a pair head is wider"
    );
    let row = |m: &Model, w: &str| {
        let i = m.meta.tokenizer.words.iter().position(|x| x == w).unwrap() as i64;
        m.vs.variables()["embed.weight"].get(i)
    };
    assert!(row(&dst, "circle").equal(&row(&src, "circle")));
    assert!(!row(&dst, "blue").equal(&row(&src, "red")));
    assert!(copied >= 10, "{copied}");
}
