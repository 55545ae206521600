//! Multi-sequence forward and the continuous-batching scheduler on libtorch (every sequence's
//! tokens stacked into one block for the products; rotation, cache write and attention per
//! sequence in its own KV-cache slot), with the real SmolLM2 GGUF.

use backend_conformance::batch;

#[test]
fn forward_batch_logits_match_single() {
    batch::forward_batch_logits_match_single(&backend_torch::TorchBackend);
}

#[test]
fn batched_greedy_equals_alone() {
    batch::batched_greedy_equals_alone(&backend_torch::TorchBackend, None);
}

#[test]
fn cancelled_request_frees_its_slot() {
    batch::cancelled_request_frees_its_slot(&backend_torch::TorchBackend);
}
