//! Private Redis servers for `topo test --run`: one `redis-server`
//! (`server.rs`) per server of the file, one private cluster (`cluster.rs`)
//! per Redis Cluster, so that a test neither needs nor disturbs the file's
//! own brokers. Each is stopped when the test ends, and dies with us.

use super::cluster::{ClusterError, PrivateCluster};
pub use super::server::{BrokerError, PrivateBroker, REDIS_SERVER};
use crate::model::{ServerKey, Topology};
use std::collections::HashMap;

/// The private servers of one topology, its private clusters, and the
/// AMQP names it was given.
#[derive(Default)]
pub struct PrivateBrokers(
    Vec<PrivateBroker>,
    Vec<PrivateCluster>,
    Vec<crate::transport::amqp::Declared>,
);

impl PrivateBrokers {
    /// Starts one server per distinct server of the file (brokers that
    /// differ only by database share one, as they share pub/sub) and points
    /// every broker at its server: plain TCP, no credentials, same database.
    pub async fn start_for(topology: &mut Topology) -> Result<PrivateBrokers, ClusterError> {
        let mut started = PrivateBrokers(
            Vec::new(),
            Vec::new(),
            crate::transport::amqp::isolate(topology),
        );
        let mut by_server: HashMap<ServerKey, u16> = HashMap::new();
        let mut clusters: HashMap<ServerKey, Vec<u16>> = HashMap::new();
        let databases = topology.brokers.iter().map(|b| b.url.db).max().unwrap_or(0);
        for broker in &mut topology.brokers {
            if broker.url.cluster {
                let ports = match clusters.get(&broker.url.server()) {
                    Some(ports) => ports.clone(),
                    None => match PrivateCluster::start().await {
                        Ok(cluster) => {
                            let ports = cluster.ports();
                            clusters.insert(broker.url.server(), ports.clone());
                            started.1.push(cluster);
                            ports
                        }
                        Err(e) => {
                            started.stop().await;
                            return Err(e);
                        }
                    },
                };
                let url = &mut broker.url;
                url.host = "127.0.0.1".into();
                url.port = ports[0];
                url.seeds = ports[1..]
                    .iter()
                    .map(|p| ("127.0.0.1".to_owned(), *p))
                    .collect();
                url.tls = false;
                url.ca = None;
                url.username = None;
                url.password = None;
                continue;
            }
            let port = match by_server.get(&broker.url.server()) {
                Some(&port) => port,
                None => match PrivateBroker::start(databases.saturating_add(1)).await {
                    Ok(server) => {
                        let port = server.port;
                        by_server.insert(broker.url.server(), port);
                        started.0.push(server);
                        port
                    }
                    Err(e) => {
                        started.stop().await;
                        return Err(e.into());
                    }
                },
            };
            let url = &mut broker.url;
            url.host = "127.0.0.1".into();
            url.port = port;
            url.tls = false;
            url.ca = None;
            url.username = None;
            url.password = None;
        }
        Ok(started)
    }

    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self.0.iter().filter_map(PrivateBroker::pid).collect();
        pids.extend(self.1.iter().flat_map(PrivateCluster::pids));
        pids
    }

    pub async fn stop(self) {
        futures_util::future::join_all(self.0.into_iter().map(PrivateBroker::stop)).await;
        futures_util::future::join_all(self.1.into_iter().map(PrivateCluster::stop)).await;
        for declared in self.2 {
            declared.delete().await;
        }
    }
}
