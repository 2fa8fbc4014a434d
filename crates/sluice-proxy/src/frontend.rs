//! A frontend's live state: its configuration, backend, counters, and the
//! limits its accept loop applies (maxconn, session rate, TLS).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::backend::BackendRt;
use crate::config::FrontendConfig;
use crate::conn::Expired;
use crate::limits::TokenBucket;
use crate::stats::Counters;

/// A frontend with its live state.
#[derive(Debug)]
pub(crate) struct FrontendRt {
    pub(crate) cfg: FrontendConfig,
    pub(crate) backend: Arc<BackendRt>,
    pub(crate) stats: Counters,
    pub(crate) conn_limit: Option<Arc<Semaphore>>,
    rate: Option<Mutex<TokenBucket>>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

impl FrontendRt {
    pub(crate) fn new(
        cfg: FrontendConfig,
        backend: Arc<BackendRt>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        Self {
            conn_limit: (cfg.maxconn > 0).then(|| Arc::new(Semaphore::new(cfg.maxconn))),
            rate: (cfg.rate_limit_sessions > 0).then(|| {
                Mutex::new(TokenBucket::new(
                    cfg.rate_limit_sessions,
                    cfg.rate_limit_sessions,
                    Instant::now(),
                ))
            }),
            cfg,
            backend,
            stats: Counters::default(),
            tls,
        }
    }

    /// Wait for the session rate limit to allow one more session.
    pub(crate) async fn rate_wait(&self) {
        let Some(rate) = &self.rate else { return };
        loop {
            let r = rate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_take(Instant::now());
            match r {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// Count a client connection the HTTP timers closed: a head that
    /// started but did not complete in time is a request error (HAProxy
    /// logs it as a 408); an idle connection closing is normal.
    pub(crate) fn count_expired(&self, why: Expired) {
        tracing::debug!(frontend = %self.cfg.name, ?why, "closing client connection");
        if why == (Expired::HttpRequest { partial: true }) {
            Counters::inc(&self.stats.err_request);
        }
    }
}
