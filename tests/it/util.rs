//! Helpers shared by the integration tests: free ports, private
//! redis-servers, the one poll loop ([`wait_until`]) and the one harness for
//! the binary ([`TestCommand`]: a run to the end, or a long-running
//! [`Spawned`] process).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, from below the kernel's ephemeral
/// range (32768+): a port the OS hands out for port 0 can be taken by any
/// outgoing connection (these tests open many) between the check and the
/// bind. A process-wide counter keeps parallel tests apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        LOW + (std::process::id() % 1000) as u16 * 12,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = LOW + p.wrapping_sub(LOW) % SPAN;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A redis-server of this test's own on a free port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_on(free_port())
    }

    /// Starts on `port` (for restarts on the same port) and waits until it answers PING.
    pub fn start_on(port: u16) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed");
        let server = RedisServer { port, child };
        server.wait_ready(Duration::from_secs(10));
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "redis-server on port {} did not answer within {limit:?}",
            self.port
        );
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A blocking RESP connection for tests that talk to Redis directly.
pub struct RespClient {
    reader: BufReader<TcpStream>,
}

impl RespClient {
    pub fn connect(port: u16) -> RespClient {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        RespClient {
            reader: BufReader::new(stream),
        }
    }

    /// Sends one command as a RESP array of bulk strings.
    pub fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&out).unwrap();
    }

    /// Reads one reply; arrays come back flattened into their bulk strings,
    /// integers and simple strings as their text.
    pub fn read(&mut self) -> Vec<Vec<u8>> {
        let mut line = Vec::new();
        self.reader
            .read_until(b'\n', &mut line)
            .expect("redis reply");
        let body = line[1..line.len() - 2].to_vec();
        match line[0] {
            b'*' => {
                let n: i64 = String::from_utf8_lossy(&body).parse().unwrap();
                (0..n.max(0)).flat_map(|_| self.read()).collect()
            }
            b'$' => {
                let n: i64 = String::from_utf8_lossy(&body).parse().unwrap();
                if n < 0 {
                    return vec![];
                }
                let mut data = vec![0u8; n as usize + 2];
                self.reader.read_exact(&mut data).unwrap();
                data.truncate(n as usize);
                vec![data]
            }
            b'-' => panic!("redis error: {}", String::from_utf8_lossy(&body)),
            _ => vec![body],
        }
    }
}

/// Polls `probe` every 10 ms until it answers `Ok`, and returns that; fails
/// the test after `limit` with `what` and the last `Err` it answered (what
/// was seen instead). The one poll loop of the tests: readiness and state
/// changes come from `/healthz` or the sockets, never from sleeping.
pub async fn wait_until<T, E: std::fmt::Debug, F: Future<Output = Result<T, E>>>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "never {what}: {last:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`wait_until`] for tests without a runtime: polls `probe` every 10 ms
/// on this thread.
pub fn wait_until_blocking<T, E: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match probe() {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(Instant::now() < deadline, "never {what}: {last:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One run of the `topo` binary, built up like ripgrep's `TestCommand`:
/// by default in the crate root, with `REDIS_URL` removed and `NO_COLOR`
/// set, so that the environment of whoever runs the tests does not leak in.
/// Every failed expectation panics with [`Ran`]'s report: the command line,
/// the topology file (when one was named), stdout and stderr.
pub struct TestCommand {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    topology: Option<std::path::PathBuf>,
}

impl TestCommand {
    pub fn new() -> TestCommand {
        // TOPO_BIN: the ignored measurements may run a release build.
        let program =
            std::env::var_os("TOPO_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_topo").into());
        let mut cmd = Command::new(program);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("REDIS_URL")
            .env("NO_COLOR", "1");
        TestCommand {
            cmd,
            stdin: None,
            topology: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<std::ffi::OsStr>) -> &mut TestCommand {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<std::ffi::OsStr>>(
        &mut self,
        args: impl IntoIterator<Item = S>,
    ) -> &mut TestCommand {
        self.cmd.args(args);
        self
    }

    pub fn env(
        &mut self,
        key: impl AsRef<std::ffi::OsStr>,
        value: impl AsRef<std::ffi::OsStr>,
    ) -> &mut TestCommand {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<std::ffi::OsStr>) -> &mut TestCommand {
        self.cmd.env_remove(key);
        self
    }

    /// Runs it with `RLIMIT_NOFILE` set to `limit` (soft and hard).
    pub fn descriptor_limit(&mut self, limit: u64) -> &mut TestCommand {
        use std::os::unix::process::CommandExt;
        // SAFETY: setrlimit is async-signal-safe.
        unsafe {
            self.cmd.pre_exec(move || {
                let l = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<std::path::Path>) -> &mut TestCommand {
        self.cmd.current_dir(dir);
        self
    }

    pub fn stdin(&mut self, bytes: impl Into<Vec<u8>>) -> &mut TestCommand {
        self.stdin = Some(bytes.into());
        self
    }

    /// The topology file this run is about, shown when an expectation
    /// fails (relative paths are read from the current directory given).
    pub fn topology(&mut self, path: impl AsRef<std::path::Path>) -> &mut TestCommand {
        self.topology = Some(path.as_ref().to_path_buf());
        self
    }

    /// The topology file's path and text, for a failure report.
    fn topology_text(&self) -> Option<(String, String)> {
        self.topology.as_ref().map(|path| {
            let full = match self.cmd.get_current_dir() {
                Some(dir) => dir.join(path),
                None => path.clone(),
            };
            let text = std::fs::read(&full)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|e| format!("<unreadable: {e}>"));
            (path.display().to_string(), text)
        })
    }

    /// Starts a long-running command (`topo up`, `topo test --run`) and
    /// returns at once; its output is collected as it comes. Killed on drop.
    pub fn spawn(&mut self) -> Spawned {
        let line = format!("{:?}", self.cmd);
        let topology = self.topology_text();
        let mut child = self
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run {line}: {e}"));
        let ended = Arc::new(AtomicUsize::new(0));
        let stdout = collect(child.stdout.take().expect("piped stdout"), &ended);
        let stderr = collect(child.stderr.take().expect("piped stderr"), &ended);
        Spawned {
            so_far: SoFar {
                line,
                topology,
                stdout,
                stderr,
                ended,
            },
            child,
        }
    }

    /// Runs to the end and returns what it printed, whatever the exit code.
    pub fn run(&mut self) -> Ran {
        let line = format!("{:?}", self.cmd);
        let topology = self.topology_text();
        let output = match self.stdin.take() {
            None => self.cmd.stdin(Stdio::null()).output(),
            Some(bytes) => self
                .cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    let mut input = child.stdin.take().expect("piped stdin");
                    // A writer thread: a child that prints before reading
                    // would otherwise deadlock against a full pipe.
                    let writer = std::thread::spawn(move || {
                        let _ = input.write_all(&bytes);
                    });
                    let output = child.wait_with_output();
                    let _ = writer.join();
                    output
                }),
        };
        let output = output.unwrap_or_else(|e| panic!("could not run {line}: {e}"));
        Ran {
            line,
            topology,
            output,
        }
    }

    /// Runs and expects exit code `code`.
    #[track_caller]
    pub fn expect_code(&mut self, code: i32) -> Ran {
        let ran = self.run();
        ran.expect_code(code);
        ran
    }

    /// Runs, expects success, and returns stdout.
    #[track_caller]
    pub fn stdout(&mut self) -> String {
        self.expect_code(0).stdout()
    }
}

impl Default for TestCommand {
    fn default() -> TestCommand {
        TestCommand::new()
    }
}

/// What a [`TestCommand`] printed; its `Display` is the failure report.
pub struct Ran {
    line: String,
    topology: Option<(String, String)>,
    pub output: std::process::Output,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// Stdout then stderr, as one text.
    pub fn all(&self) -> String {
        self.stdout() + &self.stderr()
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Ran {
        self.ensure(
            self.code() == Some(code),
            &format!("exit code {code}, got {:?}", self.output.status),
        )
    }

    /// Fails the test with `expected` and the full report unless `ok`.
    #[track_caller]
    pub fn ensure(&self, ok: bool, expected: &str) -> &Ran {
        if !ok {
            panic!("expected {expected}\n{self}");
        }
        self
    }

    /// Expects `needle` in stdout.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Ran {
        self.ensure(
            self.stdout().contains(needle),
            &format!("stdout to contain {needle:?}"),
        )
    }

    /// Expects `needle` in stderr.
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Ran {
        self.ensure(
            self.stderr().contains(needle),
            &format!("stderr to contain {needle:?}"),
        )
    }
}

/// The raw output, for tests that read bytes or the status directly.
impl std::ops::Deref for Ran {
    type Target = std::process::Output;
    fn deref(&self) -> &std::process::Output {
        &self.output
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.line)?;
        writeln!(f, "status: {}", self.output.status)?;
        if let Some((path, text)) = &self.topology {
            writeln!(f, "--- topology {path} ---\n{text}")?;
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout())?;
        write!(f, "--- stderr ---\n{}", self.stderr())
    }
}

/// Everything `stream` says, gathered by a thread of its own; `ended`
/// counts it at EOF (when the process is gone).
fn collect(stream: impl Read + Send + 'static, ended: &Arc<AtomicUsize>) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let (sink, ended) = (text.clone(), ended.clone());
    std::thread::spawn(move || {
        let mut stream = BufReader::new(stream);
        let mut line = Vec::new();
        // Bytes that are not UTF-8 are shown, not a reason to stop reading.
        while stream.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
        ended.fetch_add(1, Ordering::SeqCst);
    });
    text
}

/// A long-running `topo` from [`TestCommand::spawn`], killed on drop. Its
/// `Display` is the failure report: the command, the topology, and the
/// stdout and stderr so far.
pub struct Spawned {
    so_far: SoFar,
    pub child: Child,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.so_far.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.so_far.stderr.lock().unwrap().clone()
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the pid of our own child, not reaped before drop.
        assert_eq!(unsafe { libc::kill(self.pid() as libc::pid_t, signal) }, 0);
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, then [`Spawned::wait_exit`]: all its output is read.
    pub fn kill(&mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.wait_exit(OUTPUT_ENDS)
    }

    /// Waits until stdout contains `needle`.
    pub async fn wait_stdout(&self, needle: &str, limit: Duration) {
        wait_until(&format!("{needle:?} on stdout"), limit, || async {
            if self.stdout().contains(needle) {
                Ok(())
            } else {
                Err(&self.so_far)
            }
        })
        .await
    }

    /// Waits until `count` lines of stderr contain `needle`.
    pub async fn wait_stderr(&self, needle: &str, count: usize, limit: Duration) {
        wait_until(&format!("{needle:?} ×{count} on stderr"), limit, || async {
            if self.stderr().matches(needle).count() >= count {
                Ok(())
            } else {
                Err(&self.so_far)
            }
        })
        .await
    }

    /// Waits (this thread) until the process exits and all its output is
    /// read; its status.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let (report, child) = (&self.so_far, &mut self.child);
        let status = wait_until_blocking("the process exits", limit, || {
            child.try_wait().unwrap().ok_or(report)
        });
        wait_until_blocking("its output ends", OUTPUT_ENDS, || report.ended());
        status
    }

    /// Waits (this thread) until stdout contains `needle`.
    pub fn wait_stdout_blocking(&self, needle: &str, limit: Duration) {
        wait_until_blocking(&format!("{needle:?} on stdout"), limit, || {
            if self.stdout().contains(needle) {
                Ok(())
            } else {
                Err(&self.so_far)
            }
        })
    }

    /// [`Spawned::wait_exit`] for async tests.
    pub async fn exited(&mut self, limit: Duration) -> ExitStatus {
        let (report, child) = (&self.so_far, &mut self.child);
        let status = wait_until("the process exits", limit, || {
            let done = child.try_wait().unwrap();
            async move { done.ok_or(report) }
        })
        .await;
        wait_until("its output ends", OUTPUT_ENDS, || async { report.ended() }).await;
        status
    }
}

/// How long the output of an exited process may take to be read.
const OUTPUT_ENDS: Duration = Duration::from_secs(5);

/// What a [`Spawned`] report shows: the output so far.
struct SoFar {
    line: String,
    topology: Option<(String, String)>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    /// How many of stdout and stderr reached EOF.
    ended: Arc<AtomicUsize>,
}

impl SoFar {
    fn ended(&self) -> Result<(), &SoFar> {
        if self.ended.load(Ordering::SeqCst) == 2 {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Display for SoFar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "command: {}", self.line)?;
        if let Some((path, text)) = &self.topology {
            writeln!(f, "--- topology {path} ---\n{text}")?;
        }
        writeln!(f, "--- stdout ---\n{}", self.stdout.lock().unwrap())?;
        write!(f, "--- stderr ---\n{}", self.stderr.lock().unwrap())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Display for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.so_far.fmt(f)
    }
}

/// Shown as it is (lines, not an escaped string) when a wait fails.
impl std::fmt::Debug for SoFar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n{self}")
    }
}

/// Waits until the node on `http` answers `/healthz` from a process other
/// than `parent` (an `up --process` child) with its first link up.
pub async fn wait_child_link_up(http: u16, parent: u32, limit: Duration) {
    wait_until("the child's link up", limit, || async {
        let h = topo::http_get::get(
            format!("127.0.0.1:{http}"),
            "/healthz",
            Duration::from_secs(2),
            1 << 20,
        )
        .await
        .map_err(|e| e.to_string())?;
        let h: serde_json::Value = serde_json::from_str(&h).map_err(|e| e.to_string())?;
        let child = h["pid"].as_u64() != Some(u64::from(parent));
        if child && h["links"][0]["state"] == "up" {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
}
