//! Reads a `report.html` back: the bars of its step timeline and the bands and failure bars
//! of its traffic charts, with their coordinates, so tests (and tools) can check what the
//! page shows — e.g. that every failure bar lies inside the band of the step its requests
//! were sent in.

use scraper::{ElementRef, Html, Selector};

/// A step's band in a traffic chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Step index.
    pub step: usize,
    /// Step name.
    pub name: String,
    /// Left edge.
    pub x0: f64,
    /// Right edge.
    pub x1: f64,
}

/// One second's failure bar in a traffic chart.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureBar {
    /// Seconds since the traffic started.
    pub second: usize,
    /// The step most of its failed requests were sent in.
    pub step: String,
    /// Left edge.
    pub x0: f64,
    /// Right edge.
    pub x1: f64,
    /// Its tooltip.
    pub title: String,
}

/// One traffic chart.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrafficChart {
    /// Its label (`background traffic NAME per second`).
    pub label: String,
    /// The step bands.
    pub bands: Vec<Band>,
    /// Requests/s bars.
    pub request_bars: usize,
    /// Failures/s bars.
    pub failures: Vec<FailureBar>,
    /// Whether the p99 line is drawn.
    pub p99_line: bool,
}

impl TrafficChart {
    /// Failure bars that overlap no band of the step they name, described.
    pub fn misplaced_failures(&self) -> Vec<String> {
        self.failures
            .iter()
            .filter(|f| {
                !self
                    .bands
                    .iter()
                    .any(|b| b.name == f.step && b.x0 <= f.x1 + 0.1 && f.x0 <= b.x1 + 0.1)
            })
            .map(|f| {
                format!(
                    "failure bar of second {} ({}..{}) names step `{}`, whose band is at {:?}",
                    f.second,
                    f.x0,
                    f.x1,
                    f.step,
                    self.bands
                        .iter()
                        .find(|b| b.name == f.step)
                        .map(|b| (b.x0, b.x1))
                )
            })
            .collect()
    }
}

/// A bar of the step timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct StepBar {
    /// Step index.
    pub step: usize,
    /// Step name.
    pub name: String,
    /// `passed`, `failed`, `skipped` or `interrupted`.
    pub status: String,
    /// Whether it is striped as retried.
    pub retried: bool,
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).expect("a valid selector")
}

fn num(e: &ElementRef, attr: &str) -> f64 {
    e.value()
        .attr(attr)
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

fn title(e: &ElementRef) -> String {
    e.select(&sel("title"))
        .next()
        .map(|t| t.text().collect())
        .unwrap_or_default()
}

/// Every traffic chart of a page, in page order.
pub fn traffic_charts(html: &str) -> Vec<TrafficChart> {
    let doc = Html::parse_document(html);
    doc.select(&sel("svg.traffic"))
        .map(|svg| TrafficChart {
            label: svg.value().attr("aria-label").unwrap_or("").to_string(),
            bands: svg
                .select(&sel("rect.band"))
                .map(|b| Band {
                    step: num(&b, "data-step") as usize,
                    name: b.value().attr("data-name").unwrap_or("").to_string(),
                    x0: num(&b, "x"),
                    x1: num(&b, "x") + num(&b, "width"),
                })
                .collect(),
            request_bars: svg.select(&sel("rect.req")).count(),
            failures: svg
                .select(&sel("rect.fail"))
                .map(|f| FailureBar {
                    second: num(&f, "data-second") as usize,
                    step: f.value().attr("data-step").unwrap_or("").to_string(),
                    x0: num(&f, "x"),
                    x1: num(&f, "x") + num(&f, "width"),
                    title: title(&f),
                })
                .collect(),
            p99_line: svg.select(&sel("path.p99")).next().is_some(),
        })
        .collect()
}

/// The bars of every step timeline of a page, in page order.
pub fn step_bars(html: &str) -> Vec<StepBar> {
    let doc = Html::parse_document(html);
    let mut out = Vec::new();
    for svg in doc.select(&sel("svg.timeline")) {
        let retried: Vec<(f64, f64)> = svg
            .select(&sel("rect.retried"))
            .map(|r| (num(&r, "x"), num(&r, "y")))
            .collect();
        for b in svg.select(&sel("rect.bar[data-step]")) {
            let classes: Vec<&str> = b.value().classes().collect();
            let status = ["passed", "failed", "skipped", "interrupted"]
                .into_iter()
                .find(|c| classes.contains(c))
                .unwrap_or("")
                .to_string();
            out.push(StepBar {
                step: num(&b, "data-step") as usize,
                name: b.value().attr("data-name").unwrap_or("").to_string(),
                status,
                retried: retried.contains(&(num(&b, "x"), num(&b, "y"))),
            });
        }
    }
    out
}
