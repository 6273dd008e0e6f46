//! Downloads between nodes in one process (issue 6): fetching, the cache,
//! joining, the quota, failures with their reasons, corrupt blocks and
//! path safety. (Crash and restart of a downloading process are in
//! it_files_procs.rs; small calls beside a large download are measured by
//! `cargo bench --bench files`.)

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
        member_on(name, 0, cache, tweak)
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

fn is_end(e: &Ev) -> bool {
    e.kind == XXNET_EVENT_DOWNLOAD_DONE || e.kind == XXNET_EVENT_DOWNLOAD_FAILED
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

fn member_on(
    name: &str,
    port: u16,
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
    let deadline = Instant::now() + WAIT;
    let port = loop {
        match node.try_listen("127.0.0.1", port) {
            Ok(p) => break p,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot listen on {port}: {}", strerror(e)),
        }
    };
    let mut names = vec![cname];
    names.extend(cdir);
    Member {
        node,
        name: name.to_string(),
        port,
        _names: names,
    }
}

fn release(m: &Member, task: u64) {
    assert_eq!(
        ffi::files::xxnet_download_release(m.node.ctx, task),
        XXNET_OK
    );
}

fn download_ok(
    ms: &mut [&mut Member],
    client: usize,
    node: &str,
    md5: &str,
    name: &str,
    size: u64,
) -> (u64, PathBuf) {
    let t = ms[client].node.download(node, md5, name, size).unwrap();
    assert!(pump(ms, WAIT, |ms| ended(ms[client], t)));
    let ev = end_of(ms[client], t);
    assert_eq!(ev.kind, XXNET_EVENT_DOWNLOAD_DONE, "{}", ev_str(&ev));
    (t, path_of(&ev))
}

/// The index entry of `md5` as JSON: [md5, name, size, last_used, downloaded, block, last_block, runs].
fn index_entry(cache: &Path, md5: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(cache.join("index.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["files"].as_array()?.iter().find(|f| f[0] == md5).cloned()
}

#[test]
fn quota_evicts_least_recently_used_files_nobody_holds_and_refuses_what_cannot_fit() {
    const MIB: usize = 1 << 20;
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let files: Vec<(String, u64)> = (0..5)
        .map(|i| make_file(served.path(), &format!("f{i}"), MIB, 10 + i))
        .collect();
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_quota = 3 * MIB as u64 + 1000
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let mut ms = [&mut s, &mut c];
    let (ta, pa) = download_ok(&mut ms, 1, "S", &files[0].0, "f0", files[0].1);
    let (tb, pb) = download_ok(&mut ms, 1, "S", &files[1].0, "f1", files[1].1);
    let (_tc, pc) = download_ok(&mut ms, 1, "S", &files[2].0, "f2", files[2].1);
    release(ms[1], ta);
    release(ms[1], tb);
    // A is used again: its last-used time is refreshed (in the persisted index too).
    let before = index_entry(cache.path(), &files[0].0).unwrap()[3]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let (ta2, pa2) = download_ok(&mut ms, 1, "S", &files[0].0, "f0", files[0].1);
    assert_eq!(pa2, pa);
    let after = index_entry(cache.path(), &files[0].0).unwrap()[3]
        .as_u64()
        .unwrap();
    assert!(after > before, "last-used {before} → {after}");
    release(ms[1], ta2);
    // D needs room: B is the least recently used file nobody holds (C is held).
    let (_td, pd) = download_ok(&mut ms, 1, "S", &files[3].0, "f3", files[3].1);
    assert!(!pb.exists(), "B evicted");
    assert!(pa.exists() && pc.exists() && pd.exists());
    assert_eq!(ms[1].node.files_stats().evictions, 1);
    assert!(index_entry(cache.path(), &files[1].0).is_none());
    // Larger than the quota: refused at once.
    assert_eq!(
        ms[1].node.download("S", &files[4].0, "f4", 4 * MIB as u64),
        Err(XXNET_E_NO_SPACE)
    );
    // C and D are held; A is not: E evicts A. Then F cannot fit beside C, D, E, all held.
    let (_te, _) = download_ok(&mut ms, 1, "S", &files[4].0, "f4", files[4].1);
    assert!(!pa.exists());
    let tf = ms[1]
        .node
        .download("S", &files[1].0, "f1", files[1].1)
        .unwrap();
    assert!(pump(&mut ms, WAIT, |ms| ended(ms[1], tf)));
    let f = end_of(ms[1], tf);
    assert_eq!(
        (f.kind, f.code),
        (XXNET_EVENT_DOWNLOAD_FAILED, XXNET_E_NO_SPACE),
        "{}",
        ev_str(&f)
    );
    let st = ms[1].node.files_stats();
    assert_eq!(st.cache_bytes, 3 * MIB as u64);
    assert_eq!(
        ms[0].node.files_stats().blocks_served,
        5,
        "every byte travelled once"
    );
}

#[test]
fn requests_for_running_content_join_it_and_the_bytes_travel_once() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "big", 4 << 20, 3);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10;
        c.download_rate_limit = 8 << 20;
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t1 = c.node.download("S", &md5, "big", size).unwrap();
    let mut ms = [&mut s, &mut c];
    assert!(pump(&mut ms, WAIT, |ms| ms[1].node.log.iter().any(|e| e
        .kind
        == XXNET_EVENT_DOWNLOAD_PROGRESS
        && e.id == t1
        && e.count > 0)));
    let t2 = ms[1].node.download("S", &md5, "big", size).unwrap();
    let t3 = ms[1].node.download("S", &md5, "other-name", size).unwrap();
    assert!(pump(&mut ms, WAIT, |ms| [t1, t2, t3]
        .iter()
        .all(|&t| ended(ms[1], t))));
    for t in [t1, t2, t3] {
        let e = end_of(ms[1], t);
        assert_eq!(e.kind, XXNET_EVENT_DOWNLOAD_DONE, "{}", ev_str(&e));
        assert_eq!(
            ms[1]
                .node
                .log
                .iter()
                .filter(|x| x.id == t && x.kind == e.kind)
                .count(),
            1
        );
    }
    let blocks = (4u64 << 20) / (256 << 10);
    assert_eq!(ms[1].node.files_stats().blocks_fetched, blocks);
    assert_eq!(ms[0].node.files_stats().blocks_served, blocks);
    // Progress: at most a few per second per task, never backwards, never above the size.
    let p: Vec<&Ev> = ms[1]
        .node
        .log
        .iter()
        .filter(|e| e.kind == XXNET_EVENT_DOWNLOAD_PROGRESS && e.id == t1)
        .collect();
    assert!(!p.is_empty());
    for w in p.windows(2) {
        assert!(w[1].count >= w[0].count && w[1].count <= size);
        assert!(
            w[1].at.duration_since(w[0].at) >= Duration::from_millis(150),
            "progress too often"
        );
    }
}

#[test]
fn cancel_ends_one_requester_and_a_later_request_resumes_the_partial_file() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 4 << 20, 4);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10;
        c.download_rate_limit = 4 << 20;
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t1 = c.node.download("S", &md5, "f", size).unwrap();
    let t2 = c.node.download("S", &md5, "f", size).unwrap();
    let mut ms = [&mut s, &mut c];
    assert!(pump(&mut ms, WAIT, |ms| ms[1]
        .node
        .log
        .iter()
        .any(
            |e| e.kind == XXNET_EVENT_DOWNLOAD_PROGRESS && e.count >= 1 << 20
        )));
    assert_eq!(
        ffi::files::xxnet_download_cancel(ms[1].node.ctx, t1),
        XXNET_OK
    );
    assert_eq!(
        ffi::files::xxnet_download_cancel(ms[1].node.ctx, t1),
        XXNET_E_UNKNOWN_TASK
    );
    ms[1].node.poll(0);
    let e1 = end_of(ms[1], t1);
    assert_eq!(
        (e1.kind, e1.code),
        (XXNET_EVENT_DOWNLOAD_FAILED, XXNET_E_CANCELLED)
    );
    // t2 goes on; cancel it too: the transfer stops, the partial file stays.
    pump(&mut ms, Duration::from_millis(300), |_| false);
    assert!(!ended(ms[1], t2));
    assert_eq!(
        ffi::files::xxnet_download_cancel(ms[1].node.ctx, t2),
        XXNET_OK
    );
    pump(&mut ms, Duration::from_millis(500), |_| false);
    let fetched = ms[1].node.files_stats().blocks_fetched;
    assert!(fetched > 0 && fetched < 16, "{fetched}");
    let entry = index_entry(cache.path(), &md5).unwrap();
    let recorded = entry[4].as_u64().unwrap();
    assert_eq!(
        recorded,
        fetched * (256 << 10),
        "index records every written block"
    );
    // Nothing more for the cancelled tasks.
    assert_eq!(
        ms[1]
            .node
            .log
            .iter()
            .filter(|e| (e.id == t1 || e.id == t2) && is_end(e))
            .count(),
        2
    );
    // Asked again: only the missing blocks travel.
    let served_before = ms[0].node.files_stats().blocks_served;
    let (_t3, p) = download_ok(&mut ms, 1, "S", &md5, "f", size);
    assert_eq!(ms[1].node.files_stats().blocks_fetched, 16);
    assert!(ms[0].node.files_stats().blocks_served - served_before <= 16 - fetched);
    assert_eq!(std::fs::read(p).unwrap(), pattern(size as usize, 4));
}

#[test]
fn corrupt_blocks_are_fetched_again() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 3 << 20, 5);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    s.node.inject_corruption(3);
    let mut ms = [&mut s, &mut c];
    let (_t, p) = download_ok(&mut ms, 1, "S", &md5, "f", size);
    let st = ms[1].node.files_stats();
    assert_eq!(st.blocks_refetched, 3);
    assert_eq!(st.blocks_fetched, 12);
    assert_eq!(ms[0].node.files_stats().blocks_served, 15);
    assert_eq!(std::fs::read(p).unwrap(), pattern(size as usize, 5));
}

#[test]
fn content_found_wrong_at_the_end_is_discarded_and_fetched_whole_next_time() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 2 << 20, 6);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10;
        c.download_rate_limit = 2 << 20;
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let key = format!("{md5}-{size}");
    let data = cache.path().join("data").join(&key);
    let mut ms = [&mut s, &mut c];
    for (damage, want) in [(0u8, XXNET_E_CHECKSUM), (1, XXNET_E_SIZE_MISMATCH)] {
        let t = ms[1].node.download("S", &md5, "f", size).unwrap();
        assert!(pump(&mut ms, WAIT, |ms| ms[1]
            .node
            .log
            .iter()
            .any(|e| e.id == t && e.count >= 512 << 10)));
        assert_eq!(
            ffi::files::xxnet_download_cancel(ms[1].node.ctx, t),
            XXNET_OK
        );
        pump(&mut ms, Duration::from_millis(300), |_| false);
        // Damage the cache: a flipped byte in the first (recorded) block, or extra bytes.
        let mut bytes = std::fs::read(&data).unwrap();
        if damage == 0 {
            bytes[10] ^= 0xff;
        } else {
            bytes.extend_from_slice(b"tail");
        }
        std::fs::write(&data, bytes).unwrap();
        let t = ms[1].node.download("S", &md5, "f", size).unwrap();
        assert!(pump(&mut ms, WAIT, |ms| ended(ms[1], t)));
        let e = end_of(ms[1], t);
        assert_eq!(
            (e.kind, e.code),
            (XXNET_EVENT_DOWNLOAD_FAILED, want),
            "{}",
            ev_str(&e)
        );
        assert!(!data.exists(), "partial file discarded");
        assert!(index_entry(cache.path(), &md5).is_none());
    }
    let before = ms[1].node.files_stats().blocks_fetched;
    let (_t, p) = download_ok(&mut ms, 1, "S", &md5, "f", size);
    assert_eq!(
        ms[1].node.files_stats().blocks_fetched - before,
        8,
        "fetched whole"
    );
    assert_eq!(std::fs::read(p).unwrap(), pattern(size as usize, 6));
}

#[test]
fn a_source_that_goes_down_is_resumed_when_it_returns_and_reported_when_it_does_not() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 4 << 20, 7);
    let mut s = Member::new("S", None, |_| {});
    let port = s.port;
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 256 << 10;
        c.download_rate_limit = 4 << 20;
        c.reconnect_min_ms = 50;
        c.reconnect_max_ms = 200;
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t = c.node.download("S", &md5, "f", size).unwrap();
    assert!(pump(&mut [&mut s, &mut c], WAIT, |ms| ms[1]
        .node
        .log
        .iter()
        .any(|e| e.id == t && e.count >= 1 << 20)));
    s.node.free();
    drop(s);
    c.node.poll_for(Duration::from_millis(700));
    assert!(!ended(&c, t), "a source that is down is waited for");
    let mut s2 = member_on("S", port, None, |_| {});
    assert_eq!(s2.node.cluster_set("C", &c.addr()), XXNET_OK);
    assert_eq!(s2.node.files_serve(served.path()), XXNET_OK);
    assert!(pump(&mut [&mut s2, &mut c], WAIT, |ms| ended(ms[1], t)));
    let e = end_of(&c, t);
    assert_eq!(e.kind, XXNET_EVENT_DOWNLOAD_DONE, "{}", ev_str(&e));
    assert_eq!(
        c.node.files_stats().blocks_fetched,
        16,
        "no block written twice"
    );
    assert_eq!(
        std::fs::read(path_of(&e)).unwrap(),
        pattern(size as usize, 7)
    );

    // Down for good: the requester's deadline reports the node down.
    let cache2 = TempDir::new("cache");
    let mut c2 = Member::new("C2", Some(cache2.path()), |c| {
        c.download_block_size = 256 << 10;
        c.download_rate_limit = 4 << 20;
        c.download_timeout_ms = 1500;
    });
    introduce(&[&s2, &c2]);
    let t = c2.node.download("S", &md5, "f", size).unwrap();
    let start = Instant::now();
    assert!(pump(&mut [&mut s2, &mut c2], WAIT, |ms| ms[1]
        .node
        .log
        .iter()
        .any(|e| e.id == t && e.count > 0)));
    s2.node.free();
    assert!(c2.node.poll_until(WAIT, |log| log
        .iter()
        .any(|e| e.id == t && e.kind == XXNET_EVENT_DOWNLOAD_FAILED)));
    let e = end_of(&c2, t);
    assert_eq!(e.code, XXNET_E_NODE_DOWN, "{}", ev_str(&e));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
        "{took:?}"
    );
    assert!(e.count > 0 && e.count < size);
}

#[test]
fn a_slow_download_times_out() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 2 << 20, 8);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| {
        c.download_block_size = 64 << 10;
        c.download_rate_limit = 256 << 10;
        c.download_timeout_ms = 600;
    });
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t = c.node.download("S", &md5, "f", size).unwrap();
    let start = Instant::now();
    assert!(pump(&mut [&mut s, &mut c], WAIT, |ms| ended(ms[1], t)));
    let e = end_of(&c, t);
    assert_eq!(
        (e.kind, e.code),
        (XXNET_EVENT_DOWNLOAD_FAILED, XXNET_E_TIMEOUT),
        "{}",
        ev_str(&e)
    );
    assert!(start.elapsed() >= Duration::from_millis(550));
    assert!(e.count > 0 && e.count < size, "{}", e.count);
}

#[test]
fn missing_content_wrong_names_and_paths_outside_are_refused() {
    let root = TempDir::new("root");
    let served = root.path().join("served");
    let cache = TempDir::new("cache");
    std::fs::create_dir_all(&served).unwrap();
    let (md5, size) = make_file(&served, "maps/a.bin", 300_000, 9);
    let (secret_md5, secret_size) = make_file(root.path(), "secret", 1000, 10);
    std::os::unix::fs::symlink(root.path().join("secret"), served.join("link")).unwrap();
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |_| {});
    let mut plain = Member::new("P", None, |_| {});
    introduce(&[&s, &c, &plain]);
    assert_eq!(s.node.files_serve(&served), XXNET_OK);
    assert_eq!(
        s.node.files_serve(&root.path().join("nope")),
        XXNET_E_BAD_PATH
    );
    assert_eq!(
        s.node.files_serve(&served.join("maps/a.bin")),
        XXNET_E_BAD_PATH
    );
    // Refused at once, before anything travels.
    let long = "x".repeat(256);
    let deep = "ab/".repeat(400) + "c";
    for (m, name, want) in [
        (md5.as_str(), "../secret", XXNET_E_BAD_PATH),
        (md5.as_str(), "/etc/passwd", XXNET_E_BAD_PATH),
        (md5.as_str(), "maps/../../secret", XXNET_E_BAD_PATH),
        (md5.as_str(), long.as_str(), XXNET_E_BAD_PATH),
        (md5.as_str(), deep.as_str(), XXNET_E_BAD_PATH),
        (md5.as_str(), "", XXNET_E_BAD_PATH),
        ("../../../../../../../../../../../", "a", XXNET_E_BAD_PATH),
        ("0123", "a", XXNET_E_BAD_PATH),
    ] {
        assert_eq!(c.node.download("S", m, name, size), Err(want), "{m} {name}");
    }
    assert_eq!(
        c.node.download("Nobody", &md5, "a", size),
        Err(XXNET_E_UNKNOWN_NODE)
    );
    assert_eq!(
        plain.node.download("S", &md5, "a", size),
        Err(XXNET_E_INVALID_ARG),
        "no download_dir"
    );
    let mut ms = [&mut s, &mut c, &mut plain];
    let outcome = |ms: &mut [&mut Member], node: &str, m: &str, name: &str, size: u64| {
        let t = ms[1].node.download(node, m, name, size).unwrap();
        assert!(pump(ms, WAIT, |ms| ended(ms[1], t)));
        let e = end_of(ms[1], t);
        (e.kind, e.code)
    };
    let failed = |code| (XXNET_EVENT_DOWNLOAD_FAILED, code);
    // The content behind a symlink out of the served directory is not served.
    assert_eq!(
        outcome(&mut ms, "S", &secret_md5, "link", secret_size),
        failed(XXNET_E_NO_CONTENT)
    );
    assert_eq!(
        outcome(&mut ms, "S", &secret_md5, "secret", secret_size),
        failed(XXNET_E_NO_CONTENT)
    );
    // A name that exists with another size or content says so.
    assert_eq!(
        outcome(&mut ms, "S", &md5, "maps/a.bin", size + 1),
        failed(XXNET_E_SIZE_MISMATCH)
    );
    assert_eq!(
        outcome(&mut ms, "S", &secret_md5, "maps/a.bin", size),
        failed(XXNET_E_CHECKSUM)
    );
    // A node that serves nothing has no content.
    assert_eq!(
        outcome(&mut ms, "P", &md5, "maps/a.bin", size),
        failed(XXNET_E_NO_CONTENT)
    );
    // A file added after the scan is found by its name.
    let (late_md5, late_size) = make_file(&served, "late/new.bin", 70_000, 11);
    assert_eq!(
        outcome(&mut ms, "S", &late_md5, "late/new.bin", late_size),
        (XXNET_EVENT_DOWNLOAD_DONE, XXNET_OK)
    );
    assert_eq!(
        outcome(&mut ms, "S", &md5, "whatever", size),
        (XXNET_EVENT_DOWNLOAD_DONE, XXNET_OK)
    );
    // Nothing was written outside the cache's data directory.
    let mut written: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    written.sort();
    assert_eq!(written, ["data", "index.json"]);
}

#[test]
fn a_cache_that_cannot_be_written_fails_with_a_disk_error() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    std::fs::write(cache.path().join("data"), b"not a directory").unwrap();
    let (md5, size) = make_file(served.path(), "f", 1000, 12);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |_| {});
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t = c.node.download("S", &md5, "f", size).unwrap();
    assert!(pump(&mut [&mut s, &mut c], WAIT, |ms| ended(ms[1], t)));
    assert_eq!(end_of(&c, t).code, XXNET_E_DISK);
}

#[test]
fn shutdown_fails_running_downloads_once() {
    let served = TempDir::new("srv");
    let cache = TempDir::new("cache");
    let (md5, size) = make_file(served.path(), "f", 2 << 20, 13);
    let mut s = Member::new("S", None, |_| {});
    let mut c = Member::new("C", Some(cache.path()), |c| c.download_rate_limit = 1 << 20);
    introduce(&[&s, &c]);
    assert_eq!(s.node.files_serve(served.path()), XXNET_OK);
    let t = c.node.download("S", &md5, "f", size).unwrap();
    pump(&mut [&mut s, &mut c], Duration::from_millis(300), |_| false);
    c.node.shutdown();
    c.node.poll_for(Duration::from_millis(200));
    let ends: Vec<&Ev> = c
        .node
        .log
        .iter()
        .filter(|e| e.id == t && is_end(e))
        .collect();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].code, XXNET_E_SHUTDOWN);
    assert_eq!(c.node.download("S", &md5, "f", size), Err(XXNET_E_SHUTDOWN));
}
