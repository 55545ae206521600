//! `--shard N` on native: sharded output equals unsharded (all shards mapped to the CPU). Its own
//! test binary, because the check sets the test-only shard-devices environment variable.

#[test]
fn sharded_output_equals_unsharded() {
    backend_conformance::sharded_output_equals_unsharded(&backend_native::NativeBackend);
}
