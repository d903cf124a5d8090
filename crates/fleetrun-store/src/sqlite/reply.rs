//! How a caller waits for a storage thread (the writer or a reader): the thread calls a [`Reply`]
//! with the answer; the caller waits on the other end, from async code or from a plain thread.

use std::any::Any;
use std::future::Future;

use fleetrun_core::error::CoreResult;
use fleetrun_core::CoreError;

/// Called once, on the storage thread, with the operation's answer.
pub(crate) type Reply<T> = Box<dyn FnOnce(CoreResult<T>) + Send>;

fn dropped() -> CoreError {
    CoreError::Store("the storage thread dropped the request".into())
}

/// Hands `submit` a reply and waits for it without blocking the async runtime.
pub(crate) fn wait<T: Send + 'static>(
    submit: impl FnOnce(Reply<T>),
) -> impl Future<Output = CoreResult<T>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(Box::new(move |answer| {
        // The caller may have gone away (request cancelled); the operation stands regardless.
        let _ = tx.send(answer);
    }));
    async move { rx.await.map_err(|_| dropped())? }
}

/// Hands `submit` a reply and blocks the calling thread until it is called.
pub(crate) fn wait_blocking<T: Send + 'static>(submit: impl FnOnce(Reply<T>)) -> CoreResult<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    submit(Box::new(move |answer| {
        let _ = tx.send(answer);
    }));
    rx.recv().map_err(|_| dropped())?
}

/// The text of a caught panic, for the error its caller receives.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}
