//! Paths into a TOML value: each segment is a table key, or an array index written in decimal
//! (which one is decided by the container met on the way, so a key "0" and index 0 never mix).
//! Used to strip defaults for the run id ([`super::id`]) and to mutate configs in the fuzzer.

use toml::Value;

/// Every path in `v`, parents before children: each key of every table (tables inside arrays
/// included) and, when `elements`, each array element too.
pub fn paths(v: &Value, elements: bool) -> Vec<Vec<String>> {
    fn walk(v: &Value, elements: bool, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let children: Vec<(String, &Value, bool)> = match v {
            Value::Table(t) => t.iter().map(|(k, x)| (k.clone(), x, true)).collect(),
            Value::Array(a) => a.iter().enumerate().map(|(i, x)| (i.to_string(), x, elements)).collect(),
            _ => return,
        };
        for (seg, x, record) in children {
            prefix.push(seg);
            if record {
                out.push(prefix.clone());
            }
            walk(x, elements, prefix, out);
            prefix.pop();
        }
    }
    let mut out = vec![];
    walk(v, elements, &mut vec![], &mut out);
    out
}

/// The value at `path`, if every segment exists.
pub fn get_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for p in path {
        cur = match cur {
            Value::Table(t) => t.get_mut(p)?,
            Value::Array(a) => a.get_mut(p.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Removes the value at `path` (a table key or an array element); false when it is not there.
pub fn remove(v: &mut Value, path: &[String]) -> bool {
    let Some((last, parent)) = path.split_last() else { return false };
    match get_mut(v, parent) {
        Some(Value::Table(t)) => t.remove(last).is_some(),
        Some(Value::Array(a)) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_get_and_remove() {
        let mut v: Value = toml::from_str("a = 1\n[b]\n\"0\" = 2\nc = [{ d = 3 }, 4]").unwrap();
        let keys: Vec<String> = paths(&v, false).iter().map(|p| p.join(".")).collect();
        assert_eq!(keys, ["a", "b", "b.0", "b.c", "b.c.0.d"]);
        let all: Vec<String> = paths(&v, true).iter().map(|p| p.join(".")).collect();
        assert_eq!(all, ["a", "b", "b.0", "b.c", "b.c.0", "b.c.0.d", "b.c.1"]);
        let p = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        // "0" is a key in table b, an index in array c
        assert_eq!(get_mut(&mut v, &p("b.0")).cloned(), Some(Value::Integer(2)));
        assert_eq!(get_mut(&mut v, &p("b.c.1")).cloned(), Some(Value::Integer(4)));
        assert!(get_mut(&mut v, &p("b.c.2")).is_none() && get_mut(&mut v, &p("a.x")).is_none());
        assert!(remove(&mut v, &p("b.c.0.d")) && !remove(&mut v, &p("b.c.0.d")));
        assert!(remove(&mut v, &p("b.c.1")) && remove(&mut v, &p("b.0")));
        assert_eq!(v, toml::from_str::<Value>("a = 1\n[b]\nc = [{}]").unwrap());
    }
}
