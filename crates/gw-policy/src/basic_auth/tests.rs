use http::{Request, StatusCode};
use tower::Layer;

use super::*;
use crate::testing::{backend, calls, send};

// `htpasswd -nbs alice secret`
const ALICE_SHA: &str = "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

fn bcrypt_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn req(auth: Option<&str>) -> Request<String> {
    let mut b = Request::get("/");
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    b.body(String::new()).unwrap()
}

#[test]
fn sha_and_bcrypt_entries_verify() {
    let file = format!(
        "# users\n\n{ALICE_SHA}\n{}\n",
        bcrypt_line("bob", "hunter2")
    );
    let auth = CompiledBasicAuth::new("r", &file).unwrap();
    assert!(auth.verify("alice", "secret"));
    assert!(!auth.verify("alice", "Secret"));
    assert!(auth.verify("bob", "hunter2"));
    // The remembered success answers the second time.
    assert!(auth.verify("bob", "hunter2"));
    assert!(!auth.verify("bob", "hunter3"));
    assert!(!auth.verify("carol", "hunter2"));
    // `$2b$` and `$2a$` prefixes too.
    let b = bcrypt::hash("pw", 4).unwrap().replacen("$2b$", "$2a$", 1);
    assert!(
        CompiledBasicAuth::new("r", &format!("dan:{b}"))
            .unwrap()
            .verify("dan", "pw")
    );
}

#[test]
fn insecure_and_unknown_schemes_are_compile_errors() {
    let err = |file: &str| CompiledBasicAuth::new("r", file).unwrap_err();
    assert!(matches!(
        err("a:$apr1$salt$hash"),
        BasicAuthError::InsecureScheme { line: 1, .. }
    ));
    assert!(matches!(
        err("\na:$1$x$y"),
        BasicAuthError::InsecureScheme { line: 2, .. }
    ));
    assert!(matches!(
        err("a:plaintext"),
        BasicAuthError::InsecureScheme { .. }
    ));
    assert!(matches!(
        err("a:rqXexS6ZhobKA"),
        BasicAuthError::InsecureScheme { .. }
    ));
    assert!(matches!(
        err("a:$6$salt$hash"),
        BasicAuthError::UnknownScheme { .. }
    ));
    assert!(matches!(
        err("a:{SSHA}abc"),
        BasicAuthError::UnknownScheme { .. }
    ));
    assert!(matches!(
        err("a:{SHA}not base64!"),
        BasicAuthError::MalformedHash { .. }
    ));
    assert!(matches!(
        err("a:{SHA}AAAA"),
        BasicAuthError::MalformedHash { .. }
    ));
    assert!(matches!(
        err("a:$2y$10$short"),
        BasicAuthError::MalformedHash { .. }
    ));
    assert!(matches!(
        err("nocolon"),
        BasicAuthError::MalformedLine { line: 1 }
    ));
    assert!(matches!(
        err(":{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="),
        BasicAuthError::MalformedLine { .. }
    ));
    assert!(matches!(
        err(&format!("{ALICE_SHA}\n{ALICE_SHA}")),
        BasicAuthError::DuplicateUser { line: 2, .. }
    ));
    assert_eq!(err("# nobody\n"), BasicAuthError::NoUsers);
    let msg = err("a:$apr1$x$y").to_string();
    assert!(msg.contains("htpasswd -B"), "{msg}");
    assert!(matches!(
        CompiledBasicAuth::new("a \"quoted\" realm", ALICE_SHA),
        Err(BasicAuthError::InvalidRealm { .. })
    ));
}

#[tokio::test]
async fn layer_challenges_and_forwards() {
    let (inner, n) = backend();
    let auth = CompiledBasicAuth::new("gw", ALICE_SHA).unwrap();
    let svc = BasicAuthLayer::new(auth).layer(inner);

    for bad in [
        None,
        Some("Bearer abc"),
        Some("Basic !!!"),
        Some("Basic YWxpY2U="), // "alice", no colon
        Some(&*basic("alice", "wrong")),
        Some(&*basic("mallory", "secret")),
    ] {
        let r = send(&svc, req(bad)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Basic realm="gw", charset="UTF-8""#
        );
    }
    assert_eq!(calls(&n), 0);

    // The scheme is case-insensitive; passwords may contain colons.
    let auth = CompiledBasicAuth::new("gw", &bcrypt_line("bob", "a:b")).unwrap();
    let svc = BasicAuthLayer::new(auth).layer(backend().0);
    let r = send(
        &svc,
        req(Some(&basic("bob", "a:b").replace("Basic", "basic"))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.extensions().get::<BasicAuthUser>().unwrap().0.as_ref(),
        "bob"
    );
}
