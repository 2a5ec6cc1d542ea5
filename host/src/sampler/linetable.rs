//! Instruction offset -> source location, for each line-table format CPython has used.

/// A source range; -1 where unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: i32,
    pub end_line: i32,
    pub column: i32,
    pub end_column: i32,
}

impl Location {
    pub const UNKNOWN: Location = Location {
        line: -1,
        end_line: -1,
        column: -1,
        end_column: -1,
    };

    fn line_only(line: i32) -> Location {
        Location {
            line,
            end_line: line,
            column: -1,
            end_column: -1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineTable {
    /// `co_lnotab` (byte offsets); line deltas unsigned before 3.6, signed from 3.6.
    Lnotab { signed: bool },
    /// PEP 626 `co_linetable` (3.10, byte offsets).
    Pep626,
    /// PEP 657 location table (3.11+, code-unit offsets).
    Locations,
}

impl LineTable {
    pub fn for_version(python: (u8, u8)) -> LineTable {
        match python {
            (2, _) | (3, 0..=5) => LineTable::Lnotab { signed: false },
            (3, 6..=9) => LineTable::Lnotab { signed: true },
            (3, 10) => LineTable::Pep626,
            _ => LineTable::Locations,
        }
    }

    /// Location of the instruction at `addrq` (bytes for lnotab/PEP 626, code units for
    /// location tables). A negative offset (frame not started) is the first line.
    pub fn locate(self, table: &[u8], firstlineno: i32, addrq: i64) -> Location {
        if addrq < 0 {
            return Location::line_only(firstlineno);
        }
        match self {
            LineTable::Lnotab { signed } => {
                Location::line_only(lnotab(table, firstlineno, addrq, signed))
            }
            LineTable::Pep626 => Location::line_only(pep626(table, firstlineno, addrq)),
            LineTable::Locations => locations(table, firstlineno, addrq),
        }
    }
}

fn lnotab(table: &[u8], firstlineno: i32, addrq: i64, signed: bool) -> i32 {
    let mut line = firstlineno;
    let mut addr = 0i64;
    for pair in table.chunks_exact(2) {
        addr += i64::from(pair[0]);
        if addr > addrq {
            break;
        }
        line = line.wrapping_add(if signed {
            i32::from(pair[1] as i8)
        } else {
            i32::from(pair[1])
        });
    }
    line
}

fn pep626(table: &[u8], firstlineno: i32, addrq: i64) -> i32 {
    let mut line = firstlineno;
    let mut end = 0i64;
    for pair in table.chunks_exact(2) {
        let start = end;
        end += i64::from(pair[0]);
        let delta = pair[1] as i8;
        let this_line = if delta == -128 {
            -1
        } else {
            line = line.wrapping_add(i32::from(delta));
            line
        };
        if start <= addrq && addrq < end {
            return this_line;
        }
    }
    -1
}

struct Reader<'a> {
    table: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.table.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    /// 6-bit groups, low first, 0x40 = more.
    fn varint(&mut self) -> Option<u32> {
        let mut b = self.byte()?;
        let mut value = u32::from(b & 63);
        let mut shift = 0;
        while b & 64 != 0 {
            b = self.byte()?;
            shift += 6;
            if shift > 30 {
                return None;
            }
            value |= u32::from(b & 63) << shift;
        }
        Some(value)
    }
    fn svarint(&mut self) -> Option<i32> {
        let v = self.varint()?;
        Some(if v & 1 != 0 {
            -((v >> 1) as i32)
        } else {
            (v >> 1) as i32
        })
    }
}

/// Table contents come from the target and may be torn: line arithmetic wraps, never panics.
fn locations(table: &[u8], firstlineno: i32, addrq: i64) -> Location {
    let mut r = Reader { table, pos: 0 };
    let mut line = firstlineno;
    let mut addr = 0i64;
    while let Some(first) = r.byte() {
        let code = (first >> 3) & 15;
        let end = addr + i64::from(first & 7) + 1;
        let loc = (|| {
            Some(match code {
                15 => Location::UNKNOWN,
                14 => {
                    line = line.wrapping_add(r.svarint()?);
                    let end_line = line.wrapping_add(r.varint()? as i32);
                    let column = r.varint()? as i32 - 1;
                    let end_column = r.varint()? as i32 - 1;
                    Location {
                        line,
                        end_line,
                        column,
                        end_column,
                    }
                }
                13 => {
                    line = line.wrapping_add(r.svarint()?);
                    Location::line_only(line)
                }
                10..=12 => {
                    line = line.wrapping_add(i32::from(code) - 10);
                    let column = i32::from(r.byte()?);
                    let end_column = i32::from(r.byte()?);
                    Location {
                        line,
                        end_line: line,
                        column,
                        end_column,
                    }
                }
                _ => {
                    let b = r.byte()?;
                    let column = i32::from(code) << 3 | i32::from(b >> 4);
                    Location {
                        line,
                        end_line: line,
                        column,
                        end_column: column + i32::from(b & 15),
                    }
                }
            })
        })();
        let Some(loc) = loc else {
            return Location::UNKNOWN;
        };
        if addr <= addrq && addrq < end {
            return loc;
        }
        addr = end;
    }
    Location::UNKNOWN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_signed_and_unsigned() {
        // offsets 0..6 on line 10, 6.. on line 12, 20.. back to line 11 (signed -1).
        let table = [6, 2, 14, 0xff];
        let t = LineTable::Lnotab { signed: true };
        assert_eq!(t.locate(&table, 10, 0).line, 10);
        assert_eq!(t.locate(&table, 10, 8).line, 12);
        assert_eq!(t.locate(&table, 10, 22).line, 11);
        let t27 = LineTable::Lnotab { signed: false };
        assert_eq!(t27.locate(&table, 10, 22).line, 10 + 2 + 255);
        assert_eq!(t.locate(&table, 10, -1).line, 10);
    }

    #[test]
    fn pep626_ranges_and_no_line_entries() {
        // [0,4) line+1, [4,10) no line, [10,12) line+2 (relative to last real line)
        let table = [4, 1, 6, 0x80, 2, 2];
        let t = LineTable::Pep626;
        assert_eq!(t.locate(&table, 5, 2).line, 6);
        assert_eq!(t.locate(&table, 5, 6).line, -1);
        assert_eq!(t.locate(&table, 5, 10).line, 8);
        assert_eq!(t.locate(&table, 5, 40).line, -1);
    }

    #[test]
    fn location_table_forms() {
        // entry 1: short form code 0, 2 units, col byte 0x12 -> col 1, end col 3
        // entry 2: one-line form code 11 (line+1), 1 unit, cols 4..9
        // entry 3: long form code 14, 1 unit: dline +2, dend 1, col 0+1, endcol 7+1
        // entry 4: no-columns code 13, 1 unit, dline -1 (svarint 3)
        // entry 5: none code 15, 1 unit
        let table = [
            0x80 | 1, // code 0
            0x12,
            0x80 | (11 << 3),
            4,
            9,
            0x80 | (14 << 3),
            4,
            1,
            1,
            8,
            0x80 | (13 << 3),
            3,
            0x80 | (15 << 3),
        ];
        let t = LineTable::Locations;
        assert_eq!(
            t.locate(&table, 20, 1),
            Location {
                line: 20,
                end_line: 20,
                column: 1,
                end_column: 3
            }
        );
        assert_eq!(
            t.locate(&table, 20, 2),
            Location {
                line: 21,
                end_line: 21,
                column: 4,
                end_column: 9
            }
        );
        assert_eq!(
            t.locate(&table, 20, 3),
            Location {
                line: 23,
                end_line: 24,
                column: 0,
                end_column: 7
            }
        );
        assert_eq!(t.locate(&table, 20, 4).line, 22);
        assert_eq!(t.locate(&table, 20, 5), Location::UNKNOWN);
        assert_eq!(t.locate(&table[..3], 20, 9), Location::UNKNOWN);
    }
}
