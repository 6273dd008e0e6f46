//! Downloads between nodes in one process (issue 6): fetching, the cache,
//! joining, the quota, failures with their reasons, corrupt blocks,
//! path safety, and small calls beside a large download.
//! (Crash and restart of a downloading process are in it_files_procs.rs.)

mod common;

use common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xxnet::files::serve::hash_file;
use xxnet::*;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("xxnet-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `len` pattern bytes to `dir/name`; returns (md5 hex, size).
fn make_file(dir: &Path, name: &str, len: usize, seed: u32) -> (String, u64) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, pattern(len, seed)).unwrap();
    let k = hash_file(&p).unwrap();
    (k.hex(), k.size)
}

/// A named node on an ephemeral loopback port, with a cache directory.
struct Member {
    node: Node,
    name: String,
    port: u16,
    _names: Vec<CString>,
}

impl Member {
    fn new(
        name: &str,
        cache: Option<&Path>,
        tweak: impl FnOnce(&mut ffi::types::xxnet_config),
    ) -> Member {
        let cname = CString::new(name).unwrap();
        let cdir = cache.map(|c| CString::new(c.to_str().unwrap()).unwrap());
        let mut cfg = default_config();
        cfg.node_name = cname.as_ptr();
        if let Some(d) = &cdir {
            cfg.download_dir = d.as_ptr();
        }
        tweak(&mut cfg);
        let node = Node::with_config(&cfg);
        let port = node.listen("127.0.0.1");
        let mut names = vec![cname];
        names.extend(cdir);
        Member {
            node,
            name: name.to_string(),
            port,
            _names: names,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn introduce(ms: &[&Member]) {
    for m in ms {
        for o in ms {
            assert_eq!(m.node.cluster_set(&o.name, &o.addr()), XXNET_OK);
        }
    }
}

/// Polls all members until `done` holds; false on timeout.
fn pump(
    ms: &mut [&mut Member],
    timeout: Duration,
    mut done: impl FnMut(&[&mut Member]) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done(ms) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for m in ms.iter_mut() {
            m.node.poll(1);
        }
    }
}

fn ended(m: &Member, task: u64) -> bool {
    m.node.download_end(task).is_some()
}

fn end_of(m: &Member, task: u64) -> Ev {
    m.node
        .download_end(task)
        .cloned()
        .unwrap_or_else(|| panic!("task {task} did not end:\n{}", dump_log(&m.node.log)))
}

fn path_of(ev: &Ev) -> PathBuf {
    PathBuf::from(String::from_utf8(ev.payload.clone()).unwrap())
}

#[test]
fn download_arrives_whole_and_a_second_request_is_served_from_the_cache() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "maps/world.bin", 5 * 1024 * 1024 + 123, 1);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t1 = c.node.download("S", &md5, "maps/world.bin", size).unwrap();
    assert!(pump(&mut [&mut s, &mut c], WAIT, |ms| ended(ms[1], t1)));
    let done = end_of(&c, t1);
    assert_eq!(done.kind, XXNET_EVENT_DOWNLOAD_DONE, "{}", ev_str(&done));
    assert_eq!((done.count, done.total), (size, size));
    assert_eq!(done.node, "S");
    let path = path_of(&done);
    assert!(path.starts_with(cache.path()), "{path:?}");
    assert_eq!(std::fs::read(&path).unwrap(), pattern(size as usize, 1));
    let st = c.node.files_stats();
    assert_eq!(st.blocks_fetched, size.div_ceil(256 << 10));
    assert_eq!(st.downloads_done, 1);
    assert_eq!(s.node.files_stats().blocks_served, st.blocks_fetched);

    // Asked again: DONE at once from the cache, nothing travels.
    let t2 = c.node.download("S", &md5, "any/other-name", size).unwrap();
    assert!(pump(&mut [&mut s, &mut c], WAIT, |ms| ended(ms[1], t2)));
    let again = end_of(&c, t2);
    assert_eq!(again.kind, XXNET_EVENT_DOWNLOAD_DONE);
    assert_eq!(path_of(&again), path);
    assert_eq!(c.node.files_stats().blocks_fetched, st.blocks_fetched);
}
