//! HELLO / HELLO_ACK bodies (docs/PROTOCOL.md §3), and the PING / PONG /
//! GOAWAY control frames.
//!
//! Encoders append a whole frame (16-byte header + body) to a `BytesMut`;
//! decoders parse a frame body as returned by the decoder and ignore
//! trailing bytes (later revisions may extend control frames).

use super::{FrameHeader, FrameType, ProtoError};
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
}

impl AckStatus {
    /// The status for a wire byte, `None` if unknown.
    pub fn from_u8(v: u8) -> Option<AckStatus> {
        match v {
            0 => Some(AckStatus::Accepted),
            1 => Some(AckStatus::Duplicate),
            2 => Some(AckStatus::Busy),
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
    out.reserve(FrameHeader::LEN + 16);
    out.put_slice(&FrameHeader::control(FrameType::Ack, 16).to_bytes());
    for d in delivered {
        out.put_u32_le(*d);
    }
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

/// Parses port, ip_len and ip from `b` (which starts at the port).
fn get_listen(b: &[u8]) -> Result<Option<SocketAddr>, ProtoError> {
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
    match (port, ip) {
        (0, None) => Ok(None),
        (0, Some(_)) => Err(ProtoError::BadFrame("listen address with port 0")),
        (_, None) => Err(ProtoError::BadFrame("listen port without an address")),
        (p, Some(ip)) => Ok(Some(SocketAddr::new(ip, p))),
    }
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
        let body_len = 16 + SessionSync::LEN + listen_len(&self.listen);
        out.reserve(FrameHeader::LEN + body_len);
        out.put_slice(&FrameHeader::control(FrameType::Hello, body_len as u32).to_bytes());
        out.put_u64_le(self.instance);
        out.put_u64_le(self.nonce);
        self.sync.put(out);
        put_listen(out, &self.listen);
    }

    /// Parses a HELLO body; trailing bytes are ignored.
    ///
    /// `BadFrame` if the body is short, `ip_len` is not 0, 4 or 16, the
    /// port is 0 with an address or non-zero without one, or the nonce is 0.
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
        let listen = get_listen(&body[16 + SessionSync::LEN..])?;
        Ok(Hello {
            sync,
            instance,
            nonce,
            listen,
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
        let body_len = 17 + SessionSync::LEN + listen_len(&self.listen);
        out.reserve(FrameHeader::LEN + body_len);
        out.put_slice(&FrameHeader::control(FrameType::HelloAck, body_len as u32).to_bytes());
        out.put_u8(self.status as u8);
        out.put_u64_le(self.instance);
        out.put_u64_le(self.abandoned_nonce);
        self.sync.put(out);
        put_listen(out, &self.listen);
    }

    /// Parses a HELLO_ACK body; trailing bytes are ignored.
    ///
    /// `BadFrame` if the body is short, the status is not 0, 1 or 2, or the
    /// address is malformed (as for [`Hello::decode`]).
    pub fn decode(body: &[u8]) -> Result<HelloAck, ProtoError> {
        if body.len() < Self::MIN_BODY {
            return Err(ProtoError::BadFrame("HELLO_ACK body too short"));
        }
        let status =
            AckStatus::from_u8(body[0]).ok_or(ProtoError::BadFrame("unknown HELLO_ACK status"))?;
        let instance = u64_at(body, 1);
        let abandoned_nonce = u64_at(body, 9);
        let sync = SessionSync::get(&body[17..]);
        let listen = get_listen(&body[17 + SessionSync::LEN..])?;
        Ok(HelloAck {
            status,
            instance,
            abandoned_nonce,
            listen,
            sync,
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
            // Trailing bytes are ignored.
            let mut longer = f.body.to_vec();
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
                longer.push(0xAA);
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
                listen: Some("1.2.3.4:80".parse().unwrap())
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
                "status 3",
                ack_body(3, 0, 0, &[]),
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
}
