//! A strict JSON object reader for untrusted input.
//!
//! `serde_json` keeps the last of two members with the same name; a JOSE parser must refuse
//! them (RFC 7515 section 5.2, RFC 8725 section 3.9), since two parsers that pick different
//! duplicates disagree about what was signed. This reader builds a [`Map`] in one pass and
//! refuses duplicate names, nesting deeper than [`Limits::max_depth`] and more than
//! [`Limits::max_members`] members or array elements in total. Errors never echo the input.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Part};

/// Limits applied to every JSON document read from untrusted input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Maximum nesting depth of objects and arrays (the top-level object is depth 1).
    pub max_depth: usize,
    /// Maximum number of object members plus array elements, over the whole document.
    pub max_members: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 8,
            max_members: 256,
        }
    }
}

impl Limits {
    /// Limits with the given depth and member count.
    pub const fn new(max_depth: usize, max_members: usize) -> Self {
        Limits {
            max_depth,
            max_members,
        }
    }
}

/// Why a document was refused; mapped onto [`Error`] with the part it was read from.
#[derive(Debug)]
enum Refusal {
    Duplicate,
    Limits,
    Syntax(&'static str),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Duplicate => "duplicate member",
            Refusal::Limits => "limits",
            Refusal::Syntax(s) => s,
        })
    }
}

impl std::error::Error for Refusal {}

impl de::Error for Refusal {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        // serde's messages can quote the input; never keep them.
        Refusal::Syntax("invalid JSON")
    }
}

struct State {
    depth: usize,
    members: usize,
    limits: Limits,
    refusal: Option<Refusal>,
}

/// Parses `bytes` as one JSON object, strictly.
///
/// # Errors
/// [`Error::DuplicateMember`], [`Error::JsonLimits`] or [`Error::Json`] for `part`.
pub fn parse_object(bytes: &[u8], part: Part, limits: Limits) -> Result<Map<String, Value>, Error> {
    let mut state = State {
        depth: 0,
        members: 0,
        limits,
        refusal: None,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = ValueSeed { state: &mut state }.deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e) => {
            return Err(match state.refusal.take() {
                Some(Refusal::Duplicate) => Error::DuplicateMember(part),
                Some(Refusal::Limits) => Error::JsonLimits(part),
                Some(Refusal::Syntax(reason)) => Error::Json { part, reason },
                None => Error::Json {
                    part,
                    reason: classify(&e),
                },
            });
        }
    };
    if de.end().is_err() {
        return Err(Error::Json {
            part,
            reason: "trailing characters",
        });
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(Error::Json {
            part,
            reason: "not an object",
        }),
    }
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "invalid data",
        serde_json::error::Category::Io => "read error",
    }
}

struct ValueSeed<'s> {
    state: &'s mut State,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { state: self.state })
    }
}

struct ValueVisitor<'s> {
    state: &'s mut State,
}

impl ValueVisitor<'_> {
    fn enter<E: de::Error>(&mut self) -> Result<(), E> {
        self.state.depth += 1;
        if self.state.depth > self.state.limits.max_depth {
            self.state.refusal = Some(Refusal::Limits);
            return Err(E::custom("limits"));
        }
        Ok(())
    }

    fn count<E: de::Error>(&mut self) -> Result<(), E> {
        self.state.members += 1;
        if self.state.members > self.state.limits.max_members {
            self.state.refusal = Some(Refusal::Limits);
            return Err(E::custom("limits"));
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Vec::new();
        loop {
            self.count()?;
            match seq.next_element_seed(ValueSeed {
                state: &mut *self.state,
            })? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        self.state.members -= 1; // the probe for the end is not an element
        self.state.depth -= 1;
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.enter()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.count()?;
            if out.contains_key(&key) {
                self.state.refusal = Some(Refusal::Duplicate);
                return Err(de::Error::custom("duplicate"));
            }
            let value = map.next_value_seed(ValueSeed {
                state: &mut *self.state,
            })?;
            out.insert(key, value);
        }
        self.state.depth -= 1;
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Map<String, Value>, Error> {
        parse_object(s.as_bytes(), Part::Payload, Limits::default())
    }

    #[test]
    fn accepts_plain_objects() {
        let m = parse(r#"{"a":1,"b":[1,2,{"c":"d"}],"e":null}"#).unwrap();
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn refuses_duplicates_at_any_depth() {
        assert!(matches!(
            parse(r#"{"a":1,"a":2}"#),
            Err(Error::DuplicateMember(_))
        ));
        assert!(matches!(
            parse(r#"{"x":{"a":1,"a":1}}"#),
            Err(Error::DuplicateMember(_))
        ));
        // an escaped spelling of the same name is the same name
        assert!(matches!(
            parse(r#"{"alg":1,"\u0061lg":2}"#),
            Err(Error::DuplicateMember(_))
        ));
    }

    #[test]
    fn refuses_depth_and_width() {
        let deep = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        assert!(matches!(
            parse(&format!(r#"{{"a":{deep}}}"#)),
            Err(Error::JsonLimits(_))
        ));
        let wide: Vec<String> = (0..300).map(|i| format!("\"k{i}\":0")).collect();
        assert!(matches!(
            parse(&format!("{{{}}}", wide.join(","))),
            Err(Error::JsonLimits(_))
        ));
    }

    #[test]
    fn refuses_non_objects_and_garbage() {
        assert!(matches!(parse("[]"), Err(Error::Json { .. })));
        assert!(matches!(parse("{} x"), Err(Error::Json { .. })));
        assert!(matches!(parse("{"), Err(Error::Json { .. })));
        assert!(matches!(parse(""), Err(Error::Json { .. })));
    }
}
