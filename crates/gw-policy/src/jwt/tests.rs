mod remote;

use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, StatusCode};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;
use tower::Layer;

use super::*;
use crate::testing::{backend, calls, send};

const RSA_PKCS8: &[u8] = include_bytes!("testdata/test-only-rsa2048.pk8.der");
const RSA_JWKS: &[u8] = include_bytes!("testdata/test-only-rsa2048.jwks.json");

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn ed() -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    fn ec() -> Self {
        let rng = SystemRandom::new();
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap())
    }

    fn rsa() -> Self {
        Signer::Rsa(RsaKeyPair::from_pkcs8(RSA_PKCS8).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ed(_) => "EdDSA",
            Signer::Ec(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(k.public_key().as_ref())})
            }
            Signer::Ec(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..])})
            }
            Signer::Rsa(_) => {
                let set: Value = serde_json::from_slice(RSA_JWKS).unwrap();
                let mut k = set["keys"][0].clone();
                k["kid"] = json!(kid);
                k
            }
        }
    }

    fn sign_with(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match self {
            Signer::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Ec(k) => k
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
        };
        format!("{input}.{}", b64(&sig))
    }

    fn sign(&self, kid: &str, claims: Value) -> String {
        self.sign_with(json!({"alg": self.alg(), "kid": kid, "typ": "JWT"}), claims)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn good_claims() -> Value {
    json!({"iss": "https://issuer", "aud": ["other", "api"], "sub": "alice", "exp": now() + 300, "nbf": now() - 10})
}

fn jwks(keys: &[(&Signer, &str)]) -> Arc<StaticJwks> {
    let set = json!({"keys": keys.iter().map(|(s, kid)| s.jwk(kid)).collect::<Vec<_>>()});
    Arc::new(StaticJwks::from_json(set.to_string().as_bytes()).unwrap())
}

fn compiled(source: Arc<dyn JwksSource>) -> CompiledJwt {
    CompiledJwt::new(
        JwtConfig::new().issuer("https://issuer").audience("api"),
        source,
    )
    .unwrap()
}

#[test]
fn every_key_type_verifies() {
    for signer in [Signer::ed(), Signer::ec(), Signer::rsa()] {
        let jwt = compiled(jwks(&[(&signer, "k1")]));
        let token = signer.sign("k1", good_claims());
        let claims = jwt
            .validate(&token)
            .unwrap_or_else(|e| panic!("{}: {e}", signer.alg()));
        assert_eq!(claims["sub"], "alice");
        // One flipped signature bit.
        let mut bad = token.into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(
            jwt.validate(&bad),
            Err(TokenError::Signature),
            "{}",
            signer.alg()
        );
    }
}

#[test]
fn key_selection_by_kid_and_alg() {
    let (a, b) = (Signer::ed(), Signer::ec());
    let jwt = compiled(jwks(&[(&a, "a"), (&b, "b")]));
    assert!(jwt.validate(&a.sign("a", good_claims())).is_ok());
    assert!(jwt.validate(&b.sign("b", good_claims())).is_ok());
    // Signed by a with b's kid: b is an EC key, EdDSA does not fit it.
    assert_eq!(
        jwt.validate(&a.sign("b", good_claims())),
        Err(TokenError::UnknownKey(Some("b".into())))
    );
    // No kid: every fitting key is tried.
    let no_kid = a.sign_with(json!({"alg": "EdDSA"}), good_claims());
    assert!(jwt.validate(&no_kid).is_ok());
    // A key from elsewhere.
    let stranger = Signer::ed();
    assert_eq!(
        jwt.validate(&stranger.sign("a", good_claims())),
        Err(TokenError::Signature)
    );
}

#[test]
fn unsafe_algorithms_and_shapes_are_refused() {
    let a = Signer::ed();
    let jwt = compiled(jwks(&[(&a, "a")]));
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(good_claims().to_string().as_bytes())
    );
    assert_eq!(
        jwt.validate(&unsigned),
        Err(TokenError::Algorithm("none".into()))
    );
    let hs = a.sign_with(json!({"alg": "HS256", "kid": "a"}), good_claims());
    assert_eq!(
        jwt.validate(&hs),
        Err(TokenError::Algorithm("HS256".into()))
    );
    let crit = a.sign_with(
        json!({"alg": "EdDSA", "crit": ["b64"], "b64": false}),
        good_claims(),
    );
    assert_eq!(jwt.validate(&crit), Err(TokenError::Critical));
    for bad in ["", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA"] {
        assert!(jwt.validate(bad).is_err(), "{bad}");
    }
    // Restricting algorithms.
    let es_only =
        CompiledJwt::new(JwtConfig::new().algorithm("ES256"), jwks(&[(&a, "a")])).unwrap();
    assert_eq!(
        es_only.validate(&a.sign("a", good_claims())),
        Err(TokenError::Algorithm("EdDSA".into()))
    );
}

#[test]
fn time_claims_with_skew() {
    let a = Signer::ed();
    let jwt = compiled(jwks(&[(&a, "a")]));
    let t = 1_700_000_000;
    let with = |extra: Value| {
        let mut c = json!({"iss": "https://issuer", "aud": "api"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        a.sign("a", c)
    };
    // Default skew: 60 s.
    assert!(jwt.validate_at(&with(json!({"exp": t})), t + 60).is_ok());
    assert_eq!(
        jwt.validate_at(&with(json!({"exp": t})), t + 61),
        Err(TokenError::Expired)
    );
    assert!(
        jwt.validate_at(&with(json!({"exp": t + 100, "nbf": t + 60})), t)
            .is_ok()
    );
    assert_eq!(
        jwt.validate_at(&with(json!({"exp": t + 100, "nbf": t + 61})), t),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(
        jwt.validate_at(&with(json!({})), t),
        Err(TokenError::Claim("exp"))
    );
    assert_eq!(
        jwt.validate_at(&with(json!({"exp": "soon"})), t),
        Err(TokenError::Claim("exp"))
    );
    let lax = CompiledJwt::new(
        JwtConfig::new()
            .require_exp(false)
            .clock_skew(Duration::ZERO),
        jwks(&[(&a, "a")]),
    )
    .unwrap();
    assert!(lax.validate_at(&with(json!({})), t).is_ok());
    assert_eq!(
        lax.validate_at(&with(json!({"exp": t})), t + 1),
        Err(TokenError::Expired)
    );
}

#[test]
fn issuer_and_audience() {
    let a = Signer::ed();
    let jwt = compiled(jwks(&[(&a, "a")]));
    let exp = now() + 60;
    let check = |c: Value| jwt.validate(&a.sign("a", c));
    assert!(check(json!({"iss": "https://issuer", "aud": "api", "exp": exp})).is_ok());
    assert_eq!(
        check(json!({"iss": "https://evil", "aud": "api", "exp": exp})),
        Err(TokenError::Issuer)
    );
    assert_eq!(
        check(json!({"aud": "api", "exp": exp})),
        Err(TokenError::Claim("iss"))
    );
    assert_eq!(
        check(json!({"iss": "https://issuer", "aud": ["x"], "exp": exp})),
        Err(TokenError::Audience)
    );
    assert_eq!(
        check(json!({"iss": "https://issuer", "exp": exp})),
        Err(TokenError::Claim("aud"))
    );
}

#[test]
fn jwks_parsing() {
    let err = |s: &str| JwkSet::from_json(s.as_bytes()).unwrap_err();
    assert!(matches!(err("[]"), JwtError::JwksSyntax(_)));
    assert!(matches!(err("{"), JwtError::JwksSyntax(_)));
    assert!(matches!(err(r#"{"keys": []}"#), JwtError::NoUsableKeys));
    // Only unsupported keys: HMAC, encryption, X25519.
    assert!(matches!(
        err(
            r#"{"keys": [{"kty":"oct","k":"AAAA"},{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},{"kty":"OKP","crv":"X25519","x":"AA"}]}"#
        ),
        JwtError::NoUsableKeys
    ));
    assert!(matches!(
        err(r#"{"keys": [{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"}]}"#),
        JwtError::BadKey { index: 0, .. }
    ));
    assert!(matches!(
        err(r#"{"keys": [{"kty":"OKP","crv":"Ed25519","x":"!!"}]}"#),
        JwtError::BadKey { .. }
    ));
    assert!(matches!(
        err(r#"{"keys": [{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#),
        JwtError::BadKey { .. }
    ));
    let ed = Signer::ed().jwk("x");
    let mut wrong_alg = ed.clone();
    wrong_alg["alg"] = json!("RS256");
    assert!(matches!(
        err(&json!({"keys": [wrong_alg]}).to_string()),
        JwtError::BadKey { .. }
    ));
    assert_eq!(JwkSet::from_json(RSA_JWKS).unwrap().len(), 1);
    assert!(matches!(
        StaticJwks::from_file("/nonexistent/jwks.json"),
        Err(JwtError::ReadJwks { .. })
    ));
    assert!(matches!(
        CompiledJwt::new(
            JwtConfig::new().algorithm("HS256"),
            jwks(&[(&Signer::ed(), "a")])
        ),
        Err(JwtError::UnsupportedAlgorithm(_))
    ));
    assert!(matches!(
        CompiledJwt::new(JwtConfig::new().issuer(""), jwks(&[(&Signer::ed(), "a")])),
        Err(JwtError::EmptyValue { field: "issuers" })
    ));
}

/// A source that counts unknown-kid hints, as a refreshing source would.
#[derive(Debug)]
struct Counting(Arc<StaticJwks>, AtomicUsize);

impl JwksSource for Counting {
    fn keys(&self) -> Arc<JwkSet> {
        self.0.keys()
    }
    fn unknown_kid(&self, _kid: &str) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn unknown_kid_is_reported_to_the_source() {
    let a = Signer::ed();
    let source = Arc::new(Counting(jwks(&[(&a, "a")]), AtomicUsize::new(0)));
    let jwt = compiled(source.clone());
    assert!(jwt.validate(&a.sign("rotated", good_claims())).is_err());
    assert_eq!(source.1.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn layer_answers_401_and_exposes_claims() {
    let a = Signer::rsa();
    let (inner, n) = backend();
    let svc = JwtLayer::new(compiled(jwks(&[(&a, "r")]))).layer(inner);
    let bearer = |t: &str| {
        Request::get("/")
            .header("authorization", format!("Bearer {t}"))
            .body(String::new())
            .unwrap()
    };

    let r = send(&svc, Request::new(String::new())).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = send(&svc, bearer("nope")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_eq!(calls(&n), 0);

    let r = send(&svc, bearer(&a.sign("r", good_claims()))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let claims = r.extensions().get::<JwtClaims>().unwrap();
    assert_eq!(claims.0["sub"], "alice");
    assert_eq!(calls(&n), 1);
}

// Several providers: a token passes when one of them accepts it, and that provider's claims
// are copied into headers; whatever the client sent under those names is removed.
#[tokio::test]
async fn any_of_providers_and_claim_headers() {
    let (a, b) = (Signer::ed(), Signer::ec());
    let provider = |signer: &Signer, iss: &str, header: &'static str| {
        CompiledJwt::new(
            JwtConfig::new()
                .issuer(iss)
                .claim_to_header("sub", HeaderName::from_static(header))
                .claim_to_header("aud", HeaderName::from_static("x-aud")),
            jwks(&[(signer, "k")]),
        )
        .unwrap()
    };
    let layer = JwtLayer::any_of([
        provider(&a, "https://a", "x-user-a"),
        provider(&b, "https://b", "x-user-b"),
    ]);
    let svc = layer.layer(tower::service_fn(|req: Request<String>| async move {
        let h = |n: &str| {
            req.headers()
                .get(n)
                .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
        };
        let body = format!("{} {} {}", h("x-user-a"), h("x-user-b"), h("x-aud"));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    }));
    let req = |token: &str| {
        Request::get("/")
            .header("authorization", format!("Bearer {token}"))
            .header("x-user-a", "spoofed")
            .body(String::new())
            .unwrap()
    };
    let claims =
        |iss: &str| json!({"iss": iss, "sub": "bob", "aud": ["x", "y"], "exp": now() + 60});

    let r = send(&svc, req(&b.sign("k", claims("https://b")))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.body(), r#"- bob ["x","y"]"#);
    let r = send(&svc, req(&a.sign("k", claims("https://a")))).await;
    assert_eq!(r.body(), r#"bob - ["x","y"]"#);
    // Signed by a's key but claiming b's issuer: neither provider accepts it.
    let r = send(&svc, req(&a.sign("k", claims("https://b")))).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
}
