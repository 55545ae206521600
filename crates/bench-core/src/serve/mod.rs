//! Serving many requests on one model: a continuous-batching scheduler, framework-free.
//!
//! Requests arrive through a [`Submitter`] (any thread); the [`Scheduler`] runs on the model's
//! own thread and keeps up to `slots` sequences active, each in its own KV-cache slot. Every step
//! is one [`LanguageModel::forward_batch`] over the active sequences: the next chunk of a new
//! prompt, or the one token a running sequence sampled last. Each sequence samples with the
//! command line's [`Sampler`] (its own temperature, top-k, top-p and seed), streams every token to
//! its [`EventSink`] as it is made, and stops on an end-of-sequence token (unless `ignore_eos`),
//! a stop string, its token limit or the end of the context. A freed slot takes the next queued
//! request at the next step; a request whose client has gone frees its slot at the next step.
//!
//! The scheme is Orca's iteration-level scheduling (Yu et al., OSDI 2022), as llama.cpp's server
//! and vLLM run it: sequences join and leave the batch between steps, never waiting for a whole
//! batch to finish.

mod scheduler;

pub use scheduler::{Event, EventSink, Finish, FinishReason, GenRequest, Scheduler, SchedulerConfig, ServeStats, SubmitError, Submitter, TokenEvent};
