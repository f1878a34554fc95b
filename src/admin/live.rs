//! The live view's data: what the reload loop publishes (applied generation,
//! what the reload changed, a rejected save's errors), the poller that reads
//! every node's `/healthz` a few times per second while a page is open, and
//! the event stream (SSE) the page listens to. The same in both modes of
//! `topo up`: in `--process` mode the node state lives in the children, and
//! `/healthz` is how both reach it. It never changes the running nodes.

use super::Applied;
use super::view::{EdgeStats, Health, NodeStats, Previous, View, sample};
use crate::check::{Checked, Valid};
use crate::diff::Diff;
use crate::fault::Fault;
use axum::response::sse::Event as SseEvent;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// How often the nodes are polled while a page is open.
pub const POLL: Duration = Duration::from_millis(500);
/// One node's `/healthz` that takes longer counts as down for that sample.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Stats samples queued per page. A page that falls further behind skips
/// to the newest sample (each sample stands alone; nothing is lost but dots).
const STATS_QUEUE: usize = 16;

/// What the reload loop publishes; the admin server only reads it.
#[derive(Clone, Debug)]
pub struct Shared {
    pub applied: Applied,
    /// The applied file, checked (for the picture and `POST /api/probe`).
    pub valid: Arc<Valid>,
    /// What the last applied reload changed (`None` before the first).
    pub reload: Option<ReloadNote>,
    /// The last save's errors, when it was rejected; cleared by a valid save.
    pub rejected: Option<Rejected>,
    /// The fault switches that are on (the page's buttons); a save clears them.
    pub faults: Vec<Fault>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ReloadNote {
    pub generation: u64,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Changed in place (links rewired, clients kept).
    pub rewired: Vec<String>,
    /// Changed HTTP address: stopped and started again.
    pub restarted: Vec<String>,
    /// `node: why` for each node that could not take its new configuration.
    pub failed: Vec<String>,
}

impl ReloadNote {
    pub fn of(diff: &Diff, generation: u64, failed: Vec<String>) -> ReloadNote {
        let names = |ws: &[crate::model::Wiring]| ws.iter().map(|w| w.name.clone()).collect();
        let changed = |restart: bool| {
            diff.change
                .iter()
                .filter(|c| c.restart() == restart)
                .map(|c| c.name().to_owned())
                .collect()
        };
        ReloadNote {
            generation,
            added: names(&diff.add),
            removed: names(&diff.remove),
            rewired: changed(false),
            restarted: changed(true),
            failed,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rejected {
    pub file: String,
    /// As `validate --format json` lists them.
    pub errors: Vec<ErrorAt>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ErrorAt {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// The `topology` event of `/api/events`, and the body of `/api/view`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopologyEvent {
    pub view: View,
    pub reload: Option<ReloadNote>,
    pub rejected: Option<Rejected>,
    pub faults: Vec<FaultNote>,
}

/// A fault switch that is on, for the page's buttons.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultNote {
    pub fault: Fault,
    pub text: String,
    /// The edge it cuts, if it cuts one.
    pub edge: Option<String>,
}

/// The `stats` event of `/api/events`: one sample of the applied generation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsEvent {
    pub generation: u64,
    pub nodes: BTreeMap<String, NodeStats>,
    pub edges: BTreeMap<String, EdgeStats>,
}

impl Rejected {
    pub fn of(checked: &Checked) -> Rejected {
        Rejected {
            file: checked.file.clone(),
            errors: checked
                .errors()
                .map(|d| ErrorAt {
                    line: d.span.line,
                    column: d.span.column,
                    message: d.message.clone(),
                })
                .collect(),
        }
    }
}

/// What feeds the admin server (`/api/topology`, the live view): the reload
/// loop hands it every applied or rejected save.
pub struct LiveFeed(watch::Sender<Shared>);

impl LiveFeed {
    pub fn new(applied: Applied, valid: Valid) -> LiveFeed {
        LiveFeed(watch::Sender::new(Shared {
            applied,
            valid: Arc::new(valid),
            reload: None,
            rejected: None,
            faults: Vec::new(),
        }))
    }

    /// The applied topology, checked.
    pub fn valid(&self) -> Arc<Valid> {
        self.0.borrow().valid.clone()
    }

    /// The fault switches that are on now.
    pub fn faults(&self, faults: Vec<Fault>) {
        self.0.send_modify(|s| s.faults = faults);
    }

    pub fn subscribe(&self) -> watch::Receiver<Shared> {
        self.0.subscribe()
    }

    /// A save was applied (`failed`: `node: why` per node that kept or lost its configuration).
    pub fn applied(&self, applied: Applied, valid: Valid, diff: &Diff, failed: Vec<String>) {
        let note = ReloadNote::of(diff, applied.generation, failed);
        self.0.send_replace(Shared {
            applied,
            valid: Arc::new(valid),
            reload: Some(note),
            rejected: None,
            faults: Vec::new(),
        });
    }

    /// A save was rejected: what runs stays, the page shows why.
    pub fn rejected(&self, checked: &Checked) {
        let rejected = Rejected::of(checked);
        self.0.send_modify(|s| s.rejected = Some(rejected));
    }
}

/// One server-sent event, serialised once for every page.
#[derive(Clone, Debug)]
pub struct Event {
    pub name: &'static str,
    pub data: Arc<str>,
}

/// The poller's outputs, shared by every page's stream.
#[derive(Clone)]
pub struct Feeds {
    /// The newest `topology` event (view, last reload, rejected save): a
    /// page that connects or falls behind always gets the current one.
    pub topology: watch::Receiver<Option<Event>>,
    /// `stats` samples; nobody subscribed means nobody is polled.
    pub stats: broadcast::Sender<Event>,
    /// The view the newest `topology` event draws (to resolve edge ids).
    pub view: watch::Receiver<Option<Arc<View>>>,
}

impl Feeds {
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.borrow().clone()
    }
}

/// Creates the feeds and the task that fills them (runs until `cancel`).
pub fn start(
    shared: watch::Receiver<Shared>,
    cancel: CancellationToken,
) -> (Feeds, impl Future<Output = ()> + Send + 'static) {
    let (topology_tx, topology) = watch::channel(None);
    let (view_tx, view) = watch::channel(None);
    let (stats, _) = broadcast::channel(STATS_QUEUE);
    let feeds = Feeds {
        topology,
        stats: stats.clone(),
        view,
    };
    (
        feeds,
        poll_loop(shared, topology_tx, view_tx, stats, cancel),
    )
}

/// The page's picture of the applied state, and the `/healthz` addresses.
struct Current {
    view: View,
    targets: Vec<(String, SocketAddr)>,
    /// Edges that a fault switch cut: drawn `cut` whatever /healthz says.
    cut: Vec<String>,
}

fn current(shared: &Shared) -> (Current, Event) {
    let valid = &shared.valid;
    let view = View::of(valid, shared.applied.generation, &shared.applied.failed);
    let targets = valid
        .topology
        .nodes
        .iter()
        .filter_map(|n| Some((n.name.clone(), crate::probe::client_address(n.http?))))
        .collect();
    let faults: Vec<_> = shared
        .faults
        .iter()
        .map(|f| FaultNote {
            fault: f.clone(),
            text: f.to_string(),
            edge: view.edge_of(f),
        })
        .collect();
    let cut = shared
        .faults
        .iter()
        .filter(|f| matches!(f, Fault::SubCut { .. } | Fault::RedisSubCut { .. }))
        .filter_map(|f| view.edge_of(f))
        .collect();
    let data = TopologyEvent {
        view,
        reload: shared.reload.clone(),
        rejected: shared.rejected.clone(),
        faults,
    };
    let event = Event {
        name: "topology",
        data: serde_json::to_string(&data)
            .expect("string-keyed data serialises")
            .into(),
    };
    let view = data.view;
    (Current { view, targets, cut }, event)
}

async fn poll_loop(
    mut shared: watch::Receiver<Shared>,
    topology: watch::Sender<Option<Event>>,
    view: watch::Sender<Option<Arc<View>>>,
    stats: broadcast::Sender<Event>,
    cancel: CancellationToken,
) {
    let (mut now, event) = current(&shared.borrow_and_update());
    topology.send_replace(Some(event));
    view.send_replace(Some(Arc::new(now.view.clone())));
    let mut previous = Previous::default();
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publishing = true;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = shared.changed(), if publishing => {
                if changed.is_err() {
                    // The reload loop is gone (shutting down): keep serving the last state.
                    publishing = false;
                    continue;
                }
                let (next, event) = current(&shared.borrow_and_update());
                now = next;
                topology.send_replace(Some(event));
                view.send_replace(Some(Arc::new(now.view.clone())));
            }
            _ = tick.tick() => {
                if stats.receiver_count() == 0 {
                    // No page open: poll nobody, and start the next rates afresh.
                    previous = Previous::default();
                    continue;
                }
                let health = poll(&now.targets).await;
                let seconds = last.elapsed().as_secs_f64();
                last = Instant::now();
                let mut sample = sample(&now.view, &health, &mut previous, seconds);
                for id in &now.cut {
                    if let Some(e) = sample.edges.get_mut(id) {
                        e.state = "cut".into();
                    }
                }
                let data = StatsEvent { generation: now.view.generation, nodes: sample.nodes, edges: sample.edges };
                let data = serde_json::to_string(&data).expect("string-keyed data serialises");
                // No receiver left in between: nothing to do.
                let _ = stats.send(Event { name: "stats", data: data.into() });
            }
        }
    }
}

/// Every node's `/healthz`, at once; `None` for a node that did not answer.
async fn poll(targets: &[(String, SocketAddr)]) -> HashMap<String, Option<Health>> {
    let all = targets.iter().map(|(name, addr)| async move {
        let health = crate::http_get::get(*addr, "/healthz", POLL_TIMEOUT, super::HEALTH_MAX_BYTES)
            .await
            .ok()
            .and_then(|body| serde_json::from_str::<Health>(&body).ok());
        (name.clone(), health)
    });
    futures_util::future::join_all(all)
        .await
        .into_iter()
        .collect()
}

/// A page's stream: the current topology first, then every change of it and
/// every stats sample, until the server shuts down.
pub fn stream(
    feeds: &Feeds,
    cancel: CancellationToken,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static {
    struct S {
        topology: watch::Receiver<Option<Event>>,
        stats: broadcast::Receiver<Event>,
        cancel: CancellationToken,
    }
    let mut topology = feeds.topology.clone();
    topology.mark_changed();
    let state = S {
        topology,
        stats: feeds.stats.subscribe(),
        cancel,
    };
    futures_util::stream::unfold(state, |mut s| async move {
        loop {
            let event = tokio::select! {
                biased;
                _ = s.cancel.cancelled() => return None,
                changed = s.topology.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    s.topology.borrow_and_update().clone()
                }
                sample = s.stats.recv() => match sample {
                    Ok(event) => Some(event),
                    // Behind: the next sample is as good as the missed ones.
                    Err(broadcast::error::RecvError::Lagged(_)) => None,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if let Some(e) = event {
                let sse = SseEvent::default().event(e.name).data(&*e.data);
                return Some((Ok(sse), s));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::view::{Edge, EdgeKind, NodeState, Vertex};

    /// The page (www/admin.html) reads these names: a change here is a
    /// change of the page's contract, not a refactoring.
    #[test]
    fn the_wire_format_is_stable() {
        let vertex = |id: &str, name: &str, url: Option<&str>| Vertex {
            id: id.into(),
            name: name.into(),
            url: url.map(Into::into),
            relay: false,
            wiring: "w".into(),
        };
        let topology = TopologyEvent {
            view: View {
                name: "t".into(),
                generation: 2,
                nodes: vec![vertex("n:a", "a", Some("http://127.0.0.1:1/"))],
                brokers: vec![vertex("b:r", "r", None)],
                edges: vec![Edge {
                    id: "pub:a".into(),
                    kind: EdgeKind::RedisPub,
                    from: "n:a".into(),
                    to: "b:r".into(),
                    label: "chat".into(),
                    relayed: true,
                    tap: None,
                }],
                matrix_names: vec!["a".into()],
                deliveries: [("a".to_owned(), [("a".to_owned(), 1)].into())].into(),
                one_of: Default::default(),
                failed: vec![],
            },
            reload: Some(ReloadNote {
                generation: 2,
                added: vec!["a".into()],
                ..ReloadNote::default()
            }),
            rejected: Some(Rejected {
                file: "f.yaml".into(),
                errors: vec![ErrorAt {
                    line: 3,
                    column: 4,
                    message: "m".into(),
                }],
            }),
            faults: vec![FaultNote {
                fault: Fault::SubCut {
                    node: "a".into(),
                    endpoint: "tcp://127.0.0.1:2".into(),
                },
                text: "cut".into(),
                edge: None,
            }],
        };
        let wire = concat!(
            r#"{"view":{"name":"t","generation":2,"#,
            r#""nodes":[{"id":"n:a","name":"a","url":"http://127.0.0.1:1/","relay":false,"wiring":"w"}],"#,
            r#""brokers":[{"id":"b:r","name":"r","url":null,"relay":false,"wiring":"w"}],"#,
            r#""edges":[{"id":"pub:a","kind":"redis-pub","from":"n:a","to":"b:r","label":"chat","relayed":true}],"#,
            r#""matrix_names":["a"],"deliveries":{"a":{"a":1}},"failed":[]},"#,
            r#""reload":{"generation":2,"added":["a"],"removed":[],"rewired":[],"restarted":[],"failed":[]},"#,
            r#""rejected":{"file":"f.yaml","errors":[{"line":3,"column":4,"message":"m"}]},"#,
            r#""faults":[{"fault":{"kind":"sub-cut","node":"a","endpoint":"tcp://127.0.0.1:2"},"text":"cut","edge":null}]}"#,
        );
        assert_eq!(serde_json::to_string(&topology).unwrap(), wire);
        let back: TopologyEvent = serde_json::from_str(wire).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), wire);

        let stats = StatsEvent {
            generation: 2,
            nodes: [(
                "a".to_owned(),
                NodeStats {
                    state: NodeState::NoHttp,
                    clients: 1,
                    in_per_s: 2.5,
                    out_per_s: 0.0,
                    generation: None,
                    outbox: 3,
                },
            )]
            .into(),
            edges: [(
                "pub:a".to_owned(),
                EdgeStats {
                    state: "cut".into(),
                    delta: 4,
                },
            )]
            .into(),
        };
        let wire = concat!(
            r#"{"generation":2,"nodes":{"a":{"state":"no-http","clients":1,"in_per_s":2.5,"#,
            r#""out_per_s":0.0,"generation":null,"outbox":3}},"edges":{"pub:a":{"state":"cut","delta":4}}}"#,
        );
        assert_eq!(serde_json::to_string(&stats).unwrap(), wire);
        let back: StatsEvent = serde_json::from_str(wire).unwrap();
        assert_eq!(back.nodes["a"], stats.nodes["a"]);
    }
}
