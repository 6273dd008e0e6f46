//! Deterministic tests of the fetch state machine: explicit instants
//! (`t0 + Duration`), a scripted source, and every act checked.

use super::*;
use crate::files::wire::Request;
use crate::files::GRANULE;
use bytes::{BufMut, BytesMut};
use std::collections::BTreeMap;

const G: u32 = GRANULE;
const MS: Duration = Duration::from_millis(1);

fn key(size: u64) -> Key {
    Key {
        md5: [0x5a; 16],
        size,
    }
}

/// The block data the scripted source serves.
fn data(block: u32, len: u32) -> Vec<u8> {
    (0..len)
        .map(|j| (block.wrapping_mul(31) ^ j.wrapping_mul(7) ^ (j >> 9)) as u8)
        .collect()
}

/// A BLOCK reply body: one CRC per granule, then the data.
fn reply(block: u32, len: u32) -> Bytes {
    let d = data(block, len);
    let mut b = BytesMut::new();
    for c in wire::granule_crcs(&d) {
        b.put_u32_le(c);
    }
    b.put_slice(&d);
    b.freeze()
}

/// The same reply with one byte of its data flipped.
fn corrupt_reply(block: u32, len: u32) -> Bytes {
    let mut b = reply(block, len).to_vec();
    let at = b.len() - 1 - (block as usize % len as usize);
    b[at] ^= 0x40;
    Bytes::from(b)
}

/// A call the fetch made, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Open {
        session: u64,
        node: String,
    },
    Block {
        session: u64,
        node: String,
        block: u32,
    },
}

impl Call {
    fn session(&self) -> u64 {
        match self {
            Call::Open { session, .. } | Call::Block { session, .. } => *session,
        }
    }
}

/// A fetch under test, its bucket and session counter.
struct T {
    f: Fetch,
    t0: Instant,
    bucket: Bucket,
    next: u64,
}

impl T {
    /// A fetch of `size` bytes in one-granule blocks for task 1 on node "a"
    /// (deadline t0 + 60 s), nothing cached.
    fn new(size: u64, window: usize) -> T {
        let blocks = Layout { size, block: G }.blocks();
        T::resumed(size, Blocks::new(blocks), window)
    }

    fn resumed(size: u64, done: Blocks, window: usize) -> T {
        let t0 = Instant::now();
        let mut f = Fetch::new(key(size), "maps/a.bin".into(), G, done, window);
        f.join(Requester {
            task: 1,
            node: "a".into(),
            deadline: t0 + Duration::from_secs(60),
        });
        T {
            f,
            t0,
            bucket: Bucket::new(0),
            next: 100,
        }
    }

    fn join(&mut self, task: u64, node: &str, deadline: Instant) {
        self.f.join(Requester {
            task,
            node: node.into(),
            deadline,
        });
    }

    fn pump(&mut self, now: Instant) -> Vec<Act> {
        let mut out = Vec::new();
        let next = &mut self.next;
        let mut alloc = || {
            *next += 1;
            *next
        };
        self.f.pump(now, &mut alloc, &mut self.bucket, &mut out);
        out
    }

    fn pump_calls(&mut self, now: Instant) -> Vec<Call> {
        let acts = self.pump(now);
        calls(&self.f, &acts)
    }

    fn pump_blocks(&mut self, now: Instant) -> Vec<(u64, u32)> {
        let acts = self.pump(now);
        block_calls(&self.f, &acts)
    }

    fn result(&mut self, session: u64, code: c_int, body: &Bytes, now: Instant) -> Vec<Act> {
        let mut out = Vec::new();
        self.f.on_result(session, code, body, now, &mut out);
        out
    }

    fn written(&mut self, block: u32, res: Result<(), c_int>) -> Vec<Act> {
        let mut out = Vec::new();
        self.f.written(block, res, &mut out);
        out
    }

    fn verified(&mut self, res: Result<(), c_int>) -> Vec<Act> {
        let mut out = Vec::new();
        self.f.verified(res, &mut out);
        out
    }

    /// Pumps, expects exactly one OPEN (to `node`), answers it OK.
    fn open(&mut self, now: Instant, node: &str) {
        let acts = self.pump(now);
        let c = calls(&self.f, &acts);
        assert_eq!(c.len(), 1, "{acts:?}");
        let Call::Open { session, node: n } = &c[0] else {
            panic!("expected an OPEN: {acts:?}");
        };
        assert_eq!(n, node);
        let acts = self.result(*session, XXNET_OK, &Bytes::new(), now);
        assert!(acts.is_empty(), "{acts:?}");
    }

    /// Answers block call `session` for `block` with good data; expects the
    /// Write, reports it written, returns the acts of `written`.
    fn serve(&mut self, session: u64, block: u32, now: Instant) -> Vec<Act> {
        let len = self.f.layout.len(block);
        let acts = self.result(session, XXNET_OK, &reply(block, len), now);
        assert_eq!(
            acts,
            vec![Act::Write {
                block,
                offset: self.f.layout.offset(block),
                data: Bytes::from(data(block, len)),
            }]
        );
        self.written(block, Ok(()))
    }
}

/// The calls among `acts`, decoded and checked against the fetch's key.
fn calls(f: &Fetch, acts: &[Act]) -> Vec<Call> {
    acts.iter()
        .filter_map(|a| match a {
            Act::Call {
                session,
                node,
                body,
                bulk,
            } => Some(
                match wire::decode(body).expect("the fetch's requests decode") {
                    Request::Open { key, name } => {
                        assert_eq!(key, f.key);
                        assert_eq!(name, f.name);
                        assert!(!bulk, "OPEN goes on the ordinary lane");
                        Call::Open {
                            session: *session,
                            node: node.clone(),
                        }
                    }
                    Request::Block { key, offset, len } => {
                        assert_eq!(key, f.key);
                        assert!(*bulk, "blocks go on the bulk lane");
                        let block = (offset / f.layout.block as u64) as u32;
                        assert_eq!(offset, f.layout.offset(block));
                        assert_eq!(len, f.layout.len(block));
                        Call::Block {
                            session: *session,
                            node: node.clone(),
                            block,
                        }
                    }
                },
            ),
            _ => None,
        })
        .collect()
}

/// (session, block) of the block calls among `acts`.
fn block_calls(f: &Fetch, acts: &[Act]) -> Vec<(u64, u32)> {
    calls(f, acts)
        .into_iter()
        .map(|c| match c {
            Call::Block { session, block, .. } => (session, block),
            c => panic!("unexpected {c:?}"),
        })
        .collect()
}

fn failed(acts: &[Act]) -> Vec<(u64, c_int)> {
    acts.iter()
        .filter_map(|a| match a {
            Act::Failed { task, code, .. } => Some((*task, *code)),
            _ => None,
        })
        .collect()
}

fn done_tasks(acts: &[Act]) -> Vec<u64> {
    acts.iter()
        .filter_map(|a| match a {
            Act::Done { task, .. } => Some(*task),
            _ => None,
        })
        .collect()
}

fn count_verify(acts: &[Act]) -> usize {
    acts.iter().filter(|a| **a == Act::Verify).count()
}

fn no_progress(acts: Vec<Act>) -> Vec<Act> {
    acts.into_iter()
        .filter(|a| !matches!(a, Act::Progress { .. }))
        .collect()
}

// ----- window, writes, verification --------------------------------------------

#[test]
fn window_limits_block_calls_in_flight() {
    let mut t = T::new(10 * G as u64, 3);
    let now = t.t0;
    t.open(now, "a");
    let mut inflight: VecDeque<(u64, u32)> = t.pump_blocks(now).into();
    assert_eq!(
        inflight.iter().map(|c| c.1).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(t.pump_blocks(now).is_empty(), "window full");
    let mut requested = vec![0, 1, 2];
    let mut verifies = 0;
    let mut step = 0;
    while let Some((s, b)) = if step % 2 == 0 {
        inflight.pop_front()
    } else {
        inflight.pop_back()
    } {
        step += 1;
        let now = now + step * MS;
        verifies += count_verify(&t.serve(s, b, now));
        let acts = t.pump(now);
        verifies += count_verify(&acts);
        let new = block_calls(&t.f, &acts);
        assert!(new.len() <= 1, "one result frees one slot: {new:?}");
        requested.extend(new.iter().map(|c| c.1));
        inflight.extend(new);
        assert!(inflight.len() <= 3, "{inflight:?}");
        if requested.len() < 10 {
            assert_eq!(inflight.len(), 3, "the window stays full");
        }
    }
    assert_eq!(
        requested,
        (0..10).collect::<Vec<_>>(),
        "each block once, in order"
    );
    assert_eq!(verifies, 1);
    assert!(t.f.done.all());
}

#[test]
fn verify_exactly_once_after_the_last_write() {
    let size = 3 * G as u64 + 100;
    let mut t = T::new(size, 8);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert_eq!(c.len(), 4);
    // Every reply arrives before any write finishes.
    for &(s, b) in &c {
        let len = t.f.layout.len(b);
        let acts = t.result(s, XXNET_OK, &reply(b, len), now);
        assert!(matches!(acts[..], [Act::Write { block, .. }] if block == b));
    }
    assert_eq!(t.f.layout.len(3), 100);
    for b in [2, 0, 3] {
        assert_eq!(t.written(b, Ok(())), vec![]);
        assert_eq!(count_verify(&t.pump(now)), 0);
    }
    assert_eq!(t.written(1, Ok(())), vec![Act::Verify]);
    assert_eq!(t.f.done_bytes(), size);
    for i in 1..5 {
        let acts = t.pump(now + i * MS);
        assert_eq!(count_verify(&acts), 0, "{acts:?}");
        assert!(calls(&t.f, &acts).is_empty());
    }
    assert!(!t.f.finished());
    assert_eq!(
        t.verified(Ok(())),
        vec![Act::Done {
            task: 1,
            node: "a".into()
        }]
    );
    assert!(t.f.finished());
    assert_eq!(t.verified(Ok(())), vec![], "a second verdict is ignored");
    assert_eq!(t.pump(now + Duration::from_secs(100)), vec![]);
}

/// Runs `t` to the Verify act, answering every block at once.
fn run_to_verify(t: &mut T, now: Instant) {
    let mut verifies = 0;
    loop {
        let acts = t.pump(now);
        verifies += count_verify(&acts);
        let c = block_calls(&t.f, &acts);
        if c.is_empty() {
            break;
        }
        for (s, b) in c {
            verifies += count_verify(&t.serve(s, b, now));
        }
    }
    assert_eq!(verifies, 1);
}

#[test]
fn verified_ok_is_done_for_every_requester() {
    let mut t = T::new(5 * G as u64, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    t.join(3, "a", now + Duration::from_secs(60));
    t.open(now, "a");
    run_to_verify(&mut t, now);
    assert_eq!(
        t.verified(Ok(())),
        vec![
            Act::Done {
                task: 1,
                node: "a".into()
            },
            Act::Done {
                task: 2,
                node: "b".into()
            },
            Act::Done {
                task: 3,
                node: "a".into()
            },
        ]
    );
    assert!(t.f.finished());
}

#[test]
fn verified_checksum_discards_then_fails_everyone() {
    let size = 5 * G as u64;
    let mut t = T::new(size, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    t.open(now, "a");
    run_to_verify(&mut t, now);
    let acts = t.verified(Err(XXNET_E_CHECKSUM));
    assert_eq!(
        acts,
        vec![
            Act::Discard,
            Act::Failed {
                task: 1,
                code: XXNET_E_CHECKSUM,
                done: 0,
                node: "a".into()
            },
            Act::Failed {
                task: 2,
                code: XXNET_E_CHECKSUM,
                done: 0,
                node: "b".into()
            },
        ]
    );
    assert!(t.f.finished());
    assert_eq!(t.f.done.count(), 0, "the discarded blocks are not done");

    // Size mismatch discards too; a disk error keeps the data.
    let mut t = T::new(size, 2);
    t.open(now, "a");
    run_to_verify(&mut t, now);
    let acts = t.verified(Err(XXNET_E_SIZE_MISMATCH));
    assert_eq!(acts[0], Act::Discard);
    assert_eq!(failed(&acts), vec![(1, XXNET_E_SIZE_MISMATCH)]);
    let mut t = T::new(size, 2);
    t.open(now, "a");
    run_to_verify(&mut t, now);
    let acts = t.verified(Err(XXNET_E_DISK));
    assert_eq!(
        acts,
        vec![Act::Failed {
            task: 1,
            code: XXNET_E_DISK,
            done: size,
            node: "a".into()
        }]
    );
}

#[test]
fn a_failed_write_fails_everyone() {
    let mut t = T::new(4 * G as u64, 4);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(60));
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert!(t.serve(c[0].0, c[0].1, now).is_empty());
    let len = t.f.layout.len(c[1].1);
    t.result(c[1].0, XXNET_OK, &reply(c[1].1, len), now);
    let acts = t.written(c[1].1, Err(XXNET_E_DISK));
    assert_eq!(failed(&acts), vec![(1, XXNET_E_DISK), (2, XXNET_E_DISK)]);
    assert!(t.f.finished());
    assert!(!t.f.owns(c[2].0), "nothing in flight is wanted any more");
}

// ----- corrupt blocks -----------------------------------------------------------

#[test]
fn a_corrupt_block_is_requested_again() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert_eq!(c, vec![(101 + 1, 0), (101 + 2, 1)]);
    // Block 1 arrives with one data byte flipped, then with one CRC byte flipped.
    let acts = t.result(c[1].0, XXNET_OK, &corrupt_reply(1, G), now);
    assert_eq!(acts, vec![Act::Corrupt { block: 1 }]);
    assert!(!t.f.owns(c[1].0));
    let again = t.pump_blocks(now);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, 1, "the corrupt block is requested first");
    assert_ne!(again[0].0, c[1].0, "on a new session");
    let mut bad = reply(1, G).to_vec();
    bad[2] ^= 1;
    let acts = t.result(again[0].0, XXNET_OK, &Bytes::from(bad), now);
    assert_eq!(acts, vec![Act::Corrupt { block: 1 }]);
    // A body of the wrong length is corrupt too.
    let again = t.pump_blocks(now);
    assert_eq!(again.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1]);
    let short = reply(1, G).slice(1..);
    assert_eq!(
        t.result(again[0].0, XXNET_OK, &short, now),
        vec![Act::Corrupt { block: 1 }]
    );
    // The third request of block 1 (its fourth) finally arrives intact.
    let again = t.pump_blocks(now);
    assert_eq!(again.iter().map(|c| c.1).collect::<Vec<_>>(), vec![1]);
    assert!(t.serve(again[0].0, 1, now).is_empty());
    assert!(t.serve(c[0].0, 0, now).is_empty());
    run_to_verify(&mut t, now);
    assert_eq!(
        t.verified(Ok(())),
        vec![Act::Done {
            task: 1,
            node: "a".into()
        }]
    );
}

#[test]
fn max_tries_corrupt_replies_fail_with_checksum() {
    let mut t = T::new(3 * G as u64 + 10, 4);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(60));
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert_eq!(c.len(), 4);
    // Blocks 0 and 1 are fine.
    t.serve(c[0].0, 0, now);
    t.serve(c[1].0, 1, now);
    let mut session = c[3].0;
    let mut requests = 1;
    let mut corrupt = 0;
    loop {
        let acts = t.result(session, XXNET_OK, &corrupt_reply(3, 10), now);
        if acts == vec![Act::Corrupt { block: 3 }] {
            corrupt += 1;
            let again = t.pump_blocks(now);
            assert_eq!(again.iter().map(|c| c.1).collect::<Vec<_>>(), vec![3]);
            session = again[0].0;
            requests += 1;
            assert!(requests <= MAX_TRIES, "requested more than MAX_TRIES times");
            continue;
        }
        assert_eq!(
            acts,
            vec![
                Act::Failed {
                    task: 1,
                    code: XXNET_E_CHECKSUM,
                    done: 2 * G as u64,
                    node: "a".into()
                },
                Act::Failed {
                    task: 2,
                    code: XXNET_E_CHECKSUM,
                    done: 2 * G as u64,
                    node: "a".into()
                },
            ]
        );
        break;
    }
    assert_eq!(requests, MAX_TRIES, "MAX_TRIES requests of the block");
    assert_eq!(
        corrupt,
        MAX_TRIES - 1,
        "the last corrupt reply fails instead"
    );
    assert!(t.f.finished());
    assert!(!t.f.owns(c[2].0));
    assert_eq!(t.pump(now + Duration::from_secs(1)), vec![]);
}

// ----- requesters and deadlines -----------------------------------------------------

#[test]
fn a_joined_requester_gets_its_own_done() {
    let mut t = T::new(6 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    for (s, b) in c {
        t.serve(s, b, now);
    }
    // Task 2 joins half-way, for the same content on the same node.
    t.join(2, "a", now + Duration::from_secs(30));
    run_to_verify(&mut t, now + MS);
    let acts = t.verified(Ok(()));
    assert_eq!(done_tasks(&acts), vec![1, 2]);
    assert!(failed(&acts).is_empty());
}

#[test]
fn a_deadline_fails_only_its_requester() {
    let size = 4 * G as u64;
    let mut t = T::new(size, 1);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(1));
    t.join(3, "a", now + Duration::from_secs(5));
    t.open(now, "a");
    let c = t.pump_blocks(now);
    t.serve(c[0].0, 0, now);
    let c = t.pump_blocks(now);
    assert_eq!(c.len(), 1);
    // Just before task 2's deadline: nothing; at it: task 2 times out.
    let acts = t.pump(now + Duration::from_secs(1) - MS);
    assert!(failed(&acts).is_empty(), "{acts:?}");
    let acts = t.pump(now + Duration::from_secs(1));
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Act::Failed { .. }))
            .cloned()
            .collect::<Vec<_>>(),
        vec![Act::Failed {
            task: 2,
            code: XXNET_E_TIMEOUT,
            done: G as u64,
            node: "a".into()
        }]
    );
    assert!(!t.f.finished());
    assert!(t.f.owns(c[0].0), "the download goes on");
    // The others finish; only they are done.
    t.serve(c[0].0, c[0].1, now + Duration::from_secs(2));
    run_to_verify(&mut t, now + Duration::from_secs(2));
    assert_eq!(done_tasks(&t.verified(Ok(()))), vec![1, 3]);
}

#[test]
fn deadlines_while_downloading_report_timeout_and_the_last_one_finishes() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    let acts = t.pump(now + Duration::from_secs(60));
    assert_eq!(failed(&acts), vec![(1, XXNET_E_TIMEOUT)]);
    assert!(t.f.finished());
    assert!(calls(&t.f, &acts).is_empty());
    assert_eq!(t.pump(now + Duration::from_secs(61)), vec![]);
    assert_eq!(t.f.next_wakeup(now, &t.bucket), None);
    let _ = c;
}

#[test]
fn deadline_while_the_source_is_down_reports_node_down() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(2));
    let mut opens = 0;
    let mut at = now;
    let mut failures = Vec::new();
    // Every call is answered NODE_DOWN; the fetch retries every RETRY.
    while failures.len() < 2 && at < now + Duration::from_secs(120) {
        let acts = t.pump(at);
        failures.extend(failed(&acts).into_iter().map(|f| (f, at)));
        for c in calls(&t.f, &acts) {
            assert!(matches!(c, Call::Open { .. }), "{c:?}");
            opens += 1;
            let acts = t.result(c.session(), XXNET_E_NODE_DOWN, &Bytes::new(), at);
            assert!(acts.is_empty(), "{acts:?}");
            assert_eq!(t.f.retry_at(), Some(at + RETRY));
        }
        at += 100 * MS;
    }
    assert_eq!(
        failures,
        vec![
            ((2, XXNET_E_NODE_DOWN), now + Duration::from_secs(2)),
            ((1, XXNET_E_NODE_DOWN), now + Duration::from_secs(60)),
        ]
    );
    assert_eq!(opens, 120, "one OPEN every RETRY (500 ms) over 60 s");
    assert!(t.f.finished());
}

#[test]
fn deadline_after_blocks_fail_with_node_down_reports_node_down() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    t.result(c[0].0, XXNET_E_NODE_DOWN, &Bytes::new(), now);
    assert!(!t.f.owns(c[1].0), "the rest in flight is abandoned");
    assert_eq!(t.f.retry_at(), Some(now + RETRY));
    let wake = t.f.next_wakeup(now, &t.bucket).unwrap();
    assert_eq!(wake, now + RETRY);
    let acts = t.pump(now + Duration::from_secs(60));
    assert_eq!(failed(&acts), vec![(1, XXNET_E_NODE_DOWN)]);
}

#[test]
fn removed_and_unknown_nodes_report_node_removed() {
    for code in [XXNET_E_NODE_REMOVED, XXNET_E_UNKNOWN_NODE] {
        let mut t = T::new(4 * G as u64, 2);
        let now = t.t0;
        let c = t.pump_calls(now);
        t.result(c[0].session(), code, &Bytes::new(), now);
        let acts = t.pump(now + Duration::from_secs(60));
        assert_eq!(failed(&acts), vec![(1, XXNET_E_NODE_REMOVED)], "{code}");
    }
}

#[test]
fn after_a_node_down_pause_only_unwritten_blocks_are_requested_again() {
    let n = 12;
    let mut t = T::new(n as u64 * G as u64 - 7, 4);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert_eq!(c.iter().map(|c| c.1).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    let mut requested: BTreeMap<u32, usize> = BTreeMap::new();
    for &(_, b) in &c {
        *requested.entry(b).or_default() += 1;
    }
    // 0 written; 2 arrives but its write is still pending; 1 fails NODE_DOWN.
    t.serve(c[0].0, 0, now);
    let acts = t.result(c[2].0, XXNET_OK, &reply(2, G), now);
    assert!(matches!(acts[..], [Act::Write { block: 2, .. }]));
    let acts = t.result(c[1].0, XXNET_E_NODE_DOWN, &Bytes::new(), now);
    assert!(acts.is_empty(), "{acts:?}");
    assert_eq!(t.f.retry_at(), Some(now + RETRY));
    // Block 3's reply arrives late: it is not wanted any more.
    assert!(!t.f.owns(c[3].0));
    assert!(t.result(c[3].0, XXNET_OK, &reply(3, G), now).is_empty());
    // The pending write completes during the pause.
    assert!(t.written(2, Ok(())).is_empty());
    // Nothing before RETRY.
    for ms in [1, 100, 499] {
        let acts = no_progress(t.pump(now + ms * MS));
        assert!(acts.is_empty(), "{acts:?}");
    }
    // At RETRY: a new OPEN, then exactly the blocks not written.
    let later = now + RETRY;
    t.open(later, "a");
    let mut inflight: VecDeque<(u64, u32)> = t.pump_blocks(later).into();
    // (Block 1 failed, 3 was abandoned: both first, in either order.)
    let mut first: Vec<u32> = inflight.iter().map(|c| c.1).collect();
    first[..2].sort_unstable();
    assert_eq!(first, vec![1, 3, 4, 5]);
    let mut verifies = 0;
    while let Some((s, b)) = inflight.pop_front() {
        *requested.entry(b).or_default() += 1;
        verifies += count_verify(&t.serve(s, b, later));
        let acts = t.pump(later);
        verifies += count_verify(&acts);
        inflight.extend(block_calls(&t.f, &acts));
    }
    assert_eq!(verifies, 1);
    assert!(t.f.done.all());
    let expected: BTreeMap<u32, usize> = (0..n)
        .map(|b| (b, if [1, 3].contains(&b) { 2 } else { 1 }))
        .collect();
    assert_eq!(
        requested, expected,
        "blocks written before the pause (0, 2) are never requested again; \
         the failed and abandoned ones (1, 3) once more"
    );
}

// ----- sources --------------------------------------------------------------------

#[test]
fn a_content_error_moves_to_the_second_source() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    let c = t.pump_calls(now);
    assert_eq!(
        c,
        vec![Call::Open {
            session: 101,
            node: "a".into()
        }]
    );
    assert!(t
        .result(101, XXNET_E_NO_CONTENT, &Bytes::new(), now)
        .is_empty());
    assert_eq!(t.f.retry_at(), None, "no pause for a content error");
    t.open(now, "b");
    let c = t.pump_calls(now);
    assert_eq!(c.len(), 2);
    for c in &c {
        let Call::Block {
            session,
            node,
            block,
        } = c
        else {
            panic!("{c:?}");
        };
        assert_eq!(node, "b");
        t.serve(*session, *block, now);
    }
    run_to_verify(&mut t, now);
    assert_eq!(done_tasks(&t.verified(Ok(()))), vec![1, 2]);
}

#[test]
fn a_content_error_mid_download_moves_on_and_keeps_written_blocks() {
    let mut t = T::new(6 * G as u64, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    t.open(now, "a");
    let c = t.pump_blocks(now);
    t.serve(c[0].0, 0, now);
    assert!(t
        .result(c[1].0, XXNET_E_NO_CONTENT, &Bytes::new(), now)
        .is_empty());
    t.open(now, "b");
    let c = t.pump_calls(now);
    let blocks: Vec<u32> = c
        .iter()
        .map(|c| match c {
            Call::Block { node, block, .. } if node == "b" => *block,
            c => panic!("{c:?}"),
        })
        .collect();
    assert_eq!(blocks, vec![1, 2]);
    // "a" is never asked again, even after "b" goes down and the pause ends.
    t.result(c[0].session(), XXNET_E_NODE_DOWN, &Bytes::new(), now);
    assert_eq!(t.f.retry_at(), Some(now + RETRY));
    t.open(now + RETRY, "b");
}

#[test]
fn a_content_error_with_one_source_fails_everyone() {
    for code in [XXNET_E_NO_CONTENT, XXNET_E_BAD_PATH, XXNET_E_SIZE_MISMATCH] {
        let mut t = T::new(4 * G as u64, 2);
        let now = t.t0;
        t.join(2, "a", now + Duration::from_secs(60));
        let c = t.pump_calls(now);
        let acts = t.result(c[0].session(), code, &Bytes::new(), now);
        assert_eq!(
            acts,
            vec![
                Act::Failed {
                    task: 1,
                    code,
                    done: 0,
                    node: "a".into()
                },
                Act::Failed {
                    task: 2,
                    code,
                    done: 0,
                    node: "a".into()
                },
            ]
        );
        assert!(t.f.finished());
    }
    // Both sources refuse: everyone fails once the second refuses.
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    let c = t.pump_calls(now);
    assert!(t
        .result(c[0].session(), XXNET_E_NO_CONTENT, &Bytes::new(), now)
        .is_empty());
    let c = t.pump_calls(now);
    assert_eq!(
        c,
        vec![Call::Open {
            session: 102,
            node: "b".into()
        }]
    );
    let acts = t.result(102, XXNET_E_NO_CONTENT, &Bytes::new(), now);
    assert_eq!(
        failed(&acts),
        vec![(1, XXNET_E_NO_CONTENT), (2, XXNET_E_NO_CONTENT)]
    );
}

#[test]
fn no_service_counts_as_no_content() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    let c = t.pump_calls(now);
    let acts = t.result(c[0].session(), XXNET_E_NO_SERVICE, &Bytes::new(), now);
    assert_eq!(failed(&acts), vec![(1, XXNET_E_NO_CONTENT)]);

    // With a second source it moves on, as for NO_CONTENT.
    let mut t = T::new(4 * G as u64, 2);
    t.join(2, "b", now + Duration::from_secs(60));
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert!(t
        .result(c[0].0, XXNET_E_NO_SERVICE, &Bytes::new(), now)
        .is_empty());
    t.open(now, "b");
}

#[test]
fn a_node_error_tries_the_next_source_before_pausing() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "b", now + Duration::from_secs(60));
    let c = t.pump_calls(now);
    t.result(c[0].session(), XXNET_E_NODE_DOWN, &Bytes::new(), now);
    assert_eq!(t.f.retry_at(), None);
    let c = t.pump_calls(now);
    assert_eq!(
        c,
        vec![Call::Open {
            session: 102,
            node: "b".into()
        }]
    );
    t.result(102, XXNET_E_NODE_UNREACHABLE, &Bytes::new(), now);
    assert_eq!(t.f.retry_at(), Some(now + RETRY));
    // After the pause, the first source again.
    assert!(t.pump_calls(now + RETRY - MS).is_empty());
    let c = t.pump_calls(now + RETRY);
    assert_eq!(
        c,
        vec![Call::Open {
            session: 103,
            node: "a".into()
        }]
    );
    // The last trouble is what a deadline reports.
    t.result(103, XXNET_E_NODE_UNREACHABLE, &Bytes::new(), now + RETRY);
    let c = t.pump_calls(now + RETRY);
    t.result(
        c[0].session(),
        XXNET_E_NODE_UNREACHABLE,
        &Bytes::new(),
        now + RETRY,
    );
    let acts = t.pump(now + Duration::from_secs(60));
    assert_eq!(
        failed(&acts),
        vec![(1, XXNET_E_NODE_UNREACHABLE), (2, XXNET_E_NODE_UNREACHABLE)]
    );
}

// ----- progress -------------------------------------------------------------------

#[test]
fn progress_is_throttled_per_requester_and_only_reports_changes() {
    let n = 40;
    let size = n as u64 * G as u64;
    let mut t = T::new(size, 1);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(60));
    t.open(now, "a");
    // task -> [(time, done)]
    let mut seen: BTreeMap<u64, Vec<(Instant, u64)>> = BTreeMap::new();
    let mut record = |acts: &[Act], at: Instant| {
        for a in acts {
            if let Act::Progress {
                task,
                done,
                total,
                node,
            } = a
            {
                assert_eq!(*total, size);
                assert_eq!(node, "a");
                seen.entry(*task).or_default().push((at, *done));
            }
        }
    };
    let mut at = now;
    let mut inflight = Vec::new();
    // One block every 30 ms, pumped every 10 ms.
    for step in 0..(n as u32 * 3 + 100) {
        at = now + step * 10 * MS;
        if step % 3 == 0 {
            if let Some((s, b)) = inflight.pop() {
                let acts = t.serve(s, b, at);
                record(&acts, at);
            }
        }
        let acts = t.pump(at);
        record(&acts, at);
        inflight.extend(block_calls(&t.f, &acts));
    }
    assert!(t.f.done.all());
    assert_eq!(seen.len(), 2, "both requesters get progress");
    for (task, events) in &seen {
        assert!(events.len() >= 4, "task {task}: {events:?}");
        // At most one per PROGRESS_EVERY (n blocks over 1.2 s at 250 ms: about 5).
        assert!(events.len() <= 7, "task {task}: {events:?}");
        for w in events.windows(2) {
            assert!(w[1].0 - w[0].0 >= PROGRESS_EVERY, "task {task}: {w:?}");
            assert!(w[1].1 > w[0].1, "only changes are reported: {w:?}");
        }
        assert!(events.iter().all(|e| e.1 <= size));
    }
    assert_eq!(seen[&1], seen[&2]);
    // The last report carries the whole size (the run pumped a second past
    // the last block); after it, no change and no progress however long we pump.
    assert_eq!(seen[&1].last().unwrap().1, size);
    for i in 1..50 {
        let acts = t.pump(at + i * 100 * MS);
        assert!(
            !acts.iter().any(|a| matches!(a, Act::Progress { .. })),
            "{acts:?}"
        );
    }
}

#[test]
fn no_progress_without_change() {
    let mut t = T::new(8 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let first = t.pump(now);
    let p: Vec<&Act> = first
        .iter()
        .filter(|a| matches!(a, Act::Progress { .. }))
        .collect();
    assert!(p.len() <= 1, "{p:?}");
    let c = block_calls(&t.f, &first);
    // Nothing arrives: pumping for seconds gives no further progress.
    for i in 1..100 {
        let acts = t.pump(now + i * 50 * MS);
        assert!(
            !acts.iter().any(|a| matches!(a, Act::Progress { .. })),
            "{i}: {acts:?}"
        );
    }
    // A block arrives: one progress with its bytes at the next pump.
    let at = now + Duration::from_secs(5);
    t.serve(c[0].0, c[0].1, at);
    let acts = t.pump(at);
    let p: Vec<&Act> = acts
        .iter()
        .filter(|a| matches!(a, Act::Progress { .. }))
        .collect();
    assert_eq!(
        p,
        vec![&Act::Progress {
            task: 1,
            done: G as u64,
            total: 8 * G as u64,
            node: "a".into()
        }]
    );
    // next_wakeup asks for a pump when a throttled change is pending.
    t.serve(c[1].0, c[1].1, at);
    let w = t.f.next_wakeup(at, &t.bucket).unwrap();
    assert!(w <= at + PROGRESS_EVERY, "{w:?}");
    assert!(!t
        .pump(at + PROGRESS_EVERY - MS)
        .iter()
        .any(|a| matches!(a, Act::Progress { .. })));
    assert!(t
        .pump(at + PROGRESS_EVERY)
        .iter()
        .any(|a| matches!(a, Act::Progress { done, .. } if *done == 2 * G as u64)));
}

// ----- rate limit -------------------------------------------------------------------

#[test]
fn the_bucket_limits_block_requests_to_the_rate() {
    let rate = 16 * G as u64; // 1 MiB/s in 64 KiB blocks
    let mut t = T::new(200 * G as u64, 64);
    t.bucket = Bucket::new(rate);
    let now = t.t0;
    t.open(now, "a");
    let mut issued: Vec<(Instant, u64)> = Vec::new();
    // Pumped only when the fetch asks to be (as the worker does).
    let mut at = now;
    let (mut pumps, mut idle) = (0, 0);
    while at <= now + Duration::from_secs(3) {
        let acts = t.pump(at);
        pumps += 1;
        let c = block_calls(&t.f, &acts);
        if acts.is_empty() {
            idle += 1;
        }
        for (s, b) in c {
            issued.push((at, t.f.layout.len(b) as u64));
            t.serve(s, b, at);
        }
        let w = t.f.next_wakeup(at, &t.bucket).expect("more to do");
        at = w.max(at);
        assert!(pumps < 10_000, "pumped in a loop at {:?}", at - now);
    }
    assert!(idle <= 2, "{idle} of {pumps} wake-ups found nothing to do");
    // Over any one-second window, no more than about `rate` bytes.
    for (i, &(start, _)) in issued.iter().enumerate() {
        let in_window: u64 = issued[i..]
            .iter()
            .take_while(|(t, _)| *t < start + Duration::from_secs(1))
            .map(|(_, n)| n)
            .sum();
        assert!(
            in_window <= rate + rate / 4,
            "{in_window} bytes within a second from {:?}",
            start - now
        );
    }
    let first_second: u64 = issued
        .iter()
        .filter(|(t, _)| *t < now + Duration::from_secs(1))
        .map(|(_, n)| n)
        .sum();
    assert!(first_second <= rate, "{first_second}");
    let total: u64 = issued.iter().map(|(_, n)| n).sum();
    assert!(
        total >= 3 * rate - 2 * G as u64 && total <= 3 * rate + rate / 4,
        "{total} bytes in 3 s at {rate}/s"
    );
}

#[test]
fn fetches_sharing_a_bucket_share_the_rate() {
    let rate = 8 * G as u64;
    let mut bucket = Bucket::new(rate);
    let mut a = T::new(100 * G as u64, 16);
    let mut b = T::new(100 * G as u64, 16);
    b.t0 = a.t0;
    let now = a.t0;
    a.open(now, "a");
    b.open(now, "a");
    let mut total = 0u64;
    let mut at = now;
    while at < now + Duration::from_secs(2) {
        for t in [&mut a, &mut b] {
            std::mem::swap(&mut t.bucket, &mut bucket);
            let acts = t.pump(at);
            std::mem::swap(&mut t.bucket, &mut bucket);
            for (s, blk) in block_calls(&t.f, &acts) {
                total += t.f.layout.len(blk) as u64;
                t.serve(s, blk, at);
            }
        }
        at += 10 * MS;
    }
    assert!(total <= 2 * rate, "{total}");
    assert!(total >= 2 * rate - 2 * G as u64, "{total}");
}

#[test]
fn bucket_basics() {
    let t0 = Instant::now();
    let mut b = Bucket::new(0);
    assert!(b.take(u64::MAX, t0));
    assert_eq!(b.ready_at(1, t0), None);

    let mut b = Bucket::new(1000);
    assert!(!b.take(100, t0), "starts empty");
    let ready = b.ready_at(100, t0).unwrap();
    let ms100 = t0 + Duration::from_millis(100);
    assert!(
        ready >= ms100 && ready <= ms100 + Duration::from_micros(1),
        "{:?}",
        ready - t0
    );
    assert!(!b.take(100, t0 + Duration::from_millis(99)));
    assert!(b.take(100, ready));
    assert!(!b.take(1, ready));
    // Idle time fills at most a quarter second's worth (or one request).
    let later = t0 + Duration::from_secs(10);
    assert!(b.take(250, later));
    assert!(!b.take(1, later));
    // A request larger than the burst is served once enough time passed.
    let mut b = Bucket::new(1000);
    assert!(!b.take(600, t0));
    assert!(!b.take(600, t0 + Duration::from_millis(599)));
    assert!(b.take(600, t0 + Duration::from_millis(600)));
}

// ----- resume and geometry ---------------------------------------------------------

#[test]
fn a_resumed_fetch_never_requests_done_blocks() {
    let n = 10;
    let size = n as u64 * G as u64 - 1000;
    let mut done = Blocks::new(n);
    for b in [0, 2, 3, 7, 9] {
        done.set(b);
    }
    let mut t = T::resumed(size, done, 3);
    assert_eq!(t.f.done_bytes(), 5 * G as u64 - 1000);
    let now = t.t0;
    t.open(now, "a");
    let mut requested = Vec::new();
    let mut verifies = 0;
    loop {
        let acts = t.pump(now);
        verifies += count_verify(&acts);
        let c = block_calls(&t.f, &acts);
        if c.is_empty() {
            break;
        }
        for (s, b) in c {
            requested.push(b);
            verifies += count_verify(&t.serve(s, b, now));
        }
    }
    assert_eq!(requested, vec![1, 4, 5, 6, 8]);
    assert_eq!(verifies, 1);
    assert_eq!(t.f.done_bytes(), size);
}

#[test]
fn a_fully_cached_fetch_verifies_after_open() {
    let mut done = Blocks::new(3);
    (0..3).for_each(|b| done.set(b));
    let mut t = T::resumed(3 * G as u64, done, 4);
    let now = t.t0;
    t.open(now, "a");
    let acts = t.pump(now);
    assert!(calls(&t.f, &acts).is_empty());
    assert_eq!(count_verify(&acts), 1);
}

#[test]
fn a_zero_size_file_has_no_blocks_and_verifies_right_after_open() {
    let t0 = Instant::now();
    let l = Layout { size: 0, block: G };
    assert_eq!(l.blocks(), 0);
    let mut t = T::new(0, 4);
    assert_eq!(t.f.done.len(), 0);
    assert!(t.f.done.all());
    assert_eq!(t.f.done_bytes(), 0);
    t.open(t0, "a");
    let acts = t.pump(t0);
    assert!(calls(&t.f, &acts).is_empty(), "{acts:?}");
    assert_eq!(count_verify(&acts), 1, "{acts:?}");
    assert_eq!(count_verify(&t.pump(t0 + MS)), 0);
    assert_eq!(done_tasks(&t.verified(Ok(()))), vec![1]);
}

#[test]
fn layout_and_blocks_helpers() {
    let g = G as u64;
    let l = Layout {
        size: 5 * g + 100,
        block: 2 * G,
    };
    assert_eq!(l.blocks(), 3);
    assert_eq!(
        (0..3).map(|i| (l.offset(i), l.len(i))).collect::<Vec<_>>(),
        vec![(0, 2 * G), (2 * g, 2 * G), (4 * g, G + 100)]
    );
    let mut d = Blocks::new(3);
    assert_eq!(l.bytes(&d), 0);
    d.set(2);
    assert_eq!(
        l.bytes(&d),
        g + 100,
        "a short last block counts its own length"
    );
    d.set(0);
    assert_eq!(l.bytes(&d), 3 * g + 100);
    d.set(1);
    assert_eq!(l.bytes(&d), l.size);
    assert!(d.all());

    let exact = Layout {
        size: 4 * g,
        block: G,
    };
    assert_eq!(exact.blocks(), 4);
    assert_eq!(exact.len(3), G);
    let tiny = Layout { size: 1, block: G };
    assert_eq!((tiny.blocks(), tiny.len(0)), (1, 1));
    let mut d = Blocks::new(1);
    d.set(0);
    assert_eq!(tiny.bytes(&d), 1);

    let mut b = Blocks::new(130);
    assert_eq!(
        (b.len(), b.count(), b.is_empty(), b.all()),
        (130, 0, false, false)
    );
    assert!(b.ranges().is_empty());
    for i in [0, 1, 2, 63, 64, 65, 100, 129] {
        b.set(i);
    }
    b.set(1); // twice: counted once
    b.set(130); // out of range: ignored
    b.set(u32::MAX);
    assert_eq!(b.count(), 8);
    assert!(!b.get(130) && !b.get(u32::MAX) && !b.get(3));
    assert_eq!(b.ranges(), vec![(0, 3), (63, 66), (100, 101), (129, 130)]);
    for i in 0..130 {
        b.set(i);
    }
    assert!(b.all());
    assert_eq!(b.ranges(), vec![(0, 130)]);
    let e = Blocks::new(0);
    assert!(e.is_empty() && e.all());
    assert_eq!(e.ranges(), vec![]);
    assert_eq!(Blocks::new(64).bits.len(), 1);
    assert_eq!(Blocks::new(65).bits.len(), 2);
}

#[test]
fn stale_and_unknown_results_are_ignored() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    assert!(t.result(9999, XXNET_OK, &reply(0, G), now).is_empty());
    assert!(!t.f.owns(101), "the answered OPEN is not owned any more");
    assert!(t.result(101, XXNET_OK, &Bytes::new(), now).is_empty());
    // A result answered twice: the second is ignored.
    t.serve(c[0].0, c[0].1, now);
    assert!(t.result(c[0].0, XXNET_OK, &reply(0, G), now).is_empty());
    assert_eq!(t.f.done.count(), 1);
}

#[test]
fn leaving_ends_the_fetch_when_nobody_waits() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(60));
    t.open(now, "a");
    let _ = t.pump(now);
    assert!(t.f.leave(1));
    assert!(!t.f.leave(1));
    assert!(!t.f.finished());
    assert!(t.f.leave(2));
    assert!(t.f.finished());
    assert_eq!(t.pump(now + MS), vec![]);
    assert_eq!(t.f.next_wakeup(now, &t.bucket), None);
}

#[test]
fn deadline_while_the_worker_says_the_source_is_down_reports_node_down() {
    // Downloading, no call failed yet, but the source has no connection.
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.join(2, "a", now + Duration::from_secs(1));
    t.open(now, "a");
    let _ = t.pump_blocks(now);
    t.f.set_source_down(true);
    assert_eq!(t.f.current_source(), Some("a"));
    let acts = t.pump(now + Duration::from_secs(1));
    assert_eq!(failed(&acts), vec![(2, XXNET_E_NODE_DOWN)]);
    // The connection is back: a later deadline is a plain timeout.
    t.f.set_source_down(false);
    let acts = t.pump(now + Duration::from_secs(60));
    assert_eq!(failed(&acts), vec![(1, XXNET_E_TIMEOUT)]);
}

// ----- known bugs (see the report of the fetch tests; un-ignore with the fix) --------

/// `Bucket::ready_at` rounds the wait down to whole nanoseconds, so at the
/// instant it names the bucket is a hair short and `take` fails; the next
/// `ready_at` is then `now` again. A driver that pumps at the wake-ups it is
/// given (a simulation, or the worker when the clock has not moved) spins
/// without issuing anything. Fix: round up (and add a nanosecond).
#[test]
fn bucket_wakeups_always_make_progress() {
    let t0 = Instant::now();
    for rate in [7, 333_333, 1_000_003, 1 << 20, 123_456_789] {
        for n in [1, 100, G as u64 - 3, G as u64, 4 << 20] {
            let mut b = Bucket::new(rate);
            let mut at = t0;
            let mut idle = 0;
            for _ in 0..200 {
                if !b.take(n, at) {
                    idle += 1;
                }
                at = b.ready_at(n, at).unwrap().max(at);
            }
            assert!(
                idle <= 1,
                "rate {rate}, {n}-byte takes: {idle} of 200 wake-ups idle"
            );
        }
    }
}

/// Once the last requester timed out (or left) the fetch is finished, but
/// its block calls still in flight are still "owned": a good reply makes a
/// Write, and a node error revives it (phase Paused), after which `pump`
/// sends an OPEN for nobody. The worker drops finished fetches at once, so
/// it does not get there today; the state machine should refuse it anyway.
#[test]
fn a_finished_fetch_stays_finished() {
    let mut t = T::new(4 * G as u64, 2);
    let now = t.t0;
    t.open(now, "a");
    let c = t.pump_blocks(now);
    let acts = t.pump(now + Duration::from_secs(60));
    assert_eq!(failed(&acts), vec![(1, XXNET_E_TIMEOUT)]);
    assert!(t.f.finished());
    assert!(!t.f.owns(c[0].0));
    assert!(t.result(c[0].0, XXNET_OK, &reply(0, G), now).is_empty());
    assert!(t
        .result(c[1].0, XXNET_E_NODE_DOWN, &Bytes::new(), now)
        .is_empty());
    assert!(t.f.finished());
    assert!(t.pump_calls(now + Duration::from_secs(61)).is_empty());
}
