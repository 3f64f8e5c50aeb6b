//! Path modifiers (ReplaceFullPath, ReplacePrefixMatch) and redirect `Location`s.

use http::Uri;

use crate::index::prefix_matches;

/// Replaces the matched prefix of `path`, element-wise.
///
/// HTTPRoute `ReplacePrefixMatch`: "a request to `/foo/bar` with a prefix match of `/foo` and a
/// ReplacePrefixMatch of `/xyz` would be modified to `/xyz/bar`"; trailing slashes of the
/// prefix and of the replacement are ignored, and an empty result is `/`.
pub(crate) fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    let rest = if prefix_matches(prefix, path) {
        &path[prefix.len()..]
    } else {
        path
    };
    let replacement = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    if !replacement.starts_with('/') && !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(replacement);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// `uri` with its path replaced and its query kept.
pub(crate) fn with_path(uri: &Uri, path: &str) -> Result<Uri, http::Error> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse()?);
    Ok(Uri::from_parts(parts)?)
}

/// `uri` with its host replaced (absolute-form and HTTP/2 requests carry it in the URI).
pub(crate) fn with_host(uri: &Uri, host: &str) -> Result<Uri, http::Error> {
    if uri.authority().is_none() {
        return Ok(uri.clone());
    }
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(host.parse()?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The HTTPPathModifier table of the Gateway API (request path, prefix, replacement,
    // modified path).
    #[test]
    fn replace_prefix_match_table() {
        for (path, prefix, repl, want) in [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/foo/bar", "/", "/xyz", "/xyz/foo/bar"),
            (
                "/original-prefix/lemon",
                "/original-prefix",
                "/replacement-prefix",
                "/replacement-prefix/lemon",
            ),
            ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),
            ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
            ("/strip-prefix", "/strip-prefix", "/", "/"),
        ] {
            assert_eq!(
                replace_prefix(path, prefix, repl),
                want,
                "{path} {prefix} {repl}"
            );
        }
    }

    #[test]
    fn uri_edits_keep_the_query() {
        let uri: Uri = "/a/b?x=1&y".parse().unwrap();
        assert_eq!(with_path(&uri, "/c").unwrap(), "/c?x=1&y");
        let uri: Uri = "http://old.example:8080/a".parse().unwrap();
        assert_eq!(
            with_host(&uri, "new.example").unwrap(),
            "http://new.example/a"
        );
    }
}
