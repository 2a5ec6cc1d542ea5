//! The flame graph's data written as JSON text field by field: a tree of many nodes costs
//! more as `serde_json::Value` maps than all the rest of the export. Each value is written
//! by serde_json itself, so numbers and strings read as they always did.

use serde::Serialize;

/// `value` as serde_json writes it. Writing numbers, booleans and strings to memory cannot
/// fail.
pub fn put(out: &mut Vec<u8>, value: &impl Serialize) {
    let _ = serde_json::to_writer(out, value);
}

/// `"key":`, after a comma unless it is the object's first.
pub fn key(out: &mut Vec<u8>, key: &str) {
    if !out.ends_with(b"{") {
        out.push(b',');
    }
    put(out, &key);
    out.push(b':');
}

pub fn field(out: &mut Vec<u8>, name: &str, value: &impl Serialize) {
    key(out, name);
    put(out, value);
}

/// `[…]`, each item written by `each`.
pub fn list<T>(out: &mut Vec<u8>, items: &[T], mut each: impl FnMut(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written text parses back to the values serde_json's own maps hold.
    #[test]
    fn fields_read_back_as_serde_json_values() {
        let mut out = b"{".to_vec();
        field(&mut out, "n", &7u64);
        field(&mut out, "x", &0.1f64);
        field(&mut out, "nan", &f64::NAN);
        field(&mut out, "s", &"a\"b\\\n</script>");
        key(&mut out, "l");
        list(&mut out, &[1u64, 2], put);
        key(&mut out, "o");
        out.push(b'{');
        field(&mut out, "12", &true);
        out.extend_from_slice(b"}}");
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"n": 7, "x": 0.1, "nan": null, "s": "a\"b\\\n</script>",
                               "l": [1, 2], "o": {"12": true}})
        );
    }
}
