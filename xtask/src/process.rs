//! Children that cannot outlive the stack.
//!
//! `cargo lambda watch` starts a process per function (through watchexec, which may put them in
//! process groups of their own), and cargo builds while it compiles. Killing watch's process group
//! therefore does not reach everything, and a parent-death signal reaches only direct children.
//! So each long-running tool runs under a supervisor (`xtask __supervise`): a child subreaper,
//! so every orphan below it re-parents to it, that receives SIGTERM when xtask dies (even by
//! SIGKILL) and then ends its whole subtree.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// How long a stopping tree gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// The subcommand that runs a supervisor; not in the usage text.
pub const SUPERVISE: &str = "__supervise";

/// Every live descendant of `root` (not `root` itself), parents before children.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = parent_of(pid) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The parent pid from `/proc/<pid>/stat`; `None` for a gone or zombie process.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (2nd field) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.next()?.parse().ok()
}

/// Whether `pid` is running (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    parent_of(pid).is_some()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) only sends a signal; a stale pid is at worst ESRCH.
    unsafe { libc::kill(pid as i32, sig) };
}

fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: as above; a negative pid addresses the process group.
    unsafe { libc::kill(-(pgid as i32), sig) };
}

/// Collects exited children without blocking (a subreaper inherits orphans and must reap them).
fn reap_any() -> Vec<(i32, i32)> {
    let mut reaped = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid with WNOHANG writes only `status`.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return reaped;
        }
        reaped.push((pid, status));
    }
}

/// Makes this process the reaper of its orphaned descendants.
pub fn become_subreaper() -> Result {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "prctl(PR_SET_CHILD_SUBREAPER): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// `cmd`'s process gets `sig` when the thread that spawns it dies (spawn from a long-lived thread).
pub fn die_with_parent(cmd: &mut Command, sig: i32) {
    // SAFETY: the closure runs between fork and exec and calls only prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Where a tool's output goes (set on whatever process is started, supervisor or tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Inherit,
    /// stdout discarded, stderr kept.
    ErrorsOnly,
    Discard,
}

/// A tool running in its own process group, under a supervisor when one is given. Stopped
/// (with everything it started) by `stop` or on drop.
pub struct Stoppable {
    name: String,
    child: Child,
}

impl Stoppable {
    /// Starts `cmd`. With `supervisor` (the xtask executable) it runs as
    /// `xtask __supervise <our pid> -- <cmd>`; without, directly, which covers only the direct
    /// child against our own death.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        supervisor: Option<&Path>,
        output: Output,
    ) -> Result<Stoppable> {
        let mut cmd = match supervisor {
            Some(exe) => {
                let mut wrapped = Command::new(exe);
                wrapped
                    .arg(SUPERVISE)
                    .arg(std::process::id().to_string())
                    .arg("--")
                    .arg(cmd.get_program())
                    .args(cmd.get_args());
                if let Some(dir) = cmd.get_current_dir() {
                    wrapped.current_dir(dir);
                }
                for (key, value) in cmd.get_envs() {
                    match value {
                        Some(v) => wrapped.env(key, v),
                        None => wrapped.env_remove(key),
                    };
                }
                wrapped
            }
            None => {
                die_with_parent(&mut cmd, libc::SIGKILL);
                cmd
            }
        };
        cmd.stdin(Stdio::null());
        if output != Output::Inherit {
            cmd.stdout(Stdio::null());
        }
        if output == Output::Discard {
            cmd.stderr(Stdio::null());
        }
        // Its own group: a terminal's Ctrl-C reaches xtask alone, which then stops things in order.
        cmd.process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("could not start {name}: {e}"))?;
        Ok(Stoppable {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(how)` once the process has exited on its own.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }

    /// SIGTERM to the group (the tool, or its supervisor and the tool), so the tool stops what it
    /// started itself; then SIGTERM and SIGKILL to whatever of its tree is left after the grace
    /// period.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.pid();
        let tree = descendants(pid);
        signal_group(pid, libc::SIGTERM);
        // A supervisor needs its own grace period to end its subtree; give it a little more.
        let deadline = Instant::now() + GRACE + Duration::from_secs(2);
        while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut left: Vec<u32> = tree.into_iter().chain(descendants(pid)).collect();
        left.retain(|p| alive(*p));
        left.iter().for_each(|p| signal(*p, libc::SIGTERM));
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && left.iter().any(|p| alive(*p)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(pid, libc::SIGKILL);
        left.iter().for_each(|p| signal(*p, libc::SIGKILL));
        let _ = self.child.wait();
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `xtask __supervise <parent pid> -- <program> [args...]`: runs the program until it exits or
/// this process is told to stop (SIGTERM, SIGINT, SIGHUP, or its parent dying), then ends every
/// descendant. Runs before any thread exists, so the signal mask covers the whole process.
pub fn supervise(args: &[String]) -> ExitCode {
    let (parent, program, rest) = match args {
        [parent, dash, program, rest @ ..] if dash == "--" => (parent, program, rest),
        _ => {
            eprintln!("usage: xtask {SUPERVISE} <parent pid> -- <program> [args...]");
            return ExitCode::from(2);
        }
    };
    let parent: i32 = parent.parse().unwrap_or(0);
    // SAFETY: signal-set and prctl calls with valid pointers and integer arguments; this process
    // is still single-threaded.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut set, sig);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
        set
    };
    // The parent may have died before the death signal was armed.
    // SAFETY: getppid has no arguments.
    if unsafe { libc::getppid() } != parent {
        return ExitCode::FAILURE;
    }
    let mut cmd = Command::new(program);
    cmd.args(rest);
    // SAFETY: between fork and exec only async-signal-safe calls: unblock what we blocked, and
    // die with the supervisor if it is killed outright.
    unsafe {
        cmd.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c.id() as i32,
        Err(e) => {
            eprintln!("{SUPERVISE}: could not start {program}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // (exit code, whether the program is still running)
    let (code, running) = loop {
        let timeout = libc::timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        // SAFETY: waits for one of the blocked signals; `set` and `timeout` outlive the call.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        if matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
            break (128 + sig, true);
        }
        if let Some((_, status)) = reap_any().into_iter().find(|(pid, _)| *pid == child) {
            let status = std::process::ExitStatus::from_raw(status);
            let code = status
                .code()
                .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
            break (code, false);
        }
    };
    if running {
        // Let the program stop what it started (watch ends its functions), then end what is left.
        signal(child as u32, libc::SIGTERM);
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline && !reap_any().iter().any(|(pid, _)| *pid == child) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    end_descendants();
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// SIGTERM to every descendant of this process, SIGKILL after the grace period, reaping as it goes.
fn end_descendants() {
    let me = std::process::id();
    for p in descendants(me) {
        signal(p, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        reap_any();
        if descendants(me).is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        let left = descendants(me);
        if left.is_empty() {
            break;
        }
        left.iter().for_each(|p| signal(*p, libc::SIGKILL));
        std::thread::sleep(Duration::from_millis(50));
        reap_any();
    }
}
