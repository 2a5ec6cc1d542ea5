//! LEB128 varints as Tachyon's binary format uses them, and a bounds-checked byte cursor.

use anyhow::{bail, Result};

pub fn put_uvar(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag over i32, as CPython's writer does.
pub fn put_svar(out: &mut Vec<u8>, v: i32) {
    put_uvar(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Reads from a byte slice; every read is checked so corrupt input is an error, never a panic.
pub struct Cursor<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Cursor { data, pos }
    }

    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub fn u8(&mut self) -> Result<u8> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => bail!("unexpected end of data at offset {}", self.pos),
        }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            bail!(
                "unexpected end of data at offset {} (need {n} bytes)",
                self.pos
            );
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn uvar(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                bail!("Invalid or incomplete varint at offset {}", self.pos - 1);
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        bail!("Invalid or incomplete varint at offset {}", self.pos)
    }

    /// A varint that must fit a u32 (counts, indices, lengths).
    pub fn uvar32(&mut self) -> Result<u32> {
        let at = self.pos;
        let v = self.uvar()?;
        u32::try_from(v).map_err(|_| anyhow::anyhow!("Invalid or incomplete varint at offset {at}"))
    }

    pub fn svar(&mut self) -> Result<i32> {
        let v = self.uvar32()?;
        Ok(((v >> 1) as i32) ^ -((v & 1) as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvar_roundtrip_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_uvar(&mut b, v);
            assert_eq!(Cursor::new(&b, 0).uvar().unwrap(), v);
        }
    }

    #[test]
    fn svar_matches_cpython_zigzag() {
        let mut b = Vec::new();
        put_svar(&mut b, -1);
        assert_eq!(b, [1]);
        for v in [0, -1, 1, i32::MIN, i32::MAX, -12345] {
            let mut b = Vec::new();
            put_svar(&mut b, v);
            assert_eq!(Cursor::new(&b, 0).svar().unwrap(), v);
        }
    }

    #[test]
    fn overlong_varint_is_an_error() {
        assert!(Cursor::new(&[0xff; 11], 0).uvar().is_err());
        assert!(Cursor::new(&[0x80], 0).uvar().is_err());
        let mut b = Vec::new();
        put_uvar(&mut b, u64::from(u32::MAX) + 1);
        assert!(Cursor::new(&b, 0).uvar32().is_err());
    }
}
