//! The raw rtnetlink floor: what the kernel charges for the links, with no agent in the way.
//!
//! In a private namespace with a veth end as the uplink, one request in flight at a time:
//! create N macvtaps (the same request the agent sends: vepa, MAC, link group, alias, up),
//! delete them one by one, create them again and delete them as a group (re-tag each into a
//! second group, then one `RTM_DELLINK` naming that group). Then the agent's own link path
//! alone, with no Kubernetes around it, so its overhead over the floor can be told apart from
//! the scheduling delay of a busy agent.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rtnetlink::LinkMacVtap;
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage, MacVtapMode};
use switchyard_crds::MacvtapMode as PortMode;
use switchyard_node_agent::netlink::{LinkManager, MacvtapRequest, NetnsTarget};
use switchyard_node_agent::ownership::{LinkGroups, LinkRef};
use switchyard_tests::netns::Sandbox;

use crate::Cancel;
use crate::netlink::{NsHandle, group_of};
use crate::stats::Phase;

/// Where the floor's links live, and where they are re-tagged for the group deletion.
const GROUP: u32 = 0x7377_7a01;
const DOOMED: u32 = 0x7377_7a02;

/// The floor's figures for one N.
#[derive(Debug, Clone, Default)]
pub struct Floor {
    /// Create N macvtaps, one request at a time.
    pub create: Phase,
    /// Delete them one at a time.
    pub delete_each: Phase,
    /// Re-tag each into the doomed group, one request at a time.
    pub retag: Phase,
    /// The one group `RTM_DELLINK`.
    pub group_delete: Phase,
    /// The agent's `LinkManager::create_macvtap`, one link at a time, no API: create with
    /// echo (for the ifindex), the alias the kernel ignores at creation, the tap device's
    /// major:minor from sysfs.
    pub agent_path: Phase,
    /// The agent's `LinkManager::delete_link`, one link at a time (a sample of the links).
    pub agent_delete_each: Phase,
    /// The agent's `LinkManager::delete_links` of the rest: check, re-tag, one group deletion.
    pub agent_delete_group: Phase,
}

impl Floor {
    /// Re-tag plus group deletion: the whole "delete as a group".
    pub fn delete_group(&self) -> Phase {
        Phase::total_only(self.retag.ops, self.retag.total + self.group_delete.total)
    }
}

/// The MAC of the i-th link (locally administered, unique per link).
pub fn mac(i: usize) -> [u8; 6] {
    [
        0x52,
        0x54,
        0x01,
        ((i >> 16) & 0xff) as u8,
        ((i >> 8) & 0xff) as u8,
        (i & 0xff) as u8,
    ]
}

fn alias(i: usize) -> String {
    // As long as a port UID.
    format!("00000000-0000-4000-8000-{i:012}")
}

/// Measures the floor for `n` links.
pub async fn run(n: usize, cancel: &Cancel) -> anyhow::Result<Floor> {
    let sandbox = Sandbox::new("floor").context("creating the floor's namespace")?;
    sandbox
        .add_nic("up0")
        .context("adding the floor's uplink")?;
    let ns = NsHandle::open(&sandbox.path()).await?;
    let lower = ns.index_of("up0").await?;

    let mut floor = Floor {
        create: create_all(&ns, lower, n, cancel).await?,
        ..Floor::default()
    };
    let indexes = owned_indexes(&ns).await?;
    anyhow::ensure!(indexes.len() == n, "created {} of {n} links", indexes.len());

    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for &index in &indexes {
        cancel.check()?;
        let t = Instant::now();
        ns.handle
            .link()
            .del(index)
            .execute()
            .await
            .context("deleting a link")?;
        latencies.push(t.elapsed());
    }
    floor.delete_each = Phase {
        ops: n,
        total: started.elapsed(),
        latencies,
    };

    // Again, for the group deletion (the creates are not counted twice).
    create_all(&ns, lower, n, cancel).await?;
    let indexes = owned_indexes(&ns).await?;
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for &index in &indexes {
        cancel.check()?;
        let t = Instant::now();
        let tag = LinkUnspec::new_with_index(index).link_group(DOOMED).build();
        ns.handle
            .link()
            .change(tag)
            .execute()
            .await
            .context("re-tagging a link")?;
        latencies.push(t.elapsed());
    }
    floor.retag = Phase {
        ops: n,
        total: started.elapsed(),
        latencies,
    };
    let mut by_group = LinkMessage::default();
    by_group.attributes.push(LinkAttribute::Group(DOOMED));
    let started = Instant::now();
    ns.handle
        .link()
        .del_with_message(by_group)
        .execute()
        .await
        .context("deleting the group")?;
    floor.group_delete = Phase::total_only(n, started.elapsed());
    anyhow::ensure!(
        ns.count_in_groups(&[GROUP, DOOMED]).await? == 0,
        "links left after the group deletion"
    );
    (
        floor.agent_path,
        floor.agent_delete_each,
        floor.agent_delete_group,
    ) = agent_path(&sandbox, n, cancel).await?;
    Ok(floor)
}

/// Links of the agent's path deleted one at a time (~16 ms each), the rest as a group.
const AGENT_SINGLE_DELETES: usize = 50;

/// The agent's link code alone: create N one at a time, delete a sample one at a time, the
/// rest as one batch. Returns (create, delete each, delete as a group).
async fn agent_path(
    sandbox: &Sandbox,
    n: usize,
    cancel: &Cancel,
) -> anyhow::Result<(Phase, Phase, Phase)> {
    let links = LinkManager::open(&NetnsTarget::Path(sandbox.path()), LinkGroups::DEFAULT)
        .await
        .context("opening the agent's link manager in the floor's namespace")?;
    let mut created: Vec<LinkRef> = Vec::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        cancel.check()?;
        // UUID-shaped, distinct in the ten hex digits the link name takes.
        let uid = format!("{i:08x}-0000-4000-8000-000000000000");
        let mac = mac(i)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let request = MacvtapRequest {
            port_uid: &uid,
            lower: "up0",
            mode: PortMode::Vepa,
            mac: &mac,
        };
        let t = Instant::now();
        let link = links
            .create_macvtap(&request)
            .await
            .with_context(|| format!("the agent's path creating macvtap {i}"))?;
        latencies.push(t.elapsed());
        created.push(link.link);
    }
    let create = Phase {
        ops: n,
        total: started.elapsed(),
        latencies,
    };
    // With a single link left the batch would be one plain deletion: keep at least two.
    let (singles, batch) = created.split_at(AGENT_SINGLE_DELETES.min(n.saturating_sub(2)));
    let mut latencies = Vec::with_capacity(singles.len());
    let started = Instant::now();
    for link in singles {
        cancel.check()?;
        let t = Instant::now();
        let deleted = links
            .delete_link(link)
            .await
            .with_context(|| format!("the agent's path deleting {link}"))?;
        anyhow::ensure!(deleted, "the agent's path found {link} already gone");
        latencies.push(t.elapsed());
    }
    let delete_each = Phase {
        ops: singles.len(),
        total: started.elapsed(),
        latencies,
    };
    let started = Instant::now();
    let deleted = links
        .delete_links(batch)
        .await
        .context("deleting the agent path's links")?;
    let delete_group = Phase::total_only(batch.len(), started.elapsed());
    anyhow::ensure!(
        deleted.deleted.len() == batch.len() && (deleted.grouped || batch.len() < 2),
        "the agent's path deleted {} of {} links (grouped: {})",
        deleted.deleted.len(),
        batch.len(),
        deleted.grouped
    );
    Ok((create, delete_each, delete_group))
}

async fn create_all(ns: &NsHandle, lower: u32, n: usize, cancel: &Cancel) -> anyhow::Result<Phase> {
    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        cancel.check()?;
        let message = LinkMacVtap::new(&format!("swf{i:05}"), lower, MacVtapMode::Vepa)
            .address(mac(i).to_vec())
            .link_group(GROUP)
            .alias(alias(i))
            .up()
            .build();
        let t = Instant::now();
        ns.handle
            .link()
            .add(message)
            .execute()
            .await
            .with_context(|| format!("creating macvtap {i}"))?;
        latencies.push(t.elapsed());
    }
    Ok(Phase {
        ops: n,
        total: started.elapsed(),
        latencies,
    })
}

async fn owned_indexes(ns: &NsHandle) -> anyhow::Result<Vec<u32>> {
    Ok(ns
        .dump()
        .await?
        .iter()
        .filter(|l| group_of(l) == GROUP)
        .map(|l| l.header.index)
        .collect())
}
