//! How the agent's watches recover: a watch whose resource version expired (410, as after an
//! apiserver restart) relists at once, and only failures to reach the apiserver back off,
//! briefly, so the agent converges within seconds of the apiserver answering again. And an
//! object the agent cannot decode (version skew during an upgrade, a field someone wrote out of
//! range) is taken out of its watch, said, and skipped: without that, one such object fails the
//! whole list and stalls the watch for every other object.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::core::error_boundary::InvalidObject;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use tracing::{info, warn};

/// The first wait after a failed watch request; it doubles up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(250);
/// The longest wait: a reconnect attempt to an apiserver that does not answer costs nothing,
/// and waiting longer only delays every port created meanwhile.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// Backoff between attempts to reach the apiserver (reset by any event that arrives).
#[derive(Debug, Clone)]
pub(super) struct Reconnect {
    next: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self { next: FIRST_WAIT }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_WAIT);
        Some(wait)
    }
}

impl Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = FIRST_WAIT;
    }
}

/// Whether the error says the watch's resource version is gone: the watcher relists by
/// itself, and there is nothing to wait for.
fn expired(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::WatchError(status) => status.code == 410,
        watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => status.code == 410,
        _ => false,
    }
}

/// The watch's events with expiries taken out (logged, and the relist starts at once) and a
/// brief backoff on every other error.
pub(super) fn recovering<S, K>(
    events: S,
    kind: &'static str,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    K: Send,
{
    kube::runtime::WatchStreamExt::backoff(
        events.filter(move |event| {
            let keep = !matches!(event, Err(error) if expired(error));
            if !keep {
                info!(kind, "watch expired; relisting");
            }
            futures::future::ready(keep)
        }),
        Reconnect::default(),
    )
}

/// The watch's events with the objects that did not decode taken out. Each is logged and handed
/// to `undecodable` (to be reported on the object); a deleted one still leaves the cache (as an
/// object with only its metadata), so that an object valid before is not kept forever.
pub(super) fn decodable<S, K>(
    events: S,
    kind: &'static str,
    mut undecodable: impl FnMut(InvalidObject) + Send,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    S: Stream<Item = Result<watcher::Event<DeserializeGuard<K>>, watcher::Error>> + Send,
    K: Resource + Default + Send,
{
    events.filter_map(move |event| {
        let event = event
            .map(|event| decoded(event, kind, &mut undecodable))
            .transpose();
        futures::future::ready(event)
    })
}

fn decoded<K: Resource + Default>(
    event: watcher::Event<DeserializeGuard<K>>,
    kind: &'static str,
    undecodable: &mut impl FnMut(InvalidObject),
) -> Option<watcher::Event<K>> {
    use watcher::Event;
    let mut valid = |guard: DeserializeGuard<K>| match guard.0 {
        Ok(object) => Some(object),
        Err(invalid) => {
            warn!(
                kind,
                namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
                name = invalid.metadata.name.as_deref().unwrap_or_default(),
                error = %invalid.error,
                "skipping an object the agent cannot decode"
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
    use super::*;

    #[test]
    fn reconnect_waits_double_up_to_two_seconds_and_reset() {
        let mut backoff = Reconnect::default();
        let waits: Vec<_> = backoff.by_ref().take(5).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 2000].map(Duration::from_millis)
        );
        backoff.reset();
        assert_eq!(backoff.next(), Some(FIRST_WAIT));
    }

    #[test]
    fn undecodable_objects_are_said_and_skipped_and_still_leave_on_delete() {
        use switchyard_crds::NetworkPort;
        use watcher::Event;
        let port = |mac: serde_json::Value| {
            serde_json::from_value::<DeserializeGuard<NetworkPort>>(serde_json::json!({
                "apiVersion": "switchyard.dev/v1alpha1", "kind": "NetworkPort",
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"network": "n", "node": "x", "mac": mac},
            }))
            .unwrap()
        };
        let mut said = Vec::new();
        let mut decode = |event| {
            decoded(event, "NetworkPort", &mut |bad: InvalidObject| {
                said.push(bad.metadata.name.unwrap_or_default())
            })
        };
        let good = decode(Event::Apply(port("52:54:00:00:00:01".into())));
        assert!(matches!(good, Some(Event::Apply(p)) if p.spec.mac == "52:54:00:00:00:01"));
        assert!(decode(Event::InitApply(port(7.into()))).is_none());
        assert!(decode(Event::Apply(port(7.into()))).is_none());
        let gone = decode(Event::Delete(port(7.into())));
        assert!(matches!(gone, Some(Event::Delete(p)) if p.metadata.name.as_deref() == Some("p")));
        assert_eq!(said, ["p", "p"]);
    }

    #[test]
    fn only_a_gone_resource_version_is_an_expiry() {
        let status = |code| Box::new(kube::core::Status::failure("x", "Expired").with_code(code));
        assert!(expired(&watcher::Error::WatchError(status(410))));
        assert!(expired(&watcher::Error::WatchStartFailed(
            kube::Error::Api(status(410))
        )));
        assert!(!expired(&watcher::Error::WatchError(status(500))));
        assert!(!expired(&watcher::Error::NoResourceVersion));
    }
}
