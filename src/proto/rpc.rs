//! Remote-call envelopes (docs/PROTOCOL.md §7).
//!
//! A call, a cast, a reply and a cast rejection are ordinary session
//! messages whose DATA frames carry the [`FrameHeader::RPC`] flag; the
//! message payload starts with one of these envelopes, followed by the
//! host's payload. All integers are little-endian. Service names travel
//! with their NUL terminator so a receiver hands them to C without copying.
//!
//! ```text
//! CALL   = 1 | session u64 | name_len u8 | name (name_len bytes, last is NUL) | payload
//! CAST   = 2 | name_len u8 | name                                              | payload
//! REPLY  = 3 | session u64 | code i32                                          | payload
//! REJECT = 4 | code i32 | cast_len u32 | name_len u8 | name                    (no payload)
//! ```
//!
//! REJECT tells a caster its cast found no such service, so the loss is
//! reported to the sender (SEND_FAILED) instead of vanishing.

use super::{FrameHeader, ProtoError};
use crate::cluster::directory::valid_name;
use bytes::{BufMut, Bytes, BytesMut};
use std::os::raw::c_int;

/// Envelope kinds.
pub const CALL: u8 = 1;
/// A request without a reply.
pub const CAST: u8 = 2;
/// The answer to a CALL.
pub const REPLY: u8 = 3;
/// A CAST's service does not exist on the receiver.
pub const REJECT: u8 = 4;

/// Longest service name in bytes (without the NUL).
pub const MAX_NAME: usize = 128;

/// Largest envelope header in bytes (a CALL with the longest name).
pub const MAX_HEADER: usize = 1 + 8 + 1 + MAX_NAME + 1;

/// The DATA flag every RPC message carries.
pub const FLAG: u8 = FrameHeader::RPC;

/// A decoded envelope. Byte fields are slices of the message payload (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// A request that wants a reply.
    Call {
        session: u64,
        /// Service name with its NUL terminator.
        service: Bytes,
        body: Bytes,
    },
    /// A request without a reply.
    Cast { service: Bytes, body: Bytes },
    /// The answer to the caller's `session`.
    Reply {
        session: u64,
        code: c_int,
        body: Bytes,
    },
    /// A cast of `len` payload bytes to `service` was dropped for `code`.
    Reject {
        code: c_int,
        len: u32,
        service: Bytes,
    },
}

/// Checks a service name given by the host.
pub fn valid_service(name: &str) -> bool {
    name.len() <= MAX_NAME && valid_name(name)
}

fn put_name(out: &mut BytesMut, name: &str) {
    debug_assert!(valid_service(name) || name == crate::files::SERVICE);
    out.put_u8(name.len() as u8 + 1);
    out.put_slice(name.as_bytes());
    out.put_u8(0);
}

/// Appends a CALL envelope header (the payload follows it).
pub fn put_call(out: &mut BytesMut, session: u64, service: &str) {
    out.put_u8(CALL);
    out.put_u64_le(session);
    put_name(out, service);
}

/// Appends a CAST envelope header.
pub fn put_cast(out: &mut BytesMut, service: &str) {
    out.put_u8(CAST);
    put_name(out, service);
}

/// Appends a REPLY envelope header.
pub fn put_reply(out: &mut BytesMut, session: u64, code: c_int) {
    out.put_u8(REPLY);
    out.put_u64_le(session);
    out.put_i32_le(code);
}

/// A whole REJECT envelope; `service` is the NUL-terminated name from the cast.
pub fn reject(code: c_int, len: u32, service: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(10 + service.len());
    b.put_u8(REJECT);
    b.put_i32_le(code);
    b.put_u32_le(len);
    b.put_u8(service.len() as u8);
    b.put_slice(service);
    b.freeze()
}

/// A whole REPLY message with an empty payload.
pub fn reply(session: u64, code: c_int) -> Bytes {
    let mut b = BytesMut::with_capacity(13);
    put_reply(&mut b, session, code);
    b.freeze()
}

fn bad(why: &'static str) -> ProtoError {
    ProtoError::BadFrame(why)
}

struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], ProtoError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or(bad("RPC envelope truncated"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ProtoError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, ProtoError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A NUL-terminated service name, as a slice of the payload.
    fn name(&mut self) -> Result<Bytes, ProtoError> {
        let n = self.u8()? as usize;
        if !(2..=MAX_NAME + 1).contains(&n) {
            return Err(bad("RPC service name length out of range"));
        }
        let start = self.at;
        let s = self.take(n)?;
        let (text, nul) = s.split_at(n - 1);
        let ok = nul == [0]
            && std::str::from_utf8(text).is_ok_and(|t| valid_name(t) || t == crate::files::SERVICE);
        if !ok {
            return Err(bad("RPC service name malformed"));
        }
        Ok(self.buf.slice(start..start + n))
    }
    fn rest(&self) -> Bytes {
        self.buf.slice(self.at..)
    }
}

/// Decodes an RPC message's payload. Errors are protocol errors (the peer's
/// connection closes).
pub fn decode(payload: &Bytes) -> Result<Rpc, ProtoError> {
    let mut r = Reader {
        buf: payload,
        at: 0,
    };
    match r.u8()? {
        CALL => {
            let session = r.u64()?;
            let service = r.name()?;
            Ok(Rpc::Call {
                session,
                service,
                body: r.rest(),
            })
        }
        CAST => {
            let service = r.name()?;
            Ok(Rpc::Cast {
                service,
                body: r.rest(),
            })
        }
        REPLY => {
            let session = r.u64()?;
            let code = r.u32()? as i32;
            Ok(Rpc::Reply {
                session,
                code,
                body: r.rest(),
            })
        }
        REJECT => {
            let code = r.u32()? as i32;
            let len = r.u32()?;
            let service = r.name()?;
            if r.at != payload.len() {
                return Err(bad("RPC reject with trailing bytes"));
            }
            Ok(Rpc::Reject { code, len, service })
        }
        _ => Err(bad("unknown RPC envelope kind")),
    }
}

/// The service name without its NUL, for logs.
pub fn name_text(service: &[u8]) -> &str {
    let s = service.strip_suffix(&[0]).unwrap_or(service);
    std::str::from_utf8(s).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_body(mut head: BytesMut, body: &[u8]) -> Bytes {
        head.extend_from_slice(body);
        head.freeze()
    }

    #[test]
    fn round_trips() {
        let mut b = BytesMut::new();
        put_call(&mut b, 0x1122_3344_5566_7788, "login");
        let m = with_body(b, b"hi");
        assert_eq!(
            decode(&m).unwrap(),
            Rpc::Call {
                session: 0x1122_3344_5566_7788,
                service: Bytes::from_static(b"login\0"),
                body: Bytes::from_static(b"hi"),
            }
        );
        let mut b = BytesMut::new();
        put_cast(&mut b, "chat");
        let m = with_body(b, b"");
        assert_eq!(
            decode(&m).unwrap(),
            Rpc::Cast {
                service: Bytes::from_static(b"chat\0"),
                body: Bytes::new(),
            }
        );
        let mut b = BytesMut::new();
        put_reply(&mut b, 7, 42);
        let m = with_body(b, b"answer");
        assert_eq!(
            decode(&m).unwrap(),
            Rpc::Reply {
                session: 7,
                code: 42,
                body: Bytes::from_static(b"answer"),
            }
        );
        assert_eq!(
            decode(&reply(9, -56)).unwrap(),
            Rpc::Reply {
                session: 9,
                code: -56,
                body: Bytes::new()
            }
        );
        let r = reject(-56, 1000, b"chat\0");
        assert_eq!(
            decode(&r).unwrap(),
            Rpc::Reject {
                code: -56,
                len: 1000,
                service: Bytes::from_static(b"chat\0"),
            }
        );
        let mut b = BytesMut::new();
        put_call(&mut b, 1, &"s".repeat(MAX_NAME));
        assert_eq!(b.len(), MAX_HEADER);
        assert!(decode(&b.freeze()).is_ok());
    }

    #[test]
    fn malformed_envelopes_are_protocol_errors() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("unknown kind", vec![9]),
            ("call without session", vec![CALL, 1, 2, 3]),
            ("call without name", vec![CALL, 0, 0, 0, 0, 0, 0, 0, 0]),
            ("name length 0", vec![CAST, 0]),
            ("name length 1 (NUL only)", vec![CAST, 1, 0]),
            ("name longer than payload", vec![CAST, 10, b'a', 0]),
            ("name without NUL", vec![CAST, 3, b'a', b'b', b'c']),
            ("name with inner NUL", vec![CAST, 4, b'a', 0, b'b', 0]),
            ("name with a space", vec![CAST, 4, b'a', b' ', b'b', 0]),
            ("name starting with a digit", vec![CAST, 3, b'1', b'a', 0]),
            ("name too long", {
                let mut v = vec![CAST, 200];
                v.extend(std::iter::repeat_n(b'a', 199));
                v.push(0);
                v
            }),
            ("reply without code", vec![REPLY, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
            ("reject truncated", vec![REJECT, 0, 0, 0, 0]),
            ("reject with trailing bytes", {
                let mut v = reject(-56, 3, b"a\0").to_vec();
                v.push(1);
                v
            }),
        ];
        for (name, bytes) in cases {
            assert!(
                decode(&Bytes::from(bytes)).is_err(),
                "{name} must be refused"
            );
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_service("a"));
        assert!(valid_service("_svc_2"));
        assert!(!valid_service(""));
        assert!(!valid_service("9a"));
        assert!(!valid_service("a.b"));
        assert!(!valid_service(&"a".repeat(MAX_NAME + 1)));
        assert_eq!(name_text(b"abc\0"), "abc");
    }
}
