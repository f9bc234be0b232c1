//! The processed-event ledger (`processed_events`): a handler's effects and
//! the ledger rows of the events it handled commit in one transaction, so a
//! redelivered event is recognised and skipped.

use std::collections::HashSet;

use sqlx::PgPool;

use crate::db::HostConnection;

use crate::plugins::BeforeCommit;

/// Which of `event_ids` `handler` processed already.
pub async fn processed(pool: &PgPool, handler: &str, event_ids: &[&str]) -> Result<HashSet<String>, sqlx::Error> {
    let processed: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM processed_events WHERE handler = $1 AND event_id = ANY($2)")
            .bind(handler)
            .bind(event_ids)
            .fetch_all(pool)
            .await?;
    Ok(processed.into_iter().collect())
}

/// Records in the handler's transaction that it processed the events.
pub struct Record<'a> {
    pub handler: &'a str,
    pub event_ids: Vec<&'a str>,
}

impl BeforeCommit<()> for Record<'_> {
    async fn run(self, _: &(), host: &mut HostConnection<'_>) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT public.host_record_processed_events($1, $2, $3)")
            .bind(host.key.as_bytes())
            .bind(self.handler)
            .bind(&self.event_ids)
            .execute(&mut *host.connection)
            .await?;
        Ok(())
    }
}
