//! The `istio-e2e` command line; all logic lives in the `harness` crate (`harness::cli`).

fn main() -> std::process::ExitCode {
    harness::cli::main()
}
