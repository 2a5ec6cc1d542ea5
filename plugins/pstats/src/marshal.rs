//! The few Python `marshal` types a pstats file needs (format version 4, for references and
//! small tuples), written as they come: a profile's dictionary is never built in memory, and
//! each function's key is written once however often it appears among callers, then referred
//! to.

#[derive(Default)]
pub struct Marshal {
    pub out: Vec<u8>,
    /// Objects flagged so far: the next one's reference.
    refs: u32,
}

/// Set on an object's type byte: the reader keeps the object, to be referred to again.
const FLAG_REF: u8 = 0x80;

impl Marshal {
    pub fn int(&mut self, v: i64) {
        match i32::try_from(v) {
            Ok(small) => {
                self.out.push(b'i');
                self.out.extend_from_slice(&small.to_le_bytes());
            }
            Err(_) => self.long(v),
        }
    }

    pub fn float(&mut self, v: f64) {
        self.out.push(b'g');
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    pub fn str(&mut self, s: &str) {
        self.out.push(b'u');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
    }

    /// A tuple of `len` items (fewer than 256: TYPE_SMALL_TUPLE); the items follow.
    pub fn tuple(&mut self, len: u8) {
        self.out.extend_from_slice(&[b')', len]);
    }

    /// A dict: key and value pairs follow, then [`Marshal::dict_end`].
    pub fn dict(&mut self) {
        self.out.push(b'{');
    }

    pub fn dict_end(&mut self) {
        self.out.push(b'0');
    }

    /// An object encoded earlier that recurs (a function's key, among the callers of every
    /// function it calls; a caller edge's counts): whole and flagged the first time
    /// (`reference` is then set), a reference to it after, as `marshal.dump` writes an object
    /// it meets again. The file is several times smaller, and loading it makes one tuple per
    /// function, not one per caller edge.
    pub fn shared(&mut self, bytes: &[u8], reference: &mut Option<u32>) {
        match *reference {
            Some(index) => {
                self.out.push(b'r');
                self.out.extend_from_slice(&index.to_le_bytes());
            }
            None => {
                *reference = Some(self.refs);
                self.refs += 1;
                self.out.push(bytes[0] | FLAG_REF);
                self.out.extend_from_slice(&bytes[1..]);
            }
        }
    }

    /// TYPE_LONG: signed digit count, then base-2^15 digits, least significant first.
    fn long(&mut self, v: i64) {
        let mut mag = v.unsigned_abs();
        let mut digits = Vec::new();
        while mag > 0 {
            digits.push((mag & 0x7fff) as u16);
            mag >>= 15;
        }
        let n = digits.len() as i32;
        self.out.push(b'l');
        self.out
            .extend_from_slice(&(if v < 0 { -n } else { n }).to_le_bytes());
        for d in digits {
            self.out.extend_from_slice(&d.to_le_bytes());
        }
    }
}
