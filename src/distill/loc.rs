//! LOC distillation: the teacher verifies the parent's candidate boxes; the
//! accepted boxes train a new detector version.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::actors::{FitLoc, TrainedLoc};
use super::adapter::{self, StepSample};
use crate::data::ImageCache;
use crate::models::{self, ModelError};
use crate::nn::detector::{
    DetExample, DetTrainReport, DetectSettings, Detection, Detector, PrCounts,
};
use crate::nn::model::TrainConfig;
use crate::nn::DeviceChoice;
use crate::runtime::exec::{self, ask};
use crate::store::{ModuleVersion, NewVersion};

use super::context::{label, task_name, Cx};
use crate::experiment::report::*;
use crate::experiment::RunError;

/// Ground-truth boxes of `query` in a step's image, as fractions of it.
pub(crate) fn truth_boxes(s: &StepSample, job: &exec::Job) -> Option<Vec<[f32; 4]>> {
    let g = job.scenes.get(&s.source)?;
    let r = s.rect;
    Some(
        g.objects
            .values()
            .filter(|o| models::names(&s.question, &o.name, &o.attributes))
            .filter(|o| {
                let (cx, cy) = (o.x + o.w / 2.0, o.y + o.h / 2.0);
                cx >= r.x && cx < r.x + r.w && cy >= r.y && cy < r.y + r.h
            })
            .map(|o| {
                [
                    ((o.x - r.x) / r.w) as f32,
                    ((o.y - r.y) / r.h) as f32,
                    (o.w / r.w) as f32,
                    (o.h / r.h) as f32,
                ]
            })
            .collect(),
    )
}

/// A candidate's crop: its box enlarged 1.5 times, as CROP cuts it.
pub(crate) fn candidate_crop(img: &image::RgbImage, d: &Detection) -> image::RgbImage {
    let (w, h) = (img.width() as f64, img.height() as f64);
    let [x, y, bw, bh] = d.rect.map(f64::from);
    let (cx, cy) = ((x + bw / 2.0) * w, (y + bh / 2.0) * h);
    let (hw, hh) = (0.75 * bw * w, 0.75 * bh * h);
    let x0 = (cx - hw).floor().clamp(0.0, w - 1.0);
    let y0 = (cy - hh).floor().clamp(0.0, h - 1.0);
    let x1 = (cx + hw).ceil().clamp(x0 + 1.0, w);
    let y1 = (cy + hh).ceil().clamp(y0 + 1.0, h);
    image::imageops::crop_imm(
        img,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image()
}

pub(crate) fn distill_loc(
    cx: &Cx,
    loc: &ModuleVersion,
    steps: &[StepSample],
    dev_steps: &[StepSample],
    truth: &BTreeMap<String, exec::Job>,
    images: &ImageCache,
) -> Result<(ModuleVersion, LocPseudo, DetTrainReport), RunError> {
    let (store, exp, d) = (cx.store, cx.exp, &cx.exp.distill);
    let progress = cx.progress();
    let parent_bytes = Arc::new(store.blobs().get(&loc.blob)?);
    let det = Detector::from_bytes(&parent_bytes, DeviceChoice::Cpu).map_err(ModelError::from)?;
    let side = det.meta.config.image_size as u32;
    let tside = cx.teacher_meta.film.image_size as u32;
    progress.phase(
        &format!(
            "teacher {} verifying LOC's candidate boxes on {} steps",
            label(cx.teacher),
            steps.len()
        ),
        None,
    );
    let settings = DetectSettings {
        threshold: d.loc_candidates as f32,
        nms_iou: 0.5,
        max_boxes: 3,
    };
    // Candidates and the teacher's verdict on each; (example, candidates,
    // accepted flags, the parent's own detections).
    type Verified = (DetExample, Vec<Detection>, Vec<bool>, Vec<Detection>);
    let verify = |steps: &[StepSample], images: &ImageCache| -> Result<Vec<Verified>, RunError> {
        let mut exs = Vec::with_capacity(steps.len());
        let mut pixels = Vec::with_capacity(steps.len());
        for s in steps {
            let img = s.image(images)?;
            exs.push(DetExample {
                image: Arc::new(crate::data::images::to_model_input(&img.pixels, side)),
                name: s.question.clone(),
                boxes: vec![],
            });
            pixels.push(img.pixels);
        }
        let cands = det.detect(&exs, &settings);
        let own = det.detect(&exs, &det.meta.settings);
        let mut queries = Vec::new();
        let mut spans = Vec::new();
        for ((s, c), px) in steps.iter().zip(&cands).zip(&pixels) {
            for d in c {
                let q = adapter::verification_queries(
                    &exp.adapter,
                    &s.question,
                    &candidate_crop(px, d),
                    tside,
                );
                spans.push(q.len());
                queries.extend(q);
            }
        }
        let probs = cx.label(queries)?;
        let mut at = 0;
        let mut k = 0;
        let mut out = Vec::with_capacity(steps.len());
        for ((ex, c), o) in exs.into_iter().zip(cands).zip(own) {
            let mut ok = Vec::with_capacity(c.len());
            for _ in &c {
                let n = spans[k];
                ok.push(
                    adapter::verdict(&probs[at..at + n], &cx.teacher_meta.answers) as f64
                        >= d.loc_accept,
                );
                at += n;
                k += 1;
            }
            out.push((ex, c, ok, o));
        }
        Ok(out)
    };
    let verified = verify(steps, images)?;
    let to_examples = |v: &[Verified]| -> Vec<DetExample> {
        v.iter()
            .filter(|(_, _, ok, _)| ok.iter().any(|x| *x))
            .map(|(ex, c, ok, _)| DetExample {
                boxes: c
                    .iter()
                    .zip(ok)
                    .filter(|(_, k)| **k)
                    .map(|(d, _)| d.rect)
                    .collect(),
                ..ex.clone()
            })
            .collect()
    };
    let mut train = to_examples(&verified);
    let dev = to_examples(&verify(dev_steps, images)?);
    let examples = train.len();
    if examples == 0 {
        return Err(RunError::NothingToTrain(format!(
            "the teacher accepted no LOC candidate on the {} distill split ({} LOC steps)",
            task_name(cx.task),
            steps.len()
        )));
    }
    if let (true, Some(g)) = (d.replay > 0.0, cx.generic) {
        train.extend(
            models::generic_detections(g, "train")?
                .into_iter()
                .take(d.replay_samples),
        );
    }
    let cfg = TrainConfig {
        epochs: d.epochs,
        batch: d.batch,
        lr: d.lr,
        patience: d.patience,
        seed: exp.seed,
    };
    let what = format!(
        "distilling {} on {examples} verified {} examples",
        label(loc),
        task_name(cx.task)
    );
    progress.phase(&what, Some(d.epochs as u64));
    let trained: TrainedLoc = ask(
        &cx.links.arbiter,
        cx.links.trainer.send(FitLoc {
            parent: parent_bytes,
            train,
            dev: dev.clone(),
            config: cfg.clone(),
            on_epoch: cx.tick(&what, "F1 against verified boxes"),
            device: exp.device(),
        }),
    )
    .map_err(RunError::mailbox("Trainer"))?
    .map_err(RunError::actor("Trainer"))?;
    // Measurement only, after training.
    let (mut acc, mut all, mut own) = (
        PrCounts::default(),
        PrCounts::default(),
        PrCounts::default(),
    );
    let mut scored = 0;
    for (s, (_, c, ok, o)) in steps.iter().zip(&verified) {
        let Some(t) = truth.get(&s.example).and_then(|j| truth_boxes(s, j)) else {
            continue;
        };
        scored += 1;
        let a: Vec<Detection> = c
            .iter()
            .zip(ok)
            .filter(|(_, k)| **k)
            .map(|(d, _)| *d)
            .collect();
        acc.add(&a, &t, 0.5);
        all.add(c, &t, 0.5);
        own.add(o, &t, 0.5);
    }
    let pr = |c: &PrCounts| (c.precision(), c.recall());
    let pseudo = LocPseudo {
        steps: steps.len(),
        candidates: verified.iter().map(|v| v.1.len()).sum(),
        accepted: verified
            .iter()
            .map(|v| v.2.iter().filter(|x| **x).count())
            .sum(),
        examples,
        dev: dev.len(),
        verified: pr(&acc),
        all_candidates: pr(&all),
        parent: pr(&own),
        scored,
    };
    let version = store.save_version(
        NewVersion {
            module: loc.module.clone(),
            parent: Some(loc.id),
            teacher: Some(cx.teacher.id),
            data: Some(cx.dataset()),
            config: serde_json::json!({
                "experiment": exp.name, "seed": exp.seed, "distill": d, "trainer": cfg,
            }),
            metrics: serde_json::json!({ "pseudo_boxes": pseudo, "training": trained.report }),
            run: Some(cx.run_id),
        },
        &trained.checkpoint,
        None,
    )?;
    Ok((version, pseudo, trained.report))
}
