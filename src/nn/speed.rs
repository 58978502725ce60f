//! What `vpd bench train` needs from libtorch: the student's weights in a
//! form the PyTorch reference reads, timed training steps, the FLOPs of a
//! training step, and the machine's matrix-multiply rate.

use std::path::Path;

use tch::nn::{self, OptimizerConfig};
use tch::{Kind, Tensor};

use super::film::FilmConfig;
use super::model::{Example, Model};
use super::NnError;

fn io(path: &Path) -> impl Fn(std::io::Error) -> NnError + '_ {
    move |e| NnError::Checkpoint(format!("{}: {e}", path.display()))
}

impl Model {
    /// Writes `weights.json` (names and shapes, sorted by name) and
    /// `weights.bin` (their float32 values, in that order) into `dir`.
    pub fn export_weights(&self, dir: &Path) -> Result<(), NnError> {
        let mut vars: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut manifest = Vec::new();
        let mut bin: Vec<u8> = Vec::new();
        for (name, t) in &vars {
            manifest.push(serde_json::json!({"name": name, "shape": t.size()}));
            let v: Vec<f32> = Vec::try_from(t.to_kind(Kind::Float).reshape([-1]))?;
            for x in v {
                bin.extend_from_slice(&x.to_le_bytes());
            }
        }
        let p = dir.join("weights.json");
        std::fs::write(&p, serde_json::to_vec(&manifest).expect("json")).map_err(io(&p))?;
        let p = dir.join("weights.bin");
        std::fs::write(&p, bin).map_err(io(&p))?;
        Ok(())
    }
}

/// A training set as three tensors (images, tokens, labels), made once,
/// from which consecutive batches are taken as views, as the PyTorch
/// reference takes slices of its tensors.
pub struct Batches {
    images: Tensor,
    tokens: Tensor,
    labels: Tensor,
    n: usize,
}

impl Batches {
    /// Stacks `data` (one copy, before any timing).
    pub fn new(model: &Model, data: &[Example]) -> Batches {
        let refs: Vec<&Example> = data.iter().collect();
        let (images, tokens, labels) = model.batch(&refs);
        Batches {
            images,
            tokens,
            labels,
            n: data.len(),
        }
    }
}

/// Adam on a model, stepped on demand.
pub struct Stepper<'a> {
    model: &'a Model,
    opt: nn::Optimizer,
}

impl<'a> Stepper<'a> {
    /// Adam with learning rate `lr` over the model's variables.
    pub fn new(model: &'a Model, lr: f64) -> Result<Stepper<'a>, NnError> {
        Ok(Stepper {
            model,
            opt: nn::Adam::default().build(&model.vs, lr)?,
        })
    }

    /// `steps` training steps on batches `start, start + 1, ...` of `batch`
    /// consecutive examples (wrapping; `batch` divides the set's size);
    /// seconds taken and the first step's loss.
    pub fn steps(
        &mut self,
        data: &Batches,
        batch: usize,
        start: usize,
        steps: usize,
    ) -> Result<(f64, f64), NnError> {
        let t0 = std::time::Instant::now();
        let mut first = f64::NAN;
        let b = batch as i64;
        for k in 0..steps {
            let i = (((start + k) * batch) % data.n) as i64;
            let x = data.images.narrow(0, i, b);
            let t = data.tokens.narrow(0, i, b);
            let y = data.labels.narrow(0, i, b);
            let loss = self.model.logits(&x, &t)?.cross_entropy_for_logits(&y);
            self.opt.backward_step(&loss);
            if k == 0 {
                first = loss.double_value(&[]);
            }
        }
        Ok((t0.elapsed().as_secs_f64(), first))
    }
}

/// Token ids of a text as the model encodes it.
pub fn tokens(model: &Model, text: &str) -> Vec<i64> {
    model.meta.tokenizer.encode(text)
}

/// Floating-point operations of one training example (forward and
/// backward, counted as three forwards) of the network, multiply-adds of
/// convolutions, linear layers and the GRU as two operations each.
pub fn train_flops_per_example(c: &FilmConfig, max_len: usize) -> f64 {
    let s = c.image_size as f64;
    let [a, b, cc] = c.channels.map(|x| x as f64);
    let (h1, h2) = ((s / 2.0).powi(2), (s / 4.0).powi(2));
    let conv = 2.0 * 9.0 * (3.0 * a * h1 + a * b * h2 + (b + 2.0) * cc * h2);
    let g = c.glimpses.max(1) as f64;
    let att = g * 2.0 * (c.hidden as f64 * cc + cc * h2);
    let hd = c.hidden as f64;
    let gru = max_len as f64 * 2.0 * 3.0 * hd * (c.word_dim as f64 + hd);
    let film = 2.0 * hd * 2.0 * (b + cc);
    let joint = (g + 1.0) * cc + hd;
    let head = 2.0 * (joint * 128.0 + 128.0 * c.classes as f64);
    let images = if c.pair { 2.0 } else { 1.0 };
    3.0 * (images * (conv + att) + gru + film + head)
}

/// The machine's float32 matrix-multiply rate through libtorch, GFLOP/s
/// (the best of `reps` products of two n x n matrices).
pub fn matmul_gflops(n: i64, reps: usize) -> f64 {
    let a = Tensor::randn([n, n], (Kind::Float, tch::Device::Cpu));
    let b = Tensor::randn([n, n], (Kind::Float, tch::Device::Cpu));
    let _ = a.matmul(&b);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t0 = std::time::Instant::now();
        let c = a.matmul(&b);
        let _ = c.double_value(&[0, 0]);
        best = best.min(t0.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}
