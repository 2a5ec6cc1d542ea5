//! Tachyon's `.bin` capture format (CPython 3.15 `profiling.sampling --binary`), version 1:
//! 64-byte header, sample records (optionally one zstd stream), string table, frame table,
//! optional stats trailer, 32-byte footer. tests/binref.py is an independent reader and writer of the same format.

mod collector;
mod reader;
mod varint;
mod writer;

pub use collector::BinaryCollector;
pub use reader::{Capture, ReadLimits, ReplayCounts};
pub use writer::BinaryWriter;

pub const MAGIC: u32 = 0x5441_4348;
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 64;
pub const FOOTER_SIZE: usize = 32;
pub const STATS_SIZE: usize = 56;
pub const LEGACY_STATS_SIZE: usize = 32;
pub const STATS_SIGNATURE: &[u8; 8] = b"TACHSTAT";
/// Starts tachyon's provenance block (u32 length, then JSON), written between the frame table
/// and the stats trailer, where CPython 3.15's reader ignores bytes.
pub const PROVENANCE_SIGNATURE: &[u8; 8] = b"TACHPROV";
/// Largest provenance block read back.
pub const MAX_PROVENANCE: usize = 1 << 16;
/// Deepest stack a record may hold; deeper stacks keep their 256 innermost frames.
pub const MAX_DEPTH: usize = 256;
pub const COMPRESSION_NONE: u32 = 0;
pub const COMPRESSION_ZSTD: u32 = 1;

/// Record encodings.
pub const ENC_REPEAT: u8 = 0;
pub const ENC_FULL: u8 = 1;
pub const ENC_SUFFIX: u8 = 2;
pub const ENC_POP_PUSH: u8 = 3;

/// Capture-feature bits stored in the header's `profiling_config` word.
pub mod features {
    pub const ALL_THREADS: u8 = 1 << 0;
    pub const NATIVE: u8 = 1 << 1;
    pub const GC: u8 = 1 << 2;
    pub const OPCODES: u8 = 1 << 3;
    pub const BLOCKING: u8 = 1 << 4;
}

/// The decoded 64-byte header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub python_version: (u8, u8, u8),
    pub start_time_us: u64,
    pub interval_us: u64,
    pub sample_count: u64,
    pub thread_count: u32,
    pub string_table_offset: u64,
    pub frame_table_offset: u64,
    pub compression: u32,
    pub config: u32,
}

impl Header {
    /// Profiling mode code (0 wall .. 4 exception) or None when the file does not say.
    pub fn mode_code(&self) -> Option<u32> {
        match self.config & 7 {
            0 => None,
            m => Some(m - 1),
        }
    }

    /// Capture-feature bits, or None when the file does not say.
    pub fn capture_features(&self) -> Option<u8> {
        (self.config & 8 != 0).then_some(((self.config >> 4) & 0x1f) as u8)
    }

    pub fn config_word(mode: Option<u32>, features: Option<u8>) -> u32 {
        let mut word = mode.map_or(0, |m| m + 1);
        if let Some(f) = features {
            word |= 8 | (u32::from(f & 0x1f) << 4);
        }
        word
    }
}
