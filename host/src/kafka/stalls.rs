//! Partitions nobody consumes. A consumer's lag covers only the partitions
//! assigned to it, so records waiting in a partition that the group gave to
//! a member which is gone (killed, and not yet expired by the broker) show
//! in no replica's `kafka_consumer_lag`. The watch reads, for every group
//! this process consumes in, the group's committed offset and the high
//! watermark of each partition of its topic.
//!
//! A stall is also repaired: this process's consumers of the group leave it
//! and join again, and the rebalance that follows assigns every partition
//! among the members that are there. (Tansu can end a rebalance with a
//! member it expired meanwhile still holding partitions, and then never
//! rebalances again by itself.)
//!
//! Invariants: a partition is stalled only while records wait in it and the
//! group's committed offset has not moved for `STALLED_AFTER`; any move of
//! that offset restarts its clock, as does a rejoin. The watch never joins a
//! group itself (its reader reads offsets only), and it holds the group's
//! consumers weakly: a group nobody here consumes in any more is forgotten.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::{Kafka, LagReporter};

/// How long records may wait in a partition whose committed offset does not
/// move before it counts as consumed by nobody: three session timeouts, past
/// which a broker should have given it to another member.
pub const STALLED_AFTER: Duration = Duration::from_secs(30);

/// How often the offsets are read.
const WATCH_INTERVAL: Duration = Duration::from_secs(10);

/// How long the broker may take to answer one read.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

type Members = Vec<Weak<StreamConsumer<LagReporter>>>;

/// The groups this process consumes in and what the watch last found.
#[derive(Default)]
pub struct GroupWatch {
    /// This process's consumers by (group, topic), registered as made.
    groups: Mutex<BTreeMap<(String, String), Members>>,
    /// Stalled partitions by (group, topic, partition), and for how long.
    stalled: Mutex<BTreeMap<(String, String, i32), Duration>>,
}

impl std::fmt::Debug for GroupWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.lock().expect("poisoned");
        f.debug_struct("GroupWatch").field("groups", &groups.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl GroupWatch {
    pub fn register(&self, group: &str, topic: &str, consumer: Weak<StreamConsumer<LagReporter>>) {
        let mut groups = self.groups.lock().expect("poisoned");
        groups.entry((group.to_string(), topic.to_string())).or_default().push(consumer);
    }

    /// The groups some consumer of this process is still in; what was
    /// found stalled in the others is forgotten with them.
    fn live_groups(&self) -> Vec<(String, String)> {
        let mut groups = self.groups.lock().expect("poisoned");
        groups.retain(|_, members| {
            members.retain(|member| member.strong_count() > 0);
            !members.is_empty()
        });
        let mut stalled = self.stalled.lock().expect("poisoned");
        stalled.retain(|(group, topic, _), _| groups.contains_key(&(group.clone(), topic.clone())));
        groups.keys().cloned().collect()
    }

    /// This process's consumers of `group` leave it and join again.
    async fn rejoin(&self, group: &str, topic: &str) {
        let members: Vec<_> = {
            let groups = self.groups.lock().expect("poisoned");
            let members = groups.get(&(group.to_string(), topic.to_string()));
            members.into_iter().flatten().filter_map(Weak::upgrade).collect()
        };
        let topic = topic.to_string();
        let rejoined = tokio::task::spawn_blocking(move || {
            for member in members {
                member.unsubscribe();
                member.subscribe(&[&topic])?;
            }
            Ok::<_, rdkafka::error::KafkaError>(())
        })
        .await;
        match rejoined {
            Ok(Ok(())) => tracing::warn!(%group, "rejoined the group so that every partition is assigned again"),
            Ok(Err(error)) => tracing::error!(%group, %error, "cannot rejoin the group"),
            Err(_) => tracing::error!(%group, "rejoining the group panicked"),
        }
    }

    /// One line per stalled partition, for a person.
    pub fn stalled(&self) -> Vec<String> {
        let stalled = self.stalled.lock().expect("poisoned");
        stalled
            .iter()
            .map(|((group, topic, partition), stalled_for)| {
                format!(
                    "group {group}: {topic}[{partition}] has records its committed offset has not reached for {} s",
                    stalled_for.as_secs()
                )
            })
            .collect()
    }

    /// Reads the offsets every `WATCH_INTERVAL` until `shutdown`.
    pub async fn run(self: Arc<Self>, kafka: Kafka, shutdown: CancellationToken) {
        let mut watched: HashMap<(String, String), (Arc<BaseConsumer>, Progress)> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let live = self.live_groups();
            let forgotten: Vec<_> = watched.extract_if(|key, _| !live.contains(key)).collect();
            if !forgotten.is_empty() {
                drop_off_runtime(forgotten);
            }
            for (group, topic) in live {
                let entry = match watched.entry((group.clone(), topic.clone())) {
                    Entry::Occupied(entry) => entry.into_mut(),
                    Entry::Vacant(entry) => match reader(&kafka, &group) {
                        Ok(reader) => entry.insert((Arc::new(reader), Progress::default())),
                        Err(error) => {
                            tracing::warn!(%group, error = format!("{error:#}"), "cannot watch the group's offsets");
                            continue;
                        }
                    },
                };
                let (reader, topic_read) = (entry.0.clone(), topic.clone());
                match tokio::task::spawn_blocking(move || read_offsets(&reader, &topic_read)).await {
                    Ok(Ok(offsets)) => {
                        let found = entry.1.observe(&offsets, Instant::now());
                        let stalled = !found.is_empty();
                        self.publish(&group, &topic, &offsets, found);
                        if stalled {
                            self.rejoin(&group, &topic).await;
                            entry.1 = Progress::default();
                        }
                    }
                    Ok(Err(error)) => tracing::debug!(%group, %error, "cannot read the group's offsets"),
                    Err(_) => tracing::warn!(%group, "reading the group's offsets panicked"),
                }
            }
        }
        drop_off_runtime(watched);
    }

    fn publish(&self, group: &str, topic: &str, offsets: &[PartitionOffsets], found: BTreeMap<i32, Duration>) {
        for offsets in offsets {
            let labels = [
                ("group", group.to_string()),
                ("topic", topic.to_string()),
                ("partition", offsets.partition.to_string()),
            ];
            metrics::gauge!("kafka_group_lag", &labels).set(offsets.waiting() as f64);
            let stalled_for = found.get(&offsets.partition).map_or(0.0, Duration::as_secs_f64);
            metrics::gauge!("kafka_partition_stalled_seconds", &labels).set(stalled_for);
        }
        let mut stalled = self.stalled.lock().expect("poisoned");
        stalled.retain(|(g, t, _), _| g != group || t != topic);
        for (partition, stalled_for) in found {
            tracing::warn!(%group, %topic, partition, stalled_for_secs = stalled_for.as_secs(),
                "records wait in a partition nobody in the group consumes (is a member gone?)");
            stalled.insert((group.to_string(), topic.to_string(), partition), stalled_for);
        }
    }
}

/// One partition as the broker reports it for a group.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOffsets {
    partition: i32,
    /// The group's committed offset, `None` if it never committed.
    committed: Option<i64>,
    low: i64,
    high: i64,
}

impl PartitionOffsets {
    /// Records the group has not finished: a group that never committed
    /// starts at the earliest record.
    fn waiting(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// Since when each partition's committed offset has not moved.
#[derive(Debug, Default)]
struct Progress(HashMap<i32, (Option<i64>, Instant)>);

impl Progress {
    /// Takes in one reading; answers the partitions stalled, and for how long.
    fn observe(&mut self, offsets: &[PartitionOffsets], now: Instant) -> BTreeMap<i32, Duration> {
        let mut stalled = BTreeMap::new();
        for offsets in offsets {
            let (committed, since) = self.0.entry(offsets.partition).or_insert((offsets.committed, now));
            if *committed != offsets.committed || offsets.waiting() == 0 {
                *committed = offsets.committed;
                *since = now;
                continue;
            }
            let still = now.duration_since(*since);
            if still >= STALLED_AFTER {
                stalled.insert(offsets.partition, still);
            }
        }
        stalled
    }
}

/// Drops readers on a thread of their own: closing a consumer may wait for
/// the broker, which no tokio worker may.
fn drop_off_runtime<T: Send + 'static>(readers: T) {
    std::thread::spawn(move || drop(readers));
}

/// A consumer of `group` that joins no group: it only reads offsets.
fn reader(kafka: &Kafka, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(kafka.consumer_config(group).set("enable.auto.commit", "false").create()?)
}

/// The group's committed offset and the watermarks of every partition of
/// `topic`.
fn read_offsets(reader: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<PartitionOffsets>> {
    let metadata = reader.fetch_metadata(Some(topic), READ_TIMEOUT)?;
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|topic| topic.partitions().iter().map(|partition| partition.id())).collect();
    let mut wanted = TopicPartitionList::new();
    for partition in &partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = reader.committed_offsets(wanted, READ_TIMEOUT)?;
    partitions
        .into_iter()
        .map(|partition| {
            let (low, high) = reader.fetch_watermarks(topic, partition, READ_TIMEOUT)?;
            let committed = match committed.find_partition(topic, partition).map(|entry| entry.offset()) {
                Some(Offset::Offset(offset)) => Some(offset),
                _ => None,
            };
            Ok(PartitionOffsets { partition, committed, low, high })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, committed: Option<i64>, high: i64) -> PartitionOffsets {
        PartitionOffsets { partition, committed, low: 0, high }
    }

    #[test]
    fn a_partition_whose_records_wait_with_no_progress_stalls_after_the_bound() {
        let start = Instant::now();
        let mut progress = Progress::default();
        assert!(progress.observe(&[at(0, Some(5), 9)], start).is_empty());
        assert!(progress.observe(&[at(0, Some(5), 12)], start + STALLED_AFTER / 2).is_empty());
        let stalled = progress.observe(&[at(0, Some(5), 12)], start + STALLED_AFTER);
        assert_eq!(stalled.get(&0), Some(&STALLED_AFTER));
    }

    #[test]
    fn progress_or_nothing_to_consume_is_not_a_stall() {
        let start = Instant::now();
        let mut progress = Progress::default();
        progress.observe(&[at(0, Some(5), 9), at(1, Some(7), 7)], start);
        // Partition 0 moved on just before the bound; partition 1 has nothing waiting.
        let later = start + STALLED_AFTER;
        assert!(progress.observe(&[at(0, Some(6), 9), at(1, Some(7), 7)], later).is_empty());
        assert!(progress.observe(&[at(0, Some(6), 9)], later + STALLED_AFTER / 2).is_empty());
        assert_eq!(progress.observe(&[at(0, Some(6), 9)], later + STALLED_AFTER).len(), 1);
    }

    #[test]
    fn a_group_that_never_committed_waits_from_the_earliest_record() {
        assert_eq!(PartitionOffsets { partition: 0, committed: None, low: 3, high: 10 }.waiting(), 7);
        assert_eq!(at(0, Some(10), 10).waiting(), 0);
    }
}
