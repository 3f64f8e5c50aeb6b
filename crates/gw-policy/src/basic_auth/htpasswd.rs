//! htpasswd parsing and password checks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::digest;
use subtle::ConstantTimeEq;

use super::BasicAuthError;

/// Successful bcrypt checks remembered, so a client sending the same credentials does not pay
/// a bcrypt per request. Cleared when full.
const VERIFIED_CACHE: usize = 1024;

#[derive(Debug, Clone)]
enum Hash {
    Bcrypt(String),
    /// `{SHA}`: SHA-1 of the password.
    Sha1([u8; 20]),
}

/// A parsed htpasswd file: bcrypt (`$2y$`, `$2b$`, `$2a$`) and `{SHA}` entries.
#[derive(Debug, Clone)]
pub(crate) struct Htpasswd {
    users: HashMap<String, Hash>,
    /// A bcrypt hash checked for unknown users, so they take as long as known ones.
    decoy: Option<String>,
    verified: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl Htpasswd {
    pub(crate) fn parse(text: &str) -> Result<Htpasswd, BasicAuthError> {
        let mut users = HashMap::new();
        let mut decoy = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (user, hash) = entry
                .split_once(':')
                .filter(|(u, h)| !u.is_empty() && !h.is_empty())
                .ok_or(BasicAuthError::MalformedLine { line })?;
            let hash = parse_hash(line, user, hash)?;
            if let Hash::Bcrypt(h) = &hash {
                decoy.get_or_insert_with(|| h.clone());
            }
            if users.insert(user.to_owned(), hash).is_some() {
                return Err(BasicAuthError::DuplicateUser {
                    line,
                    user: user.to_owned(),
                });
            }
        }
        if users.is_empty() {
            return Err(BasicAuthError::NoUsers);
        }
        Ok(Htpasswd {
            users,
            decoy,
            verified: Arc::default(),
        })
    }

    /// Whether `password` is `user`'s.
    pub(crate) fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(Hash::Sha1(expected)) => {
                let got = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
                bool::from(got.as_ref().ct_eq(expected))
            }
            Some(Hash::Bcrypt(hash)) => {
                let key = cache_key(user, password);
                let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                if verified.contains(&key) {
                    return true;
                }
                drop(verified);
                // bcrypt compares in constant time.
                let ok = bcrypt::verify(password, hash).unwrap_or(false);
                if ok {
                    verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
                    if verified.len() >= VERIFIED_CACHE {
                        verified.clear();
                    }
                    verified.insert(key);
                }
                ok
            }
            None => {
                if let Some(decoy) = &self.decoy {
                    let _ = bcrypt::verify(password, decoy);
                }
                false
            }
        }
    }
}

fn cache_key(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(user.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

fn parse_hash(line: usize, user: &str, hash: &str) -> Result<Hash, BasicAuthError> {
    let insecure = |scheme| BasicAuthError::InsecureScheme {
        line,
        user: user.to_owned(),
        scheme,
    };
    let malformed = |scheme| BasicAuthError::MalformedHash {
        line,
        user: user.to_owned(),
        scheme,
    };
    if let Some(b64) = hash.strip_prefix("{SHA}") {
        let bytes = STANDARD.decode(b64).map_err(|_| malformed("{SHA}"))?;
        return <[u8; 20]>::try_from(bytes.as_slice())
            .map(Hash::Sha1)
            .map_err(|_| malformed("{SHA}"));
    }
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        return hash
            .parse::<bcrypt::HashParts>()
            .map(|_| Hash::Bcrypt(hash.to_owned()))
            .map_err(|_| malformed("bcrypt"));
    }
    if hash.starts_with("$apr1$") {
        return Err(insecure("$apr1$ (Apache MD5)"));
    }
    if hash.starts_with("$1$") {
        return Err(insecure("$1$ (MD5-crypt)"));
    }
    if hash.starts_with('$') || hash.starts_with('{') {
        return Err(BasicAuthError::UnknownScheme {
            line,
            user: user.to_owned(),
            prefix: hash.chars().take(6).collect(),
        });
    }
    // Anything else is crypt(3) DES or a plain-text password.
    Err(insecure("crypt(3) DES or plain text"))
}
