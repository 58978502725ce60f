//! A trained model: its configuration, tokenizer, answers and weights, as
//! one checkpoint blob (`VPDCKPT1`, header length, JSON header, libtorch
//! archive), and training/evaluation on plain data.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::film::{Film, FilmConfig};
use super::text::{Answers, Tokenizer};
use super::{DeviceChoice, NnError};

const MAGIC: &[u8; 8] = b"VPDCKPT1";

/// What travels with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `vqa-student`, `gqa-teacher`, `nlvr2-teacher`.
    pub kind: String,
    /// Network sizes.
    pub film: FilmConfig,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// Output classes.
    pub answers: Answers,
}

/// A network with its metadata.
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// Weights.
    pub vs: nn::VarStore,
    /// The network.
    pub net: Film,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("meta", &self.meta).finish()
    }
}

/// One example: 1 image (or 2 for a pair model) as `to_model_input`
/// floats, a text, and a class.
#[derive(Debug, Clone)]
pub struct Example {
    /// `[3, S, S]` floats each.
    pub images: Vec<std::sync::Arc<Vec<f32>>>,
    /// Question or statement.
    pub text: String,
    /// Class id.
    pub label: i64,
}

/// Training settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Most epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Stop after this many epochs without a better dev accuracy.
    pub patience: usize,
    /// Seed of initial weights and shuffling.
    pub seed: u64,
}

/// What training did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Dev accuracy per epoch.
    pub dev_accuracy: Vec<f64>,
    /// The epoch whose weights were kept (0-based).
    pub best_epoch: usize,
    /// Its dev accuracy.
    pub best_dev_accuracy: f64,
    /// Seconds.
    pub seconds: f64,
}

impl Model {
    /// A fresh model with weights from `seed`.
    pub fn new(meta: ModelMeta, device: DeviceChoice, seed: u64) -> Result<Model, NnError> {
        Ok(Model::on(meta, device.to_tch()?, seed))
    }

    fn on(meta: ModelMeta, device: Device, seed: u64) -> Model {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let net = Film::new(&vs.root(), &meta.film);
        Model { meta, vs, net }
    }

    /// The checkpoint blob.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        let header = serde_json::to_vec(&self.meta).expect("meta serialises");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(header.len() as u64).to_be_bytes());
        out.extend_from_slice(&header);
        self.vs.save_to_stream(&mut out)?;
        Ok(out)
    }

    /// Loads a checkpoint blob.
    pub fn from_bytes(bytes: &[u8], device: DeviceChoice) -> Result<Model, NnError> {
        let device = device.to_tch()?;
        let bad = |m: &str| NnError::Checkpoint(m.to_string());
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a vpd checkpoint (bad magic)"));
        }
        let n = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let header = bytes
            .get(16..16 + n)
            .ok_or_else(|| bad("truncated header"))?;
        let meta: ModelMeta =
            serde_json::from_slice(header).map_err(|e| bad(&format!("header: {e}")))?;
        let mut m = Model::on(meta, device, 0);
        m.vs.load_from_stream(Cursor::new(&bytes[16 + n..]))?;
        Ok(m)
    }

    fn batch(&self, examples: &[&Example]) -> (Tensor, Tensor, Tensor) {
        let dev = self.vs.device();
        let s = self.meta.film.image_size;
        let per = examples[0].images.len() as i64;
        let mut flat = Vec::with_capacity(examples.len() * (per * 3 * s * s) as usize);
        let mut toks = Vec::new();
        let mut labels = Vec::new();
        for e in examples {
            for im in &e.images {
                flat.extend_from_slice(im);
            }
            toks.extend(self.meta.tokenizer.encode(&e.text));
            labels.push(e.label);
        }
        let b = examples.len() as i64;
        let images = if self.meta.film.pair {
            Tensor::from_slice(&flat).view([b, 2, 3, s, s])
        } else {
            Tensor::from_slice(&flat).view([b, 3, s, s])
        };
        let tokens = Tensor::from_slice(&toks).view([b, self.meta.tokenizer.max_len as i64]);
        (
            images.to_device(dev),
            tokens.to_device(dev),
            Tensor::from_slice(&labels).to_device(dev),
        )
    }

    /// Class probabilities for each example (labels ignored).
    pub fn predict(&self, examples: &[Example]) -> Vec<Vec<f32>> {
        let mut out = Vec::with_capacity(examples.len());
        tch::no_grad(|| {
            for chunk in examples.chunks(256) {
                let refs: Vec<&Example> = chunk.iter().collect();
                let (x, t, _) = self.batch(&refs);
                let p = self
                    .net
                    .logits(&x, &t)
                    .softmax(-1, Kind::Float)
                    .to_device(Device::Cpu);
                let rows = p.size()[0];
                let v: Vec<f32> = Vec::try_from(p.view([-1])).unwrap_or_default();
                let k = v.len() / rows.max(1) as usize;
                out.extend(v.chunks(k.max(1)).map(|c| c.to_vec()));
            }
        });
        out
    }

    /// Accuracy (0-1) and the predicted class of each example.
    pub fn evaluate(&self, examples: &[Example]) -> (f64, Vec<i64>) {
        let probs = self.predict(examples);
        let preds: Vec<i64> = probs
            .iter()
            .map(|p| {
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i as i64)
            })
            .collect();
        let correct = preds
            .iter()
            .zip(examples)
            .filter(|(p, e)| **p == e.label)
            .count();
        (correct as f64 / examples.len().max(1) as f64, preds)
    }

    /// Trains with Adam on cross-entropy, keeping the weights of the best
    /// dev epoch (early stopping after `patience` epochs without gain).
    pub fn train(
        &mut self,
        train: &[Example],
        dev: &[Example],
        cfg: &TrainConfig,
        progress: &dyn Fn(usize, f64, f64),
    ) -> Result<TrainReport, NnError> {
        let t0 = std::time::Instant::now();
        tch::manual_seed(cfg.seed as i64);
        let mut opt = nn::Adam::default().build(&self.vs, cfg.lr)?;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = crate::data::rng::Rng::new(cfg.seed, "train-order");
        let mut report = TrainReport {
            train_loss: vec![],
            dev_accuracy: vec![],
            best_epoch: 0,
            best_dev_accuracy: -1.0,
            seconds: 0.0,
        };
        let mut best: Option<Vec<u8>> = None;
        for epoch in 0..cfg.epochs {
            rng.shuffle(&mut order);
            let mut total = 0.0;
            let mut batches = 0;
            for chunk in order.chunks(cfg.batch.max(1)) {
                let refs: Vec<&Example> = chunk.iter().map(|i| &train[*i]).collect();
                let (x, t, y) = self.batch(&refs);
                let loss = self.net.logits(&x, &t).cross_entropy_for_logits(&y);
                opt.backward_step(&loss);
                total += loss.double_value(&[]);
                batches += 1;
            }
            let loss = total / batches.max(1) as f64;
            let (acc, _) = self.evaluate(dev);
            report.train_loss.push(loss);
            report.dev_accuracy.push(acc);
            progress(epoch, loss, acc);
            if acc > report.best_dev_accuracy {
                report.best_dev_accuracy = acc;
                report.best_epoch = epoch;
                let mut buf = Vec::new();
                self.vs.save_to_stream(&mut buf)?;
                best = Some(buf);
            } else if epoch - report.best_epoch >= cfg.patience {
                break;
            }
        }
        if let Some(b) = best {
            self.vs.load_from_stream(Cursor::new(b))?;
        }
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }
}
