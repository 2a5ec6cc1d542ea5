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

    /// (One loop over the bytes left, at most ten: a frame index is one or two bytes, and
    /// this runs for each frame of each record.)
    #[inline]
    pub fn uvar(&mut self) -> Result<u64> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let mut value = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if i == 9 && b > 1 {
                    break;
                }
                self.pos += i + 1;
                return Ok(value);
            }
        }
        self.bad_varint()
    }

    /// Why the varint at `pos` cannot be read: the data ends inside it, its tenth byte
    /// carries more than 64 bits (the offset of that byte), or it runs on past ten bytes.
    #[cold]
    fn bad_varint(&self) -> Result<u64> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        match rest.get(9) {
            None => bail!("unexpected end of data at offset {}", self.data.len()),
            Some(&b) if b & 0x80 == 0 => {
                bail!("Invalid or incomplete varint at offset {}", self.pos + 9)
            }
            Some(_) => bail!("Invalid or incomplete varint at offset {}", self.pos + 10),
        }
    }

    /// A varint that must fit a u32 (counts, indices, lengths).
    #[inline]
    pub fn uvar32(&mut self) -> Result<u32> {
        let at = self.pos;
        let v = self.uvar()?;
        u32::try_from(v).map_err(|_| anyhow::anyhow!("Invalid or incomplete varint at offset {at}"))
    }

    /// `n` varints that fit a u32 appended to `out` (the frame indices of a record), or the
    /// first that is not below `bound`. Values of one or two bytes (below 16,384) are read
    /// without the general loop.
    pub fn uvars_below(
        &mut self,
        n: usize,
        bound: u32,
        out: &mut Vec<u32>,
    ) -> Result<std::result::Result<(), u32>> {
        // (The position and the values are kept in locals, not written back per value.)
        let start = out.len();
        out.resize(start + n, 0);
        let data = self.data;
        let mut pos = self.pos;
        for (i, slot) in out[start..].iter_mut().enumerate() {
            // One or two bytes without a branch on which (frame indices mix both at random,
            // and a mispredicted branch per frame was the loop's cost).
            let pair = match data.get(pos..pos + 2) {
                Some(&[b0, b1]) => u32::from(b0) | u32::from(b1) << 8,
                _ => 0x8080,
            };
            let value = if pair & 0x8080 != 0x8080 {
                let long = (pair >> 7) & 1;
                pos += 1 + long as usize;
                let high = ((pair >> 1) & 0x3f80) & 0u32.wrapping_sub(long);
                (pair & 0x7f) | high
            } else {
                self.pos = pos;
                let value = self.uvar32();
                pos = self.pos;
                match value {
                    Ok(value) => value,
                    Err(e) => {
                        out.truncate(start + i);
                        return Err(e);
                    }
                }
            };
            if value >= bound {
                self.pos = pos;
                out.truncate(start + i);
                return Ok(Err(value));
            }
            *slot = value;
        }
        self.pos = pos;
        Ok(Ok(()))
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
    fn frame_indices_of_every_length_and_bound() {
        let mut b = Vec::new();
        let values = [0, 127, 128, 16_383, 16_384, 2_000_000, u32::MAX];
        for v in values {
            put_uvar(&mut b, u64::from(v));
        }
        let mut out = Vec::new();
        let mut cur = Cursor::new(&b, 0);
        assert_eq!(
            cur.uvars_below(values.len(), u32::MAX, &mut out).unwrap(),
            Err(u32::MAX)
        );
        assert_eq!(out, values[..values.len() - 1]);
        out.clear();
        let mut cur = Cursor::new(&b, 0);
        assert_eq!(cur.uvars_below(4, 16_384, &mut out).unwrap(), Ok(()));
        assert_eq!((out.as_slice(), cur.pos), (&values[..4], 6));
        assert_eq!(cur.uvars_below(1, 16_384, &mut out).unwrap(), Err(16_384));
        // Ends inside the fourth varint.
        let mut cur = Cursor::new(&b[..5], 0);
        let err = cur.uvars_below(4, u32::MAX, &mut out).unwrap_err();
        assert_eq!(err.to_string(), "unexpected end of data at offset 5");
        // A one-byte varint that is the data's last byte.
        let mut cur = Cursor::new(&b[..1], 0);
        out.clear();
        assert_eq!(cur.uvars_below(1, u32::MAX, &mut out).unwrap(), Ok(()));
        assert_eq!((out.as_slice(), cur.pos), (&values[..1], 1));
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let err = |b: &[u8]| Cursor::new(b, 0).uvar().unwrap_err().to_string();
        assert_eq!(
            err(&[0xff; 11]),
            "Invalid or incomplete varint at offset 10"
        );
        assert_eq!(
            err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2]),
            "Invalid or incomplete varint at offset 9"
        );
        assert_eq!(err(&[0x80]), "unexpected end of data at offset 1");
        let mut b = Vec::new();
        put_uvar(&mut b, u64::from(u32::MAX) + 1);
        assert!(Cursor::new(&b, 0).uvar32().is_err());
    }
}
