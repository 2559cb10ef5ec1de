//! Threads for background work at the lowest CPU and disk priority, so
//! that what they do (deleting the store's trash) takes no time a build
//! needs. They live here because setting the policy takes raw syscalls.

use std::thread::JoinHandle;

/// `IOPRIO_WHO_PROCESS`: with id 0, the calling thread (ioprio_set(2)).
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// The idle I/O class, served only when no other I/O is waiting.
const IOPRIO_CLASS_IDLE: libc::c_int = 3;
const IOPRIO_CLASS_SHIFT: u32 = 13;

/// Runs `work` on a new thread named `name` that first lowers itself to
/// `SCHED_IDLE` and the idle I/O class. Failing to lower it is not an
/// error: the work then runs at the usual priority.
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
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r9_idle_threads_run_at_the_lowest_cpu_and_disk_priority() {
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
        assert_eq!(
            ioprio >> IOPRIO_CLASS_SHIFT,
            libc::c_long::from(IOPRIO_CLASS_IDLE),
            "I/O class in {ioprio:#x}"
        );
    }
}
