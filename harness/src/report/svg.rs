//! Inline SVG charts of a run, written by hand: the step timeline, the background traffic per
//! second with the steps that ran drawn as bands, and the reviews-version split.
//!
//! The charts carry their data for people and tests alike: every step bar and band has a
//! `<title>` (the browser's tooltip) and `data-step`/`data-name` attributes, every per-second
//! bar its `data-second`, every failure bar the step its failed requests were sent in
//! (`data-step`), so a test can check from coordinates that a failure burst lies inside the
//! band of the step that caused it. Colours come from the page's CSS classes.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::timeline::{Second, Span, Traffic};
use crate::results::Status;

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// An SVG document being written.
pub struct Svg {
    out: String,
}

impl Svg {
    /// An `<svg>` of `w`×`h` user units, scaling to its container's width, labelled for
    /// screen readers.
    pub fn new(w: f64, h: f64, class: &str, label: &str) -> Self {
        Svg {
            out: format!(
                r#"<svg xmlns="http://www.w3.org/2000/svg" class="{}" viewBox="0 0 {w:.0} {h:.0}" width="{w:.0}" height="{h:.0}" role="img" aria-label="{}">"#,
                esc(class),
                esc(label)
            ),
        }
    }

    /// Any element: `attrs` are written in order (values escaped), `title` becomes its
    /// tooltip.
    pub fn el(&mut self, name: &str, attrs: &[(&str, String)], title: Option<&str>) {
        let _ = write!(self.out, "<{name}");
        for (k, v) in attrs {
            let _ = write!(self.out, r#" {k}="{}""#, esc(v));
        }
        match title {
            Some(t) => {
                let _ = write!(self.out, "><title>{}</title></{name}>", esc(t));
            }
            None => self.out.push_str("/>"),
        }
    }

    /// A rectangle.
    pub fn rect(
        &mut self,
        class: &str,
        (x, y, w, h): (f64, f64, f64, f64),
        extra: &[(&str, String)],
        title: Option<&str>,
    ) {
        let mut a = vec![
            ("class", class.to_string()),
            ("x", f(x)),
            ("y", f(y)),
            ("width", f(w.max(0.0))),
            ("height", f(h.max(0.0))),
        ];
        a.extend(extra.iter().cloned());
        self.el("rect", &a, title);
    }

    /// A text; `anchor` is `start`, `middle` or `end`; `rotate` in degrees around (x, y).
    pub fn text(&mut self, class: &str, x: f64, y: f64, anchor: &str, rotate: f64, text: &str) {
        let transform = if rotate != 0.0 {
            format!(r#" transform="rotate({rotate} {} {})""#, f(x), f(y))
        } else {
            String::new()
        };
        let _ = write!(
            self.out,
            r#"<text class="{}" x="{}" y="{}" text-anchor="{anchor}"{transform}>{}</text>"#,
            esc(class),
            f(x),
            f(y),
            esc(text)
        );
    }

    /// A line.
    pub fn line(&mut self, class: &str, x1: f64, y1: f64, x2: f64, y2: f64) {
        self.el(
            "line",
            &[
                ("class", class.into()),
                ("x1", f(x1)),
                ("y1", f(y1)),
                ("x2", f(x2)),
                ("y2", f(y2)),
            ],
            None,
        );
    }

    /// Raw markup (already escaped), e.g. `<defs>`.
    pub fn raw(&mut self, s: &str) {
        self.out.push_str(s);
    }

    /// The finished `<svg>` element.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

/// A coordinate with at most one decimal.
fn f(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

/// The time axis: run-clock milliseconds to x.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    /// First ms shown.
    pub t0: f64,
    /// Last ms shown.
    pub t1: f64,
    /// x of `t0`.
    pub left: f64,
    /// Width of the plot.
    pub width: f64,
}

impl Axis {
    /// x of a time, clamped to the plot.
    pub fn x(&self, ms: f64) -> f64 {
        let span = (self.t1 - self.t0).max(1.0);
        self.left + ((ms - self.t0) / span).clamp(0.0, 1.0) * self.width
    }

    /// Ticks at a round number of seconds, labelled with the time since `origin`.
    fn ticks(&self, origin: f64) -> Vec<(f64, String)> {
        let secs = (self.t1 - self.t0) / 1000.0;
        let step = [
            1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
        ]
        .into_iter()
        .find(|s| secs / s <= 10.0)
        .unwrap_or(3600.0);
        let first = ((self.t0 - origin) / 1000.0 / step).ceil() * step;
        let mut out = Vec::new();
        let mut s = first;
        while origin + s * 1000.0 <= self.t1 + 0.5 {
            out.push((origin + s * 1000.0, clock(s)));
            s += step;
        }
        out
    }

    /// The axis line, ticks and labels at `y` (tick labels below it).
    fn draw(&self, svg: &mut Svg, y: f64, origin: f64) {
        svg.line("axis", self.left, y, self.left + self.width, y);
        for (ms, label) in self.ticks(origin) {
            let x = self.x(ms);
            svg.line("tick", x, y, x, y + 4.0);
            svg.text("tick-label", x, y + 15.0, "middle", 0.0, &label);
        }
    }
}

/// `75` -> `1:15`, `8` -> `0:08`.
pub fn clock(secs: f64) -> String {
    let s = secs.round().max(0.0) as u64;
    format!("{}:{:02}", s / 60, s % 60)
}

/// A round maximum (1, 2 or 5 times a power of ten) at or above `v`.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|m| *m >= v - 1e-9)
        .unwrap_or(10.0 * p)
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Interrupted => "interrupted",
    }
}

/// Shortens a label to `n` characters, with an ellipsis.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

const WIDTH: f64 = 960.0;

/// The step timeline: one row per step, a bar from its start to its end coloured by status,
/// retried steps striped and labelled with their attempts, skipped steps a grey tick; one row
/// per background traffic below. `id` keeps the stripe pattern's id unique on the page.
pub fn timeline(spans: &[Span], traffic: &[Traffic], total_ms: u64, id: &str) -> String {
    const LABEL: f64 = 330.0;
    const ROW: f64 = 20.0;
    const TOP: f64 = 8.0;
    let rows = spans.len() + traffic.len();
    let height = TOP + ROW * rows as f64 + 30.0;
    let axis = Axis {
        t0: 0.0,
        t1: (total_ms as f64).max(1000.0),
        left: LABEL,
        width: WIDTH - LABEL - 90.0,
    };
    let mut svg = Svg::new(WIDTH, height, "timeline", "step timeline");
    svg.raw(&format!(
        r#"<defs><pattern id="{id}-retry" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect class="stripe" x="0" y="0" width="3" height="6"/></pattern></defs>"#
    ));
    for (i, s) in spans.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        if i % 2 == 0 {
            svg.rect("row", (0.0, y, WIDTH, ROW), &[], None);
        }
        svg.text(
            "label",
            LABEL - 8.0,
            y + 14.0,
            "end",
            0.0,
            &short(&s.label(), 48),
        );
        let x0 = axis.x(s.start_ms as f64);
        let secs = (s.end_ms - s.start_ms) as f64 / 1000.0;
        let mut title = format!(
            "{} ({}): {} in {secs:.1}s",
            s.label(),
            s.kind,
            status_class(s.status)
        );
        if s.attempts > 1 {
            title.push_str(&format!(", {} attempts", s.attempts));
        }
        let data = [
            ("data-step", s.index.to_string()),
            ("data-name", s.name.clone()),
        ];
        if s.status == Status::Skipped || s.attempts == 0 {
            svg.rect(
                "bar skipped",
                (x0, y + 3.0, 2.0, ROW - 6.0),
                &data,
                Some(&title),
            );
            svg.text("note", x0 + 6.0, y + 14.0, "start", 0.0, "not run");
            continue;
        }
        let w = (axis.x(s.end_ms as f64) - x0).max(2.0);
        let class = format!("bar {}", status_class(s.status));
        svg.rect(&class, (x0, y + 3.0, w, ROW - 6.0), &data, Some(&title));
        if s.attempts > 1 {
            svg.el(
                "rect",
                &[
                    ("class", "retried".into()),
                    ("x", f(x0)),
                    ("y", f(y + 3.0)),
                    ("width", f(w)),
                    ("height", f(ROW - 6.0)),
                    ("fill", format!("url(#{id}-retry)")),
                ],
                None,
            );
            let t = format!("↻ {} attempts", s.attempts);
            svg.text("note", x0 + w + 4.0, y + 14.0, "start", 0.0, &t);
        }
    }
    for (j, t) in traffic.iter().enumerate() {
        let y = TOP + ROW * (spans.len() + j) as f64;
        svg.text(
            "label",
            LABEL - 8.0,
            y + 14.0,
            "end",
            0.0,
            &format!("traffic `{}`", t.name),
        );
        let (x0, x1) = (axis.x(t.origin_ms as f64), axis.x(t.end_ms() as f64));
        let title = format!(
            "background traffic `{}`: {} requests, {} failed",
            t.name,
            t.requests.len(),
            t.failed()
        );
        svg.rect(
            "bar traffic",
            (x0, y + 5.0, (x1 - x0).max(2.0), ROW - 10.0),
            &[],
            Some(&title),
        );
    }
    axis.draw(&mut svg, TOP + ROW * rows as f64 + 4.0, 0.0);
    svg.finish()
}

/// The scales of traffic charts, shared by two runs side by side so their bars compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The time shown, from the traffic's start.
    pub duration_ms: f64,
    /// Top of the requests/s scale.
    pub requests: f64,
    /// Top of the failures/s scale.
    pub failures: f64,
    /// Top of the p99 latency scale, in ms.
    pub p99_ms: f64,
}

impl Limits {
    /// Scales that fit every one of `traffics`.
    pub fn of(traffics: &[&Traffic]) -> Limits {
        let mut l = Limits {
            duration_ms: 1000.0,
            requests: 0.0,
            failures: 0.0,
            p99_ms: 0.0,
        };
        for t in traffics {
            l.duration_ms = l.duration_ms.max((t.end_ms() - t.origin_ms) as f64);
            for s in t.per_second() {
                l.requests = l.requests.max(f64::from(s.requests));
                l.failures = l.failures.max(f64::from(s.failures));
                l.p99_ms = l.p99_ms.max(s.p99_ms);
            }
        }
        l.requests = nice_max(l.requests);
        l.failures = nice_max(l.failures);
        l.p99_ms = nice_max(l.p99_ms);
        l
    }
}

const STRIP: f64 = 150.0;
const PANEL: f64 = 100.0;
const GAP: f64 = 28.0;

/// Background traffic per second on the run's clock: requests/s, failures/s and p99 latency
/// in three panels, with the steps that ran while it flowed drawn as bands across all three
/// and named above them; the step whose requests failed most is called out.
pub fn traffic_chart(t: &Traffic, spans: &[Span], limits: &Limits) -> String {
    let axis = Axis {
        t0: t.origin_ms as f64,
        t1: t.origin_ms as f64 + limits.duration_ms,
        left: 60.0,
        width: WIDTH - 80.0,
    };
    let bottom = STRIP + 3.0 * (PANEL + GAP);
    let label = format!("background traffic {} per second", t.name);
    let mut svg = Svg::new(WIDTH, bottom + 22.0, "traffic", &label);
    bands(&mut svg, &axis, spans, bottom);
    let seconds = t.per_second();
    let panels: [(&str, f64, &str); 3] = [
        ("requests/s", limits.requests, "req"),
        ("failures/s", limits.failures, "fail"),
        ("p99 latency (ms)", limits.p99_ms, "p99"),
    ];
    for (p, (name, max, class)) in panels.into_iter().enumerate() {
        let top = STRIP + GAP + p as f64 * (PANEL + GAP);
        svg.text("panel-title", axis.left, top - 8.0, "start", 0.0, name);
        svg.line(
            "axis",
            axis.left,
            top + PANEL,
            axis.left + axis.width,
            top + PANEL,
        );
        for frac in [0.5, 1.0] {
            let y = top + PANEL * (1.0 - frac);
            svg.line("grid", axis.left, y, axis.left + axis.width, y);
            svg.text(
                "tick-label",
                axis.left - 6.0,
                y + 4.0,
                "end",
                0.0,
                &format!("{}", max * frac),
            );
        }
        svg.text(
            "tick-label",
            axis.left - 6.0,
            top + PANEL + 4.0,
            "end",
            0.0,
            "0",
        );
        if class == "p99" {
            p99_line(&mut svg, &axis, &seconds, top, max);
        } else {
            second_bars(&mut svg, &axis, &seconds, top, max, class == "fail");
        }
    }
    call_out(&mut svg, &axis, t, spans, STRIP + GAP + PANEL + GAP);
    axis.draw(&mut svg, bottom + 2.0, t.origin_ms as f64);
    svg.finish()
}

/// The bands of the steps that overlap the axis, alternating shades (failed steps red), with
/// their names turned upright in the strip above the panels when the band is wide enough.
fn bands(svg: &mut Svg, axis: &Axis, spans: &[Span], bottom: f64) {
    let mut shade = 0;
    for s in spans {
        if (s.end_ms as f64) < axis.t0 || (s.start_ms as f64) > axis.t1 || s.attempts == 0 {
            continue;
        }
        let (x0, x1) = (axis.x(s.start_ms as f64), axis.x(s.end_ms as f64));
        shade += 1;
        let class = match s.status {
            Status::Passed => format!("band band-{}", shade % 2),
            other => format!("band band-{}", status_class(other)),
        };
        let data = [
            ("data-step", s.index.to_string()),
            ("data-name", s.name.clone()),
            ("data-start-ms", s.start_ms.to_string()),
            ("data-end-ms", s.end_ms.to_string()),
        ];
        let title = format!("{} ({}) {}", s.label(), s.kind, status_class(s.status));
        svg.rect(&class, (x0, 0.0, x1 - x0, bottom), &data, Some(&title));
        if x1 - x0 >= 11.0 {
            let x = (x0 + x1) / 2.0 + 4.0;
            svg.text(
                "band-label",
                x,
                STRIP - 4.0,
                "start",
                -90.0,
                &short(&s.label(), 25),
            );
        }
    }
}

/// One bar per second; failure bars name the step most of their failed requests were sent
/// in.
fn second_bars(svg: &mut Svg, axis: &Axis, seconds: &[Second], top: f64, max: f64, failures: bool) {
    for (k, s) in seconds.iter().enumerate() {
        let v = if failures { s.failures } else { s.requests };
        if v == 0 {
            continue;
        }
        let (x0, x1) = (
            axis.x(s.start_ms as f64),
            axis.x(s.start_ms as f64 + 1000.0),
        );
        let h = PANEL * (f64::from(v) / max).min(1.0);
        let mut data = vec![
            ("data-second", k.to_string()),
            ("data-start-ms", s.start_ms.to_string()),
        ];
        let title = if failures {
            let step = s
                .failed_in
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(name, _)| name.clone());
            data.push(("data-step", step.unwrap_or_default()));
            let by: Vec<String> = s
                .failed_in
                .iter()
                .map(|(n, c)| format!("{c} in `{n}`"))
                .collect();
            format!(
                "{}: {v} of {} failed ({})",
                clock(k as f64),
                s.requests,
                by.join(", ")
            )
        } else {
            format!("{}: {v} requests", clock(k as f64))
        };
        let class = if failures { "fail" } else { "req" };
        svg.rect(
            class,
            (x0, top + PANEL - h, (x1 - x0 - 0.5).max(0.8), h),
            &data,
            Some(&title),
        );
    }
}

/// The p99 latency of each second as a step line, broken where a second had no requests.
fn p99_line(svg: &mut Svg, axis: &Axis, seconds: &[Second], top: f64, max: f64) {
    let mut d = String::new();
    let mut open = false;
    for s in seconds {
        if s.requests == 0 {
            open = false;
            continue;
        }
        let y = top + PANEL * (1.0 - (s.p99_ms / max).min(1.0));
        let (x0, x1) = (
            axis.x(s.start_ms as f64),
            axis.x(s.start_ms as f64 + 1000.0),
        );
        let _ = write!(
            d,
            "{}{} {}L{} {}",
            if open { "L" } else { "M" },
            f(x0),
            f(y),
            f(x1),
            f(y)
        );
        open = true;
    }
    if !d.is_empty() {
        svg.el("path", &[("class", "p99".into()), ("d", d)], None);
    }
}

/// Names the step in which most requests failed, above the biggest failure bar.
fn call_out(svg: &mut Svg, axis: &Axis, t: &Traffic, spans: &[Span], top: f64) {
    let mut by_step: BTreeMap<&str, usize> = BTreeMap::new();
    for q in t.requests.iter().filter(|q| !q.ok) {
        *by_step.entry(q.step.as_str()).or_default() += 1;
    }
    let Some((step, n)) = by_step.into_iter().max_by_key(|(_, n)| *n) else {
        return;
    };
    let label = spans
        .iter()
        .find(|s| s.name == step)
        .map(|s| s.label())
        .unwrap_or_else(|| step.to_string());
    let peak = t
        .per_second()
        .into_iter()
        .max_by_key(|s| s.failed_in.get(step).copied().unwrap_or(0))
        .map(|s| s.start_ms as f64)
        .unwrap_or(axis.t0);
    let text = format!("{n} failed while `{}` ran", short(&label, 40));
    // Beside the peak bar, on the side with room for the text.
    let (x0, x1) = (axis.x(peak), axis.x(peak + 1000.0));
    if x1 + 320.0 < axis.left + axis.width {
        svg.text("call-out", x1 + 6.0, top + 14.0, "start", 0.0, &text);
    } else {
        svg.text("call-out", x0 - 6.0, top + 14.0, "end", 0.0, &text);
    }
}

/// The reviews versions that served product pages, as horizontal bars with counts and
/// shares.
pub fn reviews_chart(counts: &BTreeMap<String, u64>, label: &str) -> String {
    const ROW: f64 = 24.0;
    const LEFT: f64 = 110.0;
    let total: u64 = counts.values().sum();
    let max = counts.values().copied().max().unwrap_or(1).max(1) as f64;
    let width = 600.0;
    let mut svg = Svg::new(width, ROW * counts.len() as f64 + 8.0, "reviews", label);
    for (i, (version, n)) in counts.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        svg.text(
            "label",
            LEFT - 8.0,
            y + 15.0,
            "end",
            0.0,
            &format!("reviews {version}"),
        );
        let w = (width - LEFT - 120.0) * (*n as f64 / max);
        let share = 100.0 * *n as f64 / total.max(1) as f64;
        let title = format!("{version}: {n} of {total} pages ({share:.0}%)");
        let data = [
            ("data-version", version.clone()),
            ("data-count", n.to_string()),
        ];
        svg.rect(
            &format!("rv rv-{version}"),
            (LEFT, y + 3.0, w.max(1.0), ROW - 8.0),
            &data,
            Some(&title),
        );
        svg.text(
            "note",
            LEFT + w + 6.0,
            y + 15.0,
            "start",
            0.0,
            &format!("{n} ({share:.0}%)"),
        );
    }
    svg.finish()
}
