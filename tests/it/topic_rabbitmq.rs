//! `topic_match` against a real RabbitMQ: one queue per binding key on a
//! topic exchange, every routing key published once; what each queue holds
//! must be exactly what the matcher predicts (as `glob_redis` does for Redis).

use crate::rabbit;
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use std::collections::BTreeSet;
use std::time::Duration;
use topo::topic::topic_match;

const BINDINGS: &[&str] = &[
    "#", "*", "", "a", "b", "a.*", "a.#", "#.a", "*.a", "a.*.b", "a.#.b", "#.#", "*.#", "#.*",
    "*.*", "a.*.#", "a*", "*.b.#", "#.b.#", "#.a.#", "a.b.c", "*.*.*", "a.", ".a", "#.", "a..b",
    "*.", "a.#.#.b", "#.*.#",
];

const KEYS: &[&str] = &[
    "", "a", "b", "a.b", "a.a", "b.a", "a.b.c", "a.x.b", "a.b.b", "a.", ".a", ".", "a..b", "a*",
    "x.b.y", "b.b.b.b", "a.b.a", "ab", "a.x.y.b", "..", "b.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_match_agrees_with_rabbitmq() {
    let connection = rabbit::connect().await;
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = rabbit::unique("topic-table");
    channel
        .exchange_declare(
            exchange.as_str(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut queues = Vec::new();
    for binding in BINDINGS {
        let queue = channel
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                queue.name().as_str(),
                exchange.as_str(),
                binding,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        queues.push(queue.name().to_string());
    }
    for (i, key) in KEYS.iter().enumerate() {
        let confirm = channel
            .basic_publish(
                exchange.as_str(),
                key,
                BasicPublishOptions::default(),
                i.to_string().as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), confirm)
            .await
            .expect("publisher confirm")
            .unwrap();
    }
    let mut observed = BTreeSet::new();
    for (b, queue) in queues.iter().enumerate() {
        while let Some(message) = channel
            .basic_get(queue.as_str(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let k: usize = std::str::from_utf8(&message.delivery.data)
                .unwrap()
                .parse()
                .unwrap();
            assert!(observed.insert((b, k)), "delivered twice");
        }
    }
    channel
        .exchange_delete(exchange.as_str(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    let _ = connection.close(200, "done").await;

    let mut predicted = BTreeSet::new();
    for (b, binding) in BINDINGS.iter().enumerate() {
        for (k, key) in KEYS.iter().enumerate() {
            if topic_match(binding, key) {
                predicted.insert((b, k));
            }
        }
    }
    let diff: Vec<String> = predicted
        .symmetric_difference(&observed)
        .map(|(b, k)| {
            let who = if observed.contains(&(*b, *k)) {
                "rabbitmq only"
            } else {
                "predicted only"
            };
            format!("{who}: binding {:?} key {:?}", BINDINGS[*b], KEYS[*k])
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} of {} pairs differ:\n{}",
        diff.len(),
        BINDINGS.len() * KEYS.len(),
        diff.join("\n")
    );
    assert!(predicted.len() > 50, "the table must exercise matches");
}
