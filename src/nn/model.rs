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

/// What travels with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// `vqa-student`, `gqa-teacher`, `nlvr2-teacher`.
    pub kind: crate::vocab::ModelKind,
    /// Network sizes.
    pub film: FilmConfig,
    /// Tokenizer.
    pub tokenizer: Tokenizer,
    /// Output classes.
    pub answers: Answers,
    /// A user's TorchScript network (see `Model::from_torchscript`) instead
    /// of the built-in FiLM network; `film` then only gives the input size,
    /// the classes and whether it takes a pair.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub script: bool,
    /// A user's module's own image normalisation (sidecar `mean`/`std`);
    /// absent: vpd's (`data::images::MEAN`, `STD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub norm: Option<Norm>,
}

/// Images in vpd's normalisation (`data::images::to_model_input`) in a
/// module's own: `x' = x * (STD / std) + (MEAN - mean) / std` per channel
/// (channels at dimension -3, so one image or a pair).
pub(crate) fn renormalise(images: Tensor, norm: Option<Norm>) -> Tensor {
    use crate::data::images::{MEAN, STD};
    let Some(n) = norm else { return images };
    let scale: Vec<f32> = (0..3).map(|c| STD[c] / n.std[c]).collect();
    let shift: Vec<f32> = (0..3).map(|c| (MEAN[c] - n.mean[c]) / n.std[c]).collect();
    images * Tensor::from_slice(&scale).view([3, 1, 1]) + Tensor::from_slice(&shift).view([3, 1, 1])
}

/// Per-channel image normalisation: `(x / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Norm {
    /// Channel means (RGB).
    pub mean: [f32; 3],
    /// Channel standard deviations (RGB).
    pub std: [f32; 3],
}

/// The network of a model.
#[derive(Debug)]
pub enum Net {
    /// The built-in FiLM network.
    Film(Box<Film>),
    /// A user's TorchScript module, trainable (its parameters are in the
    /// model's VarStore).
    Script(tch::TrainableCModule),
}

/// A user's TorchScript module's sidecar: what its inputs and outputs are.
///
/// Version 1 (`vocabulary`): `forward(images, tokens)` takes `[B, 3, S, S]`
/// float images normalised as `to_model_input` does (`[B, 2, 3, S, S]` for
/// a pair) and `[B, L]` int64 token ids of `vocabulary` (0 padding, 1
/// unknown, left-padded), and returns `[B, answers]` logits.
///
/// Version 2 (`tokenizer`): a Hugging Face `tokenizer.json` (a path
/// relative to the sidecar; embedded in the stored sidecar at import), and
/// `forward(images, input_ids, attention_mask)` as Hugging Face models take
/// them (`[B, L]` int64 each, right-padded); images at the module's own
/// `image_size`, normalised with its own `mean` and `std`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// `vqa-student`, `gqa-teacher`, `nlvr2-teacher` (or `loc-student`).
    pub kind: crate::vocab::ModelKind,
    /// Input side S in pixels.
    pub image_size: i64,
    /// Tokens per text L.
    pub max_len: usize,
    /// Version 1: words from id 2 on (ids 0 and 1 are padding and
    /// unknown), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vocabulary: Vec<String>,
    /// Version 2: the Hugging Face tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<SidecarTokenizer>,
    /// The output classes in order (not for a LOC module).
    #[serde(default)]
    pub answers: Vec<String>,
    /// Takes a pair of images (NLVR2).
    #[serde(default)]
    pub pair: bool,
    /// Channel means of the module's image normalisation (default vpd's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<[f32; 3]>,
    /// Channel standard deviations (default vpd's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<[f32; 3]>,
    /// LOC: the score a box needs to count (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
}

/// The largest `image_size` a sidecar may give (pixels a side).
pub const MAX_IMAGE_SIZE: i64 = 2048;
/// The largest `max_len` (tokens).
pub const MAX_LEN: usize = 8192;
/// The smallest `std` (channel standard deviation).
pub const MIN_STD: f32 = 1e-4;
/// The largest `mean` in absolute value.
pub const MAX_MEAN: f32 = 1e3;
/// The largest `tokenizer.json` read (bytes; the real ones are 0.5-20 MB).
pub const MAX_TOKENIZER_BYTES: u64 = 64 << 20;

/// A regular file's bytes, refused past `limit` bytes (never read to the
/// end of a device such as `/dev/zero`).
pub fn read_bounded(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let m = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !m.is_file() {
        return Err("not a regular file".into());
    }
    if m.len() > limit {
        return Err(format!("{} bytes, past the limit of {limit}", m.len()));
    }
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut buf))
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > limit {
        return Err(format!("more than {limit} bytes"));
    }
    Ok(buf)
}

/// A sidecar's `tokenizer`: the path the user wrote, or, in the stored
/// sidecar, the file's name and its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SidecarTokenizer {
    /// A `tokenizer.json` path relative to the sidecar.
    Path(String),
    /// Embedded at import.
    Embedded {
        /// The path it was read from.
        file: String,
        /// Its content, verbatim.
        json: String,
    },
}

impl Sidecar {
    /// Reads the `tokenizer` file a sidecar at `dir` names and embeds it;
    /// an error names the field and the file.
    pub fn embed_tokenizer(&mut self, dir: &std::path::Path) -> Result<(), NnError> {
        if let Some(SidecarTokenizer::Path(p)) = &self.tokenizer {
            let path = dir.join(p);
            let json = read_bounded(&path, MAX_TOKENIZER_BYTES)
                .and_then(|b| String::from_utf8(b).map_err(|e| format!("not UTF-8: {e}")))
                .map_err(|e| {
                    NnError::Checkpoint(format!("sidecar `tokenizer`: {}: {e}", path.display()))
                })?;
            super::text::HfTokenizer::from_json(&json).map_err(|e| {
                NnError::Checkpoint(format!("sidecar `tokenizer`: {}: {e}", path.display()))
            })?;
            self.tokenizer = Some(SidecarTokenizer::Embedded {
                file: p.clone(),
                json,
            });
        }
        Ok(())
    }

    /// Checks `image_size` (8 to [`MAX_IMAGE_SIZE`] pixels), `max_len` (1
    /// to [`MAX_LEN`] tokens) and `threshold`, naming the field: a size
    /// past them would be allocated whole for every input.
    pub fn check_sizes(&self) -> Result<(), NnError> {
        if !(8..=MAX_IMAGE_SIZE).contains(&self.image_size) {
            return Err(NnError::Checkpoint(format!(
                "sidecar `image_size`: {} (8 to {MAX_IMAGE_SIZE} pixels)",
                self.image_size
            )));
        }
        if !(1..=MAX_LEN).contains(&self.max_len) {
            return Err(NnError::Checkpoint(format!(
                "sidecar `max_len`: {} (1 to {MAX_LEN} tokens)",
                self.max_len
            )));
        }
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(NnError::Checkpoint(format!(
                    "sidecar `threshold`: {t} is not in 0-1"
                )));
            }
        }
        Ok(())
    }

    /// The image normalisation, `None` for vpd's own.
    pub fn norm(&self) -> Result<Option<Norm>, NnError> {
        use crate::data::images::{MEAN, STD};
        let n = Norm {
            mean: self.mean.unwrap_or(MEAN),
            std: self.std.unwrap_or(STD),
        };
        // Inputs are 0-1 before normalisation: these bounds keep every
        // normalised value finite (within 1e7).
        if let Some(s) = n.std.iter().find(|s| !(**s >= MIN_STD && s.is_finite())) {
            return Err(NnError::Checkpoint(format!(
                "sidecar `std`: {s} is not a positive number of at least {MIN_STD}"
            )));
        }
        if let Some(m) = n.mean.iter().find(|m| !m.is_finite() || m.abs() > MAX_MEAN) {
            return Err(NnError::Checkpoint(format!(
                "sidecar `mean`: {m} is not a number within ±{MAX_MEAN}"
            )));
        }
        Ok((n.mean != MEAN || n.std != STD).then_some(n))
    }

    /// The tokenizer the sidecar describes (`vocabulary` or an embedded
    /// `tokenizer`, exactly one).
    pub fn text_tokenizer(&self) -> Result<Tokenizer, NnError> {
        let bad = |m: String| NnError::Checkpoint(m);
        let hf = match &self.tokenizer {
            None => None,
            Some(SidecarTokenizer::Embedded { file, json }) => Some(
                super::text::HfTokenizer::from_json(json)
                    .map_err(|e| bad(format!("sidecar `tokenizer` ({file}): {e}")))?,
            ),
            Some(SidecarTokenizer::Path(p)) => {
                return Err(bad(format!(
                    "sidecar `tokenizer`: `{p}` was not read (a sidecar is imported with `vpd store import --sidecar`, which embeds its tokenizer)"
                )))
            }
        };
        if hf.is_some() && !self.vocabulary.is_empty() {
            return Err(bad(
                "sidecar: `vocabulary` and `tokenizer` both given; a module takes one".into(),
            ));
        }
        if hf.is_none() && self.vocabulary.is_empty() {
            return Err(bad(
                "sidecar: `vocabulary` (a word list) or `tokenizer` (a Hugging Face tokenizer.json) is needed".into(),
            ));
        }
        // Ids are positions: the tokenizer looks words up by binary search,
        // so the list must be sorted (and lower-case, as texts are).
        if let Some(w) = self
            .vocabulary
            .windows(2)
            .find(|w| w[0] >= w[1] || w[1] != w[1].to_lowercase())
        {
            return Err(bad(format!(
                "sidecar `vocabulary` must be sorted, unique and lower-case: `{}` then `{}`",
                w[0], w[1]
            )));
        }
        let mut words = vec!["<pad>".to_string(), "<unk>".to_string()];
        words.extend(self.vocabulary.iter().cloned());
        Ok(Tokenizer {
            words,
            max_len: self.max_len,
            hf,
        })
    }
}

/// A network with its metadata.
pub struct Model {
    /// Metadata.
    pub meta: ModelMeta,
    /// Weights.
    pub vs: nn::VarStore,
    /// The network.
    pub net: Net,
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
    /// The weights are drawn on the CPU and copied to the device, so that
    /// a seed gives the same network on every device.
    pub fn new(meta: ModelMeta, device: DeviceChoice, seed: u64) -> Result<Model, NnError> {
        let dev = device.to_tch()?;
        let cpu = Model::on(meta.clone(), Device::Cpu, seed);
        if dev == Device::Cpu {
            return Ok(cpu);
        }
        let mut m = Model::on(meta, dev, seed);
        m.vs.copy(&cpu.vs)?;
        Ok(m)
    }

    fn on(meta: ModelMeta, device: Device, seed: u64) -> Model {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let net = Net::Film(Box::new(Film::new(&vs.root(), &meta.film)));
        Model { meta, vs, net }
    }

    /// The checkpoint blob: for a TorchScript model, its TorchScript
    /// archive (with the current weights) after the header.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        match &self.net {
            Net::Film(_) => super::checkpoint::pack(&self.meta, &self.vs),
            Net::Script(m) => {
                let tmp = std::env::temp_dir().join(format!("vpd-{}.pt", uuid::Uuid::now_v7()));
                let saved = m.save(&tmp);
                let bytes = std::fs::read(&tmp);
                let _ = std::fs::remove_file(&tmp);
                saved?;
                let bytes =
                    bytes.map_err(|e| NnError::Checkpoint(format!("{}: {e}", tmp.display())))?;
                super::checkpoint::pack_bytes(&self.meta, &bytes)
            }
        }
    }

    /// Loads a checkpoint blob.
    pub fn from_bytes(bytes: &[u8], device: DeviceChoice) -> Result<Model, NnError> {
        let (meta, weights): (ModelMeta, &[u8]) = super::checkpoint::unpack(bytes)?;
        if meta.script {
            return Model::script_on(meta, weights, device);
        }
        let mut m = Model::on(meta, device.to_tch()?, 0);
        m.vs.load_from_stream(Cursor::new(weights))?;
        Ok(m)
    }

    fn script_on(meta: ModelMeta, archive: &[u8], device: DeviceChoice) -> Result<Model, NnError> {
        let vs = nn::VarStore::new(device.to_tch()?);
        let module = tch::TrainableCModule::load_data(&mut Cursor::new(archive), vs.root())
            .map_err(|e| {
                NnError::Checkpoint(format!(
                    "not a TorchScript archive (torch.jit.save): {}",
                    super::torch_message(&e)
                ))
            })?;
        Ok(Model {
            meta,
            vs,
            net: Net::Script(module),
        })
    }

    /// A user's TorchScript module (its archive's bytes) with its sidecar.
    /// One forward pass on a probe batch of blank images checks that its inputs and output
    /// match the sidecar.
    pub fn from_torchscript(
        archive: &[u8],
        sidecar: &Sidecar,
        device: DeviceChoice,
    ) -> Result<Model, NnError> {
        let bad = |m: String| NnError::Checkpoint(m);
        if sidecar.kind == crate::vocab::ModelKind::LocStudent {
            return Err(bad(format!(
                "sidecar kind `{}`: expected vqa-student, gqa-teacher or nlvr2-teacher",
                sidecar.kind
            )));
        }
        sidecar.check_sizes()?;
        if sidecar.answers.is_empty() {
            return Err(bad("sidecar `answers`: none given".into()));
        }
        let tokenizer = sidecar.text_tokenizer()?;
        let norm = sidecar.norm()?;
        let meta = ModelMeta {
            kind: sidecar.kind,
            film: FilmConfig {
                image_size: sidecar.image_size,
                vocab: (sidecar.vocabulary.len() + 2) as i64,
                word_dim: 0,
                hidden: 0,
                channels: [0, 0, 0],
                classes: sidecar.answers.len() as i64,
                pair: sidecar.pair,
                glimpses: 1,
            },
            tokenizer,
            answers: Answers {
                list: sidecar.answers.clone(),
            },
            script: true,
            norm,
        };
        let m = Model::script_on(meta, archive, device)?;
        let blank = std::sync::Arc::new(vec![
            0.0;
            (3 * sidecar.image_size * sidecar.image_size) as usize
        ]);
        let probe = Example {
            images: (0..if sidecar.pair { 2 } else { 1 })
                .map(|_| blank.clone())
                .collect(),
            text: "what".into(),
            label: 0,
        };
        let (x, t, _) = m.batch(&[&probe, &probe]);
        let out = m.logits(&x, &t)?;
        if out.size() != [2, sidecar.answers.len() as i64] {
            return Err(bad(format!(
                "sidecar `answers`: the TorchScript module returned shape {:?} for a batch of 2; the sidecar's {} answers need [2, {}]",
                out.size(),
                sidecar.answers.len(),
                sidecar.answers.len()
            )));
        }
        Ok(m)
    }

    /// Logits `[B, classes]`.
    pub fn logits(&self, images: &Tensor, tokens: &Tensor) -> Result<Tensor, NnError> {
        Ok(match &self.net {
            Net::Film(f) => f.logits(images, tokens),
            Net::Script(m) if self.meta.tokenizer.hf.is_some() => {
                // `batch` stacks ids and attention mask as [B, 2, L].
                let ids = tokens.select(1, 0);
                let mask = tokens.select(1, 1);
                m.forward_ts(&[images, &ids, &mask])?
            }
            Net::Script(m) => m.forward_ts(&[images, tokens])?,
        })
    }

    pub(super) fn batch(&self, examples: &[&Example]) -> (Tensor, Tensor, Tensor) {
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
            match &self.meta.tokenizer.hf {
                Some(h) => {
                    let (ids, mask) = h.encode(&e.text, self.meta.tokenizer.max_len);
                    toks.extend(ids);
                    toks.extend(mask);
                }
                None => toks.extend(self.meta.tokenizer.encode(&e.text)),
            }
            labels.push(e.label);
        }
        let b = examples.len() as i64;
        let images = if self.meta.film.pair {
            Tensor::from_slice(&flat).view([b, 2, 3, s, s])
        } else {
            Tensor::from_slice(&flat).view([b, 3, s, s])
        };
        let l = self.meta.tokenizer.max_len as i64;
        let tokens = match self.meta.tokenizer.hf {
            Some(_) => Tensor::from_slice(&toks).view([b, 2, l]),
            None => Tensor::from_slice(&toks).view([b, l]),
        };
        let images = renormalise(images, self.meta.norm);
        (
            images.to_device(dev),
            tokens.to_device(dev),
            Tensor::from_slice(&labels).to_device(dev),
        )
    }

    /// Class probabilities for each example (labels ignored). A forward
    /// pass that fails (a user's module that raises: its own message) or
    /// gives NaN or inf is an error, never a distribution.
    pub fn predict(&self, examples: &[Example]) -> Result<Vec<Vec<f32>>, NnError> {
        let mut out = Vec::with_capacity(examples.len());
        tch::no_grad(|| {
            for chunk in examples.chunks(256) {
                let refs: Vec<&Example> = chunk.iter().collect();
                let (x, t, _) = self.batch(&refs);
                let logits = self.logits(&x, &t)?.to_device(Device::Cpu);
                let rows = logits.size().first().copied().unwrap_or(0);
                let raw: Vec<f32> = Vec::try_from(logits.to_kind(Kind::Float).view([-1]))?;
                if rows != chunk.len() as i64 {
                    return Err(NnError::Output(format!(
                        "returned {rows} rows for a batch of {}",
                        chunk.len()
                    )));
                }
                if let Some(i) = raw.iter().position(|v| !v.is_finite()) {
                    let k = raw.len() / chunk.len().max(1);
                    return Err(NnError::Output(format!(
                        "returned {} (not a finite number) for example {} of a batch of {}",
                        raw[i],
                        i / k.max(1) + 1,
                        chunk.len()
                    )));
                }
                let p = Tensor::from_slice(&raw)
                    .view([rows, -1])
                    .softmax(-1, Kind::Float);
                let v: Vec<f32> = Vec::try_from(p.view([-1]))?;
                let k = v.len() / rows.max(1) as usize;
                out.extend(v.chunks(k.max(1)).map(|c| c.to_vec()));
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Accuracy (0-1) and the predicted class of each example.
    pub fn evaluate(&self, examples: &[Example]) -> Result<(f64, Vec<i64>), NnError> {
        let probs = self.predict(examples)?;
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
        Ok((correct as f64 / examples.len().max(1) as f64, preds))
    }

    /// Starts from another network's weights where they fit: every
    /// variable with the same name and shape is copied, and the word
    /// embedding row by row for the words both tokenizers know. Returns
    /// how many variables were copied (fully or, for the embedding, in
    /// part).
    pub fn init_from(&mut self, other: &Model) -> usize {
        let src = other.vs.variables();
        let dst = self.vs.variables();
        let mut copied = 0;
        tch::no_grad(|| {
            for (name, mut t) in dst {
                let Some(s) = src.get(&name) else { continue };
                if name == "embed.weight" {
                    let mut any = false;
                    for (i, w) in self.meta.tokenizer.words.iter().enumerate() {
                        if let Some(j) = other.meta.tokenizer.words.iter().position(|x| x == w) {
                            t.get(i as i64).copy_(&s.get(j as i64));
                            any = true;
                        }
                    }
                    copied += any as usize;
                } else if t.size() == s.size() {
                    t.copy_(s);
                    copied += 1;
                }
            }
        });
        copied
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
                let loss = self.logits(&x, &t)?.cross_entropy_for_logits(&y);
                opt.backward_step(&loss);
                total += loss.double_value(&[]);
                batches += 1;
            }
            let loss = total / batches.max(1) as f64;
            let (acc, _) = self.evaluate(dev)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A pixel in vpd's normalisation comes out in the module's own.
    #[test]
    fn renormalise_gives_the_modules_own_normalisation() {
        use crate::data::images::{MEAN, STD};
        let n = Norm {
            mean: [0.481, 0.458, 0.408],
            std: [0.269, 0.261, 0.276],
        };
        // One 1x1 image per channel value p = 0.2, 0.6, 0.9.
        let p = [0.2f32, 0.6, 0.9];
        let vpd: Vec<f32> = (0..3).map(|c| (p[c] - MEAN[c]) / STD[c]).collect();
        let out = renormalise(Tensor::from_slice(&vpd).view([1, 3, 1, 1]), Some(n));
        let got = Vec::<f32>::try_from(out.reshape([-1])).unwrap();
        for c in 0..3 {
            let want = (p[c] - n.mean[c]) / n.std[c];
            assert!(
                (got[c] - want).abs() < 1e-5,
                "channel {c}: {} vs {want}",
                got[c]
            );
        }
        // A pair ([B, 2, 3, S, S]) is scaled per channel too.
        let pair = Tensor::from_slice(&[vpd.clone(), vpd].concat()).view([1, 2, 3, 1, 1]);
        let got = Vec::<f32>::try_from(renormalise(pair, Some(n)).reshape([-1])).unwrap();
        assert!((got[5] - (p[2] - n.mean[2]) / n.std[2]).abs() < 1e-5);
        // vpd's own normalisation is left as it is.
        let same = renormalise(Tensor::from_slice(&p).view([1, 3, 1, 1]), None);
        assert_eq!(
            Vec::<f32>::try_from(same.reshape([-1])).unwrap(),
            p.to_vec()
        );
    }

    /// The real tokenizer's shape of things: ids with special tokens,
    /// right padding and a mask; a long text cut keeping its last token.
    #[test]
    fn a_word_level_hf_tokenizer_pads_right_with_a_mask() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
            "normalizer":{"type":"Lowercase"},"pre_tokenizer":{"type":"Whitespace"},
            "post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"[PAD]":0,"[UNK]":1,"what":2,"color":3,"is":4,"it":5},"unk_token":"[UNK]"}}"#;
        let t = super::super::text::HfTokenizer::from_json(json).unwrap();
        assert_eq!(
            t.encode("What color is it", 6),
            (vec![2, 3, 4, 5, 0, 0], vec![1, 1, 1, 1, 0, 0])
        );
        assert_eq!(t.encode("what zebra", 3), (vec![2, 1, 0], vec![1, 1, 0]));
        assert_eq!(t.encode("what color is it", 2).0, vec![2, 5]);
        assert!(super::super::text::HfTokenizer::from_json("{\"model\": 1}").is_err());
        assert!(super::super::text::HfTokenizer::from_json("not json").is_err());
    }
}
