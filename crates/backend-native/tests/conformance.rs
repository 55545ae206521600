//! The shared conformance suite, run against the native (candle) framework.

backend_conformance::conformance_suite!(backend_native::NativeBackend);
