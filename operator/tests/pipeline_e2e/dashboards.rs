//! Every panel query of every dashboard in `charts/tau2-operator/dashboards`,
//! with its template variables substituted as Grafana would for one
//! pipeline, must return data from Prometheus over the run.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use super::prometheus::Prometheus;

/// Grafana's built-in interval variables for a 1 s scrape interval.
const RATE_INTERVAL: &str = "10s";
const INTERVAL: &str = "5s";
const STEP: &str = "5s";

pub struct Query {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
}

/// The queries of every panel (rows' nested panels too) of the dashboards in `dir`.
pub fn queries(dir: &Path, vars: &BTreeMap<String, String>, range: &str) -> Result<Vec<Query>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no dashboards in {}", dir.display());
    }
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let dash: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let name = format!(
            "{} ({})",
            dash["title"].as_str().unwrap_or("?"),
            file.file_name().unwrap_or_default().to_string_lossy()
        );
        let mut panels: Vec<&Value> = Vec::new();
        for p in dash["panels"].as_array().into_iter().flatten() {
            panels.push(p);
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        let before = out.len();
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str() else {
                    continue;
                };
                out.push(Query {
                    dashboard: name.clone(),
                    panel: p["title"].as_str().unwrap_or("?").to_owned(),
                    expr: substitute(expr, vars, range),
                });
            }
        }
        if out.len() == before {
            bail!("{name} has no panel queries");
        }
    }
    Ok(out)
}

/// `$var`, `${var}` and `[[var]]` by value; Grafana's interval variables by
/// what it would pick for a 1 s scrape interval.
pub fn substitute(expr: &str, vars: &BTreeMap<String, String>, range: &str) -> String {
    let mut all: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.extend(
        [
            ("__rate_interval", RATE_INTERVAL),
            ("__interval", INTERVAL),
            ("__range", range),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    // Longest names first, so $__rate_interval is not read as $__rate.
    all.sort_by_key(|(k, _)| std::cmp::Reverse(k.len()));
    let mut s = expr.to_owned();
    for (k, v) in &all {
        s = s
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("[[{k}]]"), v)
            .replace(&format!("${k}"), v);
    }
    s
}

/// The template variables of the dashboards in `dir`, with `pinned` values
/// for some and the "All" value for the rest; checks that each pinned
/// variable's own query offers its value.
pub async fn variables(
    dir: &Path,
    pinned: &BTreeMap<String, String>,
    prom: &Prometheus,
    start: f64,
    end: f64,
) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let file = entry?.path();
        if file.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        let list = dash["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !list.iter().any(|v| {
            v["type"] == "datasource" && v["query"] == "prometheus" && v["name"] == "datasource"
        }) {
            bail!(
                "{} has no `datasource` variable of type prometheus",
                file.display()
            );
        }
        for v in list.iter().filter(|v| v["type"] == "query") {
            let name = v["name"].as_str().unwrap_or_default().to_owned();
            let value = match pinned.get(&name) {
                Some(value) => {
                    let query = v["definition"].as_str().unwrap_or_default();
                    let offered =
                        label_values(prom, &substitute(query, pinned, "1h"), start, end).await?;
                    if !offered.contains(value) {
                        bail!(
                            "{}: variable {name} ({query}) offers {offered:?}, not {value}",
                            file.display()
                        );
                    }
                    value.clone()
                }
                None => v["allValue"].as_str().unwrap_or(".*").to_owned(),
            };
            vars.insert(name, value);
        }
    }
    Ok(vars)
}

/// What `label_values(selector, label)` offers over the window.
async fn label_values(prom: &Prometheus, query: &str, start: f64, end: f64) -> Result<Vec<String>> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .with_context(|| format!("not a label_values() query: {query}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .with_context(|| format!("label_values() without a label: {query}"))?;
    let series = prom.series(selector.trim(), start, end).await?;
    let mut values: Vec<String> = series
        .iter()
        .filter_map(|s| s[label.trim()].as_str().map(str::to_owned))
        .collect();
    values.sort();
    values.dedup();
    Ok(values)
}

/// Runs every query over the window; the ones that returned no sample.
pub async fn empty(
    prom: &Prometheus,
    queries: &[Query],
    start: f64,
    end: f64,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for q in queries {
        let result = prom
            .query_range(&q.expr, start, end, STEP)
            .await
            .with_context(|| format!("{} / {}: {}", q.dashboard, q.panel, q.expr))?;
        let samples: usize = result
            .iter()
            .map(|s| s["values"].as_array().map_or(0, Vec::len))
            .sum();
        if samples == 0 {
            missing.push(format!(
                "{} / panel \"{}\": {}",
                q.dashboard, q.panel, q.expr
            ));
        }
    }
    Ok(missing)
}

#[test]
fn substitution_covers_grafana_forms() {
    let vars = BTreeMap::from([
        ("namespace".to_owned(), "ns".to_owned()),
        ("pipeline".to_owned(), "tiny".to_owned()),
    ]);
    assert_eq!(
        substitute(
            r#"rate(x{namespace=~"$namespace", pipeline=~"${pipeline}", p="[[pipeline]]"}[$__rate_interval]) + y[$__interval] + z[$__range]"#,
            &vars,
            "300s"
        ),
        r#"rate(x{namespace=~"ns", pipeline=~"tiny", p="tiny"}[10s]) + y[5s] + z[300s]"#
    );
}
