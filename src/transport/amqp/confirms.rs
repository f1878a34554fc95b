//! The publisher-confirm window of an AMQP link: every message handed to
//! RabbitMQ and not yet confirmed, oldest first, with the confirmations
//! awaited all together (not one round trip per message). A session that
//! ends gives the unconfirmed messages back, in order, to go out again.

use super::Pending;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use std::collections::VecDeque;

/// At least this many in flight, even when the outbox is smaller (or 0):
/// one message at a time would cost a round trip each.
const MIN_WINDOW: usize = 64;

pub struct Unconfirmed {
    /// Parallel to `confirms`: the message of each pending confirmation.
    texts: VecDeque<Pending>,
    confirms: FuturesOrdered<PublisherConfirm>,
    limit: usize,
}

impl Unconfirmed {
    /// A window as large as the outbox (what an outage may hold anyway).
    pub fn new(outbox: usize) -> Unconfirmed {
        Unconfirmed {
            texts: VecDeque::new(),
            confirms: FuturesOrdered::new(),
            limit: outbox.max(MIN_WINDOW),
        }
    }

    pub fn has_room(&self) -> bool {
        self.texts.len() < self.limit
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn push(&mut self, text: Pending, confirm: PublisherConfirm) {
        self.texts.push_back(text);
        self.confirms.push_back(confirm);
    }

    /// The oldest message's fate, once RabbitMQ (or the channel's end)
    /// decided it. Pending while the window is empty.
    pub async fn next(&mut self) -> (Pending, lapin::Result<Confirmation>) {
        match self.confirms.next().await {
            Some(result) => {
                let text = self.texts.pop_front().expect("one text per confirmation");
                (text, result)
            }
            None => std::future::pending().await,
        }
    }

    /// Empties the window: its messages, oldest first.
    pub fn drain(&mut self) -> std::collections::vec_deque::Drain<'_, Pending> {
        self.confirms = FuturesOrdered::new();
        self.texts.drain(..)
    }
}
