//! Child processes that cannot outlive the test run that started them.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` so that the kernel kills it (SIGKILL) when this process exits, however it
/// exits: a panicking test, a killed `cargo test`, a Ctrl-C.
///
/// The parent-death signal fires when the *thread* that forked the child exits, and test
/// threads come and go; so every child is forked by one keeper thread that lives as long as
/// the process.
pub fn spawn_tied(cmd: Command) -> io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("child-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    set_parent_death_signal(&mut cmd);
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the child-keeper thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| io::Error::other("child-keeper thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("child-keeper thread is gone"))?
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// One thread of another process held stopped (a ptrace stop: the rest of the process runs on)
/// until this is dropped, as a thread stuck in a call that never returns would be.
#[derive(Debug)]
pub struct FrozenThread {
    /// The stopped thread's id.
    pub tid: u32,
    release: Option<mpsc::Sender<()>>,
    tracer: Option<std::thread::JoinHandle<()>>,
}

/// The ids of the threads of `pid` named `name` (`/proc/<pid>/task/<tid>/comm`).
pub fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(|task| task.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// Stops the one thread of `pid` named `name` (needs CAP_SYS_PTRACE, as root has). ptrace
/// requests must come from the tracing thread, so a thread of this process attaches, holds
/// the stop and detaches when told; if it dies, the kernel detaches and the thread runs on.
pub fn freeze_thread(pid: u32, name: &str) -> io::Result<FrozenThread> {
    let tid = match threads_named(pid, name).as_slice() {
        [tid] => *tid,
        other => {
            return Err(io::Error::other(format!(
                "process {pid} has {} threads named {name:?}",
                other.len()
            )));
        }
    };
    let (stopped_tx, stopped_rx) = mpsc::channel::<io::Result<()>>();
    let (release, released) = mpsc::channel::<()>();
    let tracer = std::thread::Builder::new()
        .name("thread-freezer".into())
        .spawn(move || {
            let stopped = ptrace_stop(tid);
            let ok = stopped.is_ok();
            let _ = stopped_tx.send(stopped);
            if ok {
                let _ = released.recv();
                ptrace_detach(tid);
            }
        })?;
    stopped_rx
        .recv()
        .map_err(|_| io::Error::other("the freezer thread died"))??;
    Ok(FrozenThread {
        tid,
        release: Some(release),
        tracer: Some(tracer),
    })
}

impl Drop for FrozenThread {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(tracer) = self.tracer.take() {
            let _ = tracer.join();
        }
    }
}

#[allow(unsafe_code)]
fn ptrace_stop(tid: u32) -> io::Result<()> {
    let tid = tid as libc::pid_t;
    // SAFETY: ptrace(2) and waitpid(2) with plain integer arguments and a local status word;
    // no memory of the tracee is read or written.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) != 0
            || libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[allow(unsafe_code)]
fn ptrace_detach(tid: u32) {
    // SAFETY: as in `ptrace_stop`; detaching a stopped tracee resumes it.
    unsafe {
        libc::ptrace(libc::PTRACE_DETACH, tid as libc::pid_t, 0, 0);
    }
}
