//! The shared conformance suite, run against the native (candle) framework on both of its kernel
//! paths: the tuned kernels (the default) and candle's stock ops.

mod tuned {
    backend_conformance::conformance_suite!(backend_native::NativeBackend);
}

mod stock {
    use bench_backend::backend::{Backend, Device, DeviceInfo, Kernels, LanguageModel, LoadSpec};

    /// The native framework with `--kernels stock`.
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

    backend_conformance::conformance_suite!(Stock);
}
