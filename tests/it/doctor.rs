use crate::common::vpd_in;

#[test]
fn doctor_json_reports_libtorch_store_and_a_falling_loss() {
    let dir = tempfile::tempdir().unwrap();
    let out = vpd_in(dir.path(), &["doctor", "--json"]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["vpd_version"], env!("CARGO_PKG_VERSION"));
    let version = v["libtorch"]["version"].as_str().expect("libtorch version");
    assert!(version.starts_with("2.11.0"), "{version}");
    let lib_dir = v["libtorch"]["lib_dir"].as_str().expect("lib_dir");
    assert!(std::path::Path::new(lib_dir)
        .join("libtorch_cpu.so")
        .exists());
    assert!(v["libtorch"]["torch_cuda_linked"].is_boolean());
    assert!(v["libtorch"]["cuda_available"].is_boolean());
    assert!(v["libtorch"]["threads"].as_i64().unwrap() >= 1);
    assert_eq!(v["store"]["opens"], true);
    assert_eq!(v["store"]["path"], "store");
    assert!(
        dir.path().join("store/db").exists(),
        "sled database created"
    );
    let cpu = &v["live_checks"][0];
    assert_eq!(cpu["device"], "cpu");
    let losses: Vec<f64> = cpu["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(losses.len() >= 10);
    assert!(losses.last().unwrap() < &(0.5 * losses[0]), "{losses:?}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn doctor_human_output_names_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = vpd_in(dir.path(), &["doctor"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in [
        "vpd ",
        "libtorch ",
        "cuda ",
        "threads ",
        "store ",
        "live check",
        "ok",
    ] {
        assert!(text.contains(key), "missing {key:?} in:\n{text}");
    }
}

#[test]
fn doctor_on_an_unusable_store_fails_with_exit_1_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), b"not a folder").unwrap();
    let out = vpd_in(dir.path(), &["--store", "afile/store", "doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["store"]["opens"], false);
    assert!(v["store"]["error"].as_str().unwrap().contains("afile"));
    assert_eq!(v["ok"], false);
}

#[test]
fn usage_errors_exit_2_and_unknown_commands_are_absent() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(vpd_in(dir.path(), &["frobnicate"]).status.code(), Some(2));
    assert_eq!(
        vpd_in(dir.path(), &["doctor", "--bogus"]).status.code(),
        Some(2)
    );
    assert_eq!(vpd_in(dir.path(), &["--version"]).status.code(), Some(0));
}
