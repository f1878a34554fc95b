#!/usr/bin/env python3
"""Writes large topologies for `bench/validate.sh`.

  gen_topology.py mesh N     full ZeroMQ mesh: N nodes, each subscribing to all others
  gen_topology.py mixed N    N nodes: Redis rooms with patterns, relay chains into ZeroMQ
  gen_topology.py rooms N    N nodes in Redis rooms of 100; two in 100 serve HTTP (valid)
  gen_topology.py errors N   N nodes, each with a misspelt key: N errors
"""
import sys


def mesh(n):
    names = [f"n{i}" for i in range(n)]
    out = ["name: mesh", "nodes:"]
    for i, name in enumerate(names):
        subs = ", ".join(m for m in names if m != name)
        out.append(f"  {name}:")
        out.append(f"    http: {10000 + i}")
        out.append(f"    zmq: {{ pub: {20000 + i}, sub: [{subs}] }}")
    return "\n".join(out) + "\n"


def mixed(n):
    out = ["name: mixed", "brokers:", "  main: { url: \"redis://127.0.0.1:6379\" }", "nodes:"]
    rooms = 10
    chain = 5
    i = 0
    while i < n:
        room = (i // chain) % rooms
        # a Redis publisher per room, an archive pattern subscriber, then a relay chain into ZeroMQ
        out.append(f"  p{i}:")
        out.append(f"    http: {10000 + i}")
        out.append(f"    redis: {{ broker: main, publish: room.{room}.{i}, subscribe: [room.{room}.{i}], patterns: [\"room.{room}.*\"] }}")
        prev = f"p{i}"
        out.append(f"  in{i}:")
        out.append("    relay: true")
        out.append(f"    redis: {{ broker: main, publish: sink.{i}, subscribe: [room.{room}.{i}] }}")
        out.append(f"    zmq: {{ pub: {20000 + i} }}")
        prev = f"in{i}"
        for k in range(1, chain - 2):
            out.append(f"  r{i}_{k}:")
            out.append(f"    http: {30000 + i * chain + k}")
            out.append("    relay: true")
            out.append(f"    zmq: {{ pub: {40000 + i * chain + k - 20000}, sub: [{prev}] }}")
            prev = f"r{i}_{k}"
        out.append(f"  t{i}:")
        out.append(f"    http: {50000 + i}")
        out.append(f"    zmq: {{ sub: [{prev}] }}")
        i += chain
    return "\n".join(out) + "\n"


def rooms(n):
    out = ["name: rooms", "brokers:", "  main: { url: \"redis://127.0.0.1:6379\" }", "nodes:"]
    # Two HTTP nodes per room (so none is isolated), the rest only listen.
    rooms = max(1, n // 100)
    for i in range(n):
        room = i % rooms
        if i < 2 * rooms:
            out.append(f"  n{i}: {{ http: {10000 + i}, redis: {{ broker: main, publish: room.{room}, subscribe: [room.{room}] }} }}")
        else:
            out.append(f"  n{i}: {{ redis: {{ broker: main, subscribe: [room.{room}] }} }}")
    return "\n".join(out) + "\n"


def errors(n):
    out = ["name: errors", "nodes:"]
    for i in range(n):
        out.append(f"  n{i}: {{ htp: {i} }}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    kind, n = sys.argv[1], int(sys.argv[2])
    sys.stdout.write({"mesh": mesh, "mixed": mixed, "rooms": rooms, "errors": errors}[kind](n))
