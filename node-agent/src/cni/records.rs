//! The CNI server's records: one JSON file per attachment under the state directory (default
//! `/run/switchyard/cni`), written before each step that the kernel or the API could leave
//! half done, so a restart knows every link it may have made, including those in pod
//! namespaces no host dump can see. See the module docs of [`super`] for the protocol.
//!
//! A record is written to a temporary file and renamed over the old one: a process killed at
//! any instruction leaves the old record or the new one, never a torn one (the page cache
//! survives the process; `/run` is a tmpfs that does not outlive the node's boot anyway, and
//! neither do the namespaces the records describe).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchyard_cni::Attachment;
use switchyard_crds::MacvtapMode;

/// Where an attachment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// ADD is under way: the port may exist, the link may exist. Recovery undoes both (the
    /// runtime saw no success, and will DEL or ADD again).
    Adding,
    /// ADD succeeded: the port exists and the link is in the pod's namespace.
    Ready,
    /// DEL (or GC, or the sweep) is under way: recovery finishes it.
    Deleting,
}

/// A network namespace file's identity, so a path reused by a later namespace is not taken
/// for the one the record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsId {
    /// `st_dev` of the namespace file.
    pub dev: u64,
    /// `st_ino`: the namespace's inode number.
    pub ino: u64,
}

impl NetnsId {
    /// The identity of the namespace at `path`, `None` when there is none.
    pub fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// One attachment: everything needed to undo it without asking the API or the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Where it is.
    pub phase: Phase,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: String,
    /// The namespace's identity at ADD.
    pub netns_id: Option<NetnsId>,
    /// The configuration's `name` (GC's scope).
    pub conf_name: String,
    /// The switchyard Network.
    pub network: String,
    /// The pod.
    pub pod_namespace: String,
    /// The pod's name.
    pub pod_name: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The NetworkPort's name (in the pod's namespace).
    pub port_name: String,
    /// The NetworkPort's UID, once it exists: the ledger's key.
    pub port_uid: Option<String>,
    /// The pool device, once allocated.
    pub device: Option<String>,
    /// Whether the port holds its device alone.
    pub exclusive: bool,
    /// The macvtap mode (direct networks).
    pub mode: Option<MacvtapMode>,
    /// The bridge (bridge networks: the pod gets the end of a veth pair whose other end is on
    /// it); also the ledger's device.
    pub bridge: Option<String>,
    /// The veth's bridge end on the node (bridge networks).
    pub host_link: Option<String>,
    /// Its ifindex on the node.
    pub host_ifindex: Option<u32>,
    /// The MAC address.
    pub mac: String,
    /// The link's ifindex in the pod's namespace, chosen before it is created.
    pub ifindex: u32,
    /// The tap device, `major:minor`, once read.
    pub tap_device: Option<String>,
    /// The link's MTU, once read.
    pub mtu: Option<u32>,
    /// The UID of the VirtualMachineInstance owning the pod, if one does: its live
    /// migrations concern this attachment ([`super::migration`]).
    #[serde(default)]
    pub vmi_uid: Option<String>,
    /// When ADD began (RFC 3339).
    #[serde(default)]
    pub attached_at: Option<String>,
    /// The migration (UID) for which the link was set down because the VM moved away.
    #[serde(default)]
    pub down_for_migration: Option<String>,
}

impl Record {
    /// The attachment it records.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }

    /// Whether the namespace the link lives in still exists (the same one, not a namespace
    /// mounted later on the same path).
    pub fn netns_alive(&self) -> bool {
        match (NetnsId::of(Path::new(&self.netns)), self.netns_id) {
            (Some(now), Some(then)) => now == then,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// A file in the records' directory that is not a record, and why.
pub type Unreadable = (PathBuf, String);

/// The directory of records.
#[derive(Debug)]
pub struct RecordStore {
    dir: PathBuf,
}

impl RecordStore {
    /// Opens (creating, root-only) the directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The file of an attachment: the container ID (which has no '/') and the interface name
    /// in hex (which may hold any byte but '/'), so names never collide.
    fn path(&self, attachment: &Attachment) -> PathBuf {
        let ifname: String = attachment
            .ifname
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.dir
            .join(format!("{}.{ifname}.json", attachment.container_id))
    }

    /// Writes a record atomically (a temporary file renamed over the old one).
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let path = self.path(&record.attachment());
        let temporary = path.with_extension("tmp");
        let text = serde_json::to_vec(record).map_err(io::Error::other)?;
        std::fs::write(&temporary, text)?;
        std::fs::rename(&temporary, &path)
    }

    /// Removes an attachment's record; a missing one is fine.
    pub fn remove(&self, attachment: &Attachment) -> io::Result<()> {
        match std::fs::remove_file(self.path(attachment)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Every record, and the files that are not records (said, then ignored).
    pub fn load(&self) -> io::Result<(Vec<Record>, Vec<Unreadable>)> {
        let mut records = Vec::new();
        let mut unreadable = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                // A write the process did not finish: the record it replaced is still there.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
            {
                Ok(record) => records.push(record),
                Err(why) => unreadable.push((path, why)),
            }
        }
        records.sort_by_key(Record::attachment);
        Ok((records, unreadable))
    }
}

/// What recovery does with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Keep it: count its device again.
    Keep,
    /// Undo it: delete the link (if its namespace is there), release, delete the port.
    Undo,
}

/// Recovery's decision for one record (pure): an unfinished ADD or DEL is undone; a finished
/// ADD is kept while its link is there, and undone when the namespace or the link went away.
pub fn recovery_step(phase: Phase, netns_alive: bool, link_present: bool) -> Recovery {
    match phase {
        Phase::Ready if netns_alive && link_present => Recovery::Keep,
        _ => Recovery::Undo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(container: &str, ifname: &str) -> Record {
        Record {
            phase: Phase::Adding,
            container_id: container.into(),
            ifname: ifname.into(),
            netns: "/run/netns/nope".into(),
            netns_id: None,
            conf_name: "lan".into(),
            network: "lan".into(),
            pod_namespace: "ns".into(),
            pod_name: "pod".into(),
            pod_uid: "uid".into(),
            port_name: "pod-0123456789".into(),
            port_uid: None,
            device: None,
            exclusive: false,
            mode: Some(MacvtapMode::Bridge),
            bridge: None,
            host_link: None,
            host_ifindex: None,
            mac: "02:00:00:00:00:01".into(),
            ifindex: 0x4000_0001,
            tap_device: None,
            mtu: None,
            vmi_uid: None,
            attached_at: None,
            down_for_migration: None,
        }
    }

    #[test]
    fn records_survive_a_round_trip_and_are_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(&dir.path().join("cni")).unwrap();
        let mode = std::fs::metadata(dir.path().join("cni"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        let mut first = record("c1", "net1");
        store.save(&first).unwrap();
        first.phase = Phase::Ready;
        store.save(&first).unwrap();
        // Names that could collide if joined naively.
        store.save(&record("c1.6e", "et1")).unwrap();
        store.save(&record("c2", "a.b")).unwrap();
        std::fs::write(dir.path().join("cni/junk.json"), "{").unwrap();
        std::fs::write(dir.path().join("cni/half.tmp"), "{").unwrap();
        let (records, unreadable) = store.load().unwrap();
        assert_eq!(records.len(), 3, "{records:#?}");
        assert_eq!(records[0], first);
        assert_eq!(unreadable.len(), 1);
        assert!(!dir.path().join("cni/half.tmp").exists());
        store.remove(&first.attachment()).unwrap();
        store.remove(&first.attachment()).unwrap();
        assert_eq!(store.load().unwrap().0.len(), 2);
    }

    #[test]
    fn only_finished_adds_with_their_link_are_kept() {
        assert_eq!(recovery_step(Phase::Ready, true, true), Recovery::Keep);
        for (phase, alive, link) in [
            (Phase::Ready, false, false),
            (Phase::Ready, true, false),
            (Phase::Adding, true, true),
            (Phase::Adding, false, false),
            (Phase::Deleting, true, true),
            (Phase::Deleting, false, false),
        ] {
            assert_eq!(
                recovery_step(phase, alive, link),
                Recovery::Undo,
                "{phase:?} {alive} {link}"
            );
        }
    }

    #[test]
    fn a_namespace_is_alive_only_as_the_same_namespace() {
        let mut r = record("c", "net1");
        assert!(!r.netns_alive(), "no such path");
        let file = tempfile::NamedTempFile::new().unwrap();
        r.netns = file.path().display().to_string();
        r.netns_id = NetnsId::of(file.path());
        assert!(r.netns_alive());
        r.netns_id = Some(NetnsId { dev: 0, ino: 1 });
        assert!(!r.netns_alive(), "another file on the same path");
    }
}
