//! `--run` moves a topology onto free loopback ports: every `http` and
//! ZeroMQ `pub` listener, and every `sub` endpoint that points at one of
//! them. A `sub` endpoint that no node of the file binds cannot follow its
//! publisher, so the file cannot be tested in isolation: that is an error.

use super::ports::free_port;
use crate::model::Topology;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum RemapError {
    #[error(
        "node `{node}` subscribes to {endpoint}, which no node of this file binds: \
         --run cannot move it to a private port (subscribe to a node of the file by name)"
    )]
    ForeignEndpoint { node: String, endpoint: String },
    #[error("no free loopback port left to move node `{node}` to")]
    NoPort { node: String },
}

/// Rewrites `topology` in place onto fresh ports on 127.0.0.1.
pub fn remap(topology: &mut Topology) -> Result<(), RemapError> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let fresh = |node: &str| {
        free_port()
            .map(|p| SocketAddr::new(loopback, p))
            .ok_or_else(|| RemapError::NoPort { node: node.into() })
    };
    let mut pub_ports: HashMap<usize, u16> = HashMap::new();
    for (i, node) in topology.nodes.iter_mut().enumerate() {
        if node.http.is_some() {
            node.http = Some(fresh(&node.name)?);
        }
        if let Some(publish) = node.zmq.as_mut().and_then(|z| z.publish.as_mut()) {
            publish.bind = fresh(&node.name)?;
            pub_ports.insert(i, publish.bind.port());
        }
    }
    for node in &mut topology.nodes {
        for sub in node.zmq.iter_mut().flat_map(|z| z.subscribe.iter_mut()) {
            let Some(port) = sub.from.and_then(|from| pub_ports.get(&from.0)) else {
                return Err(RemapError::ForeignEndpoint {
                    node: node.name.clone(),
                    endpoint: sub.endpoint.to_string(),
                });
            };
            sub.endpoint.host = "127.0.0.1".into();
            sub.endpoint.port = *port;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::check_str;

    fn topology(text: &str) -> Topology {
        let checked = check_str("t.yaml", "t", text.into(), &|_| None);
        assert!(checked.valid.is_some(), "{}", checked.render());
        checked.valid.unwrap().topology
    }

    #[test]
    fn listeners_and_their_subscribers_move_together() {
        let mut t = topology(
            "nodes:\n  a: { http: 8080, host: 0.0.0.0, zmq: { pub: 5000 } }\n  b: { http: 8081, zmq: { sub: [a] } }\n",
        );
        remap(&mut t).unwrap();
        let publish = t.nodes[0].zmq.as_ref().unwrap().publish.as_ref().unwrap();
        assert_ne!(publish.bind.port(), 5000);
        assert_eq!(publish.bind.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let sub = &t.nodes[1].zmq.as_ref().unwrap().subscribe[0];
        assert_eq!(sub.endpoint.port, publish.bind.port());
        assert_ne!(t.nodes[0].http.unwrap().port(), 8080);
        assert_eq!(
            t.nodes[0].http.unwrap().ip(),
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn an_endpoint_outside_the_file_cannot_be_moved() {
        let mut t =
            topology("nodes:\n  a: { http: 8080, zmq: { sub: [\"tcp://10.0.0.9:5000\"] } }\n");
        let error = remap(&mut t).unwrap_err().to_string();
        assert!(
            error.contains("node `a` subscribes to tcp://10.0.0.9:5000"),
            "{error}"
        );
    }
}
