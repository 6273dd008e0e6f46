//! Remote calls on the host's side: the node directory, call sessions,
//! reply tokens and services (docs/RPC.md).
//!
//! The reactor's endpoint owns what depends on the network (pending-call
//! deadlines, node-down detection, unknown services answered at once). The
//! host keeps what it must answer synchronously: which names exist, which
//! calls are still open (so each resolves exactly once, also at shutdown),
//! and which reply tokens are valid.

use super::{Context, HostState};
use crate::bridge::{Command, Dest, Event, Outgoing};
use crate::cluster::directory::{parse_addr, valid_name, Directory};
use crate::codes::*;
use crate::proto::endpoint::CALL_BIT;
use crate::proto::rpc;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::os::raw::c_int;

/// Options of a call or cast.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallOpts {
    /// Lane 0..XXNET_LANES-1 (0: default). The reply travels on the same lane.
    pub lane: u8,
    /// Deadline in ms (0: the config's call_timeout_ms). Ignored by casts.
    pub timeout_ms: u32,
}

/// A request the host may still answer.
#[derive(Clone, Copy, Debug)]
struct Token {
    conn: u64,
    session: u64,
    lane: u8,
}

/// Host-side remote-call state.
#[derive(Debug, Default)]
pub(super) struct RpcState {
    pub(super) dir: Directory,
    /// NUL-terminated names of directory nodes (handed out in events without copying).
    names: HashMap<String, Bytes>,
    /// Open calls: session → the called node's name.
    calls: HashMap<u64, Bytes>,
    next_call: u64,
    tokens: HashMap<u64, Token>,
    next_token: u64,
    services: HashSet<String>,
    /// Automatic answers to send after a poll (requests for a service
    /// unregistered while they travelled).
    pub(super) outbox: Vec<Outgoing>,
}

impl RpcState {
    /// Bookkeeping of a CALL_REQUEST or CALL_RESULT event before the host sees it.
    pub(super) fn admit(&mut self, ev: &mut Event) -> bool {
        match ev.kind {
            XXNET_EVENT_CALL_REQUEST if !self.serves(&ev.service) => {
                // Unregistered after the reactor let it through: answer as the
                // reactor would have, so the caller is not left to time out.
                let answer = if ev.id != 0 {
                    rpc::reply(ev.id, XXNET_E_NO_SERVICE)
                } else {
                    rpc::reject(XXNET_E_NO_SERVICE, ev.data.len() as u32, &ev.service)
                };
                self.outbox.push(Outgoing {
                    dest: Dest::Conn(ev.conn),
                    lane: ev.lane,
                    msg_id: 0,
                    data: answer,
                    track: 0,
                    acct: 0,
                    ack_timeout_ms: 0,
                    flags: rpc::FLAG,
                });
                false
            }
            XXNET_EVENT_CALL_REQUEST if ev.id != 0 => {
                self.next_token += 1;
                let token = self.next_token;
                self.tokens.insert(
                    token,
                    Token {
                        conn: ev.conn,
                        session: ev.id,
                        lane: ev.lane,
                    },
                );
                ev.id = token;
                true
            }
            XXNET_EVENT_CALL_RESULT => match self.calls.remove(&ev.id) {
                Some(node) => {
                    ev.node = node;
                    true
                }
                // Already resolved (at shutdown): exactly one result per call.
                None => false,
            },
            _ => true,
        }
    }

    fn serves(&self, service: &[u8]) -> bool {
        self.services.contains(rpc::name_text(service))
    }

    /// A session ended: its requests can no longer be answered.
    pub(super) fn conn_gone(&mut self, conn: u64) {
        if !self.tokens.is_empty() {
            self.tokens.retain(|_, t| t.conn != conn);
        }
    }

    /// Queues a CALL_RESULT with `code` for every open call (oldest first).
    /// Results already queued come first, so they win.
    pub(super) fn resolve_all(&mut self, code: c_int, out: &mut VecDeque<Event>) {
        let mut open: Vec<u64> = self.calls.keys().copied().collect();
        open.sort_unstable();
        for id in open {
            out.push_back(Event {
                kind: XXNET_EVENT_CALL_RESULT,
                code,
                id,
                ..Event::default()
            });
        }
    }

    pub(super) fn name_bytes(&mut self, name: &str) -> Bytes {
        if let Some(b) = self.names.get(name) {
            return b.clone();
        }
        let mut v = Vec::with_capacity(name.len() + 1);
        v.extend_from_slice(name.as_bytes());
        v.push(0);
        let b = Bytes::from(v);
        self.names.insert(name.to_string(), b.clone());
        b
    }
}

/// Builds an RPC message: the envelope header, then the host's payload.
fn framed(st: &mut HostState, head: &[u8], data: &[u8]) -> Bytes {
    if head.len() + data.len() <= super::ARENA_MAX_COPY {
        if st.arena.capacity() - st.arena.len() < head.len() + data.len() {
            st.arena = BytesMut::with_capacity(super::ARENA_CHUNK);
        }
        st.arena.extend_from_slice(head);
        st.arena.extend_from_slice(data);
        return st.arena.split().freeze();
    }
    let mut b = BytesMut::with_capacity(head.len() + data.len());
    b.extend_from_slice(head);
    b.extend_from_slice(data);
    b.freeze()
}

fn lane_of(opts: &CallOpts) -> Result<u8, c_int> {
    if opts.lane as u32 >= XXNET_LANES {
        return Err(XXNET_E_INVALID_ARG);
    }
    Ok(opts.lane)
}

impl Context {
    /// Sends a request to `service` on `node`; returns the call's session.
    /// Exactly one CALL_RESULT event with that session follows.
    pub fn call(
        &self,
        node: &str,
        service: &str,
        data: &[u8],
        opts: CallOpts,
    ) -> Result<u64, c_int> {
        self.request(node, service, data, opts, true)
    }

    /// Sends a request that wants no reply (the seed's remoteSend). Its loss
    /// is reported like any send's (SEND_FAILED), including a missing service.
    pub fn cast(
        &self,
        node: &str,
        service: &str,
        data: &[u8],
        opts: CallOpts,
    ) -> Result<(), c_int> {
        self.request(node, service, data, opts, false).map(|_| ())
    }

    /// A call (`want_reply`: returns its session) or a cast (returns 0).
    fn request(
        &self,
        node: &str,
        service: &str,
        data: &[u8],
        opts: CallOpts,
        want_reply: bool,
    ) -> Result<u64, c_int> {
        let lane = lane_of(&opts)?;
        if !rpc::valid_service(service) {
            return Err(XXNET_E_INVALID_ARG);
        }
        let head_for = |session: u64| {
            let mut head = BytesMut::with_capacity(rpc::MAX_HEADER);
            if want_reply {
                rpc::put_call(&mut head, session, service);
            } else {
                rpc::put_cast(&mut head, service);
            }
            head
        };
        let len = head_for(0).len() + data.len();
        if len > self.max_message {
            return Err(XXNET_E_TOO_LARGE);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        let addr = st.rpc.dir.get(node).ok_or(XXNET_E_UNKNOWN_NODE)?;
        let dest = Dest::Addr(addr);
        let acct = self.charge(&mut st, dest, len as u64, false)?;
        let session = if want_reply {
            st.rpc.next_call += 1;
            let session = st.rpc.next_call;
            let name = st.rpc.name_bytes(node);
            st.rpc.calls.insert(session, name);
            session
        } else {
            0
        };
        let payload = framed(&mut st, &head_for(session), data);
        drop(st);
        let sent = self.submit(Command::Send(Outgoing {
            dest,
            lane,
            msg_id: 0,
            data: payload,
            track: if want_reply { session | CALL_BIT } else { 0 },
            acct,
            ack_timeout_ms: if want_reply { opts.timeout_ms } else { 0 },
            flags: rpc::FLAG,
        }));
        if let Err(e) = sent {
            self.state().rpc.calls.remove(&session);
            return Err(e);
        }
        Ok(session)
    }

    /// Answers the request behind `token` with `code` (XXNET_OK or a positive
    /// code of the host's own) and `data`. A token is answered once.
    pub fn reply(&self, token: u64, code: c_int, data: &[u8]) -> Result<(), c_int> {
        if code < 0 {
            return Err(XXNET_E_INVALID_ARG);
        }
        let mut head = BytesMut::with_capacity(16);
        rpc::put_reply(&mut head, 0, code);
        // Too large: the token stays valid, so the host can answer with an error code.
        if head.len() + data.len() > self.max_message {
            return Err(XXNET_E_TOO_LARGE);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        let t = *st.rpc.tokens.get(&token).ok_or(XXNET_E_UNKNOWN_TOKEN)?;
        st.rpc.tokens.remove(&token);
        if !st.live_conns.contains(&t.conn) {
            return Err(XXNET_E_UNKNOWN_CONN);
        }
        let dest = Dest::Conn(t.conn);
        let acct = self.charge(&mut st, dest, (head.len() + data.len()) as u64, true)?;
        head.clear();
        rpc::put_reply(&mut head, t.session, code);
        let payload = framed(&mut st, &head, data);
        drop(st);
        self.submit(Command::Send(Outgoing {
            dest,
            lane: t.lane,
            msg_id: 0,
            data: payload,
            track: 0,
            acct,
            ack_timeout_ms: 0,
            flags: rpc::FLAG,
        }))
    }

    /// Starts (`serve`) or stops serving `name`. Requests for a service not
    /// served are answered at once with XXNET_E_NO_SERVICE.
    pub fn set_service(&self, name: &str, serve: bool) -> Result<(), c_int> {
        if !rpc::valid_service(name) {
            return Err(XXNET_E_INVALID_ARG);
        }
        let mut st = self.state();
        self.check_usable(&st)?;
        let changed = if serve {
            st.rpc.services.insert(name.to_string())
        } else {
            st.rpc.services.remove(name)
        };
        if !changed {
            return Err(if serve {
                XXNET_E_INVALID_ARG
            } else {
                XXNET_E_NO_SERVICE
            });
        }
        drop(st);
        self.submit(Command::Service {
            name: name.to_string(),
            serve,
        })
    }

    /// The directory's address of `node`.
    pub fn node_addr(&self, node: &str) -> Option<SocketAddr> {
        self.state().rpc.dir.get(node)
    }

    /// Replaces the directory by the file at `path` (a hot reload when one
    /// was loaded): nodes removed lose their session (pending calls:
    /// XXNET_E_NODE_REMOVED), nodes moved lose their old one
    /// (XXNET_E_NODE_MOVED), nodes unchanged keep theirs untouched. One
    /// NODE_CHANGED event per change. A malformed file changes nothing:
    /// the error text lists every bad line as `file:line: what`.
    pub fn cluster_load(&self, path: &str) -> Result<(), (c_int, String)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| (from_io(&e), format!("cannot read {path}: {e}")))?;
        let next = Directory::parse(&text, path).map_err(|errs| {
            let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
            (XXNET_E_CLUSTER_FILE, lines.join("\n"))
        })?;
        let mut st = self.state();
        self.check_usable(&st)
            .map_err(|c| (c, describe(c).to_string()))?;
        self.apply_directory(&mut st, next)
    }

    /// Adds `name` at `addr` ("ip:port"), or moves it there.
    pub fn cluster_set(&self, name: &str, addr: &str) -> Result<(), (c_int, String)> {
        if !valid_name(name) {
            return Err((
                XXNET_E_INVALID_ARG,
                format!("{name:?} is not a valid node name"),
            ));
        }
        let addr = parse_addr(addr).map_err(|m| (XXNET_E_INVALID_ARG, m))?;
        let mut st = self.state();
        self.check_usable(&st)
            .map_err(|c| (c, describe(c).to_string()))?;
        let mut next = st.rpc.dir.clone();
        next.set(name, addr).map_err(|m| (XXNET_E_INVALID_ARG, m))?;
        self.apply_directory(&mut st, next)
    }

    /// Removes `name` from the directory.
    pub fn cluster_remove(&self, name: &str) -> Result<(), (c_int, String)> {
        let mut st = self.state();
        self.check_usable(&st)
            .map_err(|c| (c, describe(c).to_string()))?;
        let mut next = st.rpc.dir.clone();
        if !next.remove(name) {
            return Err((XXNET_E_UNKNOWN_NODE, format!("no node named {name:?}")));
        }
        self.apply_directory(&mut st, next)
    }

    fn apply_directory(&self, st: &mut HostState, next: Directory) -> Result<(), (c_int, String)> {
        // This node's own entry says where to listen: bind it first, so a
        // port that cannot be bound leaves the directory unchanged.
        if let Some(own) = self.node_name.as_deref().and_then(|n| next.get(n)) {
            if !st.listeners.contains(&own) {
                self.listen_locked(st, own).map_err(|c| {
                    (
                        c,
                        format!(
                            "cannot listen on {own} (this node's entry): {}",
                            describe(c)
                        ),
                    )
                })?;
            }
        }
        let changes = st.rpc.dir.diff(&next);
        let mut events = Vec::new();
        for (name, addr) in &changes.removed {
            self.submit(Command::EndPeer {
                addr: *addr,
                code: XXNET_E_NODE_REMOVED,
            })
            .map_err(|c| (c, describe(c).to_string()))?;
            events.push((name, *addr, XXNET_NODE_REMOVED));
        }
        for (name, old, new) in &changes.moved {
            self.submit(Command::EndPeer {
                addr: *old,
                code: XXNET_E_NODE_MOVED,
            })
            .map_err(|c| (c, describe(c).to_string()))?;
            events.push((name, *new, XXNET_NODE_MOVED));
        }
        for (name, addr) in &changes.added {
            events.push((name, *addr, XXNET_NODE_ADDED));
        }
        for (name, addr, what) in events {
            log::info!(target: "xxnet::cluster", "node {name} {} ({addr})", match what {
                XXNET_NODE_ADDED => "added",
                XXNET_NODE_MOVED => "moved",
                _ => "removed",
            });
            st.rpc.names.remove(name.as_str());
            let node = st.rpc.name_bytes(name);
            st.pending.push_back(Event {
                kind: XXNET_EVENT_NODE_CHANGED,
                id: what,
                peer: Some(addr),
                node,
                ..Event::default()
            });
        }
        st.rpc.dir = next;
        self.files_nodes_changed(st);
        Ok(())
    }
}
