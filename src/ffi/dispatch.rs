//! Callback mode: handlers per event kind, routers per message id, and
//! `xxnet_dispatch`, which polls and calls them on the calling thread.

use super::context::xxnet_ctx;
use super::types::xxnet_event;
use super::*;
use std::collections::HashMap;
use std::os::raw::c_void;

/// A handler: called with the event (valid during the call only; copy what
/// you keep) and the `user` pointer given at registration. Handlers run on
/// the thread that calls `xxnet_dispatch`, inside it, one at a time. They may
/// call any xxnet function except `xxnet_poll_recv`, `xxnet_dispatch` and
/// `xxnet_free` on the same context, and must not throw or longjmp.
pub type xxnet_handler = Option<unsafe extern "C" fn(event: *const xxnet_event, user: *mut c_void)>;

#[derive(Clone, Copy)]
pub(crate) struct Slot {
    f: unsafe extern "C" fn(*const xxnet_event, *mut c_void),
    user: *mut c_void,
}

/// Registered handlers of one context.
#[derive(Default)]
pub(crate) struct Handlers {
    by_kind: HashMap<u32, Slot>,
    routes: HashMap<u32, Slot>,
    default_route: Option<Slot>,
}

// SAFETY: the `user` pointers are opaque to xxnet: it only hands them back to
// the host's handlers on the thread that calls xxnet_dispatch.
unsafe impl Send for Handlers {}

impl Handlers {
    fn slot(h: xxnet_handler, user: *mut c_void) -> Option<Slot> {
        h.map(|f| Slot { f, user })
    }

    /// MESSAGE: its route, else the default route, else the MESSAGE handler.
    fn pick(&self, ev: &xxnet_event) -> Option<Slot> {
        if ev.kind == XXNET_EVENT_MESSAGE {
            if let Some(s) = self.routes.get(&ev.msg_id).or(self.default_route.as_ref()) {
                return Some(*s);
            }
        }
        self.by_kind.get(&ev.kind).copied()
    }
}

fn with_handlers<T>(ctx: *mut xxnet_ctx, f: impl FnOnce(&mut Handlers) -> T) -> Result<T, c_int> {
    let ctx = unsafe { ctx.as_ref() }.ok_or(XXNET_E_NULL_POINTER)?;
    let mut h = ctx.handlers.lock().unwrap_or_else(|p| p.into_inner());
    Ok(f(&mut h))
}

/// Registers `handler` for events of `kind` (an XXNET_EVENT_* value; e.g.
/// CONNECTED and DISCONNECTED are Paguma's OnConnStart/OnConnStop hooks).
/// NULL removes it. For MESSAGE events, routes (xxnet_route) and the default
/// route take precedence.
#[no_mangle]
pub extern "C" fn xxnet_on(
    ctx: *mut xxnet_ctx,
    kind: u32,
    handler: xxnet_handler,
    user: *mut c_void,
) -> c_int {
    guard_code(|| {
        if kind == XXNET_EVENT_NONE || kind > XXNET_EVENT_TIMER {
            return Err(XXNET_E_INVALID_ARG);
        }
        with_handlers(ctx, |h| match Handlers::slot(handler, user) {
            Some(s) => h.by_kind.insert(kind, s),
            None => h.by_kind.remove(&kind),
        })
        .map(|_| ())
    })
}

/// Routes MESSAGE events with this `msg_id` to `handler` (Paguma's
/// multi-router). NULL removes the route.
#[no_mangle]
pub extern "C" fn xxnet_route(
    ctx: *mut xxnet_ctx,
    msg_id: u32,
    handler: xxnet_handler,
    user: *mut c_void,
) -> c_int {
    guard_code(|| {
        with_handlers(ctx, |h| match Handlers::slot(handler, user) {
            Some(s) => h.routes.insert(msg_id, s),
            None => h.routes.remove(&msg_id),
        })
        .map(|_| ())
    })
}

/// The handler for MESSAGE events whose `msg_id` has no route. NULL removes it.
#[no_mangle]
pub extern "C" fn xxnet_route_default(
    ctx: *mut xxnet_ctx,
    handler: xxnet_handler,
    user: *mut c_void,
) -> c_int {
    guard_code(|| with_handlers(ctx, |h| h.default_route = Handlers::slot(handler, user)))
}

/// Polls up to `max` events (at most 1024 per call; waiting as `xxnet_poll_recv` does) and calls the
/// registered handlers for each, on this thread. Events without a handler
/// are dropped. Returns how many events were polled; 0 when `ctx` is NULL or
/// when called from inside a handler (not allowed).
#[no_mangle]
pub extern "C" fn xxnet_dispatch(ctx: *mut xxnet_ctx, max: usize, timeout_ms: i32) -> usize {
    guard(0, || {
        let Some(c) = (unsafe { ctx.as_ref() }) else {
            return 0;
        };
        if c.dispatching
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            log::warn!(target: "xxnet::ffi", "xxnet_dispatch called from inside a handler: ignored");
            return 0;
        }
        // Cleared however this returns.
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _done = Done(&c.dispatching);
        let mut batch =
            std::mem::take(&mut *c.dispatch_buf.lock().unwrap_or_else(|p| p.into_inner()));
        batch.clear();
        batch.resize(max.min(1024), xxnet_event::EMPTY);
        let n = super::context::poll_into(c, &mut batch, timeout_ms);
        let inner = super::context::context_of(ctx).expect("non-null");
        let mut changes = inner.user_data_changes();
        for i in 0..n {
            let ev = &batch[i];
            let slot = c
                .handlers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pick(ev);
            if let Some(s) = slot {
                // SAFETY: a host-registered C function, called with a valid
                // event and the host's own pointer.
                unsafe { (s.f)(ev, s.user) };
            }
            // A handler set user data: the rest of this batch is "later".
            let now = inner.user_data_changes();
            if now != changes {
                changes = now;
                for e in batch[i + 1..n].iter_mut().filter(|e| e.conn != 0) {
                    e.user_data = inner.user_data(e.conn);
                }
            }
        }
        *c.dispatch_buf.lock().unwrap_or_else(|p| p.into_inner()) = batch;
        n
    })
}
