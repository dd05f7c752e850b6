//! Typed JWT claims: the registered claims (RFC 7519), the access-token profile (RFC 9068),
//! the confirmation claim (RFC 7800, RFC 9449) and an open set of custom claims that can
//! never shadow a registered one.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Claim names this crate models; a custom claim can never use one of them.
pub const REGISTERED_CLAIMS: [&str; 14] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "client_id",
    "scope",
    "auth_time",
    "acr",
    "amr",
    "cnf",
    "sid",
];

/// The `aud` claim: one audience or several.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience, serialized as a string.
    One(String),
    /// Several audiences, serialized as an array.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names this audience.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(list) => list.iter().any(|a| a == audience),
        }
    }

    /// The audiences as a slice-like iterator.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many): (Option<&String>, &[String]) = match self {
            Audience::One(a) => (Some(a), &[]),
            Audience::Many(list) => (None, list),
        };
        one.into_iter().chain(many).map(String::as_str)
    }

    /// One audience as a string, several as an array; empty input gives `None`.
    pub fn from_list<I, S>(list: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut v: Vec<String> = list.into_iter().map(Into::into).collect();
        match v.len() {
            0 => None,
            1 => v.pop().map(Audience::One),
            _ => Some(Audience::Many(v)),
        }
    }
}

/// The `cnf` (confirmation) claim: the key a token is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the DPoP key (RFC 9449 section 6.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Confirmation {
    /// A confirmation by DPoP key thumbprint.
    pub fn jkt(thumbprint: impl Into<String>) -> Self {
        Confirmation {
            jkt: Some(thumbprint.into()),
        }
    }
}

/// Custom (private or public) claims; registered names are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CustomClaims(Map<String, Value>);

impl CustomClaims {
    /// An empty set.
    pub fn new() -> Self {
        CustomClaims::default()
    }

    /// Adds a claim.
    ///
    /// # Errors
    /// [`Error::ReservedClaim`] when `name` is a registered claim.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) -> Result<()> {
        let name = name.into();
        if REGISTERED_CLAIMS.contains(&name.as_str()) {
            return Err(Error::ReservedClaim(name));
        }
        self.0.insert(name, value.into());
        Ok(())
    }

    /// Builds the set from a JSON object, refusing registered names.
    ///
    /// # Errors
    /// [`Error::ReservedClaim`] for the first registered name found.
    pub fn from_map(map: Map<String, Value>) -> Result<Self> {
        if let Some(name) = map.keys().find(|k| REGISTERED_CLAIMS.contains(&k.as_str())) {
            return Err(Error::ReservedClaim(name.clone()));
        }
        Ok(CustomClaims(map))
    }

    /// A claim by name.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// Number of custom claims.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the claims.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter()
    }
}

/// The claims of a JWT access token. Numeric dates are integer seconds since the epoch.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Claims {
    /// Issuer.
    pub iss: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Audience.
    pub aud: Option<Audience>,
    /// Expiration time.
    pub exp: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Issued at.
    pub iat: Option<i64>,
    /// JWT id.
    pub jti: Option<String>,
    /// OAuth client (RFC 9068).
    pub client_id: Option<String>,
    /// Space-separated scopes (RFC 9068, RFC 8693).
    pub scope: Option<String>,
    /// Time of the end-user authentication (RFC 9068).
    pub auth_time: Option<i64>,
    /// Authentication context class reference.
    pub acr: Option<String>,
    /// Authentication methods references.
    pub amr: Option<Vec<String>>,
    /// Confirmation (key binding).
    pub cnf: Option<Confirmation>,
    /// Session id; this service puts the refresh-token family id here.
    pub sid: Option<String>,
    /// Every other claim.
    pub custom: CustomClaims,
}

impl Serialize for Claims {
    /// Registered claims in a fixed order, absent ones left out, then the custom claims.
    /// Written by hand rather than with `#[serde(flatten)]`, which buffers every value: this is
    /// on the minting hot path.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        macro_rules! opt {
            ($($name:ident),*) => {$(
                if let Some(v) = &self.$name {
                    m.serialize_entry(stringify!($name), v)?;
                }
            )*};
        }
        opt!(
            iss, sub, aud, exp, nbf, iat, jti, client_id, scope, auth_time, acr, amr, cnf, sid
        );
        for (k, v) in &self.custom.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Claims {
    /// Empty claims.
    pub fn new() -> Self {
        Claims::default()
    }

    /// The scopes, split on spaces.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
    }

    /// Serializes to compact JSON.
    ///
    /// # Errors
    /// [`Error::Serialize`] (only if a custom claim cannot be serialized).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        // An access token's claims are a few hundred bytes: one allocation, not a doubling
        // series of them.
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer(&mut out, self).map_err(|_| Error::Serialize)?;
        Ok(out)
    }

    /// Reads claims from a parsed JSON object, checking the type of every registered claim.
    ///
    /// # Errors
    /// [`Error::InvalidClaim`] naming the claim with the wrong type (for example a string
    /// `exp`, a fractional `iat`, a non-string `aud` element).
    pub fn from_map(mut map: Map<String, Value>) -> Result<Self> {
        let mut c = Claims {
            iss: take_string(&mut map, "iss")?,
            sub: take_string(&mut map, "sub")?,
            aud: None,
            exp: take_date(&mut map, "exp")?,
            nbf: take_date(&mut map, "nbf")?,
            iat: take_date(&mut map, "iat")?,
            jti: take_string(&mut map, "jti")?,
            client_id: take_string(&mut map, "client_id")?,
            scope: take_string(&mut map, "scope")?,
            auth_time: take_date(&mut map, "auth_time")?,
            acr: take_string(&mut map, "acr")?,
            amr: None,
            cnf: None,
            sid: take_string(&mut map, "sid")?,
            custom: CustomClaims::default(),
        };
        c.aud = match map.remove("aud") {
            None => None,
            Some(Value::String(s)) => Some(Audience::One(s)),
            Some(Value::Array(items)) => Some(Audience::Many(string_list(items, "aud")?)),
            Some(_) => return Err(Error::InvalidClaim("aud")),
        };
        c.amr = match map.remove("amr") {
            None => None,
            Some(Value::Array(items)) => Some(string_list(items, "amr")?),
            Some(_) => return Err(Error::InvalidClaim("amr")),
        };
        c.cnf = match map.remove("cnf") {
            None => None,
            Some(Value::Object(mut cnf)) => Some(Confirmation {
                jkt: take_string(&mut cnf, "jkt").map_err(|_| Error::InvalidClaim("cnf"))?,
            }),
            Some(_) => return Err(Error::InvalidClaim("cnf")),
        };
        c.custom = CustomClaims(map);
        Ok(c)
    }
}

fn take_string(map: &mut Map<String, Value>, name: &'static str) -> Result<Option<String>> {
    match map.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

fn take_date(map: &mut Map<String, Value>, name: &'static str) -> Result<Option<i64>> {
    match map.remove(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(v), _) if v >= 0 => Ok(Some(v)),
            // Some libraries write whole seconds as `1700000000.0`; that is still an integer.
            // Fractional seconds are refused.
            #[allow(
                clippy::cast_possible_truncation,
                reason = "range and fraction checked first"
            )]
            (None, Some(f)) if f.fract() == 0.0 && (0.0..9.0e15).contains(&f) => Ok(Some(f as i64)),
            _ => Err(Error::InvalidClaim(name)),
        },
        Some(_) => Err(Error::InvalidClaim(name)),
    }
}

fn string_list(items: Vec<Value>, name: &'static str) -> Result<Vec<String>> {
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(Error::InvalidClaim(name)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn round_trip() {
        let mut c = Claims::new();
        c.iss = Some("https://issuer".into());
        c.aud = Audience::from_list(["a", "b"]);
        c.exp = Some(10);
        c.cnf = Some(Confirmation::jkt("abc"));
        c.custom.insert("tenant", "t1").unwrap();
        let json = c.to_json().unwrap();
        let back = Claims::from_map(serde_json::from_slice(&json).unwrap()).unwrap();
        assert_eq!(c, back);
    }

    #[test]
    fn numeric_dates_are_integers() {
        assert!(matches!(
            Claims::from_map(map(json!({"exp": "1700000000"}))),
            Err(Error::InvalidClaim("exp"))
        ));
        assert!(matches!(
            Claims::from_map(map(json!({"iat": 1.5}))),
            Err(Error::InvalidClaim("iat"))
        ));
        assert_eq!(
            Claims::from_map(map(json!({"iat": 1.7e9}))).unwrap().iat,
            Some(1_700_000_000)
        );
        assert!(matches!(
            Claims::from_map(map(json!({"exp": 1e300}))),
            Err(Error::InvalidClaim("exp"))
        ));
        assert!(matches!(
            Claims::from_map(map(json!({"nbf": -1}))),
            Err(Error::InvalidClaim("nbf"))
        ));
    }

    #[test]
    fn custom_claims_cannot_shadow() {
        let mut c = CustomClaims::new();
        for name in REGISTERED_CLAIMS {
            assert!(matches!(c.insert(name, 1), Err(Error::ReservedClaim(_))));
        }
        assert!(CustomClaims::from_map(map(json!({"exp": 1}))).is_err());
        assert!(c.insert("roles", json!(["admin"])).is_ok());
    }

    #[test]
    fn audience_forms() {
        assert_eq!(Audience::from_list(Vec::<String>::new()), None);
        assert_eq!(Audience::from_list(["x"]), Some(Audience::One("x".into())));
        let many = Audience::from_list(["x", "y"]).unwrap();
        assert!(many.contains("y") && !many.contains("z"));
        assert_eq!(many.iter().collect::<Vec<_>>(), ["x", "y"]);
    }
}
