//! `vpd bench sandbox`: what the ViperGPT sandbox costs a program, against
//! what its modules cost. One program of three module calls (`find`, then
//! two `simple_query`), the same in every round: its check (size and
//! nesting bounds, parse, walk, rewrite), its run with instant modules
//! (fixed answers: the sandbox alone), and its run with the networks the
//! caller gives, timed inside their LOC and VQA calls.

use std::collections::HashMap;
use std::time::Instant;

use serde::Serialize;

use super::Spread;
use crate::program::interp::{ImageVal, Perception, PerceptionError, Rect, ScoredBox};
use crate::viper::{self, Limits};

/// The benchmark's program.
pub const PROGRAM: &str = r#"def execute_command(image):
    image_patch = ImagePatch(image)
    shapes = image_patch.find("diamond")
    if len(shapes) == 0:
        return image_patch.simple_query("What shape is it?")
    shapes.sort(key=lambda s: s.horizontal_center)
    colour = shapes[0].simple_query("What color is it?")
    return shapes[0].simple_query("What shape is it?") + " " + colour
"#;

/// What `vpd bench sandbox` measured.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// Programs per measurement.
    pub programs: usize,
    /// Module calls per program.
    pub module_calls: usize,
    /// Check of one program, microseconds.
    pub check_us: Spread,
    /// Run of one program with instant modules (the sandbox alone),
    /// microseconds.
    pub run_us: Spread,
    /// Time in the given modules' LOC and VQA calls per program,
    /// microseconds; `None`: no modules were given (not measured).
    pub module_us: Option<Spread>,
    /// Sandbox (check + run) over module time, median; `None` when module
    /// time was not measured.
    pub sandbox_over_modules: Option<f64>,
    /// The modules timed, e.g. `vqa@1, loc@1`.
    pub modules: Option<String>,
    /// The machine.
    pub machine: crate::machine::Machine,
}

/// LOC finds one box; VQA says `red`: no work, so a run measures the
/// sandbox and the host alone.
struct Instant0;

impl Perception for Instant0 {
    fn name(&self, _: &str) -> String {
        "instant".into()
    }
    fn loc(&mut self, _: &ImageVal, _: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        Ok(vec![ScoredBox {
            rect: Rect {
                x: 4.0,
                y: 4.0,
                w: 8.0,
                h: 8.0,
            },
            score: 1.0,
        }])
    }
    fn vqa(&mut self, _: &ImageVal, _: &str) -> Result<String, PerceptionError> {
        Ok("red".into())
    }
}

/// A perception timed inside its calls.
struct Timed<'a> {
    inner: &'a mut dyn Perception,
    ns: u128,
}

impl Perception for Timed<'_> {
    fn name(&self, m: &str) -> String {
        self.inner.name(m)
    }
    fn loc(&mut self, i: &ImageVal, o: &str) -> Result<Vec<ScoredBox>, PerceptionError> {
        let t = Instant::now();
        let r = self.inner.loc(i, o);
        self.ns += t.elapsed().as_nanos();
        r
    }
    fn vqa(&mut self, i: &ImageVal, q: &str) -> Result<String, PerceptionError> {
        let t = Instant::now();
        let r = self.inner.vqa(i, q);
        self.ns += t.elapsed().as_nanos();
        r
    }
}

/// Runs the benchmark: `rounds` of `programs` programs each way, on
/// `image`, with `modules` (and their label) timed when given.
pub fn run(
    image: ImageVal,
    mut modules: Option<(&mut dyn Perception, String)>,
    programs: usize,
    rounds: usize,
) -> Result<SandboxReport, String> {
    let limits = Limits::default();
    let inputs: HashMap<String, ImageVal> = [("image".to_string(), image)].into();
    let checked = viper::check(PROGRAM, &limits).map_err(|d| format!("{d:?}"))?;
    let (mut check_us, mut run_us, mut module_us) = (vec![], vec![], vec![]);
    let per = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / programs as f64;
    let mut calls = 0;
    for round in 0..=rounds {
        let t = Instant::now();
        for _ in 0..programs {
            std::hint::black_box(viper::check(PROGRAM, &limits).map_err(|d| format!("{d:?}"))?);
        }
        let c = per(t);
        let t = Instant::now();
        for _ in 0..programs {
            let o = viper::run_program(&checked, inputs.clone(), &mut Instant0, &limits, None);
            o.result.map_err(|e| e.to_string())?;
            calls = o.calls.len();
        }
        let r = per(t);
        let m = match modules.as_mut() {
            Some((p, _)) => {
                let mut timed = Timed {
                    inner: &mut **p,
                    ns: 0,
                };
                for _ in 0..programs {
                    let o = viper::run_program(&checked, inputs.clone(), &mut timed, &limits, None);
                    o.result.map_err(|e| e.to_string())?;
                }
                Some(timed.ns as f64 / 1e3 / programs as f64)
            }
            None => None,
        };
        // Round 0 warms up.
        if round > 0 {
            check_us.push(c);
            run_us.push(r);
            module_us.extend(m);
        }
    }
    let check_us = Spread::of(check_us);
    let run_us = Spread::of(run_us);
    let module_us = (!module_us.is_empty()).then(|| Spread::of(module_us));
    let sandbox_over_modules = module_us
        .as_ref()
        .map(|m| (check_us.median + run_us.median) / m.median);
    Ok(SandboxReport {
        programs,
        module_calls: calls,
        check_us,
        run_us,
        module_us,
        sandbox_over_modules,
        modules: modules.map(|(_, l)| l),
        machine: crate::machine::Machine::this(),
    })
}
