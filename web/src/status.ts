// The app's one live region: short status lines ("Task created") and
// failures that belong to no form, announced to screen readers as they come.

export type StatusKind = 'info' | 'success' | 'error';

export interface StatusMessage {
  id: number;
  kind: StatusKind;
  text: string;
}

let current: StatusMessage | null = null;
let nextId = 1;
const listeners = new Set<() => void>();

export function announce(text: string, kind: StatusKind = 'info') {
  current = { id: nextId++, kind, text };
  listeners.forEach((listener) => listener());
}

export function clearStatus() {
  current = null;
  listeners.forEach((listener) => listener());
}

export function currentStatus(): StatusMessage | null {
  return current;
}

export function onStatus(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
