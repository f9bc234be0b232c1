// Dead letters: the events a handler gave up on, filtered by handler and
// status, paged by cursor, each replayable; and the bulk replay of one
// handler's pending letters.

import { useEffect, useRef, useState } from 'preact/hooks';
import { listDeadLetters, listPlugins, replayHandler, type DeadLetterQuery } from '../../api/admin';
import type { ProblemError } from '../../api/problem';
import type { BulkReplayResult, DeadLetter } from '../../api/types';
import { SelectField } from '../../components/Field';
import { LoadMore } from '../../components/LoadMore';
import { ProblemAlert } from '../../components/ProblemAlert';
import { toProblem, useAction, useLoad } from '../../hooks';
import { announce } from '../../status';
import { DeadLetterItem } from './DeadLetterItem';

const STATUS_OPTIONS = [
  { value: 'pending', label: 'Pending' },
  { value: 'replayed', label: 'Replayed' },
  { value: 'all', label: 'All' },
];

export function DeadLettersPage() {
  const [query, setQuery] = useState<DeadLetterQuery>({ handler: '', status: 'pending' });
  const [items, setItems] = useState<DeadLetter[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const [generation, setGeneration] = useState(0);
  const [bulk, setBulk] = useState<{ handler: string; result: BulkReplayResult } | null>(null);
  const loadToken = useRef(0);
  const plugins = useLoad(listPlugins, []);
  const bulkAction = useAction();

  const load = (more: boolean) => {
    const token = ++loadToken.current;
    setLoading(true);
    listDeadLetters({ ...query, handler: query.handler || undefined }, more ? (cursor ?? undefined) : undefined).then(
      (page) => {
        if (token !== loadToken.current) return;
        setItems((current) => (more ? [...current, ...page.items] : page.items));
        setCursor(page.next_cursor ?? null);
        setProblem(null);
        setLoading(false);
      },
      (error) => {
        if (token !== loadToken.current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
  };
  useEffect(() => load(false), [query.handler, query.status, generation]);

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
      setGeneration((value) => value + 1);
    }
  };

  return (
    <section aria-labelledby="dead-letters-heading">
      <div class="page-head">
        <h2 id="dead-letters-heading">Dead letters</h2>
        <button type="button" onClick={() => setGeneration((value) => value + 1)}>
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
      <LoadMore cursor={cursor} loading={loading} onMore={() => load(true)} />
    </section>
  );
}
