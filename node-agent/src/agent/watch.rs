//! How the agent's watches recover: a watch whose resource version expired (410, as after an
//! apiserver restart) relists at once, and only failures to reach the apiserver back off,
//! briefly, so the agent converges within seconds of the apiserver answering again. (An object
//! the agent cannot decode is skipped by [`switchyard_retry::watch::decodable`], shared with
//! the controller.)

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher;
use tracing::info;

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
