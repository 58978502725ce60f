//! The Coordinator actor and its actor system: `run_trial` records the run,
//! starts the Teacher, Trainer and Coordinator actors on a thread of their
//! own, hands the phases to the Coordinator and records how the run ended.
//! A panic inside an actor reaches the caller as its message, never as
//! "Mailbox has closed".

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::distill::actors::{Teacher, Trainer};
use crate::distill::context::Links;
use crate::experiment::report::*;
use crate::experiment::{Experiment, Progress, RunError};
use crate::runtime::exec::ask;
use crate::store::{NewRun, RunStatus, Store};

use super::phases::phases;

/// The Coordinator actor: runs the phases of one run on its own thread and
/// talks to the Teacher and the Trainer by messages.
pub(crate) struct Coordinator {
    links: Arc<Links>,
}

impl Actor for Coordinator {
    type Context = SyncContext<Self>;
}

/// The phases of one run, as the Coordinator runs them.
pub(crate) type RunBody = Box<dyn FnOnce(&Links) -> Result<RunReport, RunError> + Send>;

/// Run these phases; the answer is the run's report or why it stopped.
#[derive(Message)]
#[rtype(result = "Result<RunReport, RunError>")]
pub(crate) struct Go(RunBody);

impl Handler<Go> for Coordinator {
    type Result = Result<RunReport, RunError>;
    fn handle(&mut self, msg: Go, _: &mut SyncContext<Self>) -> Self::Result {
        // A panic here would end the actor's thread and reach the caller
        // as a closed mailbox; it is caught and answered with its message.
        let links = &self.links;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (msg.0)(links))).unwrap_or_else(
            |payload| {
                Err(RunError::Panicked {
                    actor: "Coordinator",
                    message: crate::panics::message(payload.as_ref()),
                })
            },
        )
    }
}

/// The machine's cores.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs an experiment, one trial of a sweep or a lone run (`sweep` is
/// `None`): records the run, drives its phases through the Coordinator
/// actor, and records how it ended. `threads` libtorch threads: the
/// machine's cores for a lone run, divided by the trials running at once
/// in a sweep; the result depends on it, and the run records it.
pub fn run_trial(
    store: &Store,
    exp: &Experiment,
    sweep: Option<uuid::Uuid>,
    threads: usize,
    progress: Arc<dyn Progress>,
) -> Result<RunReport, RunError> {
    crate::nn::set_threads(threads as i32);
    let run = store.start_run(NewRun {
        experiment: exp.name.clone(),
        config: serde_json::to_value(exp).expect("config serialises"),
        seed: exp.seed,
        dataset: None,
        sweep,
        torch_version: crate::nn::libtorch_info().version,
        threads: tch_threads(),
    })?;
    let t0 = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let sys = System::new();
        sys.block_on(async move {
            let links = Arc::new(Links {
                teacher: SyncArbiter::start(1, Teacher::default),
                trainer: SyncArbiter::start(1, Trainer::default),
                arbiter: Arbiter::current(),
            });
            let l = links.clone();
            let coordinator = SyncArbiter::start(1, move || Coordinator { links: l.clone() });
            let _ = tx.send((coordinator, links.arbiter.clone(), System::current()));
        });
        let _ = sys.run();
    });
    let (coordinator, arbiter, system) = rx.recv().map_err(|_| RunError::ActorSystem)?;
    let (s, e, id) = (store.clone(), exp.clone(), run.id);
    let job: RunBody = Box::new(move |links| phases(&s, &e, id, links, &progress));
    let out = ask(&arbiter, coordinator.send(Go(job)));
    system.stop();
    let _ = handle.join();
    let result = match out {
        Ok(Ok(mut r)) => {
            r.seconds.insert("total".into(), t0.elapsed().as_secs_f64());
            Ok(r)
        }
        Ok(Err(e)) => Err(e),
        Err(message) => Err(RunError::Mailbox {
            actor: "Coordinator",
            message,
        }),
    };
    match &result {
        Ok(r) => store.finish_run_with_report(
            run.id,
            RunStatus::Finished,
            &serde_json::to_vec(r).expect("report serialises"),
        )?,
        Err(e) => {
            // The versions this run committed before it failed stay (nothing
            // is lost), marked by the run's `failed` status in `vpd versions`.
            store.finish_run(run.id, RunStatus::Failed, Some(e.to_string()))?
        }
    };
    result
}

/// Makes what a trial of `exp` shares with the others of its sweep (data,
/// pre-trained versions, baseline evaluations) with `threads` libtorch
/// threads, without running the trial.
pub fn prepare_trial(
    store: &Store,
    exp: &Experiment,
    threads: usize,
    progress: &dyn Progress,
) -> Result<(), RunError> {
    crate::nn::set_threads(threads as i32);
    super::phases::prepare(store, exp, progress)
}

fn tch_threads() -> i32 {
    crate::nn::libtorch_info().threads
}
