//! Ctrl-C and SIGTERM for the builder: the first one cancels the running
//! sandbox (so the builder unwinds, unmounts and removes its temp dirs);
//! the handler then resets itself, so a second one kills the builder.

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::namespace::{CancelHandle, CancelInner};

/// The handle the signal handler cancels. Replaced handles are leaked on
/// purpose: a handler running concurrently may still hold the old pointer.
static HANDLE: AtomicPtr<CancelInner> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_signal(_: libc::c_int) {
    let inner = HANDLE.load(Ordering::SeqCst);
    if !inner.is_null() {
        // SAFETY: the pointer comes from Arc::into_raw and is never freed.
        // cancel() is an atomic store and a write(2): async-signal-safe.
        unsafe { (*inner).cancel() };
    }
}

/// Makes SIGINT and SIGTERM cancel `handle` (see [`CancelHandle`]). Calling it
/// again switches the signals to the new handle.
pub fn cancel_on_interrupt(handle: CancelHandle) {
    let inner = Arc::into_raw(handle.0).cast_mut();
    HANDLE.store(inner, Ordering::SeqCst);
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESETHAND | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls the
        // async-signal-safe cancel(). sigaction cannot fail for these signals.
        let _ = unsafe { nix::sys::signal::sigaction(signal, &action) };
    }
}
