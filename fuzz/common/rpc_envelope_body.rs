//! Body of the `rpc_envelope` fuzz target, shared with the main crate's
//! `proto_rpc_fuzz_smoke` test: decodes arbitrary bytes as a remote-call
//! envelope. Must never panic; whatever decodes must re-encode to the same
//! bytes (so the decoder accepts nothing the encoders would not produce).

use bytes::{Bytes, BytesMut};
use xxnet::proto::rpc::{self, Rpc};

pub fn run(data: &[u8]) {
    let payload = Bytes::copy_from_slice(data);
    let Ok(m) = rpc::decode(&payload) else {
        return;
    };
    let name = |s: &Bytes| rpc::name_text(s).to_string();
    let again = match &m {
        Rpc::Call {
            session,
            service,
            body,
        } => {
            let mut b = BytesMut::new();
            rpc::put_call(&mut b, *session, &name(service));
            b.extend_from_slice(body);
            b.freeze()
        }
        Rpc::Cast { service, body } => {
            let mut b = BytesMut::new();
            rpc::put_cast(&mut b, &name(service));
            b.extend_from_slice(body);
            b.freeze()
        }
        Rpc::Reply {
            session,
            code,
            body,
        } => {
            let mut b = BytesMut::new();
            rpc::put_reply(&mut b, *session, *code);
            b.extend_from_slice(body);
            b.freeze()
        }
        Rpc::Reject { code, len, service } => rpc::reject(*code, *len, service),
    };
    assert_eq!(&again[..], data, "decode/encode round trip");
}
