import { useEffect, useState } from 'preact/hooks';
import type { Claims } from '../../api/client';
import type { LiveState } from '../../api/taskEvents';
import { LoadMore } from '../../components/LoadMore';
import { ProblemAlert } from '../../components/ProblemAlert';
import { NO_FILTERS, toQuery, type FilterForm } from './filters';
import { TaskCreateForm } from './TaskCreateForm';
import { TaskFilters } from './TaskFilters';
import { TaskItem } from './TaskItem';
import { useTaskList } from './useTaskList';

const LIVE_LABELS: Record<LiveState, string> = {
  connecting: 'Connecting to live updates…',
  live: 'Live: changes made elsewhere appear here.',
  retrying: 'Live updates interrupted; reconnecting…',
  unavailable: 'Live updates are not available on this server. Use Refresh.',
};

export function TasksPage({ claims }: { claims: Claims }) {
  const [form, setForm] = useState<FilterForm>(NO_FILTERS);
  // The search box waits for a pause in typing before asking the server.
  const [query, setQuery] = useState(() => toQuery(NO_FILTERS));
  useEffect(() => {
    const timer = window.setTimeout(() => setQuery(toQuery(form)), 250);
    return () => window.clearTimeout(timer);
  }, [form]);
  const list = useTaskList(query);
  const canWrite = claims.role !== 'viewer';

  return (
    <section class="tasks-page">
      <div class="page-head">
        <h1>Tasks</h1>
        <p class={`live live-${list.live}`}>
          {LIVE_LABELS[list.live]}{' '}
          <button type="button" class="link-button" onClick={list.reload}>
            Refresh
          </button>
        </p>
      </div>
      {canWrite ? <TaskCreateForm onCreated={(task) => list.upsert(task, true)} /> : null}
      <TaskFilters value={form} onChange={setForm} />
      <ProblemAlert problem={list.problem} />
      <p class="list-summary" aria-live="polite">
        {list.loading && list.tasks.length === 0 ? 'Loading tasks…' : `${list.tasks.length} task${list.tasks.length === 1 ? '' : 's'} shown${list.nextCursor ? ' (more available)' : ''}.`}
      </p>
      {list.tasks.length > 0 ? (
        <ul class="task-list" aria-label="Tasks">
          {list.tasks.map((task) => (
            <TaskItem key={task.id} task={task} canWrite={canWrite} onChanged={(task) => list.upsert(task)} onDeleted={list.remove}
              onStale={list.reload} />
          ))}
        </ul>
      ) : list.loading ? null : (
        <p class="empty">No tasks match.</p>
      )}
      <LoadMore cursor={list.nextCursor} loading={list.loading} onMore={list.loadMore} />
    </section>
  );
}
