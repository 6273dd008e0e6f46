//! The C boundary: the only code with `extern "C"` and raw pointers.
//!
//! Every export follows the same three steps: a panic boundary
//! ([`guard`]), null-checked pointer conversion, then a call into safe Rust
//! (`crate::host`). No protocol logic lives here.
//!
//! The exports take raw pointers without being `unsafe fn`: C callers cannot
//! be made to write `unsafe`, and each export checks for NULL before it
//! dereferences (the remaining contract, valid non-NULL pointers, is written
//! in the header). Hence the module-wide allow below, as in rustls-ffi.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod context;
pub mod dispatch;
pub mod files;
pub mod logging;
pub mod rpc;
pub mod types;

use crate::codes::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the reason for the last failed `xxnet_new` on this thread.
pub(crate) fn set_last_error(msg: &str) {
    let text = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs `f`, turning a panic into `on_panic`. Nothing unwinds into C.
pub(crate) fn guard<T>(on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = crate::codes::panic_text(&*payload);
            log::error!(target: "xxnet::ffi", "panic caught at the C boundary: {msg}");
            set_last_error(&format!("panic: {msg}"));
            on_panic
        }
    }
}

/// Runs a code-returning body under the panic boundary.
pub(crate) fn guard_code(f: impl FnOnce() -> Result<(), c_int>) -> c_int {
    guard(XXNET_E_PANIC, || match f() {
        Ok(()) => XXNET_OK,
        Err(code) => code,
    })
}

/// The last address text `read_ip` parsed on this thread and its value: a
/// host sending by address repeats the same few strings, and parsing one
/// costs about 300 instructions a send.
struct IpMemo {
    len: usize,
    text: [u8; IpMemo::MAX],
    ip: std::net::IpAddr,
}

impl IpMemo {
    /// Longest text remembered (the longest IPv6 text is 45 bytes).
    const MAX: usize = 47;
}

thread_local! {
    static IP_MEMO: std::cell::RefCell<Option<IpMemo>> = const { std::cell::RefCell::new(None) };
}

/// Reads a NUL-terminated numeric IP address.
///
/// # Safety
/// `ip` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn read_ip(ip: *const c_char) -> Result<std::net::IpAddr, c_int> {
    if ip.is_null() {
        return Err(XXNET_E_NULL_POINTER);
    }
    let bytes = CStr::from_ptr(ip).to_bytes();
    let hit = IP_MEMO.with_borrow(|m| {
        m.as_ref()
            .filter(|m| &m.text[..m.len] == bytes)
            .map(|m| m.ip)
    });
    if let Some(ip) = hit {
        return Ok(ip);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| XXNET_E_INVALID_ARG)?;
    let ip = crate::host::parse_ip(text).ok_or(XXNET_E_INVALID_ARG)?;
    if bytes.len() <= IpMemo::MAX {
        let mut memo = IpMemo {
            len: bytes.len(),
            text: [0; IpMemo::MAX],
            ip,
        };
        memo.text[..bytes.len()].copy_from_slice(bytes);
        IP_MEMO.set(Some(memo));
    }
    Ok(ip)
}

/// # Safety
/// `data` is NULL or valid for `len` bytes.
pub(crate) unsafe fn read_bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], c_int> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(XXNET_E_NULL_POINTER);
    }
    if len > isize::MAX as usize {
        return Err(XXNET_E_INVALID_ARG);
    }
    Ok(std::slice::from_raw_parts(data, len))
}
