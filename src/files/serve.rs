//! The content this node serves: files under the served directories, found
//! by md5 + size, hashed in bounded steps (the files thread stays responsive
//! while it hashes a large file), and looked up by name as a hint for files
//! added after the scan.
//!
//! Paths: only regular files reached without symbolic links are served; a
//! name from a peer is checked ([`super::wire::valid_name`]) and, once
//! joined to a served directory, its canonical form must still lie inside
//! that directory.

use super::{wire, Key, GRANULE};
use md5::{Digest, Md5};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes hashed per step.
pub const STEP: usize = 4 << 20;
/// Directory depth a scan descends.
const MAX_DEPTH: usize = 32;

/// One served file.
#[derive(Clone, Debug)]
pub struct Served {
    pub path: PathBuf,
    pub len: u64,
    pub mtime: Option<SystemTime>,
    /// CRC-32 of every 64 KiB granule, computed with the md5.
    pub crcs: Vec<u32>,
}

impl Served {
    /// True if the file on disk still looks as when it was hashed.
    pub fn unchanged(&self) -> bool {
        std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.is_file() && m.len() == self.len && m.modified().ok() == self.mtime)
    }
}

/// A file being hashed.
#[derive(Debug)]
pub struct Hashing {
    path: PathBuf,
    file: File,
    len: u64,
    mtime: Option<SystemTime>,
    md5: Md5,
    crcs: Vec<u32>,
    pos: u64,
    buf: Vec<u8>,
}

impl Hashing {
    /// Opens `path` for hashing.
    pub fn start(path: PathBuf) -> std::io::Result<Hashing> {
        let file = File::open(&path)?;
        let m = file.metadata()?;
        Ok(Hashing {
            path,
            file,
            len: m.len(),
            mtime: m.modified().ok(),
            md5: Md5::new(),
            crcs: Vec::with_capacity(m.len().div_ceil(GRANULE as u64) as usize),
            pos: 0,
            buf: Vec::new(),
        })
    }

    /// Hashes up to [`STEP`] more bytes; returns the result when the file is done.
    pub fn step(&mut self) -> std::io::Result<Option<(Key, Served)>> {
        let want = ((self.len - self.pos) as usize).min(STEP);
        self.buf.resize(want, 0);
        self.file.read_exact(&mut self.buf)?;
        self.md5.update(&self.buf);
        self.crcs.extend(wire::granule_crcs(&self.buf));
        self.pos += want as u64;
        if self.pos < self.len {
            return Ok(None);
        }
        // A file that grew while it was hashed is hashed again later.
        let m = self.file.metadata()?;
        if m.len() != self.len || m.modified().ok() != self.mtime {
            return Err(std::io::Error::other("file changed while it was hashed"));
        }
        let md5: [u8; 16] = std::mem::take(&mut self.md5).finalize().into();
        Ok(Some((
            Key {
                md5,
                size: self.len,
            },
            Served {
                path: self.path.clone(),
                len: self.len,
                mtime: self.mtime,
                crcs: std::mem::take(&mut self.crcs),
            },
        )))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a name resolves to in the served directories.
#[derive(Debug, PartialEq, Eq)]
pub enum Hint {
    /// No such file.
    Missing,
    /// A file of another size.
    WrongSize,
    /// Hashed already, other content.
    WrongContent,
    /// Not hashed yet (or changed since): hash this path.
    Hash(PathBuf),
}

/// The served directories and their content.
#[derive(Debug, Default)]
pub struct Table {
    dirs: Vec<PathBuf>,
    by_key: HashMap<Key, Served>,
    by_path: HashMap<PathBuf, (Key, Option<SystemTime>)>,
    /// Files waiting to be hashed.
    pub queue: VecDeque<PathBuf>,
    /// The file being hashed.
    pub current: Option<Hashing>,
}

impl Table {
    /// Adds `dir` (canonical) and queues every regular file under it.
    pub fn add_dir(&mut self, dir: PathBuf) {
        let mut files = Vec::new();
        walk(&dir, 0, &mut files);
        files.sort();
        for f in files {
            if !self.by_path.contains_key(&f) && !self.queue.contains(&f) {
                self.queue.push_back(f);
            }
        }
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// True while files wait to be hashed.
    pub fn busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Distinct contents served.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Hashes one step; true if work remains.
    pub fn step(&mut self) -> bool {
        if self.current.is_none() {
            let Some(p) = self.queue.pop_front() else {
                return false;
            };
            match Hashing::start(p.clone()) {
                Ok(h) => self.current = Some(h),
                Err(e) => {
                    log::warn!(target: "xxnet::files", "cannot hash {}: {e}", p.display());
                    return self.busy();
                }
            }
        }
        let h = self.current.as_mut().expect("set above");
        match h.step() {
            Ok(None) => {}
            Ok(Some((key, served))) => {
                log::debug!(target: "xxnet::files", "serving {} as {}", served.path.display(), key.file_name());
                self.by_path
                    .insert(served.path.clone(), (key, served.mtime));
                self.by_key.insert(key, served);
                self.current = None;
            }
            Err(e) => {
                log::warn!(target: "xxnet::files", "cannot hash {}: {e}", h.path().display());
                self.current = None;
            }
        }
        self.busy()
    }

    /// The served file with this content, if it is still as hashed. A file
    /// changed since is forgotten and queued to be hashed again.
    pub fn get(&mut self, key: &Key) -> Option<&Served> {
        let fresh = self.by_key.get(key)?.unchanged();
        if !fresh {
            let s = self.by_key.remove(key).expect("present");
            self.by_path.remove(&s.path);
            if !self.queue.contains(&s.path) {
                self.queue.push_back(s.path);
            }
            return None;
        }
        self.by_key.get(key)
    }

    /// Looks `name` up in the served directories for content `key`.
    pub fn hint(&self, key: &Key, name: &str) -> Hint {
        let mut best = Hint::Missing;
        for dir in &self.dirs {
            let Some(path) = resolve(dir, name) else {
                continue;
            };
            let Ok(m) = std::fs::metadata(&path) else {
                continue;
            };
            if m.len() != key.size {
                best = Hint::WrongSize;
                continue;
            }
            match self.by_path.get(&path) {
                Some((k, mtime)) if *mtime == m.modified().ok() => {
                    if k == key {
                        // Hashed and unchanged but not found by key: changed and
                        // changed back; hash again.
                        return Hint::Hash(path);
                    }
                    best = Hint::WrongContent;
                }
                _ => return Hint::Hash(path),
            }
        }
        best
    }

    /// Queues `path` to be hashed (before the rest of the queue).
    pub fn hash_first(&mut self, path: PathBuf) {
        if self.current.as_ref().is_some_and(|h| h.path() == path) {
            return;
        }
        self.queue.retain(|p| p != &path);
        self.queue.push_front(path);
    }
}

/// `dir` joined with `name` if `name` is acceptable and the result is a
/// regular file whose canonical path is inside `dir` (no symlink escapes).
pub fn resolve(dir: &Path, name: &str) -> Option<PathBuf> {
    if !wire::valid_name(name) {
        return None;
    }
    let joined = dir.join(name);
    let canon = joined.canonicalize().ok()?;
    if !canon.starts_with(dir) || canon != joined {
        return None;
    }
    std::fs::symlink_metadata(&canon)
        .ok()
        .filter(|m| m.is_file())
        .map(|_| canon)
}

fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        log::warn!(target: "xxnet::files", "cannot read directory {}", dir.display());
        return;
    };
    for e in rd.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            walk(&p, depth + 1, out);
        } else if t.is_file() {
            out.push(p);
        }
        // Symbolic links are skipped: they could lead outside the directory.
    }
}

/// The md5 and size of a whole file (tests and tools; reads it all at once).
pub fn hash_file(path: &Path) -> std::io::Result<Key> {
    let mut h = Hashing::start(path.to_path_buf())?;
    loop {
        if let Some((k, _)) = h.step()? {
            return Ok(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xxnet-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.canonicalize().unwrap()
    }

    #[test]
    fn scan_finds_content_and_refuses_escapes() {
        let root = tmpdir("scan");
        let dir = root.join("served");
        std::fs::create_dir_all(dir.join("maps")).unwrap();
        std::fs::write(dir.join("maps/a.bin"), vec![5u8; 200_000]).unwrap();
        std::fs::write(dir.join("empty"), b"").unwrap();
        std::fs::write(root.join("secret"), b"outside").unwrap();
        std::os::unix::fs::symlink(root.join("secret"), dir.join("link")).unwrap();
        let mut t = Table::default();
        t.add_dir(dir.clone());
        while t.step() {}
        assert_eq!(t.len(), 2, "a.bin and empty; the symlink is skipped");
        let a = hash_file(&dir.join("maps/a.bin")).unwrap();
        let s = t.get(&a).unwrap();
        assert_eq!(s.crcs.len(), 4);
        assert_eq!(
            hex_of(&hash_file(&dir.join("empty")).unwrap().md5),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        for bad in [
            "../secret",
            "link",
            "/etc/passwd",
            "maps/../../secret",
            "maps",
        ] {
            assert_eq!(resolve(&dir, bad), None, "{bad}");
        }
        assert_eq!(resolve(&dir, "maps/a.bin"), Some(dir.join("maps/a.bin")));
        // A file added later is found by its name, then hashed.
        std::fs::write(dir.join("late"), b"late content").unwrap();
        let late = hash_file(&dir.join("late")).unwrap();
        assert!(t.get(&late).is_none());
        assert_eq!(t.hint(&late, "late"), Hint::Hash(dir.join("late")));
        t.hash_first(dir.join("late"));
        while t.step() {}
        assert!(t.get(&late).is_some());
        let other = Key {
            md5: [0; 16],
            size: late.size,
        };
        assert_eq!(t.hint(&other, "late"), Hint::WrongContent);
        let bigger = Key {
            md5: [0; 16],
            size: 1,
        };
        assert_eq!(t.hint(&bigger, "late"), Hint::WrongSize);
        assert_eq!(t.hint(&bigger, "nothing"), Hint::Missing);
        // Changed on disk: forgotten and queued again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join("late"), b"LATE content").unwrap();
        assert!(t.get(&late).is_none());
        assert!(t.busy());
        let _ = std::fs::remove_dir_all(&root);
    }

    fn hex_of(b: &[u8]) -> String {
        wire::hex(b)
    }
}
