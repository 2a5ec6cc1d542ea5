//! Just enough ELF64 parsing to find CPython's symbols and its `.PyRuntime` section, and to
//! turn their file addresses into addresses in a running process.

use anyhow::{bail, Context, Result};

pub struct Elf {
    data: Vec<u8>,
    sections: Vec<Section>,
    /// Virtual address of the first PT_LOAD segment, aligned down to its alignment.
    pub first_load_vaddr: u64,
}

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub entsize: u64,
}

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const PT_LOAD: u32 = 1;

fn u16_at(d: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(
        d.get(at..at + 2).context("truncated ELF")?.try_into()?,
    ))
}
fn u32_at(d: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(
        d.get(at..at + 4).context("truncated ELF")?.try_into()?,
    ))
}
fn u64_at(d: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(
        d.get(at..at + 8).context("truncated ELF")?.try_into()?,
    ))
}
fn cstr(d: &[u8], at: usize) -> &str {
    let tail = d.get(at..).unwrap_or(&[]);
    let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
    std::str::from_utf8(&tail[..end]).unwrap_or("")
}

impl Elf {
    pub fn open(path: &std::path::Path) -> Result<Elf> {
        let data =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Elf::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Elf> {
        if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
            bail!("not a 64-bit little-endian ELF file");
        }
        let phoff = u64_at(&data, 0x20)? as usize;
        let shoff = u64_at(&data, 0x28)? as usize;
        let phentsize = u16_at(&data, 0x36)? as usize;
        let phnum = u16_at(&data, 0x38)? as usize;
        let shentsize = u16_at(&data, 0x3a)? as usize;
        let shnum = u16_at(&data, 0x3c)? as usize;
        let shstrndx = u16_at(&data, 0x3e)? as usize;

        let mut first_load_vaddr = None;
        for i in 0..phnum {
            let at = phoff + i * phentsize;
            if u32_at(&data, at)? == PT_LOAD {
                let vaddr = u64_at(&data, at + 16)?;
                let align = u64_at(&data, at + 48)?.max(1);
                first_load_vaddr = Some(vaddr - vaddr % align);
                break;
            }
        }
        let mut sections = Vec::with_capacity(shnum);
        for i in 0..shnum {
            let at = shoff + i * shentsize;
            sections.push(Section {
                name: String::new(),
                kind: u32_at(&data, at + 4)?,
                addr: u64_at(&data, at + 16)?,
                offset: u64_at(&data, at + 24)?,
                size: u64_at(&data, at + 32)?,
                link: u32_at(&data, at + 40)?,
                entsize: u64_at(&data, at + 56)?,
            });
        }
        if let Some(names) = sections.get(shstrndx).cloned() {
            for (i, section) in sections.iter_mut().enumerate() {
                let name_off = u32_at(&data, shoff + i * shentsize)? as usize;
                section.name = cstr(&data, names.offset as usize + name_off).to_owned();
            }
        }
        Ok(Elf {
            data,
            sections,
            first_load_vaddr: first_load_vaddr.context("ELF file has no PT_LOAD segment")?,
        })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File virtual address of a symbol, searching .symtab then .dynsym.
    pub fn symbol(&self, wanted: &str) -> Option<u64> {
        for kind in [SHT_SYMTAB, SHT_DYNSYM] {
            for sec in self
                .sections
                .iter()
                .filter(|s| s.kind == kind && s.entsize >= 24)
            {
                let strtab = self.sections.get(sec.link as usize)?;
                let count = sec.size / sec.entsize;
                for i in 0..count {
                    let at = (sec.offset + i * sec.entsize) as usize;
                    let Ok(name_off) = u32_at(&self.data, at) else {
                        break;
                    };
                    if cstr(&self.data, strtab.offset as usize + name_off as usize) == wanted {
                        let value = u64_at(&self.data, at + 8).ok()?;
                        if value != 0 {
                            return Some(value);
                        }
                    }
                }
            }
        }
        None
    }
}
