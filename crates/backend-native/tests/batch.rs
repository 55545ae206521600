//! Multi-sequence forward and the continuous-batching scheduler on native, with the real
//! SmolLM2 GGUF: on the tuned kernels (every sequence's tokens stacked into one activation
//! matrix) and on candle's stock ops (the sequences of a step run one after the other).

use backend_conformance::batch;
use bench_backend::backend::{Backend, DType, Device, DeviceInfo, Kernels, LanguageModel, LoadSpec};

struct Stock;

impl Backend for Stock {
    fn name(&self) -> &'static str {
        "native-stock"
    }
    fn device_info(&self, device: Device) -> DeviceInfo {
        backend_native::NativeBackend.device_info(device)
    }
    fn load(&self, spec: &LoadSpec) -> bench_backend::Result<Box<dyn LanguageModel>> {
        backend_native::NativeBackend.load(&LoadSpec { kernels: Kernels::Stock, ..spec.clone() })
    }
}

#[test]
fn tuned_forward_batch_logits_match_single() {
    batch::forward_batch_logits_match_single(&backend_native::NativeBackend);
}

#[test]
fn stock_forward_batch_logits_match_single() {
    batch::forward_batch_logits_match_single(&Stock);
}

#[test]
fn tuned_batched_greedy_equals_alone_q4_1() {
    batch::batched_greedy_equals_alone(&backend_native::NativeBackend, None);
}

#[test]
fn tuned_batched_greedy_equals_alone_f32() {
    batch::batched_greedy_equals_alone(&backend_native::NativeBackend, Some(DType::F32));
}

#[test]
fn stock_batched_greedy_equals_alone() {
    batch::batched_greedy_equals_alone(&Stock, Some(DType::F32));
}

#[test]
fn cancelled_request_frees_its_slot() {
    batch::cancelled_request_frees_its_slot(&backend_native::NativeBackend);
}
