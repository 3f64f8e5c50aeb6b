//! JSON Web Key Sets (RFC 7517) and where they come from.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::{Algorithm, JwtError};

/// What [`JwksSource::loading`] returns: resolves when the source's first keys are in, or when
/// the source stops waiting for them.
pub type Loading = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where the layer gets its keys. [`StaticJwks`] serves a set loaded once;
/// [`RemoteJwks`](super::RemoteJwks) fetches an HTTPS JWKS URL, refreshing in the background
/// and serving its last good set, so the request path never waits on the network.
pub trait JwksSource: Send + Sync + fmt::Debug + 'static {
    /// The keys to verify with now. Must not block.
    fn keys(&self) -> Arc<JwkSet>;

    /// Called when a token names a `kid` that [`keys`](Self::keys) lacks: the issuer may have
    /// rotated its keys. A fetching source may schedule an early (rate-limited) refresh. The
    /// default does nothing.
    fn unknown_kid(&self, kid: &str) {
        let _ = kid;
    }

    /// `Some` while the source has not loaded its first keys yet: a future that resolves when
    /// it has tried (or when the source's own bound on the wait is reached). The layer awaits
    /// it before refusing a token for want of keys, so the first requests after a start or a
    /// reload are not refused needlessly. `None` (the default) when the keys are there, or
    /// when waiting would not help.
    fn loading(&self) -> Option<Loading> {
        None
    }
}

/// A key set loaded once, from bytes or a file.
#[derive(Debug, Clone)]
pub struct StaticJwks(Arc<JwkSet>);

impl StaticJwks {
    /// Serves `set`.
    pub fn new(set: JwkSet) -> Self {
        StaticJwks(Arc::new(set))
    }

    /// Parses a JWKS document.
    pub fn from_json(json: &[u8]) -> Result<Self, JwtError> {
        JwkSet::from_json(json).map(Self::new)
    }

    /// Reads and parses a JWKS file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, JwtError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| JwtError::ReadJwks {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&bytes)
    }
}

impl JwksSource for StaticJwks {
    fn keys(&self) -> Arc<JwkSet> {
        self.0.clone()
    }
}

/// Parsed public keys. Keys of types this crate cannot verify with (`oct`, other curves,
/// encryption keys) are skipped; malformed keys of supported types are errors.
#[derive(Debug, Clone, Default)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// One public key.
#[derive(Debug, Clone)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    alg: Option<Algorithm>,
    material: Material,
}

#[derive(Clone)]
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Material::Rsa { n, .. } => write!(f, "RSA-{}", n.len() * 8),
            Material::P256(_) => f.write_str("P-256"),
            Material::P384(_) => f.write_str("P-384"),
            Material::Ed25519(_) => f.write_str("Ed25519"),
        }
    }
}

impl JwkSet {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn from_json(json: &[u8]) -> Result<JwkSet, JwtError> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| JwtError::JwksSyntax(e.to_string()))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwtError::JwksSyntax("no `keys` array".into()))?;
        let mut keys = Vec::new();
        for (index, key) in list.iter().enumerate() {
            if let Some(k) = Jwk::parse(index, key)? {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Err(JwtError::NoUsableKeys);
        }
        Ok(JwkSet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no usable key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys that may have signed a token with `alg` and `kid`.
    pub(crate) fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(move |k| {
            (kid.is_none() || k.kid.as_deref() == kid)
                && k.alg.is_none_or(|a| a == alg)
                && k.material.fits(alg)
        })
    }
}

impl Material {
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (
                Material::Rsa { .. },
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512
            ) | (Material::P256(_), ES256)
                | (Material::P384(_), ES384)
                | (Material::Ed25519(_), EdDSA)
        )
    }
}

impl Jwk {
    /// Whether this key verifies `sig` over `msg` with `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
        use Algorithm::*;
        let rsa = |params: &'static signature::RsaParameters, n: &[u8], e: &[u8]| {
            RsaPublicKeyComponents { n, e }
                .verify(params, msg, sig)
                .is_ok()
        };
        match (&self.material, alg) {
            (Material::Rsa { n, e }, RS256) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, RS384) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, RS512) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512, n, e),
            (Material::Rsa { n, e }, PS256) => rsa(&signature::RSA_PSS_2048_8192_SHA256, n, e),
            (Material::Rsa { n, e }, PS384) => rsa(&signature::RSA_PSS_2048_8192_SHA384, n, e),
            (Material::Rsa { n, e }, PS512) => rsa(&signature::RSA_PSS_2048_8192_SHA512, n, e),
            (Material::P256(point), ES256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Material::P384(point), ES384) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            (Material::Ed25519(key), EdDSA) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(msg, sig)
                .is_ok(),
            _ => false,
        }
    }

    /// A supported signing key, `None` for keys of other kinds.
    fn parse(index: usize, key: &Value) -> Result<Option<Jwk>, JwtError> {
        let s = |name: &str| key.get(name).and_then(Value::as_str);
        let kid = s("kid").map(str::to_owned);
        let bad = |reason: &str| JwtError::BadKey {
            index,
            kid: kid.clone(),
            reason: reason.to_owned(),
        };
        if s("use").is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let alg = match s("alg") {
            None => None,
            Some(name) => match Algorithm::from_name(name) {
                Some(a) => Some(a),
                // A key for an algorithm we do not verify (HS256, RSA-OAEP, ...).
                None => return Ok(None),
            },
        };
        let b64 = |name: &str| -> Result<Vec<u8>, JwtError> {
            let v = s(name).ok_or_else(|| bad(&format!("no `{name}`")))?;
            URL_SAFE_NO_PAD
                .decode(v.trim_end_matches('='))
                .map_err(|_| bad(&format!("`{name}` is not base64url")))
        };
        let material = match (s("kty"), s("crv")) {
            (Some("RSA"), _) => {
                let n = b64("n")?;
                let e = b64("e")?;
                let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(bad(&format!("RSA modulus is {bits} bits; at least 2048")));
                }
                Material::Rsa { n, e }
            }
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (b64("x")?, b64("y")?);
                let len = if crv == "P-256" { 32 } else { 48 };
                if x.len() != len || y.len() != len {
                    return Err(bad(&format!("{crv} coordinates must be {len} bytes")));
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if crv == "P-256" {
                    Material::P256(point)
                } else {
                    Material::P384(point)
                }
            }
            (Some("OKP"), Some("Ed25519")) => {
                let x = b64("x")?;
                if x.len() != 32 {
                    return Err(bad("Ed25519 `x` must be 32 bytes"));
                }
                Material::Ed25519(x)
            }
            _ => return Ok(None),
        };
        if let Some(a) = alg
            && !material.fits(a)
        {
            return Err(bad(&format!("`alg` {a:?} does not fit the key type")));
        }
        Ok(Some(Jwk { kid, alg, material }))
    }
}
