//! Run-time format plugins: dynamic libraries exporting `tachyon_plugin_v1` (see
//! plugin-api/src/ffi.rs), given with `--plugin PATH` or found in the directories of
//! `TACHYON_PLUGIN_PATH`. The host aggregates samples, hands the plugin the profile as JSON,
//! and runs the plugin's export in a forked child, so a plugin that crashes or hangs costs an
//! error message, not the profile: the child has a time limit (`--plugin-timeout`) and dies
//! with tachyon.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tachyon_plugin_api::compare::Normalize;
use tachyon_plugin_api::ffi::{Bytes, FormatInfo, PluginV1, ENTRY_SYMBOL};
use tachyon_plugin_api::ir::{self, Ir};
use tachyon_plugin_api::{
    Collector, CollectorConfig, ExportContext, ProfileBuilder, Sample, Symbols, API_VERSION,
};

pub struct Plugin {
    pub path: PathBuf,
    pub formats: Vec<FormatInfo>,
    /// The IR version it reads (1 or [`API_VERSION`]).
    pub api_version: u32,
    /// A copy of the plugin's table: its functions stay valid while `_lib` keeps the code
    /// mapped (never unloaded while the plugin is in use).
    table: PluginV1,
    _lib: libloading::Library,
}

static LOADED: OnceLock<Vec<Arc<Plugin>>> = OnceLock::new();
/// Longest a plugin's export may run (`--plugin-timeout`).
static TIMEOUT: OnceLock<Duration> = OnceLock::new();

/// The export time limit `init` was given (the `--plugin-timeout` default before it is).
pub fn timeout() -> Duration {
    TIMEOUT.get().copied().unwrap_or(Duration::from_secs_f64(
        crate::cli::DEFAULT_PLUGIN_TIMEOUT_S,
    ))
}

/// Load `--plugin` paths and every `*.so` in `TACHYON_PLUGIN_PATH`. Call once at start-up.
pub fn init(explicit: &[PathBuf], timeout: Duration) -> Result<()> {
    let _ = TIMEOUT.set(timeout);
    let mut paths: Vec<PathBuf> = explicit.to_vec();
    if let Some(dirs) = std::env::var_os("TACHYON_PLUGIN_PATH") {
        paths.extend(search_path(&dirs));
    }
    let plugins = paths
        .iter()
        .map(|p| load(p).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    let builtins: Vec<&str> = tachyon_plugin_api::formats()
        .iter()
        .map(|f| f.name)
        .collect();
    for plugin in &plugins {
        for f in plugin
            .formats
            .iter()
            .filter(|f| builtins.contains(&f.name.as_str()))
        {
            eprintln!(
                "Warning: plugin {} provides a format named '{}', like a built-in one; the built-in is used",
                plugin.path.display(),
                f.name
            );
        }
    }
    let _ = LOADED.set(plugins);
    Ok(())
}

/// The `*.so` files of the search path's directories that are safe to load: loading one runs
/// its code, so, as ssh does with keys, anything another user could have put there is
/// refused: world-writable directories or files, and files owned by someone other than the
/// user or root. Relative entries (which depend on where tachyon is started) are ignored.
fn search_path(dirs: &std::ffi::OsStr) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let uid = nix::unistd::geteuid().as_raw();
    let unsafe_reason = |meta: &std::fs::Metadata| {
        if meta.mode() & 0o002 != 0 {
            Some("it is world-writable")
        } else if meta.uid() != uid && meta.uid() != 0 {
            Some("it is owned by another user")
        } else {
            None
        }
    };
    let mut found = Vec::new();
    for dir in std::env::split_paths(dirs) {
        if !dir.is_absolute() {
            eprintln!(
                "Warning: ignoring TACHYON_PLUGIN_PATH entry '{}': not an absolute path",
                dir.display()
            );
            continue;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        if let Some(why) = unsafe_reason(&meta) {
            eprintln!("Warning: not loading plugins from {}: {why}", dir.display());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "so"))
            .filter(|p| match std::fs::metadata(p).map(|m| unsafe_reason(&m)) {
                Ok(None) => true,
                Ok(Some(why)) => {
                    eprintln!("Warning: not loading plugin {}: {why}", p.display());
                    false
                }
                Err(_) => false,
            })
            .collect();
        here.sort();
        found.extend(here);
    }
    found
}

pub fn loaded() -> &'static [Arc<Plugin>] {
    LOADED.get().map_or(&[], Vec::as_slice)
}

pub fn load(path: &Path) -> Result<Plugin> {
    if !path.exists() {
        bail!("plugin {} not found", path.display());
    }
    // SAFETY: loading runs the library's initialisers; plugins are code the user chose to run.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| anyhow::anyhow!("cannot load plugin {}: {e}", path.display()))?;
    // SAFETY: the symbol's type is fixed by the plugin ABI; a library that exports it with
    // another type is not a tachyon plugin and cannot be detected here.
    let entry =
        unsafe { lib.get::<extern "C" fn() -> *const PluginV1>(ENTRY_SYMBOL) }.map_err(|_| {
            anyhow::anyhow!(
                "{} is not a tachyon plugin (it exports no tachyon_plugin_v1)",
                path.display()
            )
        })?;
    let table = entry();
    if table.is_null() {
        bail!("plugin {} returned no plugin table", path.display());
    }
    // SAFETY: every version of the table starts with these two u32 fields.
    let (version, size) = unsafe { ((*table).api_version, (*table).struct_size) };
    if version != API_VERSION && version != 1 {
        bail!(
            "plugin {} was built for tachyon plugin API v{version}, but this tachyon speaks v1 and v{API_VERSION}: rebuild it against tachyon-plugin-api {}",
            path.display(),
            env!("CARGO_PKG_VERSION")
        );
    }
    if (size as usize) < std::mem::size_of::<PluginV1>() {
        bail!(
            "plugin {} has a truncated plugin table ({size} bytes)",
            path.display()
        );
    }
    let mut plugin = Plugin {
        path: path.to_path_buf(),
        formats: Vec::new(),
        api_version: version,
        // SAFETY: non-null, of this API version and at least this size (checked above).
        table: unsafe { *table },
        _lib: lib,
    };
    let answer = plugin.call(|t| (t.formats)());
    plugin.formats = serde_json::from_slice(&answer).with_context(|| {
        format!(
            "plugin {} listed its formats as invalid JSON",
            path.display()
        )
    })?;
    Ok(plugin)
}

impl Plugin {
    /// Call into the plugin and copy out (then free) its answer.
    fn call(&self, f: impl FnOnce(&PluginV1) -> tachyon_plugin_api::ffi::OwnedBytes) -> Vec<u8> {
        let t = &self.table;
        let owned = f(t);
        // SAFETY: the plugin returned `len` initialised bytes it owns until `free`.
        let copy = unsafe { std::slice::from_raw_parts(owned.ptr, owned.len).to_vec() };
        (t.free)(owned);
        copy
    }

    /// Run the plugin's export in a forked child; its answer comes back through a pipe.
    fn export(&self, format: &str, ir: &[u8], options: &[u8], path: &Path) -> Result<()> {
        use nix::sys::signal::{kill, Signal};
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        use nix::unistd::{fork, getpid, getppid, pipe, ForkResult};
        use std::os::unix::ffi::OsStrExt;
        let timeout = timeout();
        let (read_end, write_end) = pipe()?;
        let path_bytes = path.as_os_str().as_bytes();
        let host = getpid();
        // SAFETY: the host is single-threaded here (sampling has ended); the child only calls
        // the plugin, writes to the pipe and exits without unwinding.
        match unsafe { fork() }? {
            ForkResult::Child => {
                drop(read_end);
                // The export dies with tachyon, even if tachyon is killed.
                let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                if getppid() != host {
                    // SAFETY: leave at once; the parent is already gone.
                    unsafe { libc::_exit(1) }
                }
                let answer = self.call(|t| {
                    (t.export)(
                        Bytes::from_slice(format.as_bytes()),
                        Bytes::from_slice(ir),
                        Bytes::from_slice(options),
                        Bytes::from_slice(path_bytes),
                    )
                });
                let mut out = std::fs::File::from(write_end);
                let ok = std::io::Write::write_all(&mut out, &answer).is_ok();
                // SAFETY: leave at once, running no destructors or atexit handlers of the parent.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            ForkResult::Parent { child } => {
                drop(write_end);
                // Read while waiting: an answer larger than the pipe must not block the child.
                let reader = std::thread::spawn(move || {
                    let mut answer = Vec::new();
                    std::fs::File::from(read_end)
                        .read_to_end(&mut answer)
                        .map(|_| answer)
                });
                let deadline = Instant::now() + timeout;
                let status = loop {
                    match waitpid(child, Some(WaitPidFlag::WNOHANG))? {
                        WaitStatus::StillAlive if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        WaitStatus::StillAlive => {
                            let _ = kill(child, Signal::SIGKILL);
                            let _ = waitpid(child, None);
                            bail!(
                                "plugin {} did not finish the {format} output within {} s (--plugin-timeout); it was stopped",
                                self.path.display(),
                                timeout.as_secs_f64()
                            );
                        }
                        status => break status,
                    }
                };
                let answer = reader
                    .join()
                    .map_err(|_| anyhow::anyhow!("reading the plugin's answer failed"))??;
                match status {
                    WaitStatus::Exited(_, 0) => {}
                    WaitStatus::Signaled(_, sig, _) => bail!(
                        "plugin {} crashed ({sig}) while writing the {format} output",
                        self.path.display()
                    ),
                    other => bail!(
                        "plugin {} failed while writing the {format} output ({other:?})",
                        self.path.display()
                    ),
                }
                let answer: serde_json::Value =
                    serde_json::from_slice(&answer).with_context(|| {
                        format!("plugin {} gave no valid answer", self.path.display())
                    })?;
                if let Some(err) = answer.get("error").and_then(|e| e.as_str()) {
                    bail!("plugin format '{format}' failed: {err}");
                }
                Ok(())
            }
        }
    }
}

/// The host side of a plugin format: an ordinary collector that aggregates samples, then
/// hands the profile to the plugin at export.
pub struct PluginCollector {
    plugin: Arc<Plugin>,
    format: String,
    config: CollectorConfig,
    builder: ProfileBuilder,
}

impl PluginCollector {
    pub fn new(plugin: Arc<Plugin>, format: &str, config: &CollectorConfig) -> Self {
        let timeline = plugin
            .formats
            .iter()
            .any(|f| f.name == format && f.needs.timeline);
        PluginCollector {
            plugin,
            format: format.to_owned(),
            config: config.clone(),
            builder: if timeline {
                ProfileBuilder::with_timeline()
            } else {
                ProfileBuilder::new()
            },
        }
    }
}

impl Collector for PluginCollector {
    fn collect(&mut self, _symbols: &Symbols, sample: &Sample<'_>) {
        self.builder.add(sample);
    }

    fn prefetch(&mut self, symbols: &Symbols, thread_id: u64, stack: tachyon_plugin_api::StackId) {
        self.builder.prefetch(symbols, thread_id, stack);
    }

    fn export(&mut self, ctx: &ExportContext<'_>) -> Result<()> {
        let path = ctx
            .path
            .context("plugin formats need an output file (-o)")?;
        let builder = std::mem::take(&mut self.builder);
        let mut profile = builder.finish(
            ctx.symbols.clone(),
            self.config.interval_us,
            (!self.config.mode_unknown).then_some(self.config.mode),
            ctx.stats.clone(),
        );
        profile.python_version = self.config.python_version;
        profile.capture_features = self.config.capture_features;
        let ir = if self.plugin.api_version == 1 {
            serde_json::to_vec(&ir::v1::Ir::from_profile(&profile, &self.config))?
        } else {
            let normalize = self
                .config
                .option("normalize")
                .and_then(Normalize::parse)
                .unwrap_or(Normalize::Interval);
            serde_json::to_vec(&Ir::new(&profile, &self.config, normalize))?
        };
        let options = serde_json::to_vec(&self.config.options)?;
        self.plugin.export(&self.format, &ir, &options, path)?;
        eprintln!(
            "{} output written to {}",
            self.format,
            ctx.shown_path().display()
        );
        Ok(())
    }
}
