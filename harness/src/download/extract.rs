//! Unpacking an Istio release archive safely: nothing may land outside the target directory.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::filelock::FileLock;

use super::{DownloadError, Verified, set_mode, temp_sibling, use_local_release};

/// The name of the marker file in an unpacked release that records the SHA-256 of the
/// archive it came from.
const EXTRACTED_MARKER: &str = ".istio-e2e-sha256";

/// The most symlinks followed while checking where one symlink points.
const MAX_SYMLINK_HOPS: usize = 40;

/// Makes `dir` the unpacked copy of the verified `archive`, unless it already is one (its
/// marker holds the archive's digest). The unpacking runs on a blocking thread, holding the
/// directory's guard file ([`crate::filelock`]): a trial running at the same time waits and
/// then finds it unpacked, instead of replacing the directory under a trial that uses it.
pub(super) async fn unpack_cached(archive: &Verified, dir: &Path) -> Result<(), DownloadError> {
    let guard = crate::filelock::guard_path(dir);
    let what = format!("to unpack {}", archive.path.display());
    let _held = FileLock::acquire_async(guard.clone(), what)
        .await
        .map_err(DownloadError::io("cannot lock", &guard))?;
    let marker = dir.join(EXTRACTED_MARKER);
    let up_to_date = fs::read_to_string(&marker).is_ok_and(|m| m.trim() == archive.sha256)
        && dir.join("samples").is_dir();
    if up_to_date {
        return Ok(());
    }
    let (archive_path, sha, dir2) = (
        archive.path.clone(),
        archive.sha256.clone(),
        dir.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || unpack_release(&archive_path, &sha, &dir2))
        .await
        .map_err(|e| DownloadError::Io {
            what: "unpacking",
            path: archive.path.clone(),
            source: io::Error::other(e.to_string()),
        })?
}

/// Unpacks a verified Istio archive into `dir` (replacing what is there): into a staging
/// directory first, then the release's top-level directory is moved into place and marked
/// with the archive's digest.
fn unpack_release(archive: &Path, sha: &str, dir: &Path) -> Result<(), DownloadError> {
    let staging = temp_sibling(dir);
    fs::create_dir_all(&staging).map_err(DownloadError::io("cannot create", &staging))?;
    let res = (|| {
        extract_tar_gz(archive, &staging)?;
        let root = content_root(&staging)?;
        // The release root is what stays: links must not point at its siblings either.
        check_symlinks(archive, &root)?;
        use_local_release(&root)?;
        fs::write(root.join(EXTRACTED_MARKER), format!("{sha}\n"))
            .map_err(DownloadError::io("cannot write", &root))?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(DownloadError::io("cannot replace", dir))?;
        }
        fs::rename(&root, dir).or_else(|e| {
            // Another process unpacked the same archive first: use its copy.
            let theirs = fs::read_to_string(dir.join(EXTRACTED_MARKER));
            if theirs.is_ok_and(|m| m.trim() == sha) {
                Ok(())
            } else {
                Err(DownloadError::io("cannot move", &root)(e))
            }
        })
    })();
    let _ = fs::remove_dir_all(&staging);
    res
}

/// The release's own directory in a staging directory: its single top-level directory
/// (`istio-<v>/`), else the staging directory itself.
fn content_root(staging: &Path) -> Result<PathBuf, DownloadError> {
    let entries: Vec<fs::DirEntry> = fs::read_dir(staging)
        .map_err(DownloadError::io("cannot read", staging))?
        .collect::<Result<_, _>>()
        .map_err(DownloadError::io("cannot read", staging))?;
    if let [one] = entries.as_slice()
        && one.file_type().is_ok_and(|t| t.is_dir())
    {
        return Ok(one.path());
    }
    Ok(staging.to_path_buf())
}

/// Why an archive entry is refused. Each reads after "entry `<path>`".
#[derive(Debug, thiserror::Error)]
pub enum UnsafeReason {
    /// A `..` component.
    #[error("has a `..` component and would land outside the target directory")]
    ParentDir,
    /// An absolute path.
    #[error("is an absolute path and would land outside the target directory")]
    Absolute,
    /// An empty path on something that is not a directory.
    #[error("has an empty path")]
    EmptyPath,
    /// Writing it would follow a symlink unpacked before it.
    #[error("would be written through the symlink `{}`", .0.display())]
    ThroughSymlink(PathBuf),
    /// A hard link whose target path is unsafe itself.
    #[error("is a hard link to `{}`, which {why}", target.display())]
    HardLinkUnsafe {
        /// The link's target.
        target: PathBuf,
        /// What is wrong with the target.
        why: Box<UnsafeReason>,
    },
    /// A hard link to something that is not a file unpacked before it.
    #[error("is a hard link to `{}`, which is not a file unpacked before it", .0.display())]
    HardLinkNotUnpacked(PathBuf),
    /// A symlink to an absolute path.
    #[error("is a symlink to the absolute path `{}`", .0.display())]
    AbsoluteSymlink(PathBuf),
    /// A symlink whose target climbs out of the target directory.
    #[error("is a symlink to `{}`, which points outside the target directory", .0.display())]
    SymlinkOutside(PathBuf),
    /// The symlink could not be created.
    #[error("cannot be created as a symlink ({0})")]
    SymlinkNotCreated(io::Error),
    /// Neither a file, a directory nor a link.
    #[error("has type {0:?}; only files, directories and links are unpacked")]
    Type(tar::EntryType),
    /// A link entry without a target.
    #[error("is a link without a target")]
    LinkWithoutTarget,
    /// An unpacked symlink cannot be read back.
    #[error("cannot be read ({0})")]
    Unreadable(io::Error),
    /// An unpacked symlink resolves (through other links) outside the release.
    #[error("is a symlink to `{0}`, which points outside the release")]
    LeavesRelease(String),
    /// An unpacked symlink resolves in a loop.
    #[error("is a symlink to `{0}`, which loops")]
    Loops(String),
}

/// A symlink entry kept for last: its path as written, its safe relative path, its target.
struct PendingSymlink {
    raw: PathBuf,
    rel: PathBuf,
    target: PathBuf,
}

/// Unpacks a `.tar.gz` into the existing directory `dest`, refusing (before writing it) any
/// entry whose path is absolute or has `..`, that would be written through a symlink, or
/// that is not a file, directory or link; symlinks are created last and must resolve inside
/// `dest`. On error `dest` may hold a partial tree: unpack into a fresh directory and
/// delete it on failure.
pub fn extract_tar_gz(archive: &Path, dest: &Path) -> Result<(), DownloadError> {
    let file = fs::File::open(archive).map_err(DownloadError::io("cannot open", archive))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    let read_err = || DownloadError::io("cannot read the archive", archive);
    let mut symlinks: Vec<PendingSymlink> = Vec::new();
    for entry in ar.entries().map_err(read_err())? {
        let mut entry = entry.map_err(read_err())?;
        let raw = entry.path().map_err(read_err())?.into_owned();
        let refuse = |reason| unsafe_entry(archive, &raw, reason);
        let rel = safe_relative(&raw).map_err(refuse)?;
        let ty = entry.header().entry_type();
        if matches!(
            ty,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        if rel.as_os_str().is_empty() {
            if ty.is_dir() {
                continue;
            }
            return Err(refuse(UnsafeReason::EmptyPath));
        }
        no_symlink_on_the_way(dest, &rel).map_err(refuse)?;
        if let Some(link) = unpack_entry(&mut entry, archive, dest, raw.clone(), rel)? {
            symlinks.push(link);
        }
    }
    for PendingSymlink { raw, rel, target } in &symlinks {
        no_symlink_on_the_way(dest, rel).map_err(|why| unsafe_entry(archive, raw, why))?;
        let out = dest.join(rel);
        make_parent(&out)?;
        std::os::unix::fs::symlink(target, &out)
            .map_err(|e| unsafe_entry(archive, raw, UnsafeReason::SymlinkNotCreated(e)))?;
    }
    check_symlinks(archive, dest)
}

fn unsafe_entry(archive: &Path, entry: &Path, reason: UnsafeReason) -> DownloadError {
    DownloadError::UnsafeEntry {
        archive: archive.to_path_buf(),
        entry: entry.display().to_string(),
        reason,
    }
}

/// Writes one checked entry under `dest` (a symlink is returned, to be created last).
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Path,
    dest: &Path,
    raw: PathBuf,
    rel: PathBuf,
) -> Result<Option<PendingSymlink>, DownloadError> {
    let refuse = |reason| unsafe_entry(archive, &raw, reason);
    let out = dest.join(&rel);
    match entry.header().entry_type() {
        tar::EntryType::Directory => {
            fs::create_dir_all(&out).map_err(DownloadError::io("cannot create", &out))?;
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            make_parent(&out)?;
            let mut f = fs::File::create(&out).map_err(DownloadError::io("cannot create", &out))?;
            io::copy(entry, &mut f).map_err(DownloadError::io("cannot write", &out))?;
            let mode = entry.header().mode().unwrap_or(0o644) & 0o755 | 0o600;
            set_mode(&out, mode)?;
        }
        tar::EntryType::Link => {
            let target = link_target(entry, archive)?;
            let trel = safe_relative(&target).map_err(|why| {
                refuse(UnsafeReason::HardLinkUnsafe {
                    target: target.clone(),
                    why: Box::new(why),
                })
            })?;
            let src = dest.join(&trel);
            let src_ok = no_symlink_on_the_way(dest, &trel).is_ok()
                && fs::symlink_metadata(&src).is_ok_and(|m| m.is_file());
            if !src_ok {
                return Err(refuse(UnsafeReason::HardLinkNotUnpacked(target)));
            }
            make_parent(&out)?;
            fs::copy(&src, &out).map_err(DownloadError::io("cannot write", &out))?;
        }
        tar::EntryType::Symlink => {
            let target = link_target(entry, archive)?;
            if target.has_root() {
                return Err(refuse(UnsafeReason::AbsoluteSymlink(target)));
            }
            if lexically_escapes(&rel, &target) {
                return Err(refuse(UnsafeReason::SymlinkOutside(target)));
            }
            return Ok(Some(PendingSymlink { raw, rel, target }));
        }
        other => return Err(refuse(UnsafeReason::Type(other))),
    }
    Ok(None)
}

fn link_target<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    archive: &Path,
) -> Result<PathBuf, DownloadError> {
    let entry_path = entry.path().map(|p| p.into_owned()).unwrap_or_default();
    entry
        .link_name()
        .map_err(DownloadError::io("cannot read the archive", archive))?
        .map(|p| p.into_owned())
        .ok_or_else(|| unsafe_entry(archive, &entry_path, UnsafeReason::LinkWithoutTarget))
}

fn make_parent(path: &Path) -> Result<(), DownloadError> {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).map_err(DownloadError::io("cannot create", p))?;
    }
    Ok(())
}

/// The entry path as plain relative components; `Err` for absolute paths and `..`.
fn safe_relative(p: &Path) -> Result<PathBuf, UnsafeReason> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(UnsafeReason::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(UnsafeReason::Absolute),
        }
    }
    Ok(out)
}

/// `Err` when `rel` or one of its parent directories under `root` is a symlink (writing
/// there would follow it).
fn no_symlink_on_the_way(root: &Path, rel: &Path) -> Result<(), UnsafeReason> {
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(UnsafeReason::ThroughSymlink(
                p.strip_prefix(root).unwrap_or(&p).to_path_buf(),
            ));
        }
    }
    Ok(())
}

/// True when `target`, read from the directory of `link` (both relative to the root), climbs
/// above the root without following any symlinks.
fn lexically_escapes(link: &Path, target: &Path) -> bool {
    let mut depth = link.components().count().saturating_sub(1) as isize;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return true,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// Checks every symlink under `root` (not following directory symlinks) resolves inside
/// `root`, following chains of links as the kernel would.
fn check_symlinks(archive: &Path, root: &Path) -> Result<(), DownloadError> {
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).map_err(DownloadError::io("cannot read", &d))? {
            let e = e.map_err(DownloadError::io("cannot read", &d))?;
            let ft = e
                .file_type()
                .map_err(DownloadError::io("cannot read", &e.path()))?;
            let path = e.path();
            if ft.is_symlink() {
                let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                resolves_inside(root, &rel).map_err(|why| unsafe_entry(archive, &rel, why))?;
            } else if ft.is_dir() {
                dirs.push(path);
            }
        }
    }
    Ok(())
}

/// Resolves the symlink at `rel` (relative to `root`) component by component, following
/// the links it meets; `Err` when it would leave `root`.
fn resolves_inside(root: &Path, rel: &Path) -> Result<(), UnsafeReason> {
    let mut stack: Vec<OsString> = rel
        .parent()
        .map(|p| p.iter().map(|c| c.to_os_string()).collect())
        .unwrap_or_default();
    let first = fs::read_link(root.join(rel)).map_err(UnsafeReason::Unreadable)?;
    let shown = first.display().to_string();
    let outside = || UnsafeReason::LeavesRelease(shown.clone());
    let mut queue: VecDeque<OsString> = VecDeque::new();
    let mut hops = 0;
    if !push_front(&mut queue, &first) {
        return Err(outside());
    }
    while let Some(c) = queue.pop_front() {
        if c == "." {
            continue;
        }
        if c == ".." {
            if stack.pop().is_none() {
                return Err(outside());
            }
            continue;
        }
        stack.push(c);
        let here: PathBuf = stack.iter().fold(root.to_path_buf(), |p, c| p.join(c));
        if fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(UnsafeReason::Loops(shown));
            }
            let t = fs::read_link(&here).map_err(UnsafeReason::Unreadable)?;
            stack.pop();
            if !push_front(&mut queue, &t) {
                return Err(outside());
            }
        }
    }
    Ok(())
}

/// Puts a link target's components in front of the queue; `false` (queue unchanged) for
/// absolute targets.
fn push_front(queue: &mut VecDeque<OsString>, target: &Path) -> bool {
    let mut parts = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => parts.push("..".into()),
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    for p in parts.into_iter().rev() {
        queue.push_front(p);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_escape() {
        assert!(!lexically_escapes(Path::new("a/b/l"), Path::new("../c")));
        assert!(!lexically_escapes(Path::new("a/b/l"), Path::new("../../c")));
        assert!(lexically_escapes(
            Path::new("a/b/l"),
            Path::new("../../../c")
        ));
        assert!(lexically_escapes(Path::new("l"), Path::new("x/../../y")));
    }
}
