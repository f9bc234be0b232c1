//! The processed-event ledger (`processed_events`): a handler's effect and
//! its ledger row commit in one transaction, so a redelivered event is
//! recognised and skipped.

use sqlx::PgPool;

use crate::db::HostConnection;

use crate::plugins::BeforeCommit;

/// Whether `handler` processed `event_id` already.
pub async fn processed(pool: &PgPool, handler: &str, event_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_events WHERE handler = $1 AND event_id = $2)")
        .bind(handler)
        .bind(event_id)
        .fetch_one(pool)
        .await
}

/// Records in the handler's transaction that it processed the event.
pub struct Record<'a> {
    pub handler: &'a str,
    pub event_id: &'a str,
}

impl BeforeCommit<()> for Record<'_> {
    async fn run(self, _: &(), host: &mut HostConnection<'_>) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT public.host_record_processed($1, $2, $3)")
            .bind(host.key.as_bytes())
            .bind(self.handler)
            .bind(self.event_id)
            .execute(&mut *host.connection)
            .await?;
        Ok(())
    }
}
