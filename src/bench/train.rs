//! `vpd bench train`: the VQA student's training speed in vpd (tch) against
//! the same network and loop in PyTorch, run by the venv's Python with the
//! same torch. Same initial weights and batches (the first step's loss of
//! the two must agree), same thread count, the two interleaved round by
//! round (alternating which goes first), median and spread reported.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use serde::Serialize;

use super::Spread;
use crate::data::rng::Rng;
use crate::data::world::{plural, COLORS, SHAPES};
use crate::models;
use crate::nn::model::{Example, Model};
use crate::nn::speed::{self, Batches, Stepper};
use crate::nn::{DeviceChoice, NnError};

const SCRIPT: &str = include_str!("train_reference.py");
/// Examples written for both sides (a multiple of every batch size).
const EXAMPLES: usize = 1280;

/// An error of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum TrainBenchError {
    /// A file or the Python process.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The PyTorch side failed.
    #[error("PyTorch reference ({python}): {message}")]
    Python {
        /// The interpreter.
        python: String,
        /// What went wrong, with its stderr.
        message: String,
    },
    /// Network.
    #[error(transparent)]
    Nn(#[from] NnError),
    /// The two sides did not start from the same point.
    #[error("first-step losses differ at batch {batch}: vpd {rust}, PyTorch {pytorch}")]
    Mismatch {
        /// Batch size.
        batch: usize,
        /// vpd's loss.
        rust: f64,
        /// PyTorch's loss.
        pytorch: f64,
    },
    /// The GPU and the CPU side did not start from the same point.
    #[error("first-step losses differ at batch {batch}: GPU {gpu}, CPU {cpu}")]
    DeviceMismatch {
        /// Batch size.
        batch: usize,
        /// The GPU side's loss.
        gpu: f64,
        /// The CPU side's loss.
        cpu: f64,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TrainBenchError {
    let what = what.into();
    move |source| TrainBenchError::Io { what, source }
}

/// One batch size's result.
#[derive(Debug, Clone, Serialize)]
pub struct TrainRow {
    /// Batch size.
    pub batch: usize,
    /// vpd, median examples per second.
    pub rust_examples_per_s: f64,
    /// PyTorch, median examples per second.
    pub pytorch_examples_per_s: f64,
    /// Median of vpd over median of PyTorch.
    pub ratio: f64,
    /// vpd's examples per second over the rounds.
    pub rust: Spread,
    /// PyTorch's examples per second over the rounds.
    pub pytorch: Spread,
    /// First-step loss of each (asserted equal).
    pub first_loss: [f64; 2],
    /// Achieved GFLOP/s of vpd and of PyTorch (medians).
    pub gflops: [f64; 2],
    /// Steps per round.
    pub steps: usize,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct TrainBench {
    /// One row per batch size.
    pub rows: Vec<TrainRow>,
    /// Threads of both sides.
    pub threads: i32,
    /// Measured rounds per batch size (after one warm-up round).
    pub rounds: usize,
    /// torch of the Python side.
    pub pytorch_version: String,
    /// The interpreter.
    pub python: String,
    /// FLOPs of one training example.
    pub flops_per_example: f64,
    /// The machine's float32 matrix-multiply rate through libtorch.
    pub matmul_gflops: f64,
    /// The malloc settings of both sides: `vpd` (see
    /// `nn::libtorch::MALLOC_ENV`) or `glibc default` (`VPD_MALLOC=default`).
    pub allocator: String,
    /// The machine it ran on.
    pub machine: crate::machine::Machine,
}

/// The venv's Python: `VPD_TORCH_PYTHON`, else the interpreter of the
/// virtual environment that holds the libtorch vpd was built against.
pub fn find_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VPD_TORCH_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let lib = PathBuf::from(option_env!("VPD_LIBTORCH_LIB")?);
    // <venv>/lib/python3.X/site-packages/torch/lib
    let venv = lib.ancestors().nth(5)?;
    let py = venv.join("bin/python");
    py.exists().then_some(py)
}

struct Reference {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    python: String,
    version: String,
}

impl Reference {
    fn start(python: &Path, dir: &Path) -> Result<Reference, TrainBenchError> {
        let py = python.display().to_string();
        let mut cmd = Command::new(python);
        if crate::nn::allocator_tuned() {
            cmd.envs(crate::nn::MALLOC_ENV);
        }
        let mut child = cmd
            .arg(dir.join("train_reference.py"))
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(format!("starting {py}")))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut r = Reference {
            child,
            stdin,
            stdout,
            python: py,
            version: String::new(),
        };
        let hello = r.line()?;
        r.version = hello["torch"].as_str().unwrap_or("?").to_string();
        // The two sides must run with the same malloc settings: they
        // decide the batch-64 figure (see the README).
        for (k, v) in crate::nn::MALLOC_ENV {
            let theirs = hello["malloc"][k].as_str().map(str::to_string);
            let ours = if crate::nn::allocator_tuned() {
                Some(v.to_string())
            } else {
                std::env::var(k).ok()
            };
            if theirs != ours {
                let show = |v: Option<String>| v.unwrap_or_else(|| "unset".into());
                return Err(r.fail(&format!(
                    "its {k} is {}, vpd's is {}: the two sides would not run with the same malloc settings",
                    show(theirs),
                    show(ours)
                )));
            }
        }
        Ok(r)
    }

    fn fail(&mut self, message: &str) -> TrainBenchError {
        let _ = self.child.kill();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        let tail: Vec<&str> = err.lines().rev().take(6).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        TrainBenchError::Python {
            python: self.python.clone(),
            message: format!("{message}; stderr: {}", tail.join(" | ")),
        }
    }

    fn line(&mut self) -> Result<serde_json::Value, TrainBenchError> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(0) | Err(_) => return Err(self.fail("it exited")),
            Ok(_) => {}
        }
        serde_json::from_str(&s).map_err(|e| self.fail(&format!("bad reply {s:?}: {e}")))
    }

    fn steps(
        &mut self,
        batch: usize,
        start: usize,
        steps: usize,
    ) -> Result<(f64, f64), TrainBenchError> {
        let cmd = serde_json::json!({"batch": batch, "start": start, "steps": steps});
        if writeln!(self.stdin, "{cmd}").is_err() || self.stdin.flush().is_err() {
            return Err(self.fail("its stdin closed"));
        }
        let r = self.line()?;
        Ok((
            r["seconds"].as_f64().unwrap_or(f64::NAN),
            r["first_loss"].as_f64().unwrap_or(f64::NAN),
        ))
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Random inputs with texts from the student's question templates.
fn data(seed: u64, classes: usize) -> Vec<Example> {
    let mut rng = Rng::new(seed, "bench-train");
    let s = models::INPUT as usize;
    (0..EXAMPLES)
        .map(|i| {
            let img: Vec<f32> = (0..3 * s * s).map(|_| rng.normal() as f32).collect();
            let sh = *rng.pick(&SHAPES);
            let c = *rng.pick(&COLORS);
            let text = match i % 3 {
                0 => format!("What color is the {sh}?"),
                1 => format!("Is there a {c} {sh} in the image?"),
                _ => format!("How many {} are in the image?", plural(sh)),
            };
            Example {
                images: vec![Arc::new(img)],
                text,
                label: rng.below(classes) as i64,
            }
        })
        .collect()
}

fn write_inputs(
    dir: &Path,
    model: &Model,
    ex: &[Example],
    threads: i32,
    lr: f64,
) -> Result<(), TrainBenchError> {
    let mut images = Vec::with_capacity(ex.len() * ex[0].images[0].len() * 4);
    let mut tokens = Vec::new();
    let mut labels = Vec::new();
    for e in ex {
        for x in e.images[0].iter() {
            images.extend_from_slice(&x.to_le_bytes());
        }
        for t in speed::tokens(model, &e.text) {
            tokens.extend_from_slice(&t.to_le_bytes());
        }
        labels.extend_from_slice(&e.label.to_le_bytes());
    }
    let cfg = serde_json::json!({
        "threads": threads, "lr": lr, "film": model.meta.film,
        "examples": ex.len(), "max_len": model.meta.tokenizer.max_len,
    });
    for (name, bytes) in [
        ("images.bin", images),
        ("tokens.bin", tokens),
        ("labels.bin", labels),
        ("config.json", serde_json::to_vec(&cfg).expect("json")),
        ("train_reference.py", SCRIPT.as_bytes().to_vec()),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(io(format!("writing {}", p.display())))?;
    }
    model.export_weights(dir)?;
    Ok(())
}

/// Both sides' malloc settings, in words.
fn allocator() -> String {
    if crate::nn::allocator_tuned() {
        let kv: Vec<String> = crate::nn::MALLOC_ENV
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("vpd ({})", kv.join(" "))
    } else {
        "glibc default (VPD_MALLOC=default)".to_string()
    }
}

/// Runs the benchmark: for each batch size, a fresh student (same seed)
/// on both sides, one warm-up round, then `rounds` interleaved rounds.
pub fn run(
    python: &Path,
    threads: i32,
    rounds: usize,
    progress: &dyn Fn(&str),
) -> Result<TrainBench, TrainBenchError> {
    crate::nn::set_threads(threads);
    let lr = 2e-3;
    let base = std::env::temp_dir().join(format!("vpd-bench-train-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&base).map_err(io(format!("creating {}", base.display())))?;
    let result = (|| {
        let meta = models::student_meta();
        let mut rows = Vec::new();
        let mut version = String::new();
        let flops = speed::train_flops_per_example(&meta.film, meta.tokenizer.max_len);
        for (batch, steps) in [(1usize, 160usize), (64, 20)] {
            progress(&format!("batch {batch}: starting"));
            let model = Model::new(meta.clone(), DeviceChoice::Cpu, 0)?;
            let ex = data(batch as u64, meta.answers.list.len());
            let dir = base.join(format!("b{batch}"));
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            write_inputs(&dir, &model, &ex, threads, lr)?;
            let mut py = Reference::start(python, &dir)?;
            version = py.version.clone();
            let batches = Batches::new(&model, &ex);
            let mut rust = Stepper::new(&model, lr)?;
            let (mut rs, mut ps) = (Vec::new(), Vec::new());
            let mut first = [f64::NAN; 2];
            let mut start = 0;
            for round in 0..=rounds {
                let mut pair = [(0.0, 0.0); 2];
                for k in 0..2 {
                    let side = (k + round) % 2;
                    // Let the other process's idle OpenMP threads stop
                    // spinning before this side's timing starts (they
                    // would otherwise take the cores from it).
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    pair[side] = if side == 0 {
                        rust.steps(&batches, batch, start, steps)?
                    } else {
                        py.steps(batch, start, steps)?
                    };
                }
                if round == 0 {
                    first = [pair[0].1, pair[1].1];
                    let tol = 1e-4 * first[0].abs().max(1.0);
                    if (first[0] - first[1]).abs() > tol || first[0].is_nan() {
                        return Err(TrainBenchError::Mismatch {
                            batch,
                            rust: first[0],
                            pytorch: first[1],
                        });
                    }
                } else {
                    let n = (batch * steps) as f64;
                    rs.push(n / pair[0].0);
                    ps.push(n / pair[1].0);
                }
                start += steps;
                progress(&format!("batch {batch}: round {round}/{rounds}"));
            }
            let (r, p) = (Spread::of(rs), Spread::of(ps));
            rows.push(TrainRow {
                batch,
                rust_examples_per_s: r.median,
                pytorch_examples_per_s: p.median,
                ratio: r.median / p.median,
                rust: r,
                pytorch: p,
                first_loss: first,
                gflops: [r.median * flops / 1e9, p.median * flops / 1e9],
                steps,
            });
        }
        Ok(TrainBench {
            rows,
            threads,
            rounds,
            pytorch_version: version,
            python: python.display().to_string(),
            flops_per_example: flops,
            matmul_gflops: speed::matmul_gflops(1024, 5),
            allocator: allocator(),
            machine: crate::machine::Machine::this(),
        })
    })();
    let _ = std::fs::remove_dir_all(&base);
    result
}

/// One batch size's result of [`run_devices`].
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRow {
    /// Batch size.
    pub batch: usize,
    /// vpd on the GPU, examples per second over the rounds.
    pub gpu: Spread,
    /// vpd on the CPU, examples per second over the rounds.
    pub cpu: Spread,
    /// Median GPU over median CPU.
    pub speedup: f64,
    /// First-step loss on the GPU and on the CPU (same weights and batch;
    /// they agree to float rounding, checked to 1e-3).
    pub first_loss: [f64; 2],
    /// Steps per round, GPU and CPU.
    pub steps: [usize; 2],
}

/// vpd's training on a GPU against vpd's on the CPU.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceBench {
    /// The GPU (`cuda:N`).
    pub device: String,
    /// What libtorch says of it.
    pub gpu: String,
    /// One row per batch size.
    pub rows: Vec<DeviceRow>,
    /// libtorch threads of the CPU side.
    pub threads: i32,
    /// Measured rounds per batch size (after one warm-up round).
    pub rounds: usize,
    /// The machine it ran on.
    pub machine: crate::machine::Machine,
}

/// Runs vpd's VQA student training on `device` and on the CPU: for each
/// batch size the same initial weights (drawn on the CPU, copied to the
/// GPU) and the same batches, one warm-up round, then `rounds` rounds,
/// alternating which side goes first. The GPU's timings end with a
/// synchronisation, so that they include the queued kernels.
pub fn run_devices(
    device: DeviceChoice,
    threads: i32,
    rounds: usize,
    progress: &dyn Fn(&str),
) -> Result<DeviceBench, TrainBenchError> {
    crate::nn::set_threads(threads);
    device.to_tch()?;
    let lr = 2e-3;
    let meta = models::student_meta();
    let mut rows = Vec::new();
    for (batch, cpu_steps, gpu_steps) in [(64usize, 20usize, 100usize), (256, 5, 50)] {
        progress(&format!("batch {batch}: starting"));
        let cpu = Model::new(meta.clone(), DeviceChoice::Cpu, 0)?;
        let gpu = Model::from_bytes(&cpu.to_bytes()?, device)?;
        let ex = data(batch as u64, meta.answers.list.len());
        let (cb, gb) = (Batches::new(&cpu, &ex), Batches::new(&gpu, &ex));
        let (mut cs, mut gs) = (Stepper::new(&cpu, lr)?, Stepper::new(&gpu, lr)?);
        let (mut cr, mut gr) = (Vec::new(), Vec::new());
        let mut first = [f64::NAN; 2];
        let (mut cstart, mut gstart) = (0, 0);
        for round in 0..=rounds {
            let mut losses = [f64::NAN; 2];
            for k in 0..2 {
                if (k + round) % 2 == 0 {
                    let t0 = std::time::Instant::now();
                    let (_, l) = gs.steps(&gb, batch, gstart, gpu_steps)?;
                    device.synchronize();
                    let s = t0.elapsed().as_secs_f64();
                    losses[0] = l;
                    if round > 0 {
                        gr.push((batch * gpu_steps) as f64 / s);
                    }
                    gstart += gpu_steps;
                } else {
                    let (s, l) = cs.steps(&cb, batch, cstart, cpu_steps)?;
                    losses[1] = l;
                    if round > 0 {
                        cr.push((batch * cpu_steps) as f64 / s);
                    }
                    cstart += cpu_steps;
                }
            }
            if round == 0 {
                first = losses;
                let tol = 1e-3 * first[1].abs().max(1.0);
                if (first[0] - first[1]).abs() > tol || first[0].is_nan() {
                    return Err(TrainBenchError::DeviceMismatch {
                        batch,
                        gpu: first[0],
                        cpu: first[1],
                    });
                }
            }
            progress(&format!("batch {batch}: round {round}/{rounds}"));
        }
        let (g, c) = (Spread::of(gr), Spread::of(cr));
        rows.push(DeviceRow {
            batch,
            speedup: g.median / c.median,
            gpu: g,
            cpu: c,
            first_loss: first,
            steps: [gpu_steps, cpu_steps],
        });
    }
    Ok(DeviceBench {
        device: device.to_string(),
        gpu: crate::nn::cuda_summary(),
        rows,
        threads,
        rounds,
        machine: crate::machine::Machine::this(),
    })
}
