//! [`OnOwnWake`]: a future that is polled only when *it* was woken.
//!
//! A connection task waits on its sockets and, in the same `select!`, on
//! the proxy's shutdown phase (a `watch` channel shared by every
//! connection). `select!` polls every branch whenever the task wakes, and a
//! pending `watch` wait re-checks its registration under the channel's
//! mutex on each poll: two or three lock round trips per proxied request,
//! on one lock shared by all connections and threads. Wrapped in
//! [`OnOwnWake`], the phase wait is polled once to register, then only
//! after its own waker fired; a wake-up for socket readiness costs an
//! atomic swap instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

pin_project_lite::pin_project! {
    /// Polls `F` on its first poll and afterwards only once `F`'s own waker
    /// has fired; otherwise returns `Pending` at once. Must not be polled
    /// after it returned `Ready` (like most futures).
    #[derive(Debug)]
    pub(crate) struct OnOwnWake<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        waker: Waker,
    }
}

/// What the inner future's waker sets, and the task it then wakes.
#[derive(Debug)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnOwnWake<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll polls `inner`, which registers its waker.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for OnOwnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake-up that lands in
        // between is seen by the swap, one that lands after it wakes the
        // task registered here.
        this.signal.task.register(cx.waker());
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    /// Counts its polls of `fut` (a wait for the watch to turn true).
    struct Probe {
        polls: Arc<AtomicUsize>,
        fut: Pin<Box<dyn Future<Output = ()> + Send>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            self.fut.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_only_after_its_own_wake_up() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let polls = Arc::new(AtomicUsize::new(0));
        let mut rx = rx;
        let mut w = std::pin::pin!(OnOwnWake::new(Probe {
            polls: polls.clone(),
            fut: Box::pin(async move {
                let _ = rx.wait_for(|v| *v).await;
            }),
        }));
        // Other wake-ups of the task (here: a timer ticking 20 times) do
        // not poll the inner future after its first poll.
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for _ in 0..20 {
            tokio::select! {
                biased;
                () = w.as_mut() => panic!("ready before the phase changed"),
                _ = tick.tick() => {}
            }
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Its own wake-up does, and it completes.
        let setter = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(true).unwrap();
            tx
        });
        tokio::time::timeout(Duration::from_secs(5), w.as_mut())
            .await
            .expect("the wake-up was lost");
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        drop(setter.await.unwrap());
    }
}
