//! Writing status back: server-side apply of the status gw-model computed, as one field
//! manager, touching only what is ours.
//!
//! - GatewayClasses, Gateways and ListenerSets whose class is ours: gw owns their whole
//!   `status`, applied as computed.
//! - Routes (`status.parents`) and BackendTLSPolicies (`status.ancestors`): the lists are
//!   `x-kubernetes-list-type: atomic`, shared by every controller whose Gateways a route
//!   names. gw applies the list with the entries of other controllers unchanged and its own
//!   entries (`controllerName` equal to ours) replaced, and puts the object's
//!   `metadata.resourceVersion` in the body: if another controller wrote in between, the API
//!   server answers 409 Conflict and gw re-reads the object and applies again. Entries gw wrote
//!   for parents it no longer serves are removed.
//! - `lastTransitionTime` is kept from the object when a condition's status did not change.
//! - Nothing is sent when the object already shows the status gw would write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gw_model::resources::{Kind, ObjectKey};
use gw_model::status::{ObjectStatus, StatusReport};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::watch::{Shared, Stores};

/// How often a status write is retried after 409 Conflict before waiting for the backoff.
const CONFLICT_RETRIES: usize = 5;

/// The list of a status that several controllers share, and the key of an entry's reference.
fn shared_list(kind: Kind) -> Option<(&'static str, &'static str)> {
    if kind.is_route() {
        Some(("parents", "parentRef"))
    } else if kind == Kind::BackendTlsPolicy {
        Some(("ancestors", "ancestorRef"))
    } else {
        None
    }
}

/// Drops nulls, empty lists and empty maps, so that two renderings of one status compare
/// equal (the API server and gw-model omit different empty fields).
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), canonical(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Copies `lastTransitionTime` from `old` conditions of the same type and status; stamps `now`
/// on the others.
fn stamp(conditions: &mut Value, old: Option<&Value>, now: &str) {
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    let old: &[Value] = old.and_then(Value::as_array).map_or(&[], Vec::as_slice);
    for c in list {
        let kept = old
            .iter()
            .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"))
            .and_then(|o| o.get("lastTransitionTime"))
            .filter(|t| t.is_string())
            .cloned();
        if let Some(c) = c.as_object_mut() {
            c.insert(
                "lastTransitionTime".into(),
                kept.unwrap_or_else(|| Value::String(now.to_owned())),
            );
        }
    }
}

/// Stamps the conditions of a whole status (top-level and per listener) against `old`.
fn stamp_status(status: &mut Value, old: Option<&Value>, now: &str) {
    stamp(
        &mut status["conditions"],
        old.and_then(|o| o.get("conditions")),
        now,
    );
    if let Some(listeners) = status.get_mut("listeners").and_then(Value::as_array_mut) {
        for l in listeners {
            let old_l = old
                .and_then(|o| o.get("listeners"))
                .and_then(Value::as_array)
                .and_then(|ls| ls.iter().find(|o| o.get("name") == l.get("name")));
            stamp(
                &mut l["conditions"],
                old_l.and_then(|o| o.get("conditions")),
                now,
            );
        }
    }
}

/// The server-side apply body that brings `current` (the object as the API server has it) to
/// the status gw computed (`ours`; `None`: gw no longer has anything to say about it), or
/// `None` when the object already shows it.
pub fn apply_body(
    kind: Kind,
    resource: &ApiResource,
    current: &Value,
    ours: Option<&ObjectStatus>,
    controller_name: &str,
    now: &str,
) -> Option<Value> {
    let old_status = current.get("status");
    let mut metadata = Map::new();
    metadata.insert("name".into(), current["metadata"]["name"].clone());
    if let Some(ns) = current["metadata"]
        .get("namespace")
        .filter(|n| n.is_string())
    {
        metadata.insert("namespace".into(), ns.clone());
    }
    let status = match shared_list(kind) {
        None => {
            let mut status = serde_json::to_value(ours?).ok()?;
            stamp_status(&mut status, old_status, now);
            if canonical(&status) == canonical(old_status.unwrap_or(&Value::Null)) {
                return None;
            }
            status
        }
        Some((list, reference)) => {
            let old: &[Value] = old_status
                .and_then(|s| s.get(list))
                .and_then(Value::as_array)
                .map_or(&[], Vec::as_slice);
            let is_ours = |e: &Value| {
                e.get("controllerName").and_then(Value::as_str) == Some(controller_name)
            };
            let ours_json = match ours {
                Some(s) => serde_json::to_value(s).ok()?,
                None => json!({}),
            };
            let mut entries: Vec<Value> = old.iter().filter(|e| !is_ours(e)).cloned().collect();
            for mut e in ours_json
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
            {
                let previous = old.iter().find(|o| {
                    is_ours(o) && o.get(reference).map(canonical) == e.get(reference).map(canonical)
                });
                stamp(
                    &mut e["conditions"],
                    previous.and_then(|p| p.get("conditions")),
                    now,
                );
                entries.push(e);
            }
            if canonical(&Value::Array(entries.clone())) == canonical(&Value::Array(old.to_vec())) {
                return None;
            }
            // Optimistic concurrency: the list is atomic, so another controller's write in
            // between must make this apply fail (409) rather than be overwritten.
            if let Some(rv) = current["metadata"]
                .get("resourceVersion")
                .filter(|v| v.is_string())
            {
                metadata.insert("resourceVersion".into(), rv.clone());
            }
            let mut s = Map::new();
            s.insert(list.into(), Value::Array(entries));
            Value::Object(s)
        }
    };
    Some(json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": metadata,
        "status": status,
    }))
}

/// Whether `current` has entries of ours in its shared status list.
fn has_our_entries(kind: Kind, current: &Value, controller_name: &str) -> bool {
    let Some((list, _)) = shared_list(kind) else {
        return false;
    };
    current["status"][list]
        .as_array()
        .is_some_and(|l| l.iter().any(|e| e["controllerName"] == controller_name))
}

/// A status write that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatusError {
    /// The API server refused or did not answer the patch.
    #[error("applying status of {kind} {key}: {source}")]
    Apply {
        /// Kind of the object.
        kind: Kind,
        /// The object.
        key: ObjectKey,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Another controller kept changing the object.
    #[error("applying status of {kind} {key}: still conflicting after {CONFLICT_RETRIES} attempts")]
    Conflict {
        /// Kind of the object.
        kind: Kind,
        /// The object.
        key: ObjectKey,
    },
}

/// Seconds-precision RFC 3339, as Kubernetes writes `metav1.Time`.
fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

pub(crate) struct Writer {
    pub(crate) client: Client,
    pub(crate) stores: Arc<Stores>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) controller_name: String,
    pub(crate) field_manager: String,
    pub(crate) backoff: Backoff,
    /// Bodies applied, with the resourceVersion of the object they were computed from: while
    /// the store still shows that version, the write has not come back through the watch
    /// yet, and the same body is not sent again.
    pub(crate) sent: BTreeMap<(Kind, ObjectKey), (Option<String>, Value)>,
}

impl Writer {
    pub(crate) async fn run(
        mut self,
        mut reports: watch::Receiver<Option<Arc<StatusReport>>>,
        mut leader: watch::Receiver<bool>,
    ) {
        let mut revision = self.shared.revision.subscribe();
        let mut retry: Option<tokio::time::Instant> = None;
        loop {
            let sleep = async {
                match retry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = reports.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
                r = revision.changed() => {
                    if r.is_err() { return }
                    // Let a burst of events (often our own writes coming back) settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                () = sleep => {}
            }
            revision.borrow_and_update();
            let is_leader = *leader.borrow_and_update();
            self.shared.leader.store(is_leader, Ordering::Release);
            self.shared.refresh_health();
            if !is_leader {
                retry = None;
                self.sent.clear();
                continue;
            }
            let Some(report) = reports.borrow_and_update().clone() else {
                continue;
            };
            match self.reconcile(&report).await {
                Ok(()) => {
                    self.backoff.reset();
                    retry = None;
                    self.shared.set_status_error(None);
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    tracing::warn!(error = %e, ?delay, "status write failed; retrying");
                    retry = Some(tokio::time::Instant::now() + delay);
                    self.shared.set_status_error(Some(e.to_string()));
                }
            }
        }
    }

    /// Applies every status that differs from what the cluster shows.
    pub(crate) async fn reconcile(&mut self, report: &StatusReport) -> Result<(), StatusError> {
        let mut first_error = None;
        let mut todo: Vec<(Kind, ObjectKey)> = report
            .entries
            .iter()
            .map(|e| (e.kind, e.key.clone()))
            .collect();
        // Entries of ours on objects gw no longer reports (a parentRef removed, a Gateway
        // moved to another class): cleaned up.
        for kind in Kind::ALL.into_iter().filter(|k| shared_list(*k).is_some()) {
            let Some(w) = self.stores.kinds.get(kind.as_str()) else {
                continue;
            };
            for o in w.all_json() {
                if has_our_entries(kind, &o, &self.controller_name) {
                    let key = ObjectKey::new(
                        o["metadata"]["namespace"].as_str().unwrap_or_default(),
                        o["metadata"]["name"].as_str().unwrap_or_default(),
                    );
                    if report.get(kind, &key).is_none() {
                        todo.push((kind, key));
                    }
                }
            }
        }
        for (kind, key) in todo {
            if let Err(e) = self.write(kind, &key, report.get(kind, &key)).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn write(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        ours: Option<&ObjectStatus>,
    ) -> Result<(), StatusError> {
        let Some(w) = self.stores.kinds.get(kind.as_str()).cloned() else {
            return Ok(());
        };
        let Some(mut current) = w.get_json(key) else {
            // Deleted meanwhile.
            return Ok(());
        };
        let resource = w.resource().clone();
        let api: Api<DynamicObject> = if w.namespaced() {
            Api::namespaced_with(self.client.clone(), &key.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let params = PatchParams::apply(&self.field_manager).force();
        for _ in 0..CONFLICT_RETRIES {
            let rv = current["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            let Some(body) = apply_body(
                kind,
                &resource,
                &current,
                ours,
                &self.controller_name,
                &now_rfc3339(),
            ) else {
                self.sent.remove(&(kind, key.clone()));
                return Ok(());
            };
            let sent_key = (kind, key.clone());
            if let Some((sent_rv, sent_body)) = self.sent.get(&sent_key)
                && *sent_rv == rv
                && canonical(&without_times(sent_body)) == canonical(&without_times(&body))
            {
                // Sent already; the watch has not shown the result yet.
                return Ok(());
            }
            tracing::debug!(%kind, %key, "applying status");
            match api
                .patch_status(&key.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    self.sent.insert(sent_key, (rv, body));
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(%kind, %key, "status conflict; re-reading");
                    match api.get_status(&key.name).await {
                        Ok(fresh) => {
                            current = serde_json::to_value(&fresh).unwrap_or(current);
                        }
                        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
                        Err(source) => {
                            return Err(StatusError::Apply {
                                kind,
                                key: key.clone(),
                                source,
                            });
                        }
                    }
                }
                Err(source) => {
                    return Err(StatusError::Apply {
                        kind,
                        key: key.clone(),
                        source,
                    });
                }
            }
        }
        Err(StatusError::Conflict {
            kind,
            key: key.clone(),
        })
    }
}

/// A body without its `lastTransitionTime`s (they differ between two computations of the same
/// status made at different seconds).
fn without_times(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "lastTransitionTime" && k.as_str() != "metadata")
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(without_times).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gw_model::resources::ParentReference;
    use gw_model::status::{Condition, GatewayClassStatus, RouteParentStatus, RouteStatus};
    use kube::api::GroupVersionKind;

    const OURS: &str = "gw.dev/gateway";

    fn route_resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
            "httproutes",
        )
    }

    fn parent(name: &str) -> ParentReference {
        ParentReference {
            group: "gateway.networking.k8s.io".into(),
            kind: "Gateway".into(),
            namespace: Some("infra".into()),
            name: name.into(),
            section_name: None,
            port: None,
        }
    }

    fn route_status(accepted: bool) -> ObjectStatus {
        let c = if accepted {
            Condition::ok("Accepted", "Accepted", "accepted", 2)
        } else {
            Condition::fail("Accepted", "NotAllowedByListeners", "no", 2)
        };
        ObjectStatus::Route(RouteStatus {
            parents: vec![RouteParentStatus {
                parent_ref: parent("edge"),
                controller_name: OURS.into(),
                conditions: vec![c],
            }],
        })
    }

    fn current_route(parents: Value) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": "apps", "resourceVersion": "41", "generation": 2},
            "spec": {},
            "status": {"parents": parents},
        })
    }

    // GEP-1364 / RouteStatus: "Implementations MUST ... only populate status for parents they
    // are responsible for" and must not remove entries of other controllers.
    #[test]
    fn route_status_keeps_other_controllers_entries() {
        let other = json!({
            "parentRef": {"name": "theirs", "namespace": "infra"},
            "controllerName": "example.com/other",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                            "message": "", "observedGeneration": 2,
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        });
        let current = current_route(json!([other.clone()]));
        let ours = route_status(true);
        let body = apply_body(
            Kind::HttpRoute,
            &route_resource(),
            &current,
            Some(&ours),
            OURS,
            "2026-11-27T08:00:00Z",
        )
        .unwrap();
        assert_eq!(body["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(body["kind"], "HTTPRoute");
        assert_eq!(
            body["metadata"],
            json!({"name": "web", "namespace": "apps", "resourceVersion": "41"})
        );
        let parents = body["status"]["parents"].as_array().unwrap();
        assert_eq!(parents.len(), 2);
        assert_eq!(parents[0], other);
        assert_eq!(parents[1]["controllerName"], OURS);
        assert_eq!(parents[1]["parentRef"]["name"], "edge");
        assert_eq!(
            parents[1]["conditions"][0]["lastTransitionTime"],
            "2026-11-27T08:00:00Z"
        );
        assert!(body.get("spec").is_none());
    }

    #[test]
    fn unchanged_status_sends_nothing_and_keeps_transition_times() {
        let ours = route_status(true);
        let first = apply_body(
            Kind::HttpRoute,
            &route_resource(),
            &current_route(json!([])),
            Some(&ours),
            OURS,
            "2026-11-27T08:00:00Z",
        )
        .unwrap();
        // The API server now has what was applied.
        let current = current_route(first["status"]["parents"].clone());
        assert!(
            apply_body(
                Kind::HttpRoute,
                &route_resource(),
                &current,
                Some(&ours),
                OURS,
                "2026-11-27T09:00:00Z"
            )
            .is_none()
        );
        // A condition whose status flips gets a new time.
        let flipped = route_status(false);
        let next = apply_body(
            Kind::HttpRoute,
            &route_resource(),
            &current,
            Some(&flipped),
            OURS,
            "2026-11-27T09:00:00Z",
        )
        .unwrap();
        assert_eq!(
            next["status"]["parents"][0]["conditions"][0]["lastTransitionTime"],
            "2026-11-27T09:00:00Z"
        );
    }

    #[test]
    fn stale_entries_of_ours_are_removed() {
        let stale = json!({"parentRef": {"name": "old"}, "controllerName": OURS, "conditions": []});
        let current = current_route(json!([stale]));
        assert!(has_our_entries(Kind::HttpRoute, &current, OURS));
        let body = apply_body(
            Kind::HttpRoute,
            &route_resource(),
            &current,
            None,
            OURS,
            "t",
        )
        .unwrap();
        assert_eq!(body["status"]["parents"], json!([]));
        assert!(!has_our_entries(
            Kind::HttpRoute,
            &current_route(json!([])),
            OURS
        ));
    }

    #[test]
    fn gateway_class_status_is_applied_whole() {
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "GatewayClass"),
            "gatewayclasses",
        );
        let current = json!({"metadata": {"name": "gw", "resourceVersion": "7"}, "status": {
            "conditions": [{"type": "Accepted", "status": "Unknown", "reason": "Pending", "message": "Waiting for controller",
                            "observedGeneration": 1, "lastTransitionTime": "1970-01-01T00:00:00Z"}]}});
        let ours = ObjectStatus::GatewayClass(GatewayClassStatus {
            conditions: vec![Condition::ok("Accepted", "Accepted", "ok", 1)],
            supported_features: vec![],
        });
        let body = apply_body(
            Kind::GatewayClass,
            &resource,
            &current,
            Some(&ours),
            OURS,
            "2026-11-27T08:00:00Z",
        )
        .unwrap();
        // Cluster-scoped: no namespace; whole status: no resourceVersion precondition.
        assert_eq!(body["metadata"], json!({"name": "gw"}));
        assert_eq!(body["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            body["status"]["conditions"][0]["lastTransitionTime"],
            "2026-11-27T08:00:00Z"
        );
    }
}
