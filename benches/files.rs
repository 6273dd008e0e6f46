//! Download benchmark (issue 6) through the safe Rust context: two named
//! nodes in one process over 127.0.0.1. Node "S" serves a directory holding
//! one large file; client nodes (a fresh context per run) download it.
//!
//! 1. The source file: 1 GiB of pseudo-random bytes (free space checked
//!    first), its md5 computed once with `hash_file` (the server's hashing cost).
//! 2. Baselines on the same file: `cat FILE > /dev/null` and a plain loopback
//!    TCP copy into a file on the same file system (median of 3 each).
//! 3. xxnet download S → C into a fresh cache (median of 3), ratio to the
//!    baselines; every downloaded file's md5 is checked.
//! 4. Resume: cancel at >= 50 %, free the client, download again with a new
//!    context on the same cache: time, blocks fetched the second time.
//! 5. 64 B echo calls C → S, one at a time, while a download S → C runs:
//!    count, p50, p99, max (issue 6 target: p99 < 5 ms).
//!
//! Figures are printed, never asserted (a wrong md5 or a failed download panics).
//! `cargo bench --bench files`; `XXNET_BENCH_QUICK=1` uses a 128 MiB file;
//! `XXNET_BENCH_ONLY=3,5` runs only the parts listed (part 1 always runs:
//! the others need its file). Every loop is bounded in count and by a
//! deadline; traffic stays on 127.0.0.1; the temporary directory is removed
//! at the end (also after a panic).

use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xxnet::config::Config;
use xxnet::files::serve::hash_file;
use xxnet::host::{CallOpts, Context};
use xxnet::*;

const FULL_SIZE: u64 = 1 << 30;
const QUICK_SIZE: u64 = 128 << 20;
/// Chunk of the file writer, `cat`-free baselines and the TCP copy.
const CHUNK: usize = 1 << 20;
const FILE_NAME: &str = "big.bin";
const SERVER: &str = "S";
const SMALL: usize = 64;
const BATCH: usize = 256;
/// Deadline of one echo call (it then resolves with XXNET_E_TIMEOUT, which panics).
const CALL_TIMEOUT_MS: u32 = 10_000;
/// Longest the client waits for one call's result.
const RESULT_WAIT: Duration = Duration::from_secs(15);
/// Longest one download may take before the bench gives up (panics).
const DOWNLOAD_CAP: Duration = Duration::from_secs(120);
/// Longest the server may take to hash the served directory.
const HASH_CAP: Duration = Duration::from_secs(120);
/// Part 5 starts no further download after this long.
const PHASE_CAP: Duration = Duration::from_secs(40);
/// The server thread stops by itself this long after it started, whatever happens.
const SERVER_CAP: Duration = Duration::from_secs(900);
/// Echo calls that warm up a new client's session (their round trips are the idle figure).
const WARM_CALLS: u64 = 200;
/// Part 5 wants at least this many calls completed during downloads.
const WANT_SAMPLES: usize = 1000;
/// Issue 6 target for small calls beside a large download.
const TARGET_P99_MS: f64 = 5.0;

fn strerror(rc: i32) -> String {
    unsafe { CStr::from_ptr(xxnet::ffi::context::xxnet_strerror(rc)) }
        .to_string_lossy()
        .into_owned()
}

fn check<T>(r: Result<T, i32>, what: &str) -> T {
    r.unwrap_or_else(|rc| panic!("{what} failed: {rc} {}", strerror(rc)))
}

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Time each live thread of this process has spent runnable but waiting
/// for a CPU (schedstat run_delay), by thread id: (name, ns).
fn run_delays() -> HashMap<u64, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let name = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        if let Some(d) = stat.split_whitespace().nth(1).and_then(|x| x.parse().ok()) {
            out.insert(tid, (name.trim().to_string(), d));
        }
    }
    out
}

/// Run-queue wait between two `run_delays` snapshots, summed by thread name
/// (the main thread is "main"), in ns.
fn waited(
    before: &HashMap<u64, (String, u64)>,
    after: &HashMap<u64, (String, u64)>,
) -> HashMap<String, u64> {
    let main_tid = std::process::id() as u64;
    let mut by: HashMap<String, u64> = HashMap::new();
    for (tid, (name, d)) in after {
        let d0 = before.get(tid).map_or(0, |b| b.1);
        let name = if *tid == main_tid {
            "main".to_string()
        } else {
            name.clone()
        };
        *by.entry(name).or_default() += d.saturating_sub(d0);
    }
    by
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Free bytes for an unprivileged writer on the file system of `dir`.
fn free_space(dir: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        panic!(
            "statvfs {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

fn mb_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|x, y| x.total_cmp(y));
    s[s.len() / 2]
}

fn list_ms(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn ms(us: f64) -> String {
    if us < 1000.0 {
        format!("{:.3} ms", us / 1000.0)
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// Sorted latencies in microseconds.
struct Lat(Vec<f64>);

impl Lat {
    fn new(mut v: Vec<f64>) -> Lat {
        v.sort_by(|x, y| x.total_cmp(y));
        Lat(v)
    }
    fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0[((self.0.len() as f64 * p) as usize).min(self.0.len() - 1)]
    }
    fn max(&self) -> f64 {
        self.0.last().copied().unwrap_or(f64::NAN)
    }
}

/// The bench's temporary directory, removed on drop (also when a part panics).
struct TempRoot(PathBuf);

impl TempRoot {
    fn new() -> TempRoot {
        let d = std::env::temp_dir().join(format!("xxnet-bench-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempRoot(d.canonicalize().unwrap())
    }
    /// A fresh empty subdirectory.
    fn fresh(&self, name: &str) -> PathBuf {
        let d = self.0.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a directory when dropped.
struct RmOnDrop(PathBuf);
impl Drop for RmOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ----- part 1: the source file ------------------------------------------------

/// Writes `size` bytes of xorshift64* output to `path` and syncs it (so no
/// write-back of it competes with the measurements). Returns (write, sync) times.
fn make_file(path: &Path, size: u64) -> (Duration, Duration) {
    let t = Instant::now();
    let mut f = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            w.copy_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    let wrote = t.elapsed();
    let t = Instant::now();
    f.sync_all().unwrap();
    (wrote, t.elapsed())
}

// ----- part 2: baselines --------------------------------------------------------

fn cat_once(file: &Path) -> Duration {
    let t = Instant::now();
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg("cat \"$1\" > /dev/null")
        .arg("sh")
        .arg(file)
        .status()
        .expect("spawn sh");
    let d = t.elapsed();
    assert!(st.success(), "cat failed: {st}");
    d
}

/// One loopback TCP copy of `file` into `out`: (time to the last byte
/// written, time of the fsync after it).
fn tcp_copy_once(file: &Path, out: &Path, size: u64) -> (Duration, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let src = file.to_path_buf();
    let t = Instant::now();
    let sender = std::thread::spawn(move || {
        let mut f = std::fs::File::open(&src).unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).unwrap();
        }
    });
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut o = std::fs::File::create(out).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = s.read(&mut buf).expect("tcp copy read");
        if n == 0 {
            break;
        }
        o.write_all(&buf[..n]).unwrap();
        got += n as u64;
    }
    let d = t.elapsed();
    sender.join().expect("tcp sender");
    assert_eq!(got, size, "tcp copy length");
    let t = Instant::now();
    o.sync_all().unwrap();
    (d, t.elapsed())
}

struct Baselines {
    cat_mb_s: f64,
    tcp_mb_s: f64,
}

fn baselines(root: &TempRoot, file: &Path, size: u64) -> Baselines {
    let cat: Vec<f64> = (0..3).map(|_| cat_once(file).as_secs_f64() * 1e3).collect();
    let out = root.0.join("tcp-copy.bin");
    let mut copy = Vec::new();
    let mut sync = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..3 {
        let cpu0 = cpu_time();
        let (d, s) = tcp_copy_once(file, &out, size);
        cpu.push((cpu_time() - cpu0).as_secs_f64());
        copy.push(d.as_secs_f64() * 1e3);
        sync.push(s.as_secs_f64() * 1e3);
        let _ = std::fs::remove_file(&out);
    }
    let (cat_m, copy_m) = (median(&cat), median(&copy));
    let rate = |ms: f64| size as f64 / (ms / 1e3) / 1e6;
    println!("2. baselines on the same file (page cache warm: it was just written and hashed)");
    println!(
        "   cat FILE > /dev/null       median {cat_m:>7.0} ms  {:>7.0} MB/s   (all ms: {})",
        rate(cat_m),
        list_ms(&cat)
    );
    println!(
        "   loopback TCP copy to file  median {copy_m:>7.0} ms  {:>7.0} MB/s   (all ms: {}; 1 MiB chunks, no fsync; fsync after it: median {:.0} ms; CPU median {:.2} s per copy)",
        rate(copy_m),
        list_ms(&copy),
        median(&sync),
        median(&cpu)
    );
    Baselines {
        cat_mb_s: rate(cat_m),
        tcp_mb_s: rate(copy_m),
    }
}

// ----- xxnet nodes ------------------------------------------------------------------

fn config(name: &str, cache: Option<&Path>) -> Config {
    Config {
        node_name: Some(name.to_string()),
        download_dir: cache.map(Path::to_path_buf),
        ..Config::default()
    }
}

fn new_node(cfg: Config) -> (Context, String) {
    let ctx = Context::new(cfg).unwrap_or_else(|e| panic!("Context::new failed: {e}"));
    let port = check(ctx.listen(SocketAddr::from(([127, 0, 0, 1], 0))), "listen");
    (ctx, format!("127.0.0.1:{port}"))
}

fn cluster_set(ctx: &Context, name: &str, addr: &str) {
    ctx.cluster_set(name, addr)
        .unwrap_or_else(|(rc, why)| panic!("cluster_set {name} {addr}: {rc} {why}"));
}

/// The serving node: its context (shared with its host thread) and address.
struct Server {
    ctx: Arc<Context>,
    addr: String,
    /// When S's host thread got each echo request, by sequence number.
    seen: Mutex<HashMap<u64, Instant>>,
}

/// The server's host thread: answers "echo" calls until `stop` or its own deadline.
/// `lost` counts messages reported SEND_FAILED: a client freed right after its
/// last result takes the acknowledgement of the last replies with it.
/// `seen` records when the server's host thread got each request (by its
/// sequence number), to split slow round trips into their two legs.
fn serve_echo(
    ctx: &Context,
    stop: &AtomicBool,
    served: &AtomicU64,
    lost: &AtomicU64,
    seen: &Mutex<HashMap<u64, Instant>>,
) {
    let deadline = Instant::now() + SERVER_CAP;
    // (token, payload) copied out of the poll (the context is locked during it).
    let mut todo: Vec<(u64, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        ctx.poll(BATCH, Some(Duration::from_millis(5)), |_, e| match e.kind {
            XXNET_EVENT_CALL_REQUEST => {
                let service = e.service.strip_suffix(&[0]).unwrap_or(&e.service);
                assert_eq!(
                    service,
                    b"echo",
                    "server: request for {:?}",
                    String::from_utf8_lossy(service)
                );
                assert_eq!(e.data.len(), SMALL, "server: echo request length");
                todo.push((e.id, e.data.to_vec()));
                let seq = u64::from_le_bytes(e.data[..8].try_into().unwrap());
                seen.lock().unwrap().insert(seq, Instant::now());
            }
            // Clients come and go between runs.
            XXNET_EVENT_CONNECTED
            | XXNET_EVENT_DISCONNECTED
            | XXNET_EVENT_NODE_CHANGED
            | XXNET_EVENT_LINK_UP
            | XXNET_EVENT_LINK_DOWN => {}
            XXNET_EVENT_SEND_FAILED => {
                lost.fetch_add(e.count, Ordering::Relaxed);
            }
            k => panic!(
                "server: unexpected event kind {k} code {} ({}) conn {} id {}",
                e.code,
                strerror(e.code),
                e.conn,
                e.id
            ),
        });
        for (token, data) in todo.drain(..) {
            check(ctx.reply(token, XXNET_OK, &data), "server reply");
            served.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sequence numbers of echo calls, unique in the process (first 8 payload bytes).
static SEQ: AtomicU64 = AtomicU64::new(1);

/// One echo call's round trip.
struct Echo {
    rtt: Duration,
    seq: u64,
    /// When the call was made and when its result came out of the poll.
    start: Instant,
    end: Instant,
}

/// One download or call event, copied out of the poll.
#[derive(Clone, Debug)]
struct Ev {
    kind: u32,
    code: i32,
    id: u64,
    count: u64,
    total: u64,
    data: Vec<u8>,
    at: Instant,
}

/// A client node with a cache directory.
struct Client {
    ctx: Context,
    name: String,
    dl: VecDeque<Ev>,
    results: HashMap<u64, Ev>,
    would_block: u64,
    /// Round trips of the warm-up calls (idle link), microseconds.
    idle: Vec<f64>,
}

impl Client {
    /// A new client `name` on 127.0.0.1 with cache `cache`, introduced to
    /// the server both ways, its session warmed up by echo calls.
    fn new(name: &str, cache: &Path, server: &Server) -> Client {
        let (ctx, addr) = new_node(config(name, Some(cache)));
        cluster_set(&ctx, SERVER, &server.addr);
        cluster_set(&ctx, name, &addr);
        cluster_set(&server.ctx, name, &addr);
        let mut c = Client {
            ctx,
            name: name.to_string(),
            dl: VecDeque::new(),
            results: HashMap::new(),
            would_block: 0,
            idle: Vec::new(),
        };
        for _ in 0..WARM_CALLS {
            let rt = c.echo().rtt.as_secs_f64() * 1e6;
            c.idle.push(rt);
        }
        c
    }

    /// One poll: download events and call results are kept; returns when it returned.
    fn pump(&mut self, timeout_ms: u64) -> Instant {
        let mut got: Vec<Ev> = Vec::new();
        let name = &self.name;
        self.ctx.poll(
            BATCH,
            Some(Duration::from_millis(timeout_ms)),
            |_, e| match e.kind {
                XXNET_EVENT_DOWNLOAD_PROGRESS
                | XXNET_EVENT_DOWNLOAD_DONE
                | XXNET_EVENT_DOWNLOAD_FAILED
                | XXNET_EVENT_CALL_RESULT => got.push(Ev {
                    kind: e.kind,
                    code: e.code,
                    id: e.id,
                    count: e.count,
                    total: e.total,
                    data: e.data.to_vec(),
                    at: Instant::now(),
                }),
                XXNET_EVENT_CONNECTED | XXNET_EVENT_NODE_CHANGED | XXNET_EVENT_LINK_UP => {}
                k => panic!(
                    "client {name}: unexpected event kind {k} code {} ({}) conn {} id {}",
                    e.code,
                    strerror(e.code),
                    e.conn,
                    e.id
                ),
            },
        );
        let at = Instant::now();
        for e in got {
            if e.kind == XXNET_EVENT_CALL_RESULT {
                self.results.insert(e.id, e);
            } else {
                self.dl.push_back(e);
            }
        }
        at
    }

    /// One 64 B echo call to the server, waited for; returns its round trip.
    fn echo(&mut self) -> Echo {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0xA5u8; SMALL];
        buf[..8].copy_from_slice(&seq.to_le_bytes());
        let opts = CallOpts {
            lane: XXNET_LANE_DEFAULT as u8,
            timeout_ms: CALL_TIMEOUT_MS,
        };
        let t = Instant::now();
        let deadline = t + RESULT_WAIT;
        let session = loop {
            match self.ctx.call(SERVER, "echo", &buf, opts) {
                Ok(s) => break s,
                Err(XXNET_E_WOULD_BLOCK) if Instant::now() < deadline => {
                    self.would_block += 1;
                    self.pump(1);
                }
                Err(rc) => panic!("echo call failed: {rc} {}", strerror(rc)),
            }
        };
        loop {
            assert!(Instant::now() < deadline, "echo call {}: no result", seq);
            let at = self.pump(100);
            if let Some(r) = self.results.remove(&session) {
                assert_eq!(r.code, XXNET_OK, "echo result: {}", strerror(r.code));
                assert_eq!(r.data, buf, "echo payload");
                assert!(self.results.is_empty(), "a result for another call");
                return Echo {
                    rtt: at - t,
                    seq,
                    start: t,
                    end: at,
                };
            }
        }
    }

    /// The next event of download `task`, if one arrived.
    fn next_dl(&mut self, task: u64) -> Option<Ev> {
        let e = self.dl.pop_front()?;
        assert_eq!(e.id, task, "an event of another download task");
        Some(e)
    }
}

/// What one download run saw.
struct Run {
    /// Download call to DONE.
    took: Duration,
    /// Download call to the last block counted in the client's stats.
    last_block: Duration,
    blocks_fetched: u64,
    bytes_fetched: u64,
    path: PathBuf,
    cpu: Duration,
}

/// Checks a DONE event and returns its path.
fn done_path(e: &Ev, size: u64) -> PathBuf {
    assert_eq!(
        e.kind,
        XXNET_EVENT_DOWNLOAD_DONE,
        "download ended with kind {} code {} ({}) after {} of {} bytes",
        e.kind,
        e.code,
        strerror(e.code),
        e.count,
        e.total
    );
    assert_eq!((e.count, e.total), (size, size), "DONE counts");
    PathBuf::from(String::from_utf8(e.data.clone()).expect("DONE path is UTF-8"))
}

/// Downloads the file and waits for DONE; `expect_bytes`: what the client
/// must still fetch (to time the last block).
fn download(c: &mut Client, src: &Source, expect_bytes: u64) -> Run {
    let cpu0 = cpu_time();
    let t = Instant::now();
    let task = check(
        c.ctx.download(SERVER, &src.md5, FILE_NAME, src.size),
        "download",
    );
    let mut last_block = None;
    loop {
        assert!(
            t.elapsed() < DOWNLOAD_CAP,
            "download: no DONE after {DOWNLOAD_CAP:?}"
        );
        let at = c.pump(10);
        if last_block.is_none() && c.ctx.files_stats().bytes_fetched >= expect_bytes {
            last_block = Some(at - t);
        }
        while let Some(e) = c.next_dl(task) {
            if e.kind == XXNET_EVENT_DOWNLOAD_PROGRESS {
                continue;
            }
            let path = done_path(&e, src.size);
            let took = e.at - t;
            let st = c.ctx.files_stats();
            check(c.ctx.download_release(task), "download_release");
            return Run {
                took,
                last_block: last_block.map_or(took, |l: Duration| l.min(took)),
                blocks_fetched: st.blocks_fetched,
                bytes_fetched: st.bytes_fetched,
                path,
                cpu: cpu_time() - cpu0,
            };
        }
    }
}

/// The source file and its identity.
struct Source {
    path: PathBuf,
    dir: PathBuf,
    size: u64,
    md5: String,
}

/// Fails loudly unless `path` holds the source's content.
fn verify(path: &Path, src: &Source) {
    let k = hash_file(path).unwrap_or_else(|e| panic!("hash {}: {e}", path.display()));
    assert_eq!(
        (k.hex(), k.size),
        (src.md5.clone(), src.size),
        "downloaded file {} differs from the source",
        path.display()
    );
}

/// Starts the server: serves the source's directory (timing its hashing).
fn start_server(src: &Source) -> Server {
    let (ctx, addr) = new_node(config(SERVER, None));
    cluster_set(&ctx, SERVER, &addr);
    check(ctx.set_service("echo", true), "set_service echo");
    let t = Instant::now();
    check(ctx.files_serve(src.dir.to_str().unwrap()), "files_serve");
    while ctx.files_stats().served_files < 1 {
        assert!(
            t.elapsed() < HASH_CAP,
            "server: directory not hashed after {HASH_CAP:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let d = t.elapsed();
    println!(
        "   server S (parts 3-5): files_serve → directory hashed in {:.0} ms ({:.0} MB/s; requests wait for it, so runs start after it)",
        d.as_secs_f64() * 1e3,
        mb_s(src.size, d)
    );
    Server {
        ctx: Arc::new(ctx),
        addr,
        seen: Mutex::new(HashMap::new()),
    }
}

// ----- part 3 ---------------------------------------------------------------------

fn download_runs(
    root: &TempRoot,
    server: &Server,
    src: &Source,
    base: Option<&Baselines>,
    runs: usize,
) {
    let mut all = Vec::new();
    let mut idle = Vec::new();
    for i in 0..runs {
        let cache = root.fresh(&format!("cache-d{i}"));
        let _rm = RmOnDrop(cache.clone());
        let mut c = Client::new(&format!("D{i}"), &cache, server);
        idle.extend_from_slice(&c.idle);
        let r = download(&mut c, src, src.size);
        assert!(r.path.starts_with(&cache), "DONE path outside the cache");
        drop(c);
        verify(&r.path, src);
        all.push(r);
    }
    let block = Config::default().download_block_size as u64;
    let took: Vec<f64> = all.iter().map(|r| r.took.as_secs_f64() * 1e3).collect();
    let last: Vec<f64> = all
        .iter()
        .map(|r| r.last_block.as_secs_f64() * 1e3)
        .collect();
    let tail: Vec<f64> = all
        .iter()
        .map(|r| (r.took - r.last_block).as_secs_f64() * 1e3)
        .collect();
    let cpu: Vec<f64> = all.iter().map(|r| r.cpu.as_secs_f64()).collect();
    let m = median(&took);
    let rate = src.size as f64 / (m / 1e3) / 1e6;
    println!(
        "3. xxnet download S → C over 127.0.0.1 (block {} KiB, window {}, fresh cache and context per run; {runs} runs)",
        block >> 10,
        Config::default().download_window
    );
    println!(
        "   download → DONE           median {m:>7.0} ms  {rate:>7.0} MB/s   (all ms: {})",
        list_ms(&took)
    );
    println!(
        "   last block written at median {:.0} ms ({:.0} MB/s); DONE a median {:.0} ms later (final md5 check, fsync, index save)",
        median(&last),
        src.size as f64 / (median(&last) / 1e3) / 1e6,
        median(&tail)
    );
    println!(
        "   blocks fetched per run: {} ({} bytes); CPU (whole process, both nodes) median {:.2} s per run; idle echo round trip before the runs: p50 {}",
        all[0].blocks_fetched,
        all[0].bytes_fetched,
        median(&cpu),
        ms(Lat::new(idle).pct(0.5))
    );
    match base {
        Some(b) => println!(
            "   xxnet / loopback TCP copy {:.2}; xxnet / cat {:.2} (throughput ratios, higher is better)",
            rate / b.tcp_mb_s,
            rate / b.cat_mb_s
        ),
        None => println!("   ratios to the baselines: n/a (part 2 not run)"),
    }
    println!("   md5 of every downloaded file matches the source");
}

// ----- part 4 -----------------------------------------------------------------------

fn resume(root: &TempRoot, server: &Server, src: &Source) {
    let cache = root.fresh("cache-resume");
    let _rm = RmOnDrop(cache.clone());
    let block = Config::default().download_block_size as u64;
    let total_blocks = src.size.div_ceil(block);

    // First run: cancelled at >= 50 %, as shown by a PROGRESS event or, if
    // sooner, by the client's bytes_fetched counter (PROGRESS comes every
    // 250 ms: too coarse for a small file).
    let mut c = Client::new("R1", &cache, server);
    let t = Instant::now();
    let task = check(
        c.ctx.download(SERVER, &src.md5, FILE_NAME, src.size),
        "download",
    );
    let mut cancelled_at = None;
    let mut failed = None;
    while failed.is_none() {
        assert!(t.elapsed() < DOWNLOAD_CAP, "resume: first run did not end");
        c.pump(2);
        let fetched = c.ctx.files_stats().bytes_fetched;
        if cancelled_at.is_none() && fetched * 2 >= src.size {
            check(c.ctx.download_cancel(task), "download_cancel");
            cancelled_at = Some((t.elapsed(), fetched, "bytes_fetched"));
        }
        while let Some(e) = c.next_dl(task) {
            match e.kind {
                XXNET_EVENT_DOWNLOAD_PROGRESS if cancelled_at.is_none() && e.count * 2 >= e.total => {
                    check(c.ctx.download_cancel(task), "download_cancel");
                    cancelled_at = Some((e.at - t, e.count, "a PROGRESS event"));
                }
                XXNET_EVENT_DOWNLOAD_PROGRESS => {}
                XXNET_EVENT_DOWNLOAD_FAILED => {
                    assert_eq!(
                        e.code,
                        XXNET_E_CANCELLED,
                        "first run failed: {}",
                        strerror(e.code)
                    );
                    failed = Some(e);
                }
                _ => panic!(
                    "resume: first run ended with kind {} before it was cancelled (the file fetched in under one PROGRESS interval?)",
                    e.kind
                ),
            }
        }
    }
    let (cancel_t, cancel_bytes, trigger) = cancelled_at.expect("cancelled");
    // Let blocks already on their way settle, then read what the first run kept.
    std::thread::sleep(Duration::from_millis(100));
    let first = c.ctx.files_stats();
    drop(c);

    // Second run: a new context on the same cache.
    let mut c = Client::new("R2", &cache, server);
    let left = src.size - first.bytes_fetched;
    let r = download(&mut c, src, left);
    drop(c);
    verify(&r.path, src);
    println!(
        "4. resume: cancelled at {:.1} % ({} of {} bytes, seen in {trigger}, {:.0} ms after the start); first context fetched {} blocks ({:.1} %), then freed",
        cancel_bytes as f64 * 100.0 / src.size as f64,
        cancel_bytes,
        src.size,
        cancel_t.as_secs_f64() * 1e3,
        first.blocks_fetched,
        first.blocks_fetched as f64 * 100.0 / total_blocks as f64
    );
    println!(
        "   new context, same cache: DONE after {:.0} ms (last block at {:.0} ms, then the final md5 check of the whole file)",
        r.took.as_secs_f64() * 1e3,
        r.last_block.as_secs_f64() * 1e3
    );
    println!(
        "   blocks_fetched second run {} of {} total ({:.1} %; first + second = {}{}); resumed part {:.0} MB/s to DONE, {:.0} MB/s to the last block",
        r.blocks_fetched,
        total_blocks,
        r.blocks_fetched as f64 * 100.0 / total_blocks as f64,
        first.blocks_fetched + r.blocks_fetched,
        if first.blocks_fetched + r.blocks_fetched == total_blocks {
            ""
        } else {
            " — NOT the total: blocks fetched twice or lost"
        },
        mb_s(r.bytes_fetched, r.took),
        mb_s(r.bytes_fetched, r.last_block)
    );
    println!("   md5 of the resumed file matches the source");
}

// ----- part 5 -------------------------------------------------------------------------

fn calls_beside_download(root: &TempRoot, server: &Server, src: &Source, max_downloads: usize) {
    let mut calls: Vec<Echo> = Vec::new();
    let mut idle = Vec::new();
    let mut per_dl = Vec::new();
    let mut dl_ms = Vec::new();
    let mut would_block = 0;
    let mut rq_wait: HashMap<String, u64> = HashMap::new();
    let start = Instant::now();
    let mut i = 0;
    while i < max_downloads && calls.len() < WANT_SAMPLES && start.elapsed() < PHASE_CAP {
        let cache = root.fresh(&format!("cache-c{i}"));
        let _rm = RmOnDrop(cache.clone());
        let mut c = Client::new(&format!("E{i}"), &cache, server);
        idle.extend_from_slice(&c.idle);
        let rq0 = run_delays();
        let t = Instant::now();
        let task = check(
            c.ctx.download(SERVER, &src.md5, FILE_NAME, src.size),
            "download",
        );
        let before = calls.len();
        let done = loop {
            assert!(t.elapsed() < DOWNLOAD_CAP, "part 5: download did not end");
            let rt = c.echo();
            let mut done = None;
            while let Some(e) = c.next_dl(task) {
                if e.kind != XXNET_EVENT_DOWNLOAD_PROGRESS {
                    done = Some(e);
                }
            }
            match done {
                // The call started while the download ran (DONE came during it or later).
                Some(e) => {
                    if rt.start < e.at {
                        calls.push(rt);
                    }
                    break e;
                }
                None => calls.push(rt),
            }
        };
        let path = done_path(&done, src.size);
        for (name, ns) in waited(&rq0, &run_delays()) {
            *rq_wait.entry(name).or_default() += ns;
        }
        dl_ms.push((done.at - t).as_secs_f64() * 1e3);
        check(c.ctx.download_release(task), "download_release");
        would_block += c.would_block;
        drop(c);
        verify(&path, src);
        per_dl.push(calls.len() - before);
        i += 1;
    }
    let n = calls.len();
    let lat = Lat::new(calls.iter().map(|c| c.rtt.as_secs_f64() * 1e6).collect());
    let p99 = lat.pct(0.99);
    // The slowest 1 %, split at the moment the server's host thread got the request.
    let seen = server.seen.lock().unwrap();
    let legs: Vec<(f64, f64)> = calls
        .iter()
        .filter(|c| c.rtt.as_secs_f64() * 1e6 >= p99)
        .filter_map(|c| {
            let at = *seen.get(&c.seq)?;
            Some((
                (at - c.start).as_secs_f64() * 1e6,
                (c.end - at).as_secs_f64() * 1e6,
            ))
        })
        .collect();
    drop(seen);
    let req = Lat::new(legs.iter().map(|l| l.0).collect());
    let rep = Lat::new(legs.iter().map(|l| l.1).collect());
    let idle = Lat::new(idle);
    println!(
        "5. 64 B echo calls C → S on the default lane, one at a time, while a {} MiB download S → C runs ({} download(s), a fresh client each)",
        src.size >> 20,
        per_dl.len()
    );
    println!(
        "   {n} calls during downloads (per download: {}); p50 {}, p99 {}, p99.9 {}, max {}; target p99 < {TARGET_P99_MS} ms: {}",
        per_dl
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ms(lat.pct(0.50)),
        ms(p99),
        ms(lat.pct(0.999)),
        ms(lat.max()),
        if p99 / 1000.0 < TARGET_P99_MS { "met" } else { "MISSED" }
    );
    println!(
        "   same calls on the idle link (warm-up, {} calls): p50 {}, p99 {}; download beside the calls: median {:.0} ms ({:.0} MB/s); {} would-block{}",
        idle.0.len(),
        ms(idle.pct(0.50)),
        ms(idle.pct(0.99)),
        median(&dl_ms),
        src.size as f64 / (median(&dl_ms) / 1e3) / 1e6,
        would_block,
        if n < WANT_SAMPLES {
            format!("; only {n} of the {WANT_SAMPLES} samples wanted (capped)")
        } else {
            String::new()
        }
    );
    println!(
        "   the {} calls >= p99 split where S's host thread got the request: request leg (C call → S host) p50 {}, max {}; reply leg (S host → C result) p50 {}, max {}",
        legs.len(),
        ms(req.pct(0.5)),
        ms(req.max()),
        ms(rep.pct(0.5)),
        ms(rep.max())
    );
    let wall: f64 = dl_ms.iter().sum::<f64>() / 1e3;
    let mut rq: Vec<(String, u64)> = rq_wait.into_iter().collect();
    rq.sort_by_key(|x| std::cmp::Reverse(x.1));
    println!(
        "   CPU contention during the downloads: this process's threads waited {:.2} s for a CPU per second of download ({}); load average now {}",
        rq.iter().map(|x| x.1).sum::<u64>() as f64 / 1e9 / wall,
        rq.iter()
            .map(|(n, ns)| format!("{n} {:.2}", *ns as f64 / 1e9 / wall))
            .collect::<Vec<_>>()
            .join(", "),
        load_average()
    );
    println!("   md5 of every downloaded file matches the source");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let quick = std::env::var("XXNET_BENCH_QUICK").is_ok_and(|v| v == "1");
    let only = std::env::var("XXNET_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    let t0 = Instant::now();
    println!(
        "xxnet download benchmark (node S serves, client contexts download over 127.0.0.1, safe Rust API){}; {} CPUs; load average {}",
        if quick { ", quick mode" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );

    let root = TempRoot::new();
    // The source plus one copy (TCP copy or download cache) exist at a time.
    let free = free_space(&root.0);
    let need = |size: u64| 2 * size + (256 << 20);
    let mut size = if quick { QUICK_SIZE } else { FULL_SIZE };
    if free < need(size) && size > QUICK_SIZE {
        println!(
            "   only {} MiB free in {}: using a {} MiB file instead of {} MiB",
            free >> 20,
            root.0.display(),
            QUICK_SIZE >> 20,
            size >> 20
        );
        size = QUICK_SIZE;
    }
    if free < need(size) {
        println!(
            "   only {} MiB free in {} ({} MiB needed): nothing run",
            free >> 20,
            root.0.display(),
            need(size) >> 20
        );
        return;
    }

    // Part 1 always runs: the others need its file.
    let dir = root.fresh("served");
    let path = dir.join(FILE_NAME);
    let (wrote, synced) = make_file(&path, size);
    let t = Instant::now();
    let key = hash_file(&path).unwrap();
    let hashed = t.elapsed();
    assert_eq!(key.size, size);
    let src = Source {
        path,
        dir,
        size,
        md5: key.hex(),
    };
    println!(
        "1. source: {} MiB of xorshift64* bytes in {} ({} GiB free before); written in {:.0} ms ({:.0} MB/s) + fsync {:.0} ms",
        size >> 20,
        root.0.display(),
        free >> 30,
        wrote.as_secs_f64() * 1e3,
        mb_s(size, wrote),
        synced.as_secs_f64() * 1e3
    );
    println!(
        "   md5 (hash_file: md5 + a CRC-32 per 64 KiB, the server's hashing) {:.0} ms, {:.0} MB/s; md5 {}",
        hashed.as_secs_f64() * 1e3,
        mb_s(size, hashed),
        src.md5
    );

    let base = run("2").then(|| baselines(&root, &src.path, size));

    if run("3") || run("4") || run("5") {
        let server = start_server(&src);
        let stop = AtomicBool::new(false);
        let echoed = AtomicU64::new(0);
        let lost = AtomicU64::new(0);
        std::thread::scope(|s| {
            let host = std::thread::Builder::new()
                .name("server-host".into())
                .spawn_scoped(s, || {
                    serve_echo(&server.ctx, &stop, &echoed, &lost, &server.seen)
                })
                .unwrap();
            let parts = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if run("3") {
                    download_runs(&root, &server, &src, base.as_ref(), 3);
                }
                if run("4") {
                    resume(&root, &server, &src);
                }
                if run("5") {
                    calls_beside_download(&root, &server, &src, if quick { 8 } else { 3 });
                }
            }));
            stop.store(true, Ordering::Release);
            let served = host.join();
            if let Err(p) = parts {
                std::panic::resume_unwind(p);
            }
            if let Err(p) = served {
                std::panic::resume_unwind(p);
            }
        });
        let st = server.ctx.files_stats();
        println!(
            "   server S: {} blocks ({} MiB) served, {} echo calls answered, {} replies reported SEND_FAILED (clients freed before acknowledging)",
            st.blocks_served,
            st.bytes_served >> 20,
            echoed.load(Ordering::Relaxed),
            lost.load(Ordering::Relaxed)
        );
    }
    drop(root);
    println!("total {:.1?}", t0.elapsed());
}
