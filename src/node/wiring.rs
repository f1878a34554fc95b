//! A node's links as slots that a reload can change one by one while the
//! node runs: its PUB socket (rebind, new topic), one SUB socket per upstream
//! (connect, disconnect, new filter), its Redis link (SUBSCRIBE/UNSUBSCRIBE,
//! PSUBSCRIBE/PUNSUBSCRIBE, publish channel, another server), its NATS link
//! (SUB/UNSUB, queue group, publish subject on its connection; other servers
//! replace it), relay on/off.
//! It applies the [`LinkDelta`] that `diff` computed and never compares two
//! wirings itself; starting a node is applying the delta from nothing
//! ([`Wired::empty`]). It never touches the HTTP server or the clients:
//! links untouched by a change keep flowing.

use super::router::NodeRouter;
use super::{StartError, Tasks, io_reason, warn_if_every_interface};
use crate::diff::{AmqpDelta, LinkDelta, NatsDelta, PubDelta, RedisDelta};
use crate::model::{AmqpWiring, Endpoint, Limits, NatsWiring, RedisWiring, Wiring, ZmqPublish};
use crate::transport::amqp::AmqpControl;
use crate::transport::redis::{RedisControl, SubscriptionChange};
use crate::transport::{self, Inbox, LinkKind, LinkState, LinkStatus, Origin};
use std::sync::Arc;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The links of a running node and the wiring they implement.
pub struct Wired {
    pub wiring: Wiring,
    publish: Option<PubSlot>,
    subs: Vec<SubSlot>,
    redis: Option<RedisSlot>,
    nats: Option<NatsSlot>,
    amqp: Option<AmqpSlot>,
}

struct AmqpSlot {
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
    control: AmqpControl,
}

struct NatsSlot {
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
    control: transport::nats::NatsControl,
}

struct PubSlot {
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
    topic: watch::Sender<String>,
}

struct SubSlot {
    endpoint: Endpoint,
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
}

struct RedisSlot {
    status: Arc<LinkStatus>,
    cancel: CancellationToken,
    control: RedisControl,
}

/// What the slots need from their node.
pub struct Env<'a> {
    pub router: &'a Arc<NodeRouter>,
    pub inbox: &'a Inbox,
    pub tasks: &'a Tasks,
}

/// The fallible half of a change, done before anything running is touched.
pub struct Prepared {
    publish: PubPlan,
    redis: RedisPlan,
    nats: NatsPlan,
    /// `None`: keep (or rewire) the AMQP link; `Some(None)`: remove it.
    amqp: Option<Option<transport::amqp::Session>>,
}

enum NatsPlan {
    Keep,
    Replace(Option<transport::nats::Connected>),
}

enum PubPlan {
    /// Same socket; its topic is set to the new one.
    Keep,
    Replace(Option<(ZmqPublish, transport::zmq::BoundPub)>),
}

enum RedisPlan {
    Keep,
    Rewire,
    Replace(Option<transport::redis::Connected>),
}

impl Wired {
    /// A node with no link yet, with the HTTP part of `wiring` (never
    /// rewired): what a node starts from (`diff::NodeDelta::between` it and
    /// `wiring` is the node's start).
    pub fn empty(wiring: &Wiring) -> Wired {
        Wired {
            wiring: Wiring {
                publish: None,
                subscribe: Vec::new(),
                filter: String::new(),
                redis: None,
                nats: None,
                amqp: None,
                relay: false,
                ..wiring.clone()
            },
            publish: None,
            subs: Vec::new(),
            redis: None,
            nats: None,
            amqp: None,
        }
    }

    /// The broker links' fault switch (`RedisControl::sever`,
    /// `NatsControl::sever`, `AmqpControl::sever`), on every broker link
    /// the node has; `None` without one, else whether any moved.
    pub async fn sever_brokers(&self, on: bool) -> Option<bool> {
        let redis = self.redis.as_ref().map(|r| r.control.sever(on));
        let nats = self.nats.as_ref().map(|n| n.control.sever(on));
        let amqp = match &self.amqp {
            Some(a) => Some(a.control.sever(on).await),
            None => None,
        };
        [redis, nats, amqp]
            .into_iter()
            .flatten()
            .reduce(|a, b| a | b)
    }

    /// Every link's status, PUB first, then the SUBs in file order, then Redis.
    pub fn statuses(&self) -> Vec<Arc<LinkStatus>> {
        let mut all: Vec<_> = self.publish.iter().map(|p| p.status.clone()).collect();
        all.extend(self.subs.iter().map(|s| s.status.clone()));
        all.extend(self.redis.iter().map(|r| r.status.clone()));
        all.extend(self.nats.iter().map(|n| n.status.clone()));
        all.extend(self.amqp.iter().map(|a| a.status.clone()));
        all
    }

    /// Moves the links to `new` as `delta` (from what runs to `new`) says,
    /// and resizes the Redis outbox to `new.limits.outbox`. Binding and
    /// connecting come first: when one fails (a taken port, an unreachable
    /// server) nothing has changed and the error is returned. `new.http` and
    /// `new.limits.send_queue` are ignored (a restart changes them); the
    /// node applies the client limits.
    pub async fn apply(
        &mut self,
        delta: &LinkDelta,
        new: &Wiring,
        env: &Env<'_>,
    ) -> Result<(), StartError> {
        let mut prepared = self.prepare(delta, new).await?;
        if let (RedisPlan::Rewire, RedisDelta::Rewire(change), Some(slot), Some(a), Some(b)) = (
            &prepared.redis,
            &delta.redis,
            &mut self.redis,
            &self.wiring.redis,
            &new.redis,
        ) {
            let change = SubscriptionChange {
                subscribe: &change.subscribe.add,
                unsubscribe: &change.subscribe.remove,
                psubscribe: &change.patterns.add,
                punsubscribe: &change.patterns.remove,
            };
            // Fallible too; it undoes itself when it fails.
            slot.control
                .rewire(a, b, change)
                .await
                .map_err(|reason| StartError::Redis {
                    node: new.name.clone(),
                    broker: b.url.to_string(),
                    reason,
                })?;
            prepared.redis = RedisPlan::Keep;
        }
        if let (AmqpDelta::Rewire(_), Some(slot), Some(b)) = (&delta.amqp, &self.amqp, &new.amqp) {
            slot.control
                .rewire(b)
                .await
                .map_err(|reason| StartError::Amqp {
                    node: new.name.clone(),
                    broker: b.url.to_string(),
                    reason,
                })?;
        }
        self.rewire_nats(&delta.nats, new).await?;
        self.commit(prepared, delta, new, env);
        Ok(())
    }

    /// The fallible half of a change to `new` that touches nothing running:
    /// binds a new PUB, connects to a new Redis server. Dropped instead of
    /// committed, it closes them. (`apply` also rewires the subscriptions
    /// on the same Redis server; from nothing, as a start, there are none.)
    pub async fn prepare(&self, delta: &LinkDelta, new: &Wiring) -> Result<Prepared, StartError> {
        let publish = self.plan_pub(delta.publish, new).await?;
        let redis = match (&delta.redis, &new.redis) {
            (RedisDelta::Keep, _) => RedisPlan::Keep,
            (RedisDelta::Rewire(_), _) => RedisPlan::Rewire,
            (RedisDelta::Connect | RedisDelta::Move(_) | RedisDelta::Remode(_), Some(b)) => {
                RedisPlan::Replace(Some(connect(&new.name, b).await?))
            }
            (
                RedisDelta::Connect
                | RedisDelta::Move(_)
                | RedisDelta::Remode(_)
                | RedisDelta::Disconnect,
                _,
            ) => RedisPlan::Replace(None),
        };
        let nats = match (&delta.nats, &new.nats) {
            // `apply` rewires the subscriptions on the live connection.
            (NatsDelta::Keep | NatsDelta::Rewire(_), _) => NatsPlan::Keep,
            (NatsDelta::Connect | NatsDelta::Move(_), Some(n)) => {
                NatsPlan::Replace(Some(connect_nats(&new.name, n).await?))
            }
            (NatsDelta::Connect | NatsDelta::Move(_) | NatsDelta::Disconnect, _) => {
                NatsPlan::Replace(None)
            }
        };
        let amqp = match (&delta.amqp, &new.amqp) {
            (AmqpDelta::Keep | AmqpDelta::Rewire(_), _) => None,
            (AmqpDelta::Connect | AmqpDelta::Move, Some(link)) => {
                Some(Some(connect_amqp(&new.name, link).await?))
            }
            (AmqpDelta::Connect | AmqpDelta::Move | AmqpDelta::Disconnect, _) => Some(None),
        };
        Ok(Prepared {
            publish,
            redis,
            nats,
            amqp,
        })
    }

    /// Moves the links to `new` with what `prepare` made; nothing can fail.
    pub fn commit(&mut self, prepared: Prepared, delta: &LinkDelta, new: &Wiring, env: &Env<'_>) {
        self.commit_pub(prepared.publish, new, env);
        self.commit_subs(delta, new, env);
        match prepared.redis {
            RedisPlan::Replace(connected) => self.commit_redis(connected, new, env),
            RedisPlan::Keep | RedisPlan::Rewire => {
                if let Some(slot) = &self.redis {
                    slot.control.set_outbox(new.limits.outbox);
                }
            }
        }
        match prepared.nats {
            NatsPlan::Replace(connected) => self.commit_nats(connected, new, env),
            NatsPlan::Keep => {
                if let Some(slot) = &self.nats {
                    slot.control.set_outbox(new.limits.outbox);
                }
            }
        }
        if let Some(session) = prepared.amqp {
            self.commit_amqp(session, new, env);
        }
        env.router.set_relay(new.relay);
        // What runs: the HTTP address and the hub's backlog stay as they were.
        self.wiring = Wiring {
            http: self.wiring.http,
            limits: Limits {
                send_queue: self.wiring.limits.send_queue,
                ..new.limits.clone()
            },
            ..new.clone()
        };
    }

    async fn plan_pub(&self, delta: PubDelta, new: &Wiring) -> Result<PubPlan, StartError> {
        if matches!(delta, PubDelta::Keep | PubDelta::Topic) {
            return Ok(PubPlan::Keep);
        }
        let Some(p) = &new.publish else {
            return Ok(PubPlan::Replace(None));
        };
        let error = |reason| StartError::Bind {
            node: new.name.clone(),
            what: "zmq pub",
            addr: p.bind,
            reason,
        };
        // Bound here so that a taken port is a plain io::Error.
        let listener = std::net::TcpListener::bind(p.bind).map_err(|e| error(io_reason(&e)))?;
        let options = transport::zmq::options(&new.limits);
        let bound =
            transport::zmq::bind_pub(listener, options).map_err(|e| error(io_reason(&e)))?;
        Ok(PubPlan::Replace(Some((p.clone(), bound))))
    }

    fn commit_pub(&mut self, plan: PubPlan, new: &Wiring, env: &Env<'_>) {
        match plan {
            PubPlan::Keep => {
                if let (Some(slot), Some(p)) = (&self.publish, &new.publish) {
                    slot.topic.send_if_modified(|t| {
                        let changed = *t != p.topic;
                        t.clone_from(&p.topic);
                        changed
                    });
                }
            }
            PubPlan::Replace(bound) => {
                if let Some(old) = self.publish.take() {
                    old.cancel.cancel();
                }
                env.router.set_outbound(Origin::Zmq, None);
                if let Some((p, socket)) = bound {
                    let cancel = env.tasks.cancel.child_token();
                    let (topic, topic_rx) = watch::channel(p.topic.clone());
                    let counters = env.router.counters.clone();
                    warn_if_every_interface("zmq pub", p.bind);
                    let address = format!("tcp://{}", p.bind);
                    let status = LinkStatus::new(LinkKind::ZmqPub, address, LinkState::Up);
                    let status = Arc::new(status);
                    let (handle, task) =
                        socket.run(topic_rx, counters, status.clone(), cancel.clone());
                    env.tasks.spawn(task);
                    env.router.set_outbound(Origin::Zmq, Some(Box::new(handle)));
                    self.publish = Some(PubSlot {
                        status,
                        cancel,
                        topic,
                    });
                }
            }
        }
    }

    /// Disconnects and connects the SUBs `delta` lists; a new filter
    /// reconnects them all (a SUB socket's filter is set before it connects).
    /// The slots stay in `new`'s order (the order `/healthz` lists them in).
    fn commit_subs(&mut self, delta: &LinkDelta, new: &Wiring, env: &Env<'_>) {
        let subs = &delta.subscribe;
        let (gone, kept): (Vec<SubSlot>, Vec<SubSlot>) = self
            .subs
            .drain(..)
            .partition(|s| subs.refilter || subs.disconnect.contains(&s.endpoint));
        for slot in gone {
            tracing::info!(endpoint = %slot.endpoint, "zmq sub disconnected (reload)");
            slot.cancel.cancel();
        }
        self.subs = kept;
        let connect = if subs.refilter {
            &new.subscribe
        } else {
            &subs.connect
        };
        for endpoint in connect {
            let address = endpoint.to_string();
            let status = LinkStatus::new(LinkKind::ZmqSub, address.clone(), LinkState::Connecting);
            let status = Arc::new(status);
            let cancel = env.tasks.cancel.child_token();
            env.tasks.spawn(transport::zmq::sub_task(
                address,
                new.filter.clone(),
                transport::zmq::options(&new.limits),
                env.inbox.clone(),
                status.clone(),
                cancel.clone(),
            ));
            self.subs.push(SubSlot {
                endpoint: endpoint.clone(),
                status,
                cancel,
            });
        }
        let rank = |s: &SubSlot| new.subscribe.iter().position(|e| *e == s.endpoint);
        self.subs.sort_by_key(rank);
    }

    fn commit_amqp(
        &mut self,
        session: Option<transport::amqp::Session>,
        new: &Wiring,
        env: &Env<'_>,
    ) {
        if let Some(old) = self.amqp.take() {
            old.cancel.cancel();
        }
        env.router.set_outbound(Origin::Amqp, None);
        let (Some(session), Some(link)) = (session, &new.amqp) else {
            return;
        };
        let status = LinkStatus::new(LinkKind::Amqp, link.url.to_string(), LinkState::Up);
        let status = Arc::new(status);
        let cancel = env.tasks.cancel.child_token();
        let task = transport::amqp::LinkTask {
            node: new.name.clone(),
            link: link.clone(),
            counters: env.router.counters.clone(),
            inbox: env.inbox.clone(),
            status: status.clone(),
            presence: env.router.hub.presence(),
            outbox: new.limits.outbox,
            max_body: new.limits.max_message_bytes,
        };
        let (handle, control, run) = task.run(session, cancel.clone());
        env.tasks.spawn(run);
        env.router
            .set_outbound(Origin::Amqp, Some(Box::new(handle)));
        self.amqp = Some(AmqpSlot {
            status,
            cancel,
            control,
        });
    }

    fn commit_redis(
        &mut self,
        connected: Option<transport::redis::Connected>,
        new: &Wiring,
        env: &Env<'_>,
    ) {
        if let Some(old) = self.redis.take() {
            old.cancel.cancel();
        }
        env.router.set_outbound(Origin::Redis, None);
        let (Some(connected), Some(link)) = (connected, &new.redis) else {
            return;
        };
        let status = LinkStatus::new(LinkKind::Redis, link.url.to_string(), LinkState::Up);
        let status = Arc::new(status);
        let cancel = env.tasks.cancel.child_token();
        let counters = env.router.counters.clone();
        let inbox = env.inbox.clone();
        let (handle, control, publisher, receiver) = connected.run(
            link,
            counters,
            inbox,
            status.clone(),
            new.limits.outbox,
            cancel.clone(),
        );
        env.tasks.spawn(publisher);
        env.tasks.spawn(receiver);
        env.router
            .set_outbound(Origin::Redis, Some(Box::new(handle)));
        self.redis = Some(RedisSlot {
            status,
            cancel,
            control,
        });
    }
}

impl Wired {
    /// The NATS half of `apply`'s in-place rewiring (fallible; nothing
    /// changed when it fails).
    async fn rewire_nats(&self, delta: &NatsDelta, new: &Wiring) -> Result<(), StartError> {
        let (NatsDelta::Rewire(change), Some(slot), Some(a), Some(b)) =
            (delta, &self.nats, &self.wiring.nats, &new.nats)
        else {
            return Ok(());
        };
        slot.control
            .rewire(a, b, change)
            .await
            .map_err(|reason| StartError::Nats {
                node: new.name.clone(),
                broker: b.url.to_string(),
                reason,
            })
    }

    fn commit_nats(
        &mut self,
        connected: Option<transport::nats::Connected>,
        new: &Wiring,
        env: &Env<'_>,
    ) {
        if let Some(old) = self.nats.take() {
            old.cancel.cancel();
        }
        env.router.set_outbound(Origin::Nats, None);
        let (Some(connected), Some(link)) = (connected, &new.nats) else {
            return;
        };
        let status = connected.status.clone();
        let cancel = env.tasks.cancel.child_token();
        let (handle, control, publisher, receiver) = connected.run(
            &link.publish,
            env.router.counters.clone(),
            env.inbox.clone(),
            new.limits.outbox,
            cancel.clone(),
        );
        env.tasks.spawn(publisher);
        env.tasks.spawn(receiver);
        env.router
            .set_outbound(Origin::Nats, Some(Box::new(handle)));
        self.nats = Some(NatsSlot {
            status,
            cancel,
            control,
        });
    }
}

async fn connect_nats(
    node: &str,
    link: &NatsWiring,
) -> Result<transport::nats::Connected, StartError> {
    transport::nats::connect(node, link)
        .await
        .map_err(|reason| StartError::Nats {
            node: node.to_owned(),
            broker: link.url.to_string(),
            reason,
        })
}

async fn connect_amqp(
    node: &str,
    link: &AmqpWiring,
) -> Result<transport::amqp::Session, StartError> {
    transport::amqp::connect(link)
        .await
        .map_err(|reason| StartError::Amqp {
            node: node.to_owned(),
            broker: link.url.to_string(),
            reason,
        })
}

async fn connect(
    node: &str,
    link: &RedisWiring,
) -> Result<transport::redis::Connected, StartError> {
    transport::redis::connect(link)
        .await
        .map_err(|reason| StartError::Redis {
            node: node.to_owned(),
            broker: link.url.to_string(),
            reason,
        })
}
