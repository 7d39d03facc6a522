//! `loadgen compare`: the same scenario against several servers, side by
//! side. Reports are grouped by their own `scenario` and `target` fields, so
//! the file names do not matter; each group is reduced to medians
//! ([`summarize`]) and every Starling median is divided by the peer's.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::report::{Report, Summary, format_value, read_reports, summarize};

/// The server every ratio is relative to.
const BASE: &str = "starling";

/// One scenario across servers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ScenarioComparison {
    /// Scenario name.
    pub(crate) scenario: String,
    /// Servers in column order (Starling first), with their run counts.
    pub(crate) targets: Vec<(String, usize)>,
    /// One row per metric that Starling reports.
    pub(crate) rows: Vec<ComparisonRow>,
}

/// One metric across servers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ComparisonRow {
    /// What it is.
    pub(crate) metric: String,
    /// Its unit.
    pub(crate) unit: &'static str,
    /// Per server (in [`ScenarioComparison::targets`] order): the median,
    /// min and max, or `None` when that server does not report the metric.
    pub(crate) values: Vec<Option<Summary>>,
    /// Per peer (every target but Starling, same order): Starling's median
    /// ÷ the peer's; `None` without both or when the peer's is 0.
    pub(crate) ratios: Vec<Option<f64>>,
}

/// Groups `reports` by scenario (in order of appearance) and server.
pub(crate) fn comparisons(reports: &[Report]) -> Vec<ScenarioComparison> {
    let mut scenarios: Vec<&str> = Vec::new();
    for report in reports {
        if !scenarios.contains(&report.scenario.as_str()) {
            scenarios.push(&report.scenario);
        }
    }
    scenarios
        .into_iter()
        .map(|scenario| {
            let of_scenario: Vec<&Report> =
                reports.iter().filter(|r| r.scenario == scenario).collect();
            let mut targets: Vec<&str> = Vec::new();
            for report in &of_scenario {
                if !targets.contains(&report.target.as_str()) {
                    targets.push(&report.target);
                }
            }
            // Starling first, so its rows give the order and every ratio a base.
            targets.sort_by_key(|t| *t != BASE);
            let summaries: Vec<Vec<Summary>> = targets
                .iter()
                .map(|target| {
                    let group: Vec<Report> = of_scenario
                        .iter()
                        .filter(|r| r.target == *target)
                        .map(|r| (*r).clone())
                        .collect();
                    summarize(&group)
                })
                .collect();
            let mut metrics: Vec<(String, &'static str)> = Vec::new();
            for summary in summaries.iter().flatten() {
                if !metrics.iter().any(|(m, _)| *m == summary.metric) {
                    metrics.push((summary.metric.clone(), summary.unit));
                }
            }
            let base = targets.iter().position(|t| *t == BASE);
            let rows = metrics
                .into_iter()
                .map(|(metric, unit)| {
                    let values: Vec<Option<Summary>> = summaries
                        .iter()
                        .map(|group| group.iter().find(|s| s.metric == metric).cloned())
                        .collect();
                    let base_median = base.and_then(|b| values[b].as_ref()).map(|s| s.median);
                    let ratios = values
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| Some(*i) != base)
                        .map(|(_, peer)| match (base_median, peer) {
                            (Some(ours), Some(theirs)) if theirs.median != 0.0 => {
                                Some(ours / theirs.median)
                            }
                            _ => None,
                        })
                        .collect();
                    ComparisonRow {
                        metric,
                        unit,
                        values,
                        ratios,
                    }
                })
                .collect();
            ScenarioComparison {
                scenario: scenario.to_owned(),
                targets: targets
                    .iter()
                    .map(|t| {
                        let runs = of_scenario.iter().filter(|r| r.target == *t).count();
                        ((*t).to_owned(), runs)
                    })
                    .collect(),
                rows,
            }
        })
        .collect()
}

/// The tables (or JSON) of [`comparisons`].
pub(crate) fn render(comparisons: &[ScenarioComparison]) -> String {
    let mut out = String::new();
    for comparison in comparisons {
        let peers: Vec<&str> = comparison
            .targets
            .iter()
            .map(|(t, _)| t.as_str())
            .filter(|t| *t != BASE)
            .collect();
        let runs: Vec<String> = comparison
            .targets
            .iter()
            .map(|(t, n)| format!("{t} × {n}"))
            .collect();
        let _ = writeln!(
            out,
            "scenario {} · medians of runs: {}",
            comparison.scenario,
            runs.join(", ")
        );
        let mut header = vec!["metric".to_owned(), "unit".to_owned()];
        header.extend(comparison.targets.iter().map(|(t, _)| t.clone()));
        header.extend(peers.iter().map(|p| format!("{BASE}/{p}")));
        let mut lines = vec![header];
        for row in &comparison.rows {
            let mut line = vec![row.metric.clone(), row.unit.to_owned()];
            line.extend(row.values.iter().map(|v| match v {
                Some(s) => format_value(s.median),
                None => "—".to_owned(),
            }));
            line.extend(row.ratios.iter().map(|r| match r {
                Some(r) => format!("{r:.2}"),
                None => "—".to_owned(),
            }));
            lines.push(line);
        }
        let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                lines
                    .iter()
                    .filter_map(|l| l.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for line in &lines {
            let mut text = String::from(" ");
            for (c, cell) in line.iter().enumerate() {
                let pad = widths[c].saturating_sub(cell.chars().count());
                if c < 2 {
                    let _ = write!(text, " {cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(text, " {}{cell}", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", text.trim_end());
        }
        out.push('\n');
    }
    out
}

/// `loadgen compare`: reads reports and prints the side-by-side tables.
pub(crate) fn compare(files: &[PathBuf], json: bool) -> anyhow::Result<String> {
    let reports = read_reports(files)?;
    let comparisons = comparisons(&reports);
    if json {
        return Ok(serde_json::to_string_pretty(&comparisons)?);
    }
    Ok(render(&comparisons))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::report_with;

    #[test]
    fn medians_are_grouped_per_server_and_divided_by_the_peer() {
        let reports = vec![
            report_with("fanout", "nats", 40),
            report_with("fanout", "starling", 10),
            report_with("fanout", "nats", 20),
            report_with("fanout", "starling", 30),
            report_with("fanout", "starling", 20),
            report_with("fanout", "nats", 60),
            report_with("churn", "socketio", 5),
        ];
        let all = comparisons(&reports);
        assert_eq!(all.len(), 2);
        let fanout = &all[0];
        assert_eq!(
            fanout.targets,
            vec![("starling".to_owned(), 3), ("nats".to_owned(), 3)]
        );
        let delivered = fanout
            .rows
            .iter()
            .find(|r| r.metric == "delivered messages/s")
            .expect("row");
        let medians: Vec<f64> = delivered
            .values
            .iter()
            .map(|v| v.as_ref().expect("both report it").median)
            .collect();
        // Window 2 s: 20 and 40 deliveries are 10/s and 20/s.
        assert_eq!(medians, vec![10.0, 20.0]);
        assert_eq!(delivered.ratios, vec![Some(0.5)]);
        assert!(
            fanout
                .rows
                .iter()
                .all(|r| r.metric != "offset gaps"
                    || r.values[1].is_none() && r.ratios == vec![None]),
            "peers do not report offset gaps"
        );
        // Without Starling there is nothing to divide by.
        let churn = &all[1];
        assert!(
            churn
                .rows
                .iter()
                .all(|r| r.ratios.iter().all(Option::is_none))
        );
        let table = render(&all);
        assert!(table.contains("starling/nats"), "{table}");
        assert!(table.contains("0.50"), "{table}");
    }
}
