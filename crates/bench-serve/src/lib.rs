//! bench-serve: an OpenAI-compatible HTTP server for any llama3-bench framework.
//!
//! Endpoints (OpenAI's API reference is the contract; the `openai` Python client and `curl -N`
//! both work against it): `POST /v1/chat/completions` and `POST /v1/completions` (streaming as
//! server-sent events with one token per chunk, or one JSON answer), `GET /v1/models`,
//! `GET /health` (503 while the model loads, 200 when ready), `GET /metrics` (Prometheus text),
//! and a chat page at `/`.
//!
//! Threads: the HTTP side runs on a tokio runtime of its own ([`Server::start`]); the model stays
//! on the caller's thread, which runs bench-core's continuous-batching
//! [`Scheduler`](bench_core::serve::Scheduler). Handlers hand requests to it through a
//! [`Submitter`] and read each request's tokens back from a channel. SIGINT / SIGTERM stop
//! accepting connections, refuse queued requests, let running ones finish, and end
//! [`Server::wait`].

#![warn(missing_docs)]

pub mod api;
pub mod error;
pub mod metrics;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use bench_core::run::sampling::SamplingConfig;
use bench_core::serve::{Event, EventSink, FinishReason, GenRequest, SubmitError, Submitter};
use bench_core::text::chat::{encode_chat, ChatTemplate};
use bench_core::text::tokenizer::Tokenizer;

use api::{ChatRequest, CompletionRequest, GenParams, Prompt};
use error::ApiError;

/// The chat page served at `/`: one static file, no build step, nothing fetched from elsewhere.
pub const CHAT_PAGE: &str = include_str!("chat.html");

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind (`127.0.0.1` by default on the command line).
    pub host: String,
    /// Port; 0 picks a free one ([`Server::local_addr`] says which).
    pub port: u16,
    /// The id `/v1/models` lists and requests name.
    pub model_id: String,
    /// Largest request body read, in bytes; a larger one gets 413.
    pub max_body_bytes: usize,
}

/// What the handlers need once the model is loaded.
pub struct Ready {
    /// Where requests go.
    pub submitter: Submitter,
    /// The model's tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// The model's chat template (the command line's).
    pub template: ChatTemplate,
    /// Tokens the KV cache of one sequence holds.
    pub context: usize,
    /// The framework's name, for `/v1/models`' `owned_by`.
    pub framework: String,
}

struct AppState {
    options: ServeOptions,
    ready: OnceLock<Ready>,
    metrics: metrics::Metrics,
    stopping: AtomicBool,
    created: u64,
    next_id: AtomicU64,
}

/// A running HTTP server (see the crate doc).
pub struct Server {
    state: Arc<AppState>,
    addr: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Server {
    /// Binds the address and starts answering (`/health` says 503 until [`Server::set_ready`]).
    pub fn start(options: ServeOptions) -> std::io::Result<Server> {
        let listener = std::net::TcpListener::bind((options.host.as_str(), options.port))
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {}:{}: {e}", options.host, options.port)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            options,
            ready: OnceLock::new(),
            metrics: metrics::Metrics::default(),
            stopping: AtomicBool::new(false),
            created: unix_now(),
            next_id: AtomicU64::new(1),
        });
        let stop = Arc::new(Notify::new());
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("http").enable_all().build()?;
        let (st, stop2) = (state.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("http-server".into()).spawn(move || {
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                let app = router(st.clone());
                let shutdown = async move {
                    wait_for_signal(stop2).await;
                    st.stopping.store(true, Ordering::SeqCst);
                    if let Some(r) = st.ready.get() {
                        r.submitter.shut_down();
                    }
                    tracing::info!("shutting down: no new connections; running requests finish");
                };
                axum::serve(listener, app).with_graceful_shutdown(shutdown).await
            })
        })?;
        Ok(Server { state, addr, stop, thread: Some(thread) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model is loaded: requests are served from now on.
    pub fn set_ready(&self, ready: Ready) {
        let stopping = self.stopping();
        let _ = self.state.ready.set(ready);
        if stopping {
            if let Some(r) = self.state.ready.get() {
                r.submitter.shut_down();
            }
        }
    }

    /// Whether a signal (or [`Server::stop`]) asked the server to stop.
    pub fn stopping(&self) -> bool {
        self.state.stopping.load(Ordering::SeqCst)
    }

    /// Stops as a signal would.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Waits (up to `timeout`) for the HTTP side to finish: every connection closed after a stop.
    pub fn wait(mut self, timeout: Duration) -> std::io::Result<()> {
        self.stop();
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let deadline = Instant::now() + timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if thread.is_finished() {
            thread.join().unwrap_or_else(|_| Err(std::io::Error::other("the HTTP thread panicked")))
        } else {
            tracing::warn!("connections still open after {timeout:?}; exiting anyway");
            Ok(())
        }
    }
}

async fn wait_for_signal(stop: Arc<Notify>) {
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = stop.notified() => {}
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(CHAT_PAGE) }))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                ..ApiError::bad_request(
                    "no such endpoint; this server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models, /health, /metrics and /",
                    None,
                )
            }
        })
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    if st.stopping.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"}))).into_response()
    } else if st.ready.get().is_some() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "loading model"}))).into_response()
    }
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    let stats = st.ready.get().map(|r| r.submitter.stats().clone());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render(stats.as_deref())).into_response()
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    let owner = st.ready.get().map(|r| r.framework.clone()).unwrap_or_else(|| "llama3-bench".into());
    Json(json!({"object": "list", "data": [{"id": st.options.model_id, "object": "model", "created": st.created, "owned_by": owner}]})).into_response()
}

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat_completions",
            Endpoint::Completion => "completions",
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(st: &AppState, body: Body) -> Result<T, ApiError> {
    let limit = st.options.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::too_large(limit))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}"), None))
}

fn ready(st: &AppState) -> Result<&Ready, ApiError> {
    if st.stopping.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    st.ready.get().ok_or_else(|| ApiError::unavailable("the model is still loading; retry when GET /health says 200"))
}

fn check_model(st: &AppState, params: &GenParams) -> Result<(), ApiError> {
    match &params.model {
        Some(m) if m != &st.options.model_id => Err(ApiError::model_not_found(m, &st.options.model_id)),
        _ => Ok(()),
    }
}

async fn chat_completions(State(st): State<Arc<AppState>>, body: Body) -> Response {
    let arrived = Instant::now();
    let result = async {
        let req: ChatRequest = read_json(&st, body).await?;
        check_model(&st, &req.params)?;
        req.params.validate()?;
        let r = ready(&st)?;
        if req.messages.is_empty() {
            return Err(ApiError::bad_request("messages is empty: send at least one message", Some("messages")));
        }
        let messages = req.messages.iter().enumerate().map(|(i, m)| m.to_message(i)).collect::<Result<Vec<_>, _>>()?;
        let ids =
            encode_chat(&r.tokenizer, &r.template, &messages).map_err(|e| ApiError::bad_request(format!("the chat template failed: {e}"), Some("messages")))?;
        Ok((req.params, ids))
    }
    .await;
    respond(st, Endpoint::Chat, arrived, result, "messages").await
}

async fn completions(State(st): State<Arc<AppState>>, body: Body) -> Response {
    let arrived = Instant::now();
    let result = async {
        let req: CompletionRequest = read_json(&st, body).await?;
        check_model(&st, &req.params)?;
        req.params.validate()?;
        let r = ready(&st)?;
        let ids = match req.prompt.single()? {
            Prompt::Text(t) => r.tokenizer.encode(t, r.tokenizer.adds_bos()).map_err(|e| ApiError::bad_request(format!("prompt: {e}"), Some("prompt")))?,
            Prompt::Tokens(ids) => {
                let vocab = r.tokenizer.vocab_size();
                if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
                    return Err(ApiError::bad_request(format!("prompt: token id {bad} is outside the vocabulary of {vocab}"), Some("prompt")));
                }
                ids.to_vec()
            }
        };
        if ids.is_empty() {
            return Err(ApiError::bad_request("prompt is empty", Some("prompt")));
        }
        Ok((req.params, ids))
    }
    .await;
    respond(st, Endpoint::Completion, arrived, result, "prompt").await
}

/// Sends a request's events into a tokio channel; the client is gone when the channel is.
struct ChannelSink(mpsc::UnboundedSender<Event>);

impl EventSink for ChannelSink {
    fn send(&mut self, event: Event) -> bool {
        self.0.send(event).is_ok()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A queued request's context, for its response.
struct Job {
    st: Arc<AppState>,
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
    prompt_tokens: usize,
    include_usage: bool,
    arrived: Instant,
    last_token: Option<Instant>,
    rx: mpsc::UnboundedReceiver<Event>,
}

async fn respond(
    st: Arc<AppState>,
    endpoint: Endpoint,
    arrived: Instant,
    prepared: Result<(GenParams, Vec<u32>), ApiError>,
    prompt_param: &'static str,
) -> Response {
    let response = match prepared.and_then(|(params, ids)| submit(&st, endpoint, arrived, params, ids, prompt_param)) {
        Ok(Answer::Stream(job)) => stream(job),
        Ok(Answer::Whole(job)) => whole_answer(job).await,
        Err(e) => e.into_response(),
    };
    st.metrics.count(endpoint.label(), response.status().as_u16());
    response
}

enum Answer {
    Stream(Job),
    Whole(Job),
}

fn submit(st: &Arc<AppState>, endpoint: Endpoint, arrived: Instant, params: GenParams, ids: Vec<u32>, prompt_param: &'static str) -> Result<Answer, ApiError> {
    let r = ready(st)?;
    if ids.len() >= r.context {
        return Err(ApiError::context_length(ids.len(), r.context, prompt_param));
    }
    let room = r.context - ids.len();
    let max_tokens = params.max_completion_tokens.or(params.max_tokens).map_or(room, |m| (m.min(usize::MAX as u64) as usize).min(room));
    let n = st.next_id.fetch_add(1, Ordering::Relaxed);
    let seed = params.seed.unwrap_or_else(|| (SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)) ^ n.rotate_left(32));
    let sampling = SamplingConfig {
        temperature: params.temperature.unwrap_or(1.0),
        top_k: params.top_k.filter(|&k| k > 0).map(|k| k as usize),
        top_p: params.top_p,
        seed,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let prompt_tokens = ids.len();
    let request = GenRequest {
        prompt_ids: ids,
        sampling,
        max_tokens,
        stop: params.stop_strings(),
        ignore_eos: params.ignore_eos.unwrap_or(false),
        sink: Box::new(ChannelSink(tx)),
    };
    r.submitter.submit(request).map_err(|e| match e {
        SubmitError::QueueFull { .. } => ApiError::queue_full(e.to_string()),
        SubmitError::ShuttingDown => ApiError::unavailable(e.to_string()),
    })?;
    let prefix = match endpoint {
        Endpoint::Chat => "chatcmpl",
        Endpoint::Completion => "cmpl",
    };
    let job = Job {
        st: st.clone(),
        endpoint,
        id: format!("{prefix}-{n}-{:x}", seed & 0xffff_ffff),
        model: st.options.model_id.clone(),
        created: unix_now(),
        prompt_tokens,
        include_usage: params.include_usage(),
        arrived,
        last_token: None,
        rx,
    };
    Ok(if params.streaming() { Answer::Stream(job) } else { Answer::Whole(job) })
}

impl Job {
    /// Records a token's time in the latency histograms.
    fn timed(&mut self) {
        let now = Instant::now();
        match self.last_token {
            None => self.st.metrics.ttft.observe((now - self.arrived).as_secs_f64()),
            Some(t) => self.st.metrics.itl.observe((now - t).as_secs_f64()),
        }
        self.last_token = Some(now);
    }

    fn usage(&self, completion: usize) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": completion, "total_tokens": self.prompt_tokens + completion})
    }

    /// One streaming chunk: a piece of text (with the role on the first chat chunk), a finish
    /// reason, and the token id (`token_ids`, an extension OpenAI clients ignore).
    fn chunk(&self, text: Option<&str>, role: bool, finish: Option<FinishReason>, token: Option<u32>) -> Value {
        let finish = finish.map(FinishReason::as_str);
        let mut choice = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
            Endpoint::Completion => json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish}),
        };
        if let Some(t) = token {
            choice["token_ids"] = json!([t]);
        }
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completion => "text_completion",
        };
        let mut chunk = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice]});
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

/// Server-sent events: one chunk per token, the role with the first one, then the finish chunk,
/// the usage chunk when asked, and `[DONE]`.
fn stream(job: Job) -> Response {
    struct S {
        job: Job,
        out: VecDeque<String>,
        first: bool,
        ended: bool,
    }
    let state = S { job, out: VecDeque::new(), first: true, ended: false };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(data) = s.out.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(data)), s));
            }
            if s.ended {
                return None;
            }
            match s.job.rx.recv().await {
                Some(Event::Token(t)) => {
                    s.job.timed();
                    let chunk = s.job.chunk(Some(&t.text), s.first, None, Some(t.id));
                    s.first = false;
                    s.out.push_back(chunk.to_string());
                }
                Some(Event::Done(f)) => {
                    if !f.tail.is_empty() {
                        let chunk = s.job.chunk(Some(&f.tail), s.first, None, None);
                        s.first = false;
                        s.out.push_back(chunk.to_string());
                    }
                    let text = (s.first && s.job.endpoint == Endpoint::Chat).then_some("");
                    s.out.push_back(s.job.chunk(text, s.first, Some(f.reason), None).to_string());
                    if s.job.include_usage {
                        let usage = json!({"id": s.job.id, "object": match s.job.endpoint { Endpoint::Chat => "chat.completion.chunk", Endpoint::Completion => "text_completion" },
                            "created": s.job.created, "model": s.job.model, "choices": [], "usage": s.job.usage(f.completion_tokens)});
                        s.out.push_back(usage.to_string());
                    }
                    s.out.push_back("[DONE]".into());
                    s.ended = true;
                }
                Some(Event::Error(msg)) => {
                    s.out.push_back(ApiError::internal(msg).body().to_string());
                    s.out.push_back("[DONE]".into());
                    s.ended = true;
                }
                None => {
                    s.out.push_back(ApiError::internal("the scheduler dropped the request").body().to_string());
                    s.ended = true;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

/// The whole answer in one JSON body.
async fn whole_answer(mut job: Job) -> Response {
    let mut text = String::new();
    let mut ids = Vec::new();
    let (reason, completion) = loop {
        match job.rx.recv().await {
            Some(Event::Token(t)) => {
                job.timed();
                text.push_str(&t.text);
                ids.push(t.id);
            }
            Some(Event::Done(f)) => {
                text.push_str(&f.tail);
                break (f.reason, f.completion_tokens);
            }
            Some(Event::Error(msg)) => return ApiError::internal(msg).into_response(),
            None => return ApiError::internal("the scheduler dropped the request").into_response(),
        }
    };
    let choice = match job.endpoint {
        Endpoint::Chat => {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": reason.as_str(), "token_ids": ids})
        }
        Endpoint::Completion => json!({"index": 0, "text": text, "logprobs": null, "finish_reason": reason.as_str(), "token_ids": ids}),
    };
    let object = match job.endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Completion => "text_completion",
    };
    Json(json!({"id": job.id, "object": object, "created": job.created, "model": job.model, "choices": [choice], "usage": job.usage(completion)}))
        .into_response()
}
