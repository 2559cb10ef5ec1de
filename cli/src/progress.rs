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
    /// Vertex names of the steps still running, to repeat a step's header
    /// when its lines follow another step's.
    names: HashMap<StepId, String>,
    /// The step whose lines were printed last, while it runs.
    current: Option<StepId>,
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
                names: HashMap::new(),
                current: None,
                partial: HashMap::new(),
                last_step: 0,
            }),
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl PlainState {
    /// Makes `step` the current one, as BuildKit's plain printer does when
    /// steps of parallel stages interleave: the step printed last and
    /// still running gets `#N ...`, and `step` its header again.
    fn switch_to(&mut self, step: StepId, err: &mut impl Write) -> std::io::Result<()> {
        if self.current == Some(step) {
            return Ok(());
        }
        if let Some(previous) = self.current.take() {
            writeln!(err, "#{} ...\n", previous.0)?;
        }
        if let Some(name) = self.names.get(&step) {
            writeln!(err, "#{} {name}", step.0)?;
            self.current = Some(step);
        }
        Ok(())
    }

    /// `step` ended: its next lines, if any, need no header.
    fn end(&mut self, step: StepId) {
        self.names.remove(&step);
        self.started.remove(&step);
        if self.current == Some(step) {
            self.current = None;
        }
    }
}

impl Progress for Plain {
    fn event(&self, event: Event<'_>) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = plain_event(&mut state, event, &mut err);
    }
}

fn plain_event(
    state: &mut PlainState,
    event: Event<'_>,
    err: &mut impl Write,
) -> std::io::Result<()> {
    match event {
        Event::Started { step, name } => {
            state.started.insert(step, Instant::now());
            state
                .names
                .insert(step, hoist_parser::bytes::lossy(name).into_owned());
            state.last_step = state.last_step.max(step.0);
            state.switch_to(step, err)
        }
        Event::Output { step, data, .. } => {
            let elapsed = state
                .started
                .get(&step)
                .map(Instant::elapsed)
                .unwrap_or_default();
            let mut buf = state.partial.remove(&step).unwrap_or_default();
            buf.extend_from_slice(data);
            if buf.contains(&b'\n') {
                state.switch_to(step, err)?;
            }
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]);
                writeln!(err, "#{} {:.3} {text}", step.0, elapsed.as_secs_f64())?;
            }
            state.partial.insert(step, buf);
            Ok(())
        }
        Event::Cached { step } => {
            state.switch_to(step, err)?;
            writeln!(err, "#{} CACHED", step.0)
        }
        Event::Done { step, elapsed } => {
            finish_step(state, step, err, &format!("DONE {}", secs(elapsed)))
        }
        Event::Failed { step, elapsed } => {
            finish_step(state, step, err, &format!("ERROR {}", secs(elapsed)))
        }
        Event::Canceled { step, .. } => finish_step(state, step, err, "CANCELED"),
        Event::Warning { message } => {
            writeln!(err, "warning: {}", hoist_parser::bytes::lossy(message))
        }
        Event::Status { step, message } => {
            state.switch_to(step, err)?;
            writeln!(err, "#{} {}", step.0, hoist_parser::bytes::lossy(message))
        }
    }
}

/// A step's last line: its unfinished output line, then `#N DONE 0.3s`.
fn finish_step(
    state: &mut PlainState,
    step: StepId,
    err: &mut impl Write,
    last: &str,
) -> std::io::Result<()> {
    state.switch_to(step, err)?;
    if let Some(rest) = state.partial.remove(&step).filter(|r| !r.is_empty()) {
        writeln!(err, "#{} {}", step.0, String::from_utf8_lossy(&rest))?;
    }
    state.end(step);
    writeln!(err, "#{} {last}\n", step.0)
}

impl Drawer for Plain {
    fn note(&self, name: &str, lines: &[String]) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.last_step += 1;
        let id = state.last_step;
        let mut err = std::io::stderr().lock();
        if let Some(previous) = state.current.take() {
            let _ = writeln!(err, "#{} ...\n", previous.0);
        }
        let _ = writeln!(err, "#{id} {name}");
        for line in lines {
            let _ = writeln!(err, "#{id} {line}");
        }
        let _ = writeln!(err, "#{id} DONE 0.0s\n");
    }
}

/// BuildKit's tty display: one group per running stage (its running step,
/// with a spinner, and that step's last lines of output under it);
/// finished steps stay as one line each above the groups.
struct Tty {
    multi: MultiProgress,
    groups: Mutex<HashMap<StepId, Group>>,
}

/// How many lines of a running step's output its group shows (BuildKit
/// shows six).
const TAIL_LINES: usize = 6;

struct Group {
    bar: ProgressBar,
    /// The step's last lines of output, under its bar.
    log: ProgressBar,
    name: String,
    tail: std::collections::VecDeque<String>,
    partial: Vec<u8>,
}

impl Group {
    fn add_output(&mut self, data: &[u8]) {
        self.partial.extend_from_slice(data);
        while let Some(pos) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            // A progress bar's carriage returns: keep what shows last.
            let shown = text.rsplit('\r').next().unwrap_or_default();
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(format!("    {shown}"));
        }
        let lines: Vec<&str> = self.tail.iter().map(String::as_str).collect();
        self.log.set_message(lines.join("\n"));
    }
}

impl Tty {
    fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Replaces a step's group by a permanent log line above the running
    /// groups.
    fn finish_group(&self, step: StepId, suffix: &str) {
        let Ok(mut groups) = self.groups.lock() else {
            return;
        };
        if let Some(group) = groups.remove(&step) {
            for bar in [&group.log, &group.bar] {
                bar.finish_and_clear();
                self.multi.remove(bar);
            }
            let _ = self.multi.println(format!(" => {} {suffix}", group.name));
        }
    }
}

impl Progress for Tty {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Started { step, name } => {
                let name = &*hoist_parser::bytes::lossy(name);
                let bar = self.multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template(" {spinner} {msg} {elapsed:.dim}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_message(name.to_owned());
                bar.enable_steady_tick(Duration::from_millis(100));
                let log = self.multi.insert_after(&bar, ProgressBar::new_spinner());
                log.set_style(
                    ProgressStyle::with_template("{msg:.dim}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                if let Ok(mut groups) = self.groups.lock() {
                    groups.insert(
                        step,
                        Group {
                            bar,
                            log,
                            name: name.to_owned(),
                            tail: Default::default(),
                            partial: Vec::new(),
                        },
                    );
                }
            }
            Event::Output { step, data, .. } => {
                if let Ok(mut groups) = self.groups.lock()
                    && let Some(group) = groups.get_mut(&step)
                {
                    group.add_output(data);
                }
            }
            Event::Cached { step } => self.finish_group(step, "CACHED"),
            Event::Done { step, elapsed } => self.finish_group(step, &secs(elapsed)),
            Event::Failed { step, elapsed } => {
                self.finish_group(step, &format!("ERROR {}", secs(elapsed)));
            }
            Event::Canceled { step, .. } => self.finish_group(step, "CANCELED"),
            Event::Warning { message } => {
                let message = hoist_parser::bytes::lossy(message);
                let _ = self.multi.println(format!("warning: {message}"));
            }
            Event::Status { message, .. } => {
                let message = hoist_parser::bytes::lossy(message);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(events: &[Event<'_>]) -> String {
        let mut state = Plain::new().state.into_inner().unwrap();
        let mut out = Vec::new();
        for event in events {
            let event = match event {
                Event::Started { step, name } => Event::Started { step: *step, name },
                Event::Output { step, stream, data } => Event::Output {
                    step: *step,
                    stream: *stream,
                    data,
                },
                Event::Cached { step } => Event::Cached { step: *step },
                Event::Done { step, .. } => Event::Done {
                    step: *step,
                    elapsed: Duration::ZERO,
                },
                Event::Failed { step, .. } => Event::Failed {
                    step: *step,
                    elapsed: Duration::ZERO,
                },
                Event::Canceled { step, elapsed } => Event::Canceled {
                    step: *step,
                    elapsed: *elapsed,
                },
                Event::Status { step, message } => Event::Status {
                    step: *step,
                    message,
                },
                Event::Warning { message } => Event::Warning { message },
            };
            plain_event(&mut state, event, &mut out).unwrap();
        }
        // Output lines carry the time since their step started.
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| {
                let words: Vec<&str> = l.splitn(3, ' ').collect();
                match words[..] {
                    [id, time, rest] if time.len() == 5 && time.parse::<f64>().is_ok() => {
                        format!("{id} T {rest}")
                    }
                    _ => l.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Steps of parallel stages interleave as BuildKit's plain printer
    /// has them: the step printed last gets `#N ...` and the next one its
    /// header again, so every line still reads with its step.
    #[test]
    fn r8_plain_output_interleaves_like_buildkit() {
        let (a, b) = (StepId(2), StepId(4));
        let out = |step, data: &'static [u8]| Event::Output {
            step,
            stream: hoist_builder::progress::Stream::Stdout,
            data,
        };
        let done = |step| Event::Done {
            step,
            elapsed: Duration::ZERO,
        };
        let text = plain(&[
            Event::Started {
                step: a,
                name: "[a 2/2] RUN work",
            },
            out(a, b"a1\n"),
            Event::Started {
                step: b,
                name: "[b 2/2] RUN work",
            },
            out(b, b"b1\npart"),
            out(a, b"a2\n"),
            out(b, b"ial\n"),
            done(b),
            Event::Canceled {
                step: a,
                elapsed: Duration::ZERO,
            },
        ]);
        let want = "\
#2 [a 2/2] RUN work
#2 T a1
#2 ...

#4 [b 2/2] RUN work
#4 T b1
#4 ...

#2 [a 2/2] RUN work
#2 T a2
#2 ...

#4 [b 2/2] RUN work
#4 T partial
#4 DONE 0.0s

#2 [a 2/2] RUN work
#2 CANCELED\n";
        assert_eq!(text, want);
    }

    /// One step at a time prints as before: no `...`, no repeated header.
    #[test]
    fn r8_plain_output_of_sequential_steps_is_unchanged() {
        let text = plain(&[
            Event::Started {
                step: StepId(1),
                name: "[1/2] FROM scratch",
            },
            Event::Done {
                step: StepId(1),
                elapsed: Duration::ZERO,
            },
            Event::Started {
                step: StepId(2),
                name: "[2/2] RUN x",
            },
            Event::Output {
                step: StepId(2),
                stream: hoist_builder::progress::Stream::Stdout,
                data: b"hi\n",
            },
            Event::Cached { step: StepId(2) },
        ]);
        assert_eq!(
            text,
            "#1 [1/2] FROM scratch\n#1 DONE 0.0s\n\n#2 [2/2] RUN x\n#2 T hi\n#2 CACHED"
        );
    }
}
