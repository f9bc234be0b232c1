//! `kv`: a key-value store in Redis, each plugin confined to the keys under
//! its own prefix.
//!
//! A write call's operations form one transaction (see wit/kv.wit). The
//! call takes its plugin's write lock at its first `kv` operation — a
//! mutex in this process, then a lock in Redis shared by every replica —
//! so the write calls of one plugin run one after the other and see each
//! other's changes whole. Writes are held in the call's state and applied
//! at commit by one Lua script that first checks every key the call read
//! still holds what it read: should the lock have lapsed (a call stalled
//! past its TTL), the write is refused rather than lost. A read call reads
//! straight from Redis, takes no lock and cannot write.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::Script;
use tokio::sync::OwnedMutexGuard;
use wasmtime::component::{HasSelf, Linker};

use super::CallKind;
use super::{NotGranted, Settle, SettleError};
use crate::db::HostConnection;
use crate::lock::{DistributedLock, Lease};
use crate::plugins::bindings::todo::plugin::kv::{self, KvError};
use crate::redis_client::RedisClient;

/// Largest value a plugin may store.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Longest key, before the prefix.
const MAX_KEY_BYTES: usize = 1024;
/// How long a write call waits between attempts at a write lock another
/// replica holds.
const LOCK_POLL: Duration = Duration::from_millis(2);

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut KvSession,
) -> anyhow::Result<()> {
    kv::add_to_linker::<T, HasSelf<KvSession>>(linker, get).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `kv` for a plugin not granted it.
pub fn add_denied_to_linker<T: Send + 'static>(linker: &mut Linker<T>) -> anyhow::Result<()> {
    kv::add_to_linker::<T, NotGranted>(linker, |_| NotGranted).map_err(|e| anyhow::anyhow!("{e}"))
}

fn not_granted() -> KvError {
    KvError::Other("`kv` is not granted to this plugin (its manifest needs `kv = true` under [grants])".into())
}

impl kv::Host for NotGranted {
    async fn get(&mut self, _: String) -> Result<Option<Vec<u8>>, KvError> {
        Err(not_granted())
    }

    async fn get_many(&mut self, _: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        Err(not_granted())
    }

    async fn set(&mut self, _: String, _: Vec<u8>, _: Option<u64>) -> Result<(), KvError> {
        Err(not_granted())
    }

    async fn delete(&mut self, _: String) -> Result<bool, KvError> {
        Err(not_granted())
    }

    async fn increment(&mut self, _: String, _: i64) -> Result<i64, KvError> {
        Err(not_granted())
    }
}

/// The in-process half of each plugin's write lock, by plugin name (so
/// that the versions of a plugin serving across a reload share it).
#[derive(Default)]
pub struct KvWriters(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KvWriters {
    fn of(&self, plugin: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.0.lock().expect("poisoned").entry(plugin.to_string()).or_default().clone()
    }
}

/// Per-call state.
pub struct KvSession {
    redis: Option<RedisClient>,
    plugin: String,
    kind: CallKind,
    writers: Arc<KvWriters>,
    /// The call's deadline: how long it may wait for the write lock, and
    /// (plus a margin) how long it may hold it.
    deadline: Duration,
    held: Option<HeldLock>,
    /// What each key read during a write call held when first read: the
    /// commit applies the writes only if they all still hold it.
    reads: HashMap<String, Option<Vec<u8>>>,
    writes: BTreeMap<String, Pending>,
}

struct HeldLock {
    _local: OwnedMutexGuard<()>,
    lock: DistributedLock,
    lease: Lease,
}

enum Pending {
    Set {
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    },
    /// `increment`: Redis's own INCRBY keeps a key's TTL, and so does this.
    SetKeepingTtl(Vec<u8>),
    Delete,
}

/// Why the commit applied nothing.
#[derive(Debug, thiserror::Error)]
enum KvCommitError {
    #[error("a key the call read was changed meanwhile (its write lock lapsed); nothing was written")]
    Conflict,
    #[error("{0}")]
    Unavailable(String),
}

impl KvSession {
    pub fn new(
        redis: Option<RedisClient>,
        plugin: String,
        kind: CallKind,
        writers: Arc<KvWriters>,
        deadline: Duration,
    ) -> Self {
        Self { redis, plugin, kind, writers, deadline, held: None, reads: HashMap::new(), writes: BTreeMap::new() }
    }

    async fn apply(&self) -> Result<(), KvCommitError> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let redis = self.redis.as_ref().ok_or_else(|| KvCommitError::Unavailable("no Redis configured".into()))?;
        let mut invocation = COMMIT.prepare_invoke();
        invocation.arg(self.reads.len());
        for (key, value) in &self.reads {
            invocation.key(key);
            match value {
                Some(value) => invocation.arg("1").arg(value.as_slice()),
                None => invocation.arg("0").arg(""),
            };
        }
        for (key, pending) in &self.writes {
            invocation.key(key);
            match pending {
                Pending::Set { value, ttl_ms: Some(ttl) } => invocation.arg("px").arg(value.as_slice()).arg(*ttl),
                Pending::Set { value, ttl_ms: None } => invocation.arg("set").arg(value.as_slice()).arg(""),
                Pending::SetKeepingTtl(value) => invocation.arg("keepttl").arg(value.as_slice()).arg(""),
                Pending::Delete => invocation.arg("del").arg("").arg(""),
            };
        }
        match redis.script::<i64>(&invocation).await {
            Ok(1) => Ok(()),
            Ok(_) => Err(KvCommitError::Conflict),
            Err(error) => Err(KvCommitError::Unavailable(error.to_string())),
        }
    }

    /// Takes the plugin's write lock, once per write call.
    async fn lock_for_writing(&mut self) -> Result<(), KvError> {
        if self.kind.is_read() || self.held.is_some() {
            return Ok(());
        }
        let redis = self.redis()?.clone();
        let give_up = Instant::now() + self.deadline;
        let busy = || KvError::Unavailable("the plugin's kv write lock stayed busy for the whole deadline".into());
        let local = tokio::time::timeout_at(give_up.into(), self.writers.of(&self.plugin).lock_owned())
            .await
            .map_err(|_| busy())?;
        let lock =
            DistributedLock::new(redis, &format!("plugin-kv:{}", self.plugin), self.deadline + Duration::from_secs(1));
        loop {
            match lock.try_acquire().await {
                Ok(Some(lease)) => {
                    self.held = Some(HeldLock { _local: local, lock, lease });
                    return Ok(());
                }
                Ok(None) if Instant::now() < give_up => tokio::time::sleep(LOCK_POLL).await,
                Ok(None) => return Err(busy()),
                Err(error) => return Err(KvError::Unavailable(error.to_string())),
            }
        }
    }

    fn full_key(&self, key: &str) -> Result<String, KvError> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(KvError::Other(format!("a key has 1 to {MAX_KEY_BYTES} bytes")));
        }
        // The prefix: a plugin only ever names keys under its own.
        Ok(format!("plugin-kv:{}:{key}", self.plugin))
    }

    fn redis(&self) -> Result<&RedisClient, KvError> {
        self.redis.as_ref().ok_or_else(|| KvError::Unavailable("this server has no Redis (REDIS_URL)".into()))
    }

    fn writable(&self) -> Result<(), KvError> {
        match self.kind {
            CallKind::Write => Ok(()),
            CallKind::Read(_) => Err(KvError::Other("a read call cannot write to kv".into())),
        }
    }

    /// Values of `keys` (full keys) as this call sees them: its own
    /// writes, else Redis — remembered, in a write call, for the commit.
    async fn read(&mut self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        self.lock_for_writing().await?;
        let unseen: Vec<&String> = keys.iter().filter(|key| self.visible(key).is_none()).collect();
        if !unseen.is_empty() {
            let values: Vec<Option<Vec<u8>>> = self
                .redis()?
                .run(redis::cmd("MGET").arg(&unseen))
                .await
                .map_err(|error| KvError::Unavailable(error.to_string()))?;
            if self.kind.is_read() {
                let fetched: HashMap<&String, Option<Vec<u8>>> = unseen.into_iter().zip(values).collect();
                return Ok(keys.iter().map(|key| fetched.get(key).cloned().flatten()).collect());
            }
            for (key, value) in unseen.into_iter().zip(values) {
                self.reads.insert(key.clone(), value);
            }
        }
        Ok(keys.iter().map(|key| self.visible(key).flatten()).collect())
    }

    /// The value of a key this write call wrote or read already.
    fn visible(&self, key: &str) -> Option<Option<Vec<u8>>> {
        match self.writes.get(key) {
            Some(Pending::Set { value, .. } | Pending::SetKeepingTtl(value)) => Some(Some(value.clone())),
            Some(Pending::Delete) => Some(None),
            None => self.reads.get(key).cloned(),
        }
    }
}

/// The writes apply in Redis, outside the SQL transaction: they settle
/// last, so that nothing after them can fail but COMMIT itself. The write
/// lock is held until the call has ended (after COMMIT).
#[async_trait::async_trait]
impl Settle for KvSession {
    /// Applies the call's writes if nothing it read changed meanwhile.
    async fn commit(&mut self, _: &mut HostConnection<'_>) -> Result<(), SettleError> {
        self.apply().await.map_err(|error| SettleError::new("kv", error))
    }

    /// Releases the write lock.
    async fn release(&mut self) {
        if let Some(held) = self.held.take()
            && let Err(error) = held.lock.release(&held.lease).await
        {
            // It lapses by itself within its TTL.
            tracing::warn!(plugin = %self.plugin, %error, "cannot release a kv write lock");
        }
    }
}

/// KEYS: the keys read, then the keys written. ARGV: the number of keys
/// read; per key read, whether it existed ("1"/"0") and its value; per key
/// written, the operation, the value and the TTL.
static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(COMMIT_SCRIPT));

const COMMIT_SCRIPT: &str = r"
local reads = tonumber(ARGV[1])
local at = 2
for i = 1, reads do
  local current = redis.call('GET', KEYS[i])
  if ARGV[at] == '1' then
    if current ~= ARGV[at + 1] then return 0 end
  elseif current then
    return 0
  end
  at = at + 2
end
for i = reads + 1, #KEYS do
  local op, value, ttl = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  if op == 'del' then redis.call('DEL', KEYS[i])
  elseif op == 'px' then redis.call('SET', KEYS[i], value, 'PX', ttl)
  elseif op == 'keepttl' then redis.call('SET', KEYS[i], value, 'KEEPTTL')
  else redis.call('SET', KEYS[i], value) end
  at = at + 3
end
return 1
";

impl kv::Host for KvSession {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, KvError> {
        let key = self.full_key(&key)?;
        Ok(self.read(std::slice::from_ref(&key)).await?.pop().flatten())
    }

    async fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.iter().map(|key| self.full_key(key)).collect::<Result<Vec<_>, _>>()?;
        self.read(&keys).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> Result<(), KvError> {
        self.writable()?;
        let key = self.full_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::Other(format!("a value has at most {MAX_VALUE_BYTES} bytes")));
        }
        if ttl_ms == Some(0) {
            return Err(KvError::Other("a TTL is at least 1 ms".into()));
        }
        self.lock_for_writing().await?;
        self.writes.insert(key, Pending::Set { value, ttl_ms });
        Ok(())
    }

    async fn delete(&mut self, key: String) -> Result<bool, KvError> {
        self.writable()?;
        let key = self.full_key(&key)?;
        let existed = self.read(std::slice::from_ref(&key)).await?.pop().flatten().is_some();
        self.writes.insert(key, Pending::Delete);
        Ok(existed)
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, KvError> {
        self.writable()?;
        let key = self.full_key(&key)?;
        let current = match self.read(std::slice::from_ref(&key)).await?.pop().flatten() {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or_else(|| KvError::Other("the value is not an integer".into()))?,
        };
        let next = current.checked_add(delta).ok_or_else(|| KvError::Other("the increment overflows".into()))?;
        self.writes.insert(key, Pending::SetKeepingTtl(next.to_string().into_bytes()));
        Ok(next)
    }
}
