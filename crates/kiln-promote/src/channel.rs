//! Channels: a named pointer per image (`stable`, `canary`...) with an
//! append-only history.
//!
//! The history is a log of events, `channels/<name>/<channel>.json`. What the
//! channel points at is derived by replaying it: a promotion pushes a digest
//! on a stack and a rollback pops back to the previous passing digest below
//! it. So rolling back twice goes back two promotions rather than
//! flip-flopping between the last two.
//!
//! A move is a read-modify-write of the history and of index.json: it runs
//! inside the store's `channels` section (see [`kiln_image::lock`]) under a
//! lease, so racing promotions and rollbacks each see the one before and
//! the `NAME:CHANNEL` ref always names the history's current digest.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_image::{Digest, Store};
use serde::{Deserialize, Serialize};

use crate::PromoteError;
use crate::file::{read_json, write_json};
use crate::record;

/// What moved a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `kiln promote` or `kiln release`.
    Promote,
    /// `kiln rollback`.
    Rollback,
}

/// One move of a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What moved it.
    pub action: Action,
    /// Where it points after the move.
    pub digest: Digest,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct History {
    events: Vec<Event>,
}

/// A channel move that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// Where the channel pointed before, if anywhere.
    pub from: Option<Digest>,
    /// Where it points now.
    pub to: Digest,
}

fn valid_channel(channel: &str) -> Result<(), PromoteError> {
    let mut chars = channel.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PromoteError::InvalidChannel(channel.to_owned()))
    }
}

/// Image names become folders: only a name that parses as an image name
/// (no `..`, no leading `/`, no empty component) is accepted.
fn valid_name(name: &str) -> Result<(), PromoteError> {
    name.parse::<kiln_recipe::ImageName>()
        .map(drop)
        .map_err(|e| PromoteError::InvalidName(e.to_string()))
}

/// The section every channel move holds.
const SECTION: &str = "channels";

fn history_path(store: &Store, name: &str, channel: &str) -> PathBuf {
    store
        .bookkeeping_dir()
        .join("channels")
        .join(name)
        .join(format!("{channel}.json"))
}

/// The stack of digests the history leaves, the current one on top.
fn replay(events: &[Event]) -> Vec<Digest> {
    let mut stack: Vec<Digest> = Vec::new();
    for event in events {
        match event.action {
            Action::Promote => stack.push(event.digest.clone()),
            Action::Rollback => {
                while stack.last().is_some_and(|top| *top != event.digest) {
                    stack.pop();
                }
            }
        }
    }
    stack
}

/// The channel's history, oldest first.
pub fn history(store: &Store, name: &str, channel: &str) -> Result<Vec<Event>, PromoteError> {
    valid_name(name)?;
    valid_channel(channel)?;
    Ok(read_json::<History>(&history_path(store, name, channel))?
        .unwrap_or_default()
        .events)
}

/// Where the channel points now.
pub fn current(store: &Store, name: &str, channel: &str) -> Result<Option<Digest>, PromoteError> {
    Ok(replay(&history(store, name, channel)?).pop())
}

/// Every channel of image `name` and where it points, sorted by channel.
/// A name that is not an image name has none (no move ever accepts one),
/// so listing the refs of foreign tools in index.json never fails.
pub fn all(store: &Store, name: &str) -> Result<Vec<(String, Digest)>, PromoteError> {
    if valid_name(name).is_err() {
        return Ok(Vec::new());
    }
    let dir = store.bookkeeping_dir().join("channels").join(name);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(PromoteError::Io { path: dir, source }),
    };
    let mut channels = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| PromoteError::Io {
            path: dir.clone(),
            source,
        })?;
        let file_name = entry.file_name();
        let Some(channel) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else {
            continue;
        };
        if valid_channel(channel).is_err() {
            continue;
        }
        if let Some(digest) = current(store, name, channel)? {
            channels.push((channel.to_owned(), digest));
        }
    }
    channels.sort();
    Ok(channels)
}

/// Every digest any channel of any image ever pointed at: what a rollback
/// may need, so garbage collection keeps them even when no tag names them.
/// A history that cannot be read is an error: gc must not guess.
pub fn referenced(store: &Store) -> Result<std::collections::BTreeSet<Digest>, PromoteError> {
    let mut digests = std::collections::BTreeSet::new();
    for stored in histories(store)? {
        digests.extend(stored.events?.into_iter().map(|e| e.digest));
    }
    Ok(digests)
}

/// One channel history file as found in the store.
#[derive(Debug)]
pub struct StoredHistory {
    /// The image name.
    pub name: String,
    /// The channel.
    pub channel: String,
    /// The file.
    pub path: PathBuf,
    /// Its events, or why they could not be read.
    pub events: Result<Vec<Event>, PromoteError>,
}

/// Every channel history in the store, of every image (names with `/`
/// included), sorted by name and channel.
pub fn histories(store: &Store) -> Result<Vec<StoredHistory>, PromoteError> {
    let root = store.bookkeeping_dir().join("channels");
    let mut found = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(PromoteError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| PromoteError::Io {
                path: dir.clone(),
                source,
            })?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(path);
                continue;
            }
            let Some(channel) = path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.strip_suffix(".json"))
                .filter(|c| valid_channel(c).is_ok())
            else {
                continue;
            };
            let Some(name) = path
                .parent()
                .and_then(|p| p.strip_prefix(&root).ok())
                .and_then(|p| p.to_str())
                .filter(|n| valid_name(n).is_ok())
            else {
                continue;
            };
            let events = read_json::<History>(&path).map(|h| h.unwrap_or_default().events);
            found.push(StoredHistory {
                name: name.to_owned(),
                channel: channel.to_owned(),
                path,
                events,
            });
        }
    }
    found.sort_by(|a, b| (&a.name, &a.channel).cmp(&(&b.name, &b.channel)));
    Ok(found)
}

/// Point the `NAME:CHANNEL` ref of index.json at the channel's current
/// digest (or remove it when the channel points nowhere), as the history
/// says. For `kiln fsck --repair`; call it holding a lease or the sweep.
/// Returns where it points.
pub fn sync_ref(store: &Store, name: &str, channel: &str) -> Result<Option<Digest>, PromoteError> {
    let _section = store.section(SECTION)?;
    let current = current(store, name, channel)?;
    let ref_name = format!("{name}:{channel}");
    match &current {
        Some(digest) => store.set_ref(&ref_name, &store.manifest_descriptor(digest)?)?,
        None => {
            store.remove_ref(&ref_name)?;
        }
    }
    Ok(current)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn append(
    store: &Store,
    name: &str,
    channel: &str,
    mut events: Vec<Event>,
    event: Event,
) -> Result<(), PromoteError> {
    let descriptor = store.manifest_descriptor(&event.digest)?;
    events.push(event);
    write_json(&history_path(store, name, channel), &History { events })?;
    // The history is the truth; the ref in index.json follows it so that
    // OCI tools see what the channel is.
    store.set_ref(&format!("{name}:{channel}"), &descriptor)?;
    Ok(())
}

/// Move `channel` of image `name` to `digest`. Refused unless the digest is
/// in the store and its latest test record passed.
pub fn promote(
    store: &Store,
    name: &str,
    digest: &Digest,
    channel: &str,
) -> Result<Move, PromoteError> {
    valid_name(name)?;
    valid_channel(channel)?;
    let _lease = store.lease()?;
    let _section = store.section(SECTION)?;
    if !store.has_blob(digest) {
        return Err(PromoteError::NotStored {
            digest: digest.clone(),
        });
    }
    record::require_passed(store, name, digest)?;
    let events = history(store, name, channel)?;
    let from = replay(&events).pop();
    let event = Event {
        action: Action::Promote,
        digest: digest.clone(),
        at: now(),
    };
    append(store, name, channel, events, event)?;
    Ok(Move {
        from,
        to: digest.clone(),
    })
}

/// Move `channel` of image `name` back to the previous digest below the
/// current one that still passes its checks.
pub fn rollback(store: &Store, name: &str, channel: &str) -> Result<Move, PromoteError> {
    valid_name(name)?;
    valid_channel(channel)?;
    let _lease = store.lease()?;
    let _section = store.section(SECTION)?;
    let events = history(store, name, channel)?;
    let mut stack = replay(&events);
    let nothing = || PromoteError::NothingToRollBack {
        name: name.to_owned(),
        channel: channel.to_owned(),
    };
    let current = stack.pop().ok_or_else(nothing)?;
    let target = loop {
        let candidate = stack.pop().ok_or_else(nothing)?;
        if candidate != current
            && store.has_blob(&candidate)
            && record::require_passed(store, name, &candidate).is_ok()
        {
            break candidate;
        }
    };
    let event = Event {
        action: Action::Rollback,
        digest: target.clone(),
        at: now(),
    };
    append(store, name, channel, events, event)?;
    Ok(Move {
        from: Some(current),
        to: target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn ev(action: Action, n: u8) -> Event {
        Event {
            action,
            digest: d(n),
            at: 0,
        }
    }

    #[test]
    fn replay_promotions_and_rollbacks() {
        use Action::*;
        assert_eq!(replay(&[]), Vec::<Digest>::new());
        assert_eq!(replay(&[ev(Promote, 1), ev(Promote, 2)]), vec![d(1), d(2)]);
        assert_eq!(
            replay(&[
                ev(Promote, 1),
                ev(Promote, 2),
                ev(Promote, 3),
                ev(Rollback, 2)
            ]),
            vec![d(1), d(2)]
        );
        // Two rollbacks walk back two promotions.
        assert_eq!(
            replay(&[
                ev(Promote, 1),
                ev(Promote, 2),
                ev(Promote, 3),
                ev(Rollback, 2),
                ev(Rollback, 1)
            ]),
            vec![d(1)]
        );
        // A rollback that skipped a failed digest pops it too.
        assert_eq!(
            replay(&[
                ev(Promote, 1),
                ev(Promote, 2),
                ev(Promote, 3),
                ev(Rollback, 1)
            ]),
            vec![d(1)]
        );
    }

    #[test]
    fn image_names_cannot_become_other_paths() {
        assert!(valid_name("web").is_ok());
        assert!(valid_name("team/web").is_ok());
        for bad in ["", "..", "../../etc", "/etc", "a//b", "a/../b", "A"] {
            assert!(valid_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn channel_names() {
        assert!(valid_channel("stable").is_ok());
        assert!(valid_channel("canary-2").is_ok());
        for bad in ["", "Stable", "-x", "a/b", "../x"] {
            assert!(valid_channel(bad).is_err(), "{bad:?}");
        }
    }
}
