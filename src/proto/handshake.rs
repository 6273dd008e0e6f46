//! HELLO / HELLO_ACK bodies and their extensions, CHALLENGE / AUTH
//! (docs/PROTOCOL.md §3), and the PING / PONG / GOAWAY / ACK control frames.
//!
//! Encoders append a whole frame (16-byte header + body) to a `BytesMut`;
//! decoders parse a frame body as returned by the decoder. Other control
//! frames ignore trailing bytes (later revisions may extend them); in HELLO
//! and HELLO_ACK the bytes after the announced address are a list of
//! length-checked extensions ([`ext`]), unknown ones skipped.

use super::auth::{Challenge, Proof, CHALLENGE_LEN, PROOF_LEN};
use super::{FrameHeader, FrameType, ProtoError};
use crate::cluster::directory::valid_name;
use bytes::{BufMut, BytesMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Connector's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Session state the connector brings (docs/PROTOCOL.md §5).
    pub sync: SessionSync,
    /// Random id of the sending context, new at every start.
    pub instance: u64,
    /// Id of this connect attempt; never 0.
    pub nonce: u64,
    /// The announced listen address; `None` if the sender listens nowhere (port 0 on the wire).
    pub listen: Option<SocketAddr>,
    /// The sender's node name (extension [`ext::NAME`]); `None` if it announces none.
    pub name: Option<String>,
    /// The connector's authentication challenge Cc (extension [`ext::CHALLENGE`]),
    /// sent when it has a shared secret.
    pub challenge: Option<Challenge>,
}

/// What the first bytes of an accepted connection say about the node behind it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloPeek {
    /// The preface and the HELLO are not complete yet.
    More,
    /// A well-formed preface and HELLO from this instance, announcing this listen address.
    Found {
        instance: u64,
        listen: Option<SocketAddr>,
    },
    /// Anything else (a protocol error the endpoint will report).
    Other,
}

/// Looks at the bytes an accepted connection sent so far without consuming
/// them: with several reactors, reactor 0 reads until the HELLO names the
/// node, then hands the socket to the reactor that owns that node.
pub fn peek_hello(buf: &[u8]) -> HelloPeek {
    use super::Preface;
    let n = buf.len().min(Preface::LEN);
    if buf[..n] != Preface::BYTES[..n] {
        return HelloPeek::Other;
    }
    let rest = &buf[n..];
    if n < Preface::LEN || rest.len() < FrameHeader::LEN {
        return HelloPeek::More;
    }
    let mut raw = [0u8; FrameHeader::LEN];
    raw.copy_from_slice(&rest[..FrameHeader::LEN]);
    let header = match FrameHeader::parse(&raw) {
        Ok(h) if h.kind == FrameType::Hello => h,
        _ => return HelloPeek::Other,
    };
    let body_len = header.body_len as usize;
    let Some(body) = rest[FrameHeader::LEN..].get(..body_len) else {
        return HelloPeek::More;
    };
    match Hello::decode(body) {
        Ok(h) => HelloPeek::Found {
            instance: h.instance,
            listen: h.listen,
        },
        Err(_) => HelloPeek::Other,
    }
}

/// HELLO_ACK status.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// The connection is accepted.
    Accepted = 0,
    /// Refused: duplicate connection (lost the tie-break).
    Duplicate = 1,
    /// Refused: the acceptor has too many connections.
    Busy = 2,
    /// Refused: the acceptor requires authentication and the HELLO carried no challenge.
    AuthRequired = 3,
    /// Refused: the connector's AUTH proof is wrong (another secret).
    AuthFailed = 4,
}

impl AckStatus {
    /// The status for a wire byte, `None` if unknown.
    pub fn from_u8(v: u8) -> Option<AckStatus> {
        match v {
            0 => Some(AckStatus::Accepted),
            1 => Some(AckStatus::Duplicate),
            2 => Some(AckStatus::Busy),
            3 => Some(AckStatus::AuthRequired),
            4 => Some(AckStatus::AuthFailed),
            _ => None,
        }
    }
}

/// Acceptor's first frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelloAck {
    /// Accepted or why refused.
    pub status: AckStatus,
    /// Random id of the acceptor's context.
    pub instance: u64,
    /// Nonce of the acceptor's own pending attempt it dropped for this connection, or 0.
    pub abandoned_nonce: u64,
    /// The acceptor's announced listen address; `None` if it listens nowhere.
    pub listen: Option<SocketAddr>,
    /// Session state the acceptor answers with (docs/PROTOCOL.md §5).
    pub sync: SessionSync,
    /// The acceptor's node name (extension [`ext::NAME`]); `None` if it announces none.
    pub name: Option<String>,
    /// The acceptor's authentication proof proof_A (extension [`ext::PROOF`]),
    /// in an accepting HELLO_ACK after a CHALLENGE / AUTH exchange.
    pub proof: Option<Proof>,
}

/// Extensions of HELLO and HELLO_ACK (docs/PROTOCOL.md §3, "Extensions").
///
/// After the announced address, the body holds zero or more TLVs:
/// `type` u8, `len` u16 (little-endian), `len` bytes of value. Every length
/// is checked against the bytes left: a TLV header or value that runs past
/// the body is `BadFrame`. A known type appears at most once, with the
/// length and content its type requires, and only in the frames listed;
/// unknown types are skipped (later revisions add types).
pub mod ext {
    /// The sender's node name: 1 to 128 bytes, a valid directory name
    /// (`[A-Za-z_][A-Za-z0-9_]*`), no NUL. HELLO and HELLO_ACK.
    pub const NAME: u8 = 1;
    /// The connector's 16-byte challenge Cc. HELLO only.
    pub const CHALLENGE: u8 = 2;
    /// The acceptor's 32-byte proof proof_A. HELLO_ACK only.
    pub const PROOF: u8 = 3;
    /// Bytes of a TLV header (type + len).
    pub const HEADER: usize = 3;
    /// Longest node name in bytes.
    pub const MAX_NAME: usize = 128;
}

/// The extensions found in a body.
#[derive(Default)]
struct Exts {
    name: Option<String>,
    challenge: Option<Challenge>,
    proof: Option<Proof>,
}

fn put_tlv(out: &mut BytesMut, kind: u8, value: &[u8]) {
    out.put_u8(kind);
    out.put_u16_le(value.len() as u16);
    out.put_slice(value);
}

/// Appends the extensions that are set.
fn put_exts(
    out: &mut BytesMut,
    name: &Option<String>,
    challenge: &Option<Challenge>,
    proof: &Option<Proof>,
) {
    if let Some(n) = name {
        debug_assert!(valid_name(n), "node name {n:?} is not valid");
        put_tlv(out, ext::NAME, n.as_bytes());
    }
    if let Some(c) = challenge {
        put_tlv(out, ext::CHALLENGE, c);
    }
    if let Some(p) = proof {
        put_tlv(out, ext::PROOF, p);
    }
}

/// Wire length of the extensions that are set.
fn exts_len(name: &Option<String>, challenge: &Option<Challenge>, proof: &Option<Proof>) -> usize {
    name.as_ref().map_or(0, |n| ext::HEADER + n.len())
        + challenge.map_or(0, |_| ext::HEADER + CHALLENGE_LEN)
        + proof.map_or(0, |_| ext::HEADER + PROOF_LEN)
}

/// Parses the extension list that fills `b` entirely.
fn get_exts(mut b: &[u8]) -> Result<Exts, ProtoError> {
    let mut x = Exts::default();
    while !b.is_empty() {
        if b.len() < ext::HEADER {
            return Err(ProtoError::BadFrame("truncated handshake extension header"));
        }
        let kind = b[0];
        let len = u16::from_le_bytes([b[1], b[2]]) as usize;
        let rest = &b[ext::HEADER..];
        if rest.len() < len {
            return Err(ProtoError::BadFrame(
                "handshake extension longer than the frame",
            ));
        }
        let (v, after) = rest.split_at(len);
        b = after;
        match kind {
            ext::NAME => {
                if x.name.is_some() {
                    return Err(ProtoError::BadFrame("duplicate NAME extension"));
                }
                let name = std::str::from_utf8(v)
                    .ok()
                    .filter(|n| valid_name(n))
                    .ok_or(ProtoError::BadFrame("invalid node name"))?;
                x.name = Some(name.to_string());
            }
            ext::CHALLENGE => {
                if x.challenge.is_some() {
                    return Err(ProtoError::BadFrame("duplicate CHALLENGE extension"));
                }
                x.challenge =
                    Some(v.try_into().map_err(|_| {
                        ProtoError::BadFrame("CHALLENGE extension is not 16 bytes")
                    })?);
            }
            ext::PROOF => {
                if x.proof.is_some() {
                    return Err(ProtoError::BadFrame("duplicate PROOF extension"));
                }
                x.proof = Some(
                    v.try_into()
                        .map_err(|_| ProtoError::BadFrame("PROOF extension is not 32 bytes"))?,
                );
            }
            _ => {} // A later revision's extension.
        }
    }
    Ok(x)
}

/// Session state exchanged in the handshake (32 bytes on the wire), so both
/// sides resume a session across connections without loss or duplicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionSync {
    /// Id of the sender's current send session (its sequence space).
    pub send_id: u64,
    /// The peer's send-session id this side's receive state belongs to (0: none).
    pub recv_id: u64,
    /// Last sequence number delivered per lane in that receive state (0: none).
    pub delivered: [u32; FrameHeader::LANES],
}

impl SessionSync {
    /// Bytes on the wire.
    pub const LEN: usize = 32;

    fn put(&self, out: &mut BytesMut) {
        out.put_u64_le(self.send_id);
        out.put_u64_le(self.recv_id);
        for d in self.delivered {
            out.put_u32_le(d);
        }
    }

    fn get(b: &[u8]) -> SessionSync {
        let mut delivered = [0u32; FrameHeader::LANES];
        for (i, d) in delivered.iter_mut().enumerate() {
            let at = 16 + 4 * i;
            *d = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        }
        SessionSync {
            send_id: u64_at(b, 0),
            recv_id: u64_at(b, 8),
            delivered,
        }
    }
}

/// Appends an ACK frame: the last delivered sequence number per lane.
pub fn encode_ack(delivered: &[u32; FrameHeader::LANES], out: &mut BytesMut) {
    out.put_slice(&ack_frame(delivered));
}

/// An ACK frame (header and body) as bytes, built without allocating.
pub fn ack_frame(delivered: &[u32; FrameHeader::LANES]) -> [u8; FrameHeader::LEN + 16] {
    let mut f = [0u8; FrameHeader::LEN + 16];
    f[..FrameHeader::LEN].copy_from_slice(&FrameHeader::control(FrameType::Ack, 16).to_bytes());
    for (i, d) in delivered.iter().enumerate() {
        let at = FrameHeader::LEN + 4 * i;
        f[at..at + 4].copy_from_slice(&d.to_le_bytes());
    }
    f
}

/// Parses an ACK body (trailing bytes ignored).
pub fn decode_ack(body: &[u8]) -> Result<[u32; FrameHeader::LANES], ProtoError> {
    if body.len() < 16 {
        return Err(ProtoError::BadFrame("ACK body too short"));
    }
    let mut d = [0u32; FrameHeader::LANES];
    for (i, v) in d.iter_mut().enumerate() {
        let at = 4 * i;
        *v = u32::from_le_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]);
    }
    Ok(d)
}

/// Wire form of an announced address: port, ip_len, ip bytes.
fn put_listen(out: &mut BytesMut, listen: &Option<SocketAddr>) {
    match listen {
        Some(a) if a.port() != 0 => {
            out.put_u16_le(a.port());
            match a.ip() {
                IpAddr::V4(ip) => {
                    out.put_u8(4);
                    out.put_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.put_u8(16);
                    out.put_slice(&ip.octets());
                }
            }
        }
        _ => {
            out.put_u16_le(0);
            out.put_u8(0);
        }
    }
}

/// Wire length of an announced address (port + ip_len + ip).
fn listen_len(listen: &Option<SocketAddr>) -> usize {
    match listen {
        Some(a) if a.port() != 0 => 3 + if a.is_ipv4() { 4 } else { 16 },
        _ => 3,
    }
}

/// Parses port, ip_len and ip from `b` (which starts at the port); also
/// returns how many bytes they took.
fn get_listen(b: &[u8]) -> Result<(Option<SocketAddr>, usize), ProtoError> {
    // The caller checked the fixed part (port + ip_len) is present.
    let port = u16::from_le_bytes([b[0], b[1]]);
    let ip_len = b[2] as usize;
    if !matches!(ip_len, 0 | 4 | 16) {
        return Err(ProtoError::BadFrame("ip_len is not 0, 4 or 16"));
    }
    let ip = &b[3..];
    if ip.len() < ip_len {
        return Err(ProtoError::BadFrame("listen address shorter than ip_len"));
    }
    let ip = match ip_len {
        0 => None,
        4 => Some(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]))),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&ip[..16]);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => unreachable!("ip_len checked above"),
    };
    let addr = match (port, ip) {
        (0, None) => None,
        (0, Some(_)) => return Err(ProtoError::BadFrame("listen address with port 0")),
        (_, None) => return Err(ProtoError::BadFrame("listen port without an address")),
        (p, Some(ip)) => Some(SocketAddr::new(ip, p)),
    };
    Ok((addr, 3 + ip_len))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

impl Hello {
    /// Fixed part of the body: instance, nonce, listen_port, ip_len.
    pub const MIN_BODY: usize = 19 + SessionSync::LEN;

    /// Appends the whole frame (header + body).
    ///
    /// `listen` with port 0 is sent as "listens nowhere" (port 0, no
    /// address). IPv6 flow info and scope id are not sent.
    pub fn encode(&self, out: &mut BytesMut) {
        let body_len = 16
            + SessionSync::LEN
            + listen_len(&self.listen)
            + exts_len(&self.name, &self.challenge, &None);
        out.reserve(FrameHeader::LEN + body_len);
        out.put_slice(&FrameHeader::control(FrameType::Hello, body_len as u32).to_bytes());
        out.put_u64_le(self.instance);
        out.put_u64_le(self.nonce);
        self.sync.put(out);
        put_listen(out, &self.listen);
        put_exts(out, &self.name, &self.challenge, &None);
    }

    /// Parses a HELLO body, extensions included (unknown ones are skipped).
    ///
    /// `BadFrame` if the body is short, `ip_len` is not 0, 4 or 16, the
    /// port is 0 with an address or non-zero without one, the nonce is 0,
    /// or an extension is malformed (see [`ext`]; PROOF is not allowed here).
    pub fn decode(body: &[u8]) -> Result<Hello, ProtoError> {
        if body.len() < Self::MIN_BODY {
            return Err(ProtoError::BadFrame("HELLO body too short"));
        }
        let instance = u64_at(body, 0);
        let nonce = u64_at(body, 8);
        if nonce == 0 {
            return Err(ProtoError::BadFrame("HELLO nonce is 0"));
        }
        let sync = SessionSync::get(&body[16..]);
        let at = 16 + SessionSync::LEN;
        let (listen, n) = get_listen(&body[at..])?;
        let x = get_exts(&body[at + n..])?;
        if x.proof.is_some() {
            return Err(ProtoError::BadFrame("PROOF extension in a HELLO"));
        }
        Ok(Hello {
            sync,
            instance,
            nonce,
            listen,
            name: x.name,
            challenge: x.challenge,
        })
    }
}

impl HelloAck {
    /// Fixed part of the body: status, instance, abandoned_nonce, listen_port, ip_len.
    pub const MIN_BODY: usize = 20 + SessionSync::LEN;

    /// Appends the whole frame (header + body).
    ///
    /// `listen` with port 0 is sent as "listens nowhere".
    pub fn encode(&self, out: &mut BytesMut) {
        let body_len = 17
            + SessionSync::LEN
            + listen_len(&self.listen)
            + exts_len(&self.name, &None, &self.proof);
        out.reserve(FrameHeader::LEN + body_len);
        out.put_slice(&FrameHeader::control(FrameType::HelloAck, body_len as u32).to_bytes());
        out.put_u8(self.status as u8);
        out.put_u64_le(self.instance);
        out.put_u64_le(self.abandoned_nonce);
        self.sync.put(out);
        put_listen(out, &self.listen);
        put_exts(out, &self.name, &None, &self.proof);
    }

    /// Parses a HELLO_ACK body, extensions included (unknown ones are skipped).
    ///
    /// `BadFrame` if the body is short, the status is not 0 to 4, the
    /// address is malformed (as for [`Hello::decode`]), or an extension is
    /// malformed (see [`ext`]; CHALLENGE is not allowed here).
    pub fn decode(body: &[u8]) -> Result<HelloAck, ProtoError> {
        if body.len() < Self::MIN_BODY {
            return Err(ProtoError::BadFrame("HELLO_ACK body too short"));
        }
        let status =
            AckStatus::from_u8(body[0]).ok_or(ProtoError::BadFrame("unknown HELLO_ACK status"))?;
        let instance = u64_at(body, 1);
        let abandoned_nonce = u64_at(body, 9);
        let sync = SessionSync::get(&body[17..]);
        let at = 17 + SessionSync::LEN;
        let (listen, n) = get_listen(&body[at..])?;
        let x = get_exts(&body[at + n..])?;
        if x.challenge.is_some() {
            return Err(ProtoError::BadFrame("CHALLENGE extension in a HELLO_ACK"));
        }
        Ok(HelloAck {
            status,
            instance,
            abandoned_nonce,
            listen,
            sync,
            name: x.name,
            proof: x.proof,
        })
    }
}

fn put_control(kind: FrameType, body: &[u8], out: &mut BytesMut) {
    out.reserve(FrameHeader::LEN + body.len());
    out.put_slice(&FrameHeader::control(kind, body.len() as u32).to_bytes());
    out.put_slice(body);
}

/// Appends a whole PING frame carrying `token`.
pub fn encode_ping(token: u64, out: &mut BytesMut) {
    put_control(FrameType::Ping, &token.to_le_bytes(), out);
}

/// Appends a whole PONG frame answering the PING that carried `token`.
pub fn encode_pong(token: u64, out: &mut BytesMut) {
    put_control(FrameType::Pong, &token.to_le_bytes(), out);
}

/// Appends a whole GOAWAY frame with an `XXNET_E_*` code.
pub fn encode_goaway(code: i32, out: &mut BytesMut) {
    put_control(FrameType::GoAway, &code.to_le_bytes(), out);
}

/// The token of a PING or PONG body; trailing bytes are ignored.
pub fn decode_ping_token(body: &[u8]) -> Result<u64, ProtoError> {
    if body.len() < 8 {
        return Err(ProtoError::BadFrame("PING/PONG body too short"));
    }
    Ok(u64_at(body, 0))
}

/// Appends a whole CHALLENGE frame carrying the acceptor's challenge Ca.
pub fn encode_challenge(ca: &Challenge, out: &mut BytesMut) {
    put_control(FrameType::Challenge, ca, out);
}

/// Appends a whole AUTH frame carrying the connector's proof.
pub fn encode_auth(proof: &Proof, out: &mut BytesMut) {
    put_control(FrameType::Auth, proof, out);
}

/// The challenge of a CHALLENGE body; trailing bytes are ignored.
pub fn decode_challenge(body: &[u8]) -> Result<Challenge, ProtoError> {
    body.get(..CHALLENGE_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProtoError::BadFrame("CHALLENGE body too short"))
}

/// The proof of an AUTH body; trailing bytes are ignored.
pub fn decode_auth(body: &[u8]) -> Result<Proof, ProtoError> {
    body.get(..PROOF_LEN)
        .and_then(|b| b.try_into().ok())
        .ok_or(ProtoError::BadFrame("AUTH body too short"))
}

/// The code of a GOAWAY body; trailing bytes are ignored.
pub fn decode_goaway(body: &[u8]) -> Result<i32, ProtoError> {
    if body.len() < 4 {
        return Err(ProtoError::BadFrame("GOAWAY body too short"));
    }
    Ok(i32::from_le_bytes([body[0], body[1], body[2], body[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Frame, FrameDecoder, Preface};
    use std::net::SocketAddrV6;

    #[test]
    fn peek_hello_waits_for_the_whole_hello_then_names_the_node() {
        let hello = Hello {
            sync: SessionSync::default(),
            instance: 0xABCD,
            nonce: 7,
            listen: Some("127.0.0.1:4000".parse().unwrap()),
            name: Some("game1".into()),
            challenge: None,
        };
        let mut wire = BytesMut::from(&Preface::BYTES[..]);
        hello.encode(&mut wire);
        let found = HelloPeek::Found {
            instance: 0xABCD,
            listen: hello.listen,
        };
        for end in 0..wire.len() {
            assert_eq!(peek_hello(&wire[..end]), HelloPeek::More, "{end} bytes");
        }
        assert_eq!(peek_hello(&wire), found);
        // Bytes after the HELLO (an AUTH, early data) change nothing.
        let mut more = wire.clone();
        more.extend_from_slice(&[0xFF; 40]);
        assert_eq!(peek_hello(&more), found);
        // A client that listens nowhere is named by its instance alone.
        let mut client = BytesMut::from(&Preface::BYTES[..]);
        Hello {
            listen: None,
            ..hello.clone()
        }
        .encode(&mut client);
        assert_eq!(
            peek_hello(&client),
            HelloPeek::Found {
                instance: 0xABCD,
                listen: None
            }
        );
        // Not xxnet, another frame first, a malformed HELLO: Other.
        assert_eq!(peek_hello(b"GET / HTTP/1.1\r\n"), HelloPeek::Other);
        let mut ping = BytesMut::from(&Preface::BYTES[..]);
        encode_ping(1, &mut ping);
        assert_eq!(peek_hello(&ping), HelloPeek::Other);
        let mut bad = wire.clone();
        bad[Preface::LEN + FrameHeader::LEN + 8..Preface::LEN + FrameHeader::LEN + 16]
            .copy_from_slice(&[0; 8]); // nonce 0
        assert_eq!(peek_hello(&bad), HelloPeek::Other);
    }

    /// Decodes exactly one frame from `bytes` (prefixed with the preface).
    fn one_frame(bytes: &[u8]) -> Frame {
        let mut buf = BytesMut::from(&Preface::BYTES[..]);
        buf.extend_from_slice(bytes);
        let mut d = FrameDecoder::new();
        let f = d.decode(&mut buf).unwrap().expect("a frame");
        assert!(buf.is_empty());
        f
    }

    fn addrs() -> Vec<Option<SocketAddr>> {
        vec![
            None,
            Some("127.0.0.1:7000".parse().unwrap()),
            Some("10.1.2.3:1".parse().unwrap()),
            Some("[::1]:65535".parse().unwrap()),
            Some("[2001:db8::42]:4242".parse().unwrap()),
            Some("[::ffff:1.2.3.4]:80".parse().unwrap()),
        ]
    }

    #[test]
    fn hello_round_trip() {
        for listen in addrs() {
            let h = Hello {
                sync: Default::default(),
                instance: 0x0102_0304_0506_0708,
                nonce: u64::MAX,
                listen,
                name: None,
                challenge: None,
            };
            let mut out = BytesMut::new();
            h.encode(&mut out);
            let f = one_frame(&out);
            assert_eq!(
                f.header,
                FrameHeader::control(FrameType::Hello, f.body.len() as u32)
            );
            assert_eq!(
                f.body.len(),
                Hello::MIN_BODY + listen.map_or(0, |a| if a.is_ipv4() { 4 } else { 16 })
            );
            assert_eq!(Hello::decode(&f.body), Ok(h.clone()));
            // An unknown extension is skipped.
            let mut longer = f.body.to_vec();
            longer.extend_from_slice(&[0x7F, 16, 0]);
            longer.extend_from_slice(b"future extension");
            assert_eq!(Hello::decode(&longer), Ok(h));
        }
    }

    #[test]
    fn hello_ack_round_trip() {
        for status in [AckStatus::Accepted, AckStatus::Duplicate, AckStatus::Busy] {
            for listen in addrs() {
                let a = HelloAck {
                    sync: Default::default(),
                    status,
                    instance: 5,
                    abandoned_nonce: 0,
                    listen,
                    name: None,
                    proof: None,
                };
                let mut out = BytesMut::new();
                out.extend_from_slice(b"prefix"); // encode appends
                a.encode(&mut out);
                assert_eq!(&out[..6], b"prefix");
                let f = one_frame(&out[6..]);
                assert_eq!(f.header.kind, FrameType::HelloAck);
                assert_eq!(f.header.body_len as usize, f.body.len());
                assert_eq!(HelloAck::decode(&f.body), Ok(a.clone()));
                let mut longer = f.body.to_vec();
                longer.extend_from_slice(&[0xAA, 0, 0]); // unknown, empty
                assert_eq!(HelloAck::decode(&longer), Ok(a));
            }
        }
    }

    #[test]
    fn hello_exact_layout() {
        let h = Hello {
            sync: Default::default(),
            instance: 1,
            nonce: 2,
            listen: Some("1.2.3.4:513".parse().unwrap()),
            name: None,
            challenge: None,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        let mut want = vec![55, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
        want.extend([0u8; 32]); // session sync: nothing yet
        want.extend([1, 2, 4, 1, 2, 3, 4]);
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn port_zero_address_encodes_as_none() {
        let h = Hello {
            sync: Default::default(),
            instance: 1,
            nonce: 2,
            listen: Some("1.2.3.4:0".parse().unwrap()),
            name: None,
            challenge: None,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        let f = one_frame(&out);
        assert_eq!(Hello::decode(&f.body).unwrap().listen, None);
    }

    #[test]
    fn ipv6_scope_is_dropped() {
        let a = SocketAddr::V6(SocketAddrV6::new("fe80::1".parse().unwrap(), 9, 7, 3));
        let h = Hello {
            sync: Default::default(),
            instance: 1,
            nonce: 2,
            listen: Some(a),
            name: None,
            challenge: None,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        let got = Hello::decode(&one_frame(&out).body)
            .unwrap()
            .listen
            .unwrap();
        assert_eq!(got, "[fe80::1]:9".parse().unwrap());
    }

    fn hello_body(nonce: u64, port: u16, ip_len: u8, ip: &[u8]) -> Vec<u8> {
        let mut b = 1u64.to_le_bytes().to_vec();
        b.extend(nonce.to_le_bytes());
        b.extend([0u8; SessionSync::LEN]);
        b.extend(port.to_le_bytes());
        b.push(ip_len);
        b.extend(ip);
        b
    }

    fn ack_body(status: u8, port: u16, ip_len: u8, ip: &[u8]) -> Vec<u8> {
        let mut b = vec![status];
        b.extend(1u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        b.extend([0u8; SessionSync::LEN]);
        b.extend(port.to_le_bytes());
        b.push(ip_len);
        b.extend(ip);
        b
    }

    #[test]
    fn hello_validation_rules() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "HELLO body too short"),
            (
                "18 bytes",
                hello_body(1, 0, 0, &[])[..18].to_vec(),
                "HELLO body too short",
            ),
            ("nonce 0", hello_body(0, 0, 0, &[]), "HELLO nonce is 0"),
            (
                "ip_len 5",
                hello_body(1, 80, 5, &[1, 2, 3, 4, 5]),
                "ip_len is not 0, 4 or 16",
            ),
            (
                "ip_len 255",
                hello_body(1, 80, 255, &[0; 255]),
                "ip_len is not 0, 4 or 16",
            ),
            (
                "ip_len 17 short",
                hello_body(1, 80, 17, &[]),
                "ip_len is not 0, 4 or 16",
            ),
            (
                "ip short v4",
                hello_body(1, 80, 4, &[1, 2, 3]),
                "listen address shorter than ip_len",
            ),
            (
                "ip short v6",
                hello_body(1, 80, 16, &[1; 15]),
                "listen address shorter than ip_len",
            ),
            (
                "port 0 with ip",
                hello_body(1, 0, 4, &[1, 2, 3, 4]),
                "listen address with port 0",
            ),
            (
                "port without ip",
                hello_body(1, 80, 0, &[]),
                "listen port without an address",
            ),
        ];
        for (name, body, why) in cases {
            assert_eq!(
                Hello::decode(&body),
                Err(ProtoError::BadFrame(why)),
                "{name}"
            );
        }
        assert_eq!(
            Hello::decode(&hello_body(1, 0, 0, &[])).unwrap().listen,
            None
        );
        assert_eq!(
            Hello::decode(&hello_body(9, 80, 4, &[1, 2, 3, 4])).unwrap(),
            Hello {
                sync: Default::default(),
                instance: 1,
                nonce: 9,
                listen: Some("1.2.3.4:80".parse().unwrap()),
                name: None,
                challenge: None,
            }
        );
    }

    #[test]
    fn hello_ack_validation_rules() {
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "HELLO_ACK body too short"),
            (
                "one byte short",
                ack_body(0, 0, 0, &[])[..HelloAck::MIN_BODY - 1].to_vec(),
                "HELLO_ACK body too short",
            ),
            (
                "status 5",
                ack_body(5, 0, 0, &[]),
                "unknown HELLO_ACK status",
            ),
            (
                "status 255",
                ack_body(255, 0, 0, &[]),
                "unknown HELLO_ACK status",
            ),
            (
                "ip_len 8",
                ack_body(0, 80, 8, &[0; 8]),
                "ip_len is not 0, 4 or 16",
            ),
            (
                "ip short",
                ack_body(0, 80, 16, &[0; 4]),
                "listen address shorter than ip_len",
            ),
            (
                "port 0 with ip",
                ack_body(0, 0, 16, &[0; 16]),
                "listen address with port 0",
            ),
            (
                "port without ip",
                ack_body(1, 80, 0, &[]),
                "listen port without an address",
            ),
        ];
        for (name, body, why) in cases {
            assert_eq!(
                HelloAck::decode(&body),
                Err(ProtoError::BadFrame(why)),
                "{name}"
            );
        }
        // abandoned_nonce 0 is fine, status 2 too.
        let a = HelloAck::decode(&ack_body(2, 0, 0, &[])).unwrap();
        assert_eq!(a.status, AckStatus::Busy);
        assert_eq!(a.abandoned_nonce, 0);
    }

    #[test]
    fn ping_pong_goaway_round_trip() {
        let mut out = BytesMut::new();
        encode_ping(0xABCD_EF01_2345_6789, &mut out);
        encode_pong(7, &mut out);
        encode_goaway(crate::codes::XXNET_E_SHUTDOWN, &mut out);
        encode_goaway(i32::MIN, &mut out);
        let mut buf = BytesMut::from(&Preface::BYTES[..]);
        buf.extend_from_slice(&out);
        let mut d = FrameDecoder::new();
        let mut frames = Vec::new();
        while let Some(f) = d.decode(&mut buf).unwrap() {
            frames.push(f);
        }
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[0].header, FrameHeader::control(FrameType::Ping, 8));
        assert_eq!(
            decode_ping_token(&frames[0].body),
            Ok(0xABCD_EF01_2345_6789)
        );
        assert_eq!(frames[1].header, FrameHeader::control(FrameType::Pong, 8));
        assert_eq!(decode_ping_token(&frames[1].body), Ok(7));
        assert_eq!(frames[2].header, FrameHeader::control(FrameType::GoAway, 4));
        assert_eq!(
            decode_goaway(&frames[2].body),
            Ok(crate::codes::XXNET_E_SHUTDOWN)
        );
        assert_eq!(decode_goaway(&frames[3].body), Ok(i32::MIN));
        // Short bodies and trailing bytes.
        assert!(matches!(
            decode_ping_token(&[0; 7]),
            Err(ProtoError::BadFrame(_))
        ));
        assert!(matches!(
            decode_goaway(&[0; 3]),
            Err(ProtoError::BadFrame(_))
        ));
        assert_eq!(decode_ping_token(&[1, 0, 0, 0, 0, 0, 0, 0, 9, 9]), Ok(1));
        assert_eq!(decode_goaway(&[0xFF, 0xFF, 0xFF, 0xFF, 1]), Ok(-1));
    }

    #[test]
    fn session_sync_and_ack_round_trip() {
        let sync = SessionSync {
            send_id: 0x1122_3344_5566_7788,
            recv_id: 42,
            delivered: [1, u32::MAX, 0, 7],
        };
        let h = Hello {
            sync,
            instance: 9,
            nonce: 3,
            listen: Some("[::1]:4000".parse().unwrap()),
            name: None,
            challenge: None,
        };
        let mut out = BytesMut::new();
        h.encode(&mut out);
        assert_eq!(Hello::decode(&one_frame(&out).body).unwrap(), h);
        let a = HelloAck {
            status: AckStatus::Accepted,
            instance: 5,
            abandoned_nonce: 6,
            listen: None,
            sync,
            name: None,
            proof: None,
        };
        let mut out = BytesMut::new();
        a.encode(&mut out);
        assert_eq!(HelloAck::decode(&one_frame(&out).body).unwrap(), a);
        let mut out = BytesMut::new();
        encode_ack(&sync.delivered, &mut out);
        let f = one_frame(&out);
        assert_eq!(f.header.kind, FrameType::Ack);
        assert_eq!(decode_ack(&f.body).unwrap(), sync.delivered);
        assert!(decode_ack(&f.body[..15]).is_err());
    }

    fn named_hello() -> Hello {
        Hello {
            sync: Default::default(),
            instance: 1,
            nonce: 2,
            listen: Some("1.2.3.4:513".parse().unwrap()),
            name: Some("game_1".into()),
            challenge: Some([0xC0; 16]),
        }
    }

    #[test]
    fn hello_extensions_exact_layout_and_round_trip() {
        let h = named_hello();
        let mut out = BytesMut::new();
        h.encode(&mut out);
        let f = one_frame(&out);
        let base = Hello::MIN_BODY + 4;
        let mut want = vec![ext::NAME, 6, 0];
        want.extend(b"game_1");
        want.push(ext::CHALLENGE);
        want.extend([16, 0]);
        want.extend([0xC0; 16]);
        assert_eq!(&f.body[base..], &want[..]);
        assert_eq!(f.header.body_len as usize, base + want.len());
        assert_eq!(Hello::decode(&f.body), Ok(h.clone()));
        // Each extension alone, and the longest name.
        for (name, challenge) in [
            (None, Some([1u8; 16])),
            (Some("A".to_string()), None),
            (Some(format!("_{}", "x".repeat(127))), None),
        ] {
            let h = Hello {
                name,
                challenge,
                ..h.clone()
            };
            let mut out = BytesMut::new();
            h.encode(&mut out);
            assert_eq!(Hello::decode(&one_frame(&out).body), Ok(h));
        }
    }

    #[test]
    fn hello_ack_extensions_round_trip() {
        for status in [
            AckStatus::Accepted,
            AckStatus::AuthRequired,
            AckStatus::AuthFailed,
        ] {
            for (name, proof) in [
                (None, None),
                (Some("acceptor".to_string()), None),
                (None, Some([0x5A; 32])),
                (Some("n".to_string()), Some([9; 32])),
            ] {
                let a = HelloAck {
                    status,
                    instance: 3,
                    abandoned_nonce: 4,
                    listen: Some("[::1]:80".parse().unwrap()),
                    sync: Default::default(),
                    name,
                    proof,
                };
                let mut out = BytesMut::new();
                a.encode(&mut out);
                let f = one_frame(&out);
                assert_eq!(HelloAck::decode(&f.body), Ok(a));
            }
        }
        assert_eq!(AckStatus::from_u8(3), Some(AckStatus::AuthRequired));
        assert_eq!(AckStatus::from_u8(4), Some(AckStatus::AuthFailed));
        assert_eq!(AckStatus::from_u8(5), None);
    }

    /// A HELLO body (listening nowhere) followed by raw extension bytes.
    fn hello_with_ext(ext_bytes: &[u8]) -> Vec<u8> {
        let mut b = hello_body(1, 0, 0, &[]);
        b.extend_from_slice(ext_bytes);
        b
    }

    fn ack_with_ext(ext_bytes: &[u8]) -> Vec<u8> {
        let mut b = ack_body(0, 0, 0, &[]);
        b.extend_from_slice(ext_bytes);
        b
    }

    fn tlv(kind: u8, v: &[u8]) -> Vec<u8> {
        let mut b = vec![kind];
        b.extend((v.len() as u16).to_le_bytes());
        b.extend_from_slice(v);
        b
    }

    #[test]
    fn malformed_extensions_are_bad_frames() {
        let long_name = vec![b'a'; 129];
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("1 byte", vec![1], "truncated handshake extension header"),
            (
                "2 bytes",
                vec![1, 4],
                "truncated handshake extension header",
            ),
            (
                "len past the end",
                vec![ext::NAME, 5, 0, b'a', b'b'],
                "handshake extension longer than the frame",
            ),
            (
                "len 65535",
                vec![0x40, 0xFF, 0xFF, 0],
                "handshake extension longer than the frame",
            ),
            (
                "unknown then truncated",
                [tlv(0x40, b"xyz"), vec![ext::NAME]].concat(),
                "truncated handshake extension header",
            ),
            ("empty name", tlv(ext::NAME, b""), "invalid node name"),
            (
                "name 129 bytes",
                tlv(ext::NAME, &long_name),
                "invalid node name",
            ),
            (
                "name digit first",
                tlv(ext::NAME, b"1abc"),
                "invalid node name",
            ),
            (
                "name with dash",
                tlv(ext::NAME, b"a-b"),
                "invalid node name",
            ),
            (
                "name with NUL",
                tlv(ext::NAME, b"ab\0"),
                "invalid node name",
            ),
            (
                "name not UTF-8",
                tlv(ext::NAME, &[b'a', 0xFF]),
                "invalid node name",
            ),
            (
                "two names",
                [tlv(ext::NAME, b"a"), tlv(ext::NAME, b"b")].concat(),
                "duplicate NAME extension",
            ),
            (
                "challenge 15",
                tlv(ext::CHALLENGE, &[0; 15]),
                "CHALLENGE extension is not 16 bytes",
            ),
            (
                "challenge 17",
                tlv(ext::CHALLENGE, &[0; 17]),
                "CHALLENGE extension is not 16 bytes",
            ),
            (
                "two challenges",
                [tlv(ext::CHALLENGE, &[0; 16]), tlv(ext::CHALLENGE, &[1; 16])].concat(),
                "duplicate CHALLENGE extension",
            ),
            (
                "proof 31",
                tlv(ext::PROOF, &[0; 31]),
                "PROOF extension is not 32 bytes",
            ),
        ];
        for (name, x, why) in &cases {
            assert_eq!(
                Hello::decode(&hello_with_ext(x)),
                Err(ProtoError::BadFrame(why)),
                "HELLO {name}"
            );
            // The same rules hold in HELLO_ACK (CHALLENGE rows fail there anyway).
            assert!(
                HelloAck::decode(&ack_with_ext(x)).is_err(),
                "HELLO_ACK {name}"
            );
        }
        assert_eq!(
            Hello::decode(&hello_with_ext(&tlv(ext::PROOF, &[0; 32]))),
            Err(ProtoError::BadFrame("PROOF extension in a HELLO"))
        );
        assert_eq!(
            HelloAck::decode(&ack_with_ext(&tlv(ext::CHALLENGE, &[0; 16]))),
            Err(ProtoError::BadFrame("CHALLENGE extension in a HELLO_ACK"))
        );
        assert_eq!(
            HelloAck::decode(&ack_with_ext(
                &[tlv(ext::PROOF, &[0; 32]), tlv(ext::PROOF, &[0; 32])].concat()
            )),
            Err(ProtoError::BadFrame("duplicate PROOF extension"))
        );
        // Unknown extensions (any length, empty too) are skipped, in any order.
        let x = [
            tlv(0xEE, &[1; 300]),
            tlv(ext::NAME, b"Node_7"),
            tlv(0, b""),
            tlv(ext::CHALLENGE, &[3; 16]),
        ]
        .concat();
        let h = Hello::decode(&hello_with_ext(&x)).unwrap();
        assert_eq!(h.name.as_deref(), Some("Node_7"));
        assert_eq!(h.challenge, Some([3; 16]));
    }

    /// Every prefix of a body with extensions either decodes (cut at an
    /// extension boundary: fewer extensions) or is a BadFrame; never a panic.
    #[test]
    fn truncated_extensions_never_panic() {
        let mut out = BytesMut::new();
        named_hello().encode(&mut out);
        let body = one_frame(&out).body;
        let fixed = Hello::MIN_BODY + 4;
        let boundaries = [fixed, fixed + 3 + 6, body.len()];
        for cut in 0..=body.len() {
            let r = Hello::decode(&body[..cut]);
            if cut < fixed {
                assert!(r.is_err(), "cut {cut}");
            } else if boundaries.contains(&cut) {
                let h = r.unwrap_or_else(|e| panic!("cut {cut}: {e}"));
                assert_eq!(h.name.is_some(), cut > fixed, "cut {cut}");
                assert_eq!(h.challenge.is_some(), cut == body.len(), "cut {cut}");
            } else {
                assert!(
                    matches!(r, Err(ProtoError::BadFrame(_))),
                    "cut {cut}: {r:?}"
                );
            }
        }
        let a = HelloAck {
            status: AckStatus::Accepted,
            instance: 1,
            abandoned_nonce: 0,
            listen: None,
            sync: Default::default(),
            name: Some("x".into()),
            proof: Some([1; 32]),
        };
        let mut out = BytesMut::new();
        a.encode(&mut out);
        let body = one_frame(&out).body;
        for cut in 0..body.len() {
            let _ = HelloAck::decode(&body[..cut]);
        }
    }

    #[test]
    fn challenge_and_auth_frames() {
        let mut out = BytesMut::new();
        encode_challenge(&[0xAB; 16], &mut out);
        encode_auth(&[0xCD; 32], &mut out);
        let mut buf = BytesMut::from(&Preface::BYTES[..]);
        buf.extend_from_slice(&out);
        let mut d = FrameDecoder::new();
        let c = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(c.header, FrameHeader::control(FrameType::Challenge, 16));
        assert_eq!(decode_challenge(&c.body), Ok([0xAB; 16]));
        let a = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(a.header, FrameHeader::control(FrameType::Auth, 32));
        assert_eq!(decode_auth(&a.body), Ok([0xCD; 32]));
        assert!(buf.is_empty());
        // Short bodies fail; trailing bytes are ignored.
        assert!(matches!(
            decode_challenge(&[0; 15]),
            Err(ProtoError::BadFrame(_))
        ));
        assert!(matches!(
            decode_auth(&[0; 31]),
            Err(ProtoError::BadFrame(_))
        ));
        assert_eq!(decode_challenge(&[7; 20]), Ok([7; 16]));
        assert_eq!(decode_auth(&[8; 40]), Ok([8; 32]));
        // The decoder itself refuses bodies under the minimum.
        let mut short = BytesMut::from(&Preface::BYTES[..]);
        short.extend_from_slice(&FrameHeader::control(FrameType::Auth, 31).to_bytes());
        short.extend_from_slice(&[0; 31]);
        assert!(FrameDecoder::new().decode(&mut short).is_err());
    }
}
