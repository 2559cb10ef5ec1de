//! runc's device rules for a run: which device nodes it may create and
//! open.
//!
//! On cgroup v1 they are lines written to the devices controller
//! (`cgroup.rs`). cgroup v2 has no devices controller: the kernel asks an
//! eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE` attached to the
//! cgroup, as runc's `devicefilter` builds it. [`program`] assembles that
//! program from the same rules (deny everything, then allow each rule), and
//! [`attach`] loads it and attaches it to the run's cgroup.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::error::SandboxError;

/// Docker's default device rules, after `a` (deny everything): the
/// devices runc creates in /dev, ptys, and mknod of any node (which still
/// cannot be opened).
pub(crate) const DEFAULT_RULES: &[&str] = &[
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
    "c *:* m",
    "b *:* m",
];

/// One allow rule, as the devices controller's `TYPE MAJOR:MINOR ACCESS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DeviceRule {
    /// `BPF_DEVCG_DEV_BLOCK` or `BPF_DEVCG_DEV_CHAR`; `None` for `a`.
    kind: Option<u32>,
    major: Option<u32>,
    minor: Option<u32>,
    /// `BPF_DEVCG_ACC_*` bits.
    access: u32,
}

const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

impl DeviceRule {
    /// Parses `c 1:3 rwm`, `b *:* m`, `a`.
    pub(crate) fn parse(rule: &str) -> Option<Self> {
        let mut fields = rule.split_whitespace();
        let kind = match fields.next()? {
            "a" => None,
            "b" => Some(DEV_BLOCK),
            "c" => Some(DEV_CHAR),
            _ => return None,
        };
        let number = |s: &str| match s {
            "*" => Some(None),
            n => n.parse().ok().map(Some),
        };
        let (major, minor) = match fields.next() {
            Some(numbers) => {
                let (major, minor) = numbers.split_once(':')?;
                (number(major)?, number(minor)?)
            }
            None => (None, None),
        };
        let mut access = 0;
        for c in fields.next().unwrap_or("rwm").chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => return None,
            };
        }
        if fields.next().is_some() {
            return None;
        }
        Some(Self {
            kind,
            major,
            minor,
            access,
        })
    }
}

/// One eBPF instruction (`struct bpf_insn`; registers packed as the
/// little-endian bitfield layout, dst in the low nibble).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// The program for "deny everything, then allow `rules`", as runc's
/// devicefilter assembles it. The context (`struct bpf_cgroup_dev_ctx`,
/// in r1) holds the access type (device type in the low 16 bits, access
/// in the high 16), the major and the minor.
pub(crate) fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0), // r2 = ctx->access_type
        insn(ALU32_AND_K, 2, 0, 0, 0xffff),
        insn(LDX_MEM_W, 3, 1, 0, 0), // r3 = ctx->access_type >> 16
        insn(ALU32_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0), // r4 = ctx->major
        insn(LDX_MEM_W, 5, 1, 8, 0), // r5 = ctx->minor
    ];
    for rule in rules {
        // Each test jumps past the block when it fails: to the next rule.
        let mut block = Vec::new();
        if let Some(kind) = rule.kind {
            block.push(insn(JNE_K, 2, 0, 0, kind as i32));
        }
        if rule.access != ACC_READ | ACC_WRITE | ACC_MKNOD {
            // if (access & allowed) != access: not this rule
            block.push(insn(ALU32_MOV_X, 1, 3, 0, 0));
            block.push(insn(ALU32_AND_K, 1, 0, 0, rule.access as i32));
            block.push(insn(JNE_X, 1, 3, 0, 0));
        }
        if let Some(major) = rule.major {
            block.push(insn(JNE_K, 4, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(insn(JNE_K, 5, 0, 0, minor as i32));
        }
        block.push(insn(ALU32_MOV_K, 0, 0, 0, 1));
        block.push(insn(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == JNE_K || ins.code == JNE_X {
                ins.off = (len - 1 - i) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    prog.push(insn(EXIT, 0, 0, 0, 0));
    prog
}

/// The default rules, parsed.
pub(crate) fn default_rules() -> Vec<DeviceRule> {
    DEFAULT_RULES
        .iter()
        .map(|r| DeviceRule::parse(r).expect("the default device rules parse"))
        .collect()
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads the program for `rules` and attaches it to the cgroup v2
/// directory `cgroup` (beside any program of the parents', which must
/// allow an access too).
pub(crate) fn attach(cgroup: &Path, rules: &[DeviceRule]) -> Result<(), SandboxError> {
    let prog = program(rules);
    // Without a log first (a full verifier log of a passing program can
    // overflow the buffer, ENOSPC); with one only to explain a refusal.
    let fd = match load(&prog, None) {
        Ok(fd) => fd,
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            let _ = load(&prog, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let verifier = String::from_utf8_lossy(&log[..end]);
            let verifier = verifier.trim();
            return Err(SandboxError::Cgroup(format!(
                "loading the device rules' eBPF program: {e}{}{verifier}",
                if verifier.is_empty() { "" } else { ": " }
            )));
        }
    };
    // SAFETY: BPF_PROG_LOAD returned a new descriptor that nothing else
    // owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let dir = rustix::fs::open(
        cgroup,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| SandboxError::io(cgroup)(e.into()))?;
    let attr = ProgAttachAttr {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attr` is a valid BPF_PROG_ATTACH attribute of the size
    // given, naming two descriptors that are open for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if r < 0 {
        return Err(SandboxError::Cgroup(format!(
            "attaching the device rules' eBPF program to {}: {}",
            cgroup.display(),
            std::io::Error::last_os_error()
        )));
    }
    // The attachment holds the program; its descriptor can go.
    Ok(())
}

/// BPF_PROG_LOAD of `prog`, with the verifier's log in `log` if given.
fn load(prog: &[Insn], log: Option<&mut [u8]>) -> Result<i32, std::io::Error> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..13].copy_from_slice(b"hoist_devices");
    let (log_level, log_size, log_buf) = match log {
        Some(log) => (1, log.len() as u32, log.as_mut_ptr() as u64),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..ProgLoadAttr::default()
    };
    // SAFETY: `attr` is a valid BPF_PROG_LOAD attribute of the size given;
    // the instructions, license and log buffer it points at outlive the
    // call, and the kernel writes at most `log_size` bytes into the log.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_as_the_devices_controller_writes_them() {
        let rule = |kind, major, minor, access| DeviceRule {
            kind,
            major,
            minor,
            access,
        };
        for (text, want) in [
            (
                "c 1:3 rwm",
                Some(rule(
                    Some(DEV_CHAR),
                    Some(1),
                    Some(3),
                    ACC_READ | ACC_WRITE | ACC_MKNOD,
                )),
            ),
            (
                "c 136:* rwm",
                Some(rule(
                    Some(DEV_CHAR),
                    Some(136),
                    None,
                    ACC_READ | ACC_WRITE | ACC_MKNOD,
                )),
            ),
            (
                "b *:* m",
                Some(rule(Some(DEV_BLOCK), None, None, ACC_MKNOD)),
            ),
            ("a", Some(rule(None, None, None, 7))),
            ("c 1:3 rwx", None),
            ("x 1:3 rwm", None),
            ("c 1 rwm", None),
            ("c 1:3 rwm extra", None),
        ] {
            assert_eq!(DeviceRule::parse(text), want, "{text:?}");
        }
    }

    /// The program for two rules, instruction by instruction (each jump
    /// lands on the next rule's first instruction).
    #[test]
    fn program_is_runcs_devicefilter() {
        let rules = [
            DeviceRule::parse("c 1:3 rwm").unwrap(),
            DeviceRule::parse("b *:* m").unwrap(),
        ];
        let want = vec![
            insn(LDX_MEM_W, 2, 1, 0, 0),
            insn(ALU32_AND_K, 2, 0, 0, 0xffff),
            insn(LDX_MEM_W, 3, 1, 0, 0),
            insn(ALU32_RSH_K, 3, 0, 0, 16),
            insn(LDX_MEM_W, 4, 1, 4, 0),
            insn(LDX_MEM_W, 5, 1, 8, 0),
            // c 1:3 rwm
            insn(JNE_K, 2, 0, 4, 2),
            insn(JNE_K, 4, 0, 3, 1),
            insn(JNE_K, 5, 0, 2, 3),
            insn(ALU32_MOV_K, 0, 0, 0, 1),
            insn(EXIT, 0, 0, 0, 0),
            // b *:* m
            insn(JNE_K, 2, 0, 5, 1),
            insn(ALU32_MOV_X, 1, 3, 0, 0),
            insn(ALU32_AND_K, 1, 0, 0, 1),
            insn(JNE_X, 1, 3, 2, 0),
            insn(ALU32_MOV_K, 0, 0, 0, 1),
            insn(EXIT, 0, 0, 0, 0),
            // deny
            insn(ALU32_MOV_K, 0, 0, 0, 0),
            insn(EXIT, 0, 0, 0, 0),
        ];
        assert_eq!(program(&rules), want);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // The registers' nibbles: dst low, src high.
        assert_eq!(insn(JNE_X, 1, 3, 0, 0).regs, 0x31);
    }
}
