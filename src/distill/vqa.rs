//! VQA distillation: the adapter's queries in every pointer mode, the
//! teacher's soft labels, the Trainer fitting a new student version.

use std::collections::BTreeMap;
use std::time::Instant;

use super::actors::{Fit, Samples, Trained};
use super::adapter::{self, Adapted, Pointer, StepSample};
use crate::data::ImageCache;
use crate::models::{self, ModelError};
use crate::nn::fit::{argmax, DistillConfig, DistillReport, SoftExample};
use crate::nn::model::Example;
use crate::nn::DeviceChoice;
use crate::program::interp::Perception;
use crate::program::oracle::Oracle;
use crate::runtime::exec::{self, ask};
use crate::store::{ModuleVersion, NewVersion};
use crate::vocab::ModelKind;

use super::context::{collect, label, task_name, Cx, Labels};
use crate::experiment::report::*;
use crate::experiment::{Role, RunError};

pub(crate) fn best(p: &[f32]) -> f64 {
    p.iter().cloned().fold(0.0f32, f32::max) as f64
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn distill_vqa(
    cx: &Cx,
    vqa: &ModuleVersion,
    steps: &[StepSample],
    dev_steps: &[StepSample],
    truth: &BTreeMap<String, exec::Job>,
    images: &ImageCache,
    seconds: &mut BTreeMap<String, f64>,
) -> Result<(ModuleVersion, PseudoLabels, DistillReport), RunError> {
    let (store, exp, d) = (cx.store, cx.exp, &cx.exp.distill);
    let progress = cx.progress();
    let dname = task_name(cx.task);
    let t0 = Instant::now();
    let parent = models::StoredNet::of(store, vqa)?;
    let student_meta = parent
        .load(DeviceChoice::Cpu)
        .map_err(ModelError::from)?
        .meta;
    if student_meta.kind != ModelKind::VqaStudent {
        return Err(ModelError::WrongKind {
            version: label(vqa),
            kind: student_meta.kind.to_string(),
            wanted: "VQA student",
        }
        .into());
    }
    let tside = cx.teacher_meta.film.image_size as u32;
    let sside = student_meta.film.image_size as u32;
    progress.phase(
        &format!(
            "teacher {} labelling {} VQA steps in every pointer mode",
            label(cx.teacher),
            steps.len()
        ),
        None,
    );
    let label_all =
        |steps: &[StepSample], mode: Pointer, images: &ImageCache| -> Result<Labels, RunError> {
            let mut adapted: Vec<Option<Adapted>> = Vec::with_capacity(steps.len());
            for s in steps {
                adapted.push(adapter::adapt(
                    &exp.adapter,
                    cx.task,
                    s,
                    mode,
                    images,
                    tside,
                )?);
            }
            let queries: Vec<Example> = adapted
                .iter()
                .flatten()
                .flat_map(|a| a.queries.iter().cloned())
                .collect();
            let probs = cx.label(queries)?;
            let mut at = 0;
            Ok(adapted
                .iter()
                .map(|a| {
                    let a = a.as_ref()?;
                    let p = &probs[at..at + a.queries.len()];
                    at += a.queries.len();
                    adapter::soft_label(
                        &a.combine,
                        p,
                        &cx.teacher_meta.answers,
                        &student_meta.answers,
                    )
                    .map(|l| (l, a.rewritten))
                })
                .collect())
        };
    let mut by_mode = BTreeMap::new();
    for mode in Pointer::ALL {
        by_mode.insert(mode, label_all(steps, mode, images)?);
    }
    let used = &by_mode[&d.pointer];
    let kept: Vec<(usize, &Vec<f32>)> = used
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.as_ref().map(|(p, _)| (i, p)))
        .filter(|(_, p)| best(p) >= d.confidence)
        .collect();
    let mut train = Vec::with_capacity(kept.len());
    for (i, p) in &kept {
        train.push(SoftExample {
            images: vec![adapter::student_input(&steps[*i], images, sside)?],
            text: steps[*i].question.clone(),
            target: (*p).clone(),
        });
    }
    let dev_labels = label_all(dev_steps, d.pointer, images)?;
    let mut dev = Vec::new();
    for (s, l) in dev_steps.iter().zip(&dev_labels) {
        if let Some((p, _)) = l.as_ref().filter(|(p, _)| best(p) >= d.confidence) {
            dev.push(SoftExample {
                images: vec![adapter::student_input(s, images, sside)?],
                text: s.question.clone(),
                target: p.clone(),
            });
        }
    }
    seconds.insert("distill: label vqa".into(), t0.elapsed().as_secs_f64());
    let (n_train, n_dev) = (train.len(), dev.len());
    if n_train == 0 {
        return Err(RunError::NothingToTrain(format!(
            "no pseudo-labelled VQA steps to train on ({} VQA steps on the {dname} distill split, confidence {})",
            steps.len(),
            d.confidence
        )));
    }
    // The generic corpus is replayed only where the run may use it (not on
    // real data unless `data.allow_synthetic`).
    let replay: Vec<Example> = match cx.generic {
        Some(g) if d.replay > 0.0 || d.self_distill > 0.0 => {
            models::generic_examples_at(g, "train", &student_meta.answers, sside)?
                .into_iter()
                .take(d.replay_samples)
                .map(|(e, _)| e)
                .collect()
        }
        _ => Vec::new(),
    };
    let mut anchor = Vec::new();
    if let (true, (t, Some(src))) = (d.anchor_other > 0, &cx.other) {
        let (other_steps, _) = collect(
            store,
            exp,
            *t,
            src,
            Role::Distill,
            d.anchor_other,
            cx.vqa,
            cx.loc,
            progress,
        )?;
        for s in &other_steps {
            anchor.push(Example {
                images: vec![adapter::student_input(s, images, sside)?],
                text: s.question.clone(),
                label: 0,
            });
        }
    }
    let send = |samples: Vec<SoftExample>, dev: bool| {
        ask(
            &cx.links.arbiter,
            cx.links.trainer.send(Samples { samples, dev }),
        )
        .map_err(RunError::mailbox("Trainer"))
    };
    send(train, false)?;
    send(dev, true)?;
    let cfg = DistillConfig {
        epochs: d.epochs,
        batch: d.batch,
        lr: d.lr,
        temperature: d.temperature,
        ce_weight: d.ce_weight,
        replay_weight: d.replay,
        self_distill_weight: d.self_distill,
        patience: d.patience,
        seed: exp.seed,
    };
    let what = format!("distilling {} on {n_train} {dname} samples", label(vqa));
    progress.phase(&what, Some(d.epochs as u64));
    let t1 = Instant::now();
    let trained: Trained = ask(
        &cx.links.arbiter,
        cx.links.trainer.send(Fit {
            parent,
            replay,
            anchor,
            config: cfg.clone(),
            on_epoch: cx.tick(&what, "agreement with the teacher"),
            device: exp.device(),
        }),
    )
    .map_err(RunError::mailbox("Trainer"))?
    .map_err(RunError::actor("Trainer"))?;
    seconds.insert("distill: train vqa".into(), t1.elapsed().as_secs_f64());
    // Pseudo-label accuracy: measurement only, after training.
    let mut answers_true: Vec<Option<String>> = Vec::with_capacity(steps.len());
    for s in steps {
        let Some(j) = truth.get(&s.example) else {
            answers_true.push(None);
            continue;
        };
        let mut oracle = Oracle {
            scenes: j.scenes.clone(),
        };
        let img = s.image(images)?;
        let q = s.named_question().unwrap_or_else(|| s.question.clone());
        answers_true.push(oracle.vqa(&img, &q).ok());
    }
    let mut modes = BTreeMap::new();
    for (mode, labels) in &by_mode {
        let mut m = ModeAccuracy::default();
        for (l, t) in labels.iter().zip(&answers_true) {
            let (Some((p, rewritten)), Some(t)) = (l, t) else {
                continue;
            };
            m.n += 1;
            m.rewritten += *rewritten as usize;
            m.correct += (student_meta.answers.list.get(argmax(p)) == Some(t)) as usize;
        }
        m.accuracy = ModeAccuracy::percent(m.correct, m.n);
        modes.insert(mode.as_str().to_string(), m);
    }
    let mut student = ModeAccuracy::default();
    for (s, t) in steps.iter().zip(&answers_true) {
        if let Some(t) = t {
            student.n += 1;
            student.correct += (s.answer.as_ref() == Some(t)) as usize;
        }
    }
    student.accuracy = ModeAccuracy::percent(student.correct, student.n);
    let scored: Vec<&(usize, &Vec<f32>)> = kept
        .iter()
        .filter(|(i, _)| answers_true[*i].is_some())
        .collect();
    let kept_correct = scored
        .iter()
        .filter(|(i, p)| answers_true[*i].as_ref() == student_meta.answers.list.get(argmax(p)))
        .count();
    let rewritten = by_mode[&Pointer::Name]
        .iter()
        .flatten()
        .filter(|(_, r)| *r)
        .count();
    let pseudo = PseudoLabels {
        task: dname.clone(),
        steps: steps.len(),
        unadapted: used.iter().filter(|l| l.is_none()).count(),
        unscored: answers_true.iter().filter(|a| a.is_none()).count(),
        rewritten_share: 100.0 * rewritten as f64 / steps.len().max(1) as f64,
        by_mode: modes,
        student,
        used: d.pointer.as_str().into(),
        confidence: d.confidence,
        kept: n_train,
        kept_accuracy: ModeAccuracy::percent(kept_correct, scored.len()),
        dev: n_dev,
    };
    let version = store.save_version(
        NewVersion {
            module: vqa.module.clone(),
            parent: Some(vqa.id),
            teacher: Some(cx.teacher.id),
            data: Some(cx.dataset()),
            config: serde_json::json!({
                "experiment": exp.name, "seed": exp.seed, "distill": d, "trainer": cfg,
            }),
            metrics: serde_json::json!({
                "pseudo_labels": pseudo, "training": trained.report,
                "samples": trained.samples.0, "dev_samples": trained.samples.1,
            }),
            run: Some(cx.run_id),
        },
        &trained.checkpoint,
        None,
    )?;
    Ok((version, pseudo, trained.report))
}
