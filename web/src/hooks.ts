// Small hooks the views share: running an action with its pending state and
// its failure, loading data when its inputs change, and a list paged by
// cursor.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ProblemError } from './api/problem';

/** Any thrown value as a ProblemError (a bug in the app shows as one too). */
export function toProblem(error: unknown): ProblemError {
  if (error instanceof ProblemError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ProblemError(0, 'client-error', 'Something went wrong', message, []);
}

export interface Action {
  pending: boolean;
  problem: ProblemError | null;
  setProblem(problem: ProblemError | null): void;
  /** Runs `task`; its failure lands in `problem` (and the answer is undefined). */
  run<T>(task: () => Promise<T>): Promise<T | undefined>;
}

export function useAction(): Action {
  const [pending, setPending] = useState(false);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const mounted = useMounted();
  const run = useCallback(async <T,>(task: () => Promise<T>): Promise<T | undefined> => {
    setPending(true);
    setProblem(null);
    try {
      return await task();
    } catch (error) {
      if (mounted.current) setProblem(toProblem(error));
      return undefined;
    } finally {
      if (mounted.current) setPending(false);
    }
  }, []);
  return { pending, problem, setProblem, run };
}

export function useMounted() {
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  return mounted;
}

export interface Loaded<T> {
  data: T | undefined;
  problem: ProblemError | null;
  loading: boolean;
  reload(): void;
}

/** Loads `load()` now and whenever `deps` change; a late answer of an older load is dropped. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const [loading, setLoading] = useState(true);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let current = true;
    setLoading(true);
    load().then(
      (value) => {
        if (!current) return;
        setData(value);
        setProblem(null);
        setLoading(false);
      },
      (error) => {
        if (!current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
    return () => {
      current = false;
    };
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  return { data, problem, loading, reload };
}

/** A list the API pages by cursor (`{items, next_cursor}`). */
export interface Pages<T> {
  items: T[];
  setItems(update: (items: T[]) => T[]): void;
  cursor: string | null;
  loading: boolean;
  problem: ProblemError | null;
  /** The first page again. */
  reload(): void;
  /** The next page, after the items listed. */
  loadMore(): void;
}

/**
 * The first page of `fetchPage` now and whenever `deps` change, the next on
 * `loadMore`. A late answer of an older load is dropped, and an item already
 * listed (moved up by a change meanwhile) is not listed twice.
 */
export function usePages<T extends { id: string }>(
  fetchPage: (cursor?: string) => Promise<{ items: T[]; next_cursor?: string | null }>,
  deps: unknown[],
): Pages<T> {
  const [items, setItems] = useState<T[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [problem, setProblem] = useState<ProblemError | null>(null);
  const [generation, setGeneration] = useState(0);
  const latest = useRef(0);
  // The newest `fetchPage` (it closes over the current query), without reloading.
  const fetchRef = useRef(fetchPage);
  fetchRef.current = fetchPage;

  const load = useCallback((after: string | null) => {
    const mine = ++latest.current;
    setLoading(true);
    fetchRef.current(after ?? undefined).then(
      (page) => {
        if (mine !== latest.current) return;
        setItems((current) =>
          after === null ? page.items : [...current, ...page.items.filter((item) => !current.some((known) => known.id === item.id))],
        );
        setCursor(page.next_cursor ?? null);
        setProblem(null);
        setLoading(false);
      },
      (error) => {
        if (mine !== latest.current) return;
        setProblem(toProblem(error));
        setLoading(false);
      },
    );
  }, []);
  useEffect(() => load(null), [...deps, generation]);
  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  const loadMore = useCallback(() => {
    if (cursor) load(cursor);
  }, [cursor, load]);
  return { items, setItems, cursor, loading, problem, reload, loadMore };
}
