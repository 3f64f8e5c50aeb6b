//! Replays the fuzz corpora kept in the repository (`fuzz/regressions/<target>/`: crashes the
//! fuzz targets found, once fixed, plus hand-written seeds) through the same harness code, so
//! that `cargo test` keeps every fixed crash fixed.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "fuzzing/router_request.rs"]
mod router_request;

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

#[test]
fn router_request_corpus_replays_without_panics() {
    let mut routed = 0;
    for (path, data) in corpus("router_request") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = router_request::run(&data);
        routed += usize::from(outcome.is_some());
        // Seeds named `<status>-...` state the answer they must get.
        if let Some(expected) = name.split('-').next().and_then(|s| s.parse::<u16>().ok()) {
            let (status, body) = outcome.unwrap_or_else(|| panic!("{name}: not a request"));
            assert_eq!(status.as_u16(), expected, "{name}: {body:?}");
        }
    }
    assert!(routed > 0);
}

#[test]
fn sni_peek_corpus_replays_without_panics() {
    for (_, data) in corpus("sni_peek") {
        let _ = gw_router::l4::sni::parse_client_hello(&data);
        for cut in (0..data.len()).step_by(7) {
            let _ = gw_router::l4::sni::parse_client_hello(&data[..cut]);
        }
    }
}
