//! `vpd report RUN|SWEEP`: one self-contained HTML page (no network: the
//! plots are inline SVG, the style inline) with the summary table, accuracy
//! against distillation samples per task, the pointer modes side by side,
//! every version of each module across the tasks, the stored evaluations
//! of those versions, and the lineage graph.
//!
//! Everything comes from the store: the run reports kept as blobs on the
//! run records, the module versions and the evaluations (`gather`); the
//! page is made from what was gathered alone (`html`, `plot`).

mod gather;
mod html;
pub mod plot;

use uuid::Uuid;

use crate::store::StoreError;

pub use gather::{gather, relabelled, resolve, EvalRow, ReportData, VersionInfo};
pub use html::{render, Page, Plots};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing to report on.
    #[error("{0}")]
    Refused(String),
    /// A plot failed to draw.
    #[error("plot `{plot}`: {detail}")]
    Plot {
        /// Which plot.
        plot: String,
        /// What went wrong.
        detail: String,
    },
}

/// What a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One run.
    Run(Uuid),
    /// A sweep's runs.
    Sweep(Uuid),
}
