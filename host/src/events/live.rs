//! Live task events for browsers (`GET /tasks/events`): each API process
//! reads every partition of `task-events` from its end — in no consumer
//! group, committing nothing — keeps the latest events of each partition in
//! a ring, and hands them to its streams.
//!
//! Invariants:
//! - A stream's position is, per partition, the offset of the next event it
//!   would be given. It is the SSE event id: offsets are the topic's, not
//!   the process's, so a client resumes exactly after what it saw, on any
//!   replica that holds the events since.
//! - A stream never misses an event silently: when its position is older
//!   than a ring reaches back (or is not this topic's at all), or, while it
//!   is connected, the topic starts again from lower offsets (a broker that
//!   came back empty), it is told to `reset` — reload — before the events
//!   go on. (A client that resumes across such a restart is reset only if
//!   its offsets lie outside the new ones: positions carry no epoch, which
//!   is each process's own.)
//! - The ring is filled and a stream subscribes under one lock: a stream
//!   gets each event once, from the ring or live.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::auth::{Actor, Role};
use crate::kafka::{Kafka, Reader, topics};
use crate::tasks::event::TaskEvent;

/// Events kept per partition for streams that resume.
const RING_CAPACITY: usize = 1024;
/// Events on their way to the streams; a stream further behind is reset.
const CHANNEL_CAPACITY: usize = 1024;
/// How long a look at the topic's partitions may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the feed waits before it looks at the topic again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// One event of `task-events`, where it is in the topic.
#[derive(Debug)]
pub struct LiveEvent {
    pub partition: i32,
    pub offset: i64,
    /// Grows when a partition's offsets went backwards: positions of an
    /// older epoch mean nothing any more.
    pub epoch: u64,
    pub event: TaskEvent,
    /// The record as published (a CloudEvent).
    pub json: String,
}

impl LiveEvent {
    /// Whether `actor` may see it: admins and viewers see every task's
    /// events; a user those of their tasks, and the one that gave a task away.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Admin | Role::Viewer => true,
            Role::User => {
                let own = actor.user_id.to_string();
                let was_own = self
                    .event
                    .data
                    .changes
                    .as_ref()
                    .and_then(|changes| changes.get("owner_id"))
                    .is_some_and(|change| change.get("from").and_then(|from| from.as_str()) == Some(own.as_str()));
                self.event.data.task.owner_id == actor.user_id || was_own
            }
        }
    }
}

/// Per partition, the offset of the next event to give.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position(BTreeMap<i32, i64>);

impl Position {
    /// `partition:offset` pairs, comma-separated (the SSE event id).
    pub fn encode(&self) -> String {
        self.0.iter().map(|(partition, offset)| format!("{partition}:{offset}")).collect::<Vec<_>>().join(",")
    }

    pub fn parse(id: &str) -> Option<Self> {
        let pairs = id.split(',').filter(|pair| !pair.is_empty()).map(|pair| {
            let (partition, offset) = pair.split_once(':')?;
            Some((partition.trim().parse().ok()?, offset.trim().parse().ok()?))
        });
        pairs.collect::<Option<BTreeMap<i32, i64>>>().map(Self)
    }

    pub fn advance(&mut self, event: &LiveEvent) {
        self.0.insert(event.partition, event.offset + 1);
    }

    pub fn has_given(&self, event: &LiveEvent) -> bool {
        self.0.get(&event.partition).is_some_and(|next| event.offset < *next)
    }
}

/// The latest events of one partition.
#[derive(Debug, Default)]
struct Ring {
    events: VecDeque<Arc<LiveEvent>>,
    /// The oldest offset the ring can give from.
    floor: i64,
    /// The offset of the next event.
    next: i64,
}

#[derive(Debug, Default)]
struct Rings {
    partitions: BTreeMap<i32, Ring>,
    epoch: u64,
}

impl Rings {
    /// Starts following `partition` at `next` (its end), unless it is followed.
    fn follow(&mut self, partition: i32, next: i64) {
        self.partitions.entry(partition).or_insert(Ring { events: VecDeque::new(), floor: next, next });
    }

    /// Places `event` (its `epoch` set here), starting a new epoch when its
    /// partition's offsets went backwards.
    fn push(&mut self, mut event: LiveEvent) -> Arc<LiveEvent> {
        let ring = self.partitions.entry(event.partition).or_default();
        if event.offset < ring.next {
            *ring = Ring { events: VecDeque::new(), floor: event.offset, next: event.offset };
            self.epoch += 1;
        }
        event.epoch = self.epoch;
        let event = Arc::new(event);
        ring.next = event.offset + 1;
        ring.events.push_back(event.clone());
        if ring.events.len() > RING_CAPACITY
            && let Some(evicted) = ring.events.pop_front()
        {
            ring.floor = evicted.offset + 1;
        }
        event
    }

    fn end(&self) -> Position {
        Position(self.partitions.iter().map(|(partition, ring)| (*partition, ring.next)).collect())
    }

    /// The events after `from`, each partition's in offset order, or
    /// `None` when `from` is older than a ring reaches back, newer than the
    /// topic, or names a partition not followed (yet: before the first
    /// assignment no position can be told good).
    fn since(&self, from: &Position) -> Option<Vec<Arc<LiveEvent>>> {
        if self.partitions.is_empty() || from.0.keys().any(|partition| !self.partitions.contains_key(partition)) {
            return None;
        }
        let mut events = Vec::new();
        for (partition, ring) in &self.partitions {
            let next = from.0.get(partition).copied().unwrap_or(0);
            if next < ring.floor || next > ring.next {
                return None;
            }
            events.extend(ring.events.iter().filter(|event| event.offset >= next).cloned());
        }
        Some(events)
    }
}

/// What a new stream starts with.
pub struct Subscription {
    /// Whether the client must reload before the events.
    pub reset: bool,
    /// The events it missed, oldest first.
    pub backlog: Vec<Arc<LiveEvent>>,
    pub position: Position,
    /// The epoch `position` belongs to.
    pub epoch: u64,
    pub live: broadcast::Receiver<Arc<LiveEvent>>,
}

/// The task events this process follows, and its streams.
#[derive(Clone)]
pub struct LiveEvents {
    rings: Arc<Mutex<Rings>>,
    sender: broadcast::Sender<Arc<LiveEvent>>,
    streams: Arc<Mutex<HashMap<Uuid, usize>>>,
    max_streams_per_user: usize,
    /// Ends every stream (the server stops).
    closing: CancellationToken,
}

/// A stream counted against its user's limit while it lives.
pub struct StreamSlot {
    streams: Arc<Mutex<HashMap<Uuid, usize>>>,
    user: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = streams.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.user);
            }
        }
    }
}

impl LiveEvents {
    pub fn new(max_streams_per_user: usize) -> Self {
        Self {
            rings: Arc::default(),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            streams: Arc::default(),
            max_streams_per_user: max_streams_per_user.max(1),
            closing: CancellationToken::new(),
        }
    }

    /// Cancelled when the streams must end.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// A slot for one more stream of `user`, unless they have the most.
    pub fn open_stream(&self, user: Uuid) -> Option<StreamSlot> {
        let mut streams = self.streams.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = streams.entry(user).or_default();
        if *count >= self.max_streams_per_user {
            return None;
        }
        *count += 1;
        Some(StreamSlot { streams: self.streams.clone(), user })
    }

    /// Subscribes after `last_event_id` (a client's `Last-Event-ID`), else
    /// from now on. An id that is no position of this topic's resets.
    pub fn subscribe(&self, last_event_id: Option<&str>) -> Subscription {
        let rings = self.rings();
        let live = self.sender.subscribe();
        let (end, epoch) = (rings.end(), rings.epoch);
        let Some(id) = last_event_id else {
            return Subscription { reset: false, backlog: Vec::new(), position: end, epoch, live };
        };
        match Position::parse(id).and_then(|from| Some((rings.since(&from)?, from))) {
            Some((backlog, from)) => Subscription { reset: false, backlog, position: from, epoch, live },
            None => Subscription { reset: true, backlog: Vec::new(), position: end, epoch, live },
        }
    }

    /// Where the rings end now, and their epoch: a stream that fell behind
    /// or outlived its epoch goes on from here.
    pub fn end(&self) -> (Position, u64) {
        let rings = self.rings();
        (rings.end(), rings.epoch)
    }

    fn rings(&self) -> MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, event: LiveEvent) {
        let mut rings = self.rings();
        let event = rings.push(event);
        // No stream listening is no failure.
        let _ = self.sender.send(event);
    }

    /// Follows `task-events` until `shutdown`, starting again after failures.
    pub async fn follow(self, kafka: Kafka, shutdown: CancellationToken) {
        loop {
            let failure = tokio::select! {
                _ = shutdown.cancelled() => return,
                failure = self.read(&kafka) => failure,
            };
            tracing::warn!(error = %failure, "cannot follow task-events for the live streams; trying again");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }

    /// Reads every partition from where the rings end (a new partition from
    /// its end), until reading fails.
    async fn read(&self, kafka: &Kafka) -> anyhow::Error {
        let consumer = match self.assign(kafka).await {
            Ok(consumer) => consumer,
            Err(error) => return error,
        };
        loop {
            match consumer.recv().await {
                Ok(message) => match TaskEvent::parse(message.payload().unwrap_or_default()) {
                    Ok(event) => self.publish(LiveEvent {
                        partition: message.partition(),
                        offset: message.offset(),
                        epoch: 0,
                        event,
                        json: String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                    }),
                    Err(error) => tracing::debug!(%error, "a record of task-events is no task event"),
                },
                Err(error) => {
                    tracing::debug!(%error, "reading task-events for the live streams");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn assign(&self, kafka: &Kafka) -> anyhow::Result<Reader> {
        let consumer = kafka.reader(false)?;
        let topic = kafka.topic(topics::TASK_EVENTS);
        let ends = {
            let topic = topic.clone();
            consumer.blocking(move |consumer| partition_ends(consumer, &topic)).await??
        };
        let mut assignment = TopicPartitionList::new();
        {
            let mut rings = self.rings();
            for (partition, end) in ends {
                rings.follow(partition, end);
                let next = rings.partitions[&partition].next;
                assignment.add_partition_offset(&topic, partition, Offset::Offset(next))?;
            }
        }
        consumer.assign(&assignment).context("cannot assign the partitions of task-events")?;
        Ok(consumer)
    }
}

/// Each partition of `topic` with its end offset.
fn partition_ends(consumer: &StreamConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64)>> {
    let metadata = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT)?;
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|topic| topic.partitions().iter().map(|partition| partition.id())).collect();
    anyhow::ensure!(!partitions.is_empty(), "{topic} has no partitions");
    partitions
        .into_iter()
        .map(|partition| Ok((partition, consumer.fetch_watermarks(topic, partition, METADATA_TIMEOUT)?.1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::model::{Task, TaskChange};

    fn event(partition: i32, offset: i64, owner: Uuid) -> LiveEvent {
        let task = Task::example(owner, "Live");
        let event = TaskEvent::for_change(&TaskChange::Created(task), chrono::Utc::now());
        LiveEvent { partition, offset, epoch: 0, json: serde_json::to_string(&event).unwrap(), event }
    }

    #[test]
    fn a_position_is_its_own_event_id() {
        let position = Position([(0, 15), (1, 0), (2, 7)].into());
        assert_eq!(position.encode(), "0:15,1:0,2:7");
        assert_eq!(Position::parse(&position.encode()), Some(position));
        assert_eq!(Position::parse(""), Some(Position::default()));
        assert_eq!(Position::parse("0:x"), None);
        assert_eq!(Position::parse("garbage"), None);
    }

    #[test]
    fn a_stream_resumes_after_what_it_saw_and_is_reset_when_the_ring_no_longer_reaches_back() {
        let live = LiveEvents::new(5);
        live.rings().follow(0, 10);
        live.rings().follow(1, 0);
        let owner = Uuid::now_v7();
        live.publish(event(0, 10, owner));
        live.publish(event(1, 0, owner));
        live.publish(event(0, 11, owner));

        let seen = Position([(0, 11), (1, 0)].into()).encode();
        let resumed = live.subscribe(Some(&seen));
        assert!(!resumed.reset);
        let offsets: Vec<(i32, i64)> = resumed.backlog.iter().map(|event| (event.partition, event.offset)).collect();
        assert_eq!(offsets, [(0, 11), (1, 0)]);

        let from_now = live.subscribe(None);
        assert_eq!((from_now.reset, from_now.backlog.len()), (false, 0));
        assert_eq!(from_now.position, Position([(0, 12), (1, 1)].into()));

        assert!(live.subscribe(Some("0:9,1:0")).reset, "older than the ring");
        assert!(live.subscribe(Some("0:99,1:0")).reset, "newer than the topic");
        assert!(live.subscribe(Some("no position")).reset);
        assert!(live.subscribe(Some("0:11,1:0,7:3")).reset, "a partition not followed");
        assert!(LiveEvents::new(5).subscribe(Some("0:11")).reset, "nothing followed yet");
        for offset in 12..12 + RING_CAPACITY as i64 {
            live.publish(event(0, offset, owner));
        }
        assert!(live.subscribe(Some(&seen)).reset, "its events were evicted");

        // The broker came back empty: offsets start again, in a new epoch
        // (streams connected meanwhile are reset: `http::task_events`).
        let before = live.subscribe(None);
        live.publish(event(1, 0, owner));
        assert_eq!(live.end(), (Position([(0, 12 + RING_CAPACITY as i64), (1, 1)].into()), before.epoch + 1));
    }

    #[test]
    fn a_stream_skips_what_it_was_given_already() {
        let mut position = Position([(0, 5)].into());
        let owner = Uuid::now_v7();
        assert!(position.has_given(&event(0, 4, owner)));
        assert!(!position.has_given(&event(0, 5, owner)));
        position.advance(&event(0, 5, owner));
        assert!(position.has_given(&event(0, 5, owner)));
        assert!(!position.has_given(&event(3, 0, owner)), "a partition it never saw");
    }

    #[test]
    fn users_see_their_own_tasks_and_admins_and_viewers_see_all() {
        let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
        let created = event(0, 0, owner);
        let actor = |user_id, role| Actor { user_id, role };
        assert!(created.visible_to(&actor(owner, Role::User)));
        assert!(!created.visible_to(&actor(other, Role::User)));
        assert!(created.visible_to(&actor(other, Role::Viewer)));
        assert!(created.visible_to(&actor(other, Role::Admin)));

        let mut given_away = event(0, 1, other);
        let changes = serde_json::json!({ "owner_id": { "from": owner, "to": other } });
        given_away.event.data.changes = Some(changes.as_object().unwrap().clone());
        assert!(given_away.visible_to(&actor(owner, Role::User)), "the task it gave away");
    }

    #[test]
    fn a_user_has_at_most_the_streams_allowed_and_a_closed_one_frees_its_slot() {
        let live = LiveEvents::new(2);
        let user = Uuid::now_v7();
        let first = live.open_stream(user).unwrap();
        let _second = live.open_stream(user).unwrap();
        assert!(live.open_stream(user).is_none());
        assert!(live.open_stream(Uuid::now_v7()).is_some(), "another user's are their own");
        drop(first);
        assert!(live.open_stream(user).is_some());
    }
}
