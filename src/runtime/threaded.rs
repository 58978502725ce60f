//! A module answered on a thread of its own, with the per-call time limit
//! of the actor runtime (`VPD_MODULE_TIMEOUT_S`): what `vpd program run`
//! uses, so that a user's module that never returns is an error naming it
//! after the limit, not a command that hangs. The thread that is still
//! computing is left behind; the process ends without waiting for it.

use std::sync::mpsc;
use std::time::Duration;

use crate::program::interp::{ImageVal, Perception, PerceptionError, ScoredBox};

enum Ask {
    Loc(
        ImageVal,
        String,
        mpsc::Sender<Result<Vec<ScoredBox>, PerceptionError>>,
    ),
    Vqa(
        ImageVal,
        String,
        mpsc::Sender<Result<String, PerceptionError>>,
    ),
}

/// A [`Perception`] made and run on its own thread.
pub struct Threaded {
    names: [String; 2],
    tx: mpsc::Sender<Ask>,
    limit: Duration,
}

impl Threaded {
    /// Makes the perception with `make` on a new thread (so that it need
    /// not be `Send`); `make`'s error is returned with its message.
    pub fn start<E: std::fmt::Display + Send + 'static>(
        limit: Duration,
        make: impl FnOnce() -> Result<Box<dyn Perception>, E> + Send + 'static,
    ) -> Result<Threaded, String> {
        let (tx, rx) = mpsc::channel::<Ask>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("vpd-module".into())
            .spawn(move || {
                let mut p = match make() {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok([p.name("LOC"), p.name("VQA")]));
                for ask in rx {
                    match ask {
                        Ask::Loc(i, o, back) => {
                            let _ = back.send(p.loc(&i, &o));
                        }
                        Ask::Vqa(i, q, back) => {
                            let _ = back.send(p.vqa(&i, &q));
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            return Err(format!("cannot start the module thread: {e}"));
        }
        match ready_rx.recv() {
            Ok(Ok(names)) => Ok(Threaded { names, tx, limit }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the module thread ended while loading its module (a panic)".into()),
        }
    }

    fn ask<T>(
        &self,
        slot: usize,
        make: impl FnOnce(mpsc::Sender<Result<T, PerceptionError>>) -> Ask,
    ) -> Result<T, PerceptionError> {
        let (back, answer) = mpsc::channel();
        let module = &self.names[slot];
        if self.tx.send(make(back)).is_err() {
            return Err(PerceptionError::Worker(format!(
                "{module}: its thread stopped"
            )));
        }
        match answer.recv_timeout(self.limit) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PerceptionError::Worker(format!(
                "{module} gave no answer within {} s (VPD_MODULE_TIMEOUT_S sets the limit)",
                self.limit.as_secs_f64()
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PerceptionError::Worker(format!(
                "{module}: its thread stopped (a panic in the module's code)"
            ))),
        }
    }
}

impl Perception for Threaded {
    fn name(&self, module: &str) -> String {
        self.names[usize::from(module != "LOC")].clone()
    }
    fn loc(&mut self, image: &ImageVal, object: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        let (i, o) = (image.clone(), object.to_string());
        self.ask(0, |b| Ask::Loc(i, o, b))
    }
    fn vqa(&mut self, image: &ImageVal, question: &str) -> Result<String, PerceptionError> {
        let (i, q) = (image.clone(), question.to_string());
        self.ask(1, |b| Ask::Vqa(i, q, b))
    }
}
