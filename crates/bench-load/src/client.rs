//! One streaming completion request against an OpenAI-compatible server, timestamped on the
//! client at every chunk that carries a token: what vLLM's `async_request_openai_completions`
//! records, with a blocking `ureq` call on its own thread (nothing per token but a clock read and
//! a small JSON parse).
//!
//! Sent: `POST {base}/v1/completions` with `prompt`, `max_tokens`, `temperature: 0`,
//! `stream: true`, `stream_options.include_usage` and the `ignore_eos` extension (vLLM, llama.cpp's
//! server and this project's all read it), so every request should generate exactly
//! `max_tokens` tokens; the record keeps `finish_reason` and the server's `usage` to check it.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A server to load: its base URL (`http://127.0.0.1:8080`, no `/v1`) and the model name to send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub base_url: String,
    pub model: String,
}

impl Target {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base_url.trim_end_matches('/'))
    }
}

/// The server's `usage` for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
}

/// What one request did, in seconds from the run's start (`sent_s`) or from its own send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The prompt's number in the dataset.
    pub index: usize,
    /// When it was sent, from the start of the run.
    pub sent_s: f64,
    /// Time to the first chunk carrying a token.
    pub ttft_s: Option<f64>,
    /// Time of every chunk carrying a token, from the send (the first is `ttft_s`).
    pub token_times_s: Vec<f64>,
    /// Time to the last token chunk: end-to-end latency.
    pub e2el_s: Option<f64>,
    /// The generated text, and the token ids where the server sends them (`token_ids`, an
    /// extension of this project's server): what the correctness check compares.
    pub text: String,
    pub token_ids: Vec<u32>,
    /// The text of each token chunk (one token each), for servers that send no ids.
    pub pieces: Vec<String>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// Why it failed (transport, HTTP status with the server's message, or an error event).
    pub error: Option<String>,
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }

    /// Output tokens: the server's count where it gave one, else the token chunks.
    pub fn output_tokens(&self) -> usize {
        self.usage.map(|u| u.completion_tokens).unwrap_or(self.token_times_s.len())
    }
}

/// A connection pool shared by a run's threads (one connection per request in flight).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(10)).timeout_read(timeout).build()
}

/// Sends one streaming completion and reads it to the end; never panics, a failure is in the
/// record's `error`.
pub fn complete(agent: &ureq::Agent, target: &Target, index: usize, prompt: &str, max_tokens: usize, run_start: Instant) -> RequestRecord {
    let body = json!({
        "model": target.model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": true,
        "stream_options": {"include_usage": true},
        "ignore_eos": true,
    });
    let start = Instant::now();
    let mut rec = RequestRecord { index, sent_s: start.duration_since(run_start).as_secs_f64(), ..RequestRecord::default() };
    let response = match agent.post(&target.endpoint("/v1/completions")).send_json(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap_or_default();
            let message = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"]["message"].as_str().map(str::to_owned)).unwrap_or(text);
            rec.error = Some(format!("HTTP {code}: {message}"));
            return rec;
        }
        Err(e) => {
            rec.error = Some(format!("request failed: {e}"));
            return rec;
        }
    };
    for line in BufReader::new(response.into_reader()).lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                rec.error = Some(format!("reading the stream: {e}"));
                break;
            }
        };
        let Some(data) = line.strip_prefix("data:").map(str::trim) else { continue };
        if data == "[DONE]" {
            break;
        }
        let at = start.elapsed().as_secs_f64();
        let Ok(chunk) = serde_json::from_str::<Value>(data) else {
            rec.error = Some(format!("a chunk is not JSON: {data}"));
            break;
        };
        if let Some(e) = chunk.get("error") {
            rec.error = Some(format!("error event: {}", e["message"].as_str().unwrap_or("(no message)")));
            break;
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            if let Ok(u) = serde_json::from_value::<Usage>(u.clone()) {
                rec.usage = Some(u);
            }
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else { continue };
        let text = choice["text"].as_str().unwrap_or("");
        let ids: Vec<u32> = choice["token_ids"].as_array().map(|a| a.iter().filter_map(|v| v.as_u64().map(|x| x as u32)).collect()).unwrap_or_default();
        // A chunk carries a token when it has ids, or text (the finish chunk has neither).
        if !ids.is_empty() || !text.is_empty() {
            rec.ttft_s.get_or_insert(at);
            rec.token_times_s.push(at);
            rec.e2el_s = Some(at);
            rec.text.push_str(text);
            rec.pieces.push(text.to_string());
            rec.token_ids.extend(ids);
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            rec.finish_reason = Some(f.to_string());
        }
    }
    if rec.error.is_none() && rec.ttft_s.is_none() {
        rec.error = Some("the stream ended without a token".into());
    }
    rec
}

/// Waits until `GET {base}/health` answers 200, up to `timeout`; `alive` is asked between tries
/// (a server process that exited ends the wait at once). The last answer or error otherwise.
pub fn wait_healthy(target: &Target, timeout: Duration, alive: &mut dyn FnMut() -> bool) -> Result<(), String> {
    let agent = agent(Duration::from_secs(5));
    let end = Instant::now() + timeout;
    let mut last = String::from("no answer yet");
    while Instant::now() < end {
        match agent.get(&target.endpoint("/health")).call() {
            Ok(r) if r.status() == 200 => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(ureq::Error::Status(code, _)) => last = format!("HTTP {code}"),
            Err(e) => last = e.to_string(),
        }
        if !alive() {
            return Err(format!("the server exited before it was ready (last probe: {last})"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("not ready after {} s (last probe: {last})", timeout.as_secs()))
}

/// The first model id `GET {base}/v1/models` lists (the name requests must carry).
pub fn served_model(base_url: &str) -> Result<String, String> {
    let url = format!("{}/v1/models", base_url.trim_end_matches('/'));
    let v: Value = agent(Duration::from_secs(10)).get(&url).call().map_err(|e| format!("{url}: {e}"))?.into_json().map_err(|e| format!("{url}: {e}"))?;
    v["data"][0]["id"].as_str().map(str::to_owned).ok_or_else(|| format!("{url} lists no model"))
}
