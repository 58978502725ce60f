//! `vpd bench train` against the venv's PyTorch: both sides start from the
//! same weights and batches and run with the same malloc settings; a
//! PyTorch process with other settings is refused.

use std::os::unix::fs::PermissionsExt;

use crate::common::{torch_python, vpd_in, vpd_json};

#[test]
fn bench_train_compares_like_with_like_and_refuses_other_malloc_settings() {
    let Some(py) = torch_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let bench = ["bench", "train", "--rounds", "1", "--threads", "1"];
    let py_args = ["--python", py.to_str().unwrap(), "--json"];
    let rows = vpd_json(dir.path(), &[&bench[..], &py_args].concat());
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, batch) in rows.iter().zip([1, 64]) {
        assert_eq!(row["batch"], batch);
        let [a, b] = [0, 1].map(|k| row["first_loss"][k].as_f64().unwrap());
        assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{row}");
        for k in ["rust_examples_per_s", "pytorch_examples_per_s", "ratio"] {
            assert!(row[k].as_f64().unwrap() > 0.0, "{row}");
        }
    }

    // A Python that drops one of the settings: the bench stops and says so.
    let wrapper = dir.path().join("python-default-malloc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nunset MALLOC_TRIM_THRESHOLD_\nexec '{}' \"$@\"\n",
            py.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapped = ["--python", wrapper.to_str().unwrap()];
    let out = vpd_in(dir.path(), &[&bench[..], &wrapped].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("MALLOC_TRIM_THRESHOLD_") && err.contains("same malloc settings"),
        "{err}"
    );
}
