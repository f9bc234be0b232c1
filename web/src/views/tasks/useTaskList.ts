// The task list: its first page for the current query, more pages on demand,
// and the changes of the event stream applied as they come (a change that
// cannot be placed here reloads the first page).

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { ProblemError } from '../../api/problem';
import { followTaskEvents, type LiveState } from '../../api/taskEvents';
import { listTasks, type TaskQuery } from '../../api/tasks';
import type { Task, TaskEvent } from '../../api/types';
import { toProblem } from '../../hooks';
import { matches } from './filters';

export interface TaskList {
  tasks: Task[];
  nextCursor: string | null;
  loading: boolean;
  problem: ProblemError | null;
  live: LiveState;
  reload(): void;
  loadMore(): void;
  /** A task this tab wrote (or read afresh): placed like a change of the stream. */
  upsert(task: Task): void;
  remove(id: string): void;
}

export function useTaskList(query: TaskQuery): TaskList {
  const [tasks, setTasks] = useState<Task[]>([]);
  const [nextCursor, setNextCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const [live, setLive] = useState<LiveState>('connecting');
  const [generation, setGeneration] = useState(0);
  const queryKey = JSON.stringify(query);
  // The query the event handler compares against, without re-subscribing.
  const queryRef = useRef(query);
  queryRef.current = query;
  const loadToken = useRef(0);
  const reloadTimer = useRef<number | undefined>(undefined);

  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  const reloadSoon = useCallback(() => {
    window.clearTimeout(reloadTimer.current);
    reloadTimer.current = window.setTimeout(reload, 250);
  }, [reload]);

  useEffect(() => {
    const token = ++loadToken.current;
    setLoading(true);
    listTasks(query).then(
      (page) => {
        if (token !== loadToken.current) return;
        setTasks(page.items);
        setNextCursor(page.next_cursor ?? null);
        setProblem(null);
        setLoading(false);
      },
      (error) => {
        if (token !== loadToken.current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
  }, [queryKey, generation]);

  const loadMore = useCallback(() => {
    if (!nextCursor) return;
    const token = ++loadToken.current;
    setLoading(true);
    listTasks(queryRef.current, nextCursor).then(
      (page) => {
        if (token !== loadToken.current) return;
        setTasks((current) => [...current, ...page.items.filter((task) => !current.some((known) => known.id === task.id))]);
        setNextCursor(page.next_cursor ?? null);
        setLoading(false);
      },
      (error) => {
        if (token !== loadToken.current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
  }, [nextCursor]);

  const upsert = useCallback(
    (task: Task) => {
      const current = queryRef.current;
      setTasks((list) => {
        const index = list.findIndex((known) => known.id === task.id);
        if (index !== -1) {
          if (list[index]!.version > task.version) return list;
          if (!matches(task, current)) return list.filter((known) => known.id !== task.id);
          // A change of the sort key may move it: the server knows where.
          if (sortKeyChanged(list[index]!, task, current)) reloadSoon();
          return list.map((known) => (known.id === task.id ? task : known));
        }
        if (!matches(task, current)) return list;
        // New to this list: the newest-first order (the default) places it on top;
        // any other order asks the server.
        if (current.sort === 'created_at' && current.order === 'desc') return [task, ...list];
        reloadSoon();
        return list;
      });
    },
    [reloadSoon],
  );

  const remove = useCallback((id: string) => setTasks((list) => list.filter((task) => task.id !== id)), []);

  useEffect(() => {
    const stop = followTaskEvents({
      onChange(event: TaskEvent) {
        const task = event.data?.task;
        if (!task) return;
        if (event.type === 'task.deleted') remove(task.id);
        else upsert(task);
      },
      onReset: reload,
      onState: setLive,
    });
    return () => {
      stop();
      window.clearTimeout(reloadTimer.current);
    };
  }, []);

  return { tasks, nextCursor, loading, problem, live, reload, loadMore, upsert, remove };
}

function sortKeyChanged(before: Task, after: Task, query: TaskQuery): boolean {
  return query.sort !== 'created_at' && before[query.sort] !== after[query.sort];
}
