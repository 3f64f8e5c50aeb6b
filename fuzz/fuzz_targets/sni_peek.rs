//! The ClientHello parser behind TLS passthrough: arbitrary bytes, and their prefixes (what a
//! peek sees while a hello arrives in pieces), must never panic.
#![no_main]

use gw_router::l4::sni::parse_client_hello;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_hello(data);
    for cut in (0..data.len()).step_by(7) {
        let _ = parse_client_hello(&data[..cut]);
    }
});
