//! Why a run stopped: typed, so that the run record and the user see the
//! cause, and callers can tell the kinds apart without reading messages.

use crate::data::DataError;
use crate::models::ModelError;
use crate::runtime::exec::ExecError;
use crate::runtime::score::EvalError;
use crate::store::StoreError;

/// An error that stops a run (recorded on the run as `failed`).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A network.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An evaluation.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// Execution.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The experiment or its sweep cannot be run as written.
    #[error(transparent)]
    Config(#[from] crate::experiment::ConfigError),
    /// The run's actor system did not start.
    #[error("the run's actor system did not start")]
    ActorSystem,
    /// An actor answered with an error.
    #[error("the {actor} actor: {source}")]
    Actor {
        /// Teacher or Trainer.
        actor: &'static str,
        /// What it said.
        #[source]
        source: ActorError,
    },
    /// An actor's mailbox closed or the run's actor system stopped.
    #[error("the {actor} actor: {message}")]
    Mailbox {
        /// Teacher, Trainer or Coordinator.
        actor: &'static str,
        /// What the mailbox said.
        message: String,
    },
    /// Code inside an actor panicked: a defect in vpd, reported with its
    /// message instead of a closed mailbox.
    #[error("the {actor} actor panicked: {message} (a defect in vpd; please report it)")]
    Panicked {
        /// Teacher, Trainer or Coordinator.
        actor: &'static str,
        /// The panic's message.
        message: String,
    },
    /// A version the experiment names is not in the store, and vpd does
    /// not pre-train it on demand.
    #[error("{reference} is not in this store ({why})")]
    NotInStore {
        /// MODULE@REF as the experiment names it.
        reference: String,
        /// Why it is not made.
        why: String,
    },
    /// The distillation task has no teacher.
    #[error("no teacher for {0}: set `teachers.{0}`")]
    NoTeacher(crate::vocab::Task),
    /// Nothing left to train on after the teacher's labels were filtered.
    #[error("{0}")]
    NothingToTrain(String),
    /// A real dataset the experiment names is unusable, or the run would
    /// need synthetic data the experiment does not allow.
    #[error("{0}")]
    RealData(String),
    /// A module the experiment asks to distil that vpd cannot train (a
    /// user's TorchScript LOC).
    #[error("{0}")]
    NotDistillable(String),
    /// An invariant of vpd's own code does not hold.
    #[error("internal error: {0} (a defect in vpd; please report it)")]
    Defect(String),
    /// A stored evaluation lacks the per-example details a paired
    /// comparison needs.
    #[error("evaluation {0} has no details")]
    NoDetails(uuid::Uuid),
}

impl RunError {
    /// An actor's error answer, named with the actor; a panic inside it is
    /// `Panicked`, as the Coordinator's is.
    pub fn actor(actor: &'static str) -> impl Fn(ActorError) -> RunError {
        move |e| match e {
            ActorError::Panicked(message) => RunError::Panicked { actor, message },
            source => RunError::Actor { actor, source },
        }
    }
    /// An actor's closed mailbox, as the caller saw it.
    pub fn mailbox(actor: &'static str) -> impl Fn(String) -> RunError {
        move |message| RunError::Mailbox { actor, message }
    }
}

/// Why the Teacher or the Trainer gave no result (the caller names the
/// actor with `RunError::actor`).
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// A network failed: loading a checkpoint, libtorch, the device.
    #[error(transparent)]
    Nn(#[from] crate::nn::NnError),
    /// A label was asked for before the teacher was loaded.
    #[error("the teacher is not loaded")]
    NotLoaded,
    /// The teacher's forward pass failed or gave NaN or inf.
    #[error("teacher {module}: {message}")]
    Module {
        /// `module@number`.
        module: String,
        /// Its own message.
        message: String,
    },
    /// The teacher answered some query with an empty distribution.
    #[error("the teacher gave no distribution for some queries")]
    NoDistribution,
    /// The handler's code panicked: a defect in vpd, with its message.
    #[error("panicked: {0}")]
    Panicked(String),
}
