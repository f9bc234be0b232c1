// Dead letters: the events a handler gave up on, filtered by handler and
// status, paged by cursor, each replayable; and the bulk replay of one
// handler's pending letters.

import { useState } from 'preact/hooks';
import { listDeadLetters, listPlugins, replayHandler, type DeadLetterQuery } from '../../api/admin';
import type { BulkReplayResult, DeadLetter } from '../../api/types';
import { SelectField } from '../../components/Field';
import { LoadMore } from '../../components/LoadMore';
import { ProblemAlert } from '../../components/ProblemAlert';
import { useAction, useLoad, usePages } from '../../hooks';
import { announce } from '../../status';
import { DeadLetterItem } from './DeadLetterItem';

const STATUS_OPTIONS = [
  { value: 'pending', label: 'Pending' },
  { value: 'replayed', label: 'Replayed' },
  { value: 'all', label: 'All' },
];

export function DeadLettersPage() {
  const [query, setQuery] = useState<DeadLetterQuery>({ handler: '', status: 'pending' });
  const [bulk, setBulk] = useState<{ handler: string; result: BulkReplayResult } | null>(null);
  const plugins = useLoad(listPlugins, []);
  const bulkAction = useAction();

  const pages = usePages<DeadLetter>(
    (cursor) => listDeadLetters({ ...query, handler: query.handler || undefined }, cursor),
    [query.handler, query.status],
  );
  const { items, cursor, loading, problem } = pages;

  const handlers = new Set<string>();
  plugins.data?.filter((plugin) => plugin.kind !== 'storage').forEach((plugin) => handlers.add(plugin.name));
  items.forEach((item) => handlers.add(item.handler));
  if (query.handler) handlers.add(query.handler);
  const handlerOptions = [{ value: '', label: 'All handlers' }, ...[...handlers].sort().map((name) => ({ value: name, label: name }))];

  const replayAll = async () => {
    const handler = query.handler ?? '';
    const result = await bulkAction.run(() => replayHandler(handler));
    if (result) {
      setBulk({ handler, result });
      announce(
        `Replayed the pending dead letters of ${handler}: ${result.handled} handled, ${result.already_handled} already handled, ${result.failed} failed.`,
        result.failed ? 'error' : 'success',
      );
      pages.reload();
    }
  };

  return (
    <section aria-labelledby="dead-letters-heading">
      <div class="page-head">
        <h2 id="dead-letters-heading">Dead letters</h2>
        <button type="button" onClick={pages.reload}>
          Refresh
        </button>
      </div>
      <form class="filters" aria-label="Filter dead letters" onSubmit={(event) => event.preventDefault()}>
        <SelectField id="dl-handler" label="Handler" value={query.handler ?? ''} options={handlerOptions}
          onValue={(handler) => setQuery({ ...query, handler })} />
        <SelectField id="dl-status" label="Status" value={query.status} options={STATUS_OPTIONS}
          onValue={(status) => setQuery({ ...query, status: status as DeadLetterQuery['status'] })} />
        {query.handler ? (
          <div class="actions">
            <button type="button" onClick={replayAll} disabled={bulkAction.pending}>
              {bulkAction.pending ? 'Replaying…' : `Replay all pending of ${query.handler}`}
            </button>
          </div>
        ) : null}
      </form>
      <ProblemAlert problem={bulkAction.problem ?? problem} />
      {bulk ? (
        <p class="card report" role="status">
          Bulk replay of {bulk.handler}: {bulk.result.handled} handled, {bulk.result.already_handled} already handled,{' '}
          {bulk.result.failed} failed.
        </p>
      ) : null}
      {items.length > 0 ? (
        <ul class="dead-letters" aria-label="Dead letters">
          {items.map((item) => (
            <DeadLetterItem key={item.id} letter={item} />
          ))}
        </ul>
      ) : loading ? (
        <p class="loading">Loading…</p>
      ) : (
        <p class="empty">No {query.status === 'all' ? '' : `${query.status} `}dead letters.</p>
      )}
      <LoadMore cursor={cursor} loading={loading} onMore={pages.loadMore} />
    </section>
  );
}
