//! Who the image's processes run as, in numbers: boot secret files are
//! given to that user, or a non-root service could not read its own 0o400
//! secret.

/// The numeric `uid:gid` that `user` (an image's `User`: `name`, `uid`,
/// `name:group`, `uid:gid`) runs as, looked up in the image's `/etc/passwd`
/// and `/etc/group` as the engine itself would. Unknown names fall back to
/// root: the engine then refuses to start the container anyway.
pub(crate) fn resolve_user(
    user: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> (u32, u32) {
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return (0, 0);
    };
    let (user, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // passwd lines: name:password:uid:gid:...
    let passwd_entry = passwd.and_then(|text| {
        text.lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| {
                f.len() >= 4 && (f[0] == user || (f[2] == user && user.parse::<u32>().is_ok()))
            })
    });
    let uid = user
        .parse::<u32>()
        .ok()
        .or_else(|| passwd_entry.as_ref().and_then(|f| f[2].parse().ok()))
        .unwrap_or(0);
    let primary_gid = passwd_entry
        .as_ref()
        .and_then(|f| f[3].parse().ok())
        .unwrap_or(0);
    let gid = match group_part {
        None => primary_gid,
        Some(g) => g.parse::<u32>().ok().unwrap_or_else(|| {
            // group lines: name:password:gid:members
            group
                .and_then(|text| {
                    text.lines()
                        .map(|l| l.split(':').collect::<Vec<_>>())
                        .find(|f| f.len() >= 3 && f[0] == g)
                        .and_then(|f| f[2].parse().ok())
                })
                .unwrap_or(0)
        }),
    };
    (uid, gid)
}

/// Whether resolving `user` needs the image's `/etc/passwd` or `/etc/group`.
pub(crate) fn needs_lookup(user: Option<&str>) -> bool {
    match user.filter(|u| !u.is_empty()) {
        None => false,
        Some(u) => match u.split_once(':') {
            Some((u, g)) => u.parse::<u32>().is_err() || g.parse::<u32>().is_err(),
            None => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:web\n";

    #[test]
    fn users_resolve_like_the_engine_does() {
        let r = |u: Option<&str>| resolve_user(u, Some(PASSWD), Some(GROUP));
        assert_eq!(r(None), (0, 0));
        assert_eq!(r(Some("")), (0, 0));
        assert_eq!(r(Some("1000:1000")), (1000, 1000));
        assert_eq!(r(Some("web")), (1000, 1001), "primary group from passwd");
        assert_eq!(
            r(Some("1000")),
            (1000, 1001),
            "numeric uid still finds its primary group"
        );
        assert_eq!(
            r(Some("2000")),
            (2000, 0),
            "an unknown numeric uid runs with group 0"
        );
        assert_eq!(r(Some("web:staff")), (1000, 50));
        assert_eq!(r(Some("web:7")), (1000, 7));
        assert_eq!(r(Some("nobody")), (0, 0));
        assert_eq!(
            resolve_user(Some("web"), None, None),
            (0, 0),
            "no passwd file"
        );
    }

    #[test]
    fn only_names_and_bare_uids_need_the_files() {
        assert!(!needs_lookup(None));
        assert!(!needs_lookup(Some("1000:1000")));
        assert!(needs_lookup(Some("1000")));
        assert!(needs_lookup(Some("web")));
        assert!(needs_lookup(Some("1000:staff")));
    }
}
