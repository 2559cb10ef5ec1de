//! Threads for background work at the lowest CPU and disk priority, so
//! that what they do (deleting the store's trash) takes no time a build
//! needs. They live here because setting the policy takes raw syscalls.

use std::thread::JoinHandle;

/// `IOPRIO_WHO_PROCESS`: with id 0, the calling thread (ioprio_set(2)).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The best-effort I/O class (everyone's default), at its lowest level.
/// Not the idle class: a thread there is served only when no other I/O
/// waits, and the scheduler may hold it for seconds while it sits on
/// kernel locks (the trash directory's inode lock while it removes an
/// entry, a block bitmap it reads), so a build renaming into the trash, or
/// an fsync, would wait for it in turn.
const IOPRIO_CLASS_BE: libc::c_int = 2;
const IOPRIO_LEVEL_LOWEST: libc::c_int = 7;
const IOPRIO_CLASS_SHIFT: u32 = 13;
const IOPRIO_LOWEST_BEST_EFFORT: libc::c_int =
    (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | IOPRIO_LEVEL_LOWEST;

/// Runs `work` on a new thread named `name` that first lowers itself to
/// `SCHED_IDLE` and the lowest best-effort I/O level. Failing to lower it
/// is not an error: the work then runs at the usual priority.
pub fn spawn_idle<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_current_thread();
            work()
        })
}

fn lower_current_thread() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread, and `param` outlives the call;
    // the kernel only reads it.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    // SAFETY: ioprio_set takes three integers and touches no memory of ours.
    let _ = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0,
            IOPRIO_LOWEST_BEST_EFFORT,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_idle_threads_run_at_sched_idle_and_the_lowest_best_effort_io_level() {
        let (policy, ioprio) = spawn_idle("idle-test", || {
            // SAFETY: both read the calling thread's settings; no memory.
            unsafe {
                (
                    libc::sched_getscheduler(0),
                    libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0),
                )
            }
        })
        .unwrap()
        .join()
        .unwrap();
        assert_eq!(policy, libc::SCHED_IDLE, "scheduling policy");
        // Class 2 is best effort and 3 idle (ioprio_set(2)); 7 is the lowest
        // best-effort level.
        assert_eq!(
            (ioprio >> IOPRIO_CLASS_SHIFT, ioprio & 0xff),
            (2, 7),
            "I/O class and level in {ioprio:#x}"
        );
    }
}
