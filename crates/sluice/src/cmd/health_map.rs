//! Maps the configuration's `[health_check.NAME]` onto sluice-health's
//! probe specs, and drives the planes from health events.

use sluice_config as model;
use sluice_core::health::{Health, HealthConfig};
use sluice_health::{
    CheckSpec, ContentSpec, HttpMethod, HttpSpec, ProbeSpec, StatusRange, TlsSpec,
};

/// The probe spec of a configured check.
pub(crate) fn check_spec(c: &model::HealthCheck) -> CheckSpec {
    let http = |h: &model::HttpProbe| HttpSpec {
        method: match h.method {
            model::HttpMethod::Get => HttpMethod::Get,
            model::HttpMethod::Head => HttpMethod::Head,
        },
        path: h.path.clone(),
        host: h.host.clone(),
        expect_status: h
            .expect_status
            .iter()
            .map(|r| StatusRange {
                min: r.min,
                max: r.max,
            })
            .collect(),
        tls: h.tls.then(TlsSpec::default),
    };
    let probe = match &c.probe {
        model::Probe::Icmp => ProbeSpec::Icmp,
        model::Probe::Tcp => ProbeSpec::Tcp,
        model::Probe::TcpHalfOpen => ProbeSpec::TcpHalfOpen,
        model::Probe::Http(h) => ProbeSpec::Http(http(h)),
        model::Probe::HttpContent(h, m) => ProbeSpec::HttpContent(
            http(h),
            ContentSpec {
                body_contains: m.body_contains.clone(),
                body_regex: m.body_regex.clone(),
                max_body_bytes: m.max_body as usize,
            },
        ),
        model::Probe::Script { command } => ProbeSpec::Script {
            command: command.clone(),
        },
    };
    let mut spec = CheckSpec::new(probe);
    spec.port = c.port;
    spec.timeout = c.timeout;
    spec.jitter_percent = c.jitter;
    spec.health = HealthConfig {
        rise: c.rise,
        fall: c.fall,
        interval: c.interval,
        down_interval: c.down_interval,
        initial: match c.initial_state {
            model::InitialState::Up => Health::Up,
            model::InitialState::Down => Health::Down,
        },
    };
    spec
}
