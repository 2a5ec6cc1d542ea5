//! CPython's symbols and sections (`.PyRuntime`, `.AsyncioDebug`) in its executable or shared
//! library, read with the `object` crate (any ELF class and byte order), and the load address
//! they are relative to. A stripped binary's symbols are looked up in its separate debug file
//! (by build id, then by debug link), as debuggers find them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use object::elf::{SHT_DYNSYM, SHT_NOTE, SHT_STRTAB, SHT_SYMTAB, SHT_SYMTAB_SHNDX};
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endianness, FileKind, Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadCache};

pub struct Elf {
    path: PathBuf,
    data: Vec<u8>,
    sections: Vec<Section>,
    /// Virtual address of the first loadable segment, aligned down to its alignment.
    pub first_load_vaddr: u64,
    /// The separate debug file, read on the first symbol the binary itself lacks.
    debug: OnceLock<Option<Box<Elf>>>,
}

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

impl Elf {
    pub fn open(path: &Path) -> Result<Elf> {
        let data = read_headers_and_symbols(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Elf::parse(path, data)
    }

    fn parse(path: &Path, data: Vec<u8>) -> Result<Elf> {
        let file = object::File::parse(&*data)
            .with_context(|| format!("{} is not an ELF file", path.display()))?;
        let first_load_vaddr = file
            .segments()
            .next()
            .map(|s| s.address() - s.address() % s.align().max(1))
            .with_context(|| format!("{} has no loadable segment", path.display()))?;
        let sections = file
            .sections()
            .filter_map(|s| {
                Some(Section {
                    name: s.name().ok()?.to_owned(),
                    addr: s.address(),
                    size: s.size(),
                })
            })
            .collect();
        Ok(Elf {
            path: path.to_path_buf(),
            data,
            sections,
            first_load_vaddr,
            debug: OnceLock::new(),
        })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File virtual address of a symbol: the symbol table, the dynamic symbols, then the
    /// separate debug file's symbol table.
    pub fn symbol(&self, wanted: &str) -> Option<u64> {
        let file = object::File::parse(&*self.data).ok()?;
        let found = file
            .symbols()
            .chain(file.dynamic_symbols())
            .find(|s| s.address() != 0 && s.name() == Ok(wanted))
            .map(|s| s.address());
        found.or_else(|| {
            self.debug
                .get_or_init(|| self.debug_file(&file))
                .as_ref()?
                .symbol(wanted)
        })
    }

    /// `/usr/lib/debug/.build-id/xx/yyyy.debug`, then the debug link beside the binary, in
    /// `.debug/` beside it, or under `/usr/lib/debug` — seen from the binary's own root
    /// (`/proc/PID/root` for a target's).
    fn debug_file(&self, file: &object::File) -> Option<Box<Elf>> {
        let root = process_root(&self.path);
        let dir = self.path.parent()?;
        let mut candidates = Vec::new();
        if let Ok(Some(id)) = file.build_id() {
            if let Some((first, rest)) = id.split_first() {
                let hex: String = rest.iter().map(|b| format!("{b:02x}")).collect();
                candidates
                    .push(root.join(format!("usr/lib/debug/.build-id/{first:02x}/{hex}.debug")));
            }
        }
        if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
            let name = String::from_utf8_lossy(name).into_owned();
            candidates.push(dir.join(&name));
            candidates.push(dir.join(".debug").join(&name));
            let inside = dir.strip_prefix(&root).unwrap_or(dir);
            candidates.push(root.join("usr/lib/debug").join(inside).join(&name));
        }
        candidates
            .into_iter()
            .filter(|c| c != &self.path)
            .find_map(|c| Elf::open(&c).ok())
            .map(Box::new)
    }
}

/// The file as `object` reads it for sections, symbols, the build id and the debug link: its
/// headers, section table, symbol and string tables, notes and `.gnu_debuglink`, each at its
/// offset in a zeroed buffer as long as the file. The rest (code, data, DWARF: most of a
/// 23 MB libpython) is never read, and the allocator's fresh zero pages cost nothing until
/// touched. Reading it all cost a sampler attached at 1 kHz more CPU than its first second.
fn read_headers_and_symbols(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())?;
    let ranges = {
        let headers = ReadCache::new(&file);
        match FileKind::parse(&headers)? {
            FileKind::Elf32 => ranges_to_read::<object::elf::FileHeader32<Endianness>>(&headers)?,
            FileKind::Elf64 => ranges_to_read::<object::elf::FileHeader64<Endianness>>(&headers)?,
            _ => bail!("not an ELF file"),
        }
    };
    let mut data = vec![0u8; len];
    for (offset, size) in ranges {
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start
            .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
            .min(len);
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut data[start..end], offset)?;
    }
    Ok(data)
}

/// (offset, size) in the file of everything [`read_headers_and_symbols`] reads.
fn ranges_to_read<H: FileHeader<Endian = Endianness>>(
    data: &ReadCache<&std::fs::File>,
) -> object::read::Result<Vec<(u64, u64)>> {
    let header = H::parse(data)?;
    let endian = header.endian()?;
    let table = |offset: u64, count: usize, entry: usize| (offset, (count * entry) as u64);
    let mut ranges = vec![
        (0, std::mem::size_of::<H>() as u64),
        table(
            header.e_phoff(endian).into(),
            header.phnum(endian, data)?,
            std::mem::size_of::<H::ProgramHeader>(),
        ),
        table(
            header.e_shoff(endian).into(),
            header.shnum(endian, data)?,
            std::mem::size_of::<H::SectionHeader>(),
        ),
    ];
    let sections = header.sections(endian, data)?;
    for section in sections.iter() {
        let wanted = matches!(
            section.sh_type(endian),
            SHT_SYMTAB | SHT_DYNSYM | SHT_STRTAB | SHT_SYMTAB_SHNDX | SHT_NOTE
        ) || sections.section_name(endian, section) == Ok(b".gnu_debuglink");
        ranges.extend(section.file_range(endian).filter(|_| wanted));
    }
    Ok(ranges)
}

/// The filesystem root a path was opened through: `/proc/PID/root` for a target's files.
fn process_root(path: &Path) -> PathBuf {
    let parts: Vec<_> = path.components().take(4).collect();
    let names: Vec<_> = parts
        .iter()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    if names.len() == 4 && names[1] == "proc" && names[3] == "root" {
        parts.iter().collect()
    } else {
        PathBuf::from("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_executable() {
        let exe = std::env::current_exe().unwrap();
        let elf = Elf::open(&exe).unwrap();
        assert!(elf.section(".text").is_some());
        assert!(elf.symbol("main").is_some());
        assert!(elf.symbol("no_such_symbol_anywhere").is_none());
    }

    /// A stripped copy of this test binary finds its symbols in the debug file its
    /// `.gnu_debuglink` names (made with binutils' objcopy, which gcc brings).
    #[test]
    fn a_stripped_binary_reads_symbols_from_its_debug_file() {
        let dir = std::env::temp_dir().join(format!("tachyon-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (debug, stripped) = (dir.join("t.debug"), dir.join("t"));
        let objcopy = |args: &[&std::ffi::OsStr]| {
            let ok = std::process::Command::new("objcopy").args(args).status();
            assert!(ok.is_ok_and(|s| s.success()), "objcopy {args:?}");
        };
        let exe = std::env::current_exe().unwrap();
        objcopy(&[
            "--only-keep-debug".as_ref(),
            exe.as_os_str(),
            debug.as_os_str(),
        ]);
        let link = format!("--add-gnu-debuglink={}", debug.display());
        objcopy(&[
            "--strip-all".as_ref(),
            link.as_ref(),
            exe.as_os_str(),
            stripped.as_os_str(),
        ]);
        let elf = Elf::open(&stripped).unwrap();
        let from_debug = elf.symbol("main");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(from_debug, Elf::open(&exe).unwrap().symbol("main"));
        assert!(from_debug.is_some());
    }

    #[test]
    fn a_target_path_keeps_its_root() {
        assert_eq!(
            process_root(Path::new("/proc/42/root/usr/bin/python3")),
            PathBuf::from("/proc/42/root")
        );
        assert_eq!(
            process_root(Path::new("/usr/bin/python3")),
            PathBuf::from("/")
        );
    }
}
