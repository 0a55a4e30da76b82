//! Instant queries against Prometheus' HTTP API (`/api/v1/query`), as Kiali's client makes them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Error;

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels.
    pub metric: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// Runs `query` at unix time `time` against the Prometheus at `base_url` and returns the
/// vector it answers.
pub async fn query(
    client: &reqwest::Client,
    base_url: &str,
    query: &str,
    time: u64,
) -> Result<Vec<Sample>, Error> {
    let url = format!("{}/api/v1/query", base_url.trim_end_matches('/'));
    let err = |reason: String| Error::Prometheus {
        url: url.clone(),
        reason,
    };
    let res = client
        .get(&url)
        .query(&[("query", query), ("time", &time.to_string())])
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = res.status();
    let body = res.text().await.map_err(|e| err(e.to_string()))?;
    let answer: Answer = serde_json::from_str(&body)
        .map_err(|e| err(format!("HTTP {status}, not Prometheus' JSON ({e})")))?;
    if answer.status != "success" {
        return Err(err(answer
            .error
            .unwrap_or_else(|| format!("status {}", answer.status))));
    }
    let data = answer.data.ok_or_else(|| err("no data".into()))?;
    if data.result_type != "vector" {
        return Err(err(format!(
            "result type {} is not vector",
            data.result_type
        )));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = s
                .value
                .1
                .parse()
                .map_err(|e| err(format!("value {:?}: {e}", s.value.1)))?;
            Ok(Sample {
                metric: s.metric,
                value,
            })
        })
        .collect()
}
