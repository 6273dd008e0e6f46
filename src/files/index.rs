//! The cache index: what is downloaded, what may be evicted.
//!
//! Persisted as `index.json` in the seed's layout, one array per file:
//!
//! ```text
//! {"version": 1, "files": [
//!   [md5_hex, file_name, size, last_used_ms, downloaded_bytes, block_size,
//!    last_block_size, [[first_block, end_block], ...], verified]
//! ]}
//! ```
//! The eighth field lists the downloaded blocks as half-open runs; the last
//! is true once the whole file's size and md5 were checked (only then is it
//! handed out without a transfer; a file whose blocks are all there but
//! which was never checked is checked again first). The worker
//! writes block data first and records it here after (data synced, then the
//! index replaced with a rename), so after a crash the index never claims a
//! block whose bytes are not on disk.

use super::fetch::{Blocks, Layout};
use super::{wire, Key, GRANULE, MAX_BLOCK};
use serde_json::{json, Value};
use std::collections::HashMap;

/// One file in the cache (finished or partial).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    /// The name the host gave (metadata only; never used as a path).
    pub name: String,
    /// Milliseconds since the Unix epoch of the last request for it.
    pub last_used: u64,
    pub block: u32,
    pub done: Blocks,
    /// Every block is written and the whole file's size and md5 were checked.
    pub verified: bool,
    /// Running downloads plus finished tasks the host has not released (not persisted).
    pub users: u32,
}

impl Entry {
    /// A new entry with nothing downloaded.
    pub fn new(key: Key, name: String, block: u32, now_ms: u64) -> Entry {
        let layout = Layout {
            size: key.size,
            block,
        };
        Entry {
            key,
            name,
            last_used: now_ms,
            block,
            done: Blocks::new(layout.blocks()),
            verified: false,
            users: 0,
        }
    }

    pub fn layout(&self) -> Layout {
        Layout {
            size: self.key.size,
            block: self.block,
        }
    }

    /// Downloaded and checked: ready to hand out.
    pub fn complete(&self) -> bool {
        self.verified && self.done.all()
    }

    pub fn downloaded(&self) -> u64 {
        self.layout().bytes(&self.done)
    }
}

/// Every cached file, by content.
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub entries: HashMap<Key, Entry>,
}

/// Not enough room, even after evicting everything evictable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSpace;

impl Index {
    /// Bytes the cache holds (a partial file counts its full size: it is preallocated).
    pub fn used(&self) -> u64 {
        self.entries.values().map(|e| e.key.size).sum()
    }

    /// Which idle entries to evict (least recently used first) so a new file
    /// of `size` fits in `quota` (0: none) and in `free_disk` bytes of free
    /// disk space. Entries in use are never evicted.
    pub fn plan_room(&self, size: u64, quota: u64, free_disk: u64) -> Result<Vec<Key>, NoSpace> {
        let busy: u64 = self
            .entries
            .values()
            .filter(|e| e.users > 0)
            .map(|e| e.key.size)
            .sum();
        if quota != 0 && busy.saturating_add(size) > quota {
            return Err(NoSpace);
        }
        let mut idle: Vec<&Entry> = self.entries.values().filter(|e| e.users == 0).collect();
        idle.sort_by_key(|e| (e.last_used, e.key));
        let mut used = self.used();
        let mut free = free_disk;
        let mut out = Vec::new();
        for e in idle {
            let quota_ok = quota == 0 || used + size <= quota;
            if quota_ok && free >= size {
                break;
            }
            used -= e.key.size;
            free = free.saturating_add(e.key.size);
            out.push(e.key);
        }
        if (quota != 0 && used + size > quota) || free < size {
            return Err(NoSpace);
        }
        Ok(out)
    }

    /// The JSON text of the index (entries in a stable order).
    pub fn to_json(&self) -> String {
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        entries.sort_by_key(|e| e.key);
        let files: Vec<Value> = entries
            .iter()
            .map(|e| {
                let l = e.layout();
                let last = if l.blocks() == 0 {
                    0
                } else {
                    l.len(l.blocks() - 1)
                };
                let runs: Vec<Value> = e.done.ranges().iter().map(|(a, b)| json!([a, b])).collect();
                json!([
                    e.key.hex(),
                    e.name,
                    e.key.size,
                    e.last_used,
                    e.downloaded(),
                    e.block,
                    last,
                    runs,
                    e.complete()
                ])
            })
            .collect();
        json!({"version": 1, "files": files}).to_string()
    }

    /// Reads an index; entries that do not make sense are dropped and
    /// described in the returned warnings. Unreadable JSON is an error.
    pub fn parse(text: &str) -> Result<(Index, Vec<String>), String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("index.json: {e}"))?;
        if v.get("version").and_then(Value::as_u64) != Some(1) {
            return Err("index.json: unknown version".into());
        }
        let files = v
            .get("files")
            .and_then(Value::as_array)
            .ok_or("index.json: no file list")?;
        let mut index = Index::default();
        let mut warnings = Vec::new();
        for (i, f) in files.iter().enumerate() {
            match parse_entry(f) {
                Ok(e) => {
                    if index.entries.insert(e.key, e).is_some() {
                        warnings.push(format!("index.json entry {i}: duplicate content"));
                    }
                }
                Err(m) => warnings.push(format!("index.json entry {i}: {m}")),
            }
        }
        Ok((index, warnings))
    }
}

fn parse_entry(f: &Value) -> Result<Entry, String> {
    let a = f.as_array().ok_or("not an array")?;
    if a.len() != 9 {
        return Err("expected 9 fields".into());
    }
    let md5 = a[0].as_str().and_then(wire::parse_md5).ok_or("bad md5")?;
    let name = a[1].as_str().ok_or("bad name")?;
    if !wire::valid_name(name) {
        return Err("bad name".into());
    }
    let num = |i: usize, what: &str| a[i].as_u64().ok_or(format!("bad {what}"));
    let size = num(2, "size")?;
    let last_used = num(3, "last-used time")?;
    let downloaded = num(4, "downloaded bytes")?;
    let block = num(5, "block size")?;
    if block == 0 || block % GRANULE as u64 != 0 || block > MAX_BLOCK as u64 {
        return Err("bad block size".into());
    }
    if size / block > u32::MAX as u64 / 2 {
        return Err("size too large".into());
    }
    let key = Key { md5, size };
    let mut e = Entry::new(key, name.to_string(), block as u32, last_used);
    let l = e.layout();
    let last = num(6, "last block size")?;
    let want_last = if l.blocks() == 0 {
        0
    } else {
        l.len(l.blocks() - 1) as u64
    };
    if last != want_last {
        return Err("last block size does not match".into());
    }
    for run in a[7].as_array().ok_or("bad block list")? {
        let r = run
            .as_array()
            .filter(|r| r.len() == 2)
            .ok_or("bad block run")?;
        let (s, t) = (
            r[0].as_u64().ok_or("bad block run")?,
            r[1].as_u64().ok_or("bad block run")?,
        );
        if s >= t || t > l.blocks() as u64 {
            return Err("block run out of range".into());
        }
        for b in s..t {
            e.done.set(b as u32);
        }
    }
    if e.downloaded() != downloaded {
        return Err("downloaded bytes do not match the block list".into());
    }
    e.verified = a[8].as_bool().ok_or("bad verified flag")?;
    if e.verified && !e.done.all() {
        return Err("verified but not every block is downloaded".into());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, size: u64, last_used: u64, users: u32, complete: bool) -> Entry {
        let key = Key { md5: [n; 16], size };
        let mut e = Entry::new(key, format!("f{n}"), GRANULE, last_used);
        if complete {
            for b in 0..e.done.len() {
                e.done.set(b);
            }
            e.verified = true;
        }
        e.users = users;
        e
    }

    fn index(es: Vec<Entry>) -> Index {
        Index {
            entries: es.into_iter().map(|e| (e.key, e)).collect(),
        }
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut a = entry(1, 10 * GRANULE as u64 + 7, 1234, 0, false);
        for b in [0, 1, 2, 5, 10] {
            a.done.set(b);
        }
        let b = entry(2, 0, 99, 0, true);
        let idx = index(vec![a.clone(), b.clone()]);
        let text = idx.to_json();
        let (back, warnings) = Index::parse(&text).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(back.entries[&a.key], a);
        assert_eq!(back.entries[&b.key], b);
        let v: Value = serde_json::from_str(&text).unwrap();
        let f = &v["files"][0];
        assert_eq!(f[4], json!(5 * GRANULE as u64 - GRANULE as u64 + 7));
        assert_eq!(f[6], json!(7));
        assert_eq!(f[7], json!([[0, 3], [5, 6], [10, 11]]));
    }

    #[test]
    fn bad_entries_are_dropped_with_a_reason() {
        let good = index(vec![entry(1, 100, 1, 0, true)]).to_json();
        let v: Value = serde_json::from_str(&good).unwrap();
        let f = v["files"][0].clone();
        let mut bad = Vec::new();
        for (i, val) in [
            (0, json!("zz")),
            (1, json!("../etc/passwd")),
            (5, json!(1000)),
            (6, json!(3)),
            (7, json!([[0, 9]])),
            (4, json!(5)),
            (8, json!("yes")),
        ] {
            let mut g = f.clone();
            g[i] = val;
            bad.push(g);
        }
        bad.push(json!("x"));
        bad.push(f.clone());
        let text = json!({"version": 1, "files": bad}).to_string();
        let (idx, warnings) = Index::parse(&text).unwrap();
        assert_eq!(idx.entries.len(), 1);
        assert_eq!(warnings.len(), 8, "{warnings:?}");
        assert!(Index::parse("{").is_err());
        assert!(Index::parse("{\"version\":2,\"files\":[]}").is_err());
    }

    #[test]
    fn room_is_made_least_recently_used_first_and_never_from_busy_files() {
        let idx = index(vec![
            entry(1, 100, 30, 0, true),
            entry(2, 100, 10, 0, true),
            entry(3, 100, 20, 1, true),
            entry(4, 100, 5, 1, false),
        ]);
        // 400 used, quota 500: a 100-byte file fits as is.
        assert_eq!(idx.plan_room(100, 500, u64::MAX), Ok(vec![]));
        // 250 needs 150 freed: the two idle files, oldest first.
        let k = |n: u8| Key {
            md5: [n; 16],
            size: 100,
        };
        assert_eq!(idx.plan_room(150, 500, u64::MAX), Ok(vec![k(2)]));
        assert_eq!(idx.plan_room(300, 500, u64::MAX), Ok(vec![k(2), k(1)]));
        // Busy files hold 200: more than 300 more never fits.
        assert_eq!(idx.plan_room(301, 500, u64::MAX), Err(NoSpace));
        // Larger than the quota.
        assert_eq!(idx.plan_room(501, 500, u64::MAX), Err(NoSpace));
        // No quota, but the disk has 120 free: evict until 150 fits.
        assert_eq!(idx.plan_room(150, 0, 120), Ok(vec![k(2)]));
        assert_eq!(idx.plan_room(330, 0, 120), Err(NoSpace));
    }
}
