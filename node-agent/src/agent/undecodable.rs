//! Ports the agent cannot decode (version skew during an upgrade, a field written out of
//! range): each is told so on its status — phase `Failed`, a `Ready` condition with reason
//! `Undecodable` and the decoder's words — once per spec generation and error, by a merge patch
//! that leaves the rest of a status the agent cannot read as it is. The port is otherwise left
//! alone until it decodes again; its watch goes on for every other port (see `watch`).

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use switchyard_crds::{Condition, ConditionStatus, NetworkPort};
use tracing::warn;

use super::{Context, now};

/// The condition reason of a port the agent cannot decode.
pub const REASON_UNDECODABLE: &str = "Undecodable";

/// Tells every undecodable port sent on `invalid`, until the sender is dropped.
pub(super) async fn report(ctx: Arc<Context>, mut invalid: UnboundedReceiver<InvalidObject>) {
    // By UID: the generation and error last told (status writes leave the generation as is, so
    // the port's own next event after the write is not told again).
    let mut told: HashMap<String, (Option<i64>, String)> = HashMap::new();
    while let Some(object) = invalid.next().await {
        let Some(uid) = object.metadata.uid.clone() else {
            continue;
        };
        let said = (object.metadata.generation, object.error.clone());
        if told.get(&uid) == Some(&said) {
            continue;
        }
        match tell(&ctx, &object, &uid).await {
            Ok(()) => {
                told.insert(uid, said);
            }
            Err(error) => warn!(
                name = object.metadata.name.as_deref().unwrap_or_default(),
                %error,
                "could not mark an undecodable port; it is marked at its next change"
            ),
        }
    }
}

async fn tell(ctx: &Context, object: &InvalidObject, uid: &str) -> Result<(), kube::Error> {
    let metadata = &object.metadata;
    let api = Api::<DeserializeGuard<NetworkPort>>::namespaced(
        ctx.client.clone(),
        metadata.namespace.as_deref().unwrap_or_default(),
    );
    let condition = Condition {
        kind: "Ready".into(),
        status: ConditionStatus::False,
        reason: REASON_UNDECODABLE.into(),
        message: message(&object.error),
        last_transition_time: Some(now()),
        observed_generation: metadata.generation,
    };
    // The UID in the patch is a precondition: a port re-created under the same name is not
    // marked for its predecessor.
    let patch = serde_json::json!({
        "metadata": {"uid": uid},
        "status": {"phase": "Failed", "conditions": [condition]},
    });
    api.patch_status(
        metadata.name.as_deref().unwrap_or_default(),
        &PatchParams {
            field_manager: Some(ctx.manager.clone()),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await?;
    ctx.metrics.wrote("NetworkPort");
    Ok(())
}

fn message(error: &str) -> String {
    format!(
        "the node agent cannot read this port ({error}); it leaves the port as it is until the \
         port reads again: correct the field, or delete the port and create it again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_quotes_the_decoder_and_says_what_to_do() {
        let text = message("invalid value: integer `4294967296`, expected u32");
        assert!(text.contains("expected u32"), "{text}");
        assert!(
            text.contains("delete the port and create it again"),
            "{text}"
        );
    }
}
