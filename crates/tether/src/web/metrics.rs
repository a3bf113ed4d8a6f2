//! Request metrics in the Prometheus text format (`GET /metrics`): counts per route and
//! status, and a latency histogram per route. Kept in memory, per process.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0, 5000.0,
];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: Vec<u64>,
    sum_ms: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<(String, String), Route>>,
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed_ms: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        let entry = routes
            .entry((method.to_owned(), route.to_owned()))
            .or_insert_with(|| Route {
                buckets: vec![0; BUCKETS_MS.len()],
                ..Route::default()
            });
        *entry.by_status.entry(status).or_default() += 1;
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            if elapsed_ms <= *bound {
                entry.buckets[i] += 1;
            }
        }
        entry.sum_ms += elapsed_ms;
        entry.count += 1;
    }

    pub fn render(&self, extra: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP tether_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE tether_http_requests_total counter");
        let Ok(routes) = self.routes.lock() else {
            return out;
        };
        for ((method, route), r) in routes.iter() {
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "tether_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tether_http_request_duration_seconds Request latency."
        );
        let _ = writeln!(out, "# TYPE tether_http_request_duration_seconds histogram");
        for ((method, route), r) in routes.iter() {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            for (i, bound) in BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tether_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                    bound / 1000.0,
                    r.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "tether_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "tether_http_request_duration_seconds_sum{{{labels}}} {}",
                r.sum_ms / 1000.0
            );
            let _ = writeln!(
                out,
                "tether_http_request_duration_seconds_count{{{labels}}} {}",
                r.count
            );
        }
        for (name, help, value) in extra {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
