//! `--device`: every command that takes it refuses a GPU it does not have,
//! cleanly and before any work, and checkpoints do not depend on the device
//! they were written on.

use std::sync::Arc;

use visprog_distiller::nn::model::{Example, Model};
use visprog_distiller::nn::DeviceChoice;

use crate::common::vpd_in;

fn cuda_here() -> bool {
    tch::Cuda::device_count() > 0
}

/// Each command with `--device cuda` (or a device in the experiment) on a
/// machine without one: exit 1, one line naming the device, no panic, and
/// nothing run or stored.
#[test]
fn every_device_option_refuses_a_missing_gpu_before_any_work() {
    if cuda_here() {
        eprintln!("notice: this machine has a CUDA device; the refusals are not what it shows");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gpu.toml"),
        "name = \"on-gpu\"\ndevice = \"cuda:1\"\n",
    )
    .unwrap();
    let cases: [&[&str]; 10] = [
        &["eval", "--task", "gqa", "--device", "cuda"],
        &["program", "run", "q.prog", "--device", "cuda"],
        &["measure", "--device", "cuda:2"],
        &["eval", "--task", "gqa", "--teacher", "--device", "cuda:0"],
        &["run", "--device", "cuda"],
        &["run", "--set", "device=cuda:3"],
        &["run", "gpu.toml"],
        &["pretrain", "students", "--device", "cuda"],
        &["bench", "exec", "--device", "cuda"],
        &["bench", "train", "--device", "cuda"],
    ];
    for args in cases {
        let out = vpd_in(dir.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("no CUDA device: `cuda:"), "{args:?}: {err}");
        assert!(
            err.contains("libtorch sees 0 CUDA device(s)"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // `vpd run gpu.toml` named the device of its file.
    let out = vpd_in(dir.path(), &["run", "gpu.toml"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("`cuda:1`"));
    // Nothing was made: no data, no versions, no runs.
    let runs = vpd_in(dir.path(), &["runs", "--json"]);
    assert!(runs.status.success());
    let v: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
    assert!(!dir.path().join("store/data").exists());
    // A device that is none is a usage error (exit 2) naming it.
    for (args, needle) in [
        (
            &["run", "--device", "tpu"][..],
            "`device`: unknown device `tpu`",
        ),
        (
            &["eval", "--task", "gqa", "--device", "gpu"][..],
            "unknown device `gpu`",
        ),
        (
            &["program", "run", "q.prog", "--device", "gpu"][..],
            "unknown device `gpu`",
        ),
        (&["measure", "--device", "tpu"][..], "unknown device `tpu`"),
        (
            &["pretrain", "students", "--device", "cuda:x"][..],
            "unknown device `cuda:x`",
        ),
        (
            &["bench", "train", "--device", "gpu"][..],
            "unknown device `gpu`",
        ),
    ] {
        let out = vpd_in(dir.path(), args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

fn examples(side: usize) -> Vec<Example> {
    (0..6)
        .map(|i| Example {
            images: vec![Arc::new(
                (0..3 * side * side)
                    .map(|k| ((k * 7 + i * 13) % 17) as f32 / 17.0 - 0.5)
                    .collect(),
            )],
            text: ["what color is the circle?", "is there a red square?"][i % 2].into(),
            label: 0,
        })
        .collect()
}

/// A checkpoint is written from CPU tensors and loads on any device: on
/// the CPU, written, reloaded, the same bytes again and identical
/// predictions; where a GPU exists, the same through it (to float
/// rounding), and a checkpoint written on the GPU loads on the CPU.
#[test]
fn a_checkpoint_written_on_one_device_loads_on_another() {
    let meta = visprog_distiller::models::student_meta();
    let side = meta.film.image_size as usize;
    let ex = examples(side);
    let a = Model::new(meta.clone(), DeviceChoice::Cpu, 7).unwrap();
    let bytes = a.to_bytes().unwrap();
    let b = Model::from_bytes(&bytes, DeviceChoice::Cpu).unwrap();
    assert_eq!(
        b.to_bytes().unwrap(),
        bytes,
        "a reload writes the same bytes"
    );
    let (pa, pb) = (a.predict(&ex).unwrap(), b.predict(&ex).unwrap());
    assert_eq!(pa, pb);
    assert!(pa.iter().all(|p| p.len() == meta.answers.list.len()));
    // Another seed is another network (the comparison can fail).
    let c = Model::new(meta.clone(), DeviceChoice::Cpu, 8).unwrap();
    assert_ne!(c.predict(&ex).unwrap(), pa);
    if !cuda_here() {
        return;
    }
    let g = Model::from_bytes(&bytes, DeviceChoice::Cuda(0)).unwrap();
    let pg = g.predict(&ex).unwrap();
    for (x, y) in pa.iter().flatten().zip(pg.iter().flatten()) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
    // A seed draws the same weights on the GPU as on the CPU.
    let fresh = Model::new(meta, DeviceChoice::Cuda(0), 7).unwrap();
    assert_eq!(fresh.to_bytes().unwrap(), bytes);
    let back = Model::from_bytes(&g.to_bytes().unwrap(), DeviceChoice::Cpu).unwrap();
    assert_eq!(back.predict(&ex).unwrap(), pa);
}
