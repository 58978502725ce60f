//! `vpd bench store|...`.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use visprog_distiller::bench;

use super::common::{DeviceOpt, GpuOpt};
use super::Cli;

/// `vpd bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Rendering speed; loading a GQA file the size of the real train split
    /// (streaming) against a tenth of it as one JSON tree, with peak memory.
    Data(DataArgs),
    /// The base pipeline on a GQA split in the real layout the size of
    /// testdev-balanced, the decoded-image cache bounded against off, with
    /// programs per second and peak memory (each run in its own process).
    RealEval(RealEvalArgs),
    /// Internal: one evaluation for `bench real-eval`, in a fresh process.
    #[command(hide = true)]
    RealEvalOne(RealEvalOneArgs),
    /// Internal: one load for `bench data`, in a fresh process.
    #[command(hide = true)]
    DataLoad(DataLoadArgs),
    /// Store operations against plain-file baselines: commit and load of a
    /// checkpoint, lineage and listing of a long chain, size on disk.
    Store(StoreArgs),
    /// What the ViperGPT sandbox costs a program of three module calls
    /// (check; run with instant modules) against the time its modules take
    /// (`--modules`, the same syntax as `vpd program run`).
    Sandbox(SandboxArgs),
    /// Programs per second through the actors with batching against the
    /// sequential mode, same networks and data; predictions must agree.
    /// `--device cuda[:N]` also runs the batched mode on that GPU in the
    /// same rounds, against the two CPU modes.
    Exec(ExecArgs),
    /// VQA student training speed against the same network and loop in
    /// PyTorch (the venv's Python, same torch), batch 1 and 64, interleaved.
    /// `--device cuda[:N]`: vpd's training on that GPU against vpd's on the
    /// CPU instead (same weights and batches, interleaved; no Python).
    Train(TrainArgs),
}

/// Rendering speed; loading a GQA file the size of the real train split
/// (streaming) against a tenth of it as one JSON tree, with peak memory.
#[derive(Debug, Args)]
pub struct DataArgs {
    /// Questions in the large file (the real train split has 943,000).
    #[arg(long, default_value_t = 943_000)]
    questions: usize,
    /// Its size in MB (the real one is about 1,300).
    #[arg(long, default_value_t = 1_300)]
    mb: u64,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// The base pipeline on a GQA split in the real layout the size of
/// testdev-balanced, the decoded-image cache bounded against off, with
/// programs per second and peak memory (each run in its own process).
#[derive(Debug, Args)]
pub struct RealEvalArgs {
    /// Questions in the split (testdev-balanced has 12,578).
    #[arg(long, default_value_t = 12_578)]
    questions: usize,
    /// Distinct images they ask about.
    #[arg(long, default_value_t = 400)]
    images: usize,
    /// Image width, pixels.
    #[arg(long, default_value_t = 500)]
    width: u32,
    /// Image height, pixels.
    #[arg(long, default_value_t = 375)]
    height: u32,
    /// The cache's budget, MB.
    #[arg(long, default_value_t = 2048)]
    cache_mb: usize,
    /// The VQA slot (MODULE@REF or oracle).
    #[arg(long, default_value = "vqa@base")]
    vqa: String,
    /// The LOC slot (MODULE@REF or oracle).
    #[arg(long, default_value = "loc@base")]
    loc: String,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Internal: one evaluation for `bench real-eval`, in a fresh process.
#[derive(Debug, Args)]
pub struct RealEvalOneArgs {
    root: std::path::PathBuf,
    cache_mb: usize,
    vqa: String,
    loc: String,
}

/// Internal: one load for `bench data`, in a fresh process.
#[derive(Debug, Args)]
pub struct DataLoadArgs {
    file: std::path::PathBuf,
    /// stream, typed or tree.
    mode: String,
}

/// What the ViperGPT sandbox costs a program, against its modules' time.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The modules timed (e.g. VQA=vqa@base LOC=loc@base); without them the
    /// module time is not measured.
    #[arg(long, num_args = 1.., value_name = "SLOT=MODULE@REF")]
    modules: Vec<String>,
    /// Programs per round.
    #[arg(long, default_value_t = 200)]
    programs: usize,
    /// Measured rounds (after one warm-up round).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Store operations against plain-file baselines: commit and load of a
/// checkpoint, lineage and listing of a long chain, size on disk.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Versions in the lineage chain.
    #[arg(long, default_value_t = 10_000)]
    versions: usize,
    /// Checkpoint size in MB for commit and load.
    #[arg(long, default_value_t = 10)]
    mb: usize,
    /// Repetitions of commit and load.
    #[arg(long, default_value_t = 7)]
    reps: usize,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// Programs per second through the actors with batching against the
/// sequential mode, same networks and data; predictions must agree.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The VQA slot (MODULE@REF or oracle).
    #[arg(long, default_value = "vqa@base")]
    vqa: String,
    /// The LOC slot (MODULE@REF or oracle).
    #[arg(long, default_value = "loc@base")]
    loc: String,
    /// GQA test programs per round.
    #[arg(long, default_value_t = 500)]
    programs: usize,
    /// Measured rounds (after one warm-up round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// libtorch threads of the sequential mode's workers (the batched
    /// mode's have one each, a worker per core).
    #[arg(long, default_value_t = 1)]
    sequential_threads: usize,
    #[command(flatten)]
    gpu: GpuOpt,
    /// One JSON document on stdout.
    #[arg(long)]
    json: bool,
}

/// VQA student training speed against the same network and loop in
/// PyTorch (the venv's Python, same torch), batch 1 and 64, interleaved.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Measured rounds per batch size (after one warm-up round).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Threads of both sides (default: the machine's cores).
    #[arg(long)]
    threads: Option<i32>,
    /// The Python with torch (default: VPD_TORCH_PYTHON, else the venv
    /// vpd's libtorch came from).
    #[arg(long)]
    python: Option<std::path::PathBuf>,
    #[command(flatten)]
    device: DeviceOpt,
    /// One JSON document on stdout: the list of rows.
    #[arg(long)]
    json: bool,
}

pub fn run(cli: &Cli, cmd: &BenchCmd) -> Result<ExitCode> {
    match cmd {
        BenchCmd::Exec(a) => exec(cli, a),
        BenchCmd::Train(a) => train(cli, a),
        BenchCmd::RealEvalOne(a) => real_eval_one(cli, a),
        BenchCmd::RealEval(a) => real_eval(cli, a),
        BenchCmd::DataLoad(a) => data_load(cli, a),
        BenchCmd::Data(a) => data(cli, a),
        BenchCmd::Store(a) => store(cli, a),
        BenchCmd::Sandbox(a) => sandbox(cli, a),
    }
}

fn exec(cli: &Cli, a: &ExecArgs) -> Result<ExitCode> {
    let ExecArgs {
        vqa,
        loc,
        programs,
        rounds,
        sequential_threads,
        gpu,
        json,
    } = a;
    let (device, gpu_batch) = (gpu.device.checked()?, &gpu.gpu_batch);
    let store = super::common::open(cli)?;
    let (v, l) = super::eval::slots(&[format!("VQA={vqa}"), format!("LOC={loc}")])?;
    let quiet = *json;
    let r = bench::exec::run(
        &store,
        &v,
        &l,
        *programs,
        *rounds,
        *sequential_threads,
        (device, *gpu_batch),
        &|m| {
            if !quiet {
                eprintln!("  {m}");
            }
        },
    )?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} GQA test programs, VQA={vqa} LOC={loc}, {} rounds each, interleaved:",
        r.programs,
        r.rounds_measured()
    );
    println!(
        "  batched    {:>8.1} programs/s (min {:.1}, max {:.1}); {} workers a module, at most {} in flight, mean batch VQA {:.1} LOC {:.1}",
        r.batched.median, r.batched.min, r.batched.max, r.config.workers, r.max_in_flight, r.mean_batch, r.mean_loc_batch
    );
    println!(
        "  sequential {:>8.1} programs/s (min {:.1}, max {:.1}); 1 worker a module with {} libtorch thread{}",
        r.sequential.median,
        r.sequential.min,
        r.sequential.max,
        r.sequential_threads,
        if r.sequential_threads == 1 { "" } else { "s" }
    );
    println!(
        "  speedup {:.2}x; predictions identical: {}",
        r.speedup, r.predictions_identical
    );
    if let Some(g) = &r.device {
        println!(
            "  {:<10} {:>8.1} programs/s (min {:.1}, max {:.1}); 1 worker a module, batches up to {}, mean batch VQA {:.1} LOC {:.1}; {:.2}x the batched CPU mode; predictions agreeing with the CPU's: {} of {}",
            g.device, g.programs.median, g.programs.min, g.programs.max, g.config.max_batch, g.mean_batch, g.mean_loc_batch, g.speedup_vs_cpu, g.agreeing, r.programs
        );
    }
    let b = &r.busy;
    println!(
        "  a round ({} VQA and {} LOC queries): wall time and each module's workers' time in forward passes, summed (medians): batched {:.3} s, VQA {:.3} s, LOC {:.3} s; sequential {:.3} s, VQA {:.3} s, LOC {:.3} s",
        b.vqa_queries, b.loc_queries, b.batched_wall_s, b.batched_vqa_s, b.batched_loc_s, b.sequential_wall_s, b.sequential_vqa_s, b.sequential_loc_s
    );
    let c = &r.ceiling;
    let cores = |cpu: f64, wall: f64| if wall > 0.0 { cpu / wall } else { 0.0 };
    println!(
        "  CPU time of a round (medians): batched {:.3} s on {:.2} cores, {:.3} s of it in forward passes, {:.3} s outside them; sequential {:.3} s on {:.2} cores, {:.3} s of it in forward passes",
        b.batched_cpu_s,
        cores(b.batched_cpu_s, b.batched_wall_s),
        b.batched_forward_cpu_s,
        b.batched_rest_cpu_s,
        b.sequential_cpu_s,
        cores(b.sequential_cpu_s, b.sequential_wall_s),
        b.sequential_forward_cpu_s,
    );
    let net = |name: &str, ms: [f64; 2], batch: usize| {
        if batch == 0 {
            format!("{name} oracle")
        } else {
            format!(
                "{name} {:.3} ms at batch 1, {:.3} ms at batch {batch}",
                ms[0], ms[1]
            )
        }
    };
    println!(
        "  the networks alone on one core, a query: {}; {}",
        net("VQA", c.vqa_ms, c.batch[0]),
        net("LOC", c.loc_ms, c.batch[1])
    );
    println!(
        "  ceiling on this machine {:.2}x: a batched round takes at least ({:.3} s outside forward passes + {:.3} s of forward passes at those costs) / {} cores = {:.3} s; reached {:.0}% of it",
        c.speedup,
        c.rest_cpu_s,
        c.forward_alone_s,
        c.cores,
        c.min_round_s,
        100.0 * c.reached
    );
    Ok(ExitCode::SUCCESS)
}

fn train(_cli: &Cli, a: &TrainArgs) -> Result<ExitCode> {
    let TrainArgs {
        rounds,
        threads,
        python,
        device,
        json,
    } = a;
    let device = device.choice;
    if device != visprog_distiller::nn::DeviceChoice::Cpu {
        device.to_tch()?;
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
        let quiet = *json;
        let r = bench::train::run_devices(device, threads, *rounds, &|m| {
            if !quiet {
                eprintln!("  {m}");
            }
        })?;
        if *json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "VQA student training, vpd on {} ({}) vs vpd on the CPU ({} threads), {} rounds each, interleaved, on {}:",
            r.device, r.gpu, r.threads, r.rounds, r.machine
        );
        println!(
            "  {:>5} {:>24} {:>24} {:>8} {:>22}",
            "batch", "GPU ex/s (min-max)", "CPU ex/s (min-max)", "speedup", "first loss GPU / CPU"
        );
        for row in &r.rows {
            println!(
                "  {:>5} {:>9.1} ({:.1}-{:.1}) {:>9.1} ({:.1}-{:.1}) {:>7.2}x {:>10.5} / {:.5}",
                row.batch,
                row.gpu.median,
                row.gpu.min,
                row.gpu.max,
                row.cpu.median,
                row.cpu.min,
                row.cpu.max,
                row.speedup,
                row.first_loss[0],
                row.first_loss[1]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(py) = python.clone().or_else(bench::train::find_python) else {
        anyhow::bail!(
            "no Python with torch found: pass --python or set VPD_TORCH_PYTHON (scripts/libtorch.sh prints it)"
        );
    };
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let quiet = *json;
    let r = bench::train::run(&py, threads, *rounds, &|m| {
        if !quiet {
            eprintln!("  {m}");
        }
    })?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&r.rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "VQA student training, vpd (tch) vs PyTorch {} ({}), {} threads, {} rounds each, interleaved, on {}:",
        r.pytorch_version, r.python, r.threads, r.rounds, r.machine
    );
    println!(
        "  {:>5} {:>22} {:>22} {:>7} {:>18}",
        "batch", "vpd ex/s (min-max)", "PyTorch ex/s (min-max)", "ratio", "GFLOP/s vpd/PyT"
    );
    for row in &r.rows {
        println!(
            "  {:>5} {:>8.1} ({:.1}-{:.1}) {:>8.1} ({:.1}-{:.1}) {:>7.3} {:>8.2} / {:.2}",
            row.batch,
            row.rust.median,
            row.rust.min,
            row.rust.max,
            row.pytorch.median,
            row.pytorch.min,
            row.pytorch.max,
            row.ratio,
            row.gflops[0],
            row.gflops[1]
        );
    }
    println!(
        "  first-step losses equal: {}",
        r.rows
            .iter()
            .map(|x| format!(
                "batch {}: {:.6} / {:.6}",
                x.batch, x.first_loss[0], x.first_loss[1]
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  {:.1} MFLOP per training example; machine matmul rate {:.1} GFLOP/s (1024x1024 float32, libtorch)",
        r.flops_per_example / 1e6,
        r.matmul_gflops
    );
    println!("  malloc settings of both sides: {}", r.allocator);
    Ok(ExitCode::SUCCESS)
}

fn real_eval_one(cli: &Cli, a: &RealEvalOneArgs) -> Result<ExitCode> {
    let RealEvalOneArgs {
        root,
        cache_mb,
        vqa,
        loc,
    } = a;
    let store = super::common::open(cli)?;
    let (v, l) = super::eval::slots(&[format!("VQA={vqa}"), format!("LOC={loc}")])?;
    let (r, digest) = bench::real_eval::eval_once(&store, root, (&v, &l), *cache_mb)?;
    println!("{}", serde_json::json!({"run": r, "digest": digest}));
    Ok(ExitCode::SUCCESS)
}

fn real_eval(cli: &Cli, a: &RealEvalArgs) -> Result<ExitCode> {
    let RealEvalArgs {
        questions,
        images,
        width,
        height,
        cache_mb,
        vqa,
        loc,
        json,
    } = a;
    // The modules must resolve before minutes are spent.
    {
        let store = super::common::open(cli)?;
        for r in [vqa, loc] {
            if r != "oracle" {
                store.resolve(&r.parse().map_err(anyhow::Error::msg)?)?;
            }
        }
    }
    let quiet = *json;
    let progress = |m: &str| {
        if !quiet {
            eprintln!("bench real-eval: {m}");
        }
    };
    let exe = std::env::current_exe()?;
    let bench_err = visprog_distiller::data::DataError::Bench;
    let child = |root: &std::path::Path, mb: usize| {
        let out = std::process::Command::new(&exe)
            .arg("--store")
            .arg(&cli.store)
            .args(["bench", "real-eval-one"])
            .arg(root)
            .args([mb.to_string(), vqa.clone(), loc.clone()])
            .output()
            .map_err(|e| bench_err(format!("spawn {}: {e}", exe.display())))?;
        if !out.status.success() {
            return Err(bench_err(format!(
                "evaluation child failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| bench_err(e.to_string()))?;
        let run = serde_json::from_value(v["run"].clone()).map_err(|e| bench_err(e.to_string()))?;
        Ok((run, v["digest"].as_str().unwrap_or_default().to_string()))
    };
    let r = bench::real_eval::run(
        &std::env::temp_dir(),
        *questions,
        *images,
        (*width, *height),
        *cache_mb,
        &child,
        &progress,
    )?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} GQA questions over {} JPEG images of {}x{} ({:.0} MB on disk, {:.0} MB decoded), VQA={vqa} LOC={loc}, real layout, no scene graphs:",
        r.questions, r.images, r.width, r.height, r.images_mb, r.decoded_mb
    );
    for (name, e) in [("cache off", &r.uncached), ("cache bounded", &r.cached)] {
        println!(
            "  {name:<14} {:>5} MB budget: {:.1} s, {:.0} programs/s, {} images decoded, {} cache hits, cache peak {:.0} MB, process peak {:.0} MB ({:.0} MB before)",
            e.cache_mb,
            e.seconds,
            e.programs_per_s,
            e.image_decodes,
            e.cache_hits,
            e.cache_peak_mb,
            e.peak_rss_mb,
            e.base_rss_mb
        );
    }
    println!(
        "  speed-up {:.2}x; answers {}; accuracy {:.1}%",
        r.cached.programs_per_s / r.uncached.programs_per_s.max(1e-9),
        if r.agree { "identical" } else { "DIFFER" },
        r.cached.accuracy
    );
    if !r.agree {
        anyhow::bail!("the cached and uncached runs gave different answers");
    }
    Ok(ExitCode::SUCCESS)
}

fn data_load(_cli: &Cli, a: &DataLoadArgs) -> Result<ExitCode> {
    let DataLoadArgs { file, mode } = a;
    let mode: bench::data::LoadMode = serde_json::from_value(serde_json::json!(mode))?;
    let r = bench::data::load_once(file, mode)?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(ExitCode::SUCCESS)
}

fn data(_cli: &Cli, a: &DataArgs) -> Result<ExitCode> {
    let DataArgs {
        questions,
        mb,
        json,
    } = a;
    let quiet = *json;
    let progress = |m: &str| {
        if !quiet {
            eprintln!("bench data: {m}");
        }
    };
    let exe = std::env::current_exe()?;
    let child = |file: &std::path::Path, mode: bench::data::LoadMode| {
        let mut c = std::process::Command::new(&exe);
        c.args(["bench", "data-load"]).arg(file).arg(
            serde_json::to_value(mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        );
        let out = c.output().map_err(|e| {
            visprog_distiller::data::DataError::Bench(format!("spawn {}: {e}", exe.display()))
        })?;
        if !out.status.success() {
            return Err(visprog_distiller::data::DataError::Bench(format!(
                "load child failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| visprog_distiller::data::DataError::Bench(e.to_string()))
    };
    let r = bench::data::run(
        &std::env::temp_dir(),
        *questions,
        mb * 1_000_000,
        &child,
        &progress,
    )?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "render {}px GQA scene          {:.0} images/s ({} scenes)",
            r.size, r.images_per_s, r.rendered
        );
        println!(
            "render + PNG encode            {:.0} images/s",
            r.images_png_per_s
        );
        let show = |name: &str, l: &bench::data::LoadRun, bytes: u64| {
            println!(
                "{name:<30} {} questions, {:.0} MB: {:.1} s, {:.0} questions/s, peak {:.0} MB ({:.0} MB before loading)",
                l.questions,
                bytes as f64 / 1e6,
                l.seconds,
                l.questions_per_s,
                l.peak_rss_mb,
                l.base_rss_mb
            )
        };
        show("streaming check, whole file", &r.streaming, r.file_bytes);
        show("typed records, whole file", &r.typed, r.file_bytes);
        show("one JSON tree, a tenth", &r.tree_tenth, r.tenth_bytes);
    }
    Ok(ExitCode::SUCCESS)
}

fn store(_cli: &Cli, a: &StoreArgs) -> Result<ExitCode> {
    let StoreArgs {
        versions,
        mb,
        reps,
        json,
    } = a;
    let quiet = *json;
    let progress = |m: &str| {
        if !quiet {
            eprintln!("bench store: {m}");
        }
    };
    let r = bench::store::run(
        &std::env::temp_dir(),
        mb * 1_000_000,
        (*reps).max(1),
        *versions,
        &progress,
    )?;
    if *json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let s = |x: &bench::Spread| {
            format!(
                "{:.2} ms (min {:.2}, max {:.2}, n={})",
                x.median, x.min, x.max, x.n
            )
        };
        let mbs = r.checkpoint_bytes as f64 / 1e6;
        println!("commit {mbs:.0} MB checkpoint      {}", s(&r.commit_ms));
        println!(
            "plain write+fsync {mbs:.0} MB      {}",
            s(&r.plain_write_fsync_ms)
        );
        println!("commit / plain                 {:.2}x", r.commit_over_plain);
        println!(
            "load {mbs:.0} MB by alias (hashed) {}",
            s(&r.load_by_alias_ms)
        );
        println!("plain read {mbs:.0} MB             {}", s(&r.plain_read_ms));
        println!(
            "lineage, {} versions        {} (made in {:.1} s)",
            r.lineage_versions,
            s(&r.lineage_ms),
            r.lineage_setup_s
        );
        println!("list all versions              {}", s(&r.list_ms));
        println!(
            "size on disk                   {:.1} MB (db {:.1} MB) for {:.1} MB of unique blobs: {:.2}x",
            r.store_bytes_on_disk as f64 / 1e6,
            r.db_bytes_on_disk as f64 / 1e6,
            r.unique_blob_bytes as f64 / 1e6,
            r.size_over_blobs
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn sandbox(cli: &Cli, a: &SandboxArgs) -> Result<ExitCode> {
    if a.modules.iter().any(|m| m.contains("oracle")) {
        anyhow::bail!("--modules: the oracle is no network to time; name stored versions (VQA=vqa@base LOC=loc@base)");
    }
    let store = super::common::open(cli)?;
    // A synthetic GQA test image (the data is made under the store when
    // missing), as the modules were trained on.
    let data = visprog_distiller::runtime::teacher_eval::task_data(
        &store,
        visprog_distiller::vocab::Task::Gqa,
        60,
    )?;
    let path = data.join("images/4000000.png");
    let image = visprog_distiller::program::run::load_input("image", &path)?;
    let paths = [("image".to_string(), path)].into();
    let mut modules = super::program::build_modules(
        &cli.store,
        &a.modules,
        &paths,
        visprog_distiller::nn::DeviceChoice::Cpu,
    )?;
    let label = (!a.modules.is_empty()).then(|| a.modules.join(" "));
    let given = modules.as_mut().zip(label).map(|(m, l)| {
        (
            m.as_mut() as &mut dyn visprog_distiller::program::interp::Perception,
            l,
        )
    });
    let r = bench::sandbox::run(image, given, a.programs.max(1), a.rounds.max(1))
        .map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let s = |x: &bench::Spread| format!("{:.1} us (min {:.1}, max {:.1})", x.median, x.min, x.max);
    println!(
        "a ViperGPT program of {} module calls, {} programs a round, {} rounds:",
        r.module_calls, r.programs, r.check_us.n
    );
    println!("  check (bounds, parse, walk, rewrite)  {}", s(&r.check_us));
    println!("  run with instant modules (sandbox)    {}", s(&r.run_us));
    match (&r.module_us, r.sandbox_over_modules) {
        (Some(m), Some(ratio)) => println!(
            "  the modules' own time ({})  {}; sandbox / modules {:.3}",
            r.modules.as_deref().unwrap_or(""),
            s(m),
            ratio
        ),
        _ => println!("  the modules' own time: not measured (give --modules VQA=... LOC=...)"),
    }
    println!("  on {}", r.machine);
    Ok(ExitCode::SUCCESS)
}
