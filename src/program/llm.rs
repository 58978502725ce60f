//! The `llm` generator: an OpenAI-compatible `chat/completions` endpoint
//! (vLLM, llama.cpp server, Ollama, OpenAI) asked with a VisProg-style
//! few-shot prompt of in-context examples written for this project's tasks
//! (`prompts/`). Timeouts and retries; the answer is validated, an invalid
//! one retried, then recorded as a failure.

use std::time::Duration;

use serde::Serialize;

use super::validate;
use crate::vocab::Task;

/// The in-context examples.
pub const GQA_PROMPT: &str = include_str!("../../prompts/gqa.prompt");
/// The in-context examples.
pub const NLVR2_PROMPT: &str = include_str!("../../prompts/nlvr2.prompt");

const INSTRUCTIONS: &str = "You write visual programs. Each line is one step OUT=MODULE(arg=value,...). \
Modules: LOC(image,object) gives boxes (object 'TOP','BOTTOM','LEFT','RIGHT' give image halves); \
COUNT(box); CROP, CROP_LEFTOF, CROP_RIGHTOF, CROP_ABOVE, CROP_BELOW (image,box); VQA(image,question); \
EVAL(expr) with {VAR} references, arithmetic, comparisons, and/or/not/xor and 'a if c else b'; RESULT(var). \
Answer with the program only, in the format of the examples.";

/// Where and how to ask.
#[derive(Debug, Clone, Serialize)]
pub struct LlmConfig {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// Model name.
    pub model: String,
    /// API key (never serialised).
    #[serde(skip)]
    pub api_key: Option<String>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Further attempts after the first.
    pub retries: u32,
    /// Pause before the first retry (doubled each time).
    pub backoff: Duration,
    /// Token limit of an answer.
    pub max_tokens: u32,
    /// Ask again for texts whose cached answer was an invalid program
    /// (`--force`); cached valid programs are reused either way.
    #[serde(skip)]
    pub retry_invalid: bool,
    /// A few-shot prompt replacing the built-in one of the task (its hash
    /// is part of the cache key).
    #[serde(skip)]
    pub prompt: Option<String>,
}

impl LlmConfig {
    /// From the environment: `VPD_LLM_BASE_URL`, `VPD_LLM_MODEL`,
    /// `VPD_LLM_API_KEY` (or `OPENAI_API_KEY`), `VPD_LLM_TIMEOUT_S`,
    /// `VPD_LLM_RETRIES`.
    pub fn from_env() -> Result<LlmConfig, LlmError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let base_url = var("VPD_LLM_BASE_URL").ok_or_else(|| {
            LlmError::Config("set VPD_LLM_BASE_URL to an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1".into())
        })?;
        Ok(LlmConfig {
            base_url,
            model: var("VPD_LLM_MODEL").unwrap_or_else(|| "default".into()),
            api_key: var("VPD_LLM_API_KEY").or_else(|| var("OPENAI_API_KEY")),
            timeout: match var("VPD_LLM_TIMEOUT_S") {
                None => Duration::from_secs(60),
                Some(s) => timeout_of(&s)?,
            },
            retries: match var("VPD_LLM_RETRIES") {
                None => 2,
                Some(s) => s.parse::<u32>().ok().filter(|r| *r <= 100).ok_or_else(|| {
                    LlmError::Config(format!(
                        "VPD_LLM_RETRIES={s}: expected a whole number from 0 to 100"
                    ))
                })?,
            },
            backoff: Duration::from_millis(500),
            max_tokens: 512,
            retry_invalid: false,
            prompt: None,
        })
    }
}

/// `VPD_LLM_TIMEOUT_S`: seconds, finite, above 0 and at most a day.
fn timeout_of(s: &str) -> Result<Duration, LlmError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite() && *t > 0.0 && *t <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            LlmError::Config(format!(
                "VPD_LLM_TIMEOUT_S={s}: expected seconds above 0 and at most 86400"
            ))
        })
}

impl LlmConfig {
    /// The key under which generated programs are cached: model, endpoint
    /// and the prompt's hash.
    pub fn cache_key(&self, task: Task) -> String {
        let prompt = self.prompt_of(task);
        let h = crate::store::sha256_hex(format!("{INSTRUCTIONS}\n{prompt}").as_bytes());
        // Everything that decides the answer: endpoint, model, prompt and
        // sampling (temperature 0, the token limit).
        format!(
            "llm:{}@{}:prompt-{}:t0:max{}",
            self.model,
            self.base_url.trim_end_matches('/'),
            &h[..12],
            self.max_tokens
        )
    }
}

impl LlmConfig {
    /// The few-shot prompt for `task`: the replacement when one is set, else
    /// the built-in one.
    pub fn prompt_of(&self, task: Task) -> &str {
        match (&self.prompt, task) {
            (Some(p), _) => p,
            (None, Task::Gqa) => GQA_PROMPT,
            (None, Task::Nlvr2) => NLVR2_PROMPT,
        }
    }
}

/// Why no program came back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// Missing settings.
    #[error("llm generator: {0}")]
    Config(String),
    /// Connection refused, DNS, timeout.
    #[error("llm endpoint {url} unreachable: {detail}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// An HTTP error status.
    #[error("llm endpoint {url} answered HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// Status code.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// A body that is not a chat completion.
    #[error("llm endpoint {url} answered something that is not a chat completion: {detail}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
    },
    /// A completion that is not a valid program.
    #[error("the model's program is invalid: {0}")]
    InvalidProgram(String),
    /// Every attempt failed; the last error.
    #[error("no valid program after {attempts} attempt(s); last: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<LlmError>,
    },
}

impl LlmError {
    /// The model answered, but not with a valid program (after every
    /// attempt): an answer about the text, not a failure of the endpoint.
    pub fn is_invalid_program(&self) -> bool {
        match self {
            LlmError::InvalidProgram(_) => true,
            LlmError::GaveUp { last, .. } => last.is_invalid_program(),
            _ => false,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Config(_) | LlmError::GaveUp { .. } => false,
            _ => true,
        }
    }
}

/// A generated program.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generated {
    /// The validated program text.
    pub program: String,
    /// Attempts it took.
    pub attempts: u32,
}

/// The chat messages for one question or statement.
pub fn messages(task: Task, examples: &str, text: &str) -> serde_json::Value {
    let label = match task {
        Task::Gqa => "Question",
        Task::Nlvr2 => "Statement",
    };
    serde_json::json!([
        {"role": "system", "content": INSTRUCTIONS},
        {"role": "user", "content": format!("{}\n\n{label}: {}\nProgram:", examples.trim_end(), text.trim())},
    ])
}

/// The program lines of a completion: code fences and prose dropped.
pub fn extract(completion: &str) -> String {
    completion
        .lines()
        .map(str::trim)
        .filter(|l| {
            let Some((lhs, rhs)) = l.split_once('=') else {
                return false;
            };
            !lhs.is_empty()
                && lhs.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && rhs.contains('(')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asks for one program, retrying as configured.
pub fn generate(cfg: &LlmConfig, task: Task, text: &str) -> Result<Generated, LlmError> {
    let msgs = messages(task, cfg.prompt_of(task), text);
    let (program, attempts) = with_retries(cfg, &msgs, |content| {
        let program = extract(content);
        let (_, rep) = validate::check_text(&program, Some(task));
        match rep.errors.first() {
            Some(e) => Err(LlmError::InvalidProgram(e.to_string())),
            None => Ok(program),
        }
    })?;
    Ok(Generated { program, attempts })
}

/// What ViperGPT's `llm_query(question, long_answer)` asks: the answer to a
/// question of world knowledge, one to three words when `long_answer` is
/// false, a sentence or two otherwise (temperature 0, retried as
/// configured, never cached: it is a module call, not a program).
pub fn ask(cfg: &LlmConfig, question: &str, long_answer: bool) -> Result<String, LlmError> {
    let how = if long_answer {
        "Answer in one or two sentences."
    } else {
        "Answer with one to three words only, no punctuation."
    };
    let msgs = serde_json::json!([
        {"role": "system", "content": format!("You answer questions about the world for a program that reasons about images. {how}")},
        {"role": "user", "content": question},
    ]);
    let (answer, _) = with_retries(cfg, &msgs, |content| {
        let a = content.trim();
        let a = if long_answer {
            a.to_string()
        } else {
            a.trim_end_matches(['.', '!']).trim().to_string()
        };
        if a.is_empty() {
            Err(LlmError::Malformed {
                url: cfg.base_url.clone(),
                detail: "an empty answer".into(),
            })
        } else {
            Ok(a)
        }
    })?;
    Ok(answer)
}

/// Sends `msgs` to the endpoint and makes the answer's content into a `T`
/// with `make`, retrying (with back-off) what may succeed on a second try;
/// the value and the attempts it took.
fn with_retries<T>(
    cfg: &LlmConfig,
    msgs: &serde_json::Value,
    make: impl Fn(&str) -> Result<T, LlmError>,
) -> Result<(T, u32), LlmError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
    let body = serde_json::json!({
        "model": cfg.model,
        "messages": msgs,
        "temperature": 0,
        "max_tokens": cfg.max_tokens,
    })
    .to_string();
    let mut pause = cfg.backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let r = attempt(&agent, &url, cfg, &body).and_then(|c| make(&c));
        match r {
            Ok(v) => return Ok((v, attempts)),
            Err(e) if e.retryable() && attempts <= cfg.retries => {
                tracing::warn!("llm attempt {attempts} failed: {e}; retrying");
                std::thread::sleep(pause);
                pause *= 2;
            }
            Err(e) => {
                return Err(if attempts > 1 {
                    LlmError::GaveUp {
                        attempts,
                        last: Box::new(e),
                    }
                } else {
                    e
                })
            }
        }
    }
}

/// One request: the answer's `choices[0].message.content`.
fn attempt(
    agent: &ureq::Agent,
    url: &str,
    cfg: &LlmConfig,
    body: &str,
) -> Result<String, LlmError> {
    let mut req = agent.post(url).header("Content-Type", "application/json");
    if let Some(k) = &cfg.api_key {
        req = req.header("Authorization", format!("Bearer {k}"));
    }
    let mut resp = req.send(body).map_err(|e| LlmError::Unreachable {
        url: url.into(),
        detail: e.to_string(),
    })?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| LlmError::Unreachable {
            url: url.into(),
            detail: format!("reading the answer: {e}"),
        })?;
    if status != 200 {
        return Err(LlmError::Status {
            url: url.into(),
            status,
            body: text.chars().take(200).collect(),
        });
    }
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| LlmError::Malformed {
        url: url.into(),
        detail: format!("not JSON: {e}"),
    })?;
    v["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| LlmError::Malformed {
            url: url.into(),
            detail: "no choices[0].message.content".into(),
        })
}

/// A generated program from the store's cache, or asked for and cached
/// (failures are cached too, so a sweep never asks twice).
pub fn generate_cached(
    store: &crate::store::Store,
    cfg: &LlmConfig,
    task: Task,
    text: &str,
) -> Result<Result<String, String>, crate::store::StoreError> {
    let key = cfg.cache_key(task);
    if let Some(hit) = store.cached_program(&key, text)? {
        if hit.program.is_ok() || !cfg.retry_invalid {
            return Ok(hit.program);
        }
    }
    match generate(cfg, task, text) {
        Ok(g) => {
            store.cache_program(&key, text, Ok(g.program.clone()))?;
            Ok(Ok(g.program))
        }
        // The model answered, and its program is invalid: an answer, cached
        // with its reason (asked again under --force).
        Err(e) if e.is_invalid_program() => {
            store.cache_program(&key, text, Err(e.to_string()))?;
            Ok(Err(e.to_string()))
        }
        // The endpoint could not be reached or failed: never cached, so
        // the next run asks again.
        Err(e) => Ok(Err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::timeout_of;

    #[test]
    fn timeouts_outside_sane_bounds_are_refused_not_panics() {
        for bad in ["-1", "inf", "NaN", "1e300", "0", "soon"] {
            let e = timeout_of(bad).unwrap_err().to_string();
            assert!(e.contains("VPD_LLM_TIMEOUT_S"), "{bad}: {e}");
        }
        assert_eq!(timeout_of("2.5").unwrap().as_millis(), 2500);
    }
}
