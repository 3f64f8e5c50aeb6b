//! Replays `fuzz/regressions/load_compile/` (crashes the `load_compile` fuzz target found,
//! once fixed, plus hand-written seeds) through loading and compilation, as the target does.

#![allow(missing_docs, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;

#[test]
fn load_compile_corpus_replays_without_panics() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/load_compile");
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&data);
        let loaded = gw_model::load::parse("fuzz.yaml", &text);
        let mut resources = gw_model::resources::Resources::new();
        resources.extend(loaded.objects);
        let compiled =
            gw_model::compile(&resources, &gw_model::CompileOptions::new("gw.dev/gateway"));
        let _ = compiled.status.to_list();
        inputs += 1;
    }
    assert!(inputs > 0, "no inputs in {}", dir.display());
}
