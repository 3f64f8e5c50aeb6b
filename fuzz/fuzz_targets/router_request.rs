//! Whole requests through the router, in memory: arbitrary method, request target, Host,
//! headers and body against a configuration whose every rule answers inside the gateway
//! (redirects, rewrites, header filters, CORS, gRPC, 404, 500, 503). Must never panic.
//! The harness is shared with the regression replay test of gw-router.
#![no_main]

#[path = "../../crates/gw-router/tests/fuzzing/router_request.rs"]
mod router_request;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = router_request::run(data);
});
