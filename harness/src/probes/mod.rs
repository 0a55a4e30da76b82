//! Probes (issue 5): HTTP checks, traffic, Bookinfo page parsing, and the dashboards.
