//! `user` and `group` at the top of the file: who the process runs as once every listening socket
//! is bound — xinetd's and nginx's `user`. A name is looked up now, so `sockserv check` says when
//! it does not exist here; a number is taken as an id.

use std::ops::Range;

use toml::Spanned;

use super::error::{ConfigError, ConfigErrorKind, Source};
use super::raw::RawFile;

/// A user or a group: its name as written and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// As written in the config (a name, or an id).
    pub name: String,
    /// The uid or gid.
    pub id: u32,
}

/// Who to run as once every socket is bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// `user`, if given.
    pub user: Option<Account>,
    /// The group: `group`, else the user's primary group (from the user database).
    pub group: Option<Account>,
}

impl RunAs {
    /// How the config names it, for messages: `user = "nobody", group = "nogroup"`.
    pub fn describe(&self) -> String {
        let user = self.user.as_ref().map(|u| format!("user = {:?}", u.name));
        let group = self.group.as_ref().map(|g| format!("group = {:?}", g.name));
        user.into_iter().chain(group).collect::<Vec<_>>().join(", ")
    }
}

/// `user` and `group`, resolved; `None` when neither is written (or one is wrong: reported).
pub(super) fn check(
    raw: &RawFile,
    source: Source<'_>,
    errors: &mut Vec<ConfigError>,
) -> Option<RunAs> {
    let mut report = |span: Range<usize>, key: &'static str, message: String| {
        errors.push(source.error(Some(span), None, ConfigErrorKind::BadValue { key, message }));
    };
    let user = raw
        .user
        .as_ref()
        .map(|written| (user(written.get_ref()), written.span()));
    let group = raw
        .group
        .as_ref()
        .map(|written| (group(written.get_ref()), written.span()));
    let mut failed = false;
    let user = match user {
        Some((Ok(found), _)) => Some(found),
        Some((Err(message), span)) => {
            report(span, "user", message);
            failed = true;
            None
        }
        None => None,
    };
    let group = match group {
        Some((Ok(found), _)) => Some(found),
        Some((Err(message), span)) => {
            report(span, "group", message);
            failed = true;
            None
        }
        None => None,
    };
    if failed {
        return None;
    }
    let (user, primary) = match user {
        Some((account, primary)) => (Some(account), primary),
        None => (None, None),
    };
    if let (Some(user), None, None) = (&user, &group, &primary) {
        let span = raw.user.as_ref().map_or(0..0, Spanned::span);
        report(
            span,
            "user",
            format!(
                "user {} has no entry in the user database, so no group to run as: write \
                 group = \"...\" too",
                user.id
            ),
        );
        return None;
    }
    let group = group.or(primary);
    (user.is_some() || group.is_some()).then_some(RunAs { user, group })
}

/// A user by name or uid, with the primary group the user database gives it.
fn user(written: &str) -> Result<(Account, Option<Account>), String> {
    let found = match written.parse::<u32>() {
        Ok(uid) => nix::unistd::User::from_uid(uid.into()),
        Err(_) => nix::unistd::User::from_name(written),
    };
    let primary = |gid: nix::unistd::Gid| Account {
        name: gid.as_raw().to_string(),
        id: gid.as_raw(),
    };
    match (found, written.parse::<u32>()) {
        (Ok(Some(user)), _) => Ok((
            Account {
                name: written.to_string(),
                id: user.uid.as_raw(),
            },
            Some(primary(user.gid)),
        )),
        (Ok(None), Ok(uid)) => Ok((
            Account {
                name: written.to_string(),
                id: uid,
            },
            None,
        )),
        (Ok(None), Err(_)) => Err(format!("no user named {written:?} on this machine")),
        (Err(err), _) => Err(format!("cannot look up user {written:?}: {err}")),
    }
}

/// A group by name or gid.
fn group(written: &str) -> Result<Account, String> {
    if let Ok(gid) = written.parse::<u32>() {
        return Ok(Account {
            name: written.to_string(),
            id: gid,
        });
    }
    match nix::unistd::Group::from_name(written) {
        Ok(Some(group)) => Ok(Account {
            name: written.to_string(),
            id: group.gid.as_raw(),
        }),
        Ok(None) => Err(format!("no group named {written:?} on this machine")),
        Err(err) => Err(format!("cannot look up group {written:?}: {err}")),
    }
}
