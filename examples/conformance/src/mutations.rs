//! The mid-test mutations of `other_checks` (`check: mutation`), replayed on the emulated cluster.
//!
//! A mutation is named by its text (`Delete ReferenceGrant ns/name`, `Create TCPRoute ns/name`,
//! `Patch Gateway ns/name`) and, as the same text can occur twice (GatewayStaticAddresses), by its
//! occurrence among equal texts. Deletes are generic. Creates and patches are only replayed where
//! the corpus pins the exact content down (the prose of `other_checks`, cross-checked with the Go
//! test named in `source:`); every other one is [`MutationError::NotReproducible`], and the checks
//! that depend on it are reported as not applicable.

use serde_json::{Value, json};

use gw_model::resources::Kind;

use crate::cluster::{Cluster, MUTATION_CREATED, ObjectId, UNUSABLE_ADDRESS, generation_of};

const INFRA: &str = "gateway-conformance-infra";

/// Why a mutation was not replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationError {
    /// The corpus does not say exactly what the Go test changes.
    NotReproducible(String),
    /// The harness or the corpus is inconsistent (unparsable text, missing object, ...).
    Harness(String),
}

/// A parsed mutation text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// `Create`, `Delete` or `Patch`.
    pub verb: String,
    /// The object.
    pub id: ObjectId,
}

impl Mutation {
    /// Parses `Verb Kind namespace/name` (or `Verb Kind name` for cluster-scoped kinds).
    pub fn parse(text: &str) -> Result<Mutation, MutationError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [verb, kind, target] = parts.as_slice() else {
            return Err(MutationError::Harness(format!(
                "mutation text {text:?} is not `Verb Kind [namespace/]name`"
            )));
        };
        let (namespace, name) = target.split_once('/').unwrap_or(("", target));
        Ok(Mutation {
            verb: (*verb).to_owned(),
            id: ObjectId::new(kind, namespace, name),
        })
    }
}

/// Replays the `occurrence`-th (0-based) mutation with this text.
pub fn apply(cluster: &mut Cluster, text: &str, occurrence: usize) -> Result<(), MutationError> {
    let mutation = Mutation::parse(text)?;
    match mutation.verb.as_str() {
        "Delete" => {
            if cluster.remove(&mutation.id) {
                Ok(())
            } else {
                Err(MutationError::Harness(format!(
                    "{text}: {} does not exist",
                    mutation.id
                )))
            }
        }
        "Create" => {
            let manifest = created_object(cluster, &mutation.id)?;
            cluster.apply("harness:mutation", occurrence, manifest, MUTATION_CREATED);
            Ok(())
        }
        "Patch" => patch(cluster, &mutation.id, occurrence),
        verb => Err(MutationError::Harness(format!(
            "{text}: unknown verb {verb:?}"
        ))),
    }
}

/// Objects the Go tests create in code. The routes are described by the route_conflict prose
/// ("a newer TCPRoute (parentRef section 'tcp', backend tcp-attach-backend-2:3000)"); the Go tests
/// (tcproute-/udproute-multiple-routes-attachment.go) give the parent Gateway and the UDP backend
/// port. The BackendTLSPolicy CA ConfigMap is a copy of the suite's CA ConfigMap: the status
/// checks after its creation expect the policy to be Accepted with its references resolved, and
/// the ca_rotation prose restores it to that content.
fn created_object(cluster: &Cluster, id: &ObjectId) -> Result<Value, MutationError> {
    if (id.kind.as_str(), id.namespace.as_str(), id.name.as_str())
        == ("ConfigMap", INFRA, RECONCILE_CA_CONFIG_MAP)
    {
        let ca = suite_ca(cluster).map_err(MutationError::Harness)?;
        return Ok(crate::certs::ca_config_map(INFRA, &id.name, &ca));
    }
    let (gateway, section, backend, port) =
        match (id.kind.as_str(), id.namespace.as_str(), id.name.as_str()) {
            ("TCPRoute", INFRA, "tcproute-attach-newer") => (
                "tcp-multi-route-attach-gateway",
                "tcp",
                "tcp-attach-backend-2",
                3000,
            ),
            ("UDPRoute", INFRA, "udproute-attach-newer") => (
                "udp-multi-route-attach-gateway",
                "udp",
                "udp-attach-backend-2",
                8080,
            ),
            _ => {
                return Err(MutationError::NotReproducible(format!(
                    "the content of the created {id} is not in the corpus"
                )));
            }
        };
    let api_version =
        Kind::from_name(&id.kind).map_or("gateway.networking.k8s.io/v1", Kind::api_version);
    Ok(json!({
        "apiVersion": api_version,
        "kind": id.kind,
        "metadata": {"name": id.name, "namespace": id.namespace},
        "spec": {
            "parentRefs": [{"name": gateway, "sectionName": section}],
            "rules": [{"backendRefs": [{"name": backend, "port": port}]}],
        },
    }))
}

/// An edit of an object (given the cluster before the edit); `Err` when the object does not have
/// the shape the Go test relies on.
type Patch = fn(&mut Value, &Cluster) -> Result<(), String>;

fn patch(cluster: &mut Cluster, id: &ObjectId, occurrence: usize) -> Result<(), MutationError> {
    let edit = known_patch(id, occurrence)?;
    let mut manifest = cluster
        .get(id)
        .cloned()
        .ok_or_else(|| MutationError::Harness(format!("Patch {id}: object does not exist")))?;
    let before = manifest.get("spec").cloned();
    edit(&mut manifest, cluster).map_err(|e| MutationError::Harness(format!("Patch {id}: {e}")))?;
    if manifest.get("spec") != before.as_ref() {
        // The API server bumps metadata.generation on every spec change.
        let generation = generation_of(&manifest) + 1;
        manifest["metadata"]["generation"] = json!(generation);
    }
    if let Some(slot) = cluster.get_mut(id) {
        *slot = manifest;
    }
    Ok(())
}

/// The ConfigMap the `reconcile-test` BackendTLSPolicy is pointed at during the ca_rotation
/// subtest of BackendTLSPolicy.
pub const RECONCILE_CA_CONFIG_MAP: &str = "tls-checks-ca-certificate-reconcile-test";
/// The suite's CA ConfigMap (the CA of the TLS echo backends' serving certificate).
pub const SUITE_CA_CONFIG_MAP: &str = "tls-checks-ca-certificate";
/// A CA ConfigMap of an unrelated CA (the suite's `mismatch-ca-certificate`).
pub const MISMATCH_CA_CONFIG_MAP: &str = "mismatch-ca-certificate";
/// `ca.crt` content that is PEM-framed but is not a certificate (the DER is the ASCII text "not a
/// certificate"): a misconfigured CA reference, `InvalidCACertificateRef`.
pub const NOT_A_CERTIFICATE: &str =
    "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";

/// The `ca.crt` of an infra ConfigMap.
pub fn ca_of(cluster: &Cluster, name: &str) -> Result<String, String> {
    let id = ObjectId::new("ConfigMap", INFRA, name);
    cluster
        .get(&id)
        .and_then(|cm| cm.pointer("/data/ca.crt"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{id} has no data.ca.crt"))
}

fn suite_ca(cluster: &Cluster) -> Result<String, String> {
    ca_of(cluster, SUITE_CA_CONFIG_MAP)
}

/// Sets a ConfigMap's `ca.crt`.
pub fn set_ca(config_map: &mut Value, ca: &str) -> Result<(), String> {
    config_map
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or("no data")?
        .insert("ca.crt".to_owned(), json!(ca));
    Ok(())
}

/// Points the first caCertificateRef of a BackendTLSPolicy at the ConfigMap `name`.
fn set_ca_ref(policy: &mut Value, name: &str) -> Result<(), String> {
    policy
        .pointer_mut("/spec/validation/caCertificateRefs/0")
        .and_then(Value::as_object_mut)
        .ok_or("no spec.validation.caCertificateRefs[0]")?
        .insert("name".to_owned(), json!(name));
    Ok(())
}

/// The patches the corpus pins down, with where their exact content comes from.
fn known_patch(id: &ObjectId, occurrence: usize) -> Result<Patch, MutationError> {
    let target = (
        id.kind.as_str(),
        id.namespace.as_str(),
        id.name.as_str(),
        occurrence,
    );
    let patch: Patch = match target {
        // modify_listeners prose; gateway-modify-listeners.go subtest 1.
        ("Gateway", INFRA, "gateway-add-listener", 0) => |gw, _| {
            listeners(gw)?.push(json!({
                "name": "http", "port": 80, "protocol": "HTTP", "hostname": "data.test.com",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }));
            Ok(())
        },
        // gateway-modify-listeners.go subtest 2 keeps only the listener named "http" (as the
        // status check expects; the prose says the opposite listener).
        ("Gateway", INFRA, "gateway-remove-listener", 0) => |gw, _| {
            let listeners = listeners(gw)?;
            if listeners.len() != 2 {
                return Err(format!("expected 2 listeners, found {}", listeners.len()));
            }
            listeners.retain(|l| l.get("name").and_then(Value::as_str) == Some("http"));
            Ok(())
        },
        // observed_generation prose ("Gateway: add a listener"); gateway-observed-generation-bump.go.
        ("Gateway", INFRA, "gateway-observed-generation-bump", 0) => |gw, _| {
            listeners(gw)?.push(json!({
                "name": "alternate", "hostname": "foo.com", "port": 80, "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }));
            Ok(())
        },
        // static_addresses prose: remove the invalid address, then the unusable one.
        ("Gateway", INFRA, "gateway-static-addresses", 0) => |gw, _| {
            let invalid = addresses(gw)?
                .first()
                .and_then(|a| a.get("value"))
                .cloned()
                .ok_or("no spec.addresses[0]")?;
            addresses(gw)?.retain(|a| a.get("value") != Some(&invalid));
            Ok(())
        },
        ("Gateway", INFRA, "gateway-static-addresses", 1) => |gw, _| {
            addresses(gw)?
                .retain(|a| a.get("value").and_then(Value::as_str) != Some(UNUSABLE_ADDRESS));
            Ok(())
        },
        // observed_generation prose ("GatewayClass: set spec.description"); the Go test sets "new".
        ("GatewayClass", "", "gatewayclass-observed-generation-bump", 0) => |gwc, _| {
            spec(gwc)?.insert("description".to_owned(), json!("new"));
            Ok(())
        },
        // observed_generation prose ("HTTPRoute: change a rule"); the Go test points
        // rules[0].backendRefs[0] at infra-backend-v2.
        ("HTTPRoute", INFRA, "observed-generation-bump", 0) => |route, _| {
            let backend = route
                .pointer_mut("/spec/rules/0/backendRefs/0")
                .and_then(Value::as_object_mut)
                .ok_or("no spec.rules[0].backendRefs[0]")?;
            backend.insert("name".to_owned(), json!("infra-backend-v2"));
            Ok(())
        },
        // observed_generation prose ("BackendTLSPolicy: change validation"); the Go test sets
        // validation.hostname to foo.example.com.
        ("BackendTLSPolicy", INFRA, "observed-generation-bump", 0) => |policy, _| {
            let validation = policy
                .pointer_mut("/spec/validation")
                .and_then(Value::as_object_mut)
                .ok_or("no spec.validation")?;
            validation.insert("hostname".to_owned(), json!("foo.example.com"));
            Ok(())
        },
        // ca_rotation prose ("the CA ConfigMap content is replaced (by a mismatching CA, then
        // restored) and the policy is patched"), with the status checks between the steps:
        // the policy is pointed at a ConfigMap that does not exist yet (NoValidCACertificate /
        // InvalidCACertificateRef), which is then created (Accepted / ResolvedRefs), replaced
        // (NoValidCACertificate / InvalidCACertificateRef: a well-formed mismatching CA could not
        // make the reference invalid, so the replacement is misconfigured content) and restored;
        // the last patch points the policy back at the suite's ConfigMap.
        ("BackendTLSPolicy", INFRA, "reconcile-test", 0) => {
            |policy, _| set_ca_ref(policy, RECONCILE_CA_CONFIG_MAP)
        }
        ("BackendTLSPolicy", INFRA, "reconcile-test", 1) => {
            |policy, _| set_ca_ref(policy, SUITE_CA_CONFIG_MAP)
        }
        ("ConfigMap", INFRA, RECONCILE_CA_CONFIG_MAP, 0) => |cm, _| set_ca(cm, NOT_A_CERTIFICATE),
        ("ConfigMap", INFRA, RECONCILE_CA_CONFIG_MAP, 1) => |cm, cluster| {
            let ca = suite_ca(cluster)?;
            set_ca(cm, &ca)
        },
        _ => {
            return Err(MutationError::NotReproducible(format!(
                "the exact patch of {id} is not in the corpus (prose only)"
            )));
        }
    };
    Ok(patch)
}

fn spec(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>, String> {
    object
        .get_mut("spec")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| "no spec".to_owned())
}

fn listeners(gateway: &mut Value) -> Result<&mut Vec<Value>, String> {
    spec(gateway)?
        .get_mut("listeners")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| "no spec.listeners".to_owned())
}

fn addresses(gateway: &mut Value) -> Result<&mut Vec<Value>, String> {
    spec(gateway)?
        .get_mut("addresses")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| "no spec.addresses".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_texts_name_namespaced_and_cluster_scoped_objects() {
        let m = Mutation::parse(
            "Delete ReferenceGrant gateway-conformance-web-backend/reference-grant",
        )
        .unwrap();
        assert_eq!(m.verb, "Delete");
        assert_eq!(
            m.id,
            ObjectId::new(
                "ReferenceGrant",
                "gateway-conformance-web-backend",
                "reference-grant"
            )
        );
        let m =
            Mutation::parse("Patch GatewayClass gatewayclass-observed-generation-bump").unwrap();
        assert_eq!(
            m.id,
            ObjectId::new("GatewayClass", "", "gatewayclass-observed-generation-bump")
        );
        assert!(Mutation::parse("Patch").is_err());
    }

    #[test]
    fn a_spec_patch_bumps_the_generation_and_unknown_patches_are_not_reproducible() {
        let mut cluster = Cluster::default();
        let class = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "gatewayclass-observed-generation-bump"},
            "spec": {"controllerName": "x", "description": "old"},
        });
        cluster.apply("t", 0, class, MUTATION_CREATED);
        let id = ObjectId::new("GatewayClass", "", "gatewayclass-observed-generation-bump");
        apply(
            &mut cluster,
            "Patch GatewayClass gatewayclass-observed-generation-bump",
            0,
        )
        .unwrap();
        assert_eq!(cluster.generation(&id), 2);
        assert_eq!(cluster.get(&id).unwrap()["spec"]["description"], "new");
        assert!(matches!(
            apply(
                &mut cluster,
                "Patch GatewayClass gatewayclass-observed-generation-bump",
                1
            ),
            Err(MutationError::NotReproducible(_))
        ));
    }

    #[test]
    fn the_ca_rotation_mutations_repoint_create_break_and_restore_the_ca() {
        let mut cluster = Cluster::default();
        cluster.apply(
            "t",
            0,
            crate::certs::ca_config_map(INFRA, SUITE_CA_CONFIG_MAP, "SUITE CA"),
            MUTATION_CREATED,
        );
        let policy = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "BackendTLSPolicy",
            "metadata": {"name": "reconcile-test", "namespace": INFRA, "generation": 1},
            "spec": {"validation": {"caCertificateRefs": [
                {"group": "", "kind": "ConfigMap", "name": SUITE_CA_CONFIG_MAP}
            ], "hostname": "abc.example.com"}},
        });
        cluster.apply("t", 1, policy, MUTATION_CREATED);
        let policy_id = ObjectId::new("BackendTLSPolicy", INFRA, "reconcile-test");
        let cm_id = ObjectId::new("ConfigMap", INFRA, RECONCILE_CA_CONFIG_MAP);
        let ca_ref = |c: &Cluster| {
            c.get(&policy_id).unwrap()["spec"]["validation"]["caCertificateRefs"][0]["name"].clone()
        };
        let policy_text = "Patch BackendTLSPolicy gateway-conformance-infra/reconcile-test";
        let cm_patch = format!("Patch ConfigMap {INFRA}/{RECONCILE_CA_CONFIG_MAP}");

        apply(&mut cluster, policy_text, 0).unwrap();
        assert_eq!(ca_ref(&cluster), RECONCILE_CA_CONFIG_MAP);
        assert_eq!(cluster.generation(&policy_id), 2);
        assert!(cluster.get(&cm_id).is_none());

        apply(
            &mut cluster,
            &format!("Create ConfigMap {INFRA}/{RECONCILE_CA_CONFIG_MAP}"),
            0,
        )
        .unwrap();
        assert_eq!(
            ca_of(&cluster, RECONCILE_CA_CONFIG_MAP).unwrap(),
            "SUITE CA"
        );

        apply(&mut cluster, &cm_patch, 0).unwrap();
        assert_eq!(
            ca_of(&cluster, RECONCILE_CA_CONFIG_MAP).unwrap(),
            NOT_A_CERTIFICATE
        );
        apply(&mut cluster, &cm_patch, 1).unwrap();
        assert_eq!(
            ca_of(&cluster, RECONCILE_CA_CONFIG_MAP).unwrap(),
            "SUITE CA"
        );

        apply(&mut cluster, policy_text, 1).unwrap();
        assert_eq!(ca_ref(&cluster), SUITE_CA_CONFIG_MAP);
        assert!(matches!(
            apply(&mut cluster, &cm_patch, 2),
            Err(MutationError::NotReproducible(_))
        ));
    }
}
