//! Idempotency keys in Redis: which request a user's key was first used
//! for, and the response to replay for it. The HTTP side (header, body
//! fingerprint, replay) is `http::idempotency`; this module only keeps the
//! records, so it knows nothing of axum.
//!
//! A key is claimed atomically with an in-flight record that expires after
//! `IN_FLIGHT_TTL` (a request that dies without finishing frees its key),
//! then either completed with the response (kept for `IDEMPOTENCY_TTL_SECS`)
//! or released. Completing and releasing compare the claim first, so a
//! request that outlived its claim never overwrites a newer one.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use redis::Script;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::redis_client::RedisClient;

/// How long a claim holds a key while its request runs: well past the
/// slowest request (plugin deadlines, SQL timeouts, the broker's
/// acknowledgement), short enough that a crashed replica's claims free up
/// quickly.
const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

const PREFIX: &str = "todo:idempotency";

/// Answers the record already under `KEYS[1]`, or claims the key with
/// `ARGV[1]` for `ARGV[2]` ms and answers nil. (A script rather than
/// `SET NX GET`, which needs Redis 7.)
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        local existing = redis.call('GET', KEYS[1])
        if existing then return existing end
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return false
        ",
    )
});

/// Replaces the claim `ARGV[1]` with `ARGV[2]` for `ARGV[3]` ms, or deletes
/// it when `ARGV[2]` is empty; answers 0 when the claim was no longer there.
static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
        if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
        if ARGV[2] == '' then return redis.call('DEL', KEYS[1]) end
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
        return 1
        ",
    )
});

/// The idempotency records of every user.
#[derive(Clone)]
pub struct IdempotencyStore {
    redis: RedisClient,
    ttl: Duration,
}

/// A response kept for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub body: Vec<u8>,
}

/// What lives under a key.
#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    /// `claim` tells this request's claim from a later one on the same key.
    InFlight {
        fingerprint: String,
        claim: Uuid,
    },
    Completed {
        fingerprint: String,
        response: StoredResponse,
    },
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Claim {
    /// The key is this request's: run it, then `complete` or `release`.
    Acquired(Ticket),
    /// The same request is running under this key.
    InFlight,
    /// The same request already ran: its response.
    Completed(StoredResponse),
    /// The key was used for a different request.
    Reused,
}

/// Held by the request that claimed a key.
#[derive(Debug)]
pub struct Ticket {
    key: String,
    /// The in-flight record as written, compared before finishing.
    claim: String,
    fingerprint: String,
}

impl IdempotencyStore {
    /// `None` without Redis: keys are then accepted but not enforced.
    pub fn new(redis: Option<RedisClient>, ttl: Duration) -> Option<Self> {
        if redis.is_none() {
            tracing::warn!("REDIS_URL is not set: Idempotency-Key headers are not enforced");
        }
        redis.map(|redis| Self { redis, ttl })
    }

    /// Claims `key` of `user` for the request of `fingerprint`, or tells
    /// what already holds it.
    pub async fn claim(&self, user: Uuid, key: &str, fingerprint: &str) -> anyhow::Result<Claim> {
        let key = format!("{PREFIX}:{user}:{key}");
        let claim = encode(&Record::InFlight { fingerprint: fingerprint.to_string(), claim: Uuid::new_v4() });
        let mut invocation = CLAIM.key(&key);
        invocation.arg(&claim).arg(millis(IN_FLIGHT_TTL));
        let existing = self.redis.script::<Option<String>>(&invocation).await.context("cannot claim the key")?;
        let Some(existing) = existing else {
            return Ok(Claim::Acquired(Ticket { key, claim, fingerprint: fingerprint.to_string() }));
        };
        let record = serde_json::from_str(&existing).with_context(|| format!("unreadable record under {key}"))?;
        Ok(match record {
            Record::InFlight { fingerprint: held, .. } if held == fingerprint => Claim::InFlight,
            Record::Completed { fingerprint: held, response } if held == fingerprint => Claim::Completed(response),
            _ => Claim::Reused,
        })
    }

    /// Stores the response of a claimed key for replay.
    pub async fn complete(&self, ticket: Ticket, response: StoredResponse) -> anyhow::Result<()> {
        let record = encode(&Record::Completed { fingerprint: ticket.fingerprint.clone(), response });
        self.finish(&ticket, &record, self.ttl).await.context("cannot store the response")
    }

    /// Frees a claimed key, so the request may be retried under it.
    pub async fn release(&self, ticket: Ticket) -> anyhow::Result<()> {
        self.finish(&ticket, "", Duration::ZERO).await.context("cannot release the key")
    }

    async fn finish(&self, ticket: &Ticket, record: &str, ttl: Duration) -> anyhow::Result<()> {
        let mut invocation = FINISH.key(&ticket.key);
        invocation.arg(&ticket.claim).arg(record).arg(millis(ttl));
        if self.redis.script::<i64>(&invocation).await? == 0 {
            return Err(anyhow!("the claim on {} expired before its request finished", ticket.key));
        }
        Ok(())
    }
}

fn encode(record: &Record) -> String {
    serde_json::to_string(record).expect("a record serialises")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn to_base64<S: Serializer>(body: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&STANDARD.encode(body))
}

fn from_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    STANDARD.decode(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}
