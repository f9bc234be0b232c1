// Small hooks the views share: running an action with its pending state and
// its failure, and loading data when its inputs change.

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
