//! The LOC student: a small single-shot detector conditioned on the object
//! name. A FiLM trunk (the name's GRU encoding scales and shifts the
//! convolution channels) maps the image to a grid of cells; each cell
//! predicts whether the centre of a named object falls in it and the
//! object's box (offset in the cell, log width and height). Boxes above a
//! score threshold go through non-maximum suppression.

use std::io::Cursor;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig, RNN};
use tch::{Device, Kind, Reduction, Tensor};

use super::checkpoint;
use super::film::{conv, Film};
use super::text::Tokenizer;
use super::{DeviceChoice, NnError};

/// Sizes of a detector; stored with its checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    /// Input side in pixels.
    pub image_size: i64,
    /// Words in the tokenizer.
    pub vocab: i64,
    /// Word embedding width.
    pub word_dim: i64,
    /// Name encoding width (GRU).
    pub hidden: i64,
    /// Channels of the four convolutions (two of stride 2: grid = side / 4).
    pub channels: [i64; 4],
}

/// What travels with the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorMeta {
    /// `loc-student`.
    pub kind: crate::vocab::ModelKind,
    /// Network sizes.
    pub config: DetectorConfig,
    /// Tokenizer of object names.
    pub tokenizer: Tokenizer,
    /// Detection settings; the threshold is chosen on the dev split.
    #[serde(default)]
    pub settings: DetectSettings,
}

/// One training or evaluation example: an image as `to_model_input`
/// floats, an object name, and the boxes of the objects it names as
/// fractions of the image `[x, y, w, h]` (none: the object is absent).
#[derive(Debug, Clone)]
pub struct DetExample {
    /// `[3, S, S]` floats.
    pub image: Arc<Vec<f32>>,
    /// Object name, e.g. `circle` or `red circle`.
    pub name: String,
    /// Boxes, fractions of the image.
    pub boxes: Vec<[f32; 4]>,
}

/// A detection: box as fractions `[x, y, w, h]` and score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x, y, w, h]`, fractions of the image.
    pub rect: [f32; 4],
    /// Objectness probability.
    pub score: f32,
}

/// Detection settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectSettings {
    /// Cells below this score are not boxes.
    pub threshold: f32,
    /// Non-maximum suppression drops a box overlapping a better one by more
    /// than this IoU.
    pub nms_iou: f32,
    /// Most boxes returned.
    pub max_boxes: usize,
}

impl Default for DetectSettings {
    fn default() -> Self {
        DetectSettings {
            threshold: 0.5,
            nms_iou: 0.5,
            max_boxes: 10,
        }
    }
}

/// Intersection over union of two `[x, y, w, h]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let iy = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if ix <= 0.0 || iy <= 0.0 {
        return 0.0;
    }
    let inter = ix * iy;
    inter / (a[2] * a[3] + b[2] * b[3] - inter).max(1e-9)
}

/// Greedy non-maximum suppression: best first, dropping boxes that overlap
/// a kept one by more than `max_iou`.
pub fn nms(mut dets: Vec<Detection>, max_iou: f32, max_boxes: usize) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.len() >= max_boxes {
            break;
        }
        if kept.iter().all(|k| iou(k.rect, d.rect) <= max_iou) {
            kept.push(d);
        }
    }
    kept
}

/// Precision and recall counts at an IoU threshold: each ground-truth box
/// matches at most one detection (greedy, best score first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct PrCounts {
    /// Detections matched to a ground-truth box.
    pub true_positives: usize,
    /// Detections.
    pub detections: usize,
    /// Ground-truth boxes.
    pub ground_truth: usize,
}

impl PrCounts {
    /// Adds one image's detections against its ground truth.
    pub fn add(&mut self, dets: &[Detection], truth: &[[f32; 4]], at_iou: f32) {
        let mut used = vec![false; truth.len()];
        for d in dets {
            let best = truth
                .iter()
                .enumerate()
                .filter(|(i, _)| !used[*i])
                .map(|(i, t)| (i, iou(d.rect, *t)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, v)) = best {
                if v >= at_iou {
                    used[i] = true;
                    self.true_positives += 1;
                }
            }
        }
        self.detections += dets.len();
        self.ground_truth += truth.len();
    }
    /// Precision, percent (100 when nothing was detected).
    pub fn precision(&self) -> f64 {
        if self.detections == 0 {
            return 100.0;
        }
        100.0 * self.true_positives as f64 / self.detections as f64
    }
    /// Recall, percent (100 when there was nothing to find).
    pub fn recall(&self) -> f64 {
        if self.ground_truth == 0 {
            return 100.0;
        }
        100.0 * self.true_positives as f64 / self.ground_truth as f64
    }
}

/// Counts of detections at or above `threshold`.
pub(crate) fn counts(dets: &[Vec<Detection>], examples: &[DetExample], threshold: f32) -> PrCounts {
    let mut c = PrCounts::default();
    for (d, e) in dets.iter().zip(examples) {
        let kept: Vec<Detection> = d.iter().copied().filter(|x| x.score >= threshold).collect();
        c.add(&kept, &e.boxes, 0.5);
    }
    c
}

/// F1 (0-1) of precision and recall.
pub fn f1(c: &PrCounts) -> f64 {
    let (p, r) = (c.precision() / 100.0, c.recall() / 100.0);
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

/// A detector with its metadata and weights.
pub struct Detector {
    /// Metadata.
    pub meta: DetectorMeta,
    /// Weights.
    pub vs: nn::VarStore,
    embed: nn::Embedding,
    gru: nn::GRU,
    convs: Vec<nn::Conv2D>,
    films: Vec<nn::Linear>,
    head: nn::Conv2D,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("meta", &self.meta)
            .finish()
    }
}

/// Training settings of the detector.
pub use super::model::TrainConfig;

/// What training did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DetTrainReport {
    /// Mean training loss per epoch.
    pub train_loss: Vec<f64>,
    /// Dev F1 at IoU 0.5 per epoch, 0-1.
    pub dev_f1: Vec<f64>,
    /// The epoch whose weights were kept (0-based).
    pub best_epoch: usize,
    /// Its dev F1.
    pub best_dev_f1: f64,
    /// Seconds.
    pub seconds: f64,
}

impl Detector {
    /// A fresh detector with weights from `seed`.
    /// The weights are drawn on the CPU and copied to the device (see
    /// `Model::new`).
    pub fn new(meta: DetectorMeta, device: DeviceChoice, seed: u64) -> Result<Detector, NnError> {
        let dev = device.to_tch()?;
        let cpu = Detector::on(meta.clone(), Device::Cpu, seed);
        if dev == Device::Cpu {
            return Ok(cpu);
        }
        let mut d = Detector::on(meta, dev, seed);
        d.vs.copy(&cpu.vs)?;
        Ok(d)
    }

    fn on(meta: DetectorMeta, device: Device, seed: u64) -> Detector {
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let c = &meta.config;
        let [a, b, d, e] = c.channels;
        let ins = [3, a, b + 2, d];
        let outs = [a, b, d, e];
        let strides = [2, 2, 1, 1];
        let convs = (0..4)
            .map(|k| conv(&p / format!("c{k}"), ins[k], outs[k], strides[k]))
            .collect();
        let films = (1..4)
            .map(|k| {
                nn::linear(
                    &p / format!("film{k}"),
                    c.hidden,
                    2 * outs[k],
                    Default::default(),
                )
            })
            .collect();
        Detector {
            embed: nn::embedding(&p / "embed", c.vocab, c.word_dim, Default::default()),
            gru: nn::gru(&p / "gru", c.word_dim, c.hidden, Default::default()),
            convs,
            films,
            head: nn::conv2d(&p / "head", e, 5, 1, Default::default()),
            meta,
            vs,
        }
    }

    /// The checkpoint blob.
    pub fn to_bytes(&self) -> Result<Vec<u8>, NnError> {
        checkpoint::pack(&self.meta, &self.vs)
    }

    /// Loads a checkpoint blob.
    pub fn from_bytes(bytes: &[u8], device: DeviceChoice) -> Result<Detector, NnError> {
        let (meta, weights): (DetectorMeta, &[u8]) = checkpoint::unpack(bytes)?;
        if meta.kind != crate::vocab::ModelKind::LocStudent {
            return Err(NnError::Checkpoint(format!(
                "a {} checkpoint, not a detector",
                meta.kind
            )));
        }
        let mut d = Detector::on(meta, device.to_tch()?, 0);
        d.vs.load_from_stream(Cursor::new(weights))?;
        Ok(d)
    }

    /// Side of the output grid.
    pub fn grid(&self) -> i64 {
        self.meta.config.image_size / 4
    }

    /// `[B, 5, G, G]`: objectness logit, x and y offset logits in the cell,
    /// log width and height in cells.
    fn forward(&self, images: &Tensor, tokens: &Tensor) -> Tensor {
        let (_, state) = self.gru.seq(&tokens.apply(&self.embed));
        let q = state.value().squeeze_dim(0);
        let x = images.apply(&self.convs[0]).relu();
        let x = Film::film(&x.apply(&self.convs[1]), &q.apply(&self.films[0]));
        let x = Film::with_coords(&x);
        let x = Film::film(&x.apply(&self.convs[2]), &q.apply(&self.films[1]));
        let x = Film::film(&x.apply(&self.convs[3]), &q.apply(&self.films[2]));
        x.apply(&self.head)
    }

    fn inputs(&self, examples: &[&DetExample]) -> (Tensor, Tensor) {
        let s = self.meta.config.image_size;
        let mut flat = Vec::with_capacity(examples.len() * (3 * s * s) as usize);
        let mut toks = Vec::new();
        for e in examples {
            flat.extend_from_slice(&e.image);
            toks.extend(self.meta.tokenizer.encode(&e.name));
        }
        let b = examples.len() as i64;
        let dev = self.vs.device();
        (
            Tensor::from_slice(&flat).view([b, 3, s, s]).to_device(dev),
            Tensor::from_slice(&toks)
                .view([b, self.meta.tokenizer.max_len as i64])
                .to_device(dev),
        )
    }

    /// Targets: objectness `[B, G, G]`, box targets `[B, 4, G, G]`, mask
    /// of cells with an object `[B, G, G]`.
    fn targets(&self, examples: &[&DetExample]) -> (Tensor, Tensor) {
        let g = self.grid() as usize;
        let b = examples.len();
        let mut obj = vec![0f32; b * g * g];
        let mut reg = vec![0f32; b * 4 * g * g];
        for (i, e) in examples.iter().enumerate() {
            for bx in &e.boxes {
                let (cx, cy) = (bx[0] + bx[2] / 2.0, bx[1] + bx[3] / 2.0);
                let gx = ((cx * g as f32) as usize).min(g - 1);
                let gy = ((cy * g as f32) as usize).min(g - 1);
                let cell = gy * g + gx;
                obj[i * g * g + cell] = 1.0;
                let vals = [
                    cx * g as f32 - gx as f32,
                    cy * g as f32 - gy as f32,
                    (bx[2] * g as f32).max(1e-3).ln(),
                    (bx[3] * g as f32).max(1e-3).ln(),
                ];
                for (k, v) in vals.iter().enumerate() {
                    reg[i * 4 * g * g + k * g * g + cell] = *v;
                }
            }
        }
        let dev = self.vs.device();
        let gi = g as i64;
        (
            Tensor::from_slice(&obj)
                .view([b as i64, gi, gi])
                .to_device(dev),
            Tensor::from_slice(&reg)
                .view([b as i64, 4, gi, gi])
                .to_device(dev),
        )
    }

    fn loss(&self, examples: &[&DetExample]) -> Tensor {
        let (x, t) = self.inputs(examples);
        let out = self.forward(&x, &t);
        let (obj, reg) = self.targets(examples);
        let logit = out.select(1, 0);
        // Positives are rare (a few cells of 256): weigh them up.
        let weight = &obj * 10.0 + 1.0;
        let cls = logit.binary_cross_entropy_with_logits::<Tensor>(
            &obj,
            Some(weight),
            None,
            Reduction::Mean,
        );
        let mask = obj.unsqueeze(1);
        let pred = Tensor::cat(&[out.narrow(1, 1, 2).sigmoid(), out.narrow(1, 3, 2)], 1);
        let npos = obj.sum(Kind::Float).clamp_min(1.0);
        let box_loss = ((pred - reg).abs() * &mask).sum(Kind::Float) / npos;
        cls + box_loss
    }

    /// Detections for each example (boxes ignored), after thresholding and
    /// non-maximum suppression, best first.
    pub fn detect(&self, examples: &[DetExample], s: &DetectSettings) -> Vec<Vec<Detection>> {
        let g = self.grid();
        let cells = (g * g) as usize;
        let mut out = Vec::with_capacity(examples.len());
        tch::no_grad(|| {
            for chunk in examples.chunks(256) {
                let refs: Vec<&DetExample> = chunk.iter().collect();
                let (x, t) = self.inputs(&refs);
                let o = self.forward(&x, &t).to_device(Device::Cpu);
                let score = Vec::<f32>::try_from(o.select(1, 0).sigmoid().reshape([-1]))
                    .unwrap_or_default();
                let off = Vec::<f32>::try_from(o.narrow(1, 1, 2).sigmoid().reshape([-1]))
                    .unwrap_or_default();
                let size =
                    Vec::<f32>::try_from(o.narrow(1, 3, 2).exp().reshape([-1])).unwrap_or_default();
                for i in 0..refs.len() {
                    let mut dets = Vec::new();
                    for c in 0..cells {
                        let sc = score[i * cells + c];
                        if sc < s.threshold {
                            continue;
                        }
                        let (gx, gy) = ((c % g as usize) as f32, (c / g as usize) as f32);
                        let cx = (gx + off[i * 2 * cells + c]) / g as f32;
                        let cy = (gy + off[i * 2 * cells + cells + c]) / g as f32;
                        let w = size[i * 2 * cells + c] / g as f32;
                        let h = size[i * 2 * cells + cells + c] / g as f32;
                        dets.push(Detection {
                            rect: [cx - w / 2.0, cy - h / 2.0, w, h],
                            score: sc,
                        });
                    }
                    out.push(nms(dets, s.nms_iou, s.max_boxes));
                }
            }
        });
        out
    }

    /// Precision and recall counts at IoU 0.5.
    pub fn evaluate(&self, examples: &[DetExample], s: &DetectSettings) -> PrCounts {
        counts(&self.detect(examples, s), examples, s.threshold)
    }

    /// The threshold (0.1 to 0.9) with the best F1 at IoU 0.5 on
    /// `examples`, and that F1 (0-1).
    pub fn best_threshold(&self, examples: &[DetExample]) -> (f32, f64) {
        let low = DetectSettings {
            threshold: 0.1,
            ..self.meta.settings
        };
        let dets = self.detect(examples, &low);
        (0..=16)
            .map(|k| 0.1 + 0.05 * k as f32)
            .map(|t| (t, f1(&counts(&dets, examples, t))))
            .fold((0.5, -1.0), |best, x| if x.1 > best.1 { x } else { best })
    }

    /// Trains with Adam, keeping the weights of the best dev F1 (early
    /// stopping after `patience` epochs without gain).
    pub fn train(
        &mut self,
        train: &[DetExample],
        dev: &[DetExample],
        cfg: &TrainConfig,
        progress: &dyn Fn(usize, f64, f64),
    ) -> Result<DetTrainReport, NnError> {
        let t0 = std::time::Instant::now();
        tch::manual_seed(cfg.seed as i64);
        let mut opt = nn::Adam::default().build(&self.vs, cfg.lr)?;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut rng = crate::data::rng::Rng::new(cfg.seed, "train-order");
        let mut report = DetTrainReport {
            train_loss: vec![],
            dev_f1: vec![],
            best_epoch: 0,
            best_dev_f1: -1.0,
            seconds: 0.0,
        };
        let mut best: Option<(Vec<u8>, f32)> = None;
        for epoch in 0..cfg.epochs {
            rng.shuffle(&mut order);
            let (mut total, mut batches) = (0.0, 0);
            for chunk in order.chunks(cfg.batch.max(1)) {
                let refs: Vec<&DetExample> = chunk.iter().map(|i| &train[*i]).collect();
                let loss = self.loss(&refs);
                opt.backward_step(&loss);
                total += loss.double_value(&[]);
                batches += 1;
            }
            let loss = total / batches.max(1) as f64;
            let (threshold, f1) = self.best_threshold(dev);
            report.train_loss.push(loss);
            report.dev_f1.push(f1);
            progress(epoch, loss, f1);
            if f1 > report.best_dev_f1 {
                report.best_dev_f1 = f1;
                report.best_epoch = epoch;
                let mut buf = Vec::new();
                self.vs.save_to_stream(&mut buf)?;
                best = Some((buf, threshold));
            } else if epoch - report.best_epoch >= cfg.patience {
                break;
            }
        }
        if let Some((b, threshold)) = best {
            self.vs.load_from_stream(Cursor::new(b))?;
            self.meta.settings.threshold = threshold;
        }
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }
}
