//! `/proc/<pid>/cgroup` (`hierarchy:controllers:path` per line) and container ids in cgroup paths.

use super::cursor::{lines, ParseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLine<'a> {
    pub hierarchy: &'a [u8],
    /// Comma-separated controllers; empty for the v2 unified line (`0::/path`).
    pub controllers: &'a [u8],
    pub path: &'a [u8],
}

pub fn iter(buf: &[u8]) -> impl Iterator<Item = Result<CgroupLine<'_>, ParseError>> {
    lines(buf).filter(|l| !l.is_empty()).map(|line| {
        let bad = ParseError::new("/proc/<pid>/cgroup", "expected hierarchy:controllers:path");
        let c1 = memchr::memchr(b':', line).ok_or(bad)?;
        let rest = line.get(c1 + 1..).ok_or(bad)?;
        let c2 = memchr::memchr(b':', rest).ok_or(bad)?;
        Ok(CgroupLine {
            hierarchy: line.get(..c1).ok_or(bad)?,
            controllers: rest.get(..c2).ok_or(bad)?,
            // The path may itself contain colons; it is everything after the second one.
            path: rest.get(c2 + 1..).ok_or(bad)?,
        })
    })
}

/// A cgroup path as `/proc/<pid>/cgroup` shows it, split for opening: `(ups, rest)`. The kernel
/// writes the path relative to the *reader's* cgroup namespace root, so from a private namespace
/// (Docker's default on cgroup v2 hosts, every ECS task on AL2023) a cgroup outside it reads
/// `/../../ecstasks-<task>.slice/docker-<id>.scope`: `ups` is the number of leading `..`
/// (2 there; 0 for a path within the namespace, or any path read from the host's namespace) and
/// `rest` what follows, without its leading `/` (`ecstasks-<task>.slice/docker-<id>.scope`).
/// `None` for anything else: not absolute, or an empty, `.` or `..` component after the first
/// named one (the kernel writes neither), so `rest` can never climb out of where it is opened.
pub fn relative(path: &[u8]) -> Option<(usize, &[u8])> {
    let mut rest = path.strip_prefix(b"/")?;
    let mut ups = 0;
    while rest == b".." || rest.starts_with(b"../") {
        ups += 1;
        rest = rest.get(3..).unwrap_or(&[]);
    }
    if !rest.is_empty() && rest.split(|b| *b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") {
        return None;
    }
    Some((ups, rest))
}

/// Whether the directory above the last one of a cgroup path is an ECS task's cgroup, where ECS
/// puts a task-level CPU limit (spec/docker-check.md §4.3): `…/ecs/<32-hex task id>/<id>` (v1,
/// the task id checked) or `…/ecstasks-<task id>.slice/docker-<id>.scope` (v2).
pub fn ecs_task_parent(path: &[u8]) -> bool {
    let mut parts = path.rsplit(|b| *b == b'/');
    let (Some(_leaf), Some(parent)) = (parts.next(), parts.next()) else { return false };
    let is_hex = |s: &[u8]| s.len() == 32 && s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    is_hex(parent) || parent.strip_prefix(b"ecstasks-").and_then(|p| p.strip_suffix(b".slice")).is_some_and(is_hex)
}

/// The container id in a cgroup path: the last run of exactly 64 lowercase hex digits, as in
/// `/docker/<id>`, `/ecs/<task>/<id>` and `…/docker-<id>.scope`.
pub fn container_id(path: &[u8]) -> Option<&[u8]> {
    let is_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    let mut found = None;
    let mut i = 0;
    while i < path.len() {
        if path.get(i).is_some_and(is_hex) {
            let start = i;
            while path.get(i).is_some_and(is_hex) {
                i += 1;
            }
            if i - start == 64 {
                found = path.get(start..i);
            }
        } else {
            i += 1;
        }
    }
    found
}

/// The container a process is in, from its whole `/proc/<pid>/cgroup`: the id in one of its
/// paths; else, given `own` = `(id, hierarchy)` (the container whose cgroup is the root of the
/// reader's own cgroup namespace in that hierarchy: the agent's, when its container has a private
/// namespace), `id` when the process's path in that hierarchy lies within the namespace (`/` or
/// below, climbing out of nothing). Such paths name no container: the kernel writes them relative
/// to the reader's namespace root, which is the container's directory.
pub fn process_container<'a>(buf: &'a [u8], own: Option<(&'a [u8; 64], &[u8])>) -> Option<&'a [u8]> {
    let mut within_own = false;
    for l in iter(buf).filter_map(Result::ok) {
        if let Some(id) = container_id(l.path) {
            return Some(id);
        }
        within_own |= own.is_some_and(|(_, h)| l.hierarchy == h) && relative(l.path).is_some_and(|(ups, _)| ups == 0);
    }
    own.filter(|_| within_own).map(|(id, _)| &id[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f5a2e1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";

    #[test]
    fn parses_captured_v1_and_v2_lines() {
        let lines: Vec<_> = iter(include_bytes!("../../tests/fixtures/proc/debian12-6.18/pid/1/cgroup"))
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(lines.iter().any(|l| l.controllers == b"memory"));
        assert!(lines.iter().any(|l| l.hierarchy == b"0" && l.controllers.is_empty()));
        assert!(iter(b"garbage\n").next().unwrap().is_err());
        let l = iter(b"0::/a:b\n").next().unwrap().unwrap();
        assert_eq!(l.path, b"/a:b");
    }

    #[test]
    fn paths_from_a_private_cgroup_namespace() {
        // As read from inside an ECS task's container on AL2023, and from `docker run
        // --cgroupns private` / `unshare -C` on a cgroup v1 host (captured here).
        let v2 = format!("/../../ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{ID}.scope");
        let rest = format!("ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{ID}.scope");
        assert_eq!(relative(v2.as_bytes()), Some((2, rest.as_bytes())));
        let v1 = format!("/../docker/{ID}");
        assert_eq!(relative(v1.as_bytes()), Some((1, format!("docker/{ID}").as_bytes())));
        // The host's namespace: absolute paths as they are.
        let host = format!("/ecstasks.slice/{rest}");
        assert_eq!(relative(host.as_bytes()), Some((0, &host.as_bytes()[1..])));
        assert_eq!(relative(b"/"), Some((0, &b""[..])));
        assert_eq!(relative(b"/.."), Some((1, &b""[..])));
        assert_eq!(relative(b"/../.."), Some((2, &b""[..])));
        assert_eq!(relative(b"/../../x"), Some((2, &b"x"[..])));
        // Nothing that could climb out of where `rest` is opened, nothing relative.
        for bad in [&b"docker/x"[..], b"", b"/a/../b", b"/a/..", b"/../a/./b", b"/a//b", b"/a/", b"/.././x"] {
            assert_eq!(relative(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // `...` is a name, not a climb.
        assert_eq!(relative(b"/..."), Some((0, &b"..."[..])));
        assert_eq!(relative(b"/..x/y"), Some((0, &b"..x/y"[..])));
    }

    #[test]
    fn ecs_task_cgroups_above_a_container() {
        let task = "0123456789abcdef0123456789abcdef";
        for yes in [
            format!("/ecs/{task}/{ID}"),
            format!("/../{task}/{ID}"),
            format!("/ecstasks.slice/ecstasks-{task}.slice/docker-{ID}.scope"),
            format!("/../../ecstasks-{task}.slice/docker-{ID}.scope"),
        ] {
            assert!(ecs_task_parent(yes.as_bytes()), "{yes}");
        }
        for no in [
            format!("/docker/{ID}"),
            format!("/../{ID}"),
            format!("/system.slice/docker-{ID}.scope"),
            format!("/ecs/{}/{ID}", &task[1..]),
            format!("/ecstasks.slice/ecstasks-{task}x.slice/docker-{ID}.scope"),
            ID.to_string(),
            String::new(),
        ] {
            assert!(!ecs_task_parent(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn processes_in_the_readers_own_namespace_are_in_its_container() {
        let own: &[u8; 64] = ID.as_bytes().try_into().unwrap();
        let other = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        // v2, the agent's container in a private namespace: `/` and below are the container.
        for file in ["0::/\n", "0::/sub\n", "1:name=systemd:/\n0::/\n"] {
            assert_eq!(process_container(file.as_bytes(), Some((own, b"0"))), Some(ID.as_bytes()), "{file}");
            assert_eq!(process_container(file.as_bytes(), None), None, "{file}: the host's namespace");
        }
        // Outside the namespace: the id in the path, or none (a host service, a kernel thread).
        let outside = format!("0::/../../ecstasks-x.slice/docker-{other}.scope\n");
        assert_eq!(process_container(outside.as_bytes(), Some((own, b"0"))), Some(other.as_bytes()));
        for file in ["0::/../../system.slice/sshd.service\n", "0::/../../..\n", ""] {
            assert_eq!(process_container(file.as_bytes(), Some((own, b"0"))), None, "{file}");
        }
        // v1: only the hierarchy where the namespace root is the container's counts (a cpuset
        // left at the host's root reads `/` for every host process).
        let v1 = format!("4:memory:/../docker/{other}\n3:cpuset:/\n");
        assert_eq!(process_container(v1.as_bytes(), Some((own, b"4"))), Some(other.as_bytes()));
        assert_eq!(process_container(b"4:memory:/..\n3:cpuset:/\n", Some((own, b"4"))), None);
        assert_eq!(process_container(b"4:memory:/\n3:cpuset:/\n", Some((own, b"4"))), Some(ID.as_bytes()));
        // A nested container within the namespace keeps its own id.
        let nested = format!("0::/{other}\n");
        assert_eq!(process_container(nested.as_bytes(), Some((own, b"0"))), Some(other.as_bytes()));
    }

    #[test]
    fn container_ids_in_every_layout() {
        for path in [
            format!("/docker/{ID}"),
            format!("/ecs/0123456789abcdef0123456789abcdef/{ID}"),
            format!("/ecstasks.slice/ecstasks-0123456789abcdef0123456789abcdef.slice/docker-{ID}.scope"),
            format!("/kubepods/burstable/pod1/{ID}"),
        ] {
            assert_eq!(container_id(path.as_bytes()), Some(ID.as_bytes()), "{path}");
        }
        assert_eq!(container_id(b"/user.slice/session-1.scope"), None);
        assert_eq!(container_id(format!("/x/{ID}0").as_bytes()), None, "65 hex digits is not an id");
        assert_eq!(container_id(format!("/ecs/{}", &ID[..32]).as_bytes()), None, "a task id is not a container id");
    }
}
