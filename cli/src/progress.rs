//! Drawing build progress: BuildKit's plain format (`#5 [2/3] RUN ...`,
//! output lines with their time, `#5 DONE 0.3s`) for logs and CI, and an
//! indicatif display on a terminal.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hoist_builder::progress::{Event, Progress, StepId};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// tty on a terminal, plain otherwise
    Auto,
    Plain,
    Tty,
    Quiet,
}

/// Makes the drawer for a mode.
pub fn drawer(mode: Mode) -> Box<dyn Drawer> {
    let tty = std::io::stderr().is_terminal();
    match mode {
        Mode::Quiet => Box::new(Quiet),
        Mode::Tty => Box::new(Tty::new()),
        Mode::Auto if tty => Box::new(Tty::new()),
        Mode::Auto | Mode::Plain => Box::new(Plain::new()),
    }
}

/// A [`Progress`] that also draws the cli's own steps (exporting, naming).
pub trait Drawer: Progress {
    /// A step of the cli's own, done at once (`naming to ... done`).
    fn note(&self, name: &str, lines: &[String]);
    /// Leaves the terminal clean before the final message.
    fn finish(&self) {}
}

struct Quiet;

impl Progress for Quiet {
    fn event(&self, _event: Event<'_>) {}
}

impl Drawer for Quiet {
    fn note(&self, _name: &str, _lines: &[String]) {}
}

/// BuildKit's `--progress=plain`.
struct Plain {
    state: Mutex<PlainState>,
}

struct PlainState {
    started: HashMap<StepId, Instant>,
    /// Output not yet ended by a newline, per step.
    partial: HashMap<StepId, Vec<u8>>,
    /// The highest step number seen, so the cli's own steps follow on.
    last_step: usize,
}

impl Plain {
    fn new() -> Self {
        Self {
            state: Mutex::new(PlainState {
                started: HashMap::new(),
                partial: HashMap::new(),
                last_step: 0,
            }),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Progress for Plain {
    fn event(&self, event: Event<'_>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = match event {
            Event::Started { step, name } => {
                state.started.insert(step, Instant::now());
                state.last_step = state.last_step.max(step.0);
                writeln!(err, "#{} {name}", step.0)
            }
            Event::Output { step, data, .. } => {
                let elapsed = state
                    .started
                    .get(&step)
                    .map(Instant::elapsed)
                    .unwrap_or_default();
                let buf = state.partial.entry(step).or_default();
                buf.extend_from_slice(data);
                let mut result = Ok(());
                while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                    result = writeln!(err, "#{} {:.3} {text}", step.0, elapsed.as_secs_f64());
                }
                result
            }
            Event::Cached { step } => writeln!(err, "#{} CACHED", step.0),
            Event::Done { step, elapsed } => {
                flush_partial(&mut state, step, &mut err);
                writeln!(err, "#{} DONE {}\n", step.0, secs(elapsed))
            }
            Event::Failed { step, elapsed } => {
                flush_partial(&mut state, step, &mut err);
                writeln!(err, "#{} ERROR {}\n", step.0, secs(elapsed))
            }
            Event::Status { step, message } => writeln!(err, "#{} {message}", step.0),
        };
    }
}

fn flush_partial(state: &mut PlainState, step: StepId, err: &mut impl Write) {
    if let Some(rest) = state.partial.remove(&step).filter(|r| !r.is_empty()) {
        let _ = writeln!(err, "#{} {}", step.0, String::from_utf8_lossy(&rest));
    }
}

impl Drawer for Plain {
    fn note(&self, name: &str, lines: &[String]) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.last_step += 1;
        let id = state.last_step;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "#{id} {name}");
        for line in lines {
            let _ = writeln!(err, "#{id} {line}");
        }
        let _ = writeln!(err, "#{id} DONE 0.0s\n");
    }
}

/// A spinner per running step; finished steps stay as one line each, and
/// RUN output scrolls above them.
struct Tty {
    multi: MultiProgress,
    bars: Mutex<HashMap<StepId, (ProgressBar, String)>>,
}

impl Tty {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces a step's spinner by a permanent log line above the running
    /// steps.
    fn finish_bar(&self, step: StepId, suffix: &str) {
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        if let Some((bar, name)) = bars.remove(&step) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
            let _ = self.multi.println(format!(" => {name} {suffix}"));
        }
    }
}

impl Progress for Tty {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { step, name } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template(" {spinner} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_message(name.to_owned());
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(step, (bar, name.to_owned()));
                }
            }
            Event::Output { data, .. } => {
                for line in String::from_utf8_lossy(data).lines() {
                    let _ = self.multi.println(format!("    {line}"));
                }
            }
            Event::Cached { step } => self.finish_bar(step, "CACHED"),
            Event::Done { step, elapsed } => self.finish_bar(step, &secs(elapsed)),
            Event::Failed { step, elapsed } => {
                self.finish_bar(step, &format!("ERROR {}", secs(elapsed)));
            }
            Event::Status { message, .. } => {
                let _ = self.multi.println(format!("    {message}"));
            }
        }
    }
}

impl Drawer for Tty {
    fn note(&self, name: &str, lines: &[String]) {
        let _ = self.multi.println(format!(" => {name}"));
        for line in lines {
            let _ = self.multi.println(format!("    {line}"));
        }
    }

    fn finish(&self) {
        // Finished bars stay on screen as the build log.
    }
}
