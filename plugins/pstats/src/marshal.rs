//! The few Python `marshal` types a pstats file needs (format version 2+, no references).

pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
}

pub fn dump(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(v) => match i32::try_from(*v) {
            Ok(small) => {
                out.push(b'i');
                out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => dump_long(*v, out),
        },
        Value::Float(v) => {
            out.push(b'g');
            out.extend_from_slice(&v.to_le_bytes());
        }
        Value::Str(s) => {
            out.push(b'u');
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::Tuple(items) => {
            out.push(b'(');
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            for item in items {
                dump(item, out);
            }
        }
        Value::Dict(entries) => {
            out.push(b'{');
            for (k, v) in entries {
                dump(k, out);
                dump(v, out);
            }
            out.push(b'0');
        }
    }
}

/// TYPE_LONG: signed digit count, then base-2^15 digits, least significant first.
fn dump_long(v: i64, out: &mut Vec<u8>) {
    let mut mag = v.unsigned_abs();
    let mut digits = Vec::new();
    while mag > 0 {
        digits.push((mag & 0x7fff) as u16);
        mag >>= 15;
    }
    let n = digits.len() as i32;
    out.push(b'l');
    out.extend_from_slice(&(if v < 0 { -n } else { n }).to_le_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_le_bytes());
    }
}
