//! Watches that survive an object they cannot decode. During an upgrade (version skew) or after
//! someone wrote a field out of range, one object may not decode as this version's type: a
//! plain typed watch then fails its whole list and stalls for every other object. Watching
//! `DeserializeGuard<K>` and taking the bad objects out with [`decodable`] skips just that one,
//! with a warning. The controller's and the node agent's watches all go through here.

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::watcher;
use tracing::warn;

/// The watch's events with the objects that did not decode taken out. Each is logged and handed
/// to `undecodable` (the agent marks such a port on its status; the controller has nothing to
/// add to the warning); a deleted one still leaves the cache (as an object with only its
/// metadata), so that an object valid before is not kept forever.
pub fn decodable<S, K>(
    events: S,
    mut undecodable: impl FnMut(InvalidObject) + Send,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<DeserializeGuard<K>>, watcher::Error>> + Send,
    K: Resource<DynamicType = ()> + Default + Send,
{
    events.filter_map(move |event| {
        let event = event
            .map(|event| decoded(event, &mut undecodable))
            .transpose();
        futures::future::ready(event)
    })
}

fn decoded<K: Resource<DynamicType = ()> + Default>(
    event: watcher::Event<DeserializeGuard<K>>,
    undecodable: &mut impl FnMut(InvalidObject),
) -> Option<watcher::Event<K>> {
    use watcher::Event;
    let mut valid = |guard: DeserializeGuard<K>| match guard.0 {
        Ok(object) => Some(object),
        Err(invalid) => {
            warn!(
                kind = %K::kind(&()),
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "skipping an object that cannot be decoded"
            );
            undecodable(invalid);
            None
        }
    };
    match event {
        Event::Apply(guard) => valid(guard).map(Event::Apply),
        Event::InitApply(guard) => valid(guard).map(Event::InitApply),
        Event::Delete(DeserializeGuard(Ok(object))) => Some(Event::Delete(object)),
        Event::Delete(DeserializeGuard(Err(invalid))) => {
            let mut gone = K::default();
            *gone.meta_mut() = invalid.metadata;
            Some(Event::Delete(gone))
        }
        Event::Init => Some(Event::Init),
        Event::InitDone => Some(Event::InitDone),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use watcher::Event;

    use super::*;

    /// A ConfigMap whose `data` is `data`: a map of strings decodes, a number does not (as a
    /// field another version writes differently).
    fn config_map(data: serde_json::Value) -> DeserializeGuard<ConfigMap> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "ns"},
            "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn undecodable_objects_are_said_and_skipped_and_still_leave_on_delete() {
        let mut said = Vec::new();
        let mut decode = |event| {
            decoded(event, &mut |bad: InvalidObject| {
                said.push(bad.metadata.name.unwrap_or_default())
            })
        };
        let good = decode(Event::Apply(config_map(serde_json::json!({"k": "v"}))));
        assert!(
            matches!(good, Some(Event::Apply(c)) if c.data.as_ref().is_some_and(|d| d["k"] == "v"))
        );
        assert!(decode(Event::InitApply(config_map(7.into()))).is_none());
        assert!(decode(Event::Apply(config_map(7.into()))).is_none());
        let gone = decode(Event::Delete(config_map(7.into())));
        assert!(matches!(gone, Some(Event::Delete(c)) if c.metadata.name.as_deref() == Some("c")));
        assert!(matches!(decode(Event::InitDone), Some(Event::InitDone)));
        assert_eq!(said, ["c", "c"]);
    }

    #[test]
    fn a_stream_keeps_its_errors_and_good_objects_around_a_bad_one() {
        let events = futures::stream::iter([
            Ok(Event::Init),
            Ok(Event::InitApply(config_map(serde_json::json!({"k": "a"})))),
            Ok(Event::InitApply(config_map(7.into()))),
            Ok(Event::InitApply(config_map(serde_json::json!({"k": "b"})))),
            Ok(Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
        ]);
        let mut skipped = 0;
        let out: Vec<_> =
            futures::executor::block_on(decodable(events, |_| skipped += 1).collect());
        let seen: Vec<String> = out
            .iter()
            .map(|event| match event {
                Ok(Event::Init) => "init".to_string(),
                Ok(Event::InitApply(c)) => c.data.clone().unwrap_or_default()["k"].clone(),
                Ok(Event::InitDone) => "done".to_string(),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(error) => format!("error: {error}"),
            })
            .collect();
        assert_eq!(seen[..4], ["init", "a", "b", "done"]);
        assert!(seen[4].starts_with("error"), "{seen:?}");
        assert_eq!(skipped, 1);
    }
}
