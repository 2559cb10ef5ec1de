//! Seccomp for RUN: Docker-format profiles, compiled to BPF by the parent
//! and loaded by the child just before exec (after no_new_privs, as runc
//! does when the spec asks for no_new_privs, which BuildKit's does).
//!
//! The default profile, `default.json` beside this file, mirrors moby's
//! `profiles/seccomp/default.json` at github.com/moby/profiles/seccomp
//! v0.2.3, the version BuildKit HEAD and moby HEAD vendor: its allow-list,
//! its argument filters (clone's namespace flags, personality, socket
//! families) and its capability-conditional rules. It is data, loaded by
//! the same parser as `--security-opt seccomp=PROFILE.json`, and filtered
//! the way moby's `setupSeccomp` does (arches, capabilities in the bounding
//! set, minimum kernel) before it is compiled.
//!
//! Why `seccompiler` (rust-vmm, the compiler Firecracker uses) and not
//! hand-written BPF or libseccomp: filters are built from typed rules in
//! safe Rust by a well-reviewed, fuzzed crate, jump offsets included;
//! libseccomp would add a C library to link and ship. Its limits, and how
//! they are met here:
//! - one match action per filter: the profile becomes several filters. The
//!   first returns the default action for every syscall the profile does
//!   not name (and allows the rest); then one filter per other action
//!   returns that action for its rules and allows everything else. The
//!   kernel runs every filter and keeps the most restrictive result, the
//!   last-installed one among equals, which is libseccomp's result for a
//!   profile whose rules do not overlap (Docker's do not).
//! - one architecture per filter (x86_64, aarch64, riscv64, no 32-bit
//!   ABI): seccompiler compiles each ABI's rules to a body, whose own
//!   architecture check is cut off (`body`), and `dispatch` puts the
//!   bodies behind one `seccomp_data.arch` check, as libseccomp does for a
//!   filter with several architectures: the profile's ABIs in its order,
//!   native first; x86_64 and x32 share an `AUDIT_ARCH` and are told apart
//!   by `__X32_SYSCALL_BIT`; any other architecture is killed, as is an x32
//!   syscall when the profile does not list x32. So 32-bit programs (i386
//!   and x32 on x86_64, arm on arm64) run under the same profile, as under
//!   Docker, whose default `archMap` lists them.
//! - seccompiler tests the syscall number against each rule's in turn (five
//!   instructions a syscall): each body is instead a binary tree on the
//!   number (see [`body`]), and seccompiler only compiles the argument
//!   checks of the few syscalls that have them. The kernel takes at most
//!   4096 instructions per filter: the bodies of one action share one
//!   filter while they fit, and go on in another.
//! - no name table: `syscalls.rs` gets the numbers for each ABI.
mod syscalls;

use syscalls::{Abi, X32_SYSCALL_BIT};

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use serde::Deserialize;

use crate::error::SandboxError;

/// A seccomp profile in Docker's JSON format (`docker run --security-opt
/// seccomp=PROFILE.json`), as moby's `seccomp.Seccomp` type reads it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    #[serde(default)]
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub arch_map: Vec<ArchMap>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// An `archMap` entry: a native architecture and its sub-architectures.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Option<Vec<String>>,
}

/// One entry of `syscalls`: names, an action, argument conditions (all of
/// them must hold) and the conditions under which the entry applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default)]
    pub args: Option<Vec<SyscallArg>>,
    #[serde(default)]
    pub includes: Option<RuleFilter>,
    #[serde(default)]
    pub excludes: Option<RuleFilter>,
}

/// An argument condition: `args[index] <op> value` (`MASKED_EQ`:
/// `args[index] & value == value_two`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallArg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// `includes`/`excludes`: Go architecture names, capabilities of the
/// bounding set, a minimum kernel version.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleFilter {
    #[serde(default)]
    pub arches: Vec<String>,
    #[serde(default)]
    pub caps: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

/// The compiled filters, in the order they are installed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filters(pub Vec<BpfProgram>);

impl SeccompProfile {
    /// Docker's default profile (see the module doc), parsed once.
    pub fn docker_default() -> Arc<SeccompProfile> {
        static DEFAULT: OnceLock<Arc<SeccompProfile>> = OnceLock::new();
        DEFAULT
            .get_or_init(|| {
                let profile = Self::from_json(include_str!("default.json"))
                    .expect("the built-in seccomp profile parses");
                Arc::new(profile)
            })
            .clone()
    }

    /// Parses a Docker-format profile.
    pub fn from_json(text: &str) -> Result<Self, SandboxError> {
        let profile: SeccompProfile = serde_json::from_str(text)
            .map_err(|e| SandboxError::Seccomp(format!("decoding seccomp profile failed: {e}")))?;
        profile.validate()?;
        Ok(profile)
    }

    /// Reads and parses the profile at `path`.
    pub fn load(path: &Path) -> Result<Self, SandboxError> {
        let text =
            fs_err::read_to_string(path).map_err(|e| SandboxError::Seccomp(e.to_string()))?;
        Self::from_json(&text).map_err(|e| match e {
            SandboxError::Seccomp(msg) => {
                SandboxError::Seccomp(format!("{}: {msg}", path.display()))
            }
            e => e,
        })
    }

    fn validate(&self) -> Result<(), SandboxError> {
        let bad = |msg: String| Err(SandboxError::Seccomp(msg));
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return bad(
                "both 'architectures' and 'archMap' are specified in the seccomp profile, \
                 use either 'architectures' or 'archMap'"
                    .into(),
            );
        }
        if !self.default_action.is_empty() {
            parse_action(&self.default_action, self.default_errno_ret)?;
        }
        for rule in &self.syscalls {
            if !rule.name.is_empty() && !rule.names.is_empty() {
                return bad(
                    "both 'name' and 'names' are specified in the seccomp profile, \
                     use either 'name' or 'names'"
                        .into(),
                );
            }
            parse_action(&rule.action, rule.errno_ret)?;
            for arg in rule.args.iter().flatten() {
                condition(arg, SeccompCmpArgLen::Qword)?;
            }
            for filter in [&rule.includes, &rule.excludes].into_iter().flatten() {
                if let Some(k) = &filter.min_kernel {
                    parse_kernel(k)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the profile filters anything: moby treats a profile with no
    /// default action and no syscalls as seccomp disabled.
    pub fn is_empty(&self) -> bool {
        self.default_action.is_empty() && self.syscalls.is_empty()
    }

    /// The BPF filters for a process whose bounding set holds `caps`
    /// (`CAP_*` names) on this machine's architecture and kernel.
    pub(crate) fn compile(&self, caps: &[&str]) -> Result<Filters, SandboxError> {
        if self.is_empty() {
            return Ok(Filters::default());
        }
        let kernel = running_kernel();
        self.compile_for(caps, kernel)
    }

    fn compile_for(&self, caps: &[&str], kernel: (u32, u32)) -> Result<Filters, SandboxError> {
        let (native, arch) = Abi::native().ok_or_else(|| {
            SandboxError::Seccomp(format!(
                "seccomp filters are not supported on {}; use --security-opt seccomp=unconfined",
                std::env::consts::ARCH
            ))
        })?;
        let abis = self.abis(native);
        let default = parse_action(&self.default_action, self.default_errno_ret)?;
        // The rules that apply here, with their actions. As in moby, a
        // rule's `arches` name the native architecture, whatever the ABI.
        let mut rules = Vec::new();
        let mut actions: Vec<SeccompAction> = Vec::new();
        for rule in &self.syscalls {
            if !applies(rule, arch, caps, kernel)? {
                continue;
            }
            let action = parse_action(&rule.action, rule.errno_ret)?;
            // runc skips a rule whose action is the default one.
            if action == default {
                continue;
            }
            if action != SeccompAction::Allow && !actions.contains(&action) {
                actions.push(action.clone());
            }
            rules.push((rule, action));
        }
        // Per ABI: every named syscall, whatever its action, passes the
        // first filter; each other action has a filter of its own.
        let mut named = Vec::new();
        let mut by_action: Vec<Vec<(Abi, Rules)>> = vec![Vec::new(); actions.len()];
        for &abi in &abis {
            let mut all = Rules::default();
            let mut mine = vec![Rules::default(); actions.len()];
            for (rule, action) in &rules {
                let conditions = rule_conditions(rule, abi)?;
                let single = (!rule.name.is_empty()).then_some(&rule.name);
                for name in rule.names.iter().chain(single) {
                    // Names this ABI lacks are skipped, as libseccomp does.
                    let Some(nr) = abi.number(name) else {
                        continue;
                    };
                    all.add(nr, &conditions);
                    if let Some(i) = actions.iter().position(|a| a == action) {
                        mine[i].add(nr, &conditions);
                    }
                }
            }
            named.push((abi, all));
            for (i, rules) in mine.into_iter().enumerate() {
                by_action[i].push((abi, rules));
            }
        }
        let mut programs = Vec::new();
        if default != SeccompAction::Allow {
            programs.extend(dispatch(&abis, named, &default, &SeccompAction::Allow)?);
        }
        for (action, rules) in actions.iter().zip(by_action) {
            programs.extend(dispatch(&abis, rules, &SeccompAction::Allow, action)?);
        }
        Ok(Filters(programs))
    }

    /// The ABIs the filter covers, native first: the native entry of
    /// `archMap` with its sub-architectures, or `architectures` (moby's
    /// `setupSeccomp`), less those this machine cannot run. libseccomp
    /// always covers the native one.
    fn abis(&self, native: Abi) -> Vec<Abi> {
        let names: Vec<&str> = if self.arch_map.is_empty() {
            self.architectures.iter().map(String::as_str).collect()
        } else {
            self.arch_map
                .iter()
                .find(|m| Abi::runnable(&m.architecture) == Some(native))
                .map(|m| {
                    let subs = m.sub_architectures.iter().flatten();
                    std::iter::once(&m.architecture)
                        .chain(subs)
                        .map(String::as_str)
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut abis = vec![native];
        for abi in names.into_iter().filter_map(Abi::runnable) {
            if !abis.contains(&abi) {
                abis.push(abi);
            }
        }
        abis
    }
}

/// The rules of one filter: per syscall, `None` to match it always, or the
/// rules of which one must match.
#[derive(Default, Clone)]
struct Rules(BTreeMap<i64, Option<Vec<SeccompRule>>>);

impl Rules {
    fn add(&mut self, nr: i64, conditions: &[SeccompRule]) {
        let entry = self.0.entry(nr).or_insert_with(|| Some(Vec::new()));
        match entry {
            None => {}
            Some(_) if conditions.is_empty() => *entry = None,
            Some(rules) => rules.extend(conditions.iter().cloned()),
        }
    }
}

/// The kernel's limit on one filter (`BPF_MAXINSNS`).
const MAX_INSNS: usize = 4096;

const LD_W_ABS: u16 = 0x20;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// One ABI's rules as a body: the instructions after its architecture
/// check, starting with the load of the syscall number and ending in
/// returns on every path. Jumps are relative, so the body can sit anywhere
/// in a larger program.
///
/// The syscall number is looked up in a binary tree of `jge` over the
/// ranges of numbers that share a verdict (libseccomp's
/// `SCMP_FLTATR_CTL_OPTIMIZE=2` makes such a tree too), not in a chain of
/// `jeq`s: Docker's profile takes about eight comparisons a syscall where
/// the chain took up to a thousand, and about 300 instructions an ABI
/// where it took 1700. A syscall whose rules look at its arguments gets a
/// leaf compiled by seccompiler, for its number alone. The kernel runs the
/// whole filter once for each syscall number when it loads it (to cache the
/// numbers always allowed) and then on every syscall it could not cache,
/// so every RUN pays for the filter's length.
fn body(
    rules: Rules,
    abi: Abi,
    mismatch: &SeccompAction,
    matched: &SeccompAction,
) -> Result<Vec<sock_filter>, SandboxError> {
    #[cfg(test)]
    if tests::CHAINS.with(std::cell::Cell::get) {
        let rules = rules
            .0
            .into_iter()
            .map(|(nr, r)| (nr, r.unwrap_or_default()));
        return seccompiler_body(rules.collect(), abi, mismatch, matched);
    }
    let mismatch_ret = u32::from(mismatch.clone());
    let matched_ret = u32::from(matched.clone());
    // Ranges `[start, next start)` covering every u32, in order.
    let mut ranges: Vec<(u32, Leaf)> = vec![(0, Leaf::Return(mismatch_ret))];
    for (nr, conditions) in rules.0 {
        let nr = u32::try_from(nr).map_err(|_| {
            SandboxError::Seccomp(format!("syscall number {nr} out of range for {abi:?}"))
        })?;
        let leaf = match conditions {
            None => Leaf::Return(matched_ret),
            Some(conditions) => Leaf::Code(seccompiler_body(
                BTreeMap::from([(i64::from(nr), conditions)]),
                abi,
                mismatch,
                matched,
            )?),
        };
        push_range(&mut ranges, nr, leaf);
        if let Some(next) = nr.checked_add(1) {
            push_range(&mut ranges, next, Leaf::Return(mismatch_ret));
        }
    }
    let mut code = vec![ins(LD_W_ABS, 0, 0, DATA_NR)];
    code.extend(tree(&ranges));
    Ok(code)
}

/// What a range of syscall numbers gets: a verdict, or a check of the
/// arguments (for one number) that ends in returns.
#[derive(Debug, PartialEq)]
enum Leaf {
    Return(u32),
    Code(Vec<sock_filter>),
}

/// Appends the range starting at `start`, merging it into the one before
/// when both return the same verdict; a range starting at the same number
/// replaces the one before.
fn push_range(ranges: &mut Vec<(u32, Leaf)>, start: u32, leaf: Leaf) {
    if ranges.last().is_some_and(|(s, _)| *s == start) {
        ranges.pop();
    }
    if let (Some((_, Leaf::Return(last))), Leaf::Return(new)) = (ranges.last(), &leaf)
        && last == new
    {
        return;
    }
    ranges.push((start, leaf));
}

/// A balanced binary search over `ranges` (sorted by start, the first
/// starting at 0) on the syscall number in the accumulator: `jge` splits
/// them in halves; a jump too long for its 8-bit offset goes through `ja`.
fn tree(ranges: &[(u32, Leaf)]) -> Vec<sock_filter> {
    if let [(_, leaf)] = ranges {
        return match leaf {
            Leaf::Return(ret) => vec![ins(RET_K, 0, 0, *ret)],
            Leaf::Code(code) => code.clone(),
        };
    }
    let mid = ranges.len() / 2;
    let (left, right) = (tree(&ranges[..mid]), tree(&ranges[mid..]));
    let split = ranges[mid].0;
    let mut code = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // nr >= split: over the left half.
        Ok(skip) => code.push(ins(JMP_JGE_K, skip, 0, split)),
        Err(_) => {
            code.push(ins(JMP_JGE_K, 0, 1, split));
            code.push(ins(JMP_JA, 0, 0, left.len() as u32));
        }
    }
    code.extend(left);
    code.extend(right);
    code
}

/// Rules compiled by seccompiler, as a chain of `jeq`s on the syscall
/// number, its architecture check cut off: a [`body`] of its own.
fn seccompiler_body(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    abi: Abi,
    mismatch: &SeccompAction,
    matched: &SeccompAction,
) -> Result<Vec<sock_filter>, SandboxError> {
    let err = |e: seccompiler::BackendError| {
        SandboxError::Seccomp(format!("compiling the seccomp filter for {abi:?}: {e}"))
    };
    // The target only picks the architecture check, which is cut off.
    let filter = SeccompFilter::new(rules, mismatch.clone(), matched.clone(), TargetArch::x86_64)
        .map_err(err)?;
    let program = BpfProgram::try_from(filter).map_err(err)?;
    let check = [
        ins(LD_W_ABS, 0, 0, DATA_ARCH),
        ins(JMP_JEQ_K, 1, 0, Abi::X86_64.audit_arch()),
        ins(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    match program.strip_prefix(&check[..]) {
        Some(rest) => Ok(rest.to_vec()),
        None => Err(SandboxError::Seccomp(
            "seccompiler's filter does not start with the architecture check this crate cuts off"
                .into(),
        )),
    }
}

/// The filters for one action: each ABI's body behind a dispatch on
/// `seccomp_data.arch`, as many ABIs to a filter as fit the kernel's limit.
/// In every filter an unknown architecture is killed, an ABI of the
/// profile whose body sits in another filter is allowed (that filter
/// decides), and so is one whose rules are empty.
fn dispatch(
    abis: &[Abi],
    rules: Vec<(Abi, Rules)>,
    mismatch: &SeccompAction,
    matched: &SeccompAction,
) -> Result<Vec<BpfProgram>, SandboxError> {
    let mut bodies = Vec::new();
    for (abi, rules) in rules {
        if !rules.0.is_empty() || *mismatch != SeccompAction::Allow {
            bodies.push((abi, body(rules, abi, mismatch, matched)?));
        }
    }
    let mut programs = Vec::new();
    let mut group: Vec<(Abi, Vec<sock_filter>)> = Vec::new();
    for (abi, code) in bodies {
        let size: usize = group.iter().map(|(_, c)| c.len()).sum();
        if !group.is_empty() && size + code.len() + dispatch_len(abis) > MAX_INSNS {
            programs.push(assemble(abis, std::mem::take(&mut group))?);
        }
        group.push((abi, code));
    }
    if !group.is_empty() {
        programs.push(assemble(abis, group)?);
    }
    Ok(programs)
}

/// An upper bound on the instructions `assemble` adds around the bodies.
fn dispatch_len(abis: &[Abi]) -> usize {
    2 + 3 * abis.len() + 4
}

/// One filter: load the architecture, jump to its section or kill. The
/// x86_64 section splits on `__X32_SYSCALL_BIT` first. A section holds its
/// ABI's body, or returns ALLOW when the body is elsewhere (or empty), or
/// KILL_PROCESS for x32 when the profile does not list it.
fn assemble(
    abis: &[Abi],
    bodies: Vec<(Abi, Vec<sock_filter>)>,
) -> Result<BpfProgram, SandboxError> {
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
    let mut bodies: BTreeMap<Abi, Vec<sock_filter>> = bodies.into_iter().collect();
    let mut section = |abi: Abi| -> Vec<sock_filter> {
        match bodies.remove(&abi) {
            Some(code) => code,
            None if abis.contains(&abi) => vec![ins(RET_K, 0, 0, ALLOW)],
            None => vec![ins(RET_K, 0, 0, KILL)],
        }
    };
    // Sections by AUDIT_ARCH, in the profile's order (x32 goes with x86_64).
    let mut sections: Vec<(u32, Vec<sock_filter>)> = Vec::new();
    for &abi in abis {
        match abi {
            Abi::X32 if abis.contains(&Abi::X86_64) => continue,
            Abi::X86_64 | Abi::X32 => {
                let x86_64 = section(Abi::X86_64);
                let x32 = section(Abi::X32);
                let mut code = vec![
                    ins(LD_W_ABS, 0, 0, DATA_NR),
                    ins(JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
                    ins(JMP_JA, 0, 0, x86_64.len() as u32),
                ];
                code.extend(x86_64);
                code.extend(x32);
                sections.push((abi.audit_arch(), code));
            }
            _ => sections.push((abi.audit_arch(), section(abi))),
        }
    }
    // ld arch; per section: jeq audit, 0, 1; ja section; then ret KILL.
    let mut program = vec![ins(LD_W_ABS, 0, 0, DATA_ARCH)];
    let header = 1 + 2 * sections.len() + 1;
    let mut at = header;
    for (i, (audit, code)) in sections.iter().enumerate() {
        let ja_pc = 1 + 2 * i + 1;
        program.push(ins(JMP_JEQ_K, 0, 1, *audit));
        program.push(ins(JMP_JA, 0, 0, (at - (ja_pc + 1)) as u32));
        at += code.len();
    }
    program.push(ins(RET_K, 0, 0, KILL));
    for (_, code) in sections {
        program.extend(code);
    }
    if program.len() > MAX_INSNS {
        return Err(SandboxError::Seccomp(format!(
            "the seccomp filter has {} instructions; the kernel takes at most {MAX_INSNS}",
            program.len()
        )));
    }
    Ok(program)
}

/// moby's `setupSeccomp` filter: excluded arches, excluded capabilities
/// (any held), an excluded minimum kernel (reached), then the includes.
fn applies(
    rule: &SyscallRule,
    arch: &str,
    caps: &[&str],
    kernel: (u32, u32),
) -> Result<bool, SandboxError> {
    let holds = |c: &String| caps.contains(&c.as_str());
    if let Some(ex) = &rule.excludes {
        if ex.arches.iter().any(|a| a == arch) || ex.caps.iter().any(holds) {
            return Ok(false);
        }
        if let Some(k) = &ex.min_kernel
            && kernel >= parse_kernel(k)?
        {
            return Ok(false);
        }
    }
    if let Some(inc) = &rule.includes {
        if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == arch) {
            return Ok(false);
        }
        if !inc.caps.iter().all(holds) {
            return Ok(false);
        }
        if let Some(k) = &inc.min_kernel
            && kernel < parse_kernel(k)?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A rule's argument conditions as seccompiler rules (one of which must
/// match; none means always). As in runc: all conditions in one rule,
/// unless an argument index repeats, then one rule per condition.
fn rule_conditions(rule: &SyscallRule, abi: Abi) -> Result<Vec<SeccompRule>, SandboxError> {
    let args = rule.args.as_deref().unwrap_or_default();
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let len = if abi.is_32bit() {
        SeccompCmpArgLen::Dword
    } else {
        SeccompCmpArgLen::Qword
    };
    let conditions = args
        .iter()
        .map(|a| condition(a, len.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = [0u8; 6];
    for a in args {
        seen[a.index as usize] += 1;
    }
    let rule_of = |c: Vec<SeccompCondition>| {
        SeccompRule::new(c).map_err(|e| SandboxError::Seccomp(format!("seccomp rule: {e}")))
    };
    if seen.iter().any(|n| *n > 1) {
        conditions.into_iter().map(|c| rule_of(vec![c])).collect()
    } else {
        Ok(vec![rule_of(conditions)?])
    }
}

fn condition(arg: &SyscallArg, len: SeccompCmpArgLen) -> Result<SeccompCondition, SandboxError> {
    if arg.index > 5 {
        return Err(SandboxError::Seccomp(format!(
            "seccomp argument index {} out of range 0-5",
            arg.index
        )));
    }
    let (op, value) = match arg.op.as_str() {
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, arg.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, arg.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, arg.value),
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, arg.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, arg.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, arg.value),
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(arg.value), arg.value_two),
        op => {
            return Err(SandboxError::Seccomp(format!(
                "unknown seccomp operator {op:?}"
            )));
        }
    };
    // libseccomp compares whole 64-bit arguments, and the low 32 bits on
    // 32-bit ABIs; so do we.
    SeccompCondition::new(arg.index as u8, len, op, value)
        .map_err(|e| SandboxError::Seccomp(format!("seccomp condition: {e}")))
}

/// An action name with its errno (EPERM when not given, as in runc).
fn parse_action(name: &str, errno: Option<u32>) -> Result<SeccompAction, SandboxError> {
    let errno = errno.unwrap_or(libc::EPERM as u32);
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno),
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_NOTIFY" => {
            return Err(SandboxError::Seccomp(
                "seccomp action SCMP_ACT_NOTIFY is not supported".into(),
            ));
        }
        other => {
            return Err(SandboxError::Seccomp(format!(
                "unknown seccomp action {other:?}"
            )));
        }
    })
}

/// `major.minor` of a `minKernel` value.
fn parse_kernel(v: &str) -> Result<(u32, u32), SandboxError> {
    let mut parts = v.split('.');
    let num = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
    match (num(parts.next()), num(parts.next())) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(SandboxError::Seccomp(format!(
            "invalid kernel version {v:?} in seccomp profile"
        ))),
    }
}

/// `major.minor` of the running kernel; (0, 0) when unreadable, so that
/// rules needing a newer kernel are left out.
fn running_kernel() -> (u32, u32) {
    let release = rustix::system::uname();
    let release = release.release().to_string_lossy();
    let mut parts = release.split(['.', '-']);
    let num = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    (num(parts.next()), num(parts.next()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::plan::DOCKER_CAPABILITIES as DEFAULT_CAPS;

    thread_local! {
        /// Compile bodies as seccompiler's chains, as before the tree: the
        /// reference the tree's verdicts are checked against.
        pub(super) static CHAINS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn compile_as_chains(profile: &SeccompProfile, caps: &[&str]) -> Filters {
        CHAINS.with(|c| c.set(true));
        let filters = profile.compile_for(caps, (6, 1));
        CHAINS.with(|c| c.set(false));
        filters.unwrap()
    }

    /// The tree gives every syscall number of every ABI the verdict the
    /// chains gave (seccompiler's own layout), whatever the arguments the
    /// profile looks at, and is several times shorter.
    #[test]
    fn r9_the_syscall_tree_gives_the_chains_verdicts() {
        let profile = SeccompProfile::docker_default();
        let mut admin = DEFAULT_CAPS.to_vec();
        admin.push("CAP_SYS_ADMIN");
        let (native, _) = Abi::native().unwrap();
        let abis = profile.abis(native);
        // Argument values: every value and mask of the profile and their
        // neighbours, at every index the profile looks at.
        let mut values = vec![0u64, 1, u64::from(u32::MAX), u64::MAX];
        let mut indexes = Vec::new();
        let mut conditional = std::collections::BTreeSet::new();
        for rule in &profile.syscalls {
            for arg in rule.args.iter().flatten() {
                for v in [arg.value, arg.value_two, arg.value | arg.value_two] {
                    values.extend([v, v.wrapping_add(1), v.wrapping_sub(1)]);
                }
                indexes.push(arg.index as usize);
                for name in rule.names.iter().chain(Some(&rule.name)) {
                    for abi in &abis {
                        conditional.extend(abi.number(name));
                    }
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        indexes.sort_unstable();
        indexes.dedup();
        let mut vectors = vec![[0u64; 6], [u64::MAX; 6]];
        for &i in &indexes {
            for &v in &values {
                let mut args = [0u64; 6];
                args[i] = v;
                vectors.push(args);
            }
        }
        let mut numbers: Vec<i64> = (0..1100).collect();
        numbers.extend((0..1100).map(|n| n | i64::from(X32_SYSCALL_BIT)));
        numbers.extend([0x3fff_ffff, 0x7fff_ffff, 0xffff_fffe, 0xffff_ffff]);
        let mut arches: Vec<u32> = abis.iter().map(|a| a.audit_arch()).collect();
        arches.push(0x1234);
        for caps in [DEFAULT_CAPS.to_vec(), admin] {
            let tree = profile.compile_for(&caps, (6, 1)).unwrap();
            let chains = compile_as_chains(&profile, &caps);
            let size = |f: &Filters| f.0.iter().map(Vec::len).sum::<usize>();
            assert!(
                size(&tree) * 3 < size(&chains),
                "the tree ({} instructions) is not much shorter than the chains ({})",
                size(&tree),
                size(&chains)
            );
            let mut checked = 0;
            for &arch in &arches {
                for &nr in &numbers {
                    let args: &[[u64; 6]] = if conditional.contains(&(nr & 0xffff_ffff)) {
                        &vectors
                    } else {
                        &vectors[..2]
                    };
                    for a in args {
                        assert_eq!(
                            verdict_on(&tree, arch, nr, *a),
                            verdict_on(&chains, arch, nr, *a),
                            "arch {arch:#x}, syscall {nr:#x}, args {a:x?}, {} capabilities",
                            caps.len()
                        );
                        checked += 1;
                    }
                }
            }
            assert!(checked > 10_000, "{checked} cases");
        }
    }

    #[test]
    fn the_default_profile_is_dockers() {
        let p = SeccompProfile::docker_default();
        assert_eq!(p.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(p.default_errno_ret, Some(1));
        let names = |action: &str| -> Vec<&str> {
            p.syscalls
                .iter()
                .filter(|r| r.action == action && r.includes.is_none() && r.excludes.is_none())
                .filter(|r| r.args.as_deref().unwrap_or_default().is_empty())
                .flat_map(|r| r.names.iter().map(String::as_str))
                .collect()
        };
        let allowed = names("SCMP_ACT_ALLOW");
        for name in ["read", "execve", "fork", "vfork", "mknodat", "setsid"] {
            assert!(allowed.contains(&name), "{name} is allowed unconditionally");
        }
        for name in [
            "unshare",
            "mount",
            "keyctl",
            "bpf",
            "ptrace",
            "add_key",
            "umount2",
            "setns",
            "clone",
            "io_uring_setup",
        ] {
            assert!(
                !allowed.contains(&name),
                "{name} is not allowed unconditionally"
            );
        }
    }

    /// What the compiled filters return for one native syscall.
    fn verdict(filters: &Filters, nr: i64, args: [u64; 6]) -> u32 {
        let native = Abi::native().unwrap().0;
        verdict_on(filters, native.audit_arch(), nr, args)
    }

    /// What the compiled filters return for one syscall of the ABI whose
    /// `AUDIT_ARCH` is `arch`, by running the BPF programs as the kernel
    /// does (the most restrictive result wins, the last-installed among
    /// equals).
    fn verdict_on(filters: &Filters, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = [0u32; 16];
        data[0] = nr as u32;
        data[1] = arch;
        for (i, a) in args.iter().enumerate() {
            data[4 + 2 * i] = *a as u32;
            data[5 + 2 * i] = (*a >> 32) as u32;
        }
        let mut result = libc::SECCOMP_RET_ALLOW;
        for prog in filters.0.iter().rev() {
            assert!(
                prog.len() <= MAX_INSNS,
                "a filter of {} instructions",
                prog.len()
            );
            let r = run_bpf(prog, &data);
            let action = |v: u32| (v & libc::SECCOMP_RET_ACTION_FULL) as i32;
            if action(r) < action(result) {
                result = r;
            }
        }
        result
    }

    /// A classic-BPF interpreter for the instructions seccompiler emits.
    fn run_bpf(prog: &BpfProgram, data: &[u32; 16]) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let ins = &prog[pc];
            pc += 1;
            match ins.code {
                0x20 => acc = data[ins.k as usize / 4], // ld [k]
                0x06 => return ins.k,                   // ret k
                0x05 => pc += ins.k as usize,           // ja
                0x54 => acc &= ins.k,                   // and k
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match ins.code {
                        0x15 => acc == ins.k,  // jeq
                        0x25 => acc > ins.k,   // jgt
                        0x35 => acc >= ins.k,  // jge
                        _ => acc & ins.k != 0, // jset
                    };
                    pc += if taken { ins.jt } else { ins.jf } as usize;
                }
                0x04 => acc = acc.wrapping_add(ins.k), // add k
                0x00 => acc = ins.k,                   // ld k
                code => panic!("unexpected BPF instruction {code:#x}"),
            }
        }
    }

    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;

    #[test]
    fn the_default_profile_compiles_to_dockers_verdicts() {
        let filters = SeccompProfile::docker_default()
            .compile_for(&DEFAULT_CAPS, (6, 1))
            .unwrap();
        let ns = (libc::CLONE_NEWUSER | libc::CLONE_NEWNS) as u64;
        let cases: [(&str, i64, [u64; 6], u32); 14] = [
            ("read", libc::SYS_read, [0; 6], ALLOW),
            (
                "fork-like clone",
                libc::SYS_clone,
                [libc::SIGCHLD as u64, 0, 0, 0, 0, 0],
                ALLOW,
            ),
            (
                "clone with namespaces",
                libc::SYS_clone,
                [ns, 0, 0, 0, 0, 0],
                EPERM,
            ),
            (
                "clone3 (glibc falls back to clone)",
                libc::SYS_clone3,
                [0; 6],
                ENOSYS,
            ),
            (
                "unshare",
                libc::SYS_unshare,
                [libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0],
                EPERM,
            ),
            ("mount", libc::SYS_mount, [0; 6], EPERM),
            ("keyctl", libc::SYS_keyctl, [0; 6], EPERM),
            ("bpf", libc::SYS_bpf, [0; 6], EPERM),
            ("ptrace", libc::SYS_ptrace, [0; 6], ALLOW),
            (
                "chroot with CAP_SYS_CHROOT",
                libc::SYS_chroot,
                [0; 6],
                ALLOW,
            ),
            (
                "socket AF_INET",
                libc::SYS_socket,
                [libc::AF_INET as u64, 0, 0, 0, 0, 0],
                ALLOW,
            ),
            (
                "socket AF_VSOCK",
                libc::SYS_socket,
                [libc::AF_VSOCK as u64, 0, 0, 0, 0, 0],
                EPERM,
            ),
            (
                "personality(PER_LINUX)",
                libc::SYS_personality,
                [0; 6],
                ALLOW,
            ),
            (
                "personality(READ_IMPLIES_EXEC)",
                libc::SYS_personality,
                [0x0400000, 0, 0, 0, 0, 0],
                EPERM,
            ),
        ];
        for (what, nr, args, want) in cases {
            assert_eq!(verdict(&filters, nr, args), want, "{what}");
        }
    }

    #[test]
    fn capability_and_kernel_conditions_follow_moby() {
        let mut caps = DEFAULT_CAPS.to_vec();
        caps.push("CAP_SYS_ADMIN");
        let admin = SeccompProfile::docker_default()
            .compile_for(&caps, (6, 1))
            .unwrap();
        let ns = libc::CLONE_NEWNS as u64;
        assert_eq!(verdict(&admin, libc::SYS_clone, [ns, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(verdict(&admin, libc::SYS_mount, [0; 6]), ALLOW);
        assert_eq!(verdict(&admin, libc::SYS_clone3, [0; 6]), ALLOW);
        let old = SeccompProfile::docker_default()
            .compile_for(&DEFAULT_CAPS, (4, 4))
            .unwrap();
        assert_eq!(
            verdict(&old, libc::SYS_ptrace, [0; 6]),
            EPERM,
            "ptrace needs kernel 4.8 without CAP_SYS_PTRACE"
        );
    }

    #[test]
    fn custom_profiles_parse_and_errors_name_the_problem() {
        let p = SeccompProfile::from_json(
            r#"{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                             {"name": "getpid", "action": "SCMP_ACT_KILL_PROCESS"}]}"#,
        )
        .unwrap();
        let f = p.compile_for(&DEFAULT_CAPS, (6, 1)).unwrap();
        assert_eq!(f.0.len(), 2, "one filter per non-default action");
        assert_eq!(
            verdict(&f, libc::SYS_mkdirat, [0; 6]),
            libc::SECCOMP_RET_ERRNO | 13
        );
        assert_eq!(
            verdict(&f, libc::SYS_getpid, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(verdict(&f, libc::SYS_read, [0; 6]), ALLOW);
        assert!(
            SeccompProfile::from_json("{}").unwrap().is_empty(),
            "an empty profile filters nothing"
        );
        let cases = [
            ("{", "decoding seccomp profile failed"),
            (
                r#"{"defaultAction": "SCMP_ACT_NOPE"}"#,
                "unknown seccomp action \"SCMP_ACT_NOPE\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
                "SCMP_ACT_NOTIFY is not supported",
            ),
            (
                r#"{"syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "both 'name' and 'names'",
            ),
            (
                r#"{"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ZZ"}]}]}"#,
                "unknown seccomp operator \"SCMP_CMP_ZZ\"",
            ),
            (
                r#"{"syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "index 6 out of range",
            ),
        ];
        for (json, want) in cases {
            let err = SeccompProfile::from_json(json).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    /// Every ABI of the native entry of Docker's `archMap` reaches a body
    /// that filters with that ABI's numbers; any other architecture, and
    /// x32 when the profile leaves it out, is killed.
    #[test]
    fn r11_every_abi_of_dockers_arch_map_is_filtered() {
        let profile = SeccompProfile::docker_default();
        let filters = profile.compile_for(&DEFAULT_CAPS, (6, 1)).unwrap();
        let (native, _) = Abi::native().unwrap();
        let entry = profile
            .arch_map
            .iter()
            .find(|m| Abi::runnable(&m.architecture) == Some(native))
            .expect("docker's archMap has the native architecture");
        let mut names = vec![entry.architecture.clone()];
        names.extend(entry.sub_architectures.iter().flatten().cloned());
        assert!(names.len() > 1, "{names:?}");
        let vsock = libc::AF_VSOCK as u64;
        for name in &names {
            let abi = Abi::runnable(name).unwrap_or_else(|| panic!("{name} runs here"));
            let nr = |n: &str| abi.number(n).unwrap_or_else(|| panic!("{abi:?} {n}"));
            let cases = [
                ("write", nr("write"), [1, 0, 0, 0, 0, 0], ALLOW),
                ("exit_group", nr("exit_group"), [0; 6], ALLOW),
                (
                    "unshare",
                    nr("unshare"),
                    [0x1000_0000, 0, 0, 0, 0, 0],
                    EPERM,
                ),
                ("mount", nr("mount"), [0; 6], EPERM),
                ("keyctl", nr("keyctl"), [0; 6], EPERM),
                ("clone3", nr("clone3"), [0; 6], ENOSYS),
                ("socket AF_INET", nr("socket"), [2, 0, 0, 0, 0, 0], ALLOW),
                (
                    "socket AF_VSOCK",
                    nr("socket"),
                    [vsock, 0, 0, 0, 0, 0],
                    EPERM,
                ),
                ("an unknown syscall", nr("read") + 2000, [0; 6], EPERM),
            ];
            for (what, nr, args, want) in cases {
                let got = verdict_on(&filters, abi.audit_arch(), nr, args);
                assert_eq!(got, want, "{name}: {what} ({nr:#x})");
            }
        }
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        for arch in [0x4000_0028, 0x4000_0003, 0xc000_00b7, 0xc000_003e, 0x1234] {
            if names
                .iter()
                .any(|n| Abi::runnable(n).map(Abi::audit_arch) == Some(arch))
            {
                continue;
            }
            assert_eq!(
                verdict_on(&filters, arch, 0, [0; 6]),
                kill,
                "arch {arch:#x}"
            );
        }
        // Only the native ABI: a 32-bit program is killed, as libseccomp's
        // bad-arch action does.
        let native_only = SeccompProfile::from_json(&format!(
            r#"{{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["{}"],
                "syscalls": [{{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}}]}}"#,
            entry.architecture
        ))
        .unwrap()
        .compile_for(&DEFAULT_CAPS, (6, 1))
        .unwrap();
        assert_eq!(native_only.0.len(), 1, "one filter");
        let write = native.number("write").unwrap();
        assert_eq!(
            verdict_on(&native_only, native.audit_arch(), write, [0; 6]),
            ALLOW
        );
        for name in &names[1..] {
            let abi = Abi::runnable(name).unwrap();
            let nr = abi.number("write").unwrap();
            assert_eq!(
                verdict_on(&native_only, abi.audit_arch(), nr, [0; 6]),
                kill,
                "{name}"
            );
        }
    }

    /// Each filter of Docker's profile stays within the kernel's 4096
    /// instructions (the three ABIs of x86_64 needed two filters for the
    /// default action as seccompiler's chains; they fit in one as trees).
    #[test]
    fn r11_filters_fit_the_kernel_limit() {
        let filters = SeccompProfile::docker_default()
            .compile_for(&DEFAULT_CAPS, (6, 1))
            .unwrap();
        for f in &filters.0 {
            assert!(f.len() <= MAX_INSNS, "{}", f.len());
        }
        let total: usize = filters.0.iter().map(Vec::len).sum();
        assert!(total < 32768, "the kernel's MAX_INSNS_PER_PATH: {total}");
    }
}
