//! What the metadata instructions do to the image config, and the history
//! lines they leave, exactly as BuildKit's `dockerfile2llb` writes them
//! (`created_by` is what `docker history` shows, so users compare it).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hoist_parser::dump::go_quote;
use hoist_parser::instruction::{Healthcheck, ShellOrExec};
use hoist_store::image_config::{self, EmptyObject, History, ImageConfig};

/// The shell for shell-form commands when the image sets none.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The argv a shell-form or exec-form command runs as (BuildKit's
/// `withShell`): shell form goes through the image's SHELL.
pub fn command_argv(config: &ImageConfig, command: &ShellOrExec) -> Vec<String> {
    match command {
        ShellOrExec::Exec(args) => args.clone(),
        ShellOrExec::Shell(line) => with_shell(config, line),
    }
}

/// `SHELL + [line]`, or `/bin/sh -c line` by default.
pub fn with_shell(config: &ImageConfig, line: &str) -> Vec<String> {
    let mut argv: Vec<String> = match &config.config.shell {
        Some(shell) if !shell.is_empty() => shell.clone(),
        _ => DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
    };
    argv.push(line.to_owned());
    argv
}

/// Sets `key=value` in an env list, replacing an earlier entry of the key;
/// returns the entry it replaced.
pub fn set_env(env: &mut Vec<String>, key: &str, value: &str) -> Option<String> {
    let entry = format!("{key}={value}");
    // An entry's key is the text before its first `=` (all of it without
    // one); a key holding `=` matches none. Comparing the prefix rather
    // than splitting each entry keeps long env lists cheap to scan.
    let plain = !key.contains('=');
    match env.iter_mut().find(|e| {
        plain
            && e.strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('='))
    }) {
        Some(existing) => Some(std::mem::replace(existing, entry)),
        None => {
            env.push(entry);
            None
        }
    }
}

/// The key of an env entry: the text before its first `=`, all of it
/// without one (Docker keeps a bare `KEY`).
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// Where each key of a stage's env list sits, kept beside the list so that
/// `ENV` replaces a key in place and expansion finds it without a scan
/// (32000 `ENV` lines were quadratic). It answers exactly as [`set_env`]
/// and [`get_env`] do on the same list: the first entry of a key is the one
/// replaced and read, and a key holding `=` matches nothing.
///
/// Every change to the list must go through [`EnvIndex::set`]; after any
/// other change, build the index again with [`EnvIndex::new`].
#[derive(Clone, Debug, Default)]
pub(crate) struct EnvIndex {
    positions: HashMap<String, usize>,
    /// The list's length when the index last saw it, to catch a list
    /// changed behind the index's back.
    len: usize,
}

impl EnvIndex {
    /// Indexes a list; of duplicate keys, the first entry counts.
    pub(crate) fn new(env: &[String]) -> Self {
        let mut positions = HashMap::with_capacity(env.len());
        for (at, entry) in env.iter().enumerate() {
            positions.entry(env_key(entry).to_owned()).or_insert(at);
        }
        Self {
            positions,
            len: env.len(),
        }
    }

    /// [`set_env`] through the index: replaces the key's entry in place or
    /// appends a new one; returns the entry it replaced.
    pub(crate) fn set(&mut self, env: &mut Vec<String>, key: &str, value: &str) -> Option<String> {
        debug_assert_eq!(env.len(), self.len, "env list changed behind its index");
        let entry = format!("{key}={value}");
        // Indexed keys never hold `=`, so such a key finds nothing here.
        match self.positions.get(key) {
            Some(&at) => Some(std::mem::replace(&mut env[at], entry)),
            None => {
                // The new entry's key is what precedes its first `=`: for
                // a key holding `=` (`K=V`), a shorter one (`K`) that may
                // already have an entry, which stays the first.
                self.positions
                    .entry(env_key(&entry).to_owned())
                    .or_insert(env.len());
                env.push(entry);
                self.len = env.len();
                None
            }
        }
    }

    /// [`get_env`] through the index.
    pub(crate) fn get<'a>(&self, env: &'a [String], key: &str) -> Option<&'a str> {
        debug_assert_eq!(env.len(), self.len, "env list changed behind its index");
        let at = *self.positions.get(key)?;
        match env[at].strip_prefix(key)?.strip_prefix('=') {
            Some(value) => Some(value),
            // A bare `KEY` first: a later `KEY=value` of a base image's list
            // is what `get_env` finds (rare, so a scan is fine).
            None => get_env(&env[at + 1..], key),
        }
    }
}

/// Looks a key up in an env list.
pub fn get_env<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    if key.contains('=') {
        return None;
    }
    env.iter()
        .find_map(|e| e.strip_prefix(key)?.strip_prefix('='))
}

/// Go's `fmt.Sprintf("%q", []string)`: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `fmt.Sprintf("%v", []string)`: `[a b]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Docker's `signal.ParseSignal`: a number, or a name with or without SIG.
pub fn is_valid_signal(signal: &str) -> bool {
    if let Ok(n) = signal.parse::<u32>() {
        return n > 0 && n <= 64;
    }
    let name = signal.strip_prefix("SIG").unwrap_or(signal);
    const NAMES: &[&str] = &[
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "UNUSED", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU",
        "XFSZ",
    ];
    if NAMES.contains(&name) {
        return true;
    }
    ["RTMIN", "RTMAX"].iter().any(|base| {
        name.strip_prefix(base).is_some_and(|rest| {
            rest.is_empty()
                || rest
                    .strip_prefix(['+', '-'])
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n <= 30))
        })
    })
}

/// The image config as BuildKit writes it from a Dockerfile that is not
/// UTF-8: each byte the parse carried ([`hoist_parser::bytes`]) becomes
/// U+FFFD, as Go's JSON encoder writes invalid UTF-8 (RUN still got the
/// bytes themselves).
pub fn lossy_config(config: ImageConfig) -> ImageConfig {
    fn walk(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(shown) = hoist_parser::bytes::lossy(s) {
                    *s = shown;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    walk(&mut v);
                    map.insert(hoist_parser::bytes::lossy(&key).into_owned(), v);
                }
            }
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&config) else {
        return config;
    };
    if !value.to_string().chars().any(|c| c >= '\u{10FF80}') {
        return config;
    }
    walk(&mut value);
    serde_json::from_value(value).unwrap_or(config)
}

/// The bytes of text an image config and a stage's build args hold: env
/// entries, label keys and values, ONBUILD triggers, history texts and
/// ARG names and values. Each expansion is capped, but without a cap on
/// their sum, `ENV B1=$A`, `ENV B2=$A`, … would grow memory by the cap on
/// every line.
///
/// It is measured once per stage ([`TextSize::measure`]) and then kept up
/// to date by the mutations that change those fields, so a check after
/// every instruction costs nothing rather than a pass over the config
/// (8000 `ENV` lines were quadratic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TextSize(u64);

impl TextSize {
    /// Sums the text of a config and args: the reference the tracked size
    /// must always equal.
    pub(crate) fn measure(config: &ImageConfig, args: &[(String, Option<String>)]) -> Self {
        let runtime = &config.config;
        let env = runtime.env.iter().flatten().map(String::len);
        let labels = runtime
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len());
        let onbuild = runtime.on_build.iter().flatten().map(String::len);
        let history = config.history.iter().map(history_len);
        let args = args.iter().map(|(k, v)| arg_len(k, v.as_deref()));
        Self(
            env.chain(labels)
                .chain(onbuild)
                .chain(history)
                .chain(args)
                .map(|n| n as u64)
                .sum(),
        )
    }

    pub(crate) fn bytes(self) -> u64 {
        self.0
    }

    fn replace(&mut self, added: usize, removed: usize) {
        self.0 = (self.0 + added as u64).saturating_sub(removed as u64);
    }

    /// [`EnvIndex::set`], counted.
    pub(crate) fn set_env(
        &mut self,
        index: &mut EnvIndex,
        env: &mut Vec<String>,
        key: &str,
        value: &str,
    ) {
        let old = index.set(env, key, value).map_or(0, |e| e.len());
        self.replace(key.len() + 1 + value.len(), old);
    }

    /// Sets a label, counted.
    pub(crate) fn insert_label(
        &mut self,
        labels: &mut BTreeMap<String, String>,
        key: String,
        value: String,
    ) {
        let added = key.len() + value.len();
        let key_len = key.len();
        let old = labels.insert(key, value).map_or(0, |v| key_len + v.len());
        self.replace(added, old);
    }

    /// Appends an ONBUILD trigger, counted.
    pub(crate) fn push_onbuild(&mut self, triggers: &mut Vec<String>, trigger: String) {
        self.replace(trigger.len(), 0);
        triggers.push(trigger);
    }

    /// Appends a history entry, counted.
    pub(crate) fn push_history(&mut self, history: &mut Vec<History>, entry: History) {
        self.replace(history_len(&entry), 0);
        history.push(entry);
    }

    /// Declares an ARG (replacing an earlier one of the same name, which
    /// moves to the end), counted.
    pub(crate) fn set_arg(
        &mut self,
        args: &mut Vec<(String, Option<String>)>,
        name: String,
        value: Option<String>,
    ) {
        let mut old = 0;
        args.retain(|(k, v)| {
            let keep = *k != name;
            if !keep {
                old += arg_len(k, v.as_deref());
            }
            keep
        });
        self.replace(arg_len(&name, value.as_deref()), old);
        args.push((name, value));
    }
}

fn history_len(entry: &History) -> usize {
    entry.created_by.as_ref().map_or(0, String::len) + entry.comment.as_ref().map_or(0, String::len)
}

fn arg_len(name: &str, value: Option<&str>) -> usize {
    name.len() + value.map_or(0, str::len)
}

/// A history entry as BuildKit's `commitToHistory` writes it.
pub fn history(created_by: String, empty_layer: bool, created: Option<&str>) -> History {
    History {
        created: created.map(str::to_owned),
        created_by: Some(created_by),
        comment: Some("buildkit.dockerfile.v0".to_owned()),
        empty_layer,
        author: None,
    }
}

/// Why an EXPOSE port spec is refused, in BuildKit's words.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("no port specified: {0}<empty>")]
    NoPort(String),
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("invalid containerPort: {port}")]
    ContainerPort {
        port: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("invalid range specified for port: {0}")]
    Range(String),
}

/// EXPOSE's port specs as `port/proto` entries, with ranges expanded
/// (BuildKit's `parsePortSpecs`).
pub fn parse_ports(specs: &[String]) -> Result<Vec<String>, PortError> {
    let mut ports = Vec::new();
    for spec in specs {
        // `[ip:][hostport:]port[/proto]`: only the container side counts.
        let container = spec.rsplit(':').next().unwrap_or(spec);
        let (range, proto) = container.split_once('/').unwrap_or((container, ""));
        if range.is_empty() {
            return Err(PortError::NoPort(spec.clone()));
        }
        let proto = match proto.to_ascii_lowercase().as_str() {
            "" => "tcp".to_owned(),
            p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
            other => return Err(PortError::Proto(other.to_owned())),
        };
        let invalid = |source| PortError::ContainerPort {
            port: range.to_owned(),
            source,
        };
        let (start, end) = match range.split_once('-') {
            None => {
                let port: u16 = range.parse().map_err(invalid)?;
                (port, port)
            }
            Some((a, b)) => {
                let a: u16 = a.parse().map_err(invalid)?;
                let b: u16 = b.parse().map_err(invalid)?;
                if b < a {
                    return Err(PortError::Range(range.to_owned()));
                }
                (a, b)
            }
        };
        for port in start..=end {
            ports.push(format!("{port}/{proto}"));
        }
    }
    Ok(ports)
}

/// Adds exposed ports to the config.
pub fn expose(config: &mut ImageConfig, ports: &[String]) {
    let exposed = config
        .config
        .exposed_ports
        .get_or_insert_with(BTreeMap::new);
    for port in ports {
        exposed.insert(port.clone(), EmptyObject {});
    }
}

/// HEALTHCHECK's config value (`NONE` disables an inherited check).
pub fn healthcheck_config(check: &Healthcheck) -> image_config::Healthcheck {
    let nanos =
        |d: &Option<Duration>| d.map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    match check {
        Healthcheck::None => image_config::Healthcheck {
            test: vec!["NONE".to_owned()],
            ..Default::default()
        },
        Healthcheck::Cmd {
            test,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match test {
                ShellOrExec::Exec(args) => {
                    let mut t = vec!["CMD".to_owned()];
                    t.extend(args.iter().cloned());
                    t
                }
                ShellOrExec::Shell(line) => vec!["CMD-SHELL".to_owned(), line.clone()],
            };
            image_config::Healthcheck {
                test,
                interval: nanos(interval),
                timeout: nanos(timeout),
                start_period: nanos(start_period),
                start_interval: nanos(start_interval),
                retries: i64::from(retries.unwrap_or(0)),
            }
        }
    }
}

/// BuildKit's `HEALTHCHECK %+v` history text.
pub fn healthcheck_created_by(check: &image_config::Healthcheck) -> String {
    let d = |n: i64| go_duration(Duration::from_nanos(u64::try_from(n).unwrap_or(0)));
    format!(
        "HEALTHCHECK {{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        go_list(&check.test),
        d(check.interval),
        d(check.timeout),
        d(check.start_period),
        d(check.start_interval),
        check.retries
    )
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `300ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = nanos / 1_000_000_000;
    let (hours, minutes) = (total_secs / 3600, (total_secs / 60) % 60);
    let seconds = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / unit` with its fraction, trailing zeros removed (`1.5`, `2`).
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_match_go() {
        for (nanos, expected) in [
            (0u64, "0s"),
            (500, "500ns"),
            (1_500, "1.5µs"),
            (300_000_000, "300ms"),
            (30_000_000_000, "30s"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
        ] {
            assert_eq!(
                go_duration(Duration::from_nanos(nanos)),
                expected,
                "{nanos}ns"
            );
        }
    }

    #[test]
    fn ports_follow_buildkit() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        for (input, expected) in [
            (s(&["80"]), Ok(s(&["80/tcp"]))),
            (s(&["80/UDP", "53/sctp"]), Ok(s(&["80/udp", "53/sctp"]))),
            (
                s(&["8000-8002"]),
                Ok(s(&["8000/tcp", "8001/tcp", "8002/tcp"])),
            ),
            (s(&["127.0.0.1:8080:80/tcp"]), Ok(s(&["80/tcp"]))),
            (s(&["80/http"]), Err("invalid proto: http".to_owned())),
            (s(&["x"]), Err("invalid containerPort: x".to_owned())),
            (
                s(&["90-80"]),
                Err("invalid range specified for port: 90-80".to_owned()),
            ),
            (
                s(&["/tcp"]),
                Err("no port specified: /tcp<empty>".to_owned()),
            ),
        ] {
            let got = parse_ports(&input).map_err(|e| e.to_string());
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn env_entries_replace_by_key() {
        let mut env = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
        set_env(&mut env, "A", "2");
        set_env(&mut env, "B", "x=y");
        assert_eq!(env, ["PATH=/bin", "A=2", "B=x=y"]);
        assert_eq!(get_env(&env, "B"), Some("x=y"));
        assert_eq!(get_env(&env, "C"), None);
    }

    /// The key is the text before the first `=`: prefixes of keys, keys
    /// holding `=` and entries without `=` (Docker keeps `KEY` alone) match
    /// as `split_once('=')` would have them.
    #[test]
    fn env_keys_match_whole_keys_only() {
        for (key, expected) in [
            ("A", Some("1")),
            ("AB", Some("2=3")),
            ("AB=2", None),
            ("", Some("empty")),
            ("LONE", None),
            ("LON", None),
        ] {
            let env: Vec<String> = ["A=1", "AB=2=3", "=empty", "LONE"]
                .map(str::to_owned)
                .to_vec();
            assert_eq!(get_env(&env, key), expected, "get_env {key:?}");
        }
        for (key, replaced, len) in [
            ("A", Some("A=1"), 4),
            ("AB", Some("AB=2=3"), 4),
            ("AB=2", None, 5),
            ("LONE", Some("LONE"), 4),
            ("LON", None, 5),
        ] {
            let mut env: Vec<String> = ["A=1", "AB=2=3", "=empty", "LONE"]
                .map(str::to_owned)
                .to_vec();
            let old = set_env(&mut env, key, "v");
            assert_eq!(old.as_deref(), replaced, "set_env {key:?}");
            assert_eq!(env.len(), len, "set_env {key:?}: {env:?}");
            assert!(
                env.contains(&format!("{key}=v")),
                "set_env {key:?}: {env:?}"
            );
        }
    }

    /// The index answers as the scanning `set_env`/`get_env` do, step by
    /// step, on a mixed sequence over a list with the awkward entries a
    /// base image may carry: duplicate keys, a bare `KEY` before a
    /// `KEY=value`, an empty key, and keys that are prefixes of others.
    #[test]
    fn env_index_matches_the_scanning_functions() {
        let base: Vec<String> = [
            "PATH=/bin",
            "A=1",
            "A=dup",
            "LONE",
            "LONE=late",
            "=empty",
            "AB=2",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut scanned = base.clone();
        let mut indexed = base;
        let mut index = EnvIndex::new(&indexed);
        let probes = [
            "A", "AB", "ABC", "LONE", "LON", "", "PATH", "NEW", "K=V", "K", "Z",
        ];
        let sets = [
            ("A", "2"),
            ("NEW", "x"),
            ("AB", "3=4"),
            ("K=V", "w"),
            ("K", "k"),
            ("LONE", "set"),
            ("", "blank"),
            ("NEW", ""),
            ("A", "again"),
            ("K=V", "twice"),
            ("Z", "z"),
            ("PATH", "/usr/bin"),
        ];
        for (at, (key, value)) in sets.into_iter().enumerate() {
            let want = set_env(&mut scanned, key, value);
            let got = index.set(&mut indexed, key, value);
            assert_eq!(got, want, "set {at} {key:?}");
            assert_eq!(indexed, scanned, "after set {at} {key:?}");
            for probe in probes {
                assert_eq!(
                    index.get(&indexed, probe),
                    get_env(&scanned, probe),
                    "get {probe:?} after set {at} {key:?}"
                );
            }
        }
        // A fresh index over the result agrees with the one kept up to date.
        let fresh = EnvIndex::new(&indexed);
        for probe in probes {
            assert_eq!(
                fresh.get(&indexed, probe),
                index.get(&indexed, probe),
                "{probe:?}"
            );
        }
    }

    /// The tracked size equals a fresh measurement after every step of a
    /// mixed sequence: new and replaced env entries and labels, ARGs
    /// declared again, ONBUILD triggers, history entries.
    #[test]
    fn text_size_tracks_a_full_measurement() {
        enum Op {
            Env(&'static str, &'static str),
            Label(&'static str, &'static str),
            Arg(&'static str, Option<&'static str>),
            Onbuild(&'static str),
            History(&'static str),
        }
        let mut config = ImageConfig::scratch("amd64", "linux");
        config.config.env = Some(vec!["PATH=/bin".to_owned(), "LONE".to_owned()]);
        config
            .history
            .push(history("FROM base".to_owned(), true, None));
        let mut args = vec![("GLOBAL".to_owned(), Some("g".to_owned()))];
        let mut size = TextSize::measure(&config, &args);
        let mut index = EnvIndex::new(config.config.env.as_deref().unwrap_or_default());
        let ops = [
            Op::Env("A", "1"),
            Op::Env("A", "a much longer value"),
            Op::Env("LONE", "now set"),
            Op::Env("PATH", ""),
            Op::Label("l", "one"),
            Op::Label("l", "replaced"),
            Op::Label("m", ""),
            Op::Arg("X", None),
            Op::Arg("X", Some("declared again")),
            Op::Arg("GLOBAL", None),
            Op::Onbuild("RUN echo hi"),
            Op::History("ENV A=1"),
            Op::Env("B", "x=y"),
        ];
        for (at, op) in ops.into_iter().enumerate() {
            let runtime = &mut config.config;
            match op {
                Op::Env(k, v) => {
                    size.set_env(&mut index, runtime.env.get_or_insert_default(), k, v)
                }
                Op::Label(k, v) => size.insert_label(
                    runtime.labels.get_or_insert_default(),
                    k.to_owned(),
                    v.to_owned(),
                ),
                Op::Arg(k, v) => size.set_arg(&mut args, k.to_owned(), v.map(str::to_owned)),
                Op::Onbuild(t) => {
                    size.push_onbuild(runtime.on_build.get_or_insert_default(), t.to_owned())
                }
                Op::History(h) => {
                    size.push_history(&mut config.history, history(h.to_owned(), true, None))
                }
            }
            assert_eq!(size, TextSize::measure(&config, &args), "after op {at}");
        }
        assert!(size.bytes() > 0);
    }

    #[test]
    fn history_texts_match_buildkit() {
        let argv = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "echo \"hi\"".to_owned(),
        ];
        assert_eq!(go_quoted_list(&argv), r#"["/bin/sh" "-c" "echo \"hi\""]"#);
        let check = healthcheck_config(&Healthcheck::Cmd {
            test: ShellOrExec::Shell("curl -f x".to_owned()),
            interval: Some(Duration::from_secs(30)),
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: Some(3),
        });
        assert_eq!(
            healthcheck_created_by(&check),
            "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"
        );
    }
}
