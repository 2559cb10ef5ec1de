//! The ABIs a filter covers and their syscall numbers by name.
//!
//! Numbers come from the `syscalls` crate, generated from the kernel's
//! own tables (`syscall_64.tbl`, `syscall_32.tbl`, arm's `syscall.tbl`,
//! the generic `unistd.h` arm64 uses) and kept up with each release.
//! Two small sets it does not carry are kept here, both frozen by the
//! kernel's ABI:
//! - x32's own entries, 512–547 of `syscall_64.tbl` ("the end of the
//!   legacy x32 range; numbers 548 and above are not special"). Every
//!   other x32 syscall is the x86_64 number; all carry `__X32_SYSCALL_BIT`.
//! - arm's private syscalls at `__ARM_NR_BASE` (`arch/arm/include/uapi/
//!   asm/unistd.h`), which Docker's profile allows (breakpoint,
//!   cacheflush, set_tls).
//!
//! A name an ABI lacks has no number there, and its rule is skipped for
//! that ABI, as libseccomp skips it.

use std::str::FromStr;

/// `__X32_SYSCALL_BIT`: x32 syscalls are x86_64's with this bit set.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// One syscall ABI a filter can be asked about: its `seccomp_data.arch`
/// (`AUDIT_ARCH_*`) and, for x32, the number bit that tells it from x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abi {
    X86_64,
    X32,
    X86,
    Aarch64,
    Arm,
}

impl Abi {
    /// This machine's own ABI, with the Go name profiles' `arches` use.
    pub(crate) fn native() -> Option<(Abi, &'static str)> {
        if cfg!(target_arch = "x86_64") {
            Some((Abi::X86_64, "amd64"))
        } else if cfg!(target_arch = "aarch64") {
            Some((Abi::Aarch64, "arm64"))
        } else {
            None
        }
    }

    /// The ABI of a libseccomp architecture name (`SCMP_ARCH_X86`), if
    /// this machine can run programs of it: x86_64 runs i386 and x32
    /// programs, arm64 runs arm ones.
    pub(crate) fn runnable(name: &str) -> Option<Abi> {
        let abi = match name {
            "SCMP_ARCH_X86_64" => Abi::X86_64,
            "SCMP_ARCH_X86" => Abi::X86,
            "SCMP_ARCH_X32" => Abi::X32,
            "SCMP_ARCH_AARCH64" => Abi::Aarch64,
            "SCMP_ARCH_ARM" => Abi::Arm,
            _ => return None,
        };
        let native = Self::native()?.0;
        let runs = match native {
            Abi::X86_64 => matches!(abi, Abi::X86_64 | Abi::X86 | Abi::X32),
            _ => matches!(abi, Abi::Aarch64 | Abi::Arm),
        };
        runs.then_some(abi)
    }

    /// `AUDIT_ARCH_*` of `linux/audit.h`: the ELF machine, 64-bit and
    /// little-endian flags.
    pub(crate) fn audit_arch(self) -> u32 {
        const BITS64: u32 = 0x8000_0000;
        const LE: u32 = 0x4000_0000;
        match self {
            Abi::X86_64 | Abi::X32 => 62 | BITS64 | LE,
            Abi::X86 => 3 | LE,
            Abi::Aarch64 => 183 | BITS64 | LE,
            Abi::Arm => 40 | LE,
        }
    }

    /// Whether syscall arguments are 32 bits wide: libseccomp compares only
    /// their low words on these ABIs, and so do we.
    pub(crate) fn is_32bit(self) -> bool {
        matches!(self, Abi::X86 | Abi::X32 | Abi::Arm)
    }

    /// The syscall number of `name` on this ABI.
    pub(crate) fn number(self, name: &str) -> Option<i64> {
        let nr = match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Abi::X32 => {
                let own = X32_OWN.iter().find(|(n, _)| *n == name);
                let nr = match own {
                    Some((_, nr)) => *nr,
                    None => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
                };
                nr | X32_SYSCALL_BIT as i32
            }
            Abi::X86 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
            Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
            Abi::Arm => match ARM_PRIVATE.iter().find(|(n, _)| *n == name) {
                Some((_, nr)) => *nr,
                None => syscalls::arm::Sysno::from_str(name).ok()?.id(),
            },
        };
        Some(i64::from(nr))
    }
}

/// x32's own numbers (`syscall_64.tbl`, abi `x32`, 512–547): where x32
/// needs a compat entry point, these replace the x86_64 number.
const X32_OWN: [(&str, i32); 36] = [
    ("rt_sigaction", 512),
    ("rt_sigreturn", 513),
    ("ioctl", 514),
    ("readv", 515),
    ("writev", 516),
    ("recvfrom", 517),
    ("sendmsg", 518),
    ("recvmsg", 519),
    ("execve", 520),
    ("ptrace", 521),
    ("rt_sigpending", 522),
    ("rt_sigtimedwait", 523),
    ("rt_sigqueueinfo", 524),
    ("sigaltstack", 525),
    ("timer_create", 526),
    ("mq_notify", 527),
    ("kexec_load", 528),
    ("waitid", 529),
    ("set_robust_list", 530),
    ("get_robust_list", 531),
    ("vmsplice", 532),
    ("move_pages", 533),
    ("preadv", 534),
    ("pwritev", 535),
    ("rt_tgsigqueueinfo", 536),
    ("recvmmsg", 537),
    ("sendmmsg", 538),
    ("process_vm_readv", 539),
    ("process_vm_writev", 540),
    ("setsockopt", 541),
    ("getsockopt", 542),
    ("io_setup", 543),
    ("io_submit", 544),
    ("execveat", 545),
    ("preadv2", 546),
    ("pwritev2", 547),
];

/// arm's private syscalls, `__ARM_NR_BASE` (0x0f0000) + n.
const ARM_PRIVATE: [(&str, i32); 6] = [
    ("breakpoint", 0x0f_0001),
    ("cacheflush", 0x0f_0002),
    ("usr26", 0x0f_0003),
    ("usr32", 0x0f_0004),
    ("set_tls", 0x0f_0005),
    ("get_tls", 0x0f_0006),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_per_abi_match_the_kernel() {
        let cases = [
            (Abi::X86_64, "read", Some(0)),
            (Abi::X86_64, "unshare", Some(272)),
            (Abi::X86_64, "clone3", Some(435)),
            (Abi::X86_64, "removexattrat", Some(466)),
            (Abi::X86_64, "socketcall", None),
            (Abi::X86, "unshare", Some(310)),
            (Abi::X86, "write", Some(4)),
            (Abi::X86, "socketcall", Some(102)),
            (Abi::X86, "mmap2", Some(192)),
            (Abi::X32, "unshare", Some(0x4000_0000 | 272)),
            (Abi::X32, "execve", Some(0x4000_0000 | 520)),
            (Abi::X32, "ioctl", Some(0x4000_0000 | 514)),
            (Abi::Aarch64, "unshare", Some(97)),
            (Abi::Aarch64, "open", None),
            (Abi::Arm, "unshare", Some(337)),
            (Abi::Arm, "set_tls", Some(0x0f_0005)),
            (Abi::Arm, "arm_fadvise64_64", Some(270)),
        ];
        for (abi, name, want) in cases {
            assert_eq!(abi.number(name), want, "{abi:?} {name}");
        }
        #[cfg(target_arch = "x86_64")]
        for (name, nr) in [
            ("read", libc::SYS_read),
            ("clone", libc::SYS_clone),
            ("keyctl", libc::SYS_keyctl),
            ("fchmodat2", libc::SYS_fchmodat2),
        ] {
            assert_eq!(Abi::X86_64.number(name), Some(nr), "{name}");
        }
    }

    #[test]
    fn x32_own_numbers_are_the_legacy_range() {
        for (i, (name, nr)) in X32_OWN.iter().enumerate() {
            assert_eq!(*nr, 512 + i as i32, "{name}");
            assert!(
                syscalls::x86_64::Sysno::from_str(name).is_ok(),
                "{name} also has an x86_64 number"
            );
        }
    }
}
