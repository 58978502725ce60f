//! A tiny network used by `vpd doctor` to prove that libtorch trains here.

use std::io::Cursor;

use serde::Serialize;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::{DeviceChoice, NnError};

/// Two-layer perceptron: `[batch, inputs] -> [batch, classes]`.
#[derive(Debug)]
pub struct TinyMlp {
    l1: nn::Linear,
    l2: nn::Linear,
}

impl TinyMlp {
    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, inputs: i64, hidden: i64, classes: i64) -> Self {
        TinyMlp {
            l1: nn::linear(p / "l1", inputs, hidden, Default::default()),
            l2: nn::linear(p / "l2", hidden, classes, Default::default()),
        }
    }
}

impl Module for TinyMlp {
    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.apply(&self.l1).relu().apply(&self.l2)
    }
}

/// The outcome of [`live_check`].
#[derive(Debug, Clone, Serialize)]
pub struct LiveCheck {
    /// Device the check ran on.
    pub device: String,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Training loss before each step (cross-entropy, nats).
    pub losses: Vec<f64>,
    /// Accuracy on the training batch after the last step.
    pub accuracy: f64,
    /// Whether the last loss is below half of the first.
    pub loss_fell: bool,
}

/// Trains a 2-16-2 perceptron with Adam on 256 points of XOR-labelled
/// quadrants for `steps` steps, from seed `seed`, and reports the losses.
pub fn live_check(device: DeviceChoice, steps: usize, seed: i64) -> Result<LiveCheck, NnError> {
    let device = device.to_tch()?;
    tch::manual_seed(seed);
    let vs = nn::VarStore::new(device);
    let net = TinyMlp::new(&vs.root(), 2, 16, 2);
    let mut opt = nn::Adam::default().build(&vs, 0.05)?;
    let xs = Tensor::f_rand([256, 2], (Kind::Float, device))?
        .f_mul_scalar(2.0)?
        .f_sub_scalar(1.0)?;
    let quad = xs.f_gt(0.0)?.to_kind(Kind::Int64);
    let ys = quad
        .f_select(1, 0)?
        .f_logical_xor(&quad.f_select(1, 1)?)?
        .to_kind(Kind::Int64);
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let loss = net.forward(&xs).cross_entropy_for_logits(&ys);
        losses.push(loss.f_double_value(&[])?);
        opt.backward_step(&loss);
    }
    let accuracy = tch::no_grad(|| -> Result<f64, NnError> {
        let pred = net.forward(&xs).f_argmax(-1, false)?;
        Ok(pred
            .f_eq_tensor(&ys)?
            .to_kind(Kind::Float)
            .f_mean(Kind::Float)?
            .f_double_value(&[])?)
    })?;
    let loss_fell = match (losses.first(), losses.last()) {
        (Some(first), Some(last)) => losses.len() > 1 && *last < 0.5 * first,
        _ => false,
    };
    Ok(LiveCheck {
        device: match device {
            Device::Cuda(n) => format!("cuda:{n}"),
            _ => "cpu".into(),
        },
        steps,
        losses,
        accuracy,
        loss_fell,
    })
}

/// Serialises every variable of `vs` (libtorch's own archive format).
pub fn varstore_to_bytes(vs: &nn::VarStore) -> Result<Vec<u8>, NnError> {
    let mut buf = Vec::new();
    vs.save_to_stream(&mut buf)?;
    Ok(buf)
}

/// Loads variables saved by [`varstore_to_bytes`] into `vs`, whose variables
/// must already exist with the same names and shapes.
pub fn varstore_from_bytes(vs: &mut nn::VarStore, bytes: &[u8]) -> Result<(), NnError> {
    vs.load_from_stream(Cursor::new(bytes))?;
    Ok(())
}
