//! rtnetlink sockets inside a sandbox namespace, opened without the agent's code.

use std::fs::File;
use std::path::Path;

use anyhow::Context as _;
use futures::TryStreamExt;
use nix::sched::{CloneFlags, setns};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};

/// A netlink handle in one network namespace; the connection task stops on drop.
#[derive(Debug)]
pub struct NsHandle {
    /// The rtnetlink handle.
    pub handle: rtnetlink::Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for NsHandle {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl NsHandle {
    /// Opens a route netlink socket in the namespace `netns` (a file like /run/netns/X). The
    /// socket is created on a short-lived thread that entered the namespace: a socket belongs to
    /// the namespace it was created in, so the rest of the process is untouched.
    pub async fn open(netns: &Path) -> anyhow::Result<Self> {
        let file = File::open(netns).with_context(|| format!("opening {}", netns.display()))?;
        let runtime = tokio::runtime::Handle::current();
        let opened = std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).context("setns into the sandbox")?;
            let _entered = runtime.enter();
            rtnetlink::new_connection().context("opening a netlink socket")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the netns thread panicked"))??;
        let (connection, handle, _) = opened;
        Ok(Self {
            handle,
            connection: tokio::spawn(connection),
        })
    }

    /// Every link in the namespace.
    pub async fn dump(&self) -> anyhow::Result<Vec<LinkMessage>> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .context("dumping links")
    }

    /// The ifindex of a link by name.
    pub async fn index_of(&self, name: &str) -> anyhow::Result<u32> {
        let links = self.dump().await?;
        links
            .iter()
            .find(|l| name_of(l) == Some(name))
            .map(|l| l.header.index)
            .with_context(|| format!("no link named {name}"))
    }

    /// How many links are in `group`.
    pub async fn count_in_groups(&self, groups: &[u32]) -> anyhow::Result<usize> {
        Ok(self
            .dump()
            .await?
            .iter()
            .filter(|l| groups.contains(&group_of(l)))
            .count())
    }
}

/// A link's name.
pub fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(name) => Some(name.as_str()),
        _ => None,
    })
}

/// A link's group (0 when the kernel does not say).
pub fn group_of(link: &LinkMessage) -> u32 {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Group(group) => Some(*group),
            _ => None,
        })
        .unwrap_or(0)
}
