//! The few Python `marshal` types a pstats file needs (format version 2+, no references),
//! written as they come: a profile's dictionary is never built in memory, and each function's
//! key is encoded once however often it appears among callers.

#[derive(Default)]
pub struct Marshal {
    pub out: Vec<u8>,
}

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

    /// A tuple of `len` items; the items follow.
    pub fn tuple(&mut self, len: usize) {
        self.out.push(b'(');
        self.out.extend_from_slice(&(len as u32).to_le_bytes());
    }

    /// A dict: key and value pairs follow, then [`Marshal::dict_end`].
    pub fn dict(&mut self) {
        self.out.push(b'{');
    }

    pub fn dict_end(&mut self) {
        self.out.push(b'0');
    }

    /// Bytes encoded earlier (a key written once, used many times).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
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
