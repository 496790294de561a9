//! Deleting the agent's links: one at a time, or a batch in one group deletion.
//!
//! Deleting a link costs one RCU grace period (about 16 ms) however small it is; deleting a
//! whole link group costs one grace period for all of its links. So a batch is re-tagged into
//! the doomed group (one cheap `RTM_SETLINK` each, pipelined on the socket) and then deleted
//! with a single `RTM_DELLINK` naming that group. Everything is checked against the kernel
//! first: only links in an owned group with the owned name prefix are touched, and if the doomed
//! group holds anything else, the batch falls back to one deletion per link.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use tracing::{debug, info, warn};

use super::observe::LinkSummary;
use super::{ENODEV, EOPNOTSUPP, LinkManager, NetlinkError, errno, observe};
use crate::ownership::{GroupRole, LinkRef};

/// Re-tag requests in flight at once: enough to keep the socket busy, bounded for the kernel's
/// socket buffer.
const RETAG_IN_FLIGHT: usize = 64;

/// What a batch deletion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDeletion {
    /// Links deleted, including owned links left in the doomed group by an earlier crash.
    pub deleted: Vec<LinkRef>,
    /// Links that no longer existed.
    pub already_gone: Vec<LinkRef>,
    /// Links left alone because they are not the agent's.
    pub refused: Vec<LinkRef>,
    /// Whether one group deletion did it (rather than one deletion per link).
    pub grouped: bool,
}

impl LinkManager {
    /// Deletes one owned link. Returns `false` when it was already gone; refuses links that are
    /// not the agent's ([`NetlinkError::NotOwned`]), including an ifindex now used by another
    /// link.
    pub async fn delete_link(&self, link: &LinkRef) -> Result<bool, NetlinkError> {
        let Some(current) = self.link_by_index(link.ifindex).await? else {
            return Ok(false);
        };
        if !self.is_this_owned_link(&LinkSummary::from_message(&current), link) {
            return Err(NetlinkError::NotOwned(link.clone()));
        }
        self.delete_by_index(link).await
    }

    async fn delete_by_index(&self, link: &LinkRef) -> Result<bool, NetlinkError> {
        match self.handle.link().del(link.ifindex).execute().await {
            Ok(()) => {
                debug!(link = %link, "link deleted");
                Ok(true)
            }
            Err(error) if errno(&error) == Some(ENODEV) => Ok(false),
            Err(error) => Err(NetlinkError::kernel(format!("deleting {link}"), error)),
        }
    }

    fn is_this_owned_link(&self, current: &LinkSummary, link: &LinkRef) -> bool {
        current.is_named(&link.name) && observe::is_owned(current, &self.groups)
    }

    /// Deletes a batch of owned links with one group deletion (see the module docs). Links not
    /// owned are reported in `refused` and left alone.
    pub async fn delete_links(&self, links: &[LinkRef]) -> Result<BatchDeletion, NetlinkError> {
        let mut outcome = BatchDeletion::default();
        let current = self.dump_links().await?;
        let by_index: HashMap<u32, &LinkSummary> =
            current.iter().map(|link| (link.index, link)).collect();
        let mut doomed = Vec::new();
        for link in links {
            match by_index.get(&link.ifindex) {
                None => outcome.already_gone.push(link.clone()),
                Some(message) if self.is_this_owned_link(message, link) => {
                    doomed.push(link.clone())
                }
                // Same ifindex, another name: ours is gone and the index was reused.
                Some(message) if !message.is_named(&link.name) => {
                    outcome.already_gone.push(link.clone())
                }
                Some(_) => {
                    warn!(link = %link, "not deleting a link switchyard does not own");
                    outcome.refused.push(link.clone());
                }
            }
        }
        // Owned links an earlier crash left between re-tag and deletion go with this batch.
        let leftovers: Vec<LinkRef> = current
            .iter()
            .filter_map(|message| observe::to_owned_link(message, &self.groups, &HashMap::new()))
            .filter(|owned| owned.group == GroupRole::Doomed && !doomed.contains(&owned.link))
            .map(|owned| owned.link)
            .collect();
        let foreign_in_doomed = current.iter().any(|message| {
            message.group == self.groups.doomed && !observe::is_owned(message, &self.groups)
        });

        if doomed.is_empty() && leftovers.is_empty() {
            return Ok(outcome);
        }
        if doomed.len() + leftovers.len() == 1 || foreign_in_doomed {
            if foreign_in_doomed {
                warn!(
                    group = self.groups.doomed,
                    "a link switchyard does not own is in its doomed group; deleting one by one"
                );
            }
            for link in doomed.into_iter().chain(leftovers) {
                self.delete_one_of_batch(link, &mut outcome).await?;
            }
            return Ok(outcome);
        }

        let retagged: Vec<(LinkRef, Result<(), rtnetlink::Error>)> = stream::iter(doomed)
            .map(|link| async move {
                let tag = LinkUnspec::new_with_index(link.ifindex)
                    .link_group(self.groups.doomed)
                    .build();
                let result = self.handle.link().change(tag).execute().await;
                (link, result)
            })
            .buffer_unordered(RETAG_IN_FLIGHT)
            .collect()
            .await;
        let mut tagged = leftovers;
        for (link, result) in retagged {
            match result {
                Ok(()) => tagged.push(link),
                Err(error) if errno(&error) == Some(ENODEV) => outcome.already_gone.push(link),
                Err(error) => {
                    return Err(NetlinkError::kernel(
                        format!("moving {link} to the doomed group"),
                        error,
                    ));
                }
            }
        }

        let mut by_group = LinkMessage::default();
        by_group
            .attributes
            .push(LinkAttribute::Group(self.groups.doomed));
        match self
            .handle
            .link()
            .del_with_message(by_group)
            .execute()
            .await
        {
            Ok(()) => {
                info!(
                    links = tagged.len(),
                    group = self.groups.doomed,
                    "batch deleted by group"
                );
                outcome.deleted.extend(tagged);
                outcome.grouped = true;
            }
            Err(error) if errno(&error) == Some(ENODEV) => {
                outcome.already_gone.extend(tagged);
            }
            Err(error) if errno(&error) == Some(EOPNOTSUPP) => {
                warn!(
                    "group deletion refused (a device without dellink joined the group); deleting one by one"
                );
                for link in tagged {
                    self.delete_one_of_batch(link, &mut outcome).await?;
                }
            }
            Err(error) => {
                return Err(NetlinkError::kernel(
                    format!("deleting link group {}", self.groups.doomed),
                    error,
                ));
            }
        }
        Ok(outcome)
    }

    async fn delete_one_of_batch(
        &self,
        link: LinkRef,
        outcome: &mut BatchDeletion,
    ) -> Result<(), NetlinkError> {
        match self.delete_link(&link).await {
            Ok(true) => outcome.deleted.push(link),
            Ok(false) => outcome.already_gone.push(link),
            Err(NetlinkError::NotOwned(link)) => outcome.refused.push(link),
            Err(error) => return Err(error),
        }
        Ok(())
    }

    /// Moves a link tagged for deletion back to the owned group (recovery: its port is live).
    pub async fn restore_group(&self, link: &LinkRef) -> Result<(), NetlinkError> {
        let Some(current) = self.link_by_index(link.ifindex).await? else {
            return Err(NetlinkError::LinkGone(link.clone()));
        };
        if !self.is_this_owned_link(&LinkSummary::from_message(&current), link) {
            return Err(NetlinkError::NotOwned(link.clone()));
        }
        let tag = LinkUnspec::new_with_index(link.ifindex)
            .link_group(self.groups.owned)
            .build();
        self.handle
            .link()
            .change(tag)
            .execute()
            .await
            .map_err(|error| {
                NetlinkError::kernel(format!("restoring {link} to the owned group"), error)
            })
    }
}
