//! Multi-sequence forward and the continuous-batching scheduler on llama.cpp (one
//! `llama_batch` carrying every sequence's tokens, each tagged with its slot's `seq_id`), with
//! the real SmolLM2 GGUF.

use backend_conformance::batch;

#[test]
fn forward_batch_logits_match_single() {
    batch::forward_batch_logits_match_single(&backend_llamacpp::LlamaCppBackend);
}

#[test]
fn batched_greedy_equals_alone() {
    batch::batched_greedy_equals_alone(&backend_llamacpp::LlamaCppBackend, None);
}

#[test]
fn cancelled_request_frees_its_slot() {
    batch::cancelled_request_frees_its_slot(&backend_llamacpp::LlamaCppBackend);
}
