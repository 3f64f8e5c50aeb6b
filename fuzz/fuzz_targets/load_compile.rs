//! Manifest loading and compilation: arbitrary bytes must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let loaded = gw_model::load::parse("fuzz.yaml", &text);
    let mut resources = gw_model::resources::Resources::new();
    resources.extend(loaded.objects);
    let compiled = gw_model::compile(&resources, &gw_model::CompileOptions::new("gw.dev/gateway"));
    let _ = compiled.status.to_list();
});
