//! The shared conformance suite, run against the torch (libtorch) framework.

backend_conformance::conformance_suite!(backend_torch::TorchBackend);
