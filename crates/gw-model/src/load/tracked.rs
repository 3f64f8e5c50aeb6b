//! A deserializer over an owned JSON value that, in the same pass, records the path of every
//! field the target type does not read (for unknown-field warnings) and the path of the value
//! where an error arose (for error messages).
//!
//! Scalars are handed to `serde_json`'s own deserializer for [`Value`], so conversions and
//! error messages are exactly its own; only arrays, objects, enums and options are walked
//! here, to keep the path: one layer over the model's visitors, where there were two
//! deserializers, one per concern, each wrapping every visitor of the model.

use std::cell::RefCell;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess,
    SeqAccess, VariantAccess, Visitor,
};
use serde_json::{Error, Map, Value};

/// An error, with the path of the value it is about (`""`: the document itself).
#[derive(Debug)]
pub(crate) struct PathError {
    pub path: String,
    pub error: Error,
}

/// Deserializes `value` as a `T`; returns it (or the error and where it arose) and the paths of
/// the fields `T` ignored, in the order the value holds them: `spec.rules[0].matches[1].path`.
pub(crate) fn deserialize<T: DeserializeOwned>(
    value: Value,
) -> (Result<T, PathError>, Vec<String>) {
    let track = Track::default();
    let result = T::deserialize(Tracked {
        value,
        path: Path::Root,
        track: &track,
    });
    let Track { ignored, failed_at } = track;
    let result = result.map_err(|error| PathError {
        path: failed_at.into_inner().unwrap_or_default(),
        error,
    });
    (result, ignored.into_inner())
}

#[derive(Default)]
struct Track {
    ignored: RefCell<Vec<String>>,
    /// The innermost path an error came out of (the first recorded as it propagates).
    failed_at: RefCell<Option<String>>,
}

impl Track {
    fn failed(&self, path: &Path<'_>) {
        let mut at = self.failed_at.borrow_mut();
        if at.is_none() {
            *at = Some(path.to_string());
        }
    }
}

/// Where a value sits in the document: a chain of borrowed segments, rendered only when a
/// field is ignored or an error arises.
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// Deserializes a map key or variant name (of the value at `path`), recording the path if
/// that fails.
fn name<'de, S: DeserializeSeed<'de>>(
    seed: S,
    name: &str,
    path: &Path<'_>,
    track: &Track,
) -> Result<S::Value, Error> {
    let de: de::value::StrDeserializer<'_, Error> = name.into_deserializer();
    seed.deserialize(de).inspect_err(|_| track.failed(path))
}

/// Deserializes the child value at `path`, recording the path if that fails.
fn child<'de, S: DeserializeSeed<'de>>(
    seed: S,
    value: Value,
    path: &Path<'_>,
    track: &Track,
) -> Result<S::Value, Error> {
    seed.deserialize(Tracked {
        value,
        path: *path,
        track,
    })
    .inspect_err(|_| track.failed(path))
}

struct Tracked<'p> {
    value: Value,
    path: Path<'p>,
    track: &'p Track,
}

fn visit_seq<'de, V: Visitor<'de>>(
    items: Vec<Value>,
    path: &Path<'_>,
    track: &Track,
    visitor: V,
) -> Result<V::Value, Error> {
    let len = items.len();
    let mut seq = Seq {
        items: items.into_iter(),
        index: 0,
        path,
        track,
    };
    let out = visitor.visit_seq(&mut seq)?;
    if seq.items.len() == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in array"))
    }
}

fn visit_map<'de, V: Visitor<'de>>(
    entries: Map<String, Value>,
    path: &Path<'_>,
    track: &Track,
    visitor: V,
) -> Result<V::Value, Error> {
    let len = entries.len();
    let mut map = Entries {
        entries: entries.into_iter(),
        pending: None,
        path,
        track,
    };
    let out = visitor.visit_map(&mut map)?;
    if map.entries.len() == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in map"))
    }
}

/// An array or an object, to a visitor that takes either; a scalar to `serde_json`.
fn visit_any<'de, V: Visitor<'de>>(t: Tracked<'_>, visitor: V) -> Result<V::Value, Error> {
    match t.value {
        Value::Array(items) => visit_seq(items, &t.path, t.track, visitor),
        Value::Object(entries) => visit_map(entries, &t.path, t.track, visitor),
        value => value.deserialize_any(visitor),
    }
}

/// Methods whose visitors only take scalars: `serde_json` decides.
macro_rules! scalar {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.value.$method(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for Tracked<'_> {
    type Error = Error;

    scalar! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visit_any(self, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.value.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.value.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Array(items) => visit_seq(items, &self.path, self.track, visitor),
            value => value.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.value {
            Value::Object(entries) => visit_map(entries, &self.path, self.track, visitor),
            value => value.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::Array(items) => visit_seq(items, &self.path, self.track, visitor),
            Value::Object(entries) => visit_map(entries, &self.path, self.track, visitor),
            value => value.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Value::String(variant) => visitor.visit_enum(Variant {
                name: variant,
                content: None,
                path: &self.path,
                track: self.track,
            }),
            Value::Object(entries) if entries.len() == 1 => {
                let mut entries = entries.into_iter();
                let Some((variant, content)) = entries.next() else {
                    return Err(de::Error::invalid_length(0, &"a map with a single key"));
                };
                visitor.visit_enum(Variant {
                    name: variant,
                    content: Some(content),
                    path: &self.path,
                    track: self.track,
                })
            }
            value => value.deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.track.ignored.borrow_mut().push(self.path.to_string());
        visitor.visit_unit()
    }
}

struct Seq<'a, 'p> {
    items: std::vec::IntoIter<Value>,
    index: usize,
    path: &'a Path<'p>,
    track: &'a Track,
}

impl<'de> SeqAccess<'de> for Seq<'_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let path = Path::Index(self.path, self.index);
        self.index += 1;
        child(seed, value, &path, self.track).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Entries<'a, 'p> {
    entries: serde_json::map::IntoIter,
    /// The entry whose key was read and whose value was not yet.
    pending: Option<(String, Value)>,
    path: &'a Path<'p>,
    track: &'a Track,
}

impl<'de> MapAccess<'de> for Entries<'_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let out = name(seed, &key, self.path, self.track)?;
        self.pending = Some((key, value));
        Ok(Some(out))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom(
                "a map value was asked for before its key",
            ));
        };
        child(seed, value, &Path::Field(self.path, &key), self.track)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Variant<'a, 'p> {
    name: String,
    content: Option<Value>,
    path: &'a Path<'p>,
    track: &'a Track,
}

impl<'de, 'a, 'p> EnumAccess<'de> for Variant<'a, 'p> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Error> {
        let variant = name(seed, &self.name, self.path, self.track)?;
        Ok((variant, self))
    }
}

impl Variant<'_, '_> {
    /// Deserializes the variant's content, at the variant's path, with `read`; a variant
    /// without content (a plain string) is not a `what`.
    fn content<R>(
        self,
        what: &'static str,
        read: impl FnOnce(Tracked<'_>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let Some(value) = self.content else {
            return Err(de::Error::invalid_type(de::Unexpected::UnitVariant, &what));
        };
        let path = Path::Field(self.path, &self.name);
        read(Tracked {
            value,
            path,
            track: self.track,
        })
        .inspect_err(|_| self.track.failed(&path))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            None => Ok(()),
            Some(value) => de::Deserialize::deserialize(value),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        self.content("newtype variant", |t| seed.deserialize(t))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.content("tuple variant", |t| t.deserialize_seq(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.content("struct variant", |t| t.deserialize_map(visitor))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Outer {
        name: String,
        #[serde(default)]
        rules: Vec<Rule>,
        #[serde(default)]
        labels: BTreeMap<String, String>,
        port: Option<u16>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Rule {
        kind: Kind,
        #[serde(default)]
        value: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    enum Kind {
        Exact,
        Prefix,
    }

    #[test]
    fn reads_what_the_type_reads_and_names_what_it_ignores() {
        let value = json!({
            "name": "a",
            "extra": {"deep": [1, 2]},
            "rules": [{"kind": "Exact", "value": "/"}, {"kind": "Prefix", "vlaue": "/x"}],
            "labels": {"app": "web"},
            "port": 80,
        });
        let (out, ignored) = deserialize::<Outer>(value);
        let out = out.expect("valid");
        assert_eq!(
            out.rules[1],
            Rule {
                kind: Kind::Prefix,
                value: None
            }
        );
        assert_eq!(out.labels["app"], "web");
        assert_eq!(out.port, Some(80));
        // serde_json orders an object's keys: "extra" before "rules".
        assert_eq!(ignored, ["extra", "rules[1].vlaue"]);
    }

    #[test]
    fn an_error_names_the_innermost_value() {
        let cases = [
            (
                json!({"name": "a", "rules": [{"kind": "Exact"}, {"kind": "Regex"}]}),
                "rules[1].kind",
            ),
            (json!({"name": "a", "port": 70000}), "port"),
            (json!({"name": "a", "rules": [{"value": "/"}]}), "rules[0]"),
            (json!({"name": 1}), "name"),
            (json!({"rules": []}), ""),
            (json!({"name": "a", "labels": {"app": 1}}), "labels.app"),
        ];
        for (value, path) in cases {
            let (out, _) = deserialize::<Outer>(value.clone());
            let err = out.expect_err("invalid");
            assert_eq!(err.path, path, "{value}: {}", err.error);
        }
    }

    #[test]
    fn scalar_errors_are_serde_json_s_own() {
        let (out, _) = deserialize::<Outer>(json!({"name": "a", "port": "80"}));
        let ours = out.expect_err("a string is no port").error.to_string();
        let theirs = serde_json::from_value::<Outer>(json!({"name": "a", "port": "80"}))
            .expect_err("a string is no port")
            .to_string();
        assert_eq!(ours, theirs);
    }
}
