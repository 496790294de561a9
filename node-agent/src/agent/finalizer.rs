//! The port finalizer, added and removed with JSON patches that test the list first (as kube's
//! `finalizer` helper does), so a concurrent writer's change is never overwritten.
//!
//! The agent does not use kube's helper because its cleanup must not hold a reconcile slot while
//! the link waits for its deletion batch: the finalizer is removed later, by the task that sees
//! the link gone ([`super::ports`]).

use json_patch::{
    AddOperation, Patch as JsonPatch, PatchOperation, RemoveOperation, TestOperation,
};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::Value;
use switchyard_crds::{NetworkPort, PORT_FINALIZER};

/// Whether the port carries the agent's finalizer.
pub(crate) fn present(port: &NetworkPort) -> bool {
    port.finalizers().iter().any(|f| f == PORT_FINALIZER)
}

/// Adds the finalizer and returns the port as the apiserver now has it.
pub(super) async fn add(api: &Api<NetworkPort>, port: &NetworkPort) -> kube::Result<NetworkPort> {
    let patch = if port.finalizers().is_empty() {
        JsonPatch(vec![
            PatchOperation::Test(TestOperation {
                path: pointer(&["metadata", "finalizers"]),
                value: Value::Null,
            }),
            PatchOperation::Add(AddOperation {
                path: pointer(&["metadata", "finalizers"]),
                value: vec![PORT_FINALIZER].into(),
            }),
        ])
    } else {
        JsonPatch(vec![
            PatchOperation::Test(TestOperation {
                path: pointer(&["metadata", "finalizers"]),
                value: port.finalizers().into(),
            }),
            PatchOperation::Add(AddOperation {
                path: pointer(&["metadata", "finalizers", "-"]),
                value: PORT_FINALIZER.into(),
            }),
        ])
    };
    api.patch(
        &port.name_any(),
        &PatchParams::default(),
        &Patch::Json::<()>(patch),
    )
    .await
}

/// Removes the finalizer (the apiserver then deletes the port). A port already without it, or
/// already gone, is done.
pub(crate) async fn remove(api: &Api<NetworkPort>, port: &NetworkPort) -> kube::Result<()> {
    let Some(index) = port.finalizers().iter().position(|f| f == PORT_FINALIZER) else {
        return Ok(());
    };
    let index = index.to_string();
    let path = ["metadata", "finalizers", index.as_str()];
    let mut patch = vec![
        PatchOperation::Test(TestOperation {
            path: pointer(&path),
            value: PORT_FINALIZER.into(),
        }),
        PatchOperation::Remove(RemoveOperation {
            path: pointer(&path),
        }),
    ];
    // Pin the object: a port deleted and re-created under the same name is not this one.
    if let Some(uid) = port.meta().uid.as_deref() {
        patch.insert(
            0,
            PatchOperation::Test(TestOperation {
                path: pointer(&["metadata", "uid"]),
                value: uid.into(),
            }),
        );
    }
    match api
        .patch(
            &port.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(JsonPatch(patch)),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn pointer(tokens: &[&str]) -> json_patch::jsonptr::PointerBuf {
    json_patch::jsonptr::PointerBuf::from_tokens(tokens.iter().copied())
}
