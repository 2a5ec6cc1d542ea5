//! What outputs may show of the world outside the samples: source files and names.
//!
//! A capture is a file people share, so the file names in it are untrusted: replaying one must
//! not make tachyon embed `/etc/shadow`, hang on a FIFO or read `/dev/zero` forever. Sources are
//! read only as regular files of bounded size and, for a replayed capture, only under the
//! directories the user allowed. Names may hold control characters, which break line-based
//! and XML outputs and can drive a terminal: [`printable`] replaces them.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest source file shown.
pub const MAX_SOURCE_BYTES: u64 = 8 << 20;

/// Which source files an output may read.
#[derive(Clone, Debug, Default)]
pub enum SourceAccess {
    /// `run`/`attach`: the profiled program's own files, wherever they are.
    #[default]
    Anywhere,
    /// `replay`/`diff` of a capture: only files under these directories (canonical paths).
    Under(Vec<PathBuf>),
}

/// Reads (and caches) source files within a [`SourceAccess`], remembering what it refused.
#[derive(Debug, Default)]
pub struct SourceReader {
    access: SourceAccess,
    cache: HashMap<String, Option<Arc<str>>>,
    /// File name -> why it was not read; outputs list these.
    skipped: BTreeMap<String, &'static str>,
}

impl SourceReader {
    #[must_use]
    pub fn new(access: SourceAccess) -> Self {
        SourceReader {
            access,
            ..Default::default()
        }
    }

    /// The text of `path`, or `None` when it cannot or may not be read.
    pub fn get(&mut self, path: &str) -> Option<Arc<str>> {
        if let Some(cached) = self.cache.get(path) {
            return cached.clone();
        }
        let text = match read_source(&self.access, Path::new(path)) {
            Ok(text) => Some(Arc::from(text)),
            Err(Refusal::Missing) => None,
            Err(Refusal::Skipped(why)) => {
                self.skipped.insert(path.to_owned(), why);
                None
            }
        };
        self.cache.insert(path.to_owned(), text.clone());
        text
    }

    /// Files that exist but were not read, with the reason.
    #[must_use]
    pub fn skipped(&self) -> &BTreeMap<String, &'static str> {
        &self.skipped
    }

    /// Tell the user (stderr) which files were not read and how to allow them.
    pub fn report(&self) {
        if self.skipped.is_empty() {
            return;
        }
        let names: Vec<String> = self
            .skipped
            .keys()
            .take(5)
            .map(|n| printable(n).into_owned())
            .collect();
        let more = self.skipped.len().saturating_sub(names.len());
        eprintln!(
            "Not showing {} source file(s) named by the capture: {}{} (only regular files up to {} MiB \
             under the current directory or a --source-root are read)",
            self.skipped.len(),
            names.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            MAX_SOURCE_BYTES >> 20
        );
    }
}

enum Refusal {
    /// No such file: nothing to report (the program ran elsewhere).
    Missing,
    Skipped(&'static str),
}

fn read_source(access: &SourceAccess, path: &Path) -> Result<String, Refusal> {
    if let SourceAccess::Under(roots) = access {
        let real = path.canonicalize().map_err(|_| Refusal::Missing)?;
        if !roots.iter().any(|root| real.starts_with(root)) {
            return Err(Refusal::Skipped("outside the allowed source directories"));
        }
    }
    // O_NONBLOCK: opening a FIFO must not wait for a writer. The checks are made on the open
    // file, so the name cannot be swapped for something else in between.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Refusal::Missing,
            _ => Refusal::Skipped("cannot be opened"),
        })?;
    let meta = file
        .metadata()
        .map_err(|_| Refusal::Skipped("cannot be opened"))?;
    if !meta.is_file() {
        return Err(Refusal::Skipped("not a regular file"));
    }
    if meta.len() > MAX_SOURCE_BYTES {
        return Err(Refusal::Skipped("too large"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SOURCE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|_| Refusal::Skipped("cannot be read"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `text` with every control character (C0 but tab, DEL, C1) replaced by U+FFFD: safe in
/// line-based formats, in XML, and on a terminal.
#[must_use]
pub fn printable(text: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\t';
    if text.chars().any(bad) {
        Cow::Owned(
            text.chars()
                .map(|c| if bad(c) { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// An ANSI colour code when colours are on, else nothing (`_colorize.NoColors`).
#[must_use]
pub fn ansi(on: bool, code: &'static str) -> &'static str {
    if on {
        code
    } else {
        ""
    }
}

/// Whether stdout takes colours, decided as CPython's `_colorize.can_colorize` decides.
#[must_use]
pub fn stdout_takes_colors() -> bool {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match std::env::var("PYTHON_COLORS").as_deref() {
        Ok("0") => return false,
        Ok("1") => return true,
        _ => {}
    }
    if var("NO_COLOR").is_some() {
        return false;
    }
    if var("FORCE_COLOR").is_some() {
        return true;
    }
    if std::env::var("TERM").as_deref() == Ok("dumb") {
        return false;
    }
    std::io::IsTerminal::is_terminal(&std::io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_replaced() {
        assert_eq!(printable("plain name"), "plain name");
        assert_eq!(
            printable("a\0b\nc\x1b[31md\u{85}"),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}[31md\u{FFFD}"
        );
        assert!(matches!(printable("ok\tok"), Cow::Borrowed(_)));
    }

    #[test]
    fn only_regular_files_under_the_roots_are_read() {
        let dir = std::env::temp_dir().join(format!("tachyon-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let inside = dir.join("app.py");
        std::fs::write(&inside, "print(1)\n").unwrap();
        let mut reader = SourceReader::new(SourceAccess::Under(vec![dir.canonicalize().unwrap()]));
        assert_eq!(
            reader.get(inside.to_str().unwrap()).as_deref(),
            Some("print(1)\n")
        );
        assert_eq!(reader.get("/etc/hostname"), None);
        assert_eq!(reader.get("/nonexistent/x.py"), None);
        assert_eq!(
            reader.skipped().keys().collect::<Vec<_>>(),
            ["/etc/hostname"]
        );

        let mut anywhere = SourceReader::new(SourceAccess::Anywhere);
        assert_eq!(anywhere.get("/dev/zero"), None);
        assert_eq!(
            anywhere.skipped().get("/dev/zero"),
            Some(&"not a regular file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
