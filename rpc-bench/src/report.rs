//! Output: the results table (median over rounds), the targets check, and the JSON file.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::System;
use crate::sock::Transport;

/// One measured value of one round.
#[derive(Debug, Clone)]
pub struct Sample {
    pub system: System,
    pub transport: Transport,
    pub workload: &'static str,
    pub metric: &'static str,
    pub value: f64,
}

/// A table row: workload, transport, metric.
type RowKey = (&'static str, &'static str, &'static str);

/// Medians by row, then system, with rows in the order first measured.
fn medians(samples: &[Sample]) -> Vec<(RowKey, BTreeMap<System, f64>)> {
    let mut rows: Vec<(RowKey, BTreeMap<System, Vec<f64>>)> = Vec::new();
    for s in samples {
        let key = (s.workload, s.transport.name(), s.metric);
        let at = match rows.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                rows.push((key, BTreeMap::new()));
                rows.len() - 1
            }
        };
        rows[at].1.entry(s.system).or_default().push(s.value);
    }
    // Group a workload's transports and metrics together, whatever order they ran in.
    let order = |w: &str| rows.iter().position(|((x, _, _), _)| *x == w).unwrap_or(0);
    let mut keyed: Vec<_> = rows.iter().map(|(k, _)| (order(k.0), k.1, *k)).collect();
    keyed.sort_by_key(|&(o, t, _)| (o, t));
    keyed
        .into_iter()
        .map(|(_, _, key)| {
            let by_system = &rows.iter().find(|(k, _)| *k == key).expect("row").1;
            (key, by_system.iter().map(|(&sys, v)| (sys, median(v))).collect())
        })
        .collect()
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn format_value(metric: &str, v: Option<f64>) -> String {
    let Some(v) = v else { return "-".to_owned() };
    match metric {
        "calls_per_s" | "bytes_per_conn" | "heap_bytes_per_conn" => thousands(v.round() as u64),
        m if m.ends_with("_per_call") => format!("{v:.2}"),
        _ => format!("{v:.1}"),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".to_owned(),
    }
}

/// The metrics the JSON file carries; the others are `--probe` counters.
const METRICS: [&str; 6] =
    ["p50_us", "p99_us", "p999_us", "calls_per_s", "mb_per_s", "bytes_per_conn"];

/// The results table: one row per workload, transport and metric; the `--probe` counters
/// only when `probes` is set.
pub fn table(samples: &[Sample], probes: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<12} {:<5} {:<19} {:>12} {:>12} {:>12} {:>8} {:>9}",
        "workload", "tr", "metric", "raw", "rpc", "tarpc", "rpc/raw", "rpc/tarpc"
    );
    let _ = writeln!(out, "{}", "-".repeat(95));
    for ((workload, transport, metric), by) in medians(samples) {
        if !probes && !METRICS.contains(&metric) && metric != "heap_bytes_per_conn" {
            continue;
        }
        let get = |s: System| by.get(&s).copied();
        let (raw, rpc, tarpc) = (get(System::Raw), get(System::Rpc), get(System::Tarpc));
        let _ = writeln!(
            out,
            "{workload:<12} {transport:<5} {metric:<19} {:>12} {:>12} {:>12} {:>8} {:>9}",
            format_value(metric, raw),
            format_value(metric, rpc),
            format_value(metric, tarpc),
            ratio(rpc, raw),
            ratio(rpc, tarpc),
        );
    }
    let _ = writeln!(
        out,
        "\nus = microseconds per call; mb_per_s = 10^6 bytes of payload echoed per second (each \
         call sends it and gets it back); bytes_per_conn = server RSS growth / connections (pages \
         touched); heap_bytes_per_conn = server allocator bytes in use / connections (not in the \
         JSON); kernel socket buffers are in neither.\n\
         w4_1mib_vec is rpc's echo with Vec<u8> (a serde sequence) instead of bytes::Bytes (a \
         serde byte string); it is not in the JSON."
    );
    out
}

/// The targets, checked against the medians.
pub fn targets(samples: &[Sample]) -> String {
    let rows = medians(samples);
    let get = |w: &str, t: &str, m: &str, s: System| {
        rows.iter().find(|(k, _)| *k == (w, t, m)).and_then(|(_, by)| by.get(&s).copied())
    };
    let mut out = String::from("\ntargets (rpc vs the others in this run):\n");
    for t in ["tcp", "unix"] {
        let mut check = |what: String, value: Option<f64>, ok: fn(f64) -> bool, goal: &str| {
            let (v, verdict) = match value {
                Some(v) => (format!("{v:.2}"), if ok(v) { "met" } else { "MISSED" }),
                None => ("-".to_owned(), "not measured"),
            };
            let _ = writeln!(out, "  {what:<34} {v:>10}  goal {goal:<10} {verdict}");
        };
        let r = |w, m, a, b| Some(get(w, t, m, a)? / get(w, t, m, b)?);
        check(
            format!("w1 {t} p50 rpc/raw"),
            r("w1", "p50_us", System::Rpc, System::Raw),
            |v| v <= 1.3,
            "<= 1.3",
        );
        for w in ["w2_c128", "w3_8x32"] {
            check(
                format!("{w} {t} calls/s rpc/tarpc"),
                r(w, "calls_per_s", System::Rpc, System::Tarpc),
                |v| v >= 4.0,
                ">= 4",
            );
        }
        check(
            format!("w4_1mib {t} MB/s rpc/raw"),
            r("w4_1mib", "mb_per_s", System::Rpc, System::Raw),
            |v| v >= 0.9,
            ">= 0.9",
        );
        check(
            format!("mem_idle {t} rpc KiB/conn"),
            get("mem_idle", t, "bytes_per_conn", System::Rpc).map(|b| b / 1024.0),
            |v| v <= 16.0,
            "<= 16",
        );
    }
    out
}

/// The JSON file: the command and every median, one entry per system and metric.
pub fn json(samples: &[Sample], argv: &[String]) -> String {
    let mut results = Vec::new();
    for ((workload, transport, metric), by) in medians(samples) {
        if workload == "w4_1mib_vec" || !METRICS.contains(&metric) {
            continue;
        }
        for (system, value) in by {
            results.push(serde_json::json!({
                "system": system.name(),
                "transport": transport,
                "workload": workload,
                "metric": metric,
                "value": value,
            }));
        }
    }
    let doc = serde_json::json!({
        "command": command(argv),
        "revision": git_revision(),
        "results": results,
    });
    serde_json::to_string_pretty(&doc).expect("JSON of plain values") + "\n"
}

/// The command that reproduces this run, from the repository root.
pub fn command(argv: &[String]) -> String {
    let args: String = argv.iter().map(|a| format!(" {a}")).collect();
    format!("cargo run --release --manifest-path rpc-bench/Cargo.toml --{args}")
}

/// The repository's commit, with "+changes" when rpc-core differs from it; read-only git.
pub fn git_revision() -> String {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty =
                git(&["status", "--porcelain", "--", "rpc-core"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}+changes") } else { rev }
        }
        None => "unknown revision".to_owned(),
    }
}
