//! A teacher scored on a task's split, and a job turned into a network's
//! training or evaluation example.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::exec::{self, Job};
use crate::data::DataError;
use crate::models::{self};
use crate::store::{Pipeline, Store, VersionRef};
use crate::vocab::Task;

use super::jobs::Slice;
use super::score::{record, stored, EvalError, EvalReport, ExecStats};

/// The data a task is evaluated on: the data the task's teacher was
/// trained with when the store has it, else synthetic data of `n` per
/// split (made when missing).
pub fn task_data(store: &Store, task: Task, n: usize) -> Result<PathBuf, EvalError> {
    let r = VersionRef {
        module: task.teacher_module(),
        reference: "teacher".into(),
    };
    Ok(models::data_of_version(store, Some(&r), task.into(), n)?)
}

/// A job as the input of a network that takes `side`-pixel images: its
/// images decoded (a missing or broken one is the error), its text, and
/// the id of its expected answer among `answers` (none: outside them).
pub fn example_of(
    job: &Job,
    answers: &crate::nn::text::Answers,
    side: u32,
) -> Result<(crate::nn::model::Example, Option<i64>), DataError> {
    let images = job
        .inputs
        .iter()
        .map(|(_, p)| {
            crate::data::images::decode(p)
                .map(|img| std::sync::Arc::new(crate::data::images::to_model_input(&img, side)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let label = answers.id(&job.expected);
    Ok((
        crate::nn::model::Example {
            images,
            text: job.text.clone(),
            label: label.unwrap_or(0),
        },
        label,
    ))
}

/// Training examples of a slice for a network with these answers and
/// input size, with each example's family; jobs whose answer is outside
/// the answers are left out, and an unreadable image is an error naming it.
pub fn training_examples(
    task: Task,
    slice: &Slice,
    answers: &crate::nn::text::Answers,
    side: u32,
) -> Result<Vec<(crate::nn::model::Example, String)>, EvalError> {
    let mut out = Vec::new();
    for j in slice.jobs(task, true)? {
        if let (e, Some(_)) = example_of(&j, answers, side)? {
            out.push((e, j.kind.clone()));
        }
    }
    Ok(out)
}

/// Evaluates a task's teacher end to end (question and whole image, or
/// statement and pair, to the answer) on a slice, recorded as the pipeline
/// `{teacher: id}` with generator `end-to-end`. Every example counts: one
/// whose answer is outside the teacher's answers, or whose image cannot be
/// read, is wrong (and reported as such).
pub fn evaluate_teacher(
    store: &Store,
    task: Task,
    r: &VersionRef,
    slice: &Slice,
    force: bool,
    device: crate::nn::DeviceChoice,
) -> Result<EvalReport, EvalError> {
    let v = store.resolve(r)?;
    let key = Pipeline {
        task: task.to_string(),
        split: slice.split.clone(),
        generator: "end-to-end".into(),
        dataset: slice.key(task)?,
        modules: BTreeMap::from([("teacher".to_string(), v.id.to_string())]),
    };
    if let Some(r) = stored(store, &key, force)? {
        return Ok(r);
    }
    let (_, model) = models::load_model(store, r, device)?;
    // Every input at the teacher's own size (a user's teacher need not
    // take 64 px).
    let side = u32::try_from(model.meta.film.image_size).unwrap_or(crate::models::INPUT);
    let answers = &model.meta.answers;
    let jobs = slice.jobs(task, true)?;
    if jobs.is_empty() {
        return Err(EvalError::EmptySplit {
            split: slice.split.clone(),
            data: slice.data.clone(),
        });
    }
    let t0 = std::time::Instant::now();
    let (mut outside, mut failed) = (0u64, 0u64);
    let mut outcomes = Vec::with_capacity(jobs.len());
    // In chunks, so that a large split is never decoded at once.
    for chunk in jobs.chunks(256) {
        let mut inputs = Vec::new();
        let mut at = Vec::new();
        for j in chunk {
            let outcome = |predicted: Option<String>, correct: bool, error: Option<String>| {
                exec::ExampleOutcome {
                    id: j.id.clone(),
                    kind: j.kind.clone(),
                    text: j.text.clone(),
                    program: None,
                    correct,
                    predicted,
                    expected: j.expected.clone(),
                    error,
                    failed_at: None,
                    trace: None,
                }
            };
            match example_of(j, answers, side) {
                Ok((e, Some(_))) => {
                    at.push(outcomes.len());
                    inputs.push(e);
                    outcomes.push(outcome(None, false, None));
                }
                // A GQA question whose answer is outside the teacher's
                // answers cannot be answered right: counted wrong (leaving
                // it out made the teacher look better), and reported.
                Ok((_, None)) => {
                    outside += 1;
                    outcomes.push(outcome(
                        None,
                        false,
                        Some(format!(
                            "the answer `{}` is outside the teacher's answers",
                            j.expected
                        )),
                    ));
                }
                Err(e) => {
                    failed += 1;
                    outcomes.push(outcome(None, false, Some(e.to_string())));
                }
            }
        }
        let (_, preds) = model.evaluate(&inputs).map_err(|e| EvalError::Module {
            module: r.to_string(),
            message: e.to_string(),
        })?;
        for ((k, p), e) in at.into_iter().zip(preds).zip(&inputs) {
            outcomes[k].predicted = answers.list.get(p as usize).cloned();
            outcomes[k].correct = p == e.label;
        }
    }
    let wrong = outcomes.iter().filter(|o| !o.correct).count() as u64;
    let stats = ExecStats {
        seconds: t0.elapsed().as_secs_f64(),
        max_in_flight: 1,
        vqa_mean_batch: 0.0,
        loc_mean_batch: 0.0,
        restarts: 0,
    };
    record(
        store,
        key,
        slice,
        &outcomes,
        (Some((0, wrong)), failed),
        Some(outside),
        stats,
    )
}
