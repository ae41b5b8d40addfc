//! Compile tests of `#[service]`: each `ui/*.rs` case is one diagnostic, with the compiler's
//! output pinned in the `.stderr` next to it; each `ui/pass/*.rs` case compiles and runs.
//!
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p rpc-tests --test macro_ui`,
//! then read every changed `.stderr`: it is what a user sees.

#[test]
fn service_macro_diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/*.rs");
}
