//! Kubernetes Events about switchyard objects, as `kubectl describe` shows them.
//!
//! Written as core/v1 Events without an `eventTime`: for a cluster-scoped object such as a
//! Network, Kubernetes before 1.22 accepts an events.k8s.io Event only in `kube-system` and a
//! core/v1 one in `default`, where `kubectl describe` looks for it. Events are published on
//! transitions only (see `status::status_events`), so there is nothing to aggregate.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use switchyard_crds::CONTROLLER_MANAGER;

/// Publishes Events as the controller.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    instance: Option<String>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// The severity of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Something people may want to know.
    Normal,
    /// Something is wrong.
    Warning,
}

impl Publisher {
    /// A publisher reporting from `instance` (the pod's name) when known.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self { client, instance }
    }

    /// Publishes one Event about `regarding`.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        severity: Severity,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let now = Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or("switchyard"),
                    now.as_nanosecond()
                )),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(
                match severity {
                    Severity::Normal => "Normal",
                    Severity::Warning => "Warning",
                }
                .to_string(),
            ),
            action: Some("UpdateStatus".to_string()),
            source: Some(EventSource {
                component: Some(CONTROLLER_MANAGER.to_string()),
                host: None,
            }),
            reporting_component: Some(CONTROLLER_MANAGER.to_string()),
            reporting_instance: self.instance.clone(),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(1),
            ..Default::default()
        };
        Api::<Event>::namespaced(self.client.clone(), &namespace)
            .create(&PostParams::default(), &event)
            .await?;
        Ok(())
    }
}
