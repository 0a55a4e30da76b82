//! **Stand-ins**, not Istio: small programs that take the place of the Istio binaries that
//! cannot be had on a machine with no image registry, so that Istio's own manifests (the
//! release's CRDs, `samples/bookinfo/...`, `samples/addons/...`) apply unchanged on the lab and
//! the walkthrough's mechanics are real: a real admission webhook that injects pods, real
//! iptables interception set up by an init container, real Envoy in every place Istio puts one.
//!
//! Each binary says at its top which Istio program it stands in for and which Istio source
//! file it follows. They are packed into images under Istio's real image names by
//! `fixtures/standins/build-images` and loaded into the lab node.
#![warn(missing_docs)]
pub mod agent;
pub mod bookinfo;
pub mod grafana;
pub mod istioctl;
pub mod istiod;
pub mod jaeger_v1;
pub mod kiali;
pub mod reloader;
