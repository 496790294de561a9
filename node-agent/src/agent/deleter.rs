//! Batches link deletions: every deletion requested while one batch is in the kernel goes into
//! the next, so a burst of N port deletions costs about two RCU grace periods, not N.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::netlink::LinkManager;
use crate::ownership::LinkRef;

/// The largest batch: bounds one dump-and-retag round.
const MAX_BATCH: usize = 4096;

type Request = (LinkRef, oneshot::Sender<Result<(), String>>);

/// A handle to the batching task.
#[derive(Debug, Clone)]
pub struct DeleteBatcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl DeleteBatcher {
    /// Starts the batching task on the current runtime.
    pub fn start(links: Arc<LinkManager>, metrics: Arc<super::metrics::Metrics>) -> Self {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
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
        });
        Self { requests }
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
