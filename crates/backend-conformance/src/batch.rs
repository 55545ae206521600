//! Checks of a framework's multi-sequence forward ([`LanguageModel::forward_batch`]) and of
//! bench-core's continuous-batching scheduler on it, with the real SmolLM2 GGUF: a sequence's
//! logits and greedy tokens must not depend on what else is in the batch (beyond float
//! rounding), and a request whose client leaves must free its slot for the next one.
//!
//! The reference for "alone" is the command line's own generation loop (`generate`, one
//! sequence through `forward`), not the scheduler under test.

use std::sync::mpsc;

use bench_backend::backend::{Backend, DType, LanguageModel, LoadSpec, SeqStep};
use bench_core::run::generate::generate;
use bench_core::run::sampling::{Sampler, SamplingConfig};
use bench_core::serve::{Event, EventSink, FinishReason, GenRequest, Scheduler, SchedulerConfig};

use crate::{fixtures, gguf_source, spec};

/// Tokens compared per request.
const TOKENS: usize = 24;

fn load(backend: &dyn Backend, dtype: Option<DType>, slots: usize) -> Box<dyn LanguageModel> {
    backend.load(&LoadSpec { slots, ..spec(gguf_source(&fixtures::smollm2_gguf()), dtype) }).unwrap()
}

/// The test prompts: the three questions and a longer, different one (prompts of unequal
/// lengths, so the sequences sit at different positions in every step).
fn prompts() -> Vec<Vec<u32>> {
    let mut p = fixtures::question_prompts();
    let tok = fixtures::smollm2_tokenizer();
    let tmpl = bench_core::text::chat::ChatTemplate::for_tokenizer(&tok);
    let long = "List the planets of the solar system in order from the Sun, with one fact about each of them.";
    p.push(bench_core::text::chat::encode_chat(&tok, &tmpl, &[bench_core::text::chat::Message::new(bench_core::text::chat::Role::User, long)]).unwrap());
    p
}

/// One step of several sequences gives each the logits it gets alone (a prompt in one slot, a
/// decode token in another), and slots do not see each other's caches.
pub fn forward_batch_logits_match_single(backend: &dyn Backend) {
    let p = prompts();
    let mut single = load(backend, Some(DType::F32), 1);
    let mut alone = Vec::new();
    for prompt in &p[..3] {
        single.reset();
        alone.push(single.forward(prompt, 0).unwrap());
    }
    let mut batched = load(backend, Some(DType::F32), 3);
    assert_eq!(batched.slots(), 3);
    // Slots 2 and 0 first, then slot 1 joins while the others decode one more token each.
    let first = batched.forward_batch(&[SeqStep { slot: 2, pos: 0, tokens: &p[2] }, SeqStep { slot: 0, pos: 0, tokens: &p[0] }]).unwrap();
    let next = [bench_core::run::sampling::argmax(&first[1]), bench_core::run::sampling::argmax(&first[0])];
    let second = batched
        .forward_batch(&[
            SeqStep { slot: 0, pos: p[0].len(), tokens: &next[..1] },
            SeqStep { slot: 1, pos: 0, tokens: &p[1] },
            SeqStep { slot: 2, pos: p[2].len(), tokens: &next[1..] },
        ])
        .unwrap();
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    let tol = crate::F32_LOGIT_TOLERANCE;
    let d = [diff(&first[0], &alone[2]), diff(&first[1], &alone[0]), diff(&second[1], &alone[1])];
    println!("batch[{}]: max |logit diff| batched vs alone: {d:?}", backend.name());
    assert!(d.iter().all(|&x| x <= tol), "batched logits differ from single-sequence ones by {d:?} (tolerance {tol})");
    // The decode tokens against the single-sequence path.
    for (slot, prompt, token, got) in [(0, &p[0], next[0], &second[0]), (2, &p[2], next[1], &second[2])] {
        single.reset();
        single.forward(prompt, 0).unwrap();
        let want = single.forward(&[token], prompt.len()).unwrap();
        let d = diff(got, &want);
        assert!(d <= tol, "slot {slot}: decode logits differ by {d} from the single-sequence path");
    }
    // Bad steps are errors, not panics.
    let mut err = |seqs: &[SeqStep]| batched.forward_batch(seqs).unwrap_err().to_string();
    assert!(err(&[SeqStep { slot: 3, pos: 0, tokens: &p[0] }]).contains("slot 3 does not exist"));
    assert!(err(&[SeqStep { slot: 1, pos: 0, tokens: &p[1] }]).contains("cache holds"));
    let e = err(&[SeqStep { slot: 1, pos: p[1].len(), tokens: &next[..1] }, SeqStep { slot: 1, pos: p[1].len(), tokens: &next[..1] }]);
    assert!(e.contains("named twice"), "{e}");
    assert!(err(&[]).contains("no sequences"));
    batched.reset_slot(1);
    batched.forward_batch(&[SeqStep { slot: 1, pos: 0, tokens: &p[1] }]).unwrap();
}

/// Greedy tokens of each request served together through the scheduler equal the tokens the
/// command line's loop makes for it alone (the first 16 at least; all of them in practice).
pub fn batched_greedy_equals_alone(backend: &dyn Backend, dtype: Option<DType>) {
    let p = prompts();
    let tok = fixtures::smollm2_tokenizer();
    let mut single = load(backend, dtype, 1);
    let alone: Vec<Vec<u32>> = p
        .iter()
        .map(|prompt| {
            let mut sampler = Sampler::new(SamplingConfig::greedy());
            let mut ids = generate(single.as_mut(), &tok, prompt, &mut sampler, TOKENS, |_| {}).unwrap().generated_ids;
            ids.truncate(TOKENS);
            ids
        })
        .collect();
    drop(single);

    let mut model = load(backend, dtype, 4);
    // A prefill chunk shorter than the prompts: prompts are fed over several steps while the
    // others decode.
    let config = SchedulerConfig { slots: 4, max_queue: 16, prefill_chunk: 16 };
    let (mut scheduler, submitter) = Scheduler::new(model.as_mut(), &tok, config);
    let receivers: Vec<mpsc::Receiver<Event>> = p
        .iter()
        .map(|prompt| {
            let (tx, rx) = mpsc::channel();
            let request = GenRequest {
                prompt_ids: prompt.clone(),
                sampling: SamplingConfig::greedy(),
                max_tokens: TOKENS,
                stop: vec![],
                ignore_eos: false,
                sink: Box::new(tx),
            };
            submitter.submit(request).unwrap();
            rx
        })
        .collect();
    drop(submitter);
    scheduler.run();
    for (i, rx) in receivers.into_iter().enumerate() {
        let events: Vec<Event> = rx.into_iter().collect();
        let ids: Vec<u32> = events.iter().filter_map(|e| if let Event::Token(t) = e { Some(t.id) } else { None }).collect();
        let same = ids.iter().zip(&alone[i]).take_while(|(a, b)| a == b).count();
        println!("batch[{}]: request {i}: {same}/{} greedy tokens equal alone", backend.name(), alone[i].len());
        assert!(same >= 16.min(alone[i].len()), "request {i}: batched {ids:?}\n alone {:?}", alone[i]);
        let Some(Event::Done(done)) = events.last() else { panic!("request {i} did not end with Done: {events:?}") };
        assert_eq!(done.completion_tokens, ids.len());
        assert_eq!(done.prompt_tokens, p[i].len());
        if ids.len() == TOKENS {
            assert_eq!(done.reason, FinishReason::Length);
        }
        let text: String = events
            .iter()
            .map(|e| {
                if let Event::Token(t) = e {
                    t.text.as_str()
                } else if let Event::Done(d) = e {
                    d.tail.as_str()
                } else {
                    ""
                }
            })
            .collect();
        assert_eq!(text, tok.decode(&ids, true).unwrap(), "request {i}: streamed text differs from the decoded tokens");
    }
}

/// A sink whose client leaves after `tokens` tokens.
struct LeavesAfter {
    tokens: usize,
    seen: usize,
    tx: mpsc::Sender<Event>,
}

impl EventSink for LeavesAfter {
    fn send(&mut self, event: Event) -> bool {
        if matches!(event, Event::Token(_)) {
            self.seen += 1;
        }
        let _ = self.tx.send(event);
        !self.is_closed()
    }
    fn is_closed(&self) -> bool {
        self.seen >= self.tokens
    }
}

/// With one slot, a request whose client leaves after 3 tokens frees the slot, and the queued
/// request behind it runs to its end; a stop string ends a request before the string.
pub fn cancelled_request_frees_its_slot(backend: &dyn Backend) {
    let p = prompts();
    let tok = fixtures::smollm2_tokenizer();
    let mut model = load(backend, Some(DType::F32), 1);
    let (mut scheduler, submitter) = Scheduler::new(model.as_mut(), &tok, SchedulerConfig { slots: 1, max_queue: 2, prefill_chunk: 512 });
    let (tx_a, rx_a) = mpsc::channel();
    let greedy = SamplingConfig::greedy();
    let gone = GenRequest {
        prompt_ids: p[0].clone(),
        sampling: greedy,
        max_tokens: 200,
        stop: vec![],
        ignore_eos: true,
        sink: Box::new(LeavesAfter { tokens: 3, seen: 0, tx: tx_a }),
    };
    submitter.submit(gone).unwrap();
    let (tx_b, rx_b) = mpsc::channel();
    submitter.submit(GenRequest { prompt_ids: p[1].clone(), sampling: greedy, max_tokens: 8, stop: vec![], ignore_eos: true, sink: Box::new(tx_b) }).unwrap();
    let (tx_c, rx_c) = mpsc::channel();
    // The answer to the first question names Paris: stop there.
    submitter
        .submit(GenRequest { prompt_ids: p[0].clone(), sampling: greedy, max_tokens: 64, stop: vec!["Paris".into()], ignore_eos: false, sink: Box::new(tx_c) })
        .unwrap();
    let (tx_d, _rx_d) = mpsc::channel();
    let full =
        submitter.submit(GenRequest { prompt_ids: p[2].clone(), sampling: greedy, max_tokens: 8, stop: vec![], ignore_eos: false, sink: Box::new(tx_d) });
    // The one free slot takes one of the three, two wait (the limit): a fourth is refused.
    assert_eq!(full.unwrap_err(), bench_core::serve::SubmitError::QueueFull { limit: 2 });
    let stats = submitter.stats().clone();
    drop(submitter);
    scheduler.run();
    let a: Vec<Event> = rx_a.into_iter().collect();
    assert_eq!(a.iter().filter(|e| matches!(e, Event::Token(_))).count(), 3, "the leaving client got more than its 3 tokens: {a:?}");
    let b: Vec<Event> = rx_b.into_iter().collect();
    assert_eq!(b.iter().filter(|e| matches!(e, Event::Token(_))).count(), 8);
    assert!(matches!(b.last(), Some(Event::Done(d)) if d.reason == FinishReason::Length), "{b:?}");
    let c: Vec<Event> = rx_c.into_iter().collect();
    let text: String = c.iter().filter_map(|e| if let Event::Token(t) = e { Some(t.text.as_str()) } else { None }).collect();
    println!("batch[{}]: text before the stop string: {text:?}", backend.name());
    assert!(matches!(c.last(), Some(Event::Done(d)) if d.reason == FinishReason::Stop), "{c:?}");
    assert!(!text.contains("Paris"), "{text:?}");
    use std::sync::atomic::Ordering;
    assert_eq!((stats.queued.load(Ordering::SeqCst), stats.active.load(Ordering::SeqCst)), (0, 0));
    assert_eq!(stats.generated_tokens.load(Ordering::SeqCst) as usize, 3 + 8 + c.iter().filter(|e| matches!(e, Event::Token(_))).count());
}
