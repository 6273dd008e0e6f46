//! Exports for remote calls between named nodes and the cluster directory.

use super::context::xxnet_ctx;
use super::types::xxnet_call_opts;
use super::{guard_code, read_bytes, set_last_error};
use crate::codes::*;
use crate::host::CallOpts;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

/// Reads a NUL-terminated UTF-8 string.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn read_str<'a>(s: *const c_char) -> Result<&'a str, c_int> {
    if s.is_null() {
        return Err(XXNET_E_NULL_POINTER);
    }
    CStr::from_ptr(s).to_str().map_err(|_| XXNET_E_INVALID_ARG)
}

pub(crate) fn context<'a>(ctx: *mut xxnet_ctx) -> Result<&'a crate::host::Context, c_int> {
    Ok(&unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?.inner)
}

fn opts_of(opts: *const xxnet_call_opts) -> Result<CallOpts, c_int> {
    unsafe { opts.as_ref() }
        .copied()
        .unwrap_or_default()
        .to_opts()
}

/// Records the detailed text of a directory error for xxnet_last_error().
fn cluster_result(r: Result<(), (c_int, String)>) -> Result<(), c_int> {
    r.map_err(|(code, text)| {
        set_last_error(&text);
        code
    })
}

/// Loads the cluster directory from a file in the seed's clustername.lua
/// format: one `name = "ip:port"` per line (IPv6 as `"[addr]:port"`), `--`
/// starts a comment. The file replaces the directory as a whole (see
/// xxnet_cluster_reload for what happens to nodes already known). If the
/// config's node_name is in the file, the node listens on that address.
/// A malformed file changes nothing and returns XXNET_E_CLUSTER_FILE;
/// xxnet_last_error() then lists every bad line as `file:line: what`.
/// XXNET_E_IO (and the like) if the file cannot be read.
#[no_mangle]
pub extern "C" fn xxnet_cluster_load(ctx: *mut xxnet_ctx, path: *const c_char) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let path = unsafe { read_str(path) }?;
        cluster_result(ctx.cluster_load(path))
    })
}

/// Hot reload: replaces the directory by the file's contents. Nodes removed
/// lose their session (their pending calls resolve with
/// XXNET_E_NODE_REMOVED); nodes whose address changed lose the old session
/// (XXNET_E_NODE_MOVED) and later calls go to the new address; unchanged
/// nodes keep their connection and lose nothing. Each change is an
/// XXNET_EVENT_NODE_CHANGED event. Errors as xxnet_cluster_load.
#[no_mangle]
pub extern "C" fn xxnet_cluster_reload(ctx: *mut xxnet_ctx, path: *const c_char) -> c_int {
    xxnet_cluster_load(ctx, path)
}

/// Adds node `name` at `addr` ("ip:port", IPv6 as "[addr]:port"), or moves
/// it there (as a reload would). XXNET_E_INVALID_ARG for a bad name or address.
#[no_mangle]
pub extern "C" fn xxnet_cluster_set(
    ctx: *mut xxnet_ctx,
    name: *const c_char,
    addr: *const c_char,
) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let name = unsafe { read_str(name) }?;
        let addr = unsafe { read_str(addr) }?;
        cluster_result(ctx.cluster_set(name, addr))
    })
}

/// Removes node `name` from the directory (as a reload would).
/// XXNET_E_UNKNOWN_NODE if it is not there.
#[no_mangle]
pub extern "C" fn xxnet_cluster_remove(ctx: *mut xxnet_ctx, name: *const c_char) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let name = unsafe { read_str(name) }?;
        cluster_result(ctx.cluster_remove(name))
    })
}

/// Calls `service` on `node` with `len` bytes of `data` (copied), on lane 0,
/// with a deadline of `timeout_ms` (0: the config's call_timeout_ms). On
/// XXNET_OK writes the call's session (never 0) to `*session` (may be NULL)
/// and exactly one XXNET_EVENT_CALL_RESULT with that `id` follows. Other
/// returns mean no event will follow: XXNET_E_UNKNOWN_NODE,
/// XXNET_E_TOO_LARGE, XXNET_E_WOULD_BLOCK (the node's backlog is full),
/// XXNET_E_SHUTDOWN, XXNET_E_INVALID_ARG (service name not an identifier of
/// at most 128 bytes), XXNET_E_NULL_POINTER.
#[no_mangle]
pub extern "C" fn xxnet_call(
    ctx: *mut xxnet_ctx,
    node: *const c_char,
    service: *const c_char,
    data: *const u8,
    len: usize,
    timeout_ms: u32,
    session: *mut u64,
) -> c_int {
    let opts = xxnet_call_opts {
        timeout_ms,
        ..Default::default()
    };
    xxnet_call_ex(ctx, node, service, data, len, &opts, session)
}

/// Like `xxnet_call` with options (lane, timeout). `opts` NULL means defaults.
#[no_mangle]
pub extern "C" fn xxnet_call_ex(
    ctx: *mut xxnet_ctx,
    node: *const c_char,
    service: *const c_char,
    data: *const u8,
    len: usize,
    opts: *const xxnet_call_opts,
    session: *mut u64,
) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let node = unsafe { read_str(node) }?;
        let service = unsafe { read_str(service) }?;
        let data = unsafe { read_bytes(data, len) }?;
        let opts = opts_of(opts)?;
        let id = ctx.call(node, service, data, opts)?;
        if let Some(out) = unsafe { session.as_mut() } {
            *out = id;
        }
        Ok(())
    })
}

/// Sends `len` bytes of `data` to `service` on `node` without waiting for a
/// reply (the seed's remoteSend), on lane 0. Casts and calls to one node on
/// one lane arrive in the order they were made. A cast that is not
/// delivered is reported by XXNET_EVENT_SEND_FAILED, like any send (code
/// XXNET_E_NO_SERVICE when the node has no such service). Returns as
/// xxnet_call.
#[no_mangle]
pub extern "C" fn xxnet_cast(
    ctx: *mut xxnet_ctx,
    node: *const c_char,
    service: *const c_char,
    data: *const u8,
    len: usize,
) -> c_int {
    xxnet_cast_ex(ctx, node, service, data, len, std::ptr::null())
}

/// Like `xxnet_cast` with options (lane; timeout_ms is ignored). `opts` NULL means defaults.
#[no_mangle]
pub extern "C" fn xxnet_cast_ex(
    ctx: *mut xxnet_ctx,
    node: *const c_char,
    service: *const c_char,
    data: *const u8,
    len: usize,
    opts: *const xxnet_call_opts,
) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let node = unsafe { read_str(node) }?;
        let service = unsafe { read_str(service) }?;
        let data = unsafe { read_bytes(data, len) }?;
        let opts = opts_of(opts)?;
        ctx.cast(node, service, data, opts)
    })
}

/// Starts serving `name`: its requests arrive as XXNET_EVENT_CALL_REQUEST.
/// Requests for services not registered are answered at once with
/// XXNET_E_NO_SERVICE. XXNET_E_INVALID_ARG if already registered or not a
/// valid name (an identifier of at most 128 bytes).
#[no_mangle]
pub extern "C" fn xxnet_service_register(ctx: *mut xxnet_ctx, name: *const c_char) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let name = unsafe { read_str(name) }?;
        ctx.set_service(name, true)
    })
}

/// Stops serving `name`. XXNET_E_NO_SERVICE if it was not registered.
/// Tokens of requests already received stay valid.
#[no_mangle]
pub extern "C" fn xxnet_service_unregister(ctx: *mut xxnet_ctx, name: *const c_char) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let name = unsafe { read_str(name) }?;
        ctx.set_service(name, false)
    })
}

/// Answers the request whose CALL_REQUEST event carried `token`, at any
/// time (the host may make its own calls first). `code` is XXNET_OK or a
/// positive code of the host's own, delivered to the caller as the
/// CALL_RESULT's code; `data` (copied) is the reply payload. The reply
/// travels on the request's lane, after anything sent before it there.
/// XXNET_E_UNKNOWN_TOKEN if the token was never given or already answered;
/// XXNET_E_UNKNOWN_CONN if the caller's session ended (the token is spent);
/// XXNET_E_TOO_LARGE (the token stays valid: answer again, smaller);
/// XXNET_E_INVALID_ARG for a negative code.
#[no_mangle]
pub extern "C" fn xxnet_reply(
    ctx: *mut xxnet_ctx,
    token: u64,
    code: c_int,
    data: *const u8,
    len: usize,
) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let data = unsafe { read_bytes(data, len) }?;
        ctx.reply(token, code, data)
    })
}

/// Shuts the network down but keeps the context for a last drain: stops the
/// reactor and closes every socket (peers are told with GOAWAY). Events
/// already produced stay queued; every call still pending gets its
/// XXNET_EVENT_CALL_RESULT with XXNET_E_SHUTDOWN after them, and every
/// download still running its XXNET_EVENT_DOWNLOAD_FAILED with
/// XXNET_E_SHUTDOWN (the files thread saves the cache index first, so partial
/// files resume later). Later sends, calls, downloads and listens return XXNET_E_SHUTDOWN; xxnet_poll_recv returns what
/// is queued without waiting. Call xxnet_free afterwards. NULL is a no-op.
#[no_mangle]
pub extern "C" fn xxnet_shutdown(ctx: *mut xxnet_ctx) {
    super::guard((), || {
        if let Ok(ctx) = context(ctx) {
            ctx.close_network();
        }
    })
}
