//! The continuous-batching loop (see the module doc of [`crate::serve`]).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bench_backend::backend::{LanguageModel, SeqStep};

use crate::run::sampling::{Sampler, SamplingConfig};
use crate::text::tokenizer::{TokenStream, Tokenizer};

/// Why a sequence ended, as OpenAI's `finish_reason` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// The request's token limit, or the end of the context.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One generated token and the text it completes (empty while a UTF-8 character or a possible
/// stop string is still incomplete: that text comes with a later token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEvent {
    /// The token id.
    pub id: u32,
    /// Text released with this token.
    pub text: String,
}

/// The end of a sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// Why it ended.
    pub reason: FinishReason,
    /// Text not yet released with a token (held back at an end-of-sequence token).
    pub tail: String,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (a stop token is not counted).
    pub completion_tokens: usize,
}

/// What a request's client receives, in order: tokens, then one `Done` or one `Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A token was made.
    Token(TokenEvent),
    /// The sequence ended.
    Done(Finish),
    /// The model failed on this sequence (or the server is shutting down before it started).
    Error(String),
}

/// Where a request's events go (an HTTP response stream, a test's channel).
pub trait EventSink: Send {
    /// Delivers one event; `false` when the client is gone (the request is then cancelled).
    fn send(&mut self, event: Event) -> bool;
    /// Whether the client is gone.
    fn is_closed(&self) -> bool;
}

impl EventSink for mpsc::Sender<Event> {
    fn send(&mut self, event: Event) -> bool {
        mpsc::Sender::send(self, event).is_ok()
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// One generation request: a tokenized prompt and how to sample and stop.
pub struct GenRequest {
    /// The prompt's token ids (chat template already applied).
    pub prompt_ids: Vec<u32>,
    /// Temperature, top-k, top-p and seed, as on the command line.
    pub sampling: SamplingConfig,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Strings that end the generation; the text stops before the first one found.
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Where the events go.
    pub sink: Box<dyn EventSink>,
}

/// Settings of a [`Scheduler`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Sequences decoded together (the model's KV-cache slots used; `--parallel`).
    pub slots: usize,
    /// Requests allowed to wait for a slot beyond those the free slots will take at the next
    /// step; one more is refused ([`SubmitError::QueueFull`]).
    pub max_queue: usize,
    /// Most prompt tokens of one sequence run in one step, so a long prompt does not stall the
    /// sequences already decoding for its whole prefill.
    pub prefill_chunk: usize,
}

/// Counters shared between the scheduler and its submitters (for `/metrics`).
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Requests waiting for a slot.
    pub queued: AtomicUsize,
    /// Sequences holding a slot.
    pub active: AtomicUsize,
    /// Forward steps run.
    pub steps: AtomicU64,
    /// Prompt tokens run through the model.
    pub prompt_tokens: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
}

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitError {
    /// `max_queue` requests are already waiting.
    QueueFull {
        /// The limit.
        limit: usize,
    },
    /// The scheduler is stopping or gone.
    ShuttingDown,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SubmitError::QueueFull { limit } => write!(f, "the server is busy: {limit} requests are already waiting; retry later"),
            SubmitError::ShuttingDown => f.write_str("the server is shutting down"),
        }
    }
}

/// The sending side: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Submitter {
    tx: mpsc::Sender<GenRequest>,
    stats: Arc<ServeStats>,
    shutdown: Arc<AtomicBool>,
    max_queue: usize,
    slots: usize,
}

impl Submitter {
    /// Queues a request, or refuses it when the queue is full or the scheduler is stopping.
    pub fn submit(&self, request: GenRequest) -> Result<(), SubmitError> {
        if self.shutdown.load(Ordering::SeqCst) {
            return Err(SubmitError::ShuttingDown);
        }
        // Requests that arrive together while slots are free do not count against the queue: the
        // free slots take them at the next step.
        let free = self.slots.saturating_sub(self.stats.active.load(Ordering::SeqCst));
        if self.stats.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queue + free {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::QueueFull { limit: self.max_queue });
        }
        self.tx.send(request).map_err(|_| {
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            SubmitError::ShuttingDown
        })
    }

    /// The shared counters.
    pub fn stats(&self) -> &Arc<ServeStats> {
        &self.stats
    }

    /// Asks the scheduler to stop: queued requests get an error, running ones finish, new ones
    /// are refused; [`Scheduler::run`] returns when the last one is done.
    pub fn shut_down(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

/// One sequence holding a slot.
struct Active<'t> {
    request: GenRequest,
    slot: usize,
    /// Prompt tokens already run.
    prefilled: usize,
    /// Positions the slot's cache holds.
    pos: usize,
    /// The last sampled token, to run next.
    next: Option<u32>,
    generated: usize,
    sampler: Sampler,
    stream: TokenStream<'t>,
    /// All text decoded so far, and how much of it was released.
    text: String,
    released: usize,
}

/// The model's side: owns the model for as long as it runs.
pub struct Scheduler<'a> {
    model: &'a mut dyn LanguageModel,
    tokenizer: &'a Tokenizer,
    config: SchedulerConfig,
    rx: mpsc::Receiver<GenRequest>,
    stats: Arc<ServeStats>,
    shutdown: Arc<AtomicBool>,
    waiting: VecDeque<GenRequest>,
    /// Positions one slot holds, and the vocabulary size (from the model's info, read once).
    context: usize,
    vocab: usize,
}

impl<'a> Scheduler<'a> {
    /// A scheduler for `model` and the submitter that feeds it. `config.slots` is capped at the
    /// model's slots ([`LanguageModel::slots`]); the caller checks they match to say so.
    pub fn new(model: &'a mut dyn LanguageModel, tokenizer: &'a Tokenizer, config: SchedulerConfig) -> (Scheduler<'a>, Submitter) {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(ServeStats::default());
        let shutdown = Arc::new(AtomicBool::new(false));
        let config = SchedulerConfig { slots: config.slots.clamp(1, model.slots().max(1)), prefill_chunk: config.prefill_chunk.max(1), ..config };
        let submitter = Submitter { tx, stats: stats.clone(), shutdown: shutdown.clone(), max_queue: config.max_queue, slots: config.slots };
        let info = model.info();
        let (context, vocab) = (info.max_seq_len, info.architecture.vocab_size);
        (Scheduler { model, tokenizer, config, rx, stats, shutdown, waiting: VecDeque::new(), context, vocab }, submitter)
    }

    /// Sequences decoded together.
    pub fn slots(&self) -> usize {
        self.config.slots
    }

    /// Runs until shut down (every running request finished) or until every submitter is gone
    /// and nothing is left to do.
    pub fn run(&mut self) {
        let mut active: Vec<Active<'a>> = Vec::new();
        let mut disconnected = false;
        loop {
            // Take in new requests: block while idle, only drain while decoding.
            loop {
                let got = if active.is_empty() && self.waiting.is_empty() && !disconnected {
                    match self.rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(r) => Some(r),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            disconnected = true;
                            None
                        }
                    }
                } else {
                    match self.rx.try_recv() {
                        Ok(r) => Some(r),
                        Err(mpsc::TryRecvError::Empty) => None,
                        Err(mpsc::TryRecvError::Disconnected) => {
                            disconnected = true;
                            None
                        }
                    }
                };
                match got {
                    Some(r) => self.waiting.push_back(r),
                    None => break,
                }
            }
            let stopping = self.shutdown.load(Ordering::SeqCst);
            if stopping {
                for mut r in self.waiting.drain(..) {
                    self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                    r.sink.send(Event::Error("the server is shutting down".into()));
                }
            }
            // Clients that left: drop their requests and free their slots.
            self.waiting.retain(|r| {
                let keep = !r.sink.is_closed();
                if !keep {
                    self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                }
                keep
            });
            active.retain(|a| !a.request.sink.is_closed());
            // Admit queued requests into free slots.
            while active.len() < self.config.slots {
                let Some(request) = self.waiting.pop_front() else { break };
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                let slot = (0..self.config.slots).find(|s| active.iter().all(|a| a.slot != *s)).unwrap_or(0);
                if let Some(msg) = self.refuse(&request) {
                    let mut request = request;
                    request.sink.send(Event::Error(msg));
                    continue;
                }
                self.model.reset_slot(slot);
                active.push(Active {
                    sampler: Sampler::new(request.sampling),
                    request,
                    slot,
                    prefilled: 0,
                    pos: 0,
                    next: None,
                    generated: 0,
                    stream: TokenStream::new(self.tokenizer),
                    text: String::new(),
                    released: 0,
                });
            }
            self.stats.active.store(active.len(), Ordering::SeqCst);
            if active.is_empty() {
                if (stopping || disconnected) && self.waiting.is_empty() {
                    return;
                }
                continue;
            }
            self.step(&mut active);
            self.stats.active.store(active.len(), Ordering::SeqCst);
        }
    }

    /// Why a request cannot run at all (checked again here so a caller that skipped it gets an
    /// error, not a failed step for the whole batch).
    fn refuse(&self, r: &GenRequest) -> Option<String> {
        let (context, vocab) = (self.context, self.vocab);
        if r.prompt_ids.is_empty() {
            return Some("the prompt is empty".into());
        }
        if r.prompt_ids.len() >= context {
            return Some(format!("the prompt is {} tokens but the context holds {context}", r.prompt_ids.len()));
        }
        if let Some(bad) = r.prompt_ids.iter().find(|&&t| t as usize >= vocab) {
            return Some(format!("token id {bad} is outside the vocabulary of {vocab}"));
        }
        if r.max_tokens == 0 {
            return Some("max_tokens must be at least 1".into());
        }
        if let Err(e) = r.sampling.validate() {
            return Some(e.to_string());
        }
        None
    }

    /// One forward over every active sequence, then sampling and events; finished and failed
    /// sequences leave `active`.
    fn step(&mut self, active: &mut Vec<Active<'a>>) {
        let chunk = self.config.prefill_chunk;
        let steps: Vec<SeqStep> = active
            .iter()
            .map(|a| match a.next {
                Some(ref t) => SeqStep { slot: a.slot, pos: a.pos, tokens: std::slice::from_ref(t) },
                None => {
                    let end = (a.prefilled + chunk).min(a.request.prompt_ids.len());
                    SeqStep { slot: a.slot, pos: a.pos, tokens: &a.request.prompt_ids[a.prefilled..end] }
                }
            })
            .collect();
        let sizes: Vec<usize> = steps.iter().map(|s| s.tokens.len()).collect();
        let result = {
            let _span = tracing::debug_span!("serve_step", sequences = steps.len(), tokens = sizes.iter().sum::<usize>()).entered();
            self.model.forward_batch(&steps)
        };
        drop(steps);
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        let logits = match result {
            Ok(l) if l.len() == active.len() => l,
            Ok(l) => {
                let msg = format!("the model returned {} rows of logits for {} sequences", l.len(), active.len());
                self.fail_all(active, &msg);
                return;
            }
            Err(e) => {
                self.fail_all(active, &e.to_string());
                return;
            }
        };
        let context = self.context;
        let mut done = vec![false; active.len()];
        for (i, (a, logits)) in active.iter_mut().zip(logits).enumerate() {
            let n = sizes[i];
            a.pos += n;
            if a.next.is_none() {
                a.prefilled += n;
                self.stats.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
                if a.prefilled < a.request.prompt_ids.len() {
                    continue;
                }
            }
            let token = a.sampler.sample(&logits);
            done[i] = match self.accept(a, token, context) {
                Ok(finished) => finished,
                Err(msg) => {
                    a.request.sink.send(Event::Error(msg));
                    true
                }
            };
        }
        let mut i = 0;
        active.retain(|_| {
            i += 1;
            !done[i - 1]
        });
    }

    fn fail_all(&mut self, active: &mut Vec<Active<'a>>, msg: &str) {
        tracing::error!("forward step failed: {msg}");
        for mut a in active.drain(..) {
            a.request.sink.send(Event::Error(format!("the model failed: {msg}")));
            self.model.reset_slot(a.slot);
        }
    }

    /// Handles a sampled token: stop checks, text release, the event. `Ok(true)` when the
    /// sequence is finished (or its client gone).
    fn accept(&mut self, a: &mut Active<'a>, token: u32, context: usize) -> Result<bool, String> {
        let r = &mut a.request;
        let prompt_tokens = r.prompt_ids.len();
        if !r.ignore_eos && self.tokenizer.is_stop(token) {
            let tail = flush(&mut a.stream, &mut a.text, a.released)?;
            r.sink.send(Event::Done(Finish { reason: FinishReason::Stop, tail, prompt_tokens, completion_tokens: a.generated }));
            return Ok(true);
        }
        a.generated += 1;
        self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
        if let Some(piece) = a.stream.push(token).map_err(|e| e.to_string())? {
            a.text.push_str(&piece);
        }
        // A stop string: the text ends before it, and so does the sequence.
        if let Some(at) = find_stop(&a.text, &r.stop, a.released) {
            let text = a.text[a.released..at].to_string();
            a.released = at;
            let alive = r.sink.send(Event::Token(TokenEvent { id: token, text }));
            if alive {
                r.sink.send(Event::Done(Finish { reason: FinishReason::Stop, tail: String::new(), prompt_tokens, completion_tokens: a.generated }));
            }
            return Ok(true);
        }
        let length = a.generated >= r.max_tokens || a.pos + 1 >= context;
        let text = if length {
            let rest = flush(&mut a.stream, &mut a.text, a.released)?;
            a.released = a.text.len();
            rest
        } else {
            let safe = a.text.len() - held_back(&a.text[a.released..], &r.stop);
            let text = a.text[a.released..safe].to_string();
            a.released = safe;
            text
        };
        if !r.sink.send(Event::Token(TokenEvent { id: token, text })) {
            return Ok(true);
        }
        if length {
            r.sink.send(Event::Done(Finish { reason: FinishReason::Length, tail: String::new(), prompt_tokens, completion_tokens: a.generated }));
            return Ok(true);
        }
        a.next = Some(token);
        Ok(false)
    }
}

/// The text not released yet, with whatever the stream still held back.
fn flush(stream: &mut TokenStream, text: &mut String, released: usize) -> Result<String, String> {
    if let Some(piece) = stream.finish().map_err(|e| e.to_string())? {
        text.push_str(&piece);
    }
    Ok(text[released..].to_string())
}

/// Where the first stop string starts in `text`, looking only where a match could involve text
/// not released yet (released text held no stop string).
pub(crate) fn find_stop(text: &str, stops: &[String], released: usize) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let mut from = released.saturating_sub(s.len() - 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min()
}

/// Bytes at the end of `pending` that could be the start of a stop string (held back until the
/// next token says).
pub(crate) fn held_back(pending: &str, stops: &[String]) -> usize {
    stops.iter().flat_map(|s| (1..s.len()).filter(|&k| s.is_char_boundary(k) && pending.ends_with(&s[..k])).max()).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_are_found_across_the_released_boundary() {
        let stops = vec!["\n\n".to_string(), "END".to_string()];
        assert_eq!(find_stop("abc\n", &stops, 3), None);
        assert_eq!(find_stop("abc\n\nx", &stops, 4), Some(3));
        assert_eq!(find_stop("xxENDyy", &stops, 4), Some(2));
        assert_eq!(find_stop("xxENDyy", &stops, 0), Some(2));
        assert_eq!(find_stop("é END", &stops, 1), Some(3));
        assert_eq!(held_back("abc\n", &stops), 1);
        assert_eq!(held_back("abcEN", &stops), 2);
        assert_eq!(held_back("abc", &stops), 0);
        assert_eq!(held_back("abc", &[]), 0);
    }
}
