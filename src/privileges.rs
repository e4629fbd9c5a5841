//! Dropping root once every listening socket is bound: the top-level `user` and `group` of the
//! config, as xinetd's and nginx's `user`. A process started as root binds (privileged ports, socket
//! files in root's folders), then takes the group (with the user's supplementary groups) and the
//! user — before any plugin loads or handler code runs, and before any server process starts, so
//! none of them ever runs as root. A process not started as root has nothing to drop: `user` and
//! `group` are then checked against what it runs as, and a difference is logged (nginx does the
//! same).

use std::ffi::CString;

use anyhow::{bail, Context};
use nix::unistd::{getegid, geteuid, initgroups, setgid, setgroups, setuid, Gid, Uid};
use sockserv_framework::config::RunAs;

/// Whether this process can drop anything: it runs as root.
pub fn is_root() -> bool {
    geteuid().is_root()
}

/// Become `run_as`: supplementary groups, then the group, then the user (the order that leaves
/// no way back: once the user is set, nothing else can be changed).
///
/// # Errors
///
/// A call refused (by a security module, say), or root still reachable afterwards.
pub fn drop_root(run_as: &RunAs) -> anyhow::Result<()> {
    let gid = run_as.group.as_ref().map(|g| Gid::from_raw(g.id));
    match (&run_as.user, gid) {
        (Some(user), Some(gid)) => {
            let name = CString::new(user.name.as_str()).context("a user name holds a NUL byte")?;
            // A user given by number may have no entry: then only the group.
            if initgroups(&name, gid).is_err() {
                setgroups(&[gid]).context("cannot set the supplementary groups")?;
            }
        }
        (_, Some(gid)) => setgroups(&[gid]).context("cannot set the supplementary groups")?,
        (_, None) => {}
    }
    if let Some(gid) = gid {
        setgid(gid).with_context(|| format!("cannot switch to group {gid}"))?;
    }
    if let Some(user) = &run_as.user {
        let uid = Uid::from_raw(user.id);
        setuid(uid).with_context(|| format!("cannot switch to user {uid}"))?;
        if !uid.is_root() && setuid(Uid::from_raw(0)).is_ok() {
            bail!("root is still reachable after switching to user {uid}");
        }
    }
    log::info!(
        "every socket is bound: now running as {} (uid {}, gid {})",
        run_as.describe(),
        geteuid(),
        getegid()
    );
    Ok(())
}

/// Not root: say so if `run_as` asks for another user or group than this process's.
pub fn check_unprivileged(run_as: &RunAs) {
    let other_user = run_as
        .user
        .as_ref()
        .is_some_and(|u| u.id != geteuid().as_raw());
    let other_group = run_as
        .group
        .as_ref()
        .is_some_and(|g| g.id != getegid().as_raw());
    if other_user || other_group {
        log::warn!(
            "{} in the config: this process does not run as root, so it cannot switch; it runs \
             as uid {}, gid {}",
            run_as.describe(),
            geteuid(),
            getegid()
        );
    }
}
