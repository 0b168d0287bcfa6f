//! Results: medians, JSON lines and markdown tables.

use serde_json::{Value, json};

use crate::harness::{Failure, Outcome};
use crate::scenarios::{Metric, Variant};
use crate::transports::Kind;

/// Every run of one metric of one implementation in one scenario.
pub struct Series {
    pub metric: Metric,
    pub runs: Vec<Outcome<f64>>,
}

impl Series {
    /// Median of the runs that have a value.
    pub fn median(&self) -> Option<f64> {
        let mut values: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        Some(if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        })
    }

    /// (max − min) ÷ median of the runs that have a value, in percent;
    /// `None` with fewer than two such runs.
    pub fn swing(&self) -> Option<f64> {
        let values: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|r| r.as_ref().ok().copied())
            .collect();
        if values.len() < 2 {
            return None;
        }
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let median = self.median()?;
        (median != 0.0).then(|| (max - min) / median * 100.0)
    }

    /// The first failure that is not a skip (skips follow failures).
    fn failure(&self) -> Option<&Failure> {
        let mut failures = self.runs.iter().filter_map(|r| r.as_ref().err());
        let first = failures.clone().next();
        failures
            .find(|f| !matches!(f, Failure::Skipped(_)))
            .or(first)
    }

    /// "ok", or the failure if no run has a value.
    fn status(&self) -> String {
        match (self.median(), self.failure()) {
            (Some(_), None) => "ok".into(),
            (Some(_), Some(_)) => "partial".into(),
            (None, Some(f)) => f.to_string(),
            (None, None) => "not run".into(),
        }
    }

    /// A table cell: the median (with how many runs failed), or why none.
    fn cell(&self) -> String {
        let failed = self.runs.iter().filter(|r| r.is_err()).count();
        match (self.median(), self.failure()) {
            (Some(v), None) => fmt(v, self.metric.decimals),
            (Some(v), Some(f)) => format!(
                "{} ({}/{} runs: {})",
                fmt(v, self.metric.decimals),
                failed,
                self.runs.len(),
                short(&f.to_string())
            ),
            (None, Some(f)) => short(&f.to_string()),
            (None, None) => "-".into(),
        }
    }
}

/// The results of one implementation, in one variant, in one scenario.
pub struct Row {
    pub kind: Kind,
    pub variant: Variant,
    pub series: Vec<Series>,
}

impl Row {
    /// The name used in the tables.
    fn label(&self) -> String {
        format!("{}{}", self.kind.label(), self.variant.label_suffix())
    }
}

pub struct ScenarioResult {
    pub name: &'static str,
    pub title: String,
    pub rows: Vec<Row>,
    /// How the metrics are split into tables; every row's series are in
    /// the same order.
    pub tables: Vec<Table>,
}

/// One markdown table of a scenario: its own heading (none for the
/// scenario's main table) and its metrics, as indexes into each row's
/// series.
pub struct Table {
    pub heading: Option<String>,
    pub metrics: Vec<usize>,
}

fn fmt(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// Keeps a table cell short and free of pipes.
fn short(msg: &str) -> String {
    let msg = msg.replace('|', "/").replace('\n', " ");
    if msg.chars().count() > 80 {
        format!("{}…", msg.chars().take(80).collect::<String>())
    } else {
        msg
    }
}

fn run_value(run: &Outcome<f64>) -> Value {
    match run {
        Ok(v) if v.is_finite() => json!(v),
        Ok(_) => Value::Null,
        Err(f) => json!(f.to_string()),
    }
}

/// One JSON line per implementation of the scenario.
pub fn json_lines(result: &ScenarioResult, runs: usize, quick: bool) -> Vec<String> {
    result
        .rows
        .iter()
        .map(|row| {
            let mut metrics = serde_json::Map::new();
            for series in &row.series {
                metrics.insert(
                    series.metric.key.to_string(),
                    json!({
                        "median": series.median(),
                        "status": series.status(),
                        "higher_is_better": series.metric.higher_is_better,
                        "runs": series.runs.iter().map(run_value).collect::<Vec<_>>(),
                    }),
                );
            }
            json!({
                "bench": "peers",
                "mode": if quick { "quick" } else { "full" },
                "scenario": result.name,
                "impl": row.kind.name(),
                "variant": row.variant.name(),
                "label": row.label(),
                "runs": runs,
                "metrics": metrics,
            })
            .to_string()
        })
        .collect()
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
            format!("{:.2}×", a / b)
        }
        _ => "-".into(),
    }
}

/// The scenario's markdown: its title, then per table (see [`Table`])
/// one row per implementation and variant with each metric's median and
/// its ratio to raw TCP (and, for a metric that asks for it, its swing
/// across runs if there is more than one), then creditmux over TLS's
/// ratio to raw TLS, then, per variant of creditmux, its ratio to each
/// peer and to the best peer per metric.
pub fn markdown(result: &ScenarioResult) -> String {
    let mut out = String::new();
    if result.rows.is_empty() {
        return out;
    }
    out.push_str(&format!(
        "### {}

",
        result.title
    ));
    for table in &result.tables {
        if let Some(heading) = &table.heading {
            out.push_str(&format!(
                "#### {heading}

"
            ));
        }
        let rows: Vec<Row> = result
            .rows
            .iter()
            .map(|row| row.only(&table.metrics))
            .collect();
        out.push_str(&markdown_table(&rows));
    }
    out
}

impl Row {
    /// The same row with only the series at `indexes`.
    fn only(&self, indexes: &[usize]) -> Row {
        Row {
            kind: self.kind,
            variant: self.variant,
            series: indexes
                .iter()
                .map(|&i| Series {
                    metric: self.series[i].metric,
                    runs: self.series[i].runs.clone(),
                })
                .collect(),
        }
    }
}

/// One table of [`markdown`], with what follows it.
fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::new();
    let Some(first) = rows.first() else {
        return out;
    };
    let metrics: Vec<Metric> = first.series.iter().map(|s| s.metric).collect();
    // A swing needs runs to swing across.
    let swings: Vec<bool> = first
        .series
        .iter()
        .map(|s| s.metric.swing && s.runs.len() > 1)
        .collect();
    let medians = |kind: Kind| -> Vec<Option<f64>> {
        rows.iter()
            .find(|r| r.kind == kind && r.variant == Variant::Default)
            .map(|r| r.series.iter().map(Series::median).collect())
            .unwrap_or_else(|| vec![None; metrics.len()])
    };
    let tcp = medians(Kind::Tcp);

    let mut header = String::from("| impl |");
    let mut rule = String::from("|---|");
    for (m, &swing) in metrics.iter().zip(&swings) {
        let better = if m.higher_is_better { "↑" } else { "↓" };
        header.push_str(&format!(" {} {better} | vs TCP |", m.label));
        rule.push_str("---:|---:|");
        if swing {
            header.push_str(" swing |");
            rule.push_str("---:|");
        }
    }
    out.push_str(&format!("{header}\n{rule}\n"));
    for row in rows {
        out.push_str(&format!("| {} |", row.label()));
        for (i, series) in row.series.iter().enumerate() {
            out.push_str(&format!(
                " {} | {} |",
                series.cell(),
                ratio(series.median(), tcp[i])
            ));
            if swings[i] {
                match series.swing() {
                    Some(swing) if swing < 10.0 => out.push_str(&format!(" {swing:.1}% |")),
                    Some(swing) => out.push_str(&format!(" {swing:.0}% |")),
                    None => out.push_str(" - |"),
                }
            }
        }
        out.push('\n');
    }

    for (ours, base) in BASELINES {
        let row = |kind| {
            rows.iter()
                .find(|r| r.kind == kind && r.variant == Variant::Default)
        };
        if let (Some(ours), Some(base)) = (row(ours), row(base)) {
            out.push_str(&versus_baseline(ours, base, &metrics));
        }
    }

    let peers: Vec<&Row> = rows.iter().filter(|r| r.kind.is_peer()).collect();
    if !peers.is_empty() {
        for row in rows.iter().filter(|r| r.kind == Kind::Creditmux) {
            out.push_str(&versus_peers(row, &peers, &metrics));
        }
    }
    out.push('\n');
    out
}

/// Implementations compared with the baseline of their own transport (as
/// every one is with raw TCP): creditmux over TLS with raw TLS.
const BASELINES: [(Kind, Kind); 1] = [(Kind::CreditmuxTls, Kind::Tls)];

/// `ours`'s ratio to `base` per metric, as a one-row markdown table.
fn versus_baseline(ours: &Row, base: &Row, metrics: &[Metric]) -> String {
    let (label, base_label) = (ours.label(), base.label());
    let mut out = format!(
        "\n{label} ÷ {base_label}, its transport's baseline (above 1 is {label} higher; \
         ↑/↓ says which way is better):\n\n| {label} ÷ |"
    );
    let mut rule = String::from("|---|");
    for m in metrics {
        out.push_str(&format!(" {} |", m.label));
        rule.push_str("---:|");
    }
    out.push_str(&format!("\n{rule}\n| {base_label} |"));
    for (o, b) in ours.series.iter().zip(&base.series) {
        out.push_str(&format!(" {} |", ratio(o.median(), b.median())));
    }
    out.push('\n');
    out
}

/// `creditmux`'s ratio to each of `peers` and to the best of them per
/// metric, as a markdown table.
fn versus_peers(creditmux: &Row, peers: &[&Row], metrics: &[Metric]) -> String {
    let mut out = String::new();
    let label = creditmux.label();
    let ours: Vec<Option<f64>> = creditmux.series.iter().map(Series::median).collect();
    out.push_str(&format!(
        "\n{label} ÷ peer (above 1 is {label} higher; ↑/↓ says which way is better):\n\n"
    ));
    let mut header = format!("| {label} ÷ |");
    let mut rule = String::from("|---|");
    for m in metrics {
        header.push_str(&format!(" {} |", m.label));
        rule.push_str("---:|");
    }
    out.push_str(&format!("{header}\n{rule}\n"));
    for peer in peers {
        out.push_str(&format!("| {} |", peer.label()));
        for (i, series) in peer.series.iter().enumerate() {
            out.push_str(&format!(" {} |", ratio(ours[i], series.median())));
        }
        out.push('\n');
    }
    out.push_str("| **best peer** |");
    for (i, m) in metrics.iter().enumerate() {
        let best = peers
            .iter()
            .filter_map(|p| p.series[i].median().map(|v| (p.kind, v)))
            .reduce(|a, b| {
                let b_better = if m.higher_is_better {
                    b.1 > a.1
                } else {
                    b.1 < a.1
                };
                if b_better { b } else { a }
            });
        match best {
            Some((kind, v)) => out.push_str(&format!(
                " {} ({}) |",
                ratio(ours[i], Some(v)),
                kind.label()
            )),
            None => out.push_str(" - |"),
        }
    }
    out.push('\n');
    out
}
