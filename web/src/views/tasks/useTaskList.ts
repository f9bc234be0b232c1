// The task list: its first page for the current query, more pages on demand,
// and the changes of the event stream applied as they come (a change that
// cannot be placed here reloads the first page).

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { ProblemError } from '../../api/problem';
import { sessionState } from '../../api/client';
import { followTaskEvents, type LiveState } from '../../api/taskEvents';
import { listTasks, type TaskQuery } from '../../api/tasks';
import type { Task, TaskEvent } from '../../api/types';
import { usePages } from '../../hooks';
import { matches } from './filters';

export interface TaskList {
  tasks: Task[];
  nextCursor: string | null;
  loading: boolean;
  problem: ProblemError | null;
  live: LiveState;
  reload(): void;
  loadMore(): void;
  /** A task this tab wrote (or read afresh): placed like a change of the
   * stream (`created`: a new task, which may go on top). */
  upsert(task: Task, created?: boolean): void;
  remove(id: string): void;
}

export function useTaskList(query: TaskQuery): TaskList {
  const pages = usePages<Task>((cursor) => listTasks(query, cursor), [JSON.stringify(query)]);
  const { setItems: setTasks, reload } = pages;
  const [live, setLive] = useState<LiveState>('connecting');
  // The query the event handler compares against, without re-subscribing.
  const queryRef = useRef(query);
  queryRef.current = query;
  const reloadTimer = useRef<number | undefined>(undefined);

  const reloadSoon = useCallback(() => {
    window.clearTimeout(reloadTimer.current);
    reloadTimer.current = window.setTimeout(reload, 250);
  }, [reload]);

  const upsert = useCallback(
    (task: Task, created = false) => {
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
        // A new task in the newest-first order (the default) goes on top; any
        // other arrival (an older task now matching, another order) asks the server.
        if (created && current.sort === 'created_at' && current.order === 'desc') return [task, ...list];
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
        if (event.type === 'task.deleted' || !listedHere(task)) remove(task.id);
        else upsert(task, event.type === 'task.created');
      },
      onReset: reload,
      onState: setLive,
    });
    return () => {
      stop();
      window.clearTimeout(reloadTimer.current);
    };
  }, []);

  return {
    tasks: pages.items,
    nextCursor: pages.cursor,
    loading: pages.loading,
    problem: pages.problem,
    live,
    reload,
    loadMore: pages.loadMore,
    upsert,
    remove,
  };
}

/** A `user` lists their own tasks only: one given away leaves the list. */
function listedHere(task: Task): boolean {
  const session = sessionState();
  return session.status !== 'signed-in' || session.claims.role !== 'user' || task.owner_id === session.claims.sub;
}

function sortKeyChanged(before: Task, after: Task, query: TaskQuery): boolean {
  return query.sort !== 'created_at' && before[query.sort] !== after[query.sort];
}
