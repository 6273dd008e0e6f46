//! Logging: xxnet logs through the `log` crate; the host can route xxnet's
//! lines into its own logger.
//!
//! By default warnings and errors go to stderr (a game server's operators
//! want to hear about refused peers and protocol errors without wiring
//! anything), nothing else. `xxnet_set_log_handler` replaces that with the
//! host's function and level; level XXNET_LOG_OFF silences xxnet entirely.

use super::*;
use std::os::raw::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

/// No logging.
pub const XXNET_LOG_OFF: c_int = 0;
/// Errors only.
pub const XXNET_LOG_ERROR: c_int = 1;
/// Warnings and errors (the default, to stderr).
pub const XXNET_LOG_WARN: c_int = 2;
/// Informational lines too (listening, sessions ending).
pub const XXNET_LOG_INFO: c_int = 3;
/// Debugging detail (handshakes, connection changes).
pub const XXNET_LOG_DEBUG: c_int = 4;
/// Everything.
pub const XXNET_LOG_TRACE: c_int = 5;

/// A log handler: `level` is an XXNET_LOG_* value, `target` the module
/// (e.g. "xxnet::endpoint"), `message` the line; both strings are valid only
/// during the call. It is called on the thread that logs, which is often
/// xxnet's reactor thread: it must be thread-safe and quick, and must not
/// call back into xxnet.
pub type xxnet_log_fn = Option<
    unsafe extern "C" fn(
        level: c_int,
        target: *const c_char,
        message: *const c_char,
        user: *mut c_void,
    ),
>;

struct Sink {
    f: xxnet_log_fn,
    user: usize,
}

struct HostLogger {
    sink: RwLock<Sink>,
    level: AtomicUsize,
}

static LOGGER: HostLogger = HostLogger {
    sink: RwLock::new(Sink { f: None, user: 0 }),
    level: AtomicUsize::new(XXNET_LOG_WARN as usize),
};

fn to_filter(level: usize) -> ::log::LevelFilter {
    match level {
        0 => ::log::LevelFilter::Off,
        1 => ::log::LevelFilter::Error,
        2 => ::log::LevelFilter::Warn,
        3 => ::log::LevelFilter::Info,
        4 => ::log::LevelFilter::Debug,
        _ => ::log::LevelFilter::Trace,
    }
}

impl ::log::Log for HostLogger {
    fn enabled(&self, meta: &::log::Metadata) -> bool {
        meta.target().starts_with("xxnet")
            && meta.level() <= to_filter(self.level.load(Ordering::Relaxed))
    }

    fn log(&self, record: &::log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = self.sink.read().unwrap_or_else(|p| p.into_inner());
        match sink.f {
            None => eprintln!(
                "xxnet [{} {}] {}",
                record.level(),
                record.target(),
                record.args()
            ),
            Some(f) => {
                let text = std::ffi::CString::new(record.args().to_string().replace('\0', " "))
                    .unwrap_or_default();
                let target = std::ffi::CString::new(record.target()).unwrap_or_default();
                let level = match record.level() {
                    ::log::Level::Error => XXNET_LOG_ERROR,
                    ::log::Level::Warn => XXNET_LOG_WARN,
                    ::log::Level::Info => XXNET_LOG_INFO,
                    ::log::Level::Debug => XXNET_LOG_DEBUG,
                    ::log::Level::Trace => XXNET_LOG_TRACE,
                };
                // SAFETY: the host's function with the host's pointer; the
                // strings live until it returns.
                unsafe {
                    f(
                        level,
                        target.as_ptr(),
                        text.as_ptr(),
                        sink.user as *mut c_void,
                    )
                };
            }
        }
    }

    fn flush(&self) {}
}

/// Installs xxnet's logger once per process. If the process (a Rust host)
/// already installed another `log` logger, xxnet logs through that one.
pub(crate) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if ::log::set_logger(&LOGGER).is_ok() {
            ::log::set_max_level(to_filter(LOGGER.level.load(Ordering::Relaxed)));
        }
    });
}

/// Routes xxnet's log lines with level <= `max_level` (XXNET_LOG_*) to
/// `handler`, or to stderr when `handler` is NULL. Process-wide (all
/// contexts). `XXNET_LOG_OFF` silences xxnet. Returns XXNET_E_INVALID_ARG for
/// a level outside 0..=5.
#[no_mangle]
pub extern "C" fn xxnet_set_log_handler(
    handler: xxnet_log_fn,
    user: *mut c_void,
    max_level: c_int,
) -> c_int {
    guard_code(|| {
        if !(XXNET_LOG_OFF..=XXNET_LOG_TRACE).contains(&max_level) {
            return Err(XXNET_E_INVALID_ARG);
        }
        install();
        *LOGGER.sink.write().unwrap_or_else(|p| p.into_inner()) = Sink {
            f: handler,
            user: user as usize,
        };
        LOGGER.level.store(max_level as usize, Ordering::Relaxed);
        ::log::set_max_level(to_filter(max_level as usize));
        Ok(())
    })
}
