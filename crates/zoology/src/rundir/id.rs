//! Run ids: a hash of what a run computes, stable across versions that add config fields.
//!
//! The id is the first 12 hex digits of the SHA-256 of the config's *canonical form*: the
//! resolved config with `threads` and `device` dropped (where and on how many cores a run
//! computes is not what it computes) and every value equal to its default left out, mixer
//! options included (registry defaults, recursively for mixers inside mixers such as
//! `hybrid`'s layers), written as JSON with sorted keys.
//!
//! Leaving defaults out is what keeps ids stable: a field added later with a default is absent
//! from the canonical form of every config that does not set it, so no finished run changes id
//! (and no finished sweep retrains). `{ name = "attention" }` and the same table with its
//! default options spelled out are one run with one id. Which values are defaults is found
//! without a list: a key is left out when removing it deserialises to the same config
//! ([`strip_defaults`]), so a new field needs no change here.

use crate::config::{strip_mixer_defaults, RunConfig};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The run id of a config (12 hex digits).
pub fn run_id(cfg: &RunConfig) -> String {
    hash_value(&canonical(cfg))
}

/// The canonical form a run id hashes (see the module doc).
pub fn canonical(cfg: &RunConfig) -> toml::Value {
    let mut c = cfg.clone();
    c.threads = 0;
    c.device = Default::default();
    c.model.mixer = strip_mixer_defaults(&c.model.mixer);
    let full = toml::Value::try_from(&c).expect("a RunConfig always serialises");
    // reading a config resolves mixer defaults and `block = "auto"`, so the target is what the
    // full form reads back as, not `c` (whose mixer table was just stripped)
    match RunConfig::deserialize(full.clone()) {
        Ok(target) => strip_defaults(full, &target),
        Err(_) => full,
    }
}

/// 12 hex digits of the SHA-256 of a value's JSON form (object keys sorted).
pub fn hash_value(v: &toml::Value) -> String {
    let json = serde_json::to_string(&serde_json::to_value(v).unwrap_or_default()).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Removes from `full` (the serialised form of `target`) every key whose removal still
/// deserialises to `target`: the values equal to their serde defaults, whole tables included.
pub fn strip_defaults<T: DeserializeOwned + PartialEq>(full: toml::Value, target: &T) -> toml::Value {
    let mut cur = full.clone();
    for p in crate::config::toml_path::paths(&full, false) {
        let mut trial = cur.clone();
        if !crate::config::toml_path::remove(&mut trial, &p) {
            continue; // inside a table already removed
        }
        if T::deserialize(trial.clone()).map(|x| &x == target).unwrap_or(false) {
            cur = trial;
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    const BASE: &str = r#"
        [data]
        vocab_size = 256
        [[data.train]]
        task = "mqar"
        seq_len = 32
        num_kv_pairs = 4
        num_examples = 100
        [[data.test]]
        task = "mqar"
        seq_len = 32
        num_kv_pairs = 4
        num_examples = 10
        [model]
        d_model = 32
        mixer = { name = "attention" }
    "#;

    fn id_of(text: &str) -> String {
        run_id(&RunConfig::from_toml_str(text, "t").unwrap())
    }

    /// The id of this config must never change: finished sweeps are found by their ids.
    #[test]
    fn run_id_is_pinned() {
        let form = serde_json::to_string(
            &serde_json::to_value(canonical(&RunConfig::from_toml_str(BASE, "t").unwrap())).unwrap(),
        )
        .unwrap();
        assert_eq!(
            form,
            r#"{"data":{"test":[{"num_examples":10,"num_kv_pairs":4,"seq_len":32,"task":"mqar"}],"train":[{"num_examples":100,"num_kv_pairs":4,"seq_len":32,"task":"mqar"}],"vocab_size":256},"model":{"d_model":32}}"#
        );
        assert_eq!(
            id_of(BASE),
            "108767ee0ef8",
            "the run id of a fixed config changed: every finished sweep would retrain"
        );
    }

    #[test]
    fn spelled_out_defaults_threads_and_device_do_not_change_the_id() {
        let base = id_of(BASE);
        let c = RunConfig::from_toml_str(BASE, "t").unwrap();
        // the resolved config (what config.toml holds) has the same id as the terse one
        assert!(c.to_toml().contains("num_heads"), "mixer defaults are resolved into the config:\n{}", c.to_toml());
        assert_eq!(run_id(&RunConfig::from_toml_str(&c.to_toml(), "t").unwrap()), base);
        let defaults = crate::mixers::lookup(&c.model.mixer, "m").unwrap();
        let spelled: Vec<String> = (defaults.defaults)().iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let explicit =
            BASE.replace("{ name = \"attention\" }", &format!("{{ name = \"attention\", {} }}", spelled.join(", ")));
        assert_ne!(explicit, BASE);
        assert_eq!(id_of(&explicit), base);
        let more = format!(
            "seed = 123\nthreads = 3\ndevice = \"cpu\"\nname = \"\"\n{}\n[train]\nepochs = 64\nlr = 1e-3\n",
            BASE.replace("[model]", "[model]\nn_layers = 2")
        );
        assert_eq!(id_of(&more), base);
        // a value that differs from its default does change it
        assert_ne!(id_of(&format!("seed = 124\n{BASE}")), base);
        assert_ne!(id_of(&BASE.replace("{ name = \"attention\" }", "{ name = \"attention\", num_heads = 2 }")), base);
        assert_ne!(id_of(&BASE.replace("num_examples = 100", "num_examples = 101")), base);
    }

    #[test]
    fn hybrid_layers_resolve_recursively() {
        let terse = BASE.replace(
            "{ name = \"attention\" }",
            "{ name = \"hybrid\", layers = [{ name = \"base_conv\", kernel_size = 3 }, { name = \"attention\" }] }",
        );
        let c = RunConfig::from_toml_str(&terse, "t").unwrap();
        let layers = c.model.mixer["layers"].as_array().unwrap();
        assert!(layers[1].as_table().unwrap().contains_key("num_heads"), "{layers:?}");
        assert_eq!(run_id(&RunConfig::from_toml_str(&c.to_toml(), "t").unwrap()), id_of(&terse));
        // hybrid's default layers are exactly these, so the terse hybrid is the default hybrid
        assert_eq!(id_of(&terse), id_of(&BASE.replace("{ name = \"attention\" }", "{ name = \"hybrid\" }")));
    }

    // A field added in a later version, with a default, leaves ids of configs that do not set it
    // unchanged: the canonical forms of V1 { a } and V2 { a, b = default } are equal.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        a: u32,
        #[serde(default)]
        inner: Inner1,
    }
    #[derive(Debug, PartialEq, Default, Serialize, Deserialize)]
    struct Inner1 {
        #[serde(default)]
        x: f64,
    }
    fn seven() -> u32 {
        7
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        a: u32,
        #[serde(default = "seven")]
        b: u32,
        #[serde(default)]
        inner: Inner2,
    }
    #[derive(Debug, PartialEq, Default, Serialize, Deserialize)]
    struct Inner2 {
        #[serde(default)]
        x: f64,
        #[serde(default)]
        y: bool,
    }

    #[test]
    fn a_new_field_with_a_default_leaves_ids_unchanged() {
        let id = |v: toml::Value| hash_value(&v);
        let v1 = V1 { a: 5, inner: Inner1 { x: 0.5 } };
        let v2 = V2 { a: 5, b: 7, inner: Inner2 { x: 0.5, y: false } };
        let c1 = strip_defaults(toml::Value::try_from(&v1).unwrap(), &v1);
        let c2 = strip_defaults(toml::Value::try_from(&v2).unwrap(), &v2);
        assert_eq!(c1, c2, "{c1} vs {c2}");
        assert_eq!(id(c1.clone()), id(c2));
        // the new field set to a non-default value is a different run
        let v2b = V2 { b: 8, ..v2 };
        assert_ne!(id(strip_defaults(toml::Value::try_from(&v2b).unwrap(), &v2b)), id(c1.clone()));
        // a whole default table disappears
        let v1d = V1 { a: 5, inner: Inner1::default() };
        let only_a: toml::Value = toml::from_str("a = 5").unwrap();
        assert_eq!(strip_defaults(toml::Value::try_from(&v1d).unwrap(), &v1d), only_a);
    }
}
