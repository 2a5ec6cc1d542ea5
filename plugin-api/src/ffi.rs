//! The run-time plugin ABI: a dynamic library exports `tachyon_plugin_v1`, returning a
//! `#[repr(C)]` table whose first fields never change (`api_version`, `struct_size`). Only
//! bytes cross: the host sends the profile as JSON ([`crate::ir::Ir`]) and options as JSON; the
//! plugin answers with JSON. Plugins written in Rust use [`export_plugin!`](crate::export_plugin), which replays the
//! profile into an ordinary [`crate::Collector`] — the same contract as built-in formats — and
//! turns panics into errors.

/// Borrowed bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Bytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl Bytes {
    #[must_use]
    pub fn from_slice(s: &[u8]) -> Bytes {
        Bytes {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// # Safety
    /// `ptr` must point to `len` readable bytes that outlive the returned slice.
    #[must_use]
    pub unsafe fn as_slice<'a>(&self) -> &'a [u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// Bytes owned by the plugin; the host gives them back through `free`.
#[repr(C)]
pub struct OwnedBytes {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl OwnedBytes {
    #[must_use]
    pub fn from_vec(v: Vec<u8>) -> OwnedBytes {
        let mut v = std::mem::ManuallyDrop::new(v);
        OwnedBytes {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// # Safety
    /// Must come from [`OwnedBytes::from_vec`] in the same library, freed once.
    #[must_use]
    pub unsafe fn into_vec(self) -> Vec<u8> {
        Vec::from_raw_parts(self.ptr, self.len, self.cap)
    }
}

/// Version 1 of the table. New fields may only be appended (checked with `struct_size`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginV1 {
    pub api_version: u32,
    pub struct_size: u32,
    /// JSON: `[{"name", "description", "extension"}]`.
    pub formats: extern "C" fn() -> OwnedBytes,
    /// Export `format` for the profile `ir` to `path`. JSON answer: `{"ok": true}` or
    /// `{"error": "..."}`.
    pub export: extern "C" fn(format: Bytes, ir: Bytes, options: Bytes, path: Bytes) -> OwnedBytes,
    pub free: extern "C" fn(OwnedBytes),
}

pub const ENTRY_SYMBOL: &[u8] = b"tachyon_plugin_v1";

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq)]
pub struct FormatInfo {
    pub name: String,
    pub description: String,
    pub extension: String,
    /// The option keys the format reads (absent: none).
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub needs: crate::collector::Needs,
}

/// What `export_plugin!` runs (public for the macro; not for direct use).
pub mod sdk {
    use super::*;
    use crate::collector::{CollectorConfig, ExportContext, Format};
    use crate::ir::Ir;

    #[must_use]
    pub fn formats(list: &[&Format]) -> OwnedBytes {
        let infos: Vec<FormatInfo> = list
            .iter()
            .map(|f| FormatInfo {
                name: f.name.into(),
                description: f.description.into(),
                extension: f.extension.into(),
                options: f.options.iter().map(|o| (*o).to_owned()).collect(),
                needs: f.needs,
            })
            .collect();
        OwnedBytes::from_vec(serde_json::to_vec(&infos).unwrap_or_default())
    }

    fn find<'a>(list: &[&'a Format], name: &[u8]) -> anyhow::Result<&'a Format> {
        let name = std::str::from_utf8(name)?;
        list.iter()
            .copied()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow::anyhow!("this plugin has no format '{name}'"))
    }

    fn write(
        mut collector: Box<dyn crate::Collector>,
        profile: &crate::Profile,
        path: &[u8],
    ) -> anyhow::Result<()> {
        profile.replay_into(collector.as_mut());
        let path = std::path::PathBuf::from(std::str::from_utf8(path)?);
        collector.export(&ExportContext {
            path: Some(&path),
            destination: Some(&path),
            symbols: &profile.symbols,
            stats: &profile.stats,
        })
    }

    /// IR v2: the collector gets the configuration, baseline and samples a built-in gets.
    fn run(
        list: &[&Format],
        format: &[u8],
        ir: &[u8],
        options: &[u8],
        path: &[u8],
    ) -> anyhow::Result<()> {
        let format = find(list, format)?;
        let ir: Ir = serde_json::from_slice(ir)?;
        anyhow::ensure!(
            ir.api_version == crate::API_VERSION,
            "profile is plugin API v{}, plugin speaks v{}",
            ir.api_version,
            crate::API_VERSION
        );
        let profile = ir.profile.to_profile()?;
        let config = CollectorConfig {
            options: serde_json::from_slice(options)?,
            baseline: crate::ir::baseline(&ir)?,
            ..ir.profile.config()
        };
        write((format.create)(&config)?, &profile, path)
    }

    /// IR v1 (`export_plugin_v1!`): an aggregated profile only.
    fn run_v1(
        list: &[&Format],
        format: &[u8],
        ir: &[u8],
        options: &[u8],
        path: &[u8],
    ) -> anyhow::Result<()> {
        let format = find(list, format)?;
        let ir: crate::ir::v1::Ir = serde_json::from_slice(ir)?;
        anyhow::ensure!(
            ir.api_version == 1,
            "profile is plugin API v{}, plugin speaks v1",
            ir.api_version
        );
        let profile = ir.to_profile()?;
        let config = CollectorConfig {
            interval_us: profile.interval_us,
            mode: profile.mode.unwrap_or_default(),
            options: serde_json::from_slice(options)?,
            python_version: ir.python_version,
            ..Default::default()
        };
        write((format.create)(&config)?, &profile, path)
    }

    pub fn export(
        list: &[&Format],
        format: Bytes,
        ir: Bytes,
        options: Bytes,
        path: Bytes,
    ) -> OwnedBytes {
        answer(list, format, ir, options, path, run)
    }

    pub fn export_v1(
        list: &[&Format],
        format: Bytes,
        ir: Bytes,
        options: Bytes,
        path: Bytes,
    ) -> OwnedBytes {
        answer(list, format, ir, options, path, run_v1)
    }

    type Runner = fn(&[&Format], &[u8], &[u8], &[u8], &[u8]) -> anyhow::Result<()>;

    /// Run the export, answering `{"ok": true}` or `{"error": "..."}` (panics included).
    fn answer(
        list: &[&Format],
        format: Bytes,
        ir: Bytes,
        options: Bytes,
        path: Bytes,
        run: Runner,
    ) -> OwnedBytes {
        // SAFETY: the host passes slices that live for the duration of the call.
        let args = unsafe {
            (
                format.as_slice(),
                ir.as_slice(),
                options.as_slice(),
                path.as_slice(),
            )
        };
        // The host reports a panic in one line; the default hook would also print it here.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let outcome = std::panic::catch_unwind(|| run(list, args.0, args.1, args.2, args.3));
        std::panic::set_hook(previous);
        let answer = match outcome {
            Ok(Ok(())) => serde_json::json!({"ok": true}),
            Ok(Err(e)) => serde_json::json!({"error": format!("{e:#}")}),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(std::string::ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                serde_json::json!({"error": format!("the plugin panicked: {msg}")})
            }
        };
        OwnedBytes::from_vec(serde_json::to_vec(&answer).unwrap_or_default())
    }

    pub fn free(bytes: OwnedBytes) {
        // SAFETY: the host returns exactly what this library allocated.
        drop(unsafe { bytes.into_vec() });
    }
}

/// Export the given `&'static Format`s from a `cdylib` plugin crate (plugin API v2). Each
/// export replays the host's profile into a collector made by the format's `create`, with the
/// configuration, baseline and — for formats whose [`crate::Needs::timeline`] is set — the
/// samples a built-in format receives, so the same code can be compiled in or loaded.
///
/// ```ignore
/// static SPEEDSCOPE: Format = Format { name: "speedscope", description: "...", extension: "json", create };
/// tachyon_plugin_api::export_plugin!(SPEEDSCOPE);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($($format:path),+ $(,)?) => {
        $crate::export_plugin_table!(sdk::export, $crate::API_VERSION, $($format),+);
    };
}

/// As [`export_plugin!`](crate::export_plugin), for a plugin that still reads IR v1 ([`crate::ir::v1`]): an
/// aggregated profile without baseline or timestamps. Kept so that the contract with v1
/// plugins stays tested.
#[macro_export]
macro_rules! export_plugin_v1 {
    ($($format:path),+ $(,)?) => {
        $crate::export_plugin_table!(sdk::export_v1, 1, $($format),+);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! export_plugin_table {
    (sdk::$export:ident, $version:expr, $($format:path),+) => {
        const _: () = {
            use $crate::ffi::{sdk, Bytes, OwnedBytes, PluginV1};
            fn formats_list() -> ::std::vec::Vec<&'static $crate::Format> {
                ::std::vec![$(&$format),+]
            }
            extern "C" fn formats() -> OwnedBytes {
                sdk::formats(&formats_list())
            }
            extern "C" fn export(format: Bytes, ir: Bytes, options: Bytes, path: Bytes) -> OwnedBytes {
                sdk::$export(&formats_list(), format, ir, options, path)
            }
            extern "C" fn free(bytes: OwnedBytes) {
                sdk::free(bytes)
            }
            static TABLE: PluginV1 = PluginV1 {
                api_version: $version,
                struct_size: ::std::mem::size_of::<PluginV1>() as u32,
                formats,
                export,
                free,
            };
            #[no_mangle]
            pub extern "C" fn tachyon_plugin_v1() -> *const PluginV1 {
                &TABLE
            }
        };
    };
}
