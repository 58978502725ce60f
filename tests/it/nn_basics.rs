//! libtorch through tch: training, checkpoint bytes, TorchScript.

use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use visprog_distiller::nn::{
    live_check, varstore_from_bytes, varstore_to_bytes, DeviceChoice, TinyMlp,
};

use crate::common::torch_python;

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
    let py = dir.path().join("make_mlp.py");
    std::fs::write(&py, script).unwrap();
    let out = std::process::Command::new(&python)
        .args(["-W", "ignore"])
        .arg(&py)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
