//! Batches link deletions: every deletion requested while one batch is in the kernel goes into
//! the next, so a burst of N port deletions costs about two RCU grace periods, not N.
//!
//! The batcher runs on a thread of its own, [`THREAD_NAME`]: its liveness (see
//! [`super::liveness`]) is then that of one schedulable thing, which `ps -T`, a debugger or a
//! test can find and stop by name, apart from the reconcile workers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::liveness::Heartbeat;
use crate::netlink::LinkManager;
use crate::ownership::LinkRef;

/// The batcher thread's name (as `/proc/<pid>/task/<tid>/comm` shows it).
pub const THREAD_NAME: &str = "link-deleter";

/// The largest batch: bounds one dump-and-retag round.
const MAX_BATCH: usize = 4096;

type Request = (LinkRef, oneshot::Sender<Result<(), String>>);

/// A handle to the batching task.
#[derive(Debug, Clone)]
pub struct DeleteBatcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl DeleteBatcher {
    /// Starts the batching thread. It beats `heart` after every batch and, idle, every `tick`.
    pub fn start(
        links: Arc<LinkManager>,
        metrics: Arc<super::metrics::Metrics>,
        heart: Arc<Heartbeat>,
        tick: Duration,
    ) -> std::io::Result<Self> {
        let (requests, queue) = mpsc::unbounded_channel::<Request>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || runtime.block_on(run(queue, links, metrics, heart, tick)))?;
        Ok(Self { requests })
    }

    /// Deletes an owned link; resolves once the batch holding it is done.
    pub async fn delete(&self, link: LinkRef) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.requests
            .send((link, reply))
            .map_err(|_| "the link deletion task has stopped".to_string())?;
        done.await
            .map_err(|_| "the link deletion task has stopped".to_string())?
    }
}

/// Takes every request waiting into one batch, deletes it, answers each; until every handle is
/// dropped.
async fn run(
    mut queue: mpsc::UnboundedReceiver<Request>,
    links: Arc<LinkManager>,
    metrics: Arc<super::metrics::Metrics>,
    heart: Arc<Heartbeat>,
    tick: Duration,
) {
    let mut idle = tokio::time::interval(tick);
    idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            request = queue.recv() => match request {
                Some(request) => request,
                None => return,
            },
            _ = idle.tick() => {
                heart.beat();
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let refs: Vec<LinkRef> = batch.iter().map(|(link, _)| link.clone()).collect();
        let started = std::time::Instant::now();
        let outcome = links.delete_links(&refs).await;
        metrics.observe_delete_batch(refs.len(), started.elapsed());
        heart.beat();
        match outcome {
            Ok(done) => {
                debug!(
                    links = refs.len(),
                    grouped = done.grouped,
                    "deleted a batch of links"
                );
                for (link, reply) in batch {
                    let result = if done.refused.contains(&link) {
                        Err(format!("link {link} is not switchyard's; left in place"))
                    } else {
                        Ok(())
                    };
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                warn!(%error, links = refs.len(), "batch link deletion failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
    }
}
