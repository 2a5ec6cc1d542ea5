//! `--live`: a top-like terminal view refreshed while sampling, with CPython 3.15's live-mode
//! keys (sort, filter, pause, reset, per-thread view, trends, refresh rate, help), drawn with
//! ratatui. Beyond 3.15: `w` writes a flame graph of what has been seen so far.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::DefaultTerminal;
use tachyon_plugin_api::{
    Collector, ExportContext, FrameKeys, RunStats, Sample, Symbols, ThreadStatus,
};

use crate::output::FormatChoice;

/// Refresh every 100 ms at first (3.15's 10 Hz); `+`/`-` change it by 50 ms, 50 ms to 1 s.
const REFRESH: Duration = Duration::from_millis(100);
const MIN_REFRESH: Duration = Duration::from_millis(50);
const MAX_REFRESH: Duration = Duration::from_secs(1);
/// Input is looked at this often, so keys answer at once without a poll per sample.
const INPUT_EVERY: Duration = Duration::from_millis(20);

/// The columns, in the order `s` cycles them (3.15's sort modes).
const SORTS: [(&str, &str); 5] = [
    ("nsamples", "self samples"),
    ("sample_pct", "self %"),
    ("tottime", "self time"),
    ("cumul_pct", "cumulative %"),
    ("cumtime", "cumulative time"),
];

/// A collector that keeps nothing: the live view aggregates for itself.
pub struct Nothing;

impl Collector for Nothing {
    fn collect(&mut self, _symbols: &Symbols, _sample: &Sample<'_>) {}

    fn export(&mut self, _ctx: &ExportContext<'_>) -> Result<()> {
        Ok(())
    }
}

/// Self and cumulative samples of each function (file, line, name).
#[derive(Default, Clone)]
struct Counts {
    by_key: HashMap<usize, (u64, u64)>,
    samples: u64,
}

impl Counts {
    /// One sample of `weight`: `keys` are its functions, each once, the leaf first.
    fn add(&mut self, keys: &[usize], weight: u64) {
        self.samples += weight;
        for (i, &k) in keys.iter().enumerate() {
            let e = self.by_key.entry(k).or_default();
            e.1 += weight;
            if i == 0 {
                e.0 += weight;
            }
        }
    }
}

/// Each function's share of self samples (percent) at the last refresh, for the trend arrows.
type Shown = HashMap<usize, f64>;

/// A trend arrow only for a share that moved by more than this (percentage points).
const TREND_STEP: f64 = 0.2;

/// What `tick` asks of the sampling loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// `q`, or Ctrl-C (`interrupted`).
    Quit {
        interrupted: bool,
    },
}

pub struct LiveView {
    terminal: DefaultTerminal,
    keys: FrameKeys,
    all: Counts,
    threads: HashMap<u64, Counts>,
    thread_order: Vec<u64>,
    /// None: every thread; Some(i): `thread_order[i]`.
    thread_view: Option<usize>,
    sort: usize,
    filter: Option<String>,
    /// Some while `/` is typing a filter.
    filter_input: Option<String>,
    /// While paused, the counts as they were (sampling goes on underneath).
    frozen: Option<(Counts, HashMap<u64, Counts>)>,
    trends: bool,
    help: bool,
    finished: bool,
    refresh: Duration,
    last_draw: Instant,
    last_input: Instant,
    shown: Shown,
    previous: Shown,
    status: String,
    /// The flame graph `w` writes, fed every sample (absent in builds without it).
    snapshot: Option<Box<dyn Collector>>,
    snapshots_written: u32,
    header: String,
    interval_us: u64,
    started: Instant,
}

impl LiveView {
    /// Take over the terminal (the caller made sure stdout is one). `header` names the
    /// target; `snapshot` is the flame graph format, when built in.
    pub fn start(
        header: String,
        interval_us: u64,
        snapshot: Option<(FormatChoice, tachyon_plugin_api::CollectorConfig)>,
    ) -> Result<LiveView> {
        let snapshot = match snapshot {
            Some((format, config)) => Some(format.create(&config)?),
            None => None,
        };
        let terminal = ratatui::init();
        Ok(LiveView {
            terminal,
            keys: FrameKeys::default(),
            all: Counts::default(),
            threads: HashMap::new(),
            thread_order: Vec::new(),
            thread_view: None,
            sort: 0,
            filter: None,
            filter_input: None,
            frozen: None,
            trends: true,
            help: false,
            finished: false,
            refresh: REFRESH,
            last_draw: Instant::now() - REFRESH,
            last_input: Instant::now(),
            shown: Shown::new(),
            previous: Shown::new(),
            status: String::new(),
            snapshot,
            snapshots_written: 0,
            header,
            interval_us,
            started: Instant::now(),
        })
    }

    /// Count one sample (batch) of a thread.
    pub fn add(&mut self, symbols: &Symbols, sample: &Sample<'_>) {
        if let Some(s) = self.snapshot.as_mut() {
            s.collect(symbols, sample);
        }
        if sample.frames.is_empty() {
            return;
        }
        // Recursion counts once per sample: each function once, the leaf first.
        let mut seen = std::collections::HashSet::with_capacity(sample.frames.len());
        let keys: Vec<usize> = sample
            .frames
            .iter()
            .map(|&f| self.keys.id(symbols, f))
            .filter(|&k| seen.insert(k))
            .collect();
        let w = sample.weight();
        self.all.add(&keys, w);
        if !self.threads.contains_key(&sample.thread_id) {
            // The main thread first, then in order of appearance.
            if sample.status.has(ThreadStatus::MAIN_THREAD) {
                self.thread_order.insert(0, sample.thread_id);
            } else {
                self.thread_order.push(sample.thread_id);
            }
        }
        self.threads
            .entry(sample.thread_id)
            .or_default()
            .add(&keys, w);
    }

    /// Handle keys and redraw when due. `stats` so far; `symbols` for snapshots.
    pub fn tick(&mut self, symbols: &Symbols, stats: &RunStats) -> Result<Next> {
        let now = Instant::now();
        if now.duration_since(self.last_input) >= INPUT_EVERY || self.finished {
            self.last_input = now;
            while event::poll(Duration::ZERO)? {
                if let Some(next) = self.key(event::read()?, symbols, stats)? {
                    return Ok(next);
                }
            }
        }
        if now.duration_since(self.last_draw) >= self.refresh {
            self.last_draw = now;
            self.draw(stats)?;
        }
        Ok(Next::Continue)
    }

    /// The target is gone: show it, and wait for `q` (or a stop signal, `stop`).
    pub fn finish(
        &mut self,
        symbols: &Symbols,
        stats: &RunStats,
        stop: impl Fn() -> bool,
    ) -> Result<Next> {
        self.finished = true;
        self.draw(stats)?;
        while !stop() {
            if event::poll(Duration::from_millis(100))? {
                if let Some(next) = self.key(event::read()?, symbols, stats)? {
                    return Ok(next);
                }
                self.draw(stats)?;
            }
        }
        Ok(Next::Quit { interrupted: false })
    }

    fn key(&mut self, ev: Event, symbols: &Symbols, stats: &RunStats) -> Result<Option<Next>> {
        let Event::Key(k) = ev else {
            return Ok(None);
        };
        if k.kind != KeyEventKind::Press {
            return Ok(None);
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Ok(Some(Next::Quit { interrupted: true }));
        }
        // Typing a filter takes every key.
        if let Some(buf) = self.filter_input.as_mut() {
            match k.code {
                KeyCode::Esc => self.filter_input = None,
                KeyCode::Enter => {
                    let text = std::mem::take(buf);
                    self.filter = (!text.is_empty()).then_some(text);
                    self.filter_input = None;
                }
                KeyCode::Backspace => {
                    buf.pop();
                }
                KeyCode::Char(c) => buf.push(c),
                _ => {}
            }
            self.draw(stats)?;
            return Ok(None);
        }
        if self.help {
            self.help = false;
            self.draw(stats)?;
            return Ok(None);
        }
        match k.code {
            KeyCode::Char('q' | 'Q') => return Ok(Some(Next::Quit { interrupted: false })),
            KeyCode::Char('h' | 'H' | '?') => self.help = true,
            KeyCode::Char('s') => self.sort = (self.sort + 1) % SORTS.len(),
            KeyCode::Char('S') => self.sort = (self.sort + SORTS.len() - 1) % SORTS.len(),
            KeyCode::Char('p' | 'P') => {
                self.frozen = match self.frozen {
                    None => Some((self.all.clone(), self.threads.clone())),
                    Some(_) => None,
                };
            }
            KeyCode::Char('r' | 'R') if !self.finished => {
                self.all = Counts::default();
                self.threads.clear();
                self.thread_order.clear();
                self.thread_view = None;
                self.shown.clear();
                self.previous.clear();
                if self.frozen.is_some() {
                    self.frozen = Some(Default::default());
                }
                self.status = "Statistics reset".to_owned();
            }
            KeyCode::Char('+' | '=') => {
                self.refresh = self.refresh.saturating_sub(MIN_REFRESH).max(MIN_REFRESH);
            }
            KeyCode::Char('-' | '_') => {
                self.refresh = (self.refresh + MIN_REFRESH).min(MAX_REFRESH)
            }
            KeyCode::Char('c' | 'C') => self.filter = None,
            KeyCode::Char('/') => self.filter_input = Some(self.filter.clone().unwrap_or_default()),
            KeyCode::Char('t' | 'T') => {
                self.thread_view = match self.thread_view {
                    None if !self.thread_order.is_empty() => Some(0),
                    _ => None,
                };
            }
            KeyCode::Left | KeyCode::Up => self.step_thread(false),
            KeyCode::Right | KeyCode::Down => self.step_thread(true),
            KeyCode::Char('x' | 'X') => self.trends = !self.trends,
            KeyCode::Char('w' | 'W') => self.write_snapshot(symbols, stats),
            _ => return Ok(None),
        }
        self.draw(stats)?;
        Ok(None)
    }

    fn step_thread(&mut self, forward: bool) {
        let n = self.thread_order.len();
        if n == 0 {
            return;
        }
        self.thread_view = Some(match self.thread_view {
            None => 0,
            Some(i) if forward => (i + 1) % n,
            Some(i) => (i + n - 1) % n,
        });
    }

    /// `w`: the flame graph of everything seen so far, beside the working directory.
    fn write_snapshot(&mut self, symbols: &Symbols, stats: &RunStats) {
        let Some(collector) = self.snapshot.as_mut() else {
            self.status = "This build has no flamegraph format for snapshots".to_owned();
            return;
        };
        self.snapshots_written += 1;
        let path = PathBuf::from(format!(
            "tachyon_live_{}_{}.html",
            std::process::id(),
            self.snapshots_written
        ));
        self.status = match crate::output::export(
            collector.as_mut(),
            Some(&path),
            symbols,
            stats,
            crate::output::Durability::Synced,
        ) {
            Ok(()) => format!("Flame graph snapshot written to {}", path.display()),
            Err(e) => format!("Snapshot failed: {e:#}"),
        };
    }

    fn counts(&self) -> Option<&Counts> {
        let (all, threads) = match &self.frozen {
            Some((all, threads)) => (all, threads),
            None => (&self.all, &self.threads),
        };
        match self.thread_view {
            None => Some(all),
            Some(i) => self.thread_order.get(i).and_then(|t| threads.get(t)),
        }
    }

    /// Rows: (key, self, cumulative), filtered and sorted.
    fn rows(&self) -> Vec<(usize, u64, u64)> {
        let Some(counts) = self.counts() else {
            return Vec::new();
        };
        let filter = self.filter.as_deref().map(str::to_lowercase);
        let mut rows: Vec<(usize, u64, u64)> = counts
            .by_key
            .iter()
            .map(|(&k, &(s, c))| (k, s, c))
            .filter(|&(k, _, _)| {
                filter.as_deref().is_none_or(|f| {
                    let key = self.keys.key(k);
                    key.funcname.to_lowercase().contains(f)
                        || key.filename.to_lowercase().contains(f)
                })
            })
            .collect();
        let by_self = self.sort < 3;
        rows.sort_by(|a, b| {
            let (x, y) = if by_self { (a.1, b.1) } else { (a.2, b.2) };
            y.cmp(&x).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0))
        });
        rows
    }

    fn draw(&mut self, stats: &RunStats) -> Result<()> {
        let rows = self.rows();
        let total = self.counts().map_or(0, |c| c.samples);
        let pct = |n: u64| {
            if total > 0 {
                n as f64 * 100.0 / total as f64
            } else {
                0.0
            }
        };
        if self.frozen.is_none() {
            self.previous = std::mem::take(&mut self.shown);
            self.shown = rows.iter().map(|&(k, s, _)| (k, pct(s))).collect();
        }
        let secs = |n: u64| n as f64 * self.interval_us as f64 / 1e6;
        let elapsed = self.started.elapsed().as_secs();
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let mut head = vec![
            Line::from(vec![
                Span::styled("tachyon live ", bold.fg(Color::Cyan)),
                Span::raw(format!(
                    "{}  ·  {:02}:{:02}:{:02} elapsed",
                    self.header,
                    elapsed / 3600,
                    elapsed / 60 % 60,
                    elapsed % 60
                )),
                Span::styled(
                    if self.finished {
                        "  ·  FINISHED (q quits)"
                    } else if self.frozen.is_some() {
                        "  ·  PAUSED (p resumes; sampling goes on)"
                    } else {
                        ""
                    },
                    bold.fg(Color::Yellow),
                ),
            ]),
            Line::from(vec![
                Span::styled("Samples: ", bold),
                Span::raw(format!("{}", self.all.samples)),
                Span::styled("   Rate: ", bold),
                Span::raw(format!("{:.0}/s", stats.sample_rate)),
                Span::styled("   Errors: ", bold),
                Span::raw(format!("{:.2}%", stats.error_rate.unwrap_or(0.0))),
                Span::styled("   Refresh: ", bold),
                Span::raw(format!("{} ms", self.refresh.as_millis())),
            ]),
            Line::from(vec![
                Span::styled("View: ", bold),
                Span::raw(match self.thread_view {
                    None => format!("all threads ({})", self.thread_order.len()),
                    Some(i) => format!(
                        "thread {} ({}/{})",
                        self.thread_order.get(i).copied().unwrap_or(0),
                        i + 1,
                        self.thread_order.len()
                    ),
                }),
                Span::styled("   Sort: ", bold),
                Span::raw(SORTS[self.sort].1),
                Span::styled("   Functions: ", bold),
                Span::raw(format!("{}", rows.len())),
                Span::styled("   Filter: ", bold),
                Span::raw(self.filter.clone().unwrap_or_else(|| "none".to_owned())),
            ]),
        ];
        if !self.status.is_empty() {
            head.push(Line::styled(
                self.status.clone(),
                Style::default().fg(Color::Yellow),
            ));
        }
        let header_cells = [
            "nsamples", "self%", "tottime", "cumul%", "cumtime", "function",
        ];
        let header = Row::new(header_cells.iter().enumerate().map(|(i, h)| {
            let sorted = i < 5
                && SORTS[self.sort].0
                    == ["nsamples", "sample_pct", "tottime", "cumul_pct", "cumtime"][i];
            let style = if sorted {
                bold.fg(Color::Black).bg(Color::Cyan)
            } else {
                bold
            };
            ratatui::widgets::Cell::from(*h).style(style)
        }));
        let body: Vec<Row> = rows
            .iter()
            .map(|&(k, s, c)| {
                let key = self.keys.key(k);
                let now = pct(s);
                let trend = match self.previous.get(&k) {
                    _ if !self.trends => Span::raw("  "),
                    Some(&before) if now > before + TREND_STEP => {
                        Span::styled("▲ ", Style::default().fg(Color::Red))
                    }
                    Some(&before) if now < before - TREND_STEP => {
                        Span::styled("▼ ", Style::default().fg(Color::Green))
                    }
                    _ => Span::raw("  "),
                };
                Row::new(vec![
                    ratatui::widgets::Cell::from(format!("{s}/{c}")),
                    ratatui::widgets::Cell::from(format!("{:5.1}", pct(s))),
                    ratatui::widgets::Cell::from(format!("{:8.3}s", secs(s))),
                    ratatui::widgets::Cell::from(format!("{:5.1}", pct(c))),
                    ratatui::widgets::Cell::from(format!("{:8.3}s", secs(c))),
                    ratatui::widgets::Cell::from(Line::from(vec![
                        trend,
                        Span::styled(key.funcname.clone(), Style::default().fg(Color::Green)),
                        Span::raw(format!(" ({}:{})", key.filename, key.lineno)),
                    ])),
                ])
            })
            .collect();
        let footer = match &self.filter_input {
            Some(buf) => format!("Filter: {buf}_   (Enter applies, Esc cancels)"),
            None => "q quit  s/S sort  / filter  c clear  p pause  r reset  t threads  ←/→ thread  x trends  +/- refresh  w snapshot  h help".to_owned(),
        };
        let help = self.help;
        let head_len = head.len() as u16;
        self.terminal.draw(|f| {
            let [top, table, bottom] = Layout::vertical([
                Constraint::Length(head_len),
                Constraint::Min(3),
                Constraint::Length(1),
            ])
            .areas(f.area());
            f.render_widget(Paragraph::new(head), top);
            f.render_widget(
                Table::new(
                    body,
                    [
                        Constraint::Length(15),
                        Constraint::Length(6),
                        Constraint::Length(10),
                        Constraint::Length(6),
                        Constraint::Length(10),
                        Constraint::Min(20),
                    ],
                )
                .header(header)
                .block(Block::default().borders(Borders::TOP)),
                table,
            );
            f.render_widget(
                Paragraph::new(footer).style(Style::default().fg(Color::Black).bg(Color::Cyan)),
                bottom,
            );
            if help {
                let text = vec![
                    Line::styled("Keys", Style::default().add_modifier(Modifier::BOLD)),
                    Line::raw("q / Ctrl-C   quit"),
                    Line::raw("s / S        sort by the next / previous column"),
                    Line::raw("/            filter functions and files; Enter applies"),
                    Line::raw("c            clear the filter"),
                    Line::raw("p            pause the view (sampling goes on)"),
                    Line::raw("r            reset the statistics"),
                    Line::raw("t, ←/→       per-thread view, previous / next thread"),
                    Line::raw("x            trend arrows on / off"),
                    Line::raw("+ / -        refresh faster / slower"),
                    Line::raw("w            write a flame graph of what was seen so far"),
                    Line::raw("h / ?        this help (any key closes it)"),
                ];
                let area = f.area();
                let w = 64.min(area.width);
                let h = (text.len() as u16 + 2).min(area.height);
                let rect =
                    ratatui::layout::Rect::new((area.width - w) / 2, (area.height - h) / 2, w, h);
                f.render_widget(Clear, rect);
                f.render_widget(
                    Paragraph::new(text)
                        .block(Block::default().borders(Borders::ALL).title(" Help ")),
                    rect,
                );
            }
        })?;
        Ok(())
    }
}

impl Drop for LiveView {
    /// The terminal is given back however the view ends (an error or a panic included).
    fn drop(&mut self) {
        ratatui::restore();
    }
}
