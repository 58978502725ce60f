//! libtorch through tch: training, checkpoint bytes, TorchScript.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use visprog_distiller::nn::{
    live_check, varstore_from_bytes, varstore_to_bytes, DeviceChoice, TinyMlp,
};

use crate::common::{scripted, torch_python};

#[test]
fn a_tiny_net_learns_xor_quadrants() {
    let c = live_check(DeviceChoice::Cpu, 60, 7).unwrap();
    assert!(c.loss_fell, "{:?}", c.losses);
    assert!(c.accuracy > 0.9, "accuracy {}", c.accuracy);
}

#[test]
fn varstore_bytes_round_trip_gives_identical_tensors() {
    tch::manual_seed(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = TinyMlp::new(&vs.root(), 3, 8, 4);
    let bytes = varstore_to_bytes(&vs).unwrap();
    assert!(!bytes.is_empty());

    tch::manual_seed(2);
    let mut vs2 = nn::VarStore::new(Device::Cpu);
    let net2 = TinyMlp::new(&vs2.root(), 3, 8, 4);
    let x = Tensor::rand([5, 3], (Kind::Float, Device::Cpu));
    assert!(
        !net.forward(&x).equal(&net2.forward(&x)),
        "different seeds differ first"
    );
    varstore_from_bytes(&mut vs2, &bytes).unwrap();
    let a = vs.variables();
    let b = vs2.variables();
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "variable {name} differs");
    }
    assert!(net.forward(&x).equal(&net2.forward(&x)));
}

#[test]
fn corrupt_varstore_bytes_are_an_error_not_a_crash() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = TinyMlp::new(&vs.root(), 3, 8, 4);
    assert!(varstore_from_bytes(&mut vs, b"definitely not a torch archive").is_err());
}

#[test]
fn torchscript_from_the_venv_loads_runs_and_trains() {
    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlp.pt");
    let script = r#"
import sys, torch
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(4, 8)
        self.l2 = torch.nn.Linear(8, 3)
    def forward(self, x):
        return self.l2(torch.relu(self.l1(x)))
torch.manual_seed(0)
torch.jit.script(M()).save(sys.argv[1])
"#;
    // torch.jit.script reads the class's source, so it must be a real file.
    crate::common::run_python_script(
        &python,
        dir.path(),
        "make_mlp.py",
        script,
        &[path.as_os_str()],
    );

    // Inference through CModule.
    let m = tch::CModule::load(&path).unwrap();
    let x = Tensor::rand([6, 4], (Kind::Float, Device::Cpu));
    let y = m.forward_ts(&[&x]).unwrap();
    assert_eq!(y.size(), vec![6, 3]);

    // Training through TrainableCModule: its parameters join a VarStore.
    let vs = nn::VarStore::new(Device::Cpu);
    let mut tm = tch::TrainableCModule::load(&path, vs.root()).unwrap();
    tm.set_train();
    assert_eq!(vs.trainable_variables().len(), 4, "two weights, two biases");
    let before: Vec<Tensor> = vs.trainable_variables().iter().map(|t| t.copy()).collect();
    let target = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]);
    let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let loss0 = tm
        .forward_ts(&[&x])
        .unwrap()
        .cross_entropy_for_logits(&target);
    opt.backward_step(&loss0);
    let loss1 = tm
        .forward_ts(&[&x])
        .unwrap()
        .cross_entropy_for_logits(&target);
    let changed = vs
        .trainable_variables()
        .iter()
        .zip(&before)
        .any(|(a, b)| !a.equal(b));
    assert!(changed, "one step changed the parameters");
    assert!(
        loss1.double_value(&[]) < loss0.double_value(&[]),
        "loss {} -> {}",
        loss0.double_value(&[]),
        loss1.double_value(&[])
    );
}

/// A small VQA network in PyTorch, scripted: mean colour of the image and
/// a bag of words -> logits over `answers`.
const USER_VQA: &str = r#"
import json, sys, torch
class UserVqa(torch.nn.Module):
    def __init__(self, vocab: int, answers: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 8)
        self.img = torch.nn.Linear(3, 8)
        self.out = torch.nn.Linear(16, answers)
    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        colour = images.mean(dim=(2, 3))
        words = self.embed(tokens).mean(dim=1)
        return self.out(torch.cat([torch.relu(self.img(colour)), words], 1))
vocabulary = sorted(["what", "color", "is", "it", "the", "circle"])
answers = ["red", "blue"]
torch.manual_seed(0)
torch.jit.script(UserVqa(len(vocabulary) + 2, len(answers))).save(sys.argv[1])
json.dump({"kind": "vqa-student", "image_size": 16, "max_len": 6,
           "vocabulary": vocabulary, "answers": answers}, open(sys.argv[2], "w"))
"#;

#[test]
fn a_users_torchscript_student_imports_answers_and_trains() {
    use std::sync::Arc;
    use visprog_distiller::models;
    use visprog_distiller::nn::model::{Example, TrainConfig};
    use visprog_distiller::store::Store;

    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (pt, side) = scripted(&python, dir.path(), "user", USER_VQA, &[]);

    // A sidecar that promises the wrong output is refused, nothing stored.
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let bad = dir.path().join("bad.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&side).unwrap()).unwrap();
    spec["answers"] = serde_json::json!(["red", "blue", "green"]);
    std::fs::write(&bad, spec.to_string()).unwrap();
    let import = |sidecar: &std::path::Path| {
        crate::common::vpd_in(
            dir.path(),
            &[
                "--store",
                s,
                "store",
                "import",
                "user-vqa",
                pt.to_str().unwrap(),
                "--sidecar",
                sidecar.to_str().unwrap(),
            ],
        )
    };
    let o = import(&bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("[2, 3]") && err.contains("bad.json"), "{err}");

    let o = import(&side);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // It answers a VQA step of a program.
    let img = dir.path().join("red.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([220, 30, 30]))
        .save(&img)
        .unwrap();
    let prog = dir.path().join("p.txt");
    std::fs::write(
        &prog,
        "ANSWER0=VQA(image=IMAGE,question='What color is it?')\nFINAL_RESULT=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    let o = crate::common::vpd_in(
        dir.path(),
        &[
            "--store",
            s,
            "program",
            "run",
            prog.to_str().unwrap(),
            "--image",
            &format!("IMAGE={}", img.display()),
            "--modules",
            "VQA=user-vqa@1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let said = v["result"].as_str().unwrap_or_default().to_string();
    assert!(said == "red" || said == "blue", "{v}");

    // Trained through TrainableCModule: red and blue images, loss falls,
    // it learns them, and the trained version round-trips.
    let st = Store::open(&store).unwrap();
    let r = "user-vqa@1".parse().unwrap();
    let (_, mut m) = models::load_model(&st, &r, DeviceChoice::Cpu).unwrap();
    let ex = |rgb: [f32; 3], label: i64| Example {
        images: vec![Arc::new(rgb.iter().flat_map(|c| vec![*c; 256]).collect())],
        text: "What color is it?".into(),
        label,
    };
    let data: Vec<Example> = (0..32)
        .map(|i| {
            if i % 2 == 0 {
                ex([1.5, -1.0, -1.0], 0)
            } else {
                ex([-1.0, -1.0, 1.5], 1)
            }
        })
        .collect();
    let cfg = TrainConfig {
        epochs: 15,
        batch: 8,
        lr: 0.05,
        patience: 15,
        seed: 0,
    };
    let rep = m.train(&data, &data, &cfg, &|_, _, _| {}).unwrap();
    assert!(
        rep.train_loss.last().unwrap() < &(0.5 * rep.train_loss[0]),
        "{:?}",
        rep.train_loss
    );
    let (acc, _) = m.evaluate(&data).unwrap();
    assert_eq!(acc, 1.0);
    let again =
        visprog_distiller::nn::model::Model::from_bytes(&m.to_bytes().unwrap(), DeviceChoice::Cpu)
            .unwrap();
    assert_eq!(
        again.predict(&data[..4]).unwrap(),
        m.predict(&data[..4]).unwrap()
    );
}

/// Issue 18: a teacher whose input size is not 64 crashed in tch's `view`
/// when evaluated end to end (its examples were made at 64 px). Every input
/// is now made at the module's own size.
#[test]
fn a_users_16px_torchscript_teacher_is_evaluated_end_to_end() {
    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let script = USER_VQA
        .replace(r#""kind": "vqa-student""#, r#""kind": "gqa-teacher""#)
        .replace(
            r#"answers = ["red", "blue"]"#,
            r#"answers = ["red", "blue", "yes", "no"]"#,
        );
    let (pt, side) = scripted(&python, dir.path(), "t", &script, &[]);
    let (p, s) = (dir.path(), "st");
    let o = crate::common::vpd_in(
        p,
        &[
            "--store",
            s,
            "store",
            "import",
            "user-teacher",
            pt.to_str().unwrap(),
            "--sidecar",
            side.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = crate::common::vpd_json(
        p,
        &[
            "--store",
            s,
            "eval",
            "--task",
            "gqa",
            "--teacher",
            "user-teacher@1",
            "--n",
            "20",
            "--json",
        ],
    );
    let n = j["score"]["n"].as_u64().unwrap();
    assert!(n > 0, "{j}");
    // Its four answers leave most questions outside: counted, not dropped.
    assert!(j["outside_answers"].as_u64().unwrap() > 0, "{j}");
}

/// Issue 19, one loader for every role: `vpd run` loaded students and
/// teachers as vpd checkpoints only, so an imported TorchScript student or
/// teacher failed there ("bad magic"). A user's 16 px student is distilled
/// by a user's 16 px teacher, and the distilled version loads and runs.
#[test]
fn a_users_torchscript_student_is_distilled_by_a_users_teacher_in_vpd_run() {
    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // The synthetic world's answers and some of its question words.
    let script = USER_VQA
        .replace(
            r#"vocabulary = sorted(["what", "color", "is", "it", "the", "circle"])"#,
            r#"vocabulary = sorted(["what", "color", "is", "the", "shape", "of", "there", "a", "any", "how", "many", "are", "object", "left", "right"])"#,
        )
        .replace(
            r#"answers = ["red", "blue"]"#,
            r#"answers = ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "white",
           "circle", "square", "triangle", "diamond", "cross", "ring", "small", "large",
           "yes", "no"] + [str(i) for i in range(10)]"#,
        );
    assert_ne!(script, USER_VQA);
    let (spt, sside) = scripted(&python, p, "student", &script, &[]);
    let (tpt, tside) = scripted(
        &python,
        p,
        "teacher",
        &script.replace(r#""kind": "vqa-student""#, r#""kind": "gqa-teacher""#),
        &[],
    );
    for (name, pt, side) in [("user-vqa", &spt, &sside), ("user-teacher", &tpt, &tside)] {
        let o = crate::common::vpd_in(
            p,
            &[
                "--store",
                "st",
                "store",
                "import",
                name,
                pt.to_str().unwrap(),
                "--sidecar",
                side.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // A teacher its adapter cannot use is refused at import, naming what
    // is missing: a GQA teacher without yes/no, an NLVR2 teacher of one
    // image without true/false.
    let (bpt, bside) = scripted(
        &python,
        p,
        "bad-gqa",
        &USER_VQA.replace(r#""kind": "vqa-student""#, r#""kind": "gqa-teacher""#),
        &[],
    );
    let (npt, nside) = scripted(
        &python,
        p,
        "bad-nlvr2",
        &script.replace(r#""kind": "vqa-student""#, r#""kind": "nlvr2-teacher""#),
        &[],
    );
    for (pt, side, says) in [
        (&bpt, &bside, vec!["the answer `yes`", "the answer `no`"]),
        (&npt, &nside, vec!["the answer `true`", "`pair: true`"]),
    ] {
        let o = crate::common::vpd_in(
            p,
            &[
                "--store",
                "st",
                "store",
                "import",
                "bad",
                pt.to_str().unwrap(),
                "--sidecar",
                side.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        for s in says {
            assert!(err.contains(s), "{err}");
        }
    }
    let all = crate::common::vpd_json(p, &["--store", "st", "versions", "--json"]);
    assert!(
        all.as_array().unwrap().iter().all(|v| v["module"] != "bad"),
        "{all:#}"
    );
    crate::common::tiny_experiment(p, "tiny.toml", "");
    let r = crate::common::vpd_json(
        p,
        &[
            "--store",
            "st",
            "run",
            "tiny.toml",
            "--set",
            "modules.vqa=user-vqa@1",
            "--set",
            "teachers.gqa=user-teacher@1",
            "--json",
        ],
    );
    assert_eq!(r["versions"]["vqa"], "user-vqa@2", "{r:#}");
    assert_eq!(r["versions"]["gqa-teacher"], "user-teacher@1", "{r:#}");
    assert!(
        r["tasks"]["gqa"]["distilled"]["n"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    let lineage = crate::common::vpd_json(p, &["--store", "st", "lineage", "user-vqa@2", "--json"]);
    assert!(lineage.to_string().contains("user-vqa"), "{lineage:#}");
    let v2 = crate::common::version(p, "user-vqa", 2);
    let v1 = crate::common::version(p, "user-vqa", 1);
    assert_eq!(v2["parent"], v1["id"], "{v2:#}");
    // The distilled version answers a program's VQA step.
    let img = p.join("red.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([220, 30, 30]))
        .save(&img)
        .unwrap();
    let prog = p.join("p.txt");
    std::fs::write(
        &prog,
        "ANSWER0=VQA(image=IMAGE,question='What color is the object?')\nFINAL_RESULT=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    let out = crate::common::vpd_json(
        p,
        &[
            "--store",
            "st",
            "program",
            "run",
            prog.to_str().unwrap(),
            "--image",
            &format!("IMAGE={}", img.display()),
            "--modules",
            "VQA=user-vqa@2",
            "--json",
        ],
    );
    assert!(out["result"].is_string(), "{out:#}");
}
