//! Reading Python objects out of the target: str (2.7 `PyStringObject`, 3.x `PyUnicode`),
//! bytes, and code objects.

use super::layout::Layout;
use super::linetable::LineTable;
use super::memory::Memory;
use super::process::{field_addr, ReadError};

/// Longest string or line table accepted; longer means a corrupt read.
const MAX_OBJECT_BYTES: usize = 1 << 20;
/// `ob_size` of a variable-size object (`PyVarObject`): a code object's count of code units.
const OB_SIZE: usize = 16;

fn i64_at(b: &[u8], at: usize) -> i64 {
    b.get(at..at.saturating_add(8))
        .map_or(0, |s| i64::from_le_bytes(s.try_into().unwrap()))
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    i64_at(b, at) as u64
}

pub fn i32_at(b: &[u8], at: usize) -> i32 {
    b.get(at..at.saturating_add(4))
        .map_or(0, |s| i32::from_le_bytes(s.try_into().unwrap()))
}

/// A 2.7 `str` or 3.x `bytes`: size at 16, data at `ob_sval`.
pub fn read_bytes(mem: &mut dyn Memory, layout: &Layout, addr: u64) -> Result<Vec<u8>, ReadError> {
    let mut head = [0u8; 24];
    mem.read(addr, &mut head)?;
    let len = i64_at(&head, 16);
    if !(0..=MAX_OBJECT_BYTES as i64).contains(&len) {
        return Err(ReadError::Fault);
    }
    let mut data = vec![0u8; len as usize];
    mem.read(field_addr(addr, layout.bytes_sval), &mut data)?;
    Ok(data)
}

/// A name or filename: 2.7 `str` bytes, or a 3.x compact unicode object.
pub fn read_str(mem: &mut dyn Memory, layout: &Layout, addr: u64) -> Result<String, ReadError> {
    if layout.python.0 == 2 {
        return read_bytes(mem, layout, addr).map(|b| String::from_utf8_lossy(&b).into_owned());
    }
    // Every 3.x layout has them (Layout::checked).
    let (Some(ascii_size), Some(compact_size)) =
        (layout.unicode_ascii_size, layout.unicode_compact_size)
    else {
        return Err(ReadError::Fault);
    };
    let mut head = vec![0u8; compact_size + 8];
    mem.read(addr, &mut head)?;
    let length = i64_at(&head, 16);
    let state = i32_at(&head, 32) as u32;
    let (kind, compact, ascii) = ((state >> 2) & 7, state >> 5 & 1 == 1, state >> 6 & 1 == 1);
    if !(0..=MAX_OBJECT_BYTES as i64 / 4).contains(&length) || !matches!(kind, 1 | 2 | 4) {
        return Err(ReadError::Fault);
    }
    let data = match (compact, ascii) {
        (true, true) => field_addr(addr, ascii_size),
        (true, false) => field_addr(addr, compact_size),
        (false, _) => u64_at(&head, compact_size),
    };
    let mut raw = vec![0u8; length as usize * kind as usize];
    mem.read(data, &mut raw)?;
    Ok(match kind {
        1 => raw.iter().map(|&b| b as char).collect(),
        2 => String::from_utf16_lossy(
            &raw.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>(),
        ),
        _ => raw
            .chunks_exact(4)
            .map(|c| {
                char::from_u32(u32::from_le_bytes(c.try_into().unwrap())).unwrap_or('\u{fffd}')
            })
            .collect(),
    })
}

/// What the sampler keeps of a code object.
pub struct Code {
    /// The raw bytes of the code object's header when it was read; a later read that differs
    /// means the address now holds another object.
    pub header: Vec<u8>,
    pub filename: String,
    /// `co_qualname` on 3.11+, `co_name` before.
    pub name: String,
    pub firstlineno: i32,
    pub linetable: Vec<u8>,
    pub table_kind: LineTable,
    /// Address of the first instruction (3.11+: `co_code_adaptive`).
    pub code_start: u64,
    /// Address past the last instruction (3.11+: the code object holds `ob_size` 2-byte units
    /// of them; 0 before).
    pub code_end: u64,
}

/// The bytes of a code object that identify it (the pointers and first line we use).
pub fn code_identity(layout: &Layout, header: &[u8]) -> [u64; 4] {
    [
        u64_at(header, layout.code_filename),
        u64_at(header, layout.code_qualname.unwrap_or(layout.code_name)),
        u64_at(header, layout.code_linetable),
        i32_at(header, layout.code_firstlineno) as u64,
    ]
}

pub fn read_code(mem: &mut dyn Memory, layout: &Layout, addr: u64) -> Result<Code, ReadError> {
    let mut header = vec![0u8; layout.code_read_size()];
    mem.read(addr, &mut header)?;
    let [filename, name, linetable, firstlineno] = code_identity(layout, &header);
    let filename = read_str(mem, layout, filename)?;
    let name = read_str(mem, layout, name)?;
    // No program names its code with control characters: the read caught a string object
    // being made or freed (seen while a module is imported). A failed sample, not a frame
    // named with junk that would be cached for the code's life.
    if filename.chars().chain(name.chars()).any(char::is_control) {
        return Err(ReadError::Fault);
    }
    // 3.11+ (Layout::checked); before, line tables count from the code's start anyway.
    let code_start = layout.code_code_adaptive.map_or(0, |o| field_addr(addr, o));
    let code_units = u64_at(&header, OB_SIZE).min(MAX_OBJECT_BYTES as u64);
    Ok(Code {
        filename,
        name,
        firstlineno: firstlineno as i32,
        linetable: read_bytes(mem, layout, linetable)?,
        table_kind: LineTable::for_version(layout.python),
        code_start,
        code_end: if code_start == 0 {
            0
        } else {
            code_start + 2 * code_units
        },
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::super::memory::Snapshot;
    use super::*;

    /// A 3.12 compact ASCII `str` at `addr` (padded for `read_str`'s fixed-size header read).
    fn put_str(mem: &mut Snapshot, layout: &Layout, addr: u64, text: &[u8]) {
        let mut object = vec![0u8; layout.unicode_ascii_size.unwrap()];
        object[16..24].copy_from_slice(&(text.len() as i64).to_le_bytes());
        let state: u32 = (1 << 2) | (1 << 5) | (1 << 6); // kind 1, compact, ascii
        object[32..36].copy_from_slice(&state.to_le_bytes());
        object.extend_from_slice(text);
        object.resize(
            object.len().max(layout.unicode_compact_size.unwrap() + 8),
            0,
        );
        mem.record(addr, &object);
    }

    /// A 3.12 code object at 0x1000 named `name`, in `app.py`, with an empty line table.
    fn code_named(name: &[u8]) -> (Snapshot, Layout) {
        let layout = Layout::for_version(3, 12).unwrap();
        let mut mem = Snapshot::default();
        let mut header = vec![0u8; layout.code_read_size()];
        let qualname = layout.code_qualname.unwrap();
        for (offset, addr) in [
            (layout.code_filename, 0x2000u64),
            (qualname, 0x3000),
            (layout.code_linetable, 0x4000),
        ] {
            header[offset..offset + 8].copy_from_slice(&addr.to_le_bytes());
        }
        mem.record(0x1000, &header);
        put_str(&mut mem, &layout, 0x2000, b"app.py");
        put_str(&mut mem, &layout, 0x3000, name);
        mem.record(0x4000, &vec![0u8; layout.bytes_sval + 8]);
        (mem, layout)
    }

    #[test]
    fn a_code_object_named_with_control_characters_is_a_failed_read() {
        let (mut mem, layout) = code_named(b"handler");
        let code = read_code(&mut mem, &layout, 0x1000).unwrap();
        assert_eq!(
            (code.filename.as_str(), code.name.as_str()),
            ("app.py", "handler")
        );
        // Bytes of a pointer where the name's text was (seen importing `operator`).
        let (mut mem, layout) = code_named(b"\x90B\x91\x0fA\x7f\x00\x00");
        assert!(matches!(
            read_code(&mut mem, &layout, 0x1000),
            Err(ReadError::Fault)
        ));
    }
}
