//! What the steps of one run share: the cluster, variables, what the run created (its
//! cleanup stack), and what earlier steps recorded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::Outputs;
use crate::cleanup::CleanupStack;
use crate::cluster::ClusterInfo;
use crate::error::StepError;
use crate::scenario::vars::Vars;

/// Istio as this run sees it.
#[derive(Debug, Clone, Default)]
pub struct IstioInfo {
    /// The release directory (samples, manifests, maybe bin/istioctl).
    pub dir: Option<PathBuf>,
    /// The version, when known.
    pub version: Option<String>,
    /// The profile for `istio-install` steps.
    pub profile: String,
    /// The istioctl binary, when one is available.
    pub istioctl: Option<crate::istio::Istioctl>,
    /// The control plane revision in use, when it has one (after a canary upgrade).
    pub revision: Option<String>,
}

/// Shared state of one scenario run.
pub struct Context {
    /// The scenario's name.
    pub scenario: String,
    /// Default namespace for steps that name none.
    pub namespace: String,
    /// Variables: built-ins and captures.
    pub vars: Vars,
    /// The cluster, once created (none for the `none` provider).
    pub cluster: Option<ClusterInfo>,
    /// The run's artifacts directory.
    pub artifacts: PathBuf,
    /// Istio release, version, istioctl.
    pub istio: IstioInfo,
    /// What the run created, undone in reverse at teardown.
    pub cleanup: CleanupStack,
    /// Named snapshots recorded by `snapshot` steps, already normalized.
    pub snapshots: BTreeMap<String, Value>,
    /// Outputs of finished steps, by display name, for `snapshot` steps.
    pub step_outputs: BTreeMap<String, Outputs>,
    /// Objects applied by the current step (`kind/namespace/name`), for diagnostics.
    pub applied: Vec<String>,
    /// True when the cluster outlives the run (provider `existing`): what the run did not
    /// create there is not the run's to remove.
    pub cluster_outlives_run: bool,
    /// Install Istio even over a control plane already on a cluster that outlives the run
    /// (`--reinstall-istio`).
    pub reinstall_istio: bool,
    /// How long teardown waits for each deletion on a cluster that outlives the run.
    pub delete_timeout: std::time::Duration,
    /// The display name of the step running now, shared with background work (traffic
    /// records which step each request fell in).
    pub current_step: Arc<Mutex<String>>,
    /// Where the running step says what it still waits on (the run's progress output).
    pub status: crate::report::StatusLine,
    /// The pods the current step waited on, so diagnostics list them first.
    pub waited_on: Option<crate::kubeops::diagnostics::PodSelection>,
    client: Option<kube::Client>,
}

impl Context {
    /// A fresh context.
    pub fn new(scenario: &str, namespace: &str, artifacts: PathBuf) -> Self {
        Context {
            scenario: scenario.to_string(),
            namespace: namespace.to_string(),
            vars: Vars::default(),
            cluster: None,
            artifacts,
            istio: IstioInfo::default(),
            cleanup: CleanupStack::default(),
            snapshots: BTreeMap::new(),
            step_outputs: BTreeMap::new(),
            applied: Vec::new(),
            cluster_outlives_run: false,
            reinstall_istio: false,
            delete_timeout: crate::cleanup::DELETE_TIMEOUT,
            current_step: Arc::default(),
            status: crate::report::StatusLine::default(),
            waited_on: None,
            client: None,
        }
    }

    /// Records which step runs now (see [`Context::current_step`]).
    pub fn set_current_step(&self, name: &str) {
        if let Ok(mut s) = self.current_step.lock() {
            name.clone_into(&mut s);
        }
    }

    /// The display name of the step running now (empty outside a step).
    pub fn current_step_name(&self) -> String {
        self.current_step
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// The Kubernetes client for this run's cluster, made on first use from the cluster's own
    /// kubeconfig file (never `~/.kube/config`).
    pub async fn client(&mut self) -> Result<kube::Client, StepError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let Some(cluster) = &self.cluster else {
            return Err(StepError::fatal(
                "this step needs a Kubernetes cluster, but the scenario runs with provider `none`",
            )
            .with_hint("set `cluster.provider` in the scenario or pass --provider"));
        };
        let client =
            crate::kubeops::client_for(&cluster.kubeconfig, cluster.context.as_deref()).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Forgets the cached client (after the cluster is gone).
    pub fn drop_client(&mut self) {
        self.client = None;
    }

    /// The namespace a step uses: its own, else the scenario's.
    pub fn ns(&self, own: Option<&String>) -> String {
        own.cloned().unwrap_or_else(|| self.namespace.clone())
    }
}
