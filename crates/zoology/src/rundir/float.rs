//! Floats that survive a JSON round trip even when they are not finite.
//!
//! serde_json writes NaN and ±∞ as `null` and then refuses to read `null` back as an `f64`, so a
//! diverged run used to write a summary nobody could read. These helpers write finite values as
//! JSON numbers and non-finite ones as the strings `"NaN"`, `"inf"` and `"-inf"` (valid JSON for
//! every strict parser); they read numbers, those strings (and `"Infinity"`, `"-Infinity"`,
//! `"+inf"`, any case), and `null` as NaN (what older zoology-rs versions wrote).
//!
//! Use with `#[serde(with = "crate::rundir::float")]` on an `f64`, `float::opt` on an
//! `Option<f64>` and `float::map` on a `BTreeMap<String, f64>`.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The JSON string for a non-finite value; `None` for a finite one.
pub fn non_finite_word(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("NaN")
    } else if x == f64::INFINITY {
        Some("inf")
    } else if x == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Parses `"NaN"`, `"inf"`, `"-inf"`, `"Infinity"`, ... (any case).
pub fn parse_word(s: &str) -> Option<f64> {
    match s.trim().to_ascii_lowercase().as_str() {
        "nan" | "-nan" | "+nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_word(*x) {
        Some(w) => s.serialize_str(w),
        None => s.serialize_f64(*x),
    }
}

struct F64Visitor;

impl<'de> Visitor<'de> for F64Visitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or one of the strings \"NaN\", \"inf\", \"-inf\"")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse_word(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }
    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(F64Visitor)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(F64Visitor)
}

/// `Option<f64>`: `None` is `null`; a non-finite `Some` is a string.
pub mod opt {
    use super::*;

    pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            None => s.serialize_none(),
            Some(v) => super::serialize(v, s),
        }
    }

    struct OptVisitor;
    impl<'de> Visitor<'de> for OptVisitor {
        type Value = Option<f64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("null, a number, or one of the strings \"NaN\", \"inf\", \"-inf\"")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(F64Visitor).map(Some)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            F64Visitor.visit_str(v).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(OptVisitor)
    }
}

/// `BTreeMap<String, f64>` with non-finite values as strings.
pub mod map {
    use super::*;

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            out.serialize_entry(k, &Wrap(*v))?;
        }
        out.end()
    }

    struct Wrap(f64);
    impl serde::Serialize for Wrap {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            super::serialize(&self.0, s)
        }
    }
    struct Unwrap(f64);
    impl<'de> serde::Deserialize<'de> for Unwrap {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::deserialize(d).map(Unwrap)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let m: BTreeMap<String, Unwrap> = serde::Deserialize::deserialize(d)?;
        Ok(m.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeMap;

    #[derive(Debug, Serialize, Deserialize)]
    struct T {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::opt")]
        o: Option<f64>,
        #[serde(with = "super::map")]
        m: BTreeMap<String, f64>,
    }

    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a == b
    }

    #[test]
    fn non_finite_values_round_trip_through_strict_json() {
        for x in [1.5, 0.0, -2.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308] {
            let t = T { x, o: Some(x), m: [("a".to_string(), x)].into_iter().collect() };
            let s = serde_json::to_string(&t).unwrap();
            assert!(!s.contains("null"), "{s}");
            // strict JSON: a generic parser reads it
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            if !x.is_finite() {
                assert!(v["x"].is_string(), "{s}");
            }
            let back: T = serde_json::from_str(&s).unwrap();
            assert!(same(back.x, x) && same(back.o.unwrap(), x) && same(back.m["a"], x), "{s}");
        }
        // what older versions wrote (null) reads as NaN; None stays None
        let t: T = serde_json::from_str(r#"{"x": null, "o": null, "m": {"a": null}}"#).unwrap();
        assert!(t.x.is_nan() && t.o.is_none() && t.m["a"].is_nan());
        let t: T = serde_json::from_str(r#"{"x": "Infinity", "o": "-inf", "m": {}}"#).unwrap();
        assert_eq!((t.x, t.o), (f64::INFINITY, Some(f64::NEG_INFINITY)));
        let e = serde_json::from_str::<T>(r#"{"x": "fast", "o": 1, "m": {}}"#).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
    }
}
