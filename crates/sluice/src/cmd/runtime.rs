//! The daemon's runtime: one multi-thread tokio runtime for everything
//! `sluice run` does (the proxy's workers, health checks, the admin
//! endpoint), with `global.threads` workers pinned per `global.cpu_map`.
//! The binary builds it; the planes run on whatever runtime they are
//! started from.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use anyhow::Context as _;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Name of the runtime's threads (what `top -H` and the benchmarks' CPU
/// accounting see).
pub(crate) const WORKER_THREAD_NAME: &str = "sluice-proxy";

/// Build the daemon's multi-thread tokio runtime with `threads` workers
/// (`0` = one per core).
///
/// A non-empty `cpu_map` pins runtime threads round-robin to the listed CPU
/// ids as they start (HAProxy `cpu-map`): the workers, which start first,
/// get `cpu_map[0]`, `cpu_map[1]`, ... in turn, and so do blocking-pool
/// threads started later. A CPU the process may not use is logged and that
/// thread left unpinned.
///
/// # Errors
///
/// A CPU id beyond the kernel's CPU set size, or the OS refusing threads.
pub(crate) fn build_runtime(
    threads: usize,
    cpu_map: &[usize],
) -> anyhow::Result<tokio::runtime::Runtime> {
    if let Some(cpu) = cpu_map.iter().find(|&&c| c >= CpuSet::count()) {
        anyhow::bail!(
            "cpu_map: CPU {cpu} is beyond the CPU set size {}",
            CpuSet::count()
        );
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if threads > 0 {
        b.worker_threads(threads);
    }
    if !cpu_map.is_empty() {
        let cpus: Arc<[usize]> = cpu_map.into();
        let next = AtomicUsize::new(0);
        b.on_thread_start(move || {
            let cpu = cpus[next.fetch_add(1, Relaxed) % cpus.len()];
            if let Err(e) = pin_current_thread(cpu) {
                tracing::warn!(cpu, error = %e, "cannot pin a proxy thread");
            }
        });
    }
    b.enable_all()
        .thread_name(WORKER_THREAD_NAME)
        .build()
        .context("cannot build the runtime")
}

/// Restrict the calling thread to `cpu` (pid 0 means the calling thread).
fn pin_current_thread(cpu: usize) -> nix::Result<()> {
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(Pid::from_raw(0), &set)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use nix::sched::sched_getaffinity;

    /// CPUs this process may run on.
    fn allowed_cpus() -> Vec<usize> {
        let set = sched_getaffinity(Pid::from_raw(0)).unwrap();
        (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap())
            .collect()
    }

    /// The CPUs each of many tasks saw itself allowed on, per thread.
    fn affinities(rt: &tokio::runtime::Runtime) -> Vec<(std::thread::ThreadId, Vec<usize>)> {
        rt.block_on(async {
            let tasks: Vec<_> = (0..32)
                .map(|_| {
                    tokio::spawn(async {
                        // Give other workers a chance to run some of the tasks.
                        tokio::task::yield_now().await;
                        (std::thread::current().id(), allowed_cpus())
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
    }

    #[test]
    fn workers_are_pinned_to_the_cpu_map() {
        let allowed = allowed_cpus();
        let last = *allowed.last().unwrap();
        let rt = build_runtime(2, &[last]).unwrap();
        for (_, cpus) in affinities(&rt) {
            assert_eq!(cpus, [last]);
        }
        drop(rt);

        // Two CPUs, two workers: each worker on exactly one of them.
        if allowed.len() >= 2 {
            let map = [allowed[0], allowed[1]];
            let rt = build_runtime(2, &map).unwrap();
            for (_, cpus) in affinities(&rt) {
                assert_eq!(cpus.len(), 1, "{cpus:?}");
                assert!(map.contains(&cpus[0]), "{cpus:?}");
            }
        }

        // No map: threads keep the process's affinity.
        let rt = build_runtime(1, &[]).unwrap();
        for (_, cpus) in affinities(&rt) {
            assert_eq!(cpus, allowed);
        }
    }

    #[test]
    fn cpu_ids_beyond_the_set_are_rejected() {
        let err = build_runtime(1, &[CpuSet::count()]).unwrap_err();
        assert!(err.to_string().contains("beyond the CPU set size"), "{err}");
    }
}
