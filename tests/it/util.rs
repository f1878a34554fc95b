//! Helpers shared by the integration tests: free ports, private redis-servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
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
