//! **STAND-IN** entrypoint for Jaeger 1.x's `all-in-one` image, which Istio's Jaeger addon
//! used up to 1.2x (`docker.io/jaegertracing/all-in-one:1.23` in 1.12.1), configured by
//! environment variables. The real Jaeger here is Jaeger v2 (`cmd/jaeger`, built from its Go
//! module by `fixtures/standins/build-go-programs`), configured by a file: this program writes
//! the v2 configuration equal to what the 1.x variables ask for and `exec`s Jaeger with it.
//! So traces are received, stored and queried by real Jaeger, on 1.x's ports: Zipkin at
//! `COLLECTOR_ZIPKIN_HOST_PORT` (the demo profile's `zipkin.istio-system:9411` up to 1.21),
//! jaeger gRPC 14250 and Thrift HTTP 14268, OTLP 4317/4318, the query UI/API on 16686 under
//! `QUERY_BASE_PATH`, and the admin port 14269 answering the addon's probes at `/`.
//! Followed: Jaeger 1.x's `cmd/all-in-one` flags and env names (`SPAN_STORAGE_TYPE`,
//! `BADGER_*`, `MEMORY_MAX_TRACES`) and Jaeger v2's `cmd/jaeger/config-badger.yaml`.

use std::collections::BTreeMap;

/// The v2 configuration (YAML) for the 1.x environment `env`.
pub fn config(env: &BTreeMap<String, String>) -> String {
    let get = |k: &str, d: &str| env.get(k).cloned().unwrap_or_else(|| d.to_string());
    let zipkin = get("COLLECTOR_ZIPKIN_HOST_PORT", ":9411");
    let zipkin = if zipkin.starts_with(':') {
        format!("0.0.0.0{zipkin}")
    } else {
        zipkin
    };
    let base = get("QUERY_BASE_PATH", "/");
    let backend = if get("SPAN_STORAGE_TYPE", "memory") == "badger" {
        format!(
            "badger:\n          ephemeral: {}\n          directories:\n            keys: {:?}\n            values: {:?}",
            get("BADGER_EPHEMERAL", "true"),
            get("BADGER_DIRECTORY_KEY", "/tmp/badger/key"),
            get("BADGER_DIRECTORY_VALUE", "/tmp/badger/data"),
        )
    } else {
        format!(
            "memory:\n          max_traces: {}",
            get("MEMORY_MAX_TRACES", "100000")
        )
    };
    format!(
        r#"# written by the jaeger-all-in-one STAND-IN from Jaeger 1.x's environment
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp, jaeger, zipkin]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
extensions:
  healthcheckv2:
    use_v2: false
    endpoint: 0.0.0.0:14269
    path: /
  jaeger_query:
    base_path: {base:?}
    storage:
      traces: store
  jaeger_storage:
    backends:
      store:
        {backend}
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: 0.0.0.0:4317 }}
      http: {{ endpoint: 0.0.0.0:4318 }}
  jaeger:
    protocols:
      grpc: {{ endpoint: 0.0.0.0:14250 }}
      thrift_http: {{ endpoint: 0.0.0.0:14268 }}
  zipkin:
    endpoint: {zipkin:?}
processors:
  batch: {{}}
exporters:
  jaeger_storage_exporter:
    trace_storage: store
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_1_12s_addon_environment_becomes_badger_zipkin_and_the_base_path() {
        let env: BTreeMap<String, String> = [
            ("BADGER_EPHEMERAL", "false"),
            ("SPAN_STORAGE_TYPE", "badger"),
            ("BADGER_DIRECTORY_VALUE", "/badger/data"),
            ("BADGER_DIRECTORY_KEY", "/badger/key"),
            ("COLLECTOR_ZIPKIN_HOST_PORT", ":9411"),
            ("QUERY_BASE_PATH", "/jaeger"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = config(&env);
        assert!(c.contains("endpoint: \"0.0.0.0:9411\""), "{c}");
        assert!(c.contains("base_path: \"/jaeger\""), "{c}");
        assert!(c.contains("ephemeral: false"), "{c}");
        assert!(c.contains("keys: \"/badger/key\""), "{c}");
        let mem = config(&BTreeMap::new());
        assert!(
            mem.contains("max_traces: 100000") && mem.contains("base_path: \"/\""),
            "{mem}"
        );
    }
}
