//! The conversion over every manifest of the Gateway API conformance corpus: each object the
//! controller watches, deserialized into its `gateway-api` / `k8s-openapi` type (as a watch
//! delivers it) and converted, equals what gw-model's loader makes of the YAML directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use gw_k8s::convert::{Conversion, convert};
use gw_model::load::{self, DocumentRef};
use serde::de::DeserializeOwned;
use serde_json::Value;

use gateway_api::experimental as x;
use k8s_openapi::api::core::v1 as core;

fn typed<K>(value: &Value) -> Result<Conversion, String>
where
    K: DeserializeOwned + serde::Serialize + kube::ResourceExt,
{
    let object: K = serde_json::from_value(value.clone()).map_err(|e| format!("typed: {e}"))?;
    convert(&object).map_err(|e| format!("convert: {e}"))
}

/// Converts through the type the controller watches this kind with; `None` for kinds it does
/// not watch (Deployments, Pods, ...).
fn through_watch_type(value: &Value) -> Option<Result<Conversion, String>> {
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = value["kind"].as_str().unwrap_or_default();
    Some(match (group, kind) {
        ("gateway.networking.k8s.io", "GatewayClass") => {
            typed::<x::gatewayclasses::GatewayClass>(value)
        }
        ("gateway.networking.k8s.io", "Gateway") => typed::<x::gateways::Gateway>(value),
        ("gateway.networking.k8s.io" | "gateway.networking.x-k8s.io", "ListenerSet") => {
            typed::<x::listenersets::ListenerSet>(value)
        }
        ("gateway.networking.k8s.io", "HTTPRoute") => typed::<x::httproutes::HttpRoute>(value),
        ("gateway.networking.k8s.io", "GRPCRoute") => typed::<x::grpcroutes::GrpcRoute>(value),
        ("gateway.networking.k8s.io", "TLSRoute") => typed::<x::tlsroutes::TlsRoute>(value),
        ("gateway.networking.k8s.io", "TCPRoute") => typed::<x::tcproutes::TcpRoute>(value),
        ("gateway.networking.k8s.io", "UDPRoute") => typed::<x::udproutes::UdpRoute>(value),
        ("gateway.networking.k8s.io", "ReferenceGrant") => {
            typed::<x::referencegrants::ReferenceGrant>(value)
        }
        ("gateway.networking.k8s.io", "BackendTLSPolicy") => {
            typed::<gateway_api::backendtlspolicies::BackendTlsPolicy>(value)
        }
        ("", "Service") => typed::<core::Service>(value),
        ("", "Secret") => typed::<core::Secret>(value),
        ("", "ConfigMap") => typed::<core::ConfigMap>(value),
        ("", "Namespace") => typed::<core::Namespace>(value),
        ("discovery.k8s.io", "EndpointSlice") => {
            typed::<k8s_openapi::api::discovery::v1::EndpointSlice>(value)
        }
        _ => return None,
    })
}

fn manifests(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("base/manifests.yaml")];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("tests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut yamls: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "yaml")
                    && p.file_name().is_some_and(|n| n != "test.yaml")
            })
            .collect();
        yamls.sort();
        files.extend(yamls);
    }
    files
}

/// The YAML documents of a file (split at `---` lines, as the loader does).
fn documents(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines().chain(std::iter::once("---")) {
        if line == "---" || line.starts_with("--- ") {
            if !current.trim().is_empty() {
                let value: Value = serde_saphyr::from_str(&current).unwrap();
                if !value.is_null() {
                    docs.push(value);
                }
            }
            current.clear();
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs
}

#[test]
fn every_corpus_object_converts_like_its_yaml_loads() {
    let corpus = match gw_conformance::corpus::Corpus::locate() {
        Ok(c) => c,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let mut compared = 0;
    let mut kinds = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for file in manifests(&corpus.root) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (index, doc) in documents(&text).into_iter().enumerate() {
            let Some(via_watch) = through_watch_type(&doc) else {
                continue;
            };
            let what = format!(
                "{} (document {index}) {} {}",
                file.strip_prefix(&corpus.root).unwrap().display(),
                doc["kind"].as_str().unwrap_or_default(),
                doc["metadata"]["name"].as_str().unwrap_or_default()
            );
            let direct = load::parse_value(
                &DocumentRef {
                    source: "direct".into(),
                    index: 0,
                },
                doc.clone(),
            );
            match via_watch {
                Ok(conversion) => {
                    if !direct.errors.is_empty() {
                        failures.push(format!(
                            "{what}: loads with errors directly: {:?}",
                            direct.errors
                        ));
                        continue;
                    }
                    let expected = direct.objects.into_iter().next();
                    if conversion.object != expected {
                        failures.push(format!(
                            "{what}: differs\n  via watch: {:?}\n  direct:    {expected:?}",
                            conversion.object
                        ));
                        continue;
                    }
                    let direct_warnings: Vec<_> = direct.warnings.iter().map(|w| &w.path).collect();
                    let watch_warnings: Vec<_> =
                        conversion.warnings.iter().map(|w| &w.path).collect();
                    if direct_warnings != watch_warnings {
                        failures.push(format!(
                            "{what}: warnings differ: {watch_warnings:?} vs {direct_warnings:?}"
                        ));
                        continue;
                    }
                    if let Some(o) = &expected {
                        kinds.insert(o.kind());
                    }
                    compared += 1;
                }
                Err(e) => {
                    // An object the typed watch cannot read is only acceptable when gw-model
                    // rejects it too (the API server would not store it).
                    if direct.errors.is_empty() {
                        failures.push(format!("{what}: {e}"));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} objects differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!(
        "{compared} objects of {} kinds convert exactly: {kinds:?}",
        kinds.len()
    );
    assert!(compared >= 250, "only {compared} objects compared");
    assert!(kinds.len() >= 13, "only {kinds:?}");
}
