//! A downloading process killed with SIGKILL and started again (issue 6,
//! points 3 and 6): the index on disk never claims more than was written,
//! the restarted process fetches only the blocks the index lacks, and
//! nothing calls back the requests of the killed process.

mod common;

use common::*;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xxnet::files::serve::hash_file;
use xxnet::*;

const TAG: &str = "XXFILES ";
const BLOCK: u64 = 256 << 10;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

// ----- the child side ----------------------------------------------------------

#[test]
#[ignore = "the downloading process of the tests in this file (they start it)"]
fn download_node() {
    let cache = env("XXFILES_CACHE");
    if cache.is_empty() {
        eprintln!("download_node: not started as a child; nothing to do");
        return;
    }
    let (name, cdir) = (CString::new("C").unwrap(), CString::new(cache).unwrap());
    let mut cfg = default_config();
    cfg.node_name = name.as_ptr();
    cfg.download_dir = cdir.as_ptr();
    cfg.download_block_size = BLOCK as u32;
    cfg.download_rate_limit = env("XXFILES_RATE").parse().unwrap();
    let mut node = Node::with_config(&cfg);
    assert_eq!(node.cluster_set("S", &env("XXFILES_SERVER")), XXNET_OK);
    // Anything for a download before this process asked for one would be a callback
    // of a request made before the restart.
    node.poll_for(Duration::from_millis(400));
    for e in &node.log {
        if e.kind >= XXNET_EVENT_DOWNLOAD_PROGRESS {
            println!("\n{TAG}stray={}", e.id);
        }
    }
    let size: u64 = env("XXFILES_SIZE").parse().unwrap();
    let task = node
        .download("S", &env("XXFILES_MD5"), "big.bin", size)
        .unwrap();
    println!("\n{TAG}task={task}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while Instant::now() < deadline {
        node.poll(10);
        for e in &node.log[seen..] {
            match e.kind {
                XXNET_EVENT_DOWNLOAD_PROGRESS => println!("\n{TAG}progress={}", e.count),
                XXNET_EVENT_DOWNLOAD_DONE => {
                    let st = node.files_stats();
                    println!("\n{TAG}fetched={}", st.blocks_fetched);
                    println!("\n{TAG}done={}", String::from_utf8_lossy(&e.payload));
                }
                XXNET_EVENT_DOWNLOAD_FAILED => println!("\n{TAG}failed={}", e.code),
                _ => {}
            }
        }
        seen = node.log.len();
    }
}

// ----- the parent side ------------------------------------------------------------

struct Child {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Child {
    fn spawn(cache: &Path, server: &str, md5: &str, size: u64, rate: u64) -> Child {
        let (child, rx) = spawn_self(
            "download_node",
            &[
                ("XXFILES_CACHE", cache.to_str().unwrap()),
                ("XXFILES_SERVER", server),
                ("XXFILES_MD5", md5),
                ("XXFILES_SIZE", &size.to_string()),
                ("XXFILES_RATE", &rate.to_string()),
            ],
            "C",
            |line| line.find(TAG).map(|i| line[i + TAG.len()..].to_string()),
        );
        Child {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }

    fn value(&self, key: &str) -> Option<String> {
        let p = format!("{key}=");
        self.lines
            .iter()
            .rev()
            .find_map(|l| l.strip_prefix(&p).map(|v| v.trim().to_string()))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Blocks the index in `cache` records for `md5`, if it has an entry.
fn recorded_blocks(cache: &Path, md5: &str) -> Option<u64> {
    let text = std::fs::read_to_string(cache.join("index.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let f = v["files"].as_array()?.iter().find(|f| f[0] == md5)?.clone();
    Some(f[4].as_u64()?.div_ceil(BLOCK))
}

#[test]
fn a_killed_download_resumes_after_restart_fetching_only_the_missing_blocks() {
    let root = std::env::temp_dir().join(format!("xxnet-files-procs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (served, cache) = (root.join("served"), root.join("cache"));
    std::fs::create_dir_all(&served).unwrap();
    let size = 32 * BLOCK;
    std::fs::write(served.join("big.bin"), pattern(size as usize, 21)).unwrap();
    let key = hash_file(&served.join("big.bin")).unwrap();
    let md5 = key.hex();

    let sname = CString::new("S").unwrap();
    let mut cfg = default_config();
    cfg.node_name = sname.as_ptr();
    let mut s = Node::with_config(&cfg);
    let port = s.listen("127.0.0.1");
    assert_eq!(s.files_serve(&served), XXNET_OK);
    let server = format!("127.0.0.1:{port}");

    // Run 1: slow (2 MiB/s); killed once the index records a few blocks.
    let mut c1 = Child::spawn(&cache, &server, &md5, size, 2 << 20);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        s.poll(5);
        c1.drain();
        if recorded_blocks(&cache, &md5).is_some_and(|n| n >= 6) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "run 1 recorded no blocks: {:?}",
            c1.lines
        );
    }
    c1.kill();
    c1.drain();
    assert!(c1.value("done").is_none(), "killed before the end");
    let recorded = recorded_blocks(&cache, &md5).unwrap();
    assert!((6..32).contains(&recorded), "{recorded}");
    let served_run1 = s.files_stats().blocks_served;
    assert!(served_run1 >= recorded);

    // Run 2: same cache directory, no rate limit.
    let mut c2 = Child::spawn(&cache, &server, &md5, size, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while c2.value("done").is_none() && c2.value("failed").is_none() {
        s.poll(5);
        c2.drain();
        assert!(
            Instant::now() < deadline,
            "run 2 did not end: {:?}",
            c2.lines
        );
    }
    assert_eq!(c2.value("failed"), None, "{:?}", c2.lines);
    assert_eq!(c2.value("stray"), None, "an old request was called back");
    let fetched: u64 = c2.value("fetched").unwrap().parse().unwrap();
    assert_eq!(fetched, 32 - recorded, "only the missing blocks travel");
    assert_eq!(s.files_stats().blocks_served - served_run1, 32 - recorded);
    let path = PathBuf::from(c2.value("done").unwrap());
    assert!(path.starts_with(&cache));
    assert_eq!(hash_file(&path).unwrap(), key);
    drop(c2);
    s.free();
    let _ = std::fs::remove_dir_all(&root);
}
