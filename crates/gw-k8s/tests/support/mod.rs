//! A scripted fake Kubernetes API server on 127.0.0.1: list, watch (chunked JSON events, with
//! history and 410 Gone for expired resourceVersions), get, create, replace and server-side
//! apply of `/status` (recorded for assertions, with scripted failures), and a switch that
//! makes it unreachable.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// One recorded write request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| v.replace("%2F", "/"))
        })
    }
}

#[derive(Default)]
struct State {
    rv: u64,
    /// collection ("apiVersion/plural") -> (namespace, name) -> object
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    history: Vec<(u64, String, Value)>,
    compacted_below: u64,
    watchers: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
    requests: Vec<Recorded>,
    /// Status codes to answer the next status patches with.
    scripted: VecDeque<u16>,
    /// Collections the server does not serve (CRD not installed): 404.
    missing: BTreeSet<String>,
    connections: Vec<tokio::task::AbortHandle>,
}

pub struct FakeApi {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: Option<JoinHandle<()>>,
}

/// The plural of a kind (the kinds the tests use).
pub fn plural(kind: &str) -> String {
    match kind {
        "GatewayClass" => "gatewayclasses".into(),
        "BackendTLSPolicy" => "backendtlspolicies".into(),
        "TrafficPolicy" => "trafficpolicies".into(),
        "XBackendTrafficPolicy" => "xbackendtrafficpolicies".into(),
        other => format!("{}s", other.to_lowercase()),
    }
}

fn collection_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["apiVersion"].as_str().unwrap(),
        plural(obj["kind"].as_str().unwrap())
    )
}

fn key_of(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        obj["metadata"]["name"].as_str().unwrap().to_owned(),
    )
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<BoxBody<Bytes, Infallible>> {
    json_response(
        StatusCode::from_u16(code).unwrap(),
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": reason, "code": code}),
    )
}

fn json_response(status: StatusCode, v: &Value) -> Response<BoxBody<Bytes, Infallible>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed())
        .unwrap()
}

/// What a request path names.
struct Target {
    collection: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ((*v).to_owned(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let t = |plural: &str, namespace: Option<&str>, name: Option<&str>, status: bool| Target {
        collection: format!("{api_version}/{plural}"),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        status,
    };
    Some(match rest {
        ["namespaces"] => t("namespaces", None, None, false),
        ["namespaces", name] => t("namespaces", None, Some(name), false),
        ["namespaces", ns, plural] => t(plural, Some(ns), None, false),
        ["namespaces", ns, plural, name] => t(plural, Some(ns), Some(name), false),
        ["namespaces", ns, plural, name, "status"] => t(plural, Some(ns), Some(name), true),
        [plural] => t(plural, None, None, false),
        [plural, name] => t(plural, None, Some(name), false),
        [plural, name, "status"] => t(plural, None, Some(name), true),
        _ => return None,
    })
}

impl State {
    fn bump(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn emit(&mut self, collection: &str, type_: &str, obj: &Value, notify: bool) {
        let event = json!({"type": type_, "object": obj});
        self.history
            .push((self.rv, collection.to_owned(), event.clone()));
        if notify {
            let line = Bytes::from(format!("{event}\n"));
            self.watchers
                .retain(|(c, tx)| c != collection || tx.send(line.clone()).is_ok());
        }
    }

    fn put(&mut self, mut obj: Value, notify: bool) -> Value {
        let collection = collection_of(&obj);
        let key = key_of(&obj);
        let rv = self.bump();
        obj["metadata"]["resourceVersion"] = json!(rv);
        if obj["metadata"].get("creationTimestamp").is_none() {
            obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if obj["metadata"].get("generation").is_none() {
            obj["metadata"]["generation"] = json!(1);
        }
        let existed = self
            .objects
            .entry(collection.clone())
            .or_default()
            .insert(key, obj.clone())
            .is_some();
        self.emit(
            &collection,
            if existed { "MODIFIED" } else { "ADDED" },
            &obj,
            notify,
        );
        obj
    }
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let accept = Some(tokio::spawn(accept_loop(listener, state.clone())));
        FakeApi {
            addr,
            state,
            accept,
        }
    }

    /// A kube client for this server.
    pub fn client(&self) -> gw_k8s::kube::Client {
        let config = gw_k8s::kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        gw_k8s::kube::Client::try_from(config).unwrap()
    }

    /// A kubeconfig file naming this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: 'http://{}'}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\ncurrent-context: fake\n",
            self.addr
        )
    }

    /// Creates or updates an object (as `kubectl apply` would), notifying watchers.
    pub fn apply(&self, obj: Value) -> Value {
        self.state.lock().unwrap().put(obj, true)
    }

    /// Changes an object without telling open watches (only a relist sees it).
    pub fn apply_unseen(&self, obj: Value) -> Value {
        self.state.lock().unwrap().put(obj, false)
    }

    pub fn delete(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        let mut s = self.state.lock().unwrap();
        let collection = format!("{api_version}/{}", plural(kind));
        let removed = s
            .objects
            .get_mut(&collection)
            .and_then(|m| m.remove(&(namespace.to_owned(), name.to_owned())));
        if let Some(mut obj) = removed {
            let rv = s.bump();
            obj["metadata"]["resourceVersion"] = json!(rv);
            s.emit(&collection, "DELETED", &obj, true);
        }
    }

    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let s = self.state.lock().unwrap();
        s.objects
            .get(&format!("{api_version}/{}", plural(kind)))?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Makes the server answer 404 for a collection, as for a CRD that is not installed.
    pub fn not_served(&self, api_version: &str, kind: &str) {
        self.state
            .lock()
            .unwrap()
            .missing
            .insert(format!("{api_version}/{}", plural(kind)));
    }

    /// Answers the next status patches with these codes (then normally).
    pub fn script_status_failures(&self, codes: &[u16]) {
        self.state.lock().unwrap().scripted.extend(codes);
    }

    /// Expires every resourceVersion seen so far: open watches get `410 Gone` and end, and
    /// watches resumed from an old version get 410 too, forcing a relist.
    pub fn expire_watches(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted_below = s.rv + 1;
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "message": "too old resource version",
            "reason": "Expired", "code": 410}});
        for (_, tx) in s.watchers.drain(..) {
            let _ = tx.send(Bytes::from(format!("{gone}\n")));
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn status_patches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
            .collect()
    }

    /// Makes the server unreachable: stops accepting and cuts every connection.
    pub fn stop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        let mut s = self.state.lock().unwrap();
        for c in s.connections.drain(..) {
            c.abort();
        }
        s.watchers.clear();
    }

    /// Serves again on the same address.
    pub async fn restart(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.accept = Some(tokio::spawn(accept_loop(listener, self.state.clone())));
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let st = state.clone();
        let conn = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let st = st.clone();
                async move { Ok::<_, Infallible>(handle(st, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        let mut s = state.lock().unwrap();
        s.connections.retain(|c| !c.is_finished());
        s.connections.push(conn.abort_handle());
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body_bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body_bytes).unwrap_or(Value::Null);
    let Some(target) = parse_path(&path) else {
        return status_error(404, "NotFound", "no such path");
    };
    let mut s = state.lock().unwrap();
    if method != Method::GET {
        s.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type,
            body: body.clone(),
        });
    }
    if s.missing.contains(&target.collection) {
        return status_error(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    let is_watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    match (&method, &target.name) {
        (&Method::GET, None) if is_watch => {
            let from: u64 = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
            if from < s.compacted_below {
                let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
                    "metadata": {}, "status": "Failure", "message": "too old resource version",
                    "reason": "Expired", "code": 410}});
                let _ = tx.send(Bytes::from(format!("{gone}\n")));
                drop(tx);
            } else {
                for (rv, c, event) in &s.history {
                    if *rv > from && *c == target.collection {
                        let _ = tx.send(Bytes::from(format!("{event}\n")));
                    }
                }
                s.watchers.push((target.collection.clone(), tx));
            }
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        (&Method::GET, None) => {
            let items: Vec<Value> = s
                .objects
                .get(&target.collection)
                .map(|m| {
                    m.iter()
                        .filter(|((ns, _), _)| target.namespace.as_ref().is_none_or(|t| t == ns))
                        .map(|(_, o)| o.clone())
                        .collect()
                })
                .unwrap_or_default();
            let api_version = target
                .collection
                .rsplit_once('/')
                .map(|(a, _)| a)
                .unwrap_or_default();
            json_response(
                StatusCode::OK,
                &json!({"apiVersion": api_version, "kind": "List",
                        "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
        (_, Some(name)) => {
            let key = (target.namespace.clone().unwrap_or_default(), name.clone());
            let current = s
                .objects
                .get(&target.collection)
                .and_then(|m| m.get(&key))
                .cloned();
            match method {
                Method::GET => match current {
                    Some(o) => json_response(StatusCode::OK, &o),
                    None => status_error(404, "NotFound", "not found"),
                },
                Method::PATCH if target.status => {
                    if let Some(code) = s.scripted.pop_front() {
                        return status_error(
                            code,
                            "Conflict",
                            "the object has been modified; please apply your changes to the latest version and try again",
                        );
                    }
                    let Some(mut o) = current else {
                        return status_error(404, "NotFound", "not found");
                    };
                    if let Some(rv) = body["metadata"].get("resourceVersion")
                        && *rv != o["metadata"]["resourceVersion"]
                    {
                        return status_error(409, "Conflict", "the object has been modified");
                    }
                    if let Some(status) = body["status"].as_object() {
                        for (k, v) in status {
                            o["status"][k] = v.clone();
                        }
                    }
                    let o = s.put(o, true);
                    json_response(StatusCode::OK, &o)
                }
                Method::PUT => {
                    let Some(cur) = current else {
                        return status_error(404, "NotFound", "not found");
                    };
                    if body["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                        return status_error(409, "Conflict", "the object has been modified");
                    }
                    let mut o = body.clone();
                    o["apiVersion"] = cur["apiVersion"].clone();
                    o["kind"] = cur["kind"].clone();
                    let o = s.put(o, true);
                    json_response(StatusCode::OK, &o)
                }
                _ => status_error(405, "MethodNotAllowed", "not supported by the fake"),
            }
        }
        (&Method::POST, None) => {
            let mut o = body.clone();
            if o["metadata"].get("namespace").is_none()
                && let Some(ns) = &target.namespace
            {
                o["metadata"]["namespace"] = json!(ns);
            }
            let exists = s
                .objects
                .get(&target.collection)
                .is_some_and(|m| m.contains_key(&key_of(&o)));
            if exists {
                return status_error(409, "AlreadyExists", "already exists");
            }
            let o = s.put(o, true);
            json_response(StatusCode::CREATED, &o)
        }
        _ => status_error(405, "MethodNotAllowed", "not supported by the fake"),
    }
}
