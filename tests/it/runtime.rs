//! The runtime of `topo up` over real sockets: chat nodes, ZeroMQ and Redis
//! links, relays, readiness, `/healthz`, shutdown and start errors.

use crate::chat::*;
use crate::util::RedisServer;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use topo::model::{NodeId, Topology};
use topo::node::close::CloseCode;
use topo::runtime::Running;

async fn start(t: &Topology) -> Running {
    timeout(LIMIT, Running::start(t))
        .await
        .expect("start timed out")
        .expect("start failed")
}

async fn links_up(running: &Running) {
    running.wait_links_up(LIMIT).await.expect("links up");
}

fn http_port(t: &Topology, name: &str) -> u16 {
    t.node(t.node_id(name).unwrap()).http.unwrap().port()
}

#[tokio::test]
async fn single_node_delivers_to_every_client_including_the_sender() {
    let t = topology(vec![node("a", Some(port()))], vec![]);
    let running = start(&t).await;
    let port = http_port(&t, "a");
    let mut alice = Client::connect(port).await;
    // The chapter's page connects to the root, not /ws.
    let mut bob = Client::connect_path(port, "/").await;
    alice.send("hello world").await;
    assert_eq!(alice.recv().await, "hello world");
    assert_eq!(bob.recv().await, "hello world");
    bob.send("hi").await;
    assert_eq!(alice.recv().await, "hi");
    assert_eq!(bob.recv().await, "hi");
    running.shutdown().await;
}

/// The book's mesh: every node subscribes to the two others.
fn zmq_mesh() -> Topology {
    let pubs = [port(), port(), port()];
    let nodes = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let subs: Vec<u16> = (0..3).filter(|&j| j != i).map(|j| pubs[j]).collect();
            with_zmq(node(name, Some(port())), Some(pubs[i]), &subs)
        })
        .collect();
    topology(nodes, vec![])
}

const MESH: [(usize, usize); 6] = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)];

#[tokio::test]
async fn zmq_mesh_delivers_exactly_once_everywhere() {
    let t = zmq_mesh();
    let running = start(&t).await;
    links_up(&running).await;
    let mut clients = Vec::new();
    for name in ["a", "b", "c"] {
        clients.push(Client::connect(http_port(&t, name)).await);
    }
    probe_links(&mut clients, &MESH).await;

    clients[0].send("from a, with spaces").await;
    for c in clients.iter_mut() {
        c.wait_for("from a, with spaces").await;
    }
    clients[1].send("fence").await;
    for c in clients.iter_mut() {
        assert_eq!(count(&c.until("fence").await, "from a, with spaces"), 0);
    }
    running.shutdown().await;
}

fn redis_trio(redis: &RedisServer, patterns: &[&str]) -> Topology {
    let nodes = ["a", "b", "c"]
        .iter()
        .map(|name| {
            with_redis(
                node(name, Some(port())),
                "chat_messages",
                &["chat_messages"],
                patterns,
            )
        })
        .collect();
    topology(nodes, vec![broker(redis.port)])
}

#[tokio::test]
async fn redis_trio_delivers_once_and_drops_own_echo() {
    let redis = RedisServer::start();
    let t = redis_trio(&redis, &[]);
    let running = start(&t).await;
    let mut a = Client::connect(http_port(&t, "a")).await;
    let mut b = Client::connect(http_port(&t, "b")).await;
    let mut c = Client::connect(http_port(&t, "c")).await;
    // Subscriptions are confirmed at start: no probing needed.
    a.send("one two").await;
    assert_eq!(a.recv().await, "one two");
    assert_eq!(b.recv().await, "one two");
    assert_eq!(c.recv().await, "one two");
    // b's message leaves Redis after a's echo: anything duplicated shows before it.
    b.send("fence").await;
    assert_eq!(a.until("fence").await, Vec::<String>::new());
    assert_eq!(b.until("fence").await, Vec::<String>::new());
    assert_eq!(c.until("fence").await, Vec::<String>::new());
    running.shutdown().await;
}

/// The other clients of `redis` than the caller, as (subscriptions, patterns) per connection.
fn redis_clients(redis: &RedisServer) -> Vec<(String, String)> {
    let mut resp = crate::util::RespClient::connect(redis.port);
    resp.send(&[b"CLIENT", b"LIST"]);
    let list = String::from_utf8(resp.read().concat()).unwrap();
    let field = |line: &str, name: &str| {
        let key = format!("{name}=");
        let value = line.split(' ').find_map(|f| f.strip_prefix(key.as_str()));
        value.unwrap_or_default().to_owned()
    };
    list.lines()
        .filter(|l| !l.contains("cmd=client|list"))
        .map(|l| (field(l, "sub"), field(l, "psub")))
        .collect()
}

#[tokio::test]
async fn redis_nodes_of_one_process_share_one_publishing_connection() {
    let redis = RedisServer::start();
    let t = redis_trio(&redis, &[]);
    let running = start(&t).await;
    let mut clients = crate::util::wait_until("the probe's connection closed", LIMIT, || async {
        let clients = redis_clients(&redis);
        if clients.len() <= 4 {
            Ok(clients)
        } else {
            Err(clients)
        }
    })
    .await;
    clients.sort();
    // One subscribing connection per node (the echo rule needs them apart), one publishing.
    let one = ("1".to_owned(), "0".to_owned());
    let none = ("0".to_owned(), "0".to_owned());
    assert_eq!(clients, [none, one.clone(), one.clone(), one]);
    let mut a = Client::connect(http_port(&t, "a")).await;
    let mut b = Client::connect(http_port(&t, "b")).await;
    b.send("shared").await;
    assert_eq!(a.recv().await, "shared");
    assert_eq!(b.recv().await, "shared");
    running.shutdown().await;
    crate::util::wait_until("every connection closed", LIMIT, || async {
        let clients = redis_clients(&redis);
        if clients.is_empty() {
            Ok(())
        } else {
            Err(clients)
        }
    })
    .await;
}

#[tokio::test]
async fn redis_exact_and_pattern_subscription_give_two_deliveries_and_no_echo() {
    let redis = RedisServer::start();
    // A pattern without wildcards matches its own channel under Redis's glob.
    let t = redis_trio(&redis, &["chat_messages"]);
    let running = start(&t).await;
    let mut a = Client::connect(http_port(&t, "a")).await;
    let mut b = Client::connect(http_port(&t, "b")).await;
    a.send("twice").await;
    assert_eq!(a.recv().await, "twice");
    assert_eq!(b.recv().await, "twice");
    assert_eq!(b.recv().await, "twice");
    b.send("fence").await;
    assert_eq!(a.until("fence").await, Vec::<String>::new());
    running.shutdown().await;
}

#[tokio::test]
async fn a_sub_started_before_its_pub_receives_once_the_pub_is_up() {
    let (pub_port, a_http, b_http) = (port(), port(), port());
    let t = topology(
        vec![
            with_zmq(node("a", Some(a_http)), Some(pub_port), &[]),
            with_zmq(node("b", Some(b_http)), None, &[pub_port]),
        ],
        vec![],
    );
    let late = timeout(LIMIT, Running::start_nodes(&t, [NodeId(1)]))
        .await
        .unwrap()
        .unwrap();
    let mut b = Client::connect(b_http).await;
    // b is ready without its upstream.
    assert!(
        late.wait_links_up(Duration::from_millis(300))
            .await
            .is_err()
    );
    let early = timeout(LIMIT, Running::start_nodes(&t, [NodeId(0)]))
        .await
        .unwrap()
        .unwrap();
    late.wait_links_up(LIMIT)
        .await
        .expect("b's sub connects once a's pub is up");
    let a = Client::connect(a_http).await;
    let mut clients = vec![a, b];
    probe_links(&mut clients, &[(0, 1)]).await;
    clients[0].send("late but here").await;
    b = clients.pop().unwrap();
    b.wait_for("late but here").await;
    early.shutdown().await;
    late.shutdown().await;
}

#[tokio::test]
async fn relay_bridges_zmq_to_redis_and_never_back_onto_redis() {
    let redis = RedisServer::start();
    let (z_pub, z_http, r_http) = (port(), port(), port());
    let mut bridge = with_zmq(node("bridge", None), None, &[z_pub]);
    bridge = with_redis(bridge, "chat_messages", &["chat_messages"], &[]);
    bridge.relay = true;
    let t = topology(
        vec![
            with_zmq(node("z", Some(z_http)), Some(z_pub), &[]),
            bridge,
            with_redis(
                node("r", Some(r_http)),
                "chat_messages",
                &["chat_messages"],
                &[],
            ),
        ],
        vec![broker(redis.port)],
    );
    let running = start(&t).await;
    links_up(&running).await;
    let mut clients = vec![Client::connect(z_http).await, Client::connect(r_http).await];
    probe_links(&mut clients, &[(0, 1)]).await;
    let (z, r) = clients.split_at_mut(1);
    let (z, r) = (&mut z[0], &mut r[0]);

    z.send("over the bridge").await;
    r.wait_for("over the bridge").await;

    let bridge = running.node("bridge").unwrap();
    let before = bridge.router.counters.incoming();
    r.send("from redis").await;
    assert_eq!(r.recv().await, "from redis");
    // Once the bridge has it, a re-publication onto Redis would precede the fence.
    crate::util::wait_until("the bridge received the redis message", LIMIT, || async {
        match bridge.router.counters.incoming() {
            n if n == before => Err(n),
            _ => Ok(()),
        }
    })
    .await;
    z.send("fence").await;
    assert_eq!(count(&r.until("fence").await, "from redis"), 0);
    running.shutdown().await;
}

#[tokio::test]
async fn healthz_reports_node_clients_links_and_counters() {
    let redis = RedisServer::start();
    let (http, pub_port, up_port) = (port(), port(), port());
    let n = with_zmq(node("a", Some(http)), Some(pub_port), &[up_port]);
    let t = topology(
        vec![with_redis(n, "chat_messages", &["chat_messages"], &[])],
        vec![broker(redis.port)],
    );
    let running = start(&t).await;
    let mut client = Client::connect(http).await;
    client.send("counted").await;
    assert_eq!(client.recv().await, "counted");

    let (status, body) = http_get(http, "/healthz").await;
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["node"], "a");
    assert_eq!(health["generation"], 0);
    assert_eq!(health["clients"], 1);
    assert_eq!(health["messages"]["in"], 1);
    let links = health["links"].as_array().unwrap();
    assert_eq!(links[0]["kind"], "zmq-pub");
    assert_eq!(links[0]["endpoint"], format!("tcp://127.0.0.1:{pub_port}"));
    assert_eq!(links[0]["state"], "up");
    assert_eq!(links[1]["kind"], "zmq-sub");
    assert_eq!(links[1]["endpoint"], format!("tcp://127.0.0.1:{up_port}"));
    assert_eq!(links[1]["state"], "connecting");
    assert_eq!(links[2]["kind"], "redis");
    assert_eq!(
        links[2]["broker"],
        format!("redis://127.0.0.1:{}", redis.port)
    );
    assert_eq!(links[2]["state"], "up");
    // The PUB frame is sent at once; the PUBLISH is acknowledged a moment later.
    crate::util::wait_until("out at 2", LIMIT, || async {
        let (_, body) = http_get(http, "/healthz").await;
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        if health["messages"]["out"] == 2 {
            Ok(())
        } else {
            Err(health)
        }
    })
    .await;
    running.shutdown().await;
}

#[tokio::test]
async fn http_serves_the_page_and_404_elsewhere() {
    let http = port();
    let running = start(&topology(vec![node("a", Some(http))], vec![])).await;
    let (status, body) = http_get(http, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"), "{body}");
    assert_eq!(http_get(http, "/nope").await.0, 404);
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_going_away_and_is_quick() {
    let (http, pub_port) = (port(), port());
    let t = topology(
        vec![with_zmq(node("a", Some(http)), Some(pub_port), &[port()])],
        vec![],
    );
    let running = start(&t).await;
    let mut clients = [Client::connect(http).await, Client::connect(http).await];
    clients[0].send("before").await;
    let began = Instant::now();
    running.shutdown().await;
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "took {:?}",
        began.elapsed()
    );
    for c in clients.iter_mut() {
        let frame = c.close_frame().await.expect("a close frame with a code");
        assert_eq!(u16::from(frame.code), u16::from(CloseCode::GoingAway));
    }
    // Everything is released: the ports can be bound again.
    std::net::TcpListener::bind(("127.0.0.1", http)).expect("http port released");
    std::net::TcpListener::bind(("127.0.0.1", pub_port)).expect("pub port released");
}

#[tokio::test]
async fn a_taken_port_names_node_and_address_and_stops_the_others() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    let first = port();
    let t = topology(vec![node("a", Some(first)), node("b", Some(busy))], vec![]);
    let err = match timeout(LIMIT, Running::start(&t)).await.unwrap() {
        Ok(_) => panic!("started on a taken port"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        err,
        format!("node b: cannot bind http 127.0.0.1:{busy}: address in use")
    );
    std::net::TcpListener::bind(("127.0.0.1", first)).expect("node a was stopped");
}

#[tokio::test]
async fn an_unreachable_redis_names_node_and_broker() {
    let t = topology(
        vec![with_redis(
            node("r", Some(port())),
            "chat_messages",
            &["chat_messages"],
            &[],
        )],
        vec![broker(crate::util::free_port())],
    );
    let err = match timeout(LIMIT, Running::start(&t)).await.unwrap() {
        Ok(_) => panic!("started without redis"),
        Err(e) => e.to_string(),
    };
    let expected = format!("node r: cannot reach redis {}", t.brokers[0].url);
    assert!(err.starts_with(&expected), "{err}");
}

#[tokio::test]
async fn binary_frames_are_refused_with_1003() {
    let http = port();
    let running = start(&topology(vec![node("a", Some(http))], vec![])).await;
    let mut c = Client::connect(http).await;
    c.send_binary().await;
    let frame = c.close_frame().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), u16::from(CloseCode::Unsupported));
    running.shutdown().await;
}

#[tokio::test]
async fn an_external_publish_reaches_clients() {
    let redis = RedisServer::start();
    let http = port();
    let n = with_redis(
        node("a", Some(http)),
        "chat_messages",
        &["chat_messages"],
        &[],
    );
    let running = start(&topology(vec![n], vec![broker(redis.port)])).await;
    let mut client = Client::connect(http).await;
    let mut resp = crate::util::RespClient::connect(redis.port);
    resp.send(&[b"PUBLISH", b"chat_messages", b"from redis-cli"]);
    assert_eq!(resp.read(), [b"1".to_vec()]);
    assert_eq!(client.recv().await, "from redis-cli");
    running.shutdown().await;
}

#[tokio::test]
async fn redis_nodes_resubscribe_after_a_server_restart() {
    let mut redis = RedisServer::start();
    let t = redis_trio(&redis, &[]);
    let running = start(&t).await;
    let mut a = Client::connect(http_port(&t, "a")).await;
    let mut b = Client::connect(http_port(&t, "b")).await;
    let old_pid = redis.pid();
    redis.kill();
    let statuses: Vec<_> = running
        .nodes()
        .iter()
        .map(|n| n.links()[0].clone())
        .collect();
    for s in &statuses {
        crate::util::wait_until("the loss is noticed", LIMIT, || async {
            match s.state() {
                topo::transport::LinkState::Up => Err("up"),
                _ => Ok(()),
            }
        })
        .await;
    }
    let redis = RedisServer::start_on(redis.port);
    assert_ne!(redis.pid(), old_pid);
    for s in &statuses {
        timeout(LIMIT, s.wait_up()).await.expect("resubscribed");
    }
    a.send("after restart").await;
    assert_eq!(a.recv().await, "after restart");
    assert_eq!(b.recv().await, "after restart");
    running.shutdown().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_never_blocks_the_others() {
    let http = port();
    let running = start(&topology(vec![node("a", Some(http))], vec![])).await;
    let mut stalled = Client::connect(http).await;
    let mut reader = Client::connect(http).await;
    let big = "x".repeat(4000);
    // About 12 MB: more than the stalled client's socket buffers hold.
    for i in 0..3000 {
        reader.send(&format!("{i} {big}")).await;
        if i % 500 == 0 {
            // Keep reading as we go so that only the stalled client falls behind.
            reader.drain(Duration::from_millis(1)).await;
        }
    }
    reader.send("last").await;
    reader.wait_for("last").await;
    // It was disconnected: a 1008 close frame if the socket had room for
    // one, else the connection simply ends.
    let policy = u16::from(CloseCode::Policy);
    let ended = stalled.ended().await;
    assert!(ended.is_none() || ended == Some(policy), "{ended:?}");
    running.shutdown().await;
}

#[tokio::test]
async fn run_node_runs_one_node_until_its_shutdown_future_resolves() {
    let (a_http, b_http) = (port(), port());
    let t = topology(
        vec![node("a", Some(a_http)), node("b", Some(b_http))],
        vec![],
    );
    let (stop_node, stopped_node) = tokio::sync::oneshot::channel::<()>();
    let one = tokio::spawn(topo::runtime::run_node(
        t,
        NodeId(1),
        0,
        |_: &str| {},
        async move {
            let _ = stopped_node.await;
        },
    ));
    let mut client = Client::connect_when_listening(b_http).await;
    // Only b runs.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", a_http))
            .await
            .is_err()
    );
    let _ = stop_node.send(());
    timeout(LIMIT, one)
        .await
        .unwrap()
        .unwrap()
        .expect("run_node returns Ok");
    assert_eq!(
        u16::from(client.close_frame().await.unwrap().code),
        u16::from(CloseCode::GoingAway)
    );
}
