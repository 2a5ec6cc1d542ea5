//! Out-of-process sampling of CPython 2.7 and 3.6-3.15, read-only.

pub mod asyncio;
mod asyncio_objects;
pub mod discover;
pub mod elf;
pub mod fixture;
pub mod layout;
mod layouts;
pub mod linetable;
pub mod memory;
pub mod objects;
pub mod pause;
pub mod process;
mod readset;
mod schedule;
pub mod unwind;

pub use discover::Target;
pub use unwind::{ThreadSample, UnwindOptions, Unwinder};
