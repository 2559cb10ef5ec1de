//! Drawing pulls and pushes as `docker pull`/`docker push` do: one
//! indicatif bar per layer on a terminal, one line per finished layer
//! otherwise. Lines go to stdout, like Docker's.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use hoist_store::registry::TransferProgress;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_spec::image::Descriptor;

/// Which verb's words to use.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Pull,
    Push,
}

impl Direction {
    fn exists(self) -> &'static str {
        match self {
            Direction::Pull => "Already exists",
            Direction::Push => "Layer already exists",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Direction::Pull => "Pull complete",
            Direction::Push => "Pushed",
        }
    }

    fn busy(self) -> &'static str {
        match self {
            Direction::Pull => "Downloading",
            Direction::Push => "Pushing",
        }
    }
}

/// The first 12 hex characters of a digest, Docker's short layer ID.
pub fn short_id(descriptor: &Descriptor) -> String {
    let hex = descriptor.digest().digest();
    hex[..hex.len().min(12)].to_owned()
}

/// Makes the drawer: bars when stdout is a terminal, lines otherwise,
/// nothing when quiet.
pub fn drawer(direction: Direction, quiet: bool) -> Box<dyn TransferDrawer> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stdout().is_terminal() {
        Box::new(Bars::new(direction))
    } else {
        Box::new(Lines { direction })
    }
}

/// A [`TransferProgress`] that can also print the verb's own lines.
pub trait TransferDrawer: TransferProgress {
    /// A line of the verb's (`Digest: ...`), after any bars.
    fn line(&self, text: &str);
    fn as_progress(&self) -> &dyn TransferProgress;
}

struct Silent;

impl TransferProgress for Silent {}

impl TransferDrawer for Silent {
    fn line(&self, _text: &str) {}
    fn as_progress(&self) -> &dyn TransferProgress {
        self
    }
}

struct Lines {
    direction: Direction,
}

impl Lines {
    fn print(&self, layer: &Descriptor, status: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}: {status}", short_id(layer));
    }
}

impl TransferProgress for Lines {
    fn exists(&self, layer: &Descriptor) {
        self.print(layer, self.direction.exists());
    }
    fn started(&self, layer: &Descriptor) {
        if self.direction == Direction::Pull {
            self.print(layer, "Pulling fs layer");
        }
    }
    fn finished(&self, layer: &Descriptor) {
        self.print(layer, self.direction.done());
    }
    fn mounted(&self, layer: &Descriptor, from: &str) {
        self.print(layer, &format!("Mounted from {from}"));
    }
}

impl TransferDrawer for Lines {
    fn line(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
    }
    fn as_progress(&self) -> &dyn TransferProgress {
        self
    }
}

struct Bars {
    direction: Direction,
    multi: MultiProgress,
    bars: Mutex<Vec<(String, ProgressBar)>>,
}

impl Bars {
    fn new(direction: Direction) -> Self {
        Bars {
            direction,
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            bars: Mutex::new(Vec::new()),
        }
    }

    fn bar(&self, layer: &Descriptor) -> ProgressBar {
        let key = layer.digest().to_string();
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, bar)) = bars.iter().find(|(k, _)| *k == key) {
            return bar.clone();
        }
        let bar = self.multi.add(ProgressBar::new(layer.size()));
        // Docker's look: `Pushing [=====>     ] 12.3MB/45.6MB`.
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix}: {msg} [{bar:50}] {decimal_bytes}/{decimal_total_bytes}",
            )
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(short_id(layer));
        bar.set_message("Waiting");
        bars.push((key, bar.clone()));
        bar
    }

    fn done(&self, layer: &Descriptor, status: String) {
        let bar = self.bar(layer);
        bar.set_style(
            ProgressStyle::with_template("{prefix}: {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.finish_with_message(status);
    }
}

impl TransferProgress for Bars {
    fn resolved(&self, layers: &[Descriptor]) {
        for layer in layers {
            self.bar(layer);
        }
    }
    fn exists(&self, layer: &Descriptor) {
        self.done(layer, self.direction.exists().to_owned());
    }
    fn started(&self, layer: &Descriptor) {
        let bar = self.bar(layer);
        bar.set_message(self.direction.busy());
        bar.set_position(0);
    }
    fn advanced(&self, layer: &Descriptor, done: u64) {
        self.bar(layer).set_position(done);
    }
    fn finished(&self, layer: &Descriptor) {
        self.done(layer, self.direction.done().to_owned());
    }
    fn mounted(&self, layer: &Descriptor, from: &str) {
        self.done(layer, format!("Mounted from {from}"));
    }
}

impl TransferDrawer for Bars {
    fn line(&self, text: &str) {
        // Before the first bar or after the last one finished: plain
        // output, below the bars (indicatif leaves the cursor at the end of
        // the last one).
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        if !bars.is_empty() {
            bars.clear();
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{text}");
    }
    fn as_progress(&self) -> &dyn TransferProgress {
        self
    }
}
